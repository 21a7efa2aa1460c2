"""``syslab serve``: the shared serving engine (``serving.engine``, iteration times from ``core.gpu``) on a model
and GPU of your choice: a closed batch (every request at t = 0, fixed lengths) or an open-loop replay of your own
trace (Azure CSV schema) on N static instances."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="The serving engine: simulate a model on a GPU fleet, closed batch or your own trace.",
                  no_args_is_help=True)

MAX_TOKENS = 1_000_000      # per request (prompt or output): longer than any model's context here
MAX_BATCH = 65_536          # closed-batch requests (each is a Python object in the engine)
MAX_INSTANCES = 1024
MAX_TP = 64


def _canonical(name: str) -> str:
    key = re.sub(r"[\s_\-]", "", name.lower())
    return key[4:] if key.startswith("meta") else key         # Meta-Llama-3-8B -> llama38b


def resolve_model(name: str):
    """A ``core.models`` shape by key, case-insensitive and ignoring dashes/underscores/spaces and a ``Meta-``
    prefix (Llama-2-7B, meta-llama-3-8b, LLAMA2_70B)."""
    from syslab.core.models import MODELS

    wanted = _canonical(name)
    for key, shape in MODELS.items():
        if _canonical(key) == wanted:
            return shape
    raise InputError(f"unknown model {name!r}.", field="--model",
                     fix=f"use one of: {', '.join(MODELS)} (case-insensitive; Llama-2-7B works too).")


def resolve_gpu(name: str):
    from syslab.core.hardware import GPUS, gpu

    try:
        return gpu(name)
    except KeyError:
        raise InputError(f"unknown GPU {name!r}.", field="--gpu",
                         fix=f"use one of: {', '.join(GPUS)} (case-insensitive; `syslab gpu list`).") from None


def _cost(model_name: str, gpu_name: str, tp: int):
    from syslab.core.inputs import option
    from syslab.serving.engine import IterationCost

    shape, device = resolve_model(model_name), resolve_gpu(gpu_name)
    tp = int(option(tp, "--tp", min=1, max=MAX_TP, integer=True))
    if shape.heads % tp or (shape.kv_heads % tp and tp % shape.kv_heads):
        raise InputError(f"{shape.name}'s {shape.heads} heads ({shape.kv_heads} KV heads) do not split over "
                         f"tp={tp} GPUs.", field="--tp", fix="use a tensor-parallel size that divides the heads.")
    cost = IterationCost(shape, device, tp)
    try:
        return cost, cost.kv_capacity_tokens()
    except InputError:
        raise InputError(f"{shape.name} ({shape.weight_bytes() / 1e9:.0f} GB of bf16 weights) does not fit on "
                         f"{tp} x {device.name} ({device.hbm_gb} GB each).", field="--tp",
                         fix="use more GPUs per instance (a larger --tp).") from None


def _summary(res) -> dict:
    import math

    tpot = res.requests.tpot_s.dropna()
    return {"output_tokens_per_s": res.throughput_tok_s, "ttft_s_p50": res.ttft_quantile(0.5),
            "tpot_s_p50": float(tpot.median()) if len(tpot) else math.nan}


def simulate_closed(model_name: str, gpu_name: str, tp: int, batch: int, prompt: int, output: int,
                    max_batch_tokens: int = 8192) -> dict:
    """Closed batch: ``batch`` requests of ``prompt`` -> ``output`` tokens all arriving at t = 0 on one instance
    that may run all of them at once (KV cache permitting; vLLM-style preemption otherwise)."""
    from syslab.serving import engine as E

    cost, kv = _cost(model_name, gpu_name, tp)
    reqs = [E.Request(i, 0.0, prompt, output) for i in range(batch)]
    res = E.simulate(reqs, lambda i, s, r: E.Instance(cost, kv, max_batch_tokens=max_batch_tokens, max_seqs=batch,
                                                      id=i, start_s=s, ready_s=r))
    return _summary(res)


def simulate_trace(model_name: str, gpu_name: str, tp: int, trace: Path, instances: int,
                   max_batch_tokens: int = 8192, max_seqs: int = 256) -> dict:
    """Open-loop replay of an Azure-schema trace on ``instances`` static instances (least-loaded routing)."""
    from syslab.core.workloads import load_azure_llm
    from syslab.serving import engine as E

    cost, kv = _cost(model_name, gpu_name, tp)
    df = load_azure_llm(trace)
    reqs = E.requests_from_frame(df, source=str(trace))
    res = E.simulate(reqs, lambda i, s, r: E.Instance(cost, kv, max_batch_tokens=max_batch_tokens, max_seqs=max_seqs,
                                                      id=i, start_s=s, ready_s=r), initial_instances=instances)
    return {**_summary(res), "ttft_s_p99": res.ttft_quantile(0.99), "requests": len(reqs),
            "instances": instances, "gpu_seconds": res.gpu_seconds}


@app.command("simulate")
def serve_simulate(
        model: Annotated[str, typer.Option(help="model (core.models key; Llama-2-7B style names work)")] = "llama2-7b",
        gpu: Annotated[str, typer.Option(help="GPU (core.hardware name or alias)")] = "A100-SXM",
        tp: Annotated[int, typer.Option(help="tensor-parallel GPUs per instance")] = 1,
        batch: Annotated[int, typer.Option(help="closed batch: requests, all at t = 0")] = 256,
        input_tokens: Annotated[int, typer.Option("--input", help="closed batch: prompt tokens per request")] = 128,
        output_tokens: Annotated[int, typer.Option("--output", help="closed batch: output tokens per request")] = 128,
        trace: Annotated[Path | None, typer.Option(help="replay this CSV (TIMESTAMP,ContextTokens,GeneratedTokens) "
                                                        "open-loop instead of a closed batch")] = None,
        instances: Annotated[int, typer.Option(help="trace replay: static instances")] = 1,
        max_batch_tokens: Annotated[int, typer.Option(help="token budget per iteration (chunked prefill)")] = 8192,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Output tokens/s, median TTFT and median TPOT of the engine on a closed batch or a trace."""
    from syslab.core.inputs import option

    budget = int(option(max_batch_tokens, "--max-batch-tokens", min=16, max=1 << 20, integer=True))
    if trace is None:
        n = int(option(batch, "--batch", min=1, max=MAX_BATCH, integer=True))
        p = int(option(input_tokens, "--input", min=1, max=MAX_TOKENS, integer=True))
        o = int(option(output_tokens, "--output", min=1, max=MAX_TOKENS, integer=True))
        title = f"closed batch: {n} x ({p} -> {o} tokens)"
        with err.status(f"simulating {title}"):
            result = simulate_closed(model, gpu, tp, n, p, o, budget)
    else:
        k = int(option(instances, "--instances", min=1, max=MAX_INSTANCES, integer=True))
        title = f"trace {trace.name} on {k} instance(s)"
        with err.status(f"replaying {title}"):
            result = simulate_trace(model, gpu, tp, trace, k, budget)
    if as_json:
        print_json(result)
        return
    table = Table("quantity", "value", title=f"{resolve_model(model).name} on {tp} x {resolve_gpu(gpu).name}, {title}")
    for key, value in result.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    out.print(table)
