"""One test per system: its quick reproduction runs, measures every claim, and each claim lands where we
expect. Claims we honestly do not reproduce are listed in KNOWN_GAPS with the reason, and must keep failing
(if one starts holding, update the list and the README)."""

import pytest

from syslab import catalog
from tests.conftest import need, system_params

DATASETS = {"stragglers": "straggler_traces", "wlb-llm": "wlb_doc_lengths", "kvcache-wild": None,
            "blitzscale": "azure_llm_2023", "nanoflow": None, "deepserve": "azure_llm_2023",
            "weaver": "azure_llm_2023",
            "llmstation": None, "traincheck": None, "greyhound": "straggler_traces", "mtuner": None,
            "popfetcher": None, "jenga": None, "crosspipe": None, "obscura": None, "optimus": None,
            "flexpipe": "lmsys_lengths", "afaas": None,
            "dede": "dede_inputs", "kamino": None,
            "burst": None, "poby": None}

KNOWN_GAPS = {
    # On 2 cores, 32 simultaneous cold starts queue 16 deep for the CPU: an AFaaS start here is ~12 ms of CPU
    # (daemon, fork, child, reply), so its p99 grows ~16x; the paper's stability at scale needs more cores than
    # concurrent starts.
    ("afaas", "afaas-c32-p99"),
    # For the same reason both paths grow ~16x at 32 concurrent starts, so the baseline does not degrade twice as
    # much as AFaaS (the ratio wanders 0.8-1.3 run to run; two identical baseline runs gave 1.27).
    ("afaas", "baseline-degrades-more"),
    # HiGHS solves the quick 300-job max-min LP (3,000 variables) in ~0.05 s, while the fairness level (one
    # worst job) takes ADMM ~1 s to bring within 2%: DeDe reaches the quality, not the speed, at these sizes.
    ("dede", "cluster-time-ratio"),
    # Our notes expected consistent hashing's hot allocator to give it the worst P99 at skew 1.4; in our model
    # a miss costs 20 hits, so the load balancers' ~45% miss rate hurts their tail more than hashing's hotspot
    # (whose requests are nearly all 1 ms hits) hurts its own.
    ("kamino", "hash-worst-p99-high-skew"),
    # At the same 1 Gbps link containerd spends over half its time downloading, which no pipeline can hide
    # (1.3x); even with a 100 Gbps path, software inflate on our one "DPU" core bounds Poby at ~1.8x.
    ("poby", "speedup-real"),
    # With the paper's memory model no static mapping holds 32K without recomputation; FlexPipe reaches 1.17x
    # over the fastest static pipeline recomputing every iteration (paper 1.25x), all of it from recomputing only
    # when needed: in our time model 4, 8 and 16 stages run short mini-batches within 7% of each other, so no
    # remapping pays its 0.8 s stall. The sensitivity table clears 1.2x only at 128 sequences with 2 NICs.
    ("flexpipe", "throughput-vs-static"),
    # Our FLOP-based cost model makes dataloader-order packing more imbalanced (~1.9) than the paper's
    # measured 1.44; see the finding's note and the README.
    ("wlb-llm", "imbalance-original"),
    # The same cost model makes even fixed-length repacking worth 1.27x over Plain-4D (paper: ~1.03x).
    ("wlb-llm", "fixed-4d-speedup"),
    # On our synthetic twin WA falls slightly behind LRU at the largest cache (30% of unique blocks).
    ("kvcache-wild", "wa-never-below-lru"),
    # At the smallest cache LFU nearly matches WA on the twin (+1.6%; WA leads LFU by 32-41% at 10-30%).
    ("kvcache-wild", "wa-gain-over-lfu-small"),
    # With sourced stage costs (pod start 5 s, device init 4.1 s, warm-up 5 s on both paths) one instance comes
    # up 3.6x faster than cold (paper 8.9x); 5x needs a warm-up <= 2 s or baseline storage <= 1 GB/s.
    ("deepserve", "scaleup-ratio"),
    # PD-aware routing trails the best all-disaggregated split (1P:3D) at every load swept (0.96x at 10 RPS,
    # 0.80x at 40); the mixed cluster's split (2 colocated + 1P:1D) is fixed, the baseline's is its best.
    ("deepserve", "pd-routing"),
    # The paper's setting (three models, 8B / 33B TP 2 / 72B TP 4, one model's worth of host DRAM per host): P99
    # TTFT 47% below ServerlessLLM (band 50%); 88% with no host DRAM for weights. GPU-seconds: at quick scale
    # the one-model fleet hardly needs to scale, and ServerlessLLM under the same planner saves as much.
    ("blitzscale", "p99-vs-serverlessllm"),
    ("blitzscale", "gpu-vs-static"),
    # The search covers the paper's space (per-op nano-batch counts, per-op SM shares, issue order; the
    # sequential pipeline included), but with GEMM speed linear in its SMs overlap still pays the SM-time of what
    # it hides: at most 1.30x, and the search reaches 1.22x (band >= 1.3; the paper's own ablation gain over
    # non-overlap is 1.17x). Non-overlap itself reaches 61% of the optimum (paper-implied ~59%; band <= 0.5 from
    # our notes). Sensitivity tables sweep GEMM interference (>= 1.3x only at alpha <= 0.25) and the SM curve.
    ("nanoflow", "speedup-vs-nonoverlap"),
    ("nanoflow", "nonoverlap-fraction"),
    # With swaps simulated on PCIe (FCFS, two GPUs per DGX A100 uplink) and the Strawman given the same swap
    # option, Obscura's migration and partition moves add 0.2-1.2% (1.000-1.025x across uplink sharing and
    # model depth); only a Strawman without swapping trails by ~5% (1.0496x at 28B, 1.06x at deeper models).
    ("obscura", "gain-over-strawman-swap"),
    # Both models on the engine (continuous batching, 2048-token prefill budget): under a 100 ms P99 TPOT the hot
    # A100-80GB runs out of prefill compute before its KV fills, so Weaver reaches 1.00x dedicated (band >= 1.3;
    # paper 1.77x); the sensitivity table gives 1.27x on A100-40GB and, at full scale, 1.55x on 40GB, outputs x3.
    ("weaver", "hot-throughput"),
    # MuxServe (TP = 2 over both GPUs, best static SM share, its cold model inside the SLO) gives the prefill-bound
    # hot model up to 90% of two GPUs' compute: Weaver/MuxServe 0.56x; MuxServe's cold TPOT rises 12 -> 58 ms.
    ("weaver", "vs-muxserve"),
    # The gathers overlap compute in our model and the best uniform configuration already caches what fits, so
    # only memory-tight cases gain: 4.2% on average on PCIe (paper 28%), 0.6 points above NVLink. The report's
    # sensitivity table sweeps GPU memory, PCIe bandwidth and gather/compute overlap.
    # With selective recomputation given to the baselines too, the elastic tensors add 0.6% on average and at
    # most 4.9% (llama-30b, 2K) on PCIe: the claims' gains were the recomputation knob.
    ("mtuner", "max-gain-pcie"),
    ("mtuner", "avg-gain-pcie"),
    ("mtuner", "nvlink-gain-smaller"),
    # Our predictor (transition estimate blended with the window mean) does not beat last iteration's loads per
    # worker on the real trace at any blend weight, and reaches 0.61 top-4 on the synthetic one (sensitivity table).
    ("popfetcher", "predictor-top4"),
    ("popfetcher", "predictor-vs-last"),
    # Against the best baseline given PopFetcher's window and priority rules (the Janus-like static set cuts 11%
    # on the real routing), each worker routing its own batch: 8.8% real, 5.2% synthetic (band >= 15%).
    ("popfetcher", "time-reduction-real-routing"),
    ("popfetcher", "time-reduction-skewed"),
    # With checkpoints at the measured local-NVMe rate (9.3 GB/s, core.gpu) a restart costs 55 s, so always
    # restarting loses no more than the ladder on short fail-slows: 0.89x with the detector in the loop (1.00x
    # with perfect detection). The report's sensitivity table sweeps storage bandwidth and checkpoint size.
    ("greyhound", "ladder-vs-restart-transient"),
}

