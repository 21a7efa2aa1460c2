"""DeDe's reproduction: traffic engineering on the real UsCarrier (and, at full scale, Kdl) WAN with gravity
traffic at growing sizes, DeDe's ADMM in worker processes against the monolithic LP on HiGHS and against
POP's random partitioning; cluster scheduling with max-min fairness on the real throughput matrix.

Negative control (``run.control``): DeDe's arm of each comparison runs that comparison's baseline: HiGHS's
solution stands in for DeDe's against HiGHS (times, gaps), POP-16's against POP-16; the worker scaling (a
check) is skipped."""

from __future__ import annotations

import math
import os

from syslab.cloud.dede import cluster as C
from syslab.cloud.dede import te as T
from syslab.cloud.dede.admm import Solution
from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.run import Run, pyplot

CLAIMS = (
    Claim("te-gap", "REAL: DeDe's total flow below the HiGHS optimum after the fix pass, largest TE instance",
          paper="near-optimal (higher quality than the baselines)", unit="%", expect=Expect(at_most=2),
          source="abstract; our notes' acceptance: within 2% of optimal",
          kind=CHECK),  # agreement with the reference optimum, which HiGHS itself meets
    Claim("te-time-ratio", "REAL: DeDe's time to within 2% of the optimum over HiGHS's solve time, largest TE "
          "instance", paper="significant speedups (up to 100x, third-party summary)", unit="x",
          expect=Expect(at_most=0.5), source="abstract; our notes' acceptance: <= 0.5x at the largest size"),
    Claim("te-speedup-grows", "REAL: speed-up over HiGHS at the largest TE size over that at the smallest",
          paper="speed-up grows with scale", unit="x", expect=Expect(at_least=2),
          source="§1 (solvers outpaced at scale); our notes' acceptance"),
    Claim("workers-speedup", "REAL: ADMM iteration time with 1 worker process over 2", paper="subproblems solved "
          "in parallel", unit="x", expect=Expect(at_least=1.6), source="§3; our notes' acceptance: >= 1.6x",
          kind=CHECK),  # DeDe's parallel scaling against itself: no baseline arm
    Claim("pop-gap-excess", "REAL: POP-16's optimality gap minus DeDe's, same TE instance", paper="DeDe allocates "
          "better than POP", unit="points", expect=Expect(at_least=1), source="§6 baselines; our notes"),
    Claim("cluster-gap", "REAL: DeDe's max-min fairness level below HiGHS's, cluster scheduling on the real "
          "throughput matrix", paper="near-optimal", unit="%", expect=Expect(at_most=2),
          source="abstract; our notes' acceptance", kind=CHECK),  # agreement with the reference optimum
    Claim("cluster-time-ratio", "REAL: DeDe's time to within 2% over HiGHS's, cluster scheduling",
          paper="significant speedups", unit="x", expect=Expect(at_most=0.5),
          source="abstract; as for TE, <= 0.5x (a tie with HiGHS is no speed-up)"),
)

QUICK_SIZES = (("UsCarrier", 1000), ("UsCarrier", 2000), ("UsCarrier", 4000), ("UsCarrier", 8000))
FULL_SIZES = (("UsCarrier", 2000), ("UsCarrier", 4000), ("UsCarrier", 8000), ("UsCarrier", 16000),
              ("Kdl", 20000))
SCALING_ITERATIONS = 30
SCALING_REPEATS = 3


def worker_scaling(p: T.TEProblem, workers: int) -> dict[int, float]:
    """Seconds per ADMM iteration with 1 and ``workers`` processes: the fastest of a few interleaved runs (the
    least disturbed by anything else on the machine)."""
    times: dict[int, list[float]] = {w: [] for w in sorted({1, workers})}
    for _ in range(SCALING_REPEATS):
        for w in times:
            times[w].append(T.solve_admm(p, workers=w, max_iter=SCALING_ITERATIONS, eps=0.0).time_s)
    return {w: min(t) / SCALING_ITERATIONS for w, t in times.items()}


def time_to(solution: Solution, target: float) -> float:
    """Seconds until the fixed (feasible) objective first reached ``target``: from the ADMM history, or the
    whole solve if only the final answer reached it (a one-shot solver); inf if it never did."""
    final = solution.time_s if solution.objective >= target else math.inf
    return next((row[4] for row in solution.history if row[5] >= target), final)


def te_instance(run: Run, topology: str, pairs: int) -> T.TEProblem:
    g = T.load_topology(run.data.path("dede_inputs", f"{topology}.json"))
    return T.build(g, T.gravity_demands(g, run.rng(1), pairs=pairs))


