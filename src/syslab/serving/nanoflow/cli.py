"""``syslab nanoflow``: search NanoFlow's intra-device pipeline for a model, a GPU and a dense batch size."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="NanoFlow: search a nano-batch pipeline (splits, SM shares, order) for your model and GPU.",
                  no_args_is_help=True)

MAX_BATCH = 16384      # dense tokens per iteration; the artifact runs 768-2048 (pipeline/config_all)


def _model(name: str):
    from syslab.core.models import MODELS, model
    key = name.strip().lower().replace("llama-2", "llama2").replace("llama-3", "llama3")
    if key not in MODELS:
        raise InputError(f"unknown model {name!r}.", field="--model", fix=f"use one of {', '.join(MODELS)}.")
    return model(key)


def _gpu(name: str):
    from syslab.core.hardware import GPUS, gpu
    try:
        return gpu(name)
    except KeyError:
        raise InputError(f"unknown GPU {name!r}.", field="--gpu", fix=f"use one of {', '.join(GPUS)}.") from None


@app.command("search")
def nanoflow_search(
        model: Annotated[str, typer.Option(help="the model (core.models), e.g. llama2-70b, llama3-8b")] = "llama2-70b",
        gpu: Annotated[str, typer.Option(help="the GPU (core.hardware), e.g. A100-80GB, H100-SXM")] = "A100-80GB",
        batch: Annotated[int, typer.Option(help="dense tokens per iteration (a multiple of 128)")] = 2048,
        tp: Annotated[int, typer.Option(help="tensor-parallel GPUs (1, 2, 4 or 8; one node)")] = 8,
        prompt: Annotated[int, typer.Option(help="prompt tokens per request (constant-length workload)")] = 1024,
        output: Annotated[int, typer.Option(help="output tokens per request")] = 512,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The searched NanoFlow pipeline against non-overlap and nano-batch-only, modelled with core.gpu."""
    import numpy as np

    from syslab.core.inputs import option
    from syslab.serving import nanoflow as N

    shape, device = _model(model), _gpu(gpu)
    batch = option(batch, "--batch", min=N.TILE, max=MAX_BATCH, integer=True,
                   fix=f"use a multiple of {N.TILE} from {N.TILE} to {MAX_BATCH}.")
    if batch % N.TILE:
        raise InputError(f"{batch} tokens is not a multiple of the {N.TILE}-row GEMM tile.", field="--batch",
                         fix=f"use a multiple of {N.TILE}, e.g. {max(N.TILE, batch // N.TILE * N.TILE)}.")
    tp = option(tp, "--tp", min=1, max=8, integer=True, fix="use 1, 2, 4 or 8 (TP stays inside one 8-GPU node).")
    if tp not in (1, 2, 4, 8) or shape.heads % tp or (shape.kv_heads % tp and tp % shape.kv_heads):
        raise InputError(f"--tp {tp} does not split {shape.name}'s {shape.heads} heads / {shape.kv_heads} KV heads.",
                         field="--tp", fix="use 1, 2, 4 or 8 dividing the model's attention heads.")
    prompt = option(prompt, "--prompt", min=1, max=1_048_576, integer=True)
    output = option(output, "--output", min=1, max=1_048_576, integer=True)
    hw = N.Hardware(shape, device, tp)
    dense = N.dense_batch(np.array([prompt]), np.array([output]), tokens=batch)
    rows = N.evaluate(hw, dense)
    cfg = rows["nanoflow"]["cfg"]
    res = {"model": shape.name, "gpu": device.name, "tp": tp, "batch": batch,
           "dense_batch": {"decode_requests": dense.decode, "prefill_tokens": dense.prefill,
                           "decode_context": dense.decode_context},
           "config": {"splits": [list(s) for s in cfg.splits], "attn_share": cfg.attn_share,
                      "ar1_share": cfg.ar1_share, "ar2_share": cfg.ar2_share, "skew": cfg.skew,
                      "overlap": cfg.overlap, "sequential": cfg == N.Config.sequential(batch)},
           "configurations_searched": rows["nanoflow"]["evaluated"],
           "engines": {k: {"per_layer_s": rows[k]["per_layer_s"], "tok_s_per_gpu": rows[k]["tok_s_per_gpu"],
                           "fraction_of_optimal": rows[k]["fraction_of_optimal"]}
                       for k in ("non-overlap", "nanobatch-only", "nanoflow")},
           "speedup_vs_nonoverlap": rows["non-overlap"]["per_layer_s"] / rows["nanoflow"]["per_layer_s"],
           "linear_share_bound": rows["bound"], "optimal_tok_s_per_gpu": hw.optimal_tok_s_per_gpu}
    if as_json:
        print_json(res)
        return
    table = Table("engine", "per layer (us)", "tok/s/GPU", "of optimal",
                  title=f"{shape.name} TP={tp} on {device.name}, {batch} dense tokens ({dense.decode} decode, "
                        f"{dense.prefill} prefill; constant {prompt} -> {output})")
    for k in ("non-overlap", "nanobatch-only", "nanoflow"):
        r = rows[k]
        table.add_row(k, f"{r['per_layer_s'] * 1e6:.1f}", f"{r['tok_s_per_gpu']:.0f}",
                      f"{r['fraction_of_optimal']:.3f}")
    out.print(table)
    out.print(f"searched ({res['configurations_searched']} configurations): {cfg.describe()}; "
              f"{res['speedup_vs_nonoverlap']:.3f}x over non-overlap (linear SM-share bound {rows['bound']:.3f}x)")
