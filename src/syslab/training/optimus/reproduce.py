"""Optimus's reproduction: ViT-22B + GPT-175B on one modelled 8-stage x TP-8 H100 pipeline at 32, 24 and 16
micro-batches of 2 sequences (the paper's 1,536, 2,048 and 3,072 GPUs at batch 1,536: DP = 24, 32, 48), the
paper's Megatron-LM and Megatron-LM balanced baselines (Appendix D: plain 1F1B with the encoder in the first
stage; interleaved 1F1B with V = 12 over a min-max partition), coarse and fine bubble scheduling against the
dependency points of GetEncLLMDep (with an ablation at Megatron's warm-up counts), and how the result moves with
the encoder's size.

Negative control (``run.control``): Optimus's planner and bubble scheduler (coarse and fine) are replaced by the
balanced min-max partition, the strongest baseline (the paper's "Megatron-LM balanced"), on the same jobs."""

from __future__ import annotations

from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.run import Run, pyplot
from syslab.training.optimus import model as M
from syslab.training.optimus import schedule as S

CLAIMS = (
    Claim("cut-vs-megatron-16", "iteration-time cut vs Megatron-LM (encoder in the first stage), 16 micro-batches",
          paper=1 - 4.87 / 5.91, unit="", expect=Expect(at_least=0.15),
          source="Table (3,072 GPUs): 5.91 s -> 4.87 s; abstract: 20.5-21.3% acceleration (1.21x speed-up)",
          kind=CHECK),  # the balanced partition alone (the control) clears it: it measures Megatron's stage 0
    Claim("cut-vs-balanced-16", "iteration-time cut vs the balanced (min-max) layer partition, 16 micro-batches",
          paper=1 - 4.87 / 5.87, unit="", expect=Expect(at_least=0.10), source="Table (3,072 GPUs): 5.87 s -> 4.87 s"),
    Claim("gain-grows", "speed-up over balanced at 16 micro-batches minus at 32", paper=5.87 / 4.87 - 10.43 / 9.80,
          unit="x", expect=Expect(at_least=0.01), source="Table: 1,536 GPUs (32 micro-batches) to 3,072 (16)"),
    Claim("fine-beats-coarse", "scheduling efficiency, fine minus coarse-only, 16 micro-batches",
          paper=0.850 - 0.687, unit="", expect=Expect(at_least=0.01), source="§6 scheduling efficiency table"),
    Claim("dependency-problems", "encoder-LLM dependency violations and kernel overlaps across every packed plan",
          paper=0, unit="", expect=Expect(at_most=0), source="CheckEncLLMDep; the placement rule", kind=CHECK),
    Claim("memory-overhead", "extra encoder model states of the chosen plans over the LLM's", paper=0.12, unit="",
          expect=Expect(at_most=0.15), source="§4.1: measured overhead <= 12%",
          kind=CHECK),  # the planner prunes plans above 15%: it cannot fail
)

MICROBATCHES = (32, 24, 16)
QUICK_MICROBATCHES = (32, 16)   # the two the claims compare; each count costs ~90 pipeline simulations (GetEncLLMDep)
SCALES = (0.25, 0.5, 1.0, 2.0)


