"""CrossPipe's reproduction: the paper's schedule-sensitivity setting (4 stages over 2 datacenters, 8
micro-batches, F = B = W = 1) swept over cross-DC latency and bandwidth cost, static schedules against
CrossPipe's greedy, and the greedy against the MILP optimum on small instances.

Negative control (``run.control``): CrossPipe's delay-aware greedy is replaced by the static zero-delay order of
the same traversal pattern (ZB-H1 for UD, ZB-V for Wave), with the same B/W split, memory budget and links."""

from __future__ import annotations

from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.core.run import Run, pyplot
from syslab.training import pipeline as P
from syslab.training.crosspipe import milp as M
from syslab.training.crosspipe import schedule as S

CLAIMS = (
    Claim("zero-delay-vs-zbh1", "CrossPipe's greedy makespan over ZB-H1's, no cross-DC delay", paper="~1",
          unit="x", expect=Expect(at_most=1.05), source="our notes' acceptance (greedy within 5% of ZB-H1)",
          kind=CHECK),  # parity at no delay, not the paper's result
    Claim("cut-vs-1f1b-lat2", "makespan cut vs 1F1B at T_lat/T_F = 2 (no bandwidth cost), same memory",
          paper=0.336, unit="", expect=Expect(at_least=0.15), source="abstract: up to 33.6% vs traditional schedules",
          kind=CHECK),  # ZB-H1's static order (the control) alone clears 0.15 here: it measures the B/W split
    Claim("best-cut-vs-1f1b", "largest makespan cut vs 1F1B over the T_lat x T_bw sweep", paper=0.336, unit="",
          expect=Expect(at_least=0.25), source="abstract: up to 33.6%"),
    Claim("best-cut-vs-best-static", "largest makespan cut vs the best static schedule (1F1B, interleaved, ZB-H1, "
          "ZB-V) in a sweep cell", paper=0.219, unit="", expect=Expect(at_least=0.10),
          source="§5: up to 21.9% vs static schedules with the same communication (band: about half of it)"),
    Claim("greedy-vs-milp", "worst ratio of the greedy's makespan to the MILP's on small instances (UD)",
          paper="near-optimal", unit="x", expect=Expect(at_most=1.10), source="§4.2; our notes: within ~10%",
          kind=CHECK),  # a gap to the optimum; at 4 x 4 ZB-H1's static order (the control) is within 10% too
    Claim("milp-not-worse", "most the MILP's schedule exceeds the greedy's (it must never)", paper=0.0, unit="",
          expect=Expect(at_most=1e-6), source="§4.1: the MILP is optimal under the model", kind=CHECK),
    Claim("loop-most-sensitive", "Loop's delay sensitivity (makespan at T_lat = T_bw = 2 over none) divided by "
          "the largest of UD's and Wave's", paper="> 1", unit="x", expect=Expect(at_least=1.0),
          source="§5.1 sensitivity study: Loop is the most delay-sensitive pattern", kind=CHECK),
    Claim("split-beats-combined", "cells of the sweep where splitting W out is no faster than a combined "
          "backward (any pattern)", paper=0, unit="", expect=Expect(at_most=0),
          source="§5.1: splitting W out beats a combined backward", kind=CHECK),
    Claim("schedule-problems", "validator problems (dependencies, overlaps, memory over budget) across every "
          "schedule produced", paper=0, unit="", expect=Expect(at_most=0), source="our notes' acceptance", kind=CHECK),
)

LEVELS = (0.0, 0.5, 1.0, 2.0)
# The control's stand-in for each of CrossPipe's schedules: the static order designed for the same pattern.
CONTROL = {"CrossUD": "ZBH1", "CrossUDSub": "ZBH1", "CrossWave": "ZBV"}


