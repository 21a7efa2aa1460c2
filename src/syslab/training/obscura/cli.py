"""``syslab obscura``: Obscura's recomputation/swap/migration plan for a pipeline-parallel model, against DAPPLE+, the
Strawman and the Strawman with swapping, every plan simulated with its PCIe transfers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

HELP = "Obscura: hide recomputation in pipeline bubbles, with swaps simulated on PCIe, for your model and GPUs."
app = typer.Typer(help=HELP, no_args_is_help=True)

# One plan search simulates (2 (p - 1) + 1) migration depths x 5 swap ratios x a few memory rounds, each O(p m):
# p^2 m = 8^2 x 64 (the reproduction's largest) takes a few seconds here, so at most that.
MAX_WORK = 8 * 8 * 64


def _models() -> dict:
    """The paper's Llama-2-style models and the dense SwiGLU models of ``core.models`` (the operator table is a
    Llama layer's: GELU MLPs and mixtures of experts are not)."""
    from syslab.core.models import MODELS as CORE
    from syslab.training.obscura.plan import MODELS

    out_ = dict(MODELS)
    out_.update({k: t for k, t in CORE.items() if t.gated_mlp and t.experts == 1})
    return out_


def _model(name: str):
    models = _models()
    key = name.strip().lower().replace("llama-2", "llama2").replace("llama-3", "llama3")
    if key not in models:
        raise InputError(f"unknown model {name!r}.", field="--model", fix=f"use one of {', '.join(models)}.")
    return models[key]


def _gpu(name: str):
    from syslab.core.hardware import gpu

    try:
        return gpu(name)
    except KeyError:
        from syslab.core.hardware import GPUS
        raise InputError(f"unknown GPU {name!r}.", field="--gpu", fix=f"use one of {', '.join(GPUS)}.") from None


def plan_json(model: str = "llama2-28b", stages: int = 8, gpu: str = "A100-SXM-80GB", microbatches: int = 32,
              seq: int = 4096, gpus_per_switch: int | None = None) -> dict:
    """Everything ``plan`` prints, as a dict (validated like the command line)."""
    from syslab.core.inputs import option
    from syslab.training.obscura import plan as L

    t = _model(model)
    g = _gpu(gpu)
    if "bf16" not in g.peak_tflops:
        raise InputError(f"the {g.name} has no BF16 tensor cores; the operator table times BF16 kernels.",
                         field="--gpu", fix="use an Ampere or newer GPU, e.g. A100-SXM-80GB, H100.")
    stages = option(stages, "--stages", min=2, max=64, integer=True)
    microbatches = option(microbatches, "--microbatches", min=1, max=1024, integer=True)
    seq = option(seq, "--seq", min=128, max=131072, integer=True)
    if gpus_per_switch is not None:
        gpus_per_switch = option(gpus_per_switch, "--gpus-per-switch", min=1, max=stages, integer=True,
                                 fix=f"use 1 to {stages} (the stages' GPUs share at most one uplink each).")
    if stages > 2 * t.layers:
        raise InputError(f"{stages} stages for {t.layers} layers ({2 * t.layers} half-layers).", field="--stages",
                         fix=f"use at most {2 * t.layers} stages for {t.name}.")
    if stages * stages * microbatches > MAX_WORK:
        raise InputError(f"{stages} stages x {stages} x {microbatches} micro-batches = "
                         f"{stages * stages * microbatches:,} simulated items per search step.", field="--microbatches",
                         fix=f"keep stages^2 x micro-batches <= {MAX_WORK:,}.")
    c = L.Cluster(stages=stages, gpu_gb=g.hbm_gb, seq=seq, gpu=g.name, gpus_per_switch=gpus_per_switch)
    parts = L.even_partition(t, stages)
    costs = L.stage_costs(t, parts, c)
    s = min(range(stages), key=lambda i: L.activation_budget(costs[i], c))
    if L.activation_budget(costs[s], c) <= 0:
        need = costs[s].states / L.GB + L.RESERVED_GB
        raise InputError(f"stage {s}'s model states and reserve alone take {need:.0f} GB of the {g.name}'s "
                         f"{g.hbm_gb:g} GB.", field="--stages", fix="use more --stages or a GPU with more memory.")
    plans = {n: L.plan_uniform(n, costs, parts, c, microbatches, how) for n, how in
             (("DAPPLE", "none"), ("DAPPLE+", "full"), ("Recomp-k", "on-demand"), ("Strawman", "knapsack"))}
    plans["Strawman (+swap)"] = L.plan_search(costs, parts, c, microbatches, L.STRAWMAN_SWAP, "Strawman (+swap)")
    swap = L.plan_obscura(costs, parts, c, microbatches, swap=True, name="Obscura (+swap)")
    plans["Obscura"] = L.adjust_partition(t, c, microbatches, start=swap)
    ideal = L.simulate(costs, [L.StagePlan(L.no_recompute(sc)) for sc in costs], microbatches, c,
                       keep_ops=False).makespan
    ob = plans["Obscura"]
    ob_costs = L.stage_costs(t, ob.parts, c)
    problems = [x for p in plans.values() for x in
                L.validate_plan(p, L.stage_costs(t, p.parts, c), c, microbatches)]
    base = plans["DAPPLE+"].time_s
    topo = L.topology(costs, c)
    res = {"model": t.name, "gpu": g.name, "gpu_gb": g.hbm_gb, "stages": stages, "microbatches": microbatches,
           "seq": seq, "gpus_per_switch": topo.gpus_per_switch, "pipeline_on_pcie": topo.pipeline_on_pcie,
           "overflowing_stages": L.overflowing(costs, c, microbatches),
           "iteration_s": {n: (p.time_s if p.stages is not None else None) for n, p in plans.items()},
           "speedup_vs_dapple_plus": {n: (base / p.time_s if p.stages is not None and base < float("inf") else None)
                                      for n, p in plans.items()},
           "no_recompute_bound_s": ideal, "problems": problems,
           "plan": None if ob.stages is None else {
               "migration_e": ob.e, "swap_ratio": ob.beta,
               "stages": [{"stage": s, "attn_halves": ld.attn, "mlp_halves": ld.mlp,
                           "in_flight": L.in_flight(s, stages, microbatches, sp.extra_warmup),
                           "migrated_forwards": sp.extra_warmup, "swap": sp.swap, "dropped": sp.recompute.dropped,
                           "recompute_over_forward": sp.recompute.recompute_s / cs.forward_s,
                           "peak_gb": (cs.states + L.RESERVED_GB * L.GB + ob.sim.peaks[s]) / L.GB}
                          for s, (ld, sp, cs) in enumerate(zip(ob.parts, ob.stages, ob_costs, strict=True))]}}
    return res


