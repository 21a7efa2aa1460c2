"""A tiny Llama-style model (RMSNorm, RoPE, SwiGLU, LoRA on q and v) whose layers can run JENGA's contextual
token sparsity, plus the block-score oracle and predictor.

* **Attention token elimination** (per layer, given kept 64-token blocks): only the kept tokens' hidden
  states are normalised, projected to q, k, v (RoPE at their *original* positions), attended with a causal
  mask over the kept positions, and projected out; the result is scattered back into a zero update, so
  eliminated tokens pass through the residual unchanged. Kept blocks stay in sequence order
  (permutation-free). Autograd then saves activations for kept tokens only.
* **MLP token sparsity**: the gate and up projections are scored for every token without building a graph
  (||SiLU(gate)||_2 + ||up||_2, as in the artifact), and the MLP runs with autograd on the top ``keep``
  fraction of tokens only; the rest get a zero MLP update. (The artifact does this in one custom autograd
  function; a no-grad scoring pass followed by the kept tokens' ordinary forward saves the same tensors.)
* **Segment-wise execution**: the MLP over token segments, each checkpointed, so only segment inputs are
  saved (the artifact's segment-based kernels cut peak memory the same way).
* **Block scores**: the oracle sums the real attention probabilities (over heads and queries) that each key
  block receives; the predictor is a small two-tower MLP on block-pooled hidden states whose Q-hat K-hat^T
  block map is trained to match the oracle's (the artifact's predictor has the same two-path shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK = 64


@dataclass(frozen=True)
class Config:
    vocab: int = 128
    hidden: int = 128
    heads: int = 4
    ffn: int = 352
    layers: int = 8
    lora_rank: int = 8
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary embedding of [..., tokens, head_dim] at the given (original) token positions."""
    d = x.shape[-1]
    freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angle = positions.float()[:, None] * freq[None, :]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Layer(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        h, r = cfg.hidden, cfg.lora_rank
        self.cfg = cfg
        self.n1 = nn.Parameter(torch.ones(h))
        self.n2 = nn.Parameter(torch.ones(h))
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.o = nn.Linear(h, h, bias=False)
        self.gate_up = nn.Linear(h, 2 * cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, h, bias=False)
        self.lora_a = nn.Parameter(torch.randn(2, h, r) / math.sqrt(h))
        self.lora_b = nn.Parameter(torch.zeros(2, r, h))

    def attention(self, x: Tensor, positions: Tensor, probs: bool = False) -> Tensor:
        """Causal attention among the given tokens [batch, n, hidden] at ``positions`` (sorted)."""
        cfg = self.cfg
        b, n, h = x.shape
        xn = rms_norm(x, self.n1, cfg.eps)
        q, k, v = self.qkv(xn).split(h, dim=-1)
        lora = torch.einsum("bnh,khr,krd->kbnd", xn, self.lora_a, self.lora_b)
        q, v = q + lora[0], v + lora[1]

        def heads(t: Tensor) -> Tensor:
            return t.view(b, n, cfg.heads, cfg.head_dim).transpose(1, 2)

        q, k, v = rope(heads(q), positions), rope(heads(k), positions), heads(v)
        mask = positions[:, None] >= positions[None, :]
        if probs:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(cfg.head_dim)
            return s.masked_fill(~mask, float("-inf")).softmax(-1)            # [b, heads, n, n]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(b, n, h))

    def mlp(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(rms_norm(x, self.n2, self.cfg.eps)).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    def segmented_mlp(self, x: Tensor, segments: int) -> Tensor:
        """Segment-wise execution: the MLP over ``segments`` chunks of tokens, each checkpointed, so only the
        chunks' inputs are saved and one chunk's intermediates exist at a time in the backward."""
        from torch.utils.checkpoint import checkpoint

        parts = [checkpoint(self.mlp, chunk, use_reentrant=False) for chunk in x.chunk(segments, dim=1)]
        return torch.cat(parts, dim=1)

    def forward(self, x: Tensor, kept: Tensor | None = None, mlp_keep: float | None = None,
                segments: int = 1) -> Tensor:
        """``kept``: sorted token indices that take part in attention (None: all); ``mlp_keep``: the fraction
        of tokens the MLP runs on (None: all); ``segments``: run the MLP segment-wise (1: at once)."""
        n = x.shape[1]
        if kept is None:
            x = x + self.attention(x, torch.arange(n))
        else:
            update = torch.zeros_like(x)
            update[:, kept] = self.attention(x[:, kept], kept)
            x = x + update
        mlp = self.mlp if segments <= 1 else (lambda t: self.segmented_mlp(t, segments))
        if mlp_keep is None:
            return x + mlp(x)
        with torch.no_grad():                                    # score every token, build no graph
            gate, up = self.gate_up(rms_norm(x, self.n2, self.cfg.eps)).chunk(2, dim=-1)
            score = F.silu(gate).norm(dim=-1) + up.norm(dim=-1)  # [batch, tokens]
            k = max(1, int(round(mlp_keep * n)))
            top = score.sum(0).topk(k).indices.sort().values   # shared across the batch, order kept
        update = torch.zeros_like(x)
        update[:, top] = mlp(x[:, top])
        return x + update


class TinyLlama(nn.Module):
    def __init__(self, cfg: Config = Config(), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.norm = nn.Parameter(torch.ones(cfg.hidden))
        self.head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)

    def lora_parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in (layer.lora_a, layer.lora_b)]

    def forward(self, tokens: Tensor, plan: list[tuple[Tensor | None, float | None]] | None = None,
                scores=None, segments: int = 1) -> Tensor:
        """Logits; ``plan[i]`` = (kept token indices, MLP keep fraction) for layer i, or ``scores(i, x)``
        returning the kept indices from the hidden state entering layer i (oracle or predictor)."""
        x = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            kept, mlp_keep = plan[i] if plan is not None else (None, None)
            if isinstance(kept, str):                        # "predict": ask ``scores`` now
                kept = scores(i, x)
            x = layer(x, kept, mlp_keep, segments)
        return rms_norm(x, self.norm, self.cfg.eps) @ self.head.weight.T


# ---------------------------------------------------------------------------------------------------------
# Block scores and which blocks to keep
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def oracle_block_scores(layer: Layer, x: Tensor) -> Tensor:
    """The attention each key block receives (summed over batch, heads and queries): [blocks]."""
    n = x.shape[1]
    p = layer.attention(x, torch.arange(n), probs=True)           # [b, heads, n, n]
    per_key = p.sum(dim=(0, 1, 2))
    return per_key.view(n // BLOCK, BLOCK).sum(-1)


def kept_tokens(block_scores: Tensor, keep: float, n: int) -> Tensor:
    """Token indices of the top ``keep`` fraction of blocks, in sequence order. The first and the last block
    are always kept (the sink, and the queries nearest to the targets)."""
    nb = n // BLOCK
    k = max(2, int(round(keep * nb)))
    s = block_scores.clone()
    s[0] = s[-1] = float("inf")
    blocks = s.topk(k).indices.sort().values
    return (blocks[:, None] * BLOCK + torch.arange(BLOCK)[None, :]).reshape(-1)


class BlockPredictor(nn.Module):
    """Two small MLP towers on block-mean hidden states; their product predicts the block score map.

    Elastic size (the artifact's prunable predictor): while ``tracking``, each hidden ReLU neuron counts how
    often it outputs zero; ``prune(threshold)`` then removes, structurally, the neurons dead more often than
    ``threshold`` (the artifact: 80%, after 100 training steps), keeping at least one per tower."""

    def __init__(self, hidden: int, width: int = 64, out: int = 32) -> None:
        super().__init__()
        self.q = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, out))
        self.k = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, out))
        self.tracking = False
        self.dead = {"q": torch.zeros(width), "k": torch.zeros(width)}
        self.seen = 0

    @property
    def width(self) -> tuple[int, int]:
        return self.q[0].out_features, self.k[0].out_features

    def _tower(self, name: str, pooled: Tensor) -> Tensor:
        first, relu, last = getattr(self, name)
        hid = relu(first(pooled))
        if self.tracking:
            self.dead[name] += (hid.detach() == 0).reshape(-1, hid.shape[-1]).float().sum(0)
        return last(hid)

    @torch.no_grad()
    def prune(self, threshold: float = 0.8) -> tuple[int, int]:
        """Remove the neurons dead in more than ``threshold`` of the tracked rows; returns the new widths."""
        for name in ("q", "k"):
            first, relu, last = getattr(self, name)
            rate = self.dead[name] / max(self.seen, 1)
            keep = torch.nonzero(rate <= threshold).flatten()
            if len(keep) == 0:
                keep = rate.argmin().reshape(1)
            new_first, new_last = nn.Linear(first.in_features, len(keep)), nn.Linear(len(keep), last.out_features)
            new_first.weight.copy_(first.weight[keep])
            new_first.bias.copy_(first.bias[keep])
            new_last.weight.copy_(last.weight[:, keep])
            new_last.bias.copy_(last.bias)
            setattr(self, name, nn.Sequential(new_first, relu, new_last))
            self.dead[name] = torch.zeros(len(keep))
        self.seen = 0
        return self.width

    def forward(self, x: Tensor) -> Tensor:
        """Predicted attention each key block receives: [blocks] (causal over blocks)."""
        b, n, h = x.shape
        pooled = x.view(b, n // BLOCK, BLOCK, h).mean(2)
        if self.tracking:
            self.seen += pooled.shape[0] * pooled.shape[1]
        m = self._tower("q", pooled) @ self._tower("k", pooled).transpose(-1, -2)     # [b, nb, nb]
        nb = n // BLOCK
        causal = torch.ones(nb, nb, dtype=torch.bool).tril()
        m = m.masked_fill(~causal, float("-inf")).softmax(-1)
        return m.sum(dim=(0, 1))


def recall(pred: Tensor, truth: Tensor, keep: float) -> float:
    """Share of the oracle's top blocks that the prediction also puts in its top."""
    k = max(1, int(round(keep * len(truth))))
    a = set(pred.topk(k).indices.tolist())
    b = set(truth.topk(k).indices.tolist())
    return len(a & b) / k
