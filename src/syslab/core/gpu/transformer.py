"""A transformer's kernels on the cost model: one forward pass of a batch, layer by layer, as serving engines and
training planners need it.

A layer is four GEMMs (QKV, output projection, MLP up/gate, MLP down; tensor-parallel column/row splits over
``tp`` GPUs, Megatron style), attention (prefill pairs and decode KV reads), two all-reduces of the activations
when tp > 1, and memory-bound norms/activations/residuals (``ELEMENTWISE_PASSES`` passes over the activations).
The LM head is one more GEMM. Shapes from ``core.models``; kernel times from ``core.gpu``.
*Cost*: O(1) numpy work per call; ``forward_s`` memoises GEMM times by token count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from syslab.core.gpu import comm, compute
from syslab.core.hardware import GPU, gpu
from syslab.core.models import DTYPE_BYTES, Transformer

# Memory-bound passes over the (tokens x hidden) activations per layer: two RMSNorms (read + write each), RoPE
# on Q and K, the SwiGLU product over the ffn width (counted in ffn units below), two residual adds. Counted
# from the Llama layer's operators (each a read and a write of the tensor); fused kernels would do fewer.
ELEMENTWISE_PASSES = 8


def gemm_shapes(t: Transformer, tp: int = 1) -> list[tuple[int, int]]:
    """(n, k) of each per-layer GEMM on one of ``tp`` GPUs: QKV and up/gate split columns, O and down rows."""
    kv = t.kv_heads * t.head_dim
    mlp_in = (2 if t.gated_mlp else 1) * t.ffn
    return [((t.hidden + 2 * kv) // tp, t.hidden), (t.hidden, t.hidden // tp),
            (mlp_in * t.top_k // tp, t.hidden), (t.hidden, t.ffn * t.top_k // tp)]


@dataclass(frozen=True)
class ForwardModel:
    """Forward-pass times of ``shape`` on a ``tp``-GPU group of ``device``."""

    shape: Transformer
    device: GPU
    tp: int = 1
    dtype: str = "bf16"

    @functools.cached_property
    def _gpu(self) -> GPU:
        return gpu(self.device)

    @functools.cached_property
    def _memo(self) -> dict[tuple[str, int], float]:
        return {}

    def linear_s(self, tokens: int) -> float:
        """All layers' GEMMs plus the LM head for ``tokens`` rows (memoised per token count)."""
        key = ("linear", int(tokens))
        if key not in self._memo:
            self._memo[key] = self._linear_s(int(tokens))
        return self._memo[key]

    def _linear_s(self, tokens: int) -> float:
        if tokens <= 0:
            return 0.0
        per_layer = sum(compute.gemm_s(tokens, n, k, self._gpu, self.dtype)
                        for n, k in gemm_shapes(self.shape, self.tp))
        head = compute.gemm_s(tokens, self.shape.vocab // self.tp, self.shape.hidden, self._gpu, self.dtype)
        return self.shape.layers * per_layer + head

    def fixed_s(self, tokens: int) -> float:
        """All layers' elementwise passes and tensor-parallel all-reduces for ``tokens`` rows (memoised)."""
        key = ("fixed", int(tokens))
        if key not in self._memo:
            self._memo[key] = self._fixed_s(int(tokens))
        return self._memo[key]

    def _fixed_s(self, tokens: int) -> float:
        if tokens <= 0:
            return 0.0
        act = tokens * self.shape.hidden * DTYPE_BYTES[self.dtype]
        elementwise = compute.memory_s(ELEMENTWISE_PASSES * act + 2 * tokens * self.shape.ffn // self.tp
                                       * DTYPE_BYTES[self.dtype], self._gpu, kernels=5)
        allreduce = 2 * comm.collective_s("allreduce", act, self.tp, self._gpu) if self.tp > 1 else 0.0
        return self.shape.layers * (elementwise + allreduce)

    def attention_s(self, attn_pairs: float | np.ndarray, mean_keys: float = 1024.0) -> float | np.ndarray:
        """All layers' prefill attention over ``attn_pairs`` causal (query, key) pairs."""
        heads = max(self.shape.heads // self.tp, 1)
        return self.shape.layers * compute.attention_pairs_s(attn_pairs, mean_keys, heads, self.shape.head_dim,
                                                             self._gpu, dtype=self.dtype)

    def decode_attention_s(self, kv_tokens: float | np.ndarray) -> float | np.ndarray:
        """All layers' decode attention reading ``kv_tokens`` cached tokens (summed over the batch)."""
        kv_heads = max(self.shape.kv_heads // self.tp, 1)
        return self.shape.layers * compute.decode_attention_s(kv_tokens, kv_heads, self.shape.head_dim,
                                                              self._gpu, self.dtype)

    def forward_s(self, new_tokens: int, attn_pairs: float | np.ndarray = 0.0,
                  kv_read_tokens: float | np.ndarray = 0.0, mean_keys: float = 1024.0) -> float | np.ndarray:
        """One forward pass over ``new_tokens`` tokens whose prefill attention covers ``attn_pairs`` pairs and whose
        decode attention reads ``kv_read_tokens`` cached tokens."""
        n = int(new_tokens)
        return (self.linear_s(n) + self.fixed_s(n) + self.attention_s(attn_pairs, mean_keys)
                + self.decode_attention_s(kv_read_tokens))