def reproduce(run: Run) -> Result:
    result = Result(system="crosspipe")

    def schedule(name: str, pp: int, m: int, delay: S.Delay) -> P.Schedule:
        return S.run(CONTROL.get(name, name) if run.control else name, pp, m, delay)  # control: static order

    pp, m = 4, 8
    budget = S.memory_budget(pp)
    run.progress(f"sweep: {len(LEVELS) ** 2} delay cells x {len(S.STATIC) + len(S.DYNAMIC)} schedules")
    cells: dict[tuple[float, float], dict[str, P.Schedule]] = {}
    problems: list[str] = []
    for lat in LEVELS:
        for bw in LEVELS:
            runs = {n: schedule(n, pp, m, S.Delay(lat, bw)) for n in S.STATIC + S.DYNAMIC}
            for n, sch in runs.items():
                limit = None if n == "IV1F1B" else budget               # interleaved needs more; shown apart
                problems += [f"{n} at ({lat}, {bw}): {p}" for p in P.validate(sch, memory_limit=limit)]
            cells[(lat, bw)] = runs
    span = {c: {n: s.makespan for n, s in runs.items()} for c, runs in cells.items()}
    best = {c: min(S.DYNAMIC, key=lambda n: v[n]) for c, v in span.items()}
    cut_1f1b = {c: 1 - v[best[c]] / v["1F1B"] for c, v in span.items()}
    cut_static = {c: 1 - v[best[c]] / min(v[n] for n in S.STATIC) for c, v in span.items()}

    run.progress("sensitivity study: greedy on UD / Wave / Loop, with and without the B/W split")
    study = {(pat, split): {c: S.pattern_makespan(pat, pp, m, S.Delay(*c), split) for c in cells}
             for pat in ("UD", "Wave", "Loop") for split in (True, False)}
    sens = {pat: study[(pat, True)][(2.0, 2.0)] / study[(pat, True)][(0.0, 0.0)] for pat in ("UD", "Wave", "Loop")}
    split_losses = sum(study[(pat, True)][c] >= study[(pat, False)][c] - 1e-9 for pat in ("UD", "Wave", "Loop")
                       for c in cells)

    run.progress("MILP (HiGHS) on small instances")
    milp_pp, milp_m, limit_s = (4, 4, 10.0) if run.quick else (4, 8, 60.0)
    milp_cells = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (1.0, 1.0), (2.0, 2.0)]
    milp_rows, ratios, excess, static_ratios = [], [], [], []
    for c in milp_cells:
        st = S.stages(milp_pp, milp_m, S.Delay(*c))
        sol = M.solve(st, S.memory_budget(milp_pp), time_limit_s=limit_s)
        greedy = schedule("CrossUD", milp_pp, milp_m, S.Delay(*c)).makespan
        if sol.schedule is not None:
            problems += [f"MILP at {c}: {p}" for p in P.validate(sol.schedule, memory_limit=S.memory_budget(milp_pp))]
            ratios.append(greedy / sol.makespan)
            static_ratios.append(S.run("ZBH1", milp_pp, milp_m, S.Delay(*c)).makespan / sol.makespan)
            excess.append(sol.makespan - greedy)
        milp_rows.append([f"{c[0]:g}", f"{c[1]:g}", f"{greedy:g}", _fmt(sol.makespan), _fmt(sol.lower_bound),
                          "yes" if sol.optimal else f"no (gap {sol.gap:.1%})" if sol.gap is not None else "no",
                          sol.binaries, f"{sol.solve_s:.2f}"])

    zero = span[(0.0, 0.0)]
    lat2 = (2.0, 0.0)
    top = max(cut_1f1b, key=cut_1f1b.get)
    top_static = max(cut_static, key=cut_static.get)
    result.findings += [
        CLAIMS[0].measure(zero[best[(0.0, 0.0)]] / zero["ZBH1"],
                          f"{best[(0.0, 0.0)]} {zero[best[(0.0, 0.0)]]:g} vs ZB-H1 {zero['ZBH1']:g} (units of T_F, "
                          f"ZB-H1's bound 3m + p - 1 = {3 * m + pp - 1})"),
        CLAIMS[1].measure(cut_1f1b[lat2], f"{best[lat2]} {span[lat2][best[lat2]]:g} vs 1F1B {span[lat2]['1F1B']:g}; "
                          f"part of it is the B/W split alone (at no delay the cut is {cut_1f1b[(0.0, 0.0)]:.0%})"),
        CLAIMS[2].measure(cut_1f1b[top], f"at T_lat = {top[0]:g}, T_bw = {top[1]:g}: {best[top]} "
                          f"{span[top][best[top]]:g} vs 1F1B {span[top]['1F1B']:g}; ZB-H1's static order alone cuts "
                          f"{1 - span[top]['ZBH1'] / span[top]['1F1B']:.0%} there (the B/W split)"),
        CLAIMS[3].measure(cut_static[top_static], f"at T_lat = {top_static[0]:g}, T_bw = {top_static[1]:g}: "
                          f"{best[top_static]} vs the best static "
                          f"{min(S.STATIC, key=lambda n: span[top_static][n])}"),
        CLAIMS[4].measure(max(ratios) if ratios else None,
                          f"{len(ratios)} of {len(milp_cells)} instances ({milp_pp} stages x {milp_m} micro-batches) "
                          f"solved within {limit_s:g} s; ZB-H1's static order: worst ratio "
                          f"{max(static_ratios, default=float('nan')):.3f}"),
        CLAIMS[5].measure(max(excess) if excess else None, "the MILP is not told the greedy's answer (its big-M "
                          "is the serial length), so a worse result would expose a modelling or solver error"),
        CLAIMS[6].measure(sens["Loop"] / max(sens["UD"], sens["Wave"]),
                          "makespan ratio (2, 2) over (0, 0): " + ", ".join(f"{k} {v:.2f}x" for k, v in sens.items())),
        CLAIMS[7].measure(split_losses, f"{3 * len(cells)} pattern x delay cells compared"),
        CLAIMS[8].measure(len(problems), "; ".join(problems[:3]) or f"{sum(len(r) for r in cells.values())} sweep "
                          f"schedules and {len(ratios)} MILP schedules checked"),
    ]
    result.tables.append(Table(
        f"Makespan (units of T_F) of one iteration, {pp} stages over 2 DCs, {m} micro-batches; memory budget "
        f"{budget:g} micro-batches' activations per device (interleaved 1F1B needs "
        f"{max(P.activation_peaks(cells[(0.0, 0.0)]['IV1F1B']).values()):g}); best = CrossPipe's pick",
        ["T_lat/T_F", "T_bw/T_F", *S.STATIC, *S.DYNAMIC, "best", "cut vs 1F1B", "cut vs best static"],
        [[f"{c[0]:g}", f"{c[1]:g}", *(f"{v[n]:g}" for n in S.STATIC + S.DYNAMIC), best[c],
          f"{cut_1f1b[c]:.1%}", f"{cut_static[c]:.1%}"] for c, v in span.items()]))
    result.tables.append(Table(
        "Sensitivity study: the greedy on each traversal pattern, slowdown over ZB-V at no delay "
        f"({zero['ZBV']:g} T_F); split = B/W split",
        ["pattern", "split", *(f"({c[0]:g}, {c[1]:g})" for c in cells)],
        [[pat, "yes" if split else "no", *(f"{v / zero['ZBV']:.2f}" for v in row.values())]
         for (pat, split), row in study.items()]))
    result.tables.append(Table(
        f"Greedy (CrossUD) vs the MILP optimum, {milp_pp} stages x {milp_m} micro-batches, UD pattern, HiGHS with a "
        f"{limit_s:g} s limit",
        ["T_lat/T_F", "T_bw/T_F", "greedy", "MILP", "MILP bound", "proved optimal", "binaries", "solve s"],
        milp_rows))
    result.tables.append(_operating_points(pp, m))
    result.metrics.update({"makespan": {f"{c[0]:g},{c[1]:g}": v for c, v in span.items()},
                           "sensitivity": sens, "milp_ratio": ratios})
    result.figures += [_gantt_figure(run, cells[lat2], lat2), _sweep_figure(run, span, study, zero["ZBV"])]
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# Where real cross-DC jobs sit in the sweep: Llama-3-70B, 4,096-token micro-batches, PP = 4 over 2 DCs,
# TP = 8 H100s per stage. T_F is one stage's forward pass on the shared GPU cost model (``core.gpu``: its GEMMs,
# causal attention, elementwise passes and tensor-parallel all-reduces, a quarter of the layers). One
# activation message is seq x hidden x 2 bytes (bf16). Light in fibre: ~2e8 m/s (refractive index ~1.5).
WANS = (("metro, 50 km, 400 Gb/s", 50, 400), ("regional, 1,000 km, 100 Gb/s", 1000, 100),
        ("continental, 4,000 km, 100 Gb/s", 4000, 100), ("intercontinental, 10,000 km, 25 Gb/s", 10000, 25))


