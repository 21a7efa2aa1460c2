"""Per-operator activation memory and time of a Llama layer: what recomputation can trade.

A layer's forward saves tensors for its backward. We group them by the operator that *produces* them, so
dropping a group means recomputing exactly that operator in the backward (its inputs are kept or recomputed
too, so costs add up). Per token, in elements (h hidden, F MLP width, h_kv = kv heads x head dim):

| group                | tensor saved                         | elements   | recompute            | cheap |
|----------------------|--------------------------------------|------------|----------------------|-------|
| attn-input (kept)    | layer input x (RMSNorm 1's input)    | h          | - (the checkpoint)   |       |
| norm1-out            | RMSNorm 1 output (QKV's input)       | h          | RMSNorm              | yes   |
| qkv-out              | q, k, v after RoPE                   | h + 2 h_kv | QKV GEMM + RoPE      |       |
| attn-out             | attention output (o_proj's input)    | h          | flash attention      |       |
| mlp-input (kept)     | residual y (RMSNorm 2's input)       | h          | - (the checkpoint)   |       |
| norm2-out            | RMSNorm 2 output (gate/up's input)   | h          | RMSNorm              | yes   |
| gate-up-out          | gate and up projections (one buffer) | 2 F        | gate/up GEMM         |       |
| silu-out             | SiLU(gate) (the product's input)     | F          | SiLU                 | yes   |
| mul-out              | SiLU(gate) x up (down's input)       | F          | elementwise multiply | yes   |

This is the fused-kernel layout (fused RMSNorm keeps its input and a per-token rstd; flash attention keeps q,
k, v, the output and a log-sum-exp; we drop the per-token scalars). ``measure_saved_elements`` runs a tiny
layer in torch and attributes every saved tensor storage (parameters and constants excluded) to the operator
that saved it; the test checks the GEMM and SwiGLU groups against this table exactly (CPU's unfused RMSNorm
and SDPA save a little more than the fused kernels, which the report shows).

Times on an A100-80GB come from the shared GPU cost model (``syslab.core.gpu``, calibrated on published
cuBLAS/CUTLASS GEMM and FlashAttention-2 measurements; see ``core/gpu/calibration.py``): each GEMM group is
``gemm_s`` of its real shape (m = the micro-batch's tokens, n and k the projection's output and input widths),
attention is ``attention_s`` (causal, forward: what a recomputation reruns), and the elementwise operators are
``memory_s`` of reading and writing each element once in BF16 (one kernel each). The backward of everything
costs 2x its forward (the usual approximation, and our notes').
"""

from __future__ import annotations

from dataclasses import dataclass

from syslab.core import gpu as G
from syslab.core.hardware import gpu
from syslab.core.models import Transformer

BYTES = 2                                   # BF16 activations


@dataclass(frozen=True)
class Group:
    """Saved tensors one operator produces, per layer and micro-batch: bytes, and the forward time to
    regenerate them. ``half`` is the half-layer it belongs to ("attn" or "mlp"), for partition moves."""

    name: str
    half: str
    bytes: float
    recompute_s: float
    cheap: bool
    droppable: bool = True


def layer_groups(t: Transformer, seq: int, micro_batch: int = 1, gpu_name: str = "A100-80GB") -> list[Group]:
    """The table above for one layer of ``t`` at ``seq`` tokens x ``micro_batch``."""
    g = gpu(gpu_name)
    n = seq * micro_batch
    h, ffn, kv = t.hidden, t.ffn, t.kv_heads * t.head_dim
    gemm = lambda cols, depth: G.gemm_s(n, cols, depth, g)        # noqa: E731  (n x depth) @ (depth x cols)
    elementwise = lambda elems: G.memory_s(2 * elems * BYTES, g)  # noqa: E731  read + write, one kernel
    attn = G.attention_s(micro_batch, seq, t.heads, t.head_dim, g, causal=True, backward=False)
    b = lambda elems: elems * n * BYTES                                      # noqa: E731
    return [
        Group("attn-input", "attn", b(h), 0.0, False, droppable=False),
        Group("norm1-out", "attn", b(h), elementwise(h * n), True),
        Group("qkv-out", "attn", b(h + 2 * kv), gemm(h + 2 * kv, h) + elementwise((h + kv) * n), False),
        Group("attn-out", "attn", b(h), attn, False),
        Group("mlp-input", "mlp", b(h), 0.0, False, droppable=False),
        Group("norm2-out", "mlp", b(h), elementwise(h * n), True),
        Group("gate-up-out", "mlp", b(2 * ffn), gemm(2 * ffn, h), False),
        Group("silu-out", "mlp", b(ffn), elementwise(ffn * n), True),
        Group("mul-out", "mlp", b(ffn), elementwise(ffn * n), True),
    ]