def compare(mbs: int, enc_scale: float = 1.0, control: bool = False, timeline: S.LLMTimeline | None = None) -> dict:
    """Both baselines and Optimus (coarse and fine) on one job; ``control`` puts balanced in Optimus's slots
    (no plan, no packing). ``timeline``: the LLM's dependency points if already found (they do not depend on
    the encoder)."""
    job = M.LLMJob(mbs, dp=M.GLOBAL_BATCH // (mbs * M.LLMJob.micro_batch_size), enc_scale=enc_scale)
    meg, meg_sch = S.megatron(job)
    bal, bal_sch, sizes = S.balanced(job)
    if control:                                          # the negative control: balanced in Optimus's slots
        timeline = S.llm_timeline(job)
        plan, fine_s, coarse_s, fine, coarse, tried = None, bal, bal, None, None, 0
    else:
        timeline = S.get_enc_llm_dep(job) if timeline is None else timeline
        plan, fine, tried = S.optimus(job, fine=True, timeline=timeline)
        _, coarse, _ = S.optimus(job, fine=False, timeline=timeline)
        fine_s, coarse_s = fine.iteration_s, coarse.iteration_s
    return {"job": job, "megatron": meg, "balanced": bal, "optimus": fine_s, "coarse": coarse_s,
            "llm_only": S.llm_only(job, timeline), "plan": plan, "packed": fine, "coarse_packed": coarse,
            "tried": tried, "eff_fine": S.efficiency(job, fine_s, timeline),
            "eff_coarse": S.efficiency(job, coarse_s, timeline), "balanced_sizes": sizes,
            "megatron_schedule": meg_sch, "timeline": timeline}


def reproduce(run: Run) -> Result:
    result = Result(system="optimus")
    runs = {}
    counts = QUICK_MICROBATCHES if run.quick else MICROBATCHES
    for mbs in counts:
        run.progress(f"{mbs} micro-batches: baselines, planner, coarse and fine packing")
        runs[mbs] = compare(mbs, control=run.control)
    problems = []
    for r in runs.values():
        for p in (r["packed"], r["coarse_packed"]):
            if p is not None:
                problems += S.check_dependencies(p) + S.check_no_overlap(r["job"], p)
    scales = SCALES if not run.quick else (0.25, 1.0, 2.0)
    run.progress("encoder-size sensitivity at 16 micro-batches")
    sens = {s: (runs[16] if s == 1.0 else compare(16, s, run.control, runs[16]["timeline"])) for s in scales}
    r16, r32 = runs[16], runs[32]
    result.findings += [
        CLAIMS[0].measure(1 - r16["optimus"] / r16["megatron"], f"{r16['megatron']:.2f} s -> {r16['optimus']:.2f} s "
                          f"({r16['megatron'] / r16['optimus']:.2f}x); the balanced partition alone cuts "
                          f"{1 - r16['balanced'] / r16['megatron']:.0%}: the paper's Megatron-LM (1F1B, the "
                          f"{M.ENC_LAYERS}-layer encoder in stage 0 beside its 12 LLM layers) makes stage 0 "
                          f"{_stage0_load(r16['job']):.1f}x the others at the paper's ViT-22B layer times, yet the "
                          "paper reports it within 1% of balanced, so compare against balanced"),
        CLAIMS[1].measure(1 - r16["optimus"] / r16["balanced"], f"{r16['balanced']:.2f} s -> {r16['optimus']:.2f} s "
                          f"({r16['balanced'] / r16['optimus']:.2f}x)"),
        CLAIMS[2].measure(r16["balanced"] / r16["optimus"] - r32["balanced"] / r32["optimus"],
                          ", ".join(f"{m}: {runs[m]['balanced'] / runs[m]['optimus']:.3f}x" for m in counts)),
        CLAIMS[3].measure(r16["eff_fine"] - r16["eff_coarse"], f"fine {r16['eff_fine']:.0%}, coarse "
                          f"{r16['eff_coarse']:.0%} of the encoder's per-device work hidden"),
    ]
    if run.control:                                      # no plan was made, no packing done: the checks are moot
        result.findings += [CLAIMS[4].measure(None, "control: nothing packed"), CLAIMS[5].measure(None, "control")]
        return result
    run.progress("GetEncLLMDep ablation: Megatron's warm-up counts at 16 micro-batches")
    plain = S.get_enc_llm_dep(r16["job"], adjust=False)
    abl = {"adjusted": (r16["plan"], r16["packed"], r16["timeline"]),
           "Megatron's": (*S.optimus(r16["job"], fine=True, timeline=plain)[:2], plain)}
    problems += S.check_dependencies(abl["Megatron's"][1]) + S.check_no_overlap(r16["job"], abl["Megatron's"][1])
    result.findings += [
        CLAIMS[4].measure(len(problems), "; ".join(problems[:3]) or f"{2 * len(runs) + 1} packed plans checked"),
        CLAIMS[5].measure(max(S.memory_overhead(r["job"], r["plan"]) for r in runs.values()),
                          ", ".join(f"{m}: {runs[m]['plan'].pipelines} encoder pipeline(s)" for m in counts)),
    ]
    result.tables.append(Table(
        "Iteration time (s) of one modelled GPT-175B + ViT-22B pipeline (8 stages x TP 8 H100s, 2 sequences per "
        "micro-batch, DP all-gather and reduce-scatter; Megatron-LM: 1F1B with the encoder in stage 0; balanced, "
        "Optimus and LLM alone: interleaved 1F1B, V = 12); LLM alone = no encoder at all",
        ["micro-batches", "Megatron-LM", "balanced", "Optimus coarse", "Optimus", "LLM alone", "vs Megatron",
         "vs balanced", "efficiency coarse / fine", "plan (encoder stages, split)", "plans tried"],
        [[m, f"{r['megatron']:.3f}", f"{r['balanced']:.3f}", f"{r['coarse']:.3f}", f"{r['optimus']:.3f}",
          f"{r['llm_only']:.3f}", f"{1 - r['optimus'] / r['megatron']:.1%}", f"{1 - r['optimus'] / r['balanced']:.1%}",
          f"{r['eff_coarse']:.0%} / {r['eff_fine']:.0%}", f"{r['plan'].enc_pp}, {r['plan'].split}", r["tried"]]
         for m, r in runs.items()]))
    result.tables.append(Table(
        "Sensitivity: encoder work per micro-batch (1 = the paper's 1.4 / 2.0 ms per ViT-22B layer), 16 micro-batches",
        ["encoder scale", "encoder / LLM work", "balanced", "Optimus", "cut vs balanced", "efficiency"],
        [[f"{s:g}x", f"{S.encoder_share_per_device(r['job']) / (r['llm_only'] - 2 * r['job'].all_gather_s):.0%}",
          f"{r['balanced']:.3f}", f"{r['optimus']:.3f}", f"{1 - r['optimus'] / r['balanced']:.1%}",
          f"{r['eff_fine']:.0%}"] for s, r in sens.items()]))
    result.tables.append(Table(
        "GetEncLLMDep at 16 micro-batches: Optimus (fine) against the dependency points of the adjusted warm-up "
        "counts and of Megatron's; F_i = when stage 0 starts chunk 0's forward of the i-th micro-batch",
        ["warm-up counts", "per stage", "F_9..F_16 (s, LLM start 0)", "LLM makespan (s)", "LLM start (s)",
         "iteration (s)", "plan"],
        [[k, " ".join(map(str, t.warmups)), " ".join(f"{f:.3f}" for f in t.forward_points[8:]), f"{t.makespan:.4f}",
          f"{p.llm_start:.3f}", f"{p.iteration_s:.4f}", f"{pl.enc_pp}, {pl.split}"] for k, (pl, p, t) in abl.items()]))
    result.metrics.update({str(m): {k: r[k] for k in ("megatron", "balanced", "optimus", "coarse", "llm_only",
                                                       "eff_fine", "eff_coarse")} for m, r in runs.items()})
    result.metrics["getencllmdep_16"] = {k: p.iteration_s for k, (_, p, _) in abl.items()}
    result.figures += [_timeline(run, r16), _lines(run, runs, sens)]
    return result


def _stage0_load(job: M.LLMJob) -> float:
    """Megatron-LM's stage 0 (encoder + its LLM layers) over an LLM-only stage, forward plus backward."""
    llm = job.layers // job.pp * (job.layer_fwd_s() + job.layer_bwd_s())
    enc = job.enc.depth * (M.encoder_layer_s(False, job.enc_scale, job.enc) + M.encoder_layer_s(True, job.enc_scale,
                                                                                                job.enc))
    return (llm + enc) / llm


def _timeline(run: Run, r: dict):
    plt = pyplot()
    job, packed = r["job"], r["packed"]
    busy = r["timeline"].busy(packed.llm_start)
    fig, ax = plt.subplots(figsize=(11, 4))
    for d in range(job.pp):
        c = busy[d]["compute"]
        ax.broken_barh([(a, b - a) for a, b in c], (d - 0.4, 0.45), color="#4C72B0")
        enc = [(s, e - s) for dev, n, s, e, comm in packed.placed if dev == d and not comm]
        ax.broken_barh(enc, (d + 0.05, 0.35), color="#937860")
    ax.set_yticks(range(job.pp), [f"stage {d}" for d in range(job.pp)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time (s); blue: LLM compute kernels, brown: encoder compute kernels in the LLM's idle time")
    ax.set_title(f"Optimus, {job.microbatches} micro-batches: LLM starts at {packed.llm_start:.3f} s, iteration "
                 f"{packed.iteration_s:.3f} s", fontsize=9)
    return run.save_figure(fig, "timeline", "Optimus's packed iteration: encoder kernels fill the all-gather window, "
                           "the warm-up and cool-down bubbles and the gaps between LLM kernels.")


def _lines(run: Run, runs: dict, sens: dict):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    ms = list(runs)
    for key, label in (("megatron", "Megatron-LM"), ("balanced", "balanced"), ("coarse", "Optimus coarse"),
                       ("optimus", "Optimus"), ("llm_only", "LLM alone")):
        axes[0].plot(ms, [runs[m][key] for m in ms], marker="o", label=label)
    axes[0].set_xlabel("micro-batches per iteration")
    axes[0].set_ylabel("iteration time (s)")
    axes[0].legend(fontsize=8)
    ss = list(sens)
    axes[1].plot(ss, [1 - sens[s]["optimus"] / sens[s]["balanced"] for s in ss], marker="o")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("encoder work per micro-batch (x the paper's ViT-22B)")
    axes[1].set_ylabel("iteration-time cut vs balanced")
    return run.save_figure(fig, "iteration", "Left: iteration time against micro-batches per iteration. Right: the cut "
                           "over the balanced partition as the encoder grows relative to the LLM (16 micro-batches).")
