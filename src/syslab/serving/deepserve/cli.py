"""``syslab deepserve``: replay your own trace (Azure CSV) on DeepServe's platform: cold-start scale-out against
pre-warmed TEs loading from DRAM or by fork."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

# the Job Executor ticks every 0.5 s of simulated time: 30 days of trace is minutes of CPU (as for BlitzScale)
MAX_SPAN_S = 30 * 86400.0

app = typer.Typer(help="DeepServe scale-out replay on your own trace: cold starts vs a pre-warm pool with DRAM "
                       "pre-loading or fork.", no_args_is_help=True)


def _resolve_gpu(name: str) -> str:
    from syslab.core.hardware import GPUS, gpu
    try:
        return gpu(name).name
    except KeyError:
        raise InputError(f"unknown GPU {name!r}.", field="--gpu", fix=f"use one of {', '.join(GPUS)}.") from None


def _resolve_model(name: str) -> str:
    from syslab.core.models import MODELS
    key = name.strip().lower().replace("llama-2", "llama2").replace("llama-3", "llama3")
    if key not in MODELS:
        raise InputError(f"unknown model {name!r}.", field="--model", fix=f"use one of {', '.join(MODELS)}.")
    return key


@app.command("scale")
def deepserve_scale(
        trace: Annotated[Path, typer.Option(help="CSV: TIMESTAMP,ContextTokens,GeneratedTokens (Azure LLM trace)")],
        model: Annotated[str, typer.Option(help="the served model (core.models), one GPU per instance")]
        = "llama3-8b",
        gpu: Annotated[str, typer.Option(help="the GPU (core.hardware), 8 per host, 8 hosts")] = "H100-SXM",
        prewarm: Annotated[int, typer.Option(help="pre-warmed task executors in the pool (0 to 63)")] = 8,
        time_scale: Annotated[float, typer.Option(help="compress arrivals by this factor")] = 1.0,
        runtime_s: Annotated[float | None, typer.Option(help="process start + runtime import (s); default: "
                                                              "measured here")] = None,
        fork_s: Annotated[float | None, typer.Option(help="fork of a warm process to its first forward (s); "
                                                           "default: measured here")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """P99 TTFT, scale-out times and GPU-seconds of cold-start scale-out, DeepServe with DRAM pre-loading, and
    DeepServe with fork, all under the same Job Executor policy, from one serving instance."""
    from syslab.core.inputs import option
    from syslab.core.workloads import replay_window
    from syslab.serving.deepserve import measure_starts, stages_from
    from syslab.serving.deepserve import platform as P

    gpu_name = _resolve_gpu(gpu)
    model_name = _resolve_model(model)
    prewarm = option(prewarm, "--prewarm", min=0, max=P.HOSTS * P.GPUS_PER_HOST - 1, integer=True,
                     fix=f"use 0 to {P.HOSTS * P.GPUS_PER_HOST - 1} (the cluster has "
                         f"{P.HOSTS * P.GPUS_PER_HOST} GPUs).")
    time_scale = option(time_scale, "--time-scale", min=1e-3, max=1e6, fix="e.g. --time-scale 4.")
    if (runtime_s is None) != (fork_s is None):
        raise InputError("only one of --runtime-s and --fork-s.", field="--runtime-s/--fork-s",
                         fix="give both (to skip the measurement) or neither (to measure them here).")
    if runtime_s is not None:
        runtime_s = option(runtime_s, "--runtime-s", min=0, max=3600)
        fork_s = option(fork_s, "--fork-s", min=0, max=3600)
    cost = P.default_cost(gpu_name, model_name)
    try:
        cost.kv_capacity_tokens()
    except InputError:
        raise InputError(f"{model_name} does not fit on one {gpu_name} with room for a KV cache.", field="--model",
                         fix="choose a smaller model or a GPU with more memory.") from None
    df = replay_window(trace, time_scale, MAX_SPAN_S)
    if runtime_s is None:
        with err.status("measuring process start + import and fork on this machine (64 MB of weights)"):
            stages = stages_from(measure_starts(64, 1))
    else:
        stages = P.Stages(runtime_s=runtime_s, fork_s=fork_s)
    stages = replace(stages, device=gpu_name, weights_bytes=cost.shape.weight_bytes(cost.dtype))
    with err.status(f"replaying {len(df)} requests under {len(P.POLICIES)} policies"):
        res = P.compare(df, stages, prewarm=prewarm, cost=cost)
    one = {p: P.plan_scaleout(1, p, stages, 1, 1, [P.GPUS_PER_HOST])[0] for p in P.POLICIES}
    report = {"trace": str(trace), "requests": len(df), "model": model_name, "gpu": gpu_name, "prewarm": prewarm,
              "time_scale": time_scale,
              "stages": {"runtime_s": stages.runtime_s, "fork_s": stages.fork_s, "pod_start_s": stages.pod_start_s,
                         "device_init_s": stages.device_init_s, "warmup_s": stages.warmup_s,
                         "ssd_load_s": stages.ssd_load_s(), "dram_load_s": stages.dram_load_s,
                         "fork_copy_s": stages.fork_copy_s},
              "one_instance_s": {p: {"path": path, "ready_in_s": t} for p, (path, t) in one.items()},
              "policies": {p: r.as_dict() for p, r in res.items()}}
    if as_json:
        print_json(report)
        return
    table = Table("policy", "P99 TTFT (s)", "mean TTFT (s)", "GPU-seconds", "of them pooled", "scale-outs",
                  "mean / max scale-out (s)", "one instance (s)",
                  title=f"{len(df)} requests of {trace.name} on {model_name} / {gpu_name}; pool of {prewarm}")
    for p, r in res.items():
        s = r.scaleout_s
        table.add_row(p, f"{r.p99_ttft_s:.3f}", f"{r.mean_ttft_s:.3f}", f"{r.gpu_seconds:.0f}",
                      f"{r.pool_gpu_seconds:.0f}", str(s["count"]), f"{s['mean']:.2f} / {s['max']:.2f}",
                      f"{one[p][1]:.2f} ({one[p][0]})")
    out.print(table)
