"""FlexPipe's reproduction: a GPT-3.35B-like model on 16 modelled A100s trained on a long-tail stream of
mini-batches, FlexPipe (FMOP + HBSA over every mapping with and without recomputation, switch stall 0.8 s)
against static pipelines sized for the longest sequence, HBSA against brute force on 8-GPU instances, and the
REAL toy live reconfiguration in torch.

Baselines (one mapping and one recomputation setting for the whole run, each the fastest of its kind over the
run's mini-batches): the paper's (the fewest stages that fit, the other GPUs as data parallelism) and the
fastest fixed mapping of any depth, each without and with full recomputation. The claim's baseline is the
fastest of them (baseline parity: the same recomputation option and the same search over mappings). An
ablation, a fixed mapping that recomputes only in the iterations it must (FMOP's memory-optimisation action
alone), shows how much of FlexPipe's gain needs no remapping. FlexPipe starts on that ablation's mapping and
its guard (``plan.flexpipe``) keeps it from ever ending slower than staying there, so it is never slower than
any baseline; it is also run without the guard.

A sensitivity table (not a claim) reruns FlexPipe against the static pipeline with other mini-batch sizes and
InfiniBand NICs per node, the two assumptions that decide what a switch can win; the throughput finding's
note says, from that table, whether any swept setting clears the claim's band.

Negative control (``run.control``): FlexPipe's per-iteration FMOP + HBSA decisions are replaced by the claim's
static baseline; the checks' work (HBSA against brute force, the torch live reconfiguration) is skipped."""

from __future__ import annotations

import dataclasses

import numpy as np

from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.run import Run, pyplot
from syslab.core.workloads import load_lengths, load_lmsys
from syslab.training.flexpipe import model as M
from syslab.training.flexpipe import plan as F

CLAIMS = (
    Claim("throughput-vs-static", "token throughput over the fastest static pipeline that fits the longest "
          "sequence (one mapping of any depth, the other GPUs as data parallelism, full recomputation on or off "
          "for the whole run)", paper=1.25, unit="x",
          expect=Expect(at_least=1.2), source="abstract: 1.25x on average over the state of the art (our notes' "
          "suggested claim)"),
    Claim("switches-per-10", "grow or shrink switches per 10 iterations", paper=10 / 37, unit="",
          expect=Expect(at_most=1.0), source="§6: a grow or shrink about every 37 iterations",
          kind=CHECK),  # a bound on churn: a static pipeline (0 switches) meets it
    Claim("decision-ms", "slowest FMOP + HBSA decision (Python, this machine)", paper=15, unit="ms",
          expect=Expect(at_most=50), source="§6: 15 ms per decision (745 ms brute force)", kind=CHECK),
    Claim("hbsa-gap", "largest iteration-time gap of HBSA's pick over brute force, 8-GPU instances", paper="small",
          unit="", expect=Expect(at_most=0.05), source="our notes' acceptance", kind=CHECK),  # a gap to the optimum
    Claim("live-params-equal", "REAL: max |parameter difference| after training through grow, shrink and back "
          "via host TwinLayers, against uninterrupted training (torch, float64)", paper="no loss impact", unit="",
          expect=Expect(at_most=1e-6), source="§5: live reconfiguration does not change training", kind=CHECK),
)

LONG_SHARE = 0.03          # share of mini-batches holding a long sequence (the paper: about 3%)


def workload(run: Run, job: M.Job, iterations: int) -> tuple[list[np.ndarray], str]:
    """Mini-batches from a mixture: LMSYS-Chat lengths (prompt + response) with, at a rate that puts a long
    sequence in about 3% of mini-batches, documents over 8K tokens from ``wlb_doc_lengths`` (capped at 32K).
    Neither real dataset alone matches the paper's FLANv2 statistics (LMSYS never exceeds 5K; the WLB
    documents put a long one in nearly every batch), so the mixture is calibrated to the paper's 3%."""
    rng = run.rng(1)
    if run.data.has("lmsys_lengths") and run.data.has("wlb_doc_lengths"):
        df = load_lmsys(run.data.path("lmsys_lengths", "lmsys.csv"))
        short = (df["prompt_tokens"] + df["output_tokens"]).to_numpy()
        docs = load_lengths(run.data.path("wlb_doc_lengths", "doc_lengths.json"))
        long = docs[docs > 8192]
        source = "LMSYS-Chat lengths mixed with WLB documents > 8K (calibrated to 3% long mini-batches)"
    else:
        short = np.maximum(64, rng.lognormal(6.7, 0.9, 50_000)).astype(np.int64)
        long = rng.integers(8193, 32769, 2_000)
        source = "SYNTHETIC: lognormal short lengths and uniform 8K-32K long ones (datasets not found)"
    return F.mixture_batches(short, long, job.batch, iterations, LONG_SHARE, rng), source


