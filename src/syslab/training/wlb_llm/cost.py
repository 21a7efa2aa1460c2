"""The modelled H100 cost of a micro-batch (W_a + W_l), imbalance degree and pipeline iteration time.

Kernel times come from the shared GPU cost model (``syslab.core.gpu``, calibrated on published cuBLAS/CUTLASS
GEMM and FlashAttention-3 measurements on H100 SXM; see ``core/gpu/calibration.py``). One micro-batch on one
pipeline stage (``layers / PP`` layers, TP x CP GPUs):

- W_l (linear work): the stage's GEMMs (``core.gpu.ForwardModel.linear_s``: QKV, output, MLP gate/up and down
  at TP, plus 1/PP of the LM head) over each CP rank's share of the micro-batch, as a per-token time. The rate is
  taken at a packed micro-batch of ``microbatch_tokens`` tokens (the documents of a micro-batch run through the
  same GEMMs, so a document's marginal cost is the per-token rate of the packed sequence, not a GEMM of its own),
  so W_l is exactly linear in tokens.
- W_a (attention): ``core.gpu.attention_pairs_s`` (FlashAttention-3 forward, heads / TP heads of head_dim), per
  (query, key) pair at the efficiency of the keys a query block visits (a causal document of d tokens: d / 2),
  over the busiest CP rank's pairs; the per-kernel launch floor is left out (one varlen kernel per layer per
  micro-batch, not per document). When only a pair count is known, the keys are those of one causal document
  with that many pairs.
- ``attn_scale`` multiplies W_a. It is 1 in every reproduced number; ``with_crossover`` sets it so that W_a(d) =
  W_l(d) at a chosen d, a *sensitivity knob* for the report's sweep of where attention overtakes linear work,
  not a calibration.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import brentq

from syslab.core import gpu as G
from syslab.core.hardware import GPU, gpu
from syslab.core.models import Transformer, model
from syslab.training.pipeline import one_f_one_b_schedule

# ---------------------------------------------------------------------------------------------------------
# Cost model: W_a(d) (attention, quadratic) and W_l(d) (everything else, linear), per pipeline stage
# ---------------------------------------------------------------------------------------------------------

TILE = 128  # FlashAttention-3 forward query block for head dim 128


@functools.cache
def _pair_s(device: str, heads: int, head_dim: int, keys: float) -> float:
    """Seconds per (query, key) pair of one layer's attention forward at ``keys`` keys per query block, without
    the launch floor (the difference of two large calls)."""
    big = 1e12
    return (G.attention_pairs_s(2 * big, keys, heads, head_dim, device)
            - G.attention_pairs_s(big, keys, heads, head_dim, device)) / big


@dataclass(frozen=True)
class CostModel:
    """Forward time of one micro-batch on one pipeline stage of an H100 cluster (see the module docstring)."""

    shape: Transformer = field(default_factory=lambda: model("llama2-7b"))
    device: GPU = field(default_factory=lambda: gpu("H100-SXM"))
    tp: int = 8
    cp: int = 2
    pp: int = 4
    microbatch_tokens: int = 131072       # the packed micro-batch the GEMM rate is taken at (the 128K context)
    attn_scale: float = 1.0               # sensitivity knob (``with_crossover``); 1 = the cost model as is

    @functools.cached_property
    def _linear_per_token_s(self) -> float:
        """Seconds per micro-batch token of the stage's GEMMs (each CP rank runs tokens / CP rows)."""
        rows = max(self.microbatch_tokens // self.cp, 1)
        fm = G.ForwardModel(self.shape, self.device, self.tp)
        return fm.linear_s(rows) / self.pp / (rows * self.cp)

    @property
    def _stage_layers(self) -> float:
        return self.shape.layers / self.pp

    def _per_pair_s(self, keys: np.ndarray) -> np.ndarray:
        """Seconds per (query, key) pair on the stage's layers, for an array of keys-per-query-block."""
        heads = max(self.shape.heads // self.tp, 1)
        k = np.maximum(np.asarray(keys, dtype=np.float64), 1.0)
        uniq, inv = np.unique(k, return_inverse=True)
        rate = np.array([_pair_s(self.device.name, heads, self.shape.head_dim, float(x)) for x in uniq])
        return (rate[inv.reshape(-1)].reshape(k.shape) * self._stage_layers * self.attn_scale)

    @functools.cached_property
    def crossover_tokens(self) -> float:
        """The document length d at which W_a(d) = W_l(d) (W_a / W_l grows with d, so the root is unique)."""
        gap = lambda d: float(self.attention_s(np.array([d]))[0] - self.linear_s(d))  # noqa: E731
        return float(brentq(gap, 1.0, 1e8, xtol=1e-6, rtol=1e-12))

    def with_crossover(self, tokens: float) -> CostModel:
        """The same model with attention time scaled so that W_a = W_l at ``tokens`` (a sensitivity knob, not a
        calibration: the report sweeps it)."""
        ratio = float(self.linear_s(tokens) / self.attention_s(np.array([tokens]))[0])
        return replace(self, attn_scale=self.attn_scale * ratio)

    def linear_s(self, tokens: np.ndarray | float) -> np.ndarray | float:
        """W_l: the stage's GEMMs, linear in tokens (see the module docstring)."""
        return np.asarray(tokens) * self._linear_per_token_s

    def attention_pairs_s(self, pairs: np.ndarray | float, mean_keys: np.ndarray | float | None = None
                          ) -> np.ndarray | float:
        """Attention time of ``pairs`` (query, key) pairs over the micro-batch (the busiest CP rank's pairs x
        CP), each query block visiting ``mean_keys`` keys (default: one causal document's, sqrt(pairs / 2))."""
        p = np.asarray(pairs, dtype=np.float64)
        keys = np.sqrt(p / 2.0) if mean_keys is None else np.broadcast_to(np.asarray(mean_keys, float), p.shape)
        out = p / self.cp * self._per_pair_s(keys)
        return float(out) if out.ndim == 0 else out

    def attention_s(self, lengths: np.ndarray) -> np.ndarray:
        """W_a(d): causal attention of each whole document, d(d+1)/2 pairs at d / 2 keys per query block."""
        d = np.asarray(lengths, dtype=np.float64)
        return np.asarray(self.attention_pairs_s(d * (d + 1) / 2, d / 2.0))

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