@app.command("plan")
def obscura_plan(
        model: Annotated[str, typer.Option(help="the model: llama2-18b, llama2-23b, llama2-28b (the paper's sizes) "
                                                "or a dense SwiGLU model of core.models, e.g. llama2-13b")]
        = "llama2-28b",
        stages: Annotated[int, typer.Option(help="pipeline stages, one GPU each")] = 8,
        gpu: Annotated[str, typer.Option(help="the GPU (core.hardware), e.g. A100-SXM-80GB, A100-PCIe-80GB, H100")]
        = "A100-SXM-80GB",
        microbatches: Annotated[int, typer.Option(help="micro-batches per iteration (micro-batch 1)")] = 32,
        seq: Annotated[int, typer.Option(help="tokens per sequence")] = 4096,
        gpus_per_switch: Annotated[int | None, typer.Option(help="GPUs sharing one PCIe uplink to the host "
                                                                  "(default: the GPU's usual server)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Obscura's plan (operator dropping, forward migration, swapping, partition moves) and its simulated
    iteration time against DAPPLE+, on-demand recomputation and the Strawman with and without swapping."""
    res = plan_json(model, stages, gpu, microbatches, seq, gpus_per_switch)
    if as_json:
        print_json(res)
        return
    table = Table("schedule", "iteration (s)", "over DAPPLE+",
                  title=f"{res['model']} on {res['stages']} x {res['gpu']} ({res['microbatches']} micro-batches of "
                        f"{res['seq']} tokens); overflowing stages: "
                        f"{', '.join(map(str, res['overflowing_stages'])) or 'none'}")
    for n, t in res["iteration_s"].items():
        sp = res["speedup_vs_dapple_plus"][n]
        table.add_row(n, "OOM" if t is None else f"{t:.3f}", "-" if sp is None else f"{sp:.3f}x")
    table.add_row("no recomputation (bound, memory ignored)", f"{res['no_recompute_bound_s']:.3f}", "")
    out.print(table)
    if res["plan"] is not None:
        out.print(f"Obscura: migration e = {res['plan']['migration_e']}, swap ratio {res['plan']['swap_ratio']:.0%}; "
                  + "; ".join(f"stage {x['stage']}: {x['migrated_forwards']} migrated, {x['swap']:.0%} swapped, "
                              f"recompute {x['recompute_over_forward']:.1%} of forward, peak {x['peak_gb']:.1f} GB"
                              for x in res["plan"]["stages"]))
    out.print("no dependency, overlap or memory problems" if not res["problems"] else res["problems"][0])