STATICS = (("static (fewest stages)", False, True), ("static (best fixed)", False, False),
           ("static + recompute (fewest stages)", True, True), ("static + recompute (best fixed)", True, False))
ABLATION = "static + recompute only when needed (best fixed)"


def statics(job: M.Job, batches: list[np.ndarray]) -> tuple[dict[str, tuple[F.Trace, M.Mapping | None]], str]:
    """The static baselines and the ablation by name, and the name of the claim's baseline (the fastest static)."""
    out = {name: F.static(job, batches, rc, fewest) for name, rc, fewest in STATICS}
    out[ABLATION] = F.static(job, batches, "when needed", fewest_stages=False)
    fitting = [name for name, _, _ in STATICS if out[name][0].steps]
    base = max(fitting, key=lambda name: out[name][0].throughput, default=STATICS[0][0])
    return out, base


def reproduce(run: Run) -> Result:
    result = Result(system="flexpipe")
    job = M.Job()
    iterations = 400 if run.quick else 2000
    batches, source = workload(run, job, iterations)
    mus = np.array([b.max() for b in batches])
    run.progress(f"{iterations} iterations: static baselines")
    static, base_name = statics(job, batches)
    base = static[base_name][0]
    start = static[ABLATION][1]
    if run.control:                         # the negative control: the static baseline in FlexPipe's slot
        result.findings += [CLAIMS[0].measure(base.throughput / base.throughput if base.steps else None,
                                              f"control: {base_name} in FlexPipe's slot"),
                            *(c.measure(None, "control: not run") for c in CLAIMS[1:])]
        return result
    run.progress("FlexPipe: FMOP + HBSA before every iteration")
    flex = F.flexpipe(job, batches, start, horizon=10)
    free = F.flexpipe(job, batches, start, horizon=10, guard=False)
    literal = F.flexpipe(job, batches, start, horizon=1, guard=False)
    run.progress("HBSA against brute force on 8-GPU instances")
    small = M.Job(layers=12, gpus=8, batch=16)
    picks = _gap_batches(batches, 4 if run.quick else 12)
    hb_space = list(F.hbsa_space(small))
    gaps = []
    for b in picks:
        b16 = b[:16]
        _, t_h = F.best(small, b16, hb_space)
        _, t_b = F.brute_force(small, b16)
        gaps.append(t_h / t_b - 1)
    run.progress("REAL: live reconfiguration of a torch model through host TwinLayers")
    from syslab.training.flexpipe import live
    demo = live.run()
    import torch
    demo32 = live.run(dtype=torch.float32)

    run.progress("sensitivity: mini-batch size and inter-node bandwidth")
    sweep = _sensitivity(run, job)
    paper_base = next((static[n][0] for n in ("static (fewest stages)", "static + recompute (fewest stages)")
                       if static[n][0].steps), F.Trace())            # the paper's: recomputation only if it must
    ablation = static[ABLATION][0]
    result.findings += [
        CLAIMS[0].measure(flex.throughput / base.throughput if base.steps else None,
                          f"{flex.throughput:,.0f} vs {base.throughput:,.0f} tokens/s ({base_name}; "
                          f"{'a' if static['static (best fixed)'][0].steps else 'no'} static mapping holds the "
                          f"longest sequence without recomputation). "
                          f"{_over(flex, paper_base)} over the paper's baseline (the fewest stages that fit); "
                          f"recomputing only when needed on one fixed mapping alone gives "
                          f"{_over(ablation, base)}, and FlexPipe switched mappings {flex.switches} time(s) "
                          f"(without its guard {_over(free, base)} with {free.switches} switch(es); the paper's "
                          f"one-iteration rule {_over(literal, base)}); {_flip(sweep)}"),
        CLAIMS[1].measure(10 * flex.switches / iterations, f"{flex.switches} switches, {flex.count('memopt')} "
                          f"memory-optimised iterations in {iterations}"),
        CLAIMS[2].measure(1000 * max(s.decide_s for s in flex.steps), f"median "
                          f"{1000 * float(np.median([s.decide_s for s in flex.steps])):.1f} ms over "
                          f"{2 * len(list(F.hbsa_space(job)))} candidates (mappings x recomputation off / on)"),
        CLAIMS[3].measure(max(gaps), f"{len(gaps)} mini-batches, {len(hb_space)} HBSA mappings vs "
                          f"{len(list(F.full_space(small)))}, each with and without recomputation"),
        CLAIMS[4].measure(demo["max_param_diff"], f"{demo['switches']} reconfigurations in {demo['iterations']} "
                          f"iterations, {demo['bytes_moved']:,} bytes copied from the host; replicas differ by "
                          f"{demo['replica_diff']:g}; in float32 the difference is {demo32['max_param_diff']:.1e}, the "
                          "rounding of sharded gradient sums amplified by Adam, with or without reconfiguration"),
    ]
    rows = []
    for name, (trace, mapping) in static.items():
        rows.append([name + (" = the claim's baseline" if name == base_name else ""), _fmt_map(mapping),
                     f"{trace.throughput:,.0f}" if trace.steps else "OOM", 0,
                     trace.count("memopt") if name == ABLATION else (len(trace.steps) if trace.steps and
                                                                     trace.steps[0].recompute else 0),
                     f"{trace.throughput / base.throughput:.3f}" if trace.steps and base.steps else "-"])
    for name, trace in (("FlexPipe (guarded, switch amortised over 10 iterations)", flex),
                        ("FlexPipe without the guard (amortised over 10)", free),
                        ("FlexPipe without the guard (the paper's one-iteration rule)", literal)):
        rows.append([name, f"{len(set(s.mapping for s in trace.steps))} mappings", f"{trace.throughput:,.0f}",
                     trace.switches, sum(s.recompute for s in trace.steps),
                     f"{trace.throughput / base.throughput:.3f}" if base.steps else "-"])
    result.tables.append(Table(
        f"Token throughput, GPT-3.35B-like on 16 modelled A100s, {iterations} iterations of {job.batch} sequences; "
        f"workload: {source}; {float((mus < 4096).mean()):.0%} of mini-batches have a longest sequence under 4K "
        f"(paper: 95%), {float((mus > 8192).mean()):.1%} over 8K",
        ["policy", "mapping ((layers, GPUs) per stage)", "tokens/s", "switches", "iterations recomputed",
         "vs the claim's baseline"], rows))
    result.tables.append(_why(job, batches))
    result.tables.append(sweep)
    result.metrics.update({"throughput": {r[0]: r[2] for r in rows}, "hbsa_gaps": gaps, "live": demo})
    result.figures.append(_figure(run, batches, flex, static))
    return result


