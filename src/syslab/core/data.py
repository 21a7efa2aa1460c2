"""Dataset registry: every real input syslab reads, with its public source, sha256 and licence.

Files are resolved from ``$SYSLAB_DATA/<dataset>/<file>`` first (CI and developers point it at
``../shared/data``), then from the cache ``$SYSLAB_CACHE`` (default ``~/.cache/syslab``). ``fetch``
downloads a dataset into the cache and verifies every file's sha256; a file that does not match is
discarded, never kept. Dataset files are never committed to the repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    licence: str
    source: str                      # the public repository or page the files come from
    files: dict[str, tuple[str, str]]  # file name -> (download URL, sha256)


def _gh(repo: str, branch: str, path: str) -> str:
    return f"{GH}/{repo}/{branch}/{path}"


DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("azure_llm_2023", "Azure LLM inference trace 2023, conversation service: 19,366 requests over one hour "
            "(TIMESTAMP, ContextTokens, GeneratedTokens)", "CC-BY-4.0", "github.com/Azure/AzurePublicDataset", {
                "azure_conv_2023.csv": (_gh("Azure/AzurePublicDataset", "master",
                                            "data/AzureLLMInferenceTrace_conv.csv"),
                                        "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8")}),
    Dataset("lmsys_lengths", "100,000 LMSYS-Chat request lengths (no timestamps)", "Apache-2.0",
            "github.com/efeslab/Nanoflow", {
                "lmsys.csv": (_gh("efeslab/Nanoflow", "main", "datasets/traces/lmsys.csv"),
                              "2a6b50278c80b55151a34a1d15cf13190c6ed8c9210f2a6442b56ff9245f0a0d")}),
    Dataset("straggler_traces", "three real LLM-training job traces (SE: sequence imbalance, ST: stage imbalance, "
            "AR: a slowed worker) with job metadata, from the OSDI'25 stragglers paper", "Apache-2.0",
            "github.com/ByteDance-Seed/StragglerAnalysis", {
                f"{kind}-{t}.{ext}": (_gh("ByteDance-Seed/StragglerAnalysis", "main", f"data/{kind}-{t}.{ext}"), sha)
                for (kind, t, ext, sha) in [
                    ("trace", "SE", "parquet", "f7da01edebb2227e51d0fb0c28d8b141f61743e5ac1633e0a3b227d48edf1e50"),
                    ("trace", "ST", "parquet", "85a995b32699992319e19fa2248cf43d2965bbb6b51440e8a6147d9abc511461"),
                    ("trace", "AR", "parquet", "1806e53f3ce6b1857f945d34b07ff2b257b3cea1fe216466e006e040def9cc20"),
                    ("meta", "SE", "yaml", "8e5df3080904c3d664221b4052d704a0af7cac0be4daa97afa4af2a0a0e41d31"),
                    ("meta", "ST", "yaml", "438c18cd554d82ec03fe02b0ce4c0d1b67a64aed3d7c558300de8a34cf3a467d"),
                    ("meta", "AR", "yaml", "bdeaeb23210bd6ea2ad60c931daeee07e37226ce884df83a151d542a49fbf7a3"),
                ]}),
    Dataset("wlb_doc_lengths", "99,519 training-document lengths in tokens (median 3,227, max 124,913), the "
            "long-tail 'WLB-LLM distribution'", "none stated upstream: test input only",
            "github.com/hao-ai-lab/distca", {
                "doc_lengths.json": (_gh("hao-ai-lab/distca", "main", "distca/simulator/data/dist_wlbllm.json"),
                                     "df83913ac1a7afe12861516b07facb6bb2c2a673b16e2da93701439986e8a3c3")}),
    Dataset("torpor_functions", "per-minute invocation counts of 203 serverless inference functions over 31 minutes",
            "MIT", "github.com/FCSLab/torpor", {
                "samples.npy": (_gh("FCSLab/torpor", "main", "tools/samples.npy"),
                                "b61a140d0823a20688a3a7ee739e06735733c10bb25b75d7bd541047ed7cd4ad")}),
    Dataset("gpreempt_configs", "GPreempt workload configs; REAL.json holds arrival timestamps of 5 models",
            "Apache-2.0", "github.com/thustorage/GPreempt", {
                f: (_gh("thustorage/GPreempt", "main", f"config/{f}"), sha) for f, sha in [
                    ("REAL.json", "1728f7c3302e460ae950045e40bdf2e0343114f8ec4942c2063bbe408f572eb5"),
                    ("A.json", "eba82a904de8cfca1bcefda09d585b81d597ea08926a986753790374550513b2"),
                    ("micro-5.3_A1.json", "58e163781ab661ffdff6e06dd17e4afac993c3429dceb2e3589c5bd66fcb705f"),
                    ("micro-5.3_A6.json", "57051709e476e89a12e6d34012df0dcfbc3dae4810f2f4c409a0681cbe7599e2"),
                ]}),
    Dataset("xsched_latency", "measured foreground-latency CDFs for native, standalone and XSched scheduling on "
            "GV100 and K40m", "Apache-2.0", "github.com/XpuOS/xsched-artifacts", {
                f"fp_{k}_{g}.cdf": (_gh("XpuOS/xsched-artifacts", "main", f"results/fig7/raw/fp_{k}_{g}.cdf"), sha)
                for (k, g, sha) in [
                    ("base", "gv100", "3f5a100b0f38a1658e874267d6ca1b71a7c255ed9eac433cc8565d5f816cdee9"),
                    ("base", "k40m", "571336263b7dc30b39da0c3b968c29fd52e3e5746b59bc48b970374ff6c0d172"),
                    ("sa", "gv100", "5682ded66d3c5f10d8a8538695dea2d01158187c09d6bb3b200f812130438bbd"),
                    ("sa", "k40m", "9a3aa6d0ded11086e4e6d7dfaba7dd7788fff2b837e6ef0a663b8a7e6edd1613"),
                    ("xsched", "gv100", "99fbe150905eab1f9bc354bf19bcf7fd28cbc5548d855f602ffd16fc8648a57c"),
                    ("xsched", "k40m", "6e66fb8ce6b7efadf63b4df3becc4c51415ea6022e2b1bf38dc26e3a432e8a8c"),
                ]}),
    Dataset("dede_inputs", "WAN topologies (networkx node-link JSON) and the job-by-GPU-type throughput matrix",
            "MIT", "github.com/illinois-nsai/dede", {
                f: (_gh("illinois-nsai/dede", "main", path), sha) for f, path, sha in [
                    # Topology paths upstream are not verified (the shared copy records only `examples/`); the
                    # checksum guards whatever a mirror serves.
                    ("B4.json", "examples/traffic_engineering/topologies/B4.json",
                     "d30dd2f2c29ece5b88b7b3302ebbcdc0b2e72792df5a6b45006ddb73c85485cf"),
                    ("Kdl.json", "examples/traffic_engineering/topologies/Kdl.json",
                     "03cf7cc55b87943e5173275542ffc14895cad6218ad43d200a26376136ac245c"),
                    ("UsCarrier.json", "examples/traffic_engineering/topologies/UsCarrier.json",
                     "e2d4d448640d123d9821651b03be74b4cdb00103633a3c924721aaaad7401cbb"),
                    ("cluster_throughputs.npy", "examples/cluster_scheduling/data/simulation_throughputs.npy",
                     "0775f03b85626ce687a569ac4e60e1ac949b9884f678750f8b0044010d183c2b"),
                    ("cluster_spec.json", "examples/cluster_scheduling/data/cluster_spec.json",
                     "d5b9f6d07cf9b07cac6c0e05abbb00d3b92b055391941d195126251d493732f8"),
                ]}),
    Dataset("mirage_mugraphs", "uGraphs discovered by the Mirage superoptimizer, as saved JSON", "Apache-2.0",
            "github.com/mirage-project/mirage", {
                f: (_gh("mirage-project/mirage", "main", f"benchmark/saved_mugraphs/{f}"), sha) for f, sha in [
                    ("lora.json", "8b8f4b0cd9b8d7b189cc28823e7f65bdcac5ea175a2f01666891ce59503c9257"),
                    ("single_lora.json", "e07f23af2150b0cda96e836bdba7a617a201c0fe0bbe646ffe93e4f593dbc642"),
                    ("rmsnorm_bs1.json", "bfd900359dd68b6c75f65102b7d5f3c59a7d2f413bb298d7e3f439cb119c9d32"),
                    ("single_gated_mlp.json", "5995780e3ac7992a583f413ef0219caf12e2231cc4ad1896ad51ae16ffc175f0"),
                ]}),
    Dataset("katz_lora_shapes", "per-tensor names, shapes and byte sizes of two real SDXL LoRA adapters",
            "Apache-2.0", "github.com/modelscope/Katz", {
                f: (_gh("modelscope/Katz", "main", f"lora_info_shm/{f}"), sha) for f, sha in [
                    ("papercut_sdxl_lora_tensors.json",
                     "d4d30ffa2aa28153af03a7063b062616e048dcdeb106f1a59168170586f51095"),
                    ("filmic_lora_tensors.json", "77e692920cdbf0d1a0159d90606542470fad9c12595a89b9314c4d4dd13f67a8"),
                ]}),
    Dataset("koala_characterization", "the Koala shell-benchmark suite's static characterisation", "MIT",
            "github.com/kbensh/koala", {
                f: (_gh("kbensh/koala", "main", f"infrastructure/target/{f}"), sha) for f, sha in [
                    ("benchmark_categories.csv", "c99cbe88ae45ea1559bd274d0f37fa4582bb10e749fa757718d31b3d13af4b8d"),
                    ("benchmarks_syscalls_fds.csv",
                     "f113960e794cee4189e2140e591c83cc95e862427757e95a48729587216c15cb"),
                    ("cyclomatic.csv", "5fe232151f5e0f10fa93c86aaedee29c1c3a5146e6b09b259b19f30022107004"),
                    ("lines_of_code.csv", "6702e2d9ff436d3cfa218663b841e90e794fa60bf288c4bf131e8c476aba9d5c"),
                    ("nodes_in_scripts.csv", "821d054081d08c80d8aae61995162ff1b9604573a3cc88a6c3e61eafb3b2ccc3"),
                    ("scripts_to_benchmark.csv", "0d9f4ae34c76b7b2be06149d2077cf8e23be00b449991b14d1ce7e06e4b49d6c"),
                ]}),
]}


class DatasetMissing(LookupError):
    """A dataset file is in neither $SYSLAB_DATA nor the cache."""


class ChecksumMismatch(RuntimeError):
    """A downloaded file's sha256 differs from the registry's; the file was discarded."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("SYSLAB_CACHE", Path.home() / ".cache" / "syslab"))


