"""``syslab jenga``: JENGA's activation savings on a model of your shape."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import need_torch, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="JENGA: contextual token sparsity for long-context LoRA fine-tuning, on your model shape.",
                  no_args_is_help=True)

CONFIG_FIX = ("give a Llama-style config.json with positive integers hidden_size, num_hidden_layers, "
              "num_attention_heads, intermediate_size and vocab_size (hidden_size divisible by the heads).")
# what one CPU step may need: fp32 weights plus dense activations, kept under a quarter of this machine's memory
MAX_STEP_BYTES = 6 * 2**30


def config_from(path: Path, layers: int | None):
    from syslab.core.inputs import number, read_json
    from syslab.training.jenga.model import Config
    from syslab.training.jenga.profile import CONFIG_KEYS

    raw = read_json(path, fix=CONFIG_FIX, expect=dict)
    values = {}
    for field, names in CONFIG_KEYS.items():
        name = next((n for n in names if n in raw), None)
        if name is None:
            raise InputError(f"has none of {', '.join(names)}.", file=path, field=names[0], fix=CONFIG_FIX)
        values[field] = int(number(raw[name], field=name, fix=CONFIG_FIX, file=path, integer=True, min=1,
                                   max=1 << 20))
    if layers is not None:
        values["layers"] = layers
    if values["hidden"] % values["heads"] or (values["hidden"] // values["heads"]) % 2:
        raise InputError(f"hidden size {values['hidden']} does not split into {values['heads']} heads of an even "
                         "size (RoPE rotates pairs).", file=path, field="num_attention_heads", fix=CONFIG_FIX)
    if values["layers"] < 3:
        raise InputError(f"{values['layers']} layers: JENGA keeps the lower half and the last layer dense, so "
                         "nothing would be sparse.", file=path, field="num_hidden_layers",
                         fix="profile 3 or more layers (--layers).")
    return Config(vocab=values["vocab"], hidden=values["hidden"], heads=values["heads"], ffn=values["ffn"],
                  layers=values["layers"])


def step_bytes(cfg, batch: int, seq: int) -> float:
    """A generous bound on one dense fp32 step: the weights, their LoRA optimizer state, and per layer the
    attention scores and the MLP intermediates of every token."""
    weights = cfg.layers * (4 * cfg.hidden ** 2 + 3 * cfg.hidden * cfg.ffn) + 2 * cfg.vocab * cfg.hidden
    per_layer = batch * (seq * (12 * cfg.hidden + 3 * cfg.ffn) + cfg.heads * seq * seq)
    return 4.0 * (weights + cfg.layers * per_layer + batch * seq * cfg.vocab)


@app.command("profile")
def jenga_profile(
        config: Annotated[Path, typer.Option(help="Llama-style config.json (hidden_size, num_hidden_layers, "
                                                  "num_attention_heads, intermediate_size, vocab_size)")],
        seq: Annotated[int, typer.Option(help="tokens per sequence (a multiple of the 64-token block)")] = 4096,
        batch: Annotated[int, typer.Option(help="sequences per step (synthetic tokens)")] = 1,
        tokens: Annotated[Path | None, typer.Option(help=".npy of token ids, [tokens] or [batch, tokens] "
                                                         "(default: synthetic)")] = None,
        layers: Annotated[int | None, typer.Option(help="profile only this many layers (memory scales with "
                                                        "them)")] = None,
        keep: Annotated[float, typer.Option(help="share of blocks kept in the sparse layers")] = 0.5,
        mlp_keep: Annotated[float, typer.Option(help="share of tokens each MLP runs on")] = 0.5,
        repeats: Annotated[int, typer.Option(help="steps per variant (the median time is reported)")] = 3,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """One LoRA step dense and with JENGA (oracle block scores) on a random model of your shape: saved
    activation bytes, step time on this CPU and block sparsity."""
    need_torch("this tool runs a model in PyTorch and needs torch.")
    import torch

    from syslab.core.inputs import option, read_npy
    from syslab.training.jenga.model import BLOCK
    from syslab.training.jenga.profile import profile

    seq = option(seq, "--seq", min=2 * BLOCK, max=1 << 17, integer=True)
    if seq % BLOCK:
        raise InputError(f"{seq} tokens is not a multiple of the {BLOCK}-token block.", field="--seq",
                         fix=f"use --seq {seq // BLOCK * BLOCK or 2 * BLOCK}.")
    batch = option(batch, "--batch", min=1, max=1024, integer=True)
    layers = None if layers is None else option(layers, "--layers", min=3, max=1024, integer=True)
    keep = option(keep, "--keep", min=0.0, max=1.0)
    mlp_keep = option(mlp_keep, "--mlp-keep", min=0.01, max=1.0)
    repeats = option(repeats, "--repeats", min=1, max=100, integer=True)
    cfg = config_from(config, layers)
    if tokens is not None:
        ids = read_npy(tokens, fix="give integer token ids below the vocab size, [tokens] or [batch, tokens].",
                       min=0)
        if ids.ndim not in (1, 2) or ids.dtype.kind != "i" or (ids.size and ids.max() >= cfg.vocab):
            raise InputError(f"shape {ids.shape}, dtype {ids.dtype}: not integer ids below the vocab size "
                             f"{cfg.vocab} in 1 or 2 dimensions.", file=tokens, field="tokens",
                             fix="save integer token ids with np.save.")
        ids = ids.reshape(1, -1) if ids.ndim == 1 else ids
        if ids.shape[1] < seq + 1:
            raise InputError(f"{ids.shape[1]} tokens per row, {seq + 1} needed (--seq plus the next-token target).",
                             file=tokens, field="tokens", fix=f"use --seq {(ids.shape[1] - 1) // BLOCK * BLOCK} "
                                                              "or longer rows.")
        ids = torch.from_numpy(ids[:, : seq + 1].copy())
    else:
        ids = torch.randint(0, cfg.vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(0))
    need = step_bytes(cfg, ids.shape[0], seq)
    if need > MAX_STEP_BYTES:
        raise InputError(f"one dense step of this shape needs about {need / 2**30:.0f} GiB here.", field="--layers",
                         fix="profile fewer layers (--layers), a shorter --seq or a smaller --batch.")
    r = profile(cfg, ids, keep, mlp_keep, repeats)
    dense, jenga = r["variants"]["dense"], r["variants"]["jenga"]
    result = {"config": {"hidden": cfg.hidden, "layers": cfg.layers, "heads": cfg.heads, "intermediate": cfg.ffn,
                         "vocab": cfg.vocab}, "batch": int(ids.shape[0]), "seq": seq,
              "block_sparsity": r["block_sparsity"], "mlp_token_sparsity": r["mlp_token_sparsity"],
              "sparse_layers": r["sparse_layers"],
              "dense": {"saved_activation_bytes": dense.saved_bytes, "step_s": dense.step_s},
              "jenga": {"saved_activation_bytes": jenga.saved_bytes, "step_s": jenga.step_s},
              "activation_saving": dense.saved_bytes / max(jenga.saved_bytes, 1),
              "step_speedup_cpu": dense.step_s / jenga.step_s}
    if as_json:
        print_json(result)
        return
    table = Table("variant", "saved activations (MB)", "median step on this CPU (ms)",
                  title=f"{cfg.layers} layers x hidden {cfg.hidden}, {ids.shape[0]} x {seq} tokens; JENGA drops "
                        f"{r['block_sparsity']:.0%} of blocks in layers {r['sparse_layers']}")
    for name, v in (("dense LoRA", dense), ("JENGA (oracle blocks)", jenga)):
        table.add_row(name, f"{v.saved_bytes / 1e6:.1f}", f"{v.step_s * 1e3:.0f}")
    out.print(table)
    out.print(f"activation saving {result['activation_saving']:.2f}x, CPU step {result['step_speedup_cpu']:.2f}x")
