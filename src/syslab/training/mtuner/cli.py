"""``syslab mtuner``: mTuner's per-layer plan for fine-tuning a model on a modelled 8-GPU server."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="mTuner: per-layer elastic-tensor plans for LoRA fine-tuning on an 8-GPU server.",
                  no_args_is_help=True)

# LoRA on the q and v projections: the adapters' bf16 weights and gradients and fp32 master copy and Adam
# moments (2 + 2 + 4 + 8 bytes per parameter, the usual mixed-precision Adam layout)
LORA_BYTES_PER_PARAM = 16


def resolve_model(name: str):
    """A model of ``core.models`` by name, case-insensitive, ``llama-2-70b`` as well as ``llama2-70b``."""
    from syslab.core.models import MODELS

    key = name.strip().lower().replace("llama-2", "llama2").replace("llama-3", "llama3")
    if key not in MODELS:
        raise InputError(f"unknown model {name!r}.", field="--model", fix=f"use one of {', '.join(MODELS)}.")
    return MODELS[key]


def _row(plan, w) -> dict:
    from collections import Counter

    if not plan.feasible:
        return {"fits": False}
    return {"fits": True, "step_s": plan.time_s, "tokens_per_s": 8 * w.micro_batch * w.seq_len / plan.time_s,
            "peak_gb": plan.peak_bytes / 1e9 + w.reserve_gb, "valley_gb": plan.valley_bytes / 1e9 + w.reserve_gb,
            "choices": dict(Counter(c.label() for c in plan.choices))}


@app.command("plan")
def mtuner_plan(
        model: Annotated[str, typer.Option(help="model name (core.models), e.g. llama-2-70b, llama2-13b")],
        server: Annotated[str, typer.Option(help="pcie (PCIe 4.0 between GPUs) or nvlink (NVLink 3)")] = "pcie",
        gpus: Annotated[int, typer.Option(help="GPUs in the server (the implementation space is built for 8)")]
        = 8,
        seq: Annotated[int, typer.Option(help="tokens per sequence")] = 8192,
        micro_batch: Annotated[int, typer.Option(help="sequences per GPU per step")] = 1,
        lora_rank: Annotated[int, typer.Option(help="LoRA rank on the q and v projections")] = 16,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """mTuner's per-layer plan against FSDP, Megatron TP=8 and the best uniform policy (each with per-layer
    selective recomputation) on 8 modelled A100-80GB GPUs: predicted step time and memory per GPU."""
    from syslab.core.inputs import one_of, option
    from syslab.training.mtuner import plan as P
    from syslab.training.mtuner.reproduce import servers

    shape = resolve_model(model)
    server = one_of(server.lower(), ("pcie", "nvlink"), field="--server")
    gpus = option(gpus, "--gpus", min=1, max=1024, integer=True)
    if gpus != 8:
        raise InputError(f"{gpus} GPUs.", field="--gpus", fix="use --gpus 8: the plans split weights over 8 GPUs "
                                                           "(tensor-parallel and gather degrees 1, 2, 4, 8).")
    seq = option(seq, "--seq", min=1, max=1 << 20, integer=True)
    micro_batch = option(micro_batch, "--micro-batch", min=1, max=1024, integer=True)
    lora_rank = option(lora_rank, "--lora-rank", min=1, max=shape.hidden, integer=True)
    srv = {s.name.lower(): s for s in servers()}[server]
    lora_gb = shape.layers * 2 * lora_rank * 2 * shape.hidden * LORA_BYTES_PER_PARAM / 1e9
    w = P.Workload(shape, seq, micro_batch=micro_batch, reserve_gb=P.Workload(shape, seq).reserve_gb + lora_gb)
    plans = {"FSDP": P.uniform(w, srv, *P.FSDP), "Megatron TP=8": P.uniform(w, srv, *P.MEGATRON_TP8),
             "best uniform": P.best_uniform(w, srv), "mTuner": P.mtuner(w, srv)}
    if not plans["mTuner"].feasible:
        raise InputError(f"{shape.name} at {seq:,} tokens x {micro_batch} per GPU does not fit 8 x 80 GB in any "
                         "plan, even recomputing every layer.", field="--seq",
                         fix="use a shorter --seq or a smaller --micro-batch.")
    rows = {name: _row(p, w) for name, p in plans.items()}
    best = min((p.time_s for n, p in plans.items() if n != "mTuner" and p.feasible), default=float("inf"))
    result = {"model": shape.name, "server": srv.name, "seq": seq, "micro_batch": micro_batch,
              "lora_rank": lora_rank, "reserve_gb": w.reserve_gb, "plans": rows,
              "mtuner_gain_vs_best": best / plans["mTuner"].time_s - 1 if best < float("inf") else None,
              "per_layer": [c.label() for c in plans["mTuner"].choices]}
    if as_json:
        print_json(result)
        return
    table = Table("plan", "step (s)", "tokens/s", "peak GB / GPU", "per-layer choices",
                  title=f"{shape.name}, {seq:,} tokens x {micro_batch} per GPU, LoRA rank {lora_rank}, 8 x A100-80GB "
                        f"over {srv.name} (modelled)")
    for name, r in rows.items():
        if not r["fits"]:
            table.add_row(name, "does not fit", "-", "-", "-")
            continue
        table.add_row(name, f"{r['step_s']:.3f}", f"{r['tokens_per_s']:,.0f}", f"{r['peak_gb']:.1f}",
                      ", ".join(f"{k} x{n}" for k, n in r["choices"].items()))
    out.print(table)
    if result["mtuner_gain_vs_best"] is not None:
        out.print(f"mTuner over the best baseline: {result['mtuner_gain_vs_best']:+.1%}")