def reproduce(run: Run) -> Result:
    result = Result(system="dede")
    workers = min(2, os.cpu_count() or 1)
    rows = []
    largest = None
    for topology, pairs in QUICK_SIZES if run.quick else FULL_SIZES:
        run.progress(f"TE {topology}, {pairs} demand pairs: paths, HiGHS, DeDe with {workers} workers")
        p = te_instance(run, topology, pairs)
        opt = T.solve_highs(p)
        dede = opt if run.control else T.solve_admm(p, workers=workers)   # control: HiGHS in DeDe's slot
        to2 = time_to(dede, 0.98 * opt.objective)
        rows.append({"topology": topology, "pairs": pairs, "paths": len(p.path_commodity),
                     "entries": len(p.entry_edge), "highs_s": opt.time_s, "dede_s": dede.time_s, "dede_to2_s": to2,
                     "iterations": dede.iterations, "gap_pct": 100 * (1 - dede.objective / opt.objective),
                     "violation": p.violation(dede.x), "history": dede.history, "optimum": opt.objective})
        largest = (p, opt, dede)
    p, opt, dede = largest
    last = rows[-1]

    run.progress("POP-16 on the largest instance")
    pop = T.solve_pop(p, 16, seed=run.seed)
    pop_gap = 100 * (1 - pop.objective / opt.objective)
    dede_vs_pop_gap = pop_gap if run.control else last["gap_pct"]    # control: POP-16 in DeDe's slot

    if run.control:   # the worker scaling feeds a check only
        per_iter = {w: math.nan for w in {1, workers}}
    else:
        run.progress(f"worker scaling: {SCALING_ITERATIONS} iterations with 1 and {workers} workers, best of "
                     f"{SCALING_REPEATS}")
        per_iter = worker_scaling(p, workers)

    jobs = 300 if run.quick else 2000
    run.progress(f"cluster scheduling: {jobs} jobs on the real throughput matrix, HiGHS and DeDe")
    thr = C.load_throughputs(run.data.path("dede_inputs", "cluster_throughputs.npy"))
    gpus = C.load_spec(run.data.path("dede_inputs", "cluster_spec.json"), thr.shape[0])
    cp = C.make_jobs(thr, gpus, jobs, run.rng(2))
    c_opt = C.solve_highs(cp)
    c_dede = c_opt if run.control else C.solve_admm(cp, workers=workers, eps=1e-4, max_iter=4000)
    c_to2 = time_to(c_dede, 0.98 * c_opt.objective)

    speedup = [r["highs_s"] / r["dede_to2_s"] for r in rows]
    result.findings += [
        CLAIMS[0].measure(last["gap_pct"], f"{last['topology']} with {last['pairs']} pairs: {dede.objective:.1f} vs "
                          f"{opt.objective:.1f}; {last['iterations']} iterations; worst violation after the fix "
                          f"{last['violation']:.1e}"),
        CLAIMS[1].measure(last["dede_to2_s"] / last["highs_s"],
                          f"{last['dede_to2_s']:.2f} s vs {last['highs_s']:.2f} s ({workers} workers; to "
                          f"convergence {last['dede_s']:.2f} s); paths are built once for both and not counted"),
        CLAIMS[2].measure(speedup[-1] / speedup[0], "HiGHS / DeDe-to-2%: " + ", ".join(
            f"{r['pairs']} pairs {s:.2f}x" for r, s in zip(rows, speedup, strict=True))),
        CLAIMS[3].measure(per_iter[1] / per_iter[workers],
                          f"{per_iter[1] * 1e3:.1f} ms vs {per_iter[workers] * 1e3:.1f} ms per iteration "
                          f"({len(p.entry_edge)} entries; forked workers sharing the ADMM state)"),
        CLAIMS[4].measure(pop_gap - dede_vs_pop_gap, f"POP-16 {pop_gap:.2f}% in {pop.time_s:.2f} s vs DeDe "
                          f"{dede_vs_pop_gap:.3f}%: a 1/16 capacity slice cannot carry a big demand its paths "
                          "could carry whole"),
        CLAIMS[5].measure(100 * (1 - c_dede.objective / c_opt.objective),
                          f"fairness level {c_dede.objective:.4f} vs {c_opt.objective:.4f}; {jobs} jobs x "
                          f"{thr.shape[0]} worker types; {c_dede.iterations} iterations; violation "
                          f"{cp.violation(c_dede.x):.1e}"),
        CLAIMS[6].measure(c_to2 / c_opt.time_s, f"{c_to2:.2f} s vs {c_opt.time_s:.2f} s: a {jobs * thr.shape[0]}-"
                          "variable LP is small for HiGHS; the max-min level, a single worst job, converges "
                          "slowly under ADMM (the paper's clusters are larger)"),
    ]
    result.tables.append(Table(
        f"Traffic engineering (max total flow), gravity traffic, 4 edge-disjoint paths; DeDe with {workers} "
        "worker processes; times measured on this machine",
        ["topology", "pairs", "paths", "entries", "HiGHS (s)", "DeDe to 2% (s)", "DeDe converged (s)",
         "iterations", "gap (%)"],
        [[r["topology"], r["pairs"], r["paths"], r["entries"], f"{r['highs_s']:.2f}", f"{r['dede_to2_s']:.2f}",
          f"{r['dede_s']:.2f}", r["iterations"], f"{r['gap_pct']:.3f}"] for r in rows]))
    result.tables.append(Table(
        "Same problem, other solvers (largest TE instance; cluster scheduling)",
        ["problem", "solver", "objective", "gap (%)", "time (s)"],
        [[f"TE {last['topology']} {last['pairs']}", "HiGHS (monolithic LP)", f"{opt.objective:.1f}", "0",
          f"{opt.time_s:.2f}"],
         ["", f"DeDe ({workers} workers)", f"{dede.objective:.1f}", f"{last['gap_pct']:.3f}", f"{dede.time_s:.2f}"],
         ["", "POP-16 (HiGHS per part)", f"{pop.objective:.1f}", f"{pop_gap:.2f}", f"{pop.time_s:.2f}"],
         [f"cluster, {jobs} jobs", "HiGHS (monolithic LP)", f"{c_opt.objective:.4f}", "0", f"{c_opt.time_s:.2f}"],
         ["", f"DeDe ({workers} workers)", f"{c_dede.objective:.4f}",
          f"{100 * (1 - c_dede.objective / c_opt.objective):.2f}", f"{c_dede.time_s:.2f}"]]))
    result.metrics.update({"te": [{k: v for k, v in r.items() if k != "history"} for r in rows],
                           "per_iteration_s": per_iter, "pop16_gap_pct": pop_gap,
                           "cluster": {"jobs": jobs, "highs": c_opt.objective, "dede": c_dede.objective,
                                       "highs_s": c_opt.time_s, "dede_s": c_dede.time_s, "dede_to2_s": c_to2}})
    result.figures.append(_size_figure(run, rows))
    result.figures.append(_convergence_figure(run, last, c_dede.history, c_opt))
    return result