def half_forward_s(t: Transformer, seq: int, micro_batch: int = 1, gpu_name: str = "A100-80GB") -> dict[str, float]:
    """Forward time of each half-layer: its operators plus the output projections (o_proj, down), which save
    nothing of their own (their inputs are the groups above) and so never need recomputing."""
    g = gpu(gpu_name)
    n = seq * micro_batch
    h, ffn = t.hidden, t.ffn
    groups = layer_groups(t, seq, micro_batch, gpu_name)
    attn = sum(x.recompute_s for x in groups if x.half == "attn") + G.gemm_s(n, h, h, g)        # o_proj
    mlp = sum(x.recompute_s for x in groups if x.half == "mlp") + G.gemm_s(n, h, ffn, g)        # down
    return {"attn": attn, "mlp": mlp}


# ---------------------------------------------------------------------------------------------------------
# The real measurement (torch, optional)
# ---------------------------------------------------------------------------------------------------------


def measure_saved_elements(seq: int = 32, hidden: int = 64, ffn: int = 160, heads: int = 4,
                           kv_heads: int = 2) -> dict[str, float]:
    """Run one tiny Llama layer forward in torch (CPU) and return, per operator, the elements per token of
    the tensor storages autograd saved for the backward, labelled by the table's groups (a storage counts once,
    for the first operator that saves it). Parameters and constants (RoPE tables) are excluded: they are not
    activations."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    hd = hidden // heads
    params = [torch.ones(hidden, requires_grad=True),
              torch.randn(hidden + 2 * kv_heads * hd, hidden, requires_grad=True),
              torch.randn(hidden, hidden, requires_grad=True), torch.ones(hidden, requires_grad=True),
              torch.randn(2 * ffn, hidden, requires_grad=True), torch.randn(hidden, ffn, requires_grad=True)]
    w_n1, w_qkv, w_o, w_n2, w_gu, w_d = params
    cos, sin = torch.randn(seq, hd), torch.randn(seq, hd)
    skip = {p.untyped_storage().data_ptr() for p in params} | {cos.untyped_storage().data_ptr(),
                                                                 sin.untyped_storage().data_ptr()}
    current, owner, sizes = ["?"], {}, {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip and ptr not in owner:
            owner[ptr] = current[0]
            sizes[current[0]] = sizes.get(current[0], 0) + t.untyped_storage().nbytes() / t.element_size()
        return t

    def rotate(t):
        a, b = t.chunk(2, -1)
        return torch.cat((-b, a), -1)

    # Each label names the table's group the *saved* tensors belong to: an operator saves its inputs, so
    # while QKV runs it saves RMSNorm 1's output ("norm1-out"), while SiLU runs the gate/up buffer, and so on.
    x = torch.randn(1, seq, hidden, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        current[0] = "attn-input"
        n1 = F.rms_norm(x, (hidden,), w_n1)
        current[0] = "norm1-out"
        q, k, v = F.linear(n1, w_qkv).split([hidden, kv_heads * hd, kv_heads * hd], -1)
        q, k, v = (z.view(1, seq, -1, hd).transpose(1, 2) for z in (q, k, v))
        q, k = q * cos + rotate(q) * sin, k * cos + rotate(k) * sin
        current[0] = "qkv-out+attn-out"
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        o = o.transpose(1, 2).reshape(1, seq, hidden)
        current[0] = "attn-out"
        y = x + F.linear(o, w_o)
        current[0] = "mlp-input"
        n2 = F.rms_norm(y, (hidden,), w_n2)
        current[0] = "norm2-out"
        gate, up = F.linear(n2, w_gu).chunk(2, -1)
        current[0] = "gate-up-out"
        a = F.silu(gate)
        current[0] = "silu-out"
        prod = a * up
        current[0] = "mul-out"
        (y + F.linear(prod, w_d)).sum().backward()
    return {k: v / seq for k, v in sizes.items()}
