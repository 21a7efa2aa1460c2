"""``syslab jenga profile``: one LoRA step of a Llama-style model of your shape, dense and with JENGA.

The model is built from a Hugging Face style ``config.json`` (``hidden_size``, ``num_hidden_layers``,
``num_attention_heads``, ``intermediate_size``, ``vocab_size``; the short names ``hidden``, ``layers``,
``heads``, ``intermediate``, ``vocab`` work too) with random weights. It runs on token ids you give (a 1-d or
2-d .npy of ids) or synthetic ones. JENGA keeps the top ``keep`` of the 64-token blocks, by the oracle's block
scores (no predictor is trained for a random model), in the upper layers but the last, and the top ``mlp_keep``
of the tokens in every MLP but the last. Reported per variant: saved-activation bytes (exact, from
``saved_tensors_hooks``), the median CPU step time of ``repeats`` steps (the oracle's scoring runs before each
JENGA step, untimed), and the block sparsity.
Cost: one dense and one JENGA step per repeat, O(layers x (seq x hidden^2 + seq^2 x hidden)) each.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from syslab.training.jenga.model import BLOCK, Config, TinyLlama
from syslab.training.jenga.reproduce import freeze_for_lora, lora_step, make_plan, sparse_layers

CONFIG_KEYS = {"hidden": ("hidden_size", "hidden"), "layers": ("num_hidden_layers", "layers"),
               "heads": ("num_attention_heads", "heads"), "ffn": ("intermediate_size", "intermediate"),
               "vocab": ("vocab_size", "vocab")}


@dataclass(frozen=True)
class Variant:
    saved_bytes: int
    step_s: float
    loss: float


def oracle_plan(model: TinyLlama, tokens: torch.Tensor, keep: float, mlp_keep: float) -> list:
    """JENGA's plan with the oracle's kept blocks fixed by a no-grad forward, so the timed step does not pay
    for the oracle (which computes every attention probability; JENGA's small predictor replaces it)."""
    plan, scores = make_plan(model, tokens, "oracle", keep=keep, mlp_keep=mlp_keep)
    chosen: dict[int, torch.Tensor] = {}

    def record(i: int, x: torch.Tensor) -> torch.Tensor:
        chosen[i] = scores(i, x)
        return chosen[i]
    with torch.no_grad():
        model(tokens[:, :-1], plan, record)
    return [(chosen[i] if kept == "predict" else kept, m) for i, (kept, m) in enumerate(plan)]


def profile(cfg: Config, tokens: torch.Tensor, keep: float, mlp_keep: float, repeats: int = 3,
            seed: int = 0) -> dict:
    """Dense and JENGA LoRA steps on ``tokens`` [batch, seq + 1] (inputs and next-token targets)."""
    model = TinyLlama(cfg, seed=seed)
    freeze_for_lora(model)
    out = {}
    for mode in ("dense", "oracle"):
        opt = torch.optim.AdamW(model.lora_parameters(), lr=1e-3)
        runs = []
        for _ in range(repeats):
            plan = None if mode == "dense" else oracle_plan(model, tokens, keep, mlp_keep)
            runs.append(lora_step(model, opt, tokens, plan))
        out["dense" if mode == "dense" else "jenga"] = Variant(max(r[2] for r in runs),
                                                               statistics.median(r[1] for r in runs), runs[0][0])
    n = tokens.shape[1] - 1
    blocks = n // BLOCK
    kept_blocks = max(2, int(round(keep * blocks)))
    return {"variants": out, "blocks_per_sequence": blocks, "sparse_layers": list(sparse_layers(cfg)),
            "block_sparsity": 1 - kept_blocks / blocks, "mlp_token_sparsity": 1 - max(1, round(mlp_keep * n)) / n}