def _size_figure(run: Run, rows: list[dict]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    n = [r["entries"] for r in rows]
    ax.loglog(n, [r["highs_s"] for r in rows], "o-", label="HiGHS (monolithic LP)")
    ax.loglog(n, [r["dede_to2_s"] for r in rows], "s-", label="DeDe, to within 2%")
    ax.loglog(n, [r["dede_s"] for r in rows], "s--", alpha=0.6, label="DeDe, converged")
    for r in rows:
        ax.annotate(f"{r['topology']} {r['pairs']}", (r["entries"], r["highs_s"]), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel("problem size: (edge, path) entries")
    ax.set_ylabel("wall time on this machine (s)")
    ax.legend(fontsize=8)
    return run.save_figure(fig, "time-vs-size", "Solve time as traffic engineering grows (log-log): HiGHS grows "
                           "faster than DeDe's ADMM.")


def _convergence_figure(run: Run, last: dict, cluster_history: list, c_opt: Solution):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = ((last["history"], last["optimum"], last["highs_s"], f"TE {last['topology']} {last['pairs']} pairs"),
              (cluster_history, c_opt.objective, c_opt.time_s, "cluster max-min fairness"))
    for ax, (hist, opt, highs_s, title) in zip(axes, panels, strict=True):
        ax.plot([h[4] for h in hist], [h[5] / opt for h in hist], label="DeDe (feasible after fix)")
        ax.axhline(0.98, color="grey", ls=":", label="2% below optimum")
        ax.axvline(highs_s, color="C1", ls="--", label="HiGHS finishes")
        ax.set_ylim(0.8, 1.01)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("objective / HiGHS optimum")
        ax.legend(fontsize=7)
    return run.save_figure(fig, "convergence", "DeDe's feasible objective over time against the HiGHS optimum.")