def _over(trace: F.Trace, base: F.Trace) -> str:
    return f"{trace.throughput / base.throughput:.3f}x" if trace.steps and base.steps else "- (none fits)"


def _why(job: M.Job, batches: list[np.ndarray]) -> Table:
    """Iteration time of the even mappings on a typical and on the longest mini-batch, without and with
    recomputation: what a switch or a memory optimisation could win."""
    typical = batches[int(np.argsort([b.max() for b in batches])[len(batches) // 2])]
    longest = max(batches, key=lambda b: b.max())
    rows = []
    for stages in (1, 2, 4, 8, 16):
        mp = tuple((job.layers // stages, job.gpus // stages) for _ in range(stages))
        cells = []
        for b in (typical, longest):
            for rc in (False, True):
                cells.append(f"{M.iteration_s(job, mp, b, rc):.2f}" + ("" if M.fits(job, mp, b, rc) else " (OOM)"))
        rows.append([stages, _fmt_map(mp), *cells])
    return Table(f"Why: modelled iteration time (s) of even mappings on a median mini-batch (longest "
                 f"{typical.max():,}) and on the longest (longest {longest.max():,}), without and with full "
                 "recomputation; OOM = does not fit (the paper's memory model: every micro-batch in flight at the "
                 "longest length)", ["stages", "mapping", "median batch", "median, recomputed", "longest batch",
                                     "longest, recomputed"], rows)


SWEEP_BATCHES = (32, 128, 512)     # sequences per mini-batch; 32 is the reproduction's, the paper does not say
SWEEP_NICS = (2, 8)                # HDR NICs per 4-GPU node: 2 = the paper's 50 GB/s, 8 = one per GPU (DGX A100)


def _sensitivity(run: Run, job: M.Job) -> Table:
    """FlexPipe over the claim's static baseline as the two assumptions that decide what a switch can win vary:
    the mini-batch size (a longer iteration amortises the 0.8 s stall and the pipeline fill, and makes data
    parallelism's all-reduce relatively cheaper) and the inter-node bandwidth (shallow, data-parallel
    mappings pay an all-reduce over InfiniBand). Each cell is a fresh run on its own mixture of mini-batches
    (fewer iterations than the claim's, so the default cell need not equal it exactly)."""
    iterations = 50 if run.quick else 200
    batches_sizes = SWEEP_BATCHES[:2] if run.quick else SWEEP_BATCHES
    rows = []
    for batch in batches_sizes:
        for nics in SWEEP_NICS:
            j = dataclasses.replace(job, batch=batch, fabric=dataclasses.replace(job.fabric, nics_per_node=nics))
            batches, _ = workload(run, j, iterations)
            static, base_name = statics(j, batches)
            base, mapping = static[base_name]
            start = static[ABLATION][1]
            if not base.steps or start is None:
                rows.append([batch, nics, "none fits", "-", "-", "-", "-"])
                continue
            flex = F.flexpipe(j, batches, start, horizon=10)
            free = F.flexpipe(j, batches, start, horizon=10, guard=False)
            rows.append([batch, nics, f"{len(mapping)}{' + recompute' if base.steps[0].recompute else ''}",
                         len(start), round(float(flex.throughput / base.throughput), 3),
                         round(float(free.throughput / base.throughput), 3), f"{flex.switches} / {free.switches}"])
    return Table(f"Sensitivity: FlexPipe over the claim's static baseline by mini-batch size and InfiniBand NICs "
                 f"per 4-GPU node ({iterations} iterations per cell; the claim uses {job.batch} sequences and "
                 f"{job.fabric.nics_per_node} NICs)",
                 ["sequences per mini-batch", "HDR NICs per node", "static stages", "FlexPipe's first stages",
                  "FlexPipe / static", "FlexPipe without the guard / static", "switches (guarded / without)"], rows)


def _flip(sweep: Table) -> str:
    """Where the sweep's FlexPipe gain would clear the claim's band, from the table (not a fixed text)."""
    band = CLAIMS[0].expect.at_least
    cells = [(r[4], r[0], r[1], r[5]) for r in sweep.rows if isinstance(r[4], float)]
    if not cells:
        return "no swept configuration fits"
    best, batch, nics, _ = max(cells)
    free = max(c[3] for c in cells)
    remap = (f"; without the guard (free to remap) at most {free:.3f}x" if free > best else
             f"; without the guard (free to remap) it never does better (at most {free:.3f}x)")
    where = [f"{b} sequences, {n} NICs" for g, b, n, _ in cells if g >= band]
    if where:
        return f"the sensitivity table's gain clears {band}x at {'; '.join(where)} (best {best:.3f}x){remap}"
    return (f"no swept mini-batch size or inter-node bandwidth brings it to {band}x (best {best:.3f}x at {batch} "
            f"sequences, {nics} NICs per node){remap}")


def _gap_batches(batches: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Half short, half the longest mini-batches (memory binds there)."""
    order = sorted(range(len(batches)), key=lambda i: batches[i].max())
    return [batches[i] for i in order[:k // 2] + order[-(k - k // 2):]]


def _fmt_map(mapping) -> str:
    if mapping is None:
        return "none fits"
    return " ".join(f"({la},{g})" for la, g in mapping)


def _figure(run: Run, batches, flex: F.Trace, static):
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
    x = np.arange(len(batches))
    axes[0].plot(x, [b.max() for b in batches], lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("longest sequence")
    axes[1].step(x, [len(s.mapping) for s in flex.steps], where="post", label="FlexPipe stages")
    for name, (_, mapping) in static.items():
        if mapping is not None:
            axes[1].axhline(len(mapping), ls="--", lw=0.8, label=f"{name} ({len(mapping)})", color="gray")
    mem = [i for i, s in enumerate(flex.steps) if s.recompute]
    axes[1].scatter(mem, [len(flex.steps[i].mapping) for i in mem], color="C3", s=12, label="memory-optimised")
    axes[1].set_ylabel("pipeline stages")
    axes[1].set_xlabel("iteration")
    axes[1].legend(fontsize=7)
    return run.save_figure(fig, "mapping", "The next mini-batch's longest sequence (top) and the pipeline depth "
                           "FlexPipe picks for it (bottom), against the static baselines.")