def operating_point(distance_km: float, wan_gbit_s: float, pp: int = 4, tp: int = 8, seq: int = 4096,
                    model_name: str = "llama3-70b", gpu_name: str = "H100-SXM") -> tuple[float, float, float]:
    """(T_F seconds, T_lat / T_F, T_bw / T_F) for one stage of ``model_name`` on ``tp`` GPUs per stage."""
    from syslab.core.gpu import ForwardModel

    t = model(model_name)
    t_f = ForwardModel(t, gpu(gpu_name), tp).forward_s(seq, attn_pairs=seq * (seq + 1) / 2, mean_keys=seq / 2) / pp
    latency = distance_km * 1e3 / 2e8
    serial = seq * t.hidden * 2 / (wan_gbit_s * 1e9 / 8)
    return t_f, latency / t_f, serial / t_f


def _operating_points(pp: int, m: int) -> Table:
    rows = []
    for label, km, gbit in WANS:
        t_f, lat, bw = operating_point(km, gbit, pp)
        runs = {n: S.run(n, pp, m, S.Delay(lat, bw)).makespan for n in ("1F1B", "ZBH1", *S.DYNAMIC)}
        crosspipe = min(runs[n] for n in S.DYNAMIC)
        rows.append([label, f"{t_f * 1e3:.0f}", f"{lat:.2f}", f"{bw:.2f}", f"{1 - crosspipe / runs['1F1B']:.1%}",
                     f"{1 - crosspipe / runs['ZBH1']:.1%}"])
    return Table("Where real links sit: Llama-3-70B, 4K-token micro-batches, 4 stages of 8 H100s (T_F from core.gpu), "
                 "2 DCs; our modelled cut at that exact point",
                 ["WAN", "T_F (ms)", "T_lat/T_F", "T_bw/T_F", "cut vs 1F1B", "cut vs ZB-H1"], rows)