@dataclass
class DataStore:
    """Finds dataset files. Roots are read from the environment when not given, at call time."""

    roots: list[Path] | None = None
    _checked: set[str] = field(default_factory=set, repr=False)

    def search_roots(self) -> list[Path]:
        if self.roots is not None:
            return [Path(r) for r in self.roots]
        roots = []
        if os.environ.get("SYSLAB_DATA"):
            roots.append(Path(os.environ["SYSLAB_DATA"]))
        roots.append(cache_dir())
        return roots

    def find(self, dataset: str, file: str) -> Path | None:
        _entry(dataset, file)
        for root in self.search_roots():
            p = root / dataset / file
            if p.is_file():
                return p
        return None

    def path(self, dataset: str, file: str) -> Path:
        p = self.find(dataset, file)
        if p is None:
            roots = ", ".join(str(r) for r in self.search_roots())
            raise DatasetMissing(f"dataset file {dataset}/{file} not found under {roots}. "
                                 f"Set SYSLAB_DATA to a folder holding {dataset}/, or run "
                                 f"`syslab data fetch {dataset}` on a machine with internet access.")
        return p

    def has(self, dataset: str) -> bool:
        return all(self.find(dataset, f) is not None for f in DATASETS[dataset].files)


def _entry(dataset: str, file: str) -> tuple[str, str]:
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    ds = DATASETS[dataset]
    if file not in ds.files:
        raise KeyError(f"dataset {dataset!r} has no file {file!r}; files: {', '.join(ds.files)}")
    return ds.files[file]


