"""Transformer shapes of the models the papers train and serve, with FLOP and byte formulas.

Shapes are from each model's published config (Hugging Face ``config.json`` of the official release, or the
paper for GPT-3: Brown et al. 2020, Table 2.1). FLOPs count a multiply-add as 2 and ignore softmax,
norms and activations (< 1-2% at these sizes). Attention FLOPs are causal: a query at position p sees p+1
keys, so a sequence of s tokens costs 2 * 2 * head_dim * heads * s^2 / 2 per layer in QK^T and PV.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


@dataclass(frozen=True)
class Transformer:
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    gated_mlp: bool = True       # SwiGLU (3 matrices) vs GELU MLP (2)
    experts: int = 1
    top_k: int = 1
    tied_embeddings: bool = False
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def attn_params_per_layer(self) -> int:
        kv = self.kv_heads * self.head_dim
        return self.hidden * self.hidden * 2 + 2 * self.hidden * kv          # Wq, Wo, Wk, Wv

    @property
    def mlp_params_per_expert(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    @property
    def params(self) -> int:
        """All parameters (every expert), with embeddings."""
        per_layer = self.attn_params_per_layer + self.experts * self.mlp_params_per_expert
        emb = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + emb

    @property
    def active_params(self) -> int:
        """Parameters one token touches (top-k experts), without the input embedding lookup."""
        per_layer = self.attn_params_per_layer + self.top_k * self.mlp_params_per_expert
        return self.layers * per_layer + self.vocab * self.hidden

    def linear_flops_per_token(self) -> float:
        """Forward FLOPs of the GEMMs for one token (projections, MLP, LM head)."""
        return 2.0 * self.active_params

    def attention_flops(self, seq_len: float) -> float:
        """Forward FLOPs of causal attention over one sequence of ``seq_len`` tokens (all layers)."""
        return 2.0 * self.layers * self.hidden * seq_len * seq_len

    def prefill_flops(self, seq_len: float) -> float:
        return seq_len * self.linear_flops_per_token() + self.attention_flops(seq_len)

    def decode_flops(self, context_len: float) -> float:
        """Forward FLOPs of one new token attending to ``context_len`` cached tokens."""
        return self.linear_flops_per_token() + 4.0 * self.layers * self.hidden * context_len

    def training_flops(self, seq_len: float) -> float:
        """Forward + backward (backward = 2x forward) for one sequence."""
        return 3.0 * self.prefill_flops(seq_len)

    def kv_bytes_per_token(self, dtype: str = "bf16") -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype]

    def weight_bytes(self, dtype: str = "bf16") -> float:
        return self.params * DTYPE_BYTES[dtype]

    def decode_bytes(self, batch: int, context_len: float, dtype: str = "bf16") -> float:
        """HBM bytes one decode iteration reads: active weights once plus every sequence's KV cache."""
        return self.active_params * DTYPE_BYTES[dtype] + batch * context_len * self.kv_bytes_per_token(dtype)


HF = "Hugging Face config.json of the official release"
MODELS: dict[str, Transformer] = {m.name: m for m in [
    Transformer("llama2-7b", 32, 4096, 32, 32, 11008, 32000, source=f"meta-llama/Llama-2-7b-hf {HF}"),
    Transformer("llama2-13b", 40, 5120, 40, 40, 13824, 32000, source=f"meta-llama/Llama-2-13b-hf {HF}"),
    Transformer("llama-30b", 60, 6656, 52, 52, 17920, 32000, source=f"huggyllama/llama-30b {HF} (LLaMA-1 33B)"),
    Transformer("llama2-70b", 80, 8192, 64, 8, 28672, 32000, source=f"meta-llama/Llama-2-70b-hf {HF}"),
    Transformer("llama3-8b", 32, 4096, 32, 8, 14336, 128256, source=f"meta-llama/Meta-Llama-3-8B {HF}"),
    Transformer("llama3-70b", 80, 8192, 64, 8, 28672, 128256, source=f"meta-llama/Meta-Llama-3-70B {HF}"),
    Transformer("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, source=f"Qwen/Qwen2.5-7B {HF}"),
    Transformer("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, source=f"Qwen/Qwen2.5-72B {HF}"),
    Transformer("gpt3-175b", 96, 12288, 96, 96, 4 * 12288, 50257, gated_mlp=False, tied_embeddings=True,
                source="Brown et al. 2020, Table 2.1"),
    Transformer("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, experts=8, top_k=2,
                source=f"mistralai/Mixtral-8x7B-v0.1 {HF}"),
]}


def model(name: str) -> Transformer:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]