def _gantt_figure(run: Run, runs: dict[str, P.Schedule], cell: tuple[float, float]):
    plt = pyplot()
    names = ("1F1B", "ZBH1", "ZBV", "CrossUD", "CrossWave")
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.25 * len(names) + 1.2), sharex=True)
    for ax, name in zip(axes, names, strict=True):
        P.plot_gantt(ax, runs[name], f"{name}: {runs[name].makespan:g} T_F", links=False)
    axes[-1].set_xlim(0, max(runs[n].makespan for n in names))          # shared axis: fit the longest
    axes[-1].set_xlabel(f"time (T_F); cross-DC latency {cell[0]:g} T_F between dev 1 and dev 2")
    return run.save_figure(fig, "gantt", "One iteration under a cross-DC latency of 2 forward times: static "
                           "schedules stretch, CrossPipe's greedy reorders work around the delay (blue F, green B, "
                           "orange W; numbers are micro-batches).")


def _sweep_figure(run: Run, span, study, zbv0: float):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    lats = LEVELS
    for name in (*S.STATIC, "best CrossPipe"):
        ys = [min(span[(lat, 0.0)][n] for n in S.DYNAMIC) if name == "best CrossPipe" else span[(lat, 0.0)][name]
              for lat in lats]
        axes[0].plot(lats, ys, marker="o", lw=2.2 if name == "best CrossPipe" else 1.2, label=name)
    axes[0].set_xlabel("cross-DC latency T_lat / T_F (no bandwidth cost)")
    axes[0].set_ylabel("iteration makespan (T_F)")
    axes[0].legend(fontsize=8)
    for (pat, split), row in study.items():
        if split:
            axes[1].plot(lats, [row[(lat, lat)] / zbv0 for lat in lats], marker="o", label=f"greedy on {pat}")
    axes[1].set_xlabel("T_lat / T_F = T_bw / T_F")
    axes[1].set_ylabel("slowdown over ZB-V at no delay")
    axes[1].legend(fontsize=8)
    return run.save_figure(fig, "sweep", "Left: makespan against cross-DC latency, static schedules and CrossPipe's "
                           "pick. Right: the sensitivity study's traversal patterns under growing latency and "
                           "bandwidth cost (Loop degrades fastest).")