def fetch(dataset: str, *, dest: Path | None = None, base_url: str | None = None,
          progress: Callable[[str], None] | None = None, timeout_s: float = 60.0) -> list[Path]:
    """Download every file of ``dataset`` into ``dest`` (default: the cache) and verify its sha256.

    ``base_url`` replaces the registry's URLs with ``{base_url}/{dataset}/{file}`` (a mirror, or a local
    server in tests). Files already present with the right checksum are not downloaded again.
    """
    import urllib.request  # only here: it pulls in ssl and http, 10 ms of every CLI start otherwise

    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    target = Path(dest or cache_dir()) / dataset
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for file, (url, sha) in DATASETS[dataset].files.items():
        final = target / file
        if final.is_file() and sha256_of(final) == sha:
            written.append(final)
            continue
        src = f"{base_url.rstrip('/')}/{dataset}/{file}" if base_url else url
        if progress:
            progress(f"downloading {src}")
        fd, tmp_name = tempfile.mkstemp(dir=target, prefix=f".{file}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(src, timeout=timeout_s) as resp:
                shutil.copyfileobj(resp, out)
            got = sha256_of(tmp)
            if got != sha:
                raise ChecksumMismatch(f"{src}: sha256 {got} does not match the registry's {sha}; "
                                       "the download was discarded (the upstream file may have changed).")
            tmp.replace(final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written
