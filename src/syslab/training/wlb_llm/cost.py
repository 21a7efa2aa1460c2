"""The modelled H100 cost of a micro-batch (W_a + W_l), imbalance degree and pipeline iteration time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from syslab.core.hardware import GPU, gpu
from syslab.core.models import Transformer, model
from syslab.training.pipeline import one_f_one_b_schedule

# ---------------------------------------------------------------------------------------------------------
# Cost model: W_a(d) (attention, quadratic) and W_l(d) (everything else, linear), per pipeline stage
# ---------------------------------------------------------------------------------------------------------

TILE = 128  # FlashAttention-3 forward query block for head dim 128


@dataclass(frozen=True)
class CostModel:
    """Forward time of one micro-batch on one pipeline stage of an H100 cluster (see the module docstring)."""

    shape: Transformer = field(default_factory=lambda: model("llama2-7b"))
    device: GPU = field(default_factory=lambda: gpu("H100-SXM"))
    tp: int = 8
    cp: int = 2
    pp: int = 4
    eta_gemm: float = 0.75
    eta_attn: float = 0.60

    @property
    def _per_gpu(self) -> float:
        """Seconds per FLOP of the whole model, per GPU of the stage's TP x CP group."""
        return 1.0 / (self.device.peak_flops("bf16") * self.pp * self.tp * self.cp)

    @property
    def crossover_tokens(self) -> float:
        """The document length d at which W_a(d) = W_l(d): (2 P / eta_gemm) d = (2 h L / eta_attn) d^2."""
        return (self.shape.linear_flops_per_token() / self.eta_gemm) / (
            2.0 * self.shape.hidden * self.shape.layers / self.eta_attn)

    def with_crossover(self, tokens: float) -> CostModel:
        """The same model with attention efficiency scaled so that W_a = W_l at ``tokens`` (sensitivity only)."""
        from dataclasses import replace

        return replace(self, eta_attn=self.eta_attn * tokens / self.crossover_tokens)

    def linear_s(self, tokens: np.ndarray | float) -> np.ndarray | float:
        """W_l: GEMMs and everything else linear in tokens (Eq. cost model, linear term)."""
        return np.asarray(tokens) * self.shape.linear_flops_per_token() / self.eta_gemm * self._per_gpu

    def attention_pairs_s(self, pairs: np.ndarray | float) -> np.ndarray | float:
        """Attention time of ``pairs`` (query, key) pairs: 4 * hidden * layers FLOPs each (QK^T and PV)."""
        return np.asarray(pairs) * 4.0 * self.shape.hidden * self.shape.layers / self.eta_attn * self._per_gpu

    def attention_s(self, lengths: np.ndarray) -> np.ndarray:
        """W_a(d): causal attention of each whole document, d(d+1)/2 pairs."""
        d = np.asarray(lengths, dtype=np.float64)
        return self.attention_pairs_s(d * (d + 1) / 2)

    def workload(self, lengths: np.ndarray) -> np.ndarray:
        """W_a(d) + W_l(d) per document: the packer's workload estimate."""
        return self.attention_s(lengths) + self.linear_s(lengths)

    def microbatch_s(self, lengths: np.ndarray) -> float:
        """Forward latency with perfect CP balance (Table 2's per-micro-batch latency)."""
        return float(self.workload(np.asarray(lengths)).sum())


def imbalance_degree(latencies: Sequence[float]) -> float:
    """Table 2: max micro-batch latency x #micro-batches / total latency (1.0 = perfectly balanced)."""
    lat = np.asarray(latencies, dtype=np.float64)
    return float(lat.max() * len(lat) / lat.sum()) if lat.sum() > 0 else 1.0


def fig5_iteration_s(microbatch_fwd_s: Sequence[float], pp: int) -> float:
    """The paper's closed form (Fig. 5): the largest micro-batch crosses all p stages, the others run forward
    and backward (2x forward) on the first stage: T = (p - 1) * max_j t_j + sum_j t_j with t_j = 3 * fwd_j."""
    t = 3.0 * np.asarray(microbatch_fwd_s, dtype=np.float64)
    return float((pp - 1) * t.max() + t.sum())


def iteration_s(microbatch_fwd_s: Sequence[float], pp: int) -> float:
    """Iteration time from simulating the 1F1B schedule (``training.pipeline``): every stage holds 1/p of the
    layers, so micro-batch j takes fwd_j forward and 2 fwd_j backward on each stage."""
    fwd = np.tile(np.asarray(microbatch_fwd_s, dtype=np.float64), (pp, 1))
    return one_f_one_b_schedule(fwd, 2.0 * fwd).makespan