# Claims measured on the wall clock of a shared 2-core machine, whose verdicts flip between runs of the same
# seed: their P99s over a quick run's 32 requests move by +-30% run to run. The test checks they were measured
# and are sane, not which side of the line they land on; the README reports the spread we have seen.
NOISY = {
    ("llmstation", "throughput-vs-best-baseline"),
    ("llmstation", "llmstation-meets-slo"),
    ("llmstation", "temporal-tpot-at-equal-throughput"),
    ("jenga", "step-time"),            # CPU step times of a few steps, dense vs sparse
    # The paper-scale model divides by the untar rate measured in this run (1.1-1.4 GB/s): 6.5-8.4x, either
    # side of the 8x line.
    ("poby", "speedup-paper-scale"),
    # Two worker processes need both cores free at once: 1.4-2.3x per iteration across runs of the suite
    # (best of three interleaved runs each), either side of our 1.6x bar.
    ("dede", "workers-speedup"),
    # DeDe on both cores against HiGHS on one: 0.36-0.42x of HiGHS's time when the VM is quiet, 0.52x in a
    # full CI run (the 0.5x bar); the growth of the speed-up with size (9-13x) is asserted.
    ("dede", "te-time-ratio"),
    # Host CPU time of Poby's provisioning against containerd's: >= 60% lower on a quiet machine, 57% when another
    # process shares the two cores (the "DPU" core is emulated on the same CPUs; issue 17 revisits the measurement).
    ("poby", "host-cpu-cut"),
    # AFaaS's p50 cold start sits at its 20 ms bar: under it in earlier suite runs, 20.4 ms in one (wall-clock).
    ("afaas", "afaas-p50-ms"),
}


@pytest.mark.slow
@pytest.mark.parametrize("key", system_params(DATASETS))
def test_quick_reproduction(key, quick_reproduction):
    if DATASETS[key]:
        need(DATASETS[key])
    if not catalog.get(key).available:
        pytest.skip(f"{key} needs {', '.join(catalog.get(key).missing())}")
    r, out = quick_reproduction(key)
    assert r["status"] == "ok", r.get("traceback")
    system = catalog.get(key).load()
    assert [f["id"] for f in r["findings"]] == [c.id for c in system.claims]
    assert [f["kind"] for f in r["findings"]] == [str(c.kind) for c in system.claims]
    for f in r["findings"]:
        assert f["measured"] is not None, f["id"]
        if (key, f["id"]) in NOISY:
            assert 0 <= f["measured"] < 1e3, (f["id"], f["measured"])
            continue
        assert f["holds"] == ((key, f["id"]) not in KNOWN_GAPS), (f["id"], f["measured"], f["expect"])
    for fig in r["figures"]:
        assert (out / fig["path"]).stat().st_size > 1000


def test_every_catalog_system_has_a_quick_reproduction_test():
    assert set(DATASETS) == {e.key for e in catalog.CATALOG}
