"""Kernel times on one GPU: dense GEMM (large and skinny, on all or a fraction of the SMs), FlashAttention-style
attention forward and backward, decode attention and memory-bound ops.

Every function takes a GPU (a ``core.hardware.GPU`` or its name), returns seconds, broadcasts over numpy arrays
where a caller sweeps a size, and never returns less than the datasheet roofline (``core.hardware.roofline_s``).
The achieved fractions of peak come from ``calibration`` (fitted on cited measurements; see its docstring); the
shape of each formula is below, with the reasoning for it.

**GEMM** ``C[m, n] = A[m, k] @ B[k, n]``. A library kernel covers C with output tiles (``TILE``: 128 x 256 on
Hopper, 128 x 128 before; the CUTLASS/cuBLAS default bf16 tile shapes), one tile per SM at a time, so it runs in
``ceil(tiles / SMs)`` waves and a partial last wave idles SMs (wave quantisation). When there are too few tiles
(skinny or small GEMMs) libraries split K across CTAs (split-K, 1-8 ways, partial sums reduced through memory);
the model takes the best split, as cuBLAS's heuristic aims to. Rows below 128 are padded to the tensor-core step
of 16 (``mma.m16n8k16``), not to a full tile. Compute time = padded FLOPs / (peak x ``gemm_eff`` x wave
efficiency); memory time = (A + B + C [+ split-K partials]) bytes / (HBM x ``hbm_eff``); the kernel takes the
larger (a roofline: well-pipelined kernels overlap the two) plus a launch floor ``launch_s``.
*Cost*: O(1) per call (four split choices), vectorised over arrays of m.

**A fraction f of the SMs** (NanoFlow's and Weaver's co-running kernels; green contexts or a capped grid). Compute
throughput scales with the SMs a kernel owns (SMs are independent compute units; the wave count is recomputed on
``floor(f x SMs)`` SMs). Memory bandwidth does *not* scale that way: a few SMs can keep enough loads in flight to
saturate HBM. ``SMCurve.memory_saturation`` is the fraction of SMs at which a streaming kernel reaches full
bandwidth (bandwidth ``min(1, f / saturation)`` of the full-GPU figure) and ``SMCurve.collective_saturation`` the
same for NCCL collectives (one CTA per channel). See ``SMCurve`` for what is and is not measured.

**Attention** (FlashAttention-2 on Ampere, FlashAttention-3 on Hopper). FLOPs follow the FlashAttention papers'
benchmark convention: forward ``4 x batch x heads x head_dim x seq_q x seq_k`` (QK^T and PV), halved when causal;
backward 2.5 x forward (five matmuls instead of two). Each CTA owns a block of query rows and loops over the keys,
so its fixed cost (loading Q, the softmax epilogue, writing O) amortises over the keys it visits: efficiency
``attn_eff_max x L / (L + attn_s0)``, with L the mean number of keys a query block visits (seq_k, or seq_k / 2 when
causal). ``attn_eff_max`` and ``attn_s0`` are fitted per (GPU, pass, head_dim) on the papers' non-causal points;
the causal points are then a prediction the validation table checks.

**Decode attention** reads every cached K and V once: bytes / (HBM x ``decode_eff``) plus a fitted floor
(split-KV partial results merged, launches) that a short KV read cannot amortise. **Memory-bound ops**
(norms, activations, copies within HBM): bytes moved / (HBM x ``hbm_eff``) plus one launch per kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from syslab.core.gpu.calibration import calibration
from syslab.core.hardware import GPU, gpu
from syslab.core.models import DTYPE_BYTES

# Output tile (rows, cols) of the default dense bf16 GEMM kernels per architecture: CUTLASS's Hopper
# warp-specialised kernels use 128 x 256 (CUTLASS 3.x profiler defaults, sm90); Ampere's 128 x 128
# (CUTLASS 2.x, sm80; also Triton's matmul tutorial's best A100 config).
TILE = {"hopper": (128, 256), "ampere": (128, 128), "ampere-ga10x": (128, 128), "ada": (128, 128),
        "volta": (128, 128)}
SPLIT_K = (1, 2, 4, 8)        # split-K factors a library chooses among (cuBLAS/CUTLASS offer these and more)
MIN_SPLIT_K_DEPTH = 256       # no split leaves a CTA fewer than 256 of K (below that the k-loop cannot pipeline)
MMA_ROWS = 16                 # tensor-core instruction height (mma.sync m16n8k16): rows pad to this, not to a tile
ATTN_BLOCK_Q = 128            # query rows per CTA in FlashAttention-2/3 forward (both papers' default block)


@dataclass(frozen=True)
class SMCurve:
    """How a kernel's speed depends on the fraction of SMs it owns.

    Compute-bound work scales with its SMs (no parameter: SMs are independent). For memory-bound and collective
    kernels we found no public measurement of bandwidth against SM count on A100 or H100 (see
    ``calibration``'s notes); the defaults are assumptions, stated and swept in every report that relies on
    them, never chosen for a headline:

    - ``memory_saturation`` = 0.4: a streaming kernel reaches full HBM bandwidth with 40% of the SMs. By
      Little's law an SM sustains (bytes in flight) / latency; with ~48 KB in flight per SM (2 CTAs x 24 KB of
      cp.async stages, a typical GEMV/attention decode kernel) and ~600 ns DRAM latency that is ~80 GB/s per
      SM, so ~25 A100 SMs (~0.25) or ~40 H100 SMs (~0.3) saturate HBM; 0.4 is the conservative end.
    - ``collective_saturation`` = 0.15: an NCCL collective reaches full link bandwidth with 15% of the SMs
      (NCCL runs one CTA per channel and uses up to 16 channels on an NVSwitch node for ring all-reduce:
      16 / 108 = 0.15 on A100).
    """

    memory_saturation: float = 0.4
    collective_saturation: float = 0.15

    def memory_share(self, sm_fraction: float | np.ndarray) -> float | np.ndarray:
        return np.minimum(1.0, np.asarray(sm_fraction, dtype=np.float64) / self.memory_saturation)

    def collective_share(self, sm_fraction: float | np.ndarray) -> float | np.ndarray:
        return np.minimum(1.0, np.asarray(sm_fraction, dtype=np.float64) / self.collective_saturation)


DEFAULT_CURVE = SMCurve()


def _sms(g: GPU, sm_fraction: float) -> int:
    if not 0.0 < sm_fraction <= 1.0:
        raise ValueError(f"sm_fraction must be in (0, 1], got {sm_fraction}")
    return max(1, int(math.floor(sm_fraction * g.sm_count + 1e-9)))


def _waves_efficiency(units: np.ndarray, sms: int) -> np.ndarray:
    """Busy fraction of SM-slots when ``units`` equal work units run ``sms`` at a time."""
    units = np.maximum(units, 1.0)
    return units / (np.ceil(units / sms) * sms)


def gemm_core_s(m: float | np.ndarray, n: float, k: float, g: GPU, dtype: str, gemm_eff: float, hbm_eff: float,
                sm_fraction: float = 1.0, curve: SMCurve = DEFAULT_CURVE) -> np.ndarray:
    """The tile/wave/split-K roofline of ``gemm_s`` without the launch floor, with explicit efficiencies (the
    calibration fits the floor against it)."""
    m_arr = np.asarray(m, dtype=np.float64)
    sms = _sms(g, sm_fraction)
    eb = DTYPE_BYTES[dtype]
    tile_m, tile_n = TILE.get(g.arch, (128, 128))
    rows = np.where(m_arr < tile_m, np.ceil(m_arr / MMA_ROWS) * MMA_ROWS, np.ceil(m_arr / tile_m) * tile_m)
    cols = math.ceil(n / tile_n) * tile_n
    tiles = np.ceil(rows / tile_m) * (cols / tile_n)
    peak = g.peak_flops(dtype) * gemm_eff * sms / g.sm_count
    bw = g.hbm_bytes_per_s * hbm_eff * curve.memory_share(sm_fraction)
    base_bytes = (m_arr * k + k * n + m_arr * n) * eb
    best = np.full(m_arr.shape, np.inf)
    for split in SPLIT_K:
        if split > 1 and k / split < MIN_SPLIT_K_DEPTH:
            break
        compute = 2.0 * rows * cols * k / (peak * _waves_efficiency(tiles * split, sms))
        partials = 2.0 * m_arr * n * 4 * split if split > 1 else 0.0      # fp32 partial sums written and read back
        best = np.minimum(best, np.maximum(compute, (base_bytes + partials) / bw))
    return best


def gemm_s(m: float | np.ndarray, n: float, k: float, g: GPU | str = "A100-SXM-80GB", dtype: str = "bf16",
           sm_fraction: float = 1.0, curve: SMCurve = DEFAULT_CURVE) -> float | np.ndarray:
    """Seconds of one dense ``(m x k) @ (k x n)`` GEMM in ``dtype`` on ``sm_fraction`` of ``g``'s SMs
    (0 for an empty one). *Cost*: O(1), vectorised over an array of m."""
    g = gpu(g)
    cal = calibration(g)
    m_arr = np.asarray(m, dtype=np.float64)
    if n <= 0 or k <= 0:
        out = np.zeros(m_arr.shape)
    else:
        core = gemm_core_s(np.maximum(m_arr, 1.0), n, k, g, dtype, cal.gemm_eff(dtype), cal.hbm_eff, sm_fraction,
                           curve)
        out = np.where(m_arr > 0, core + cal.launch_s, 0.0)
    return float(out) if out.ndim == 0 else out


def gemm_tflops(m: float, n: float, k: float, g: GPU | str = "A100-SXM-80GB", dtype: str = "bf16",
                sm_fraction: float = 1.0, curve: SMCurve = DEFAULT_CURVE) -> float:
    """Achieved TFLOP/s of ``gemm_s`` (useful FLOPs, 2 m n k, over the modelled time)."""
    return 2.0 * m * n * k / gemm_s(m, n, k, g, dtype, sm_fraction, curve) / 1e12


def attention_flops(batch: float, seq_q: float, heads: int, head_dim: int, causal: bool, backward: bool,
                    seq_k: float | None = None) -> float:
    """FLOPs of the FlashAttention papers' benchmark convention (forward 4 b h d s_q s_k, /2 causal; backward
    2.5 x forward)."""
    seq_k = seq_q if seq_k is None else seq_k
    fwd = 4.0 * batch * heads * head_dim * seq_q * seq_k / (2.0 if causal else 1.0)
    return fwd * (2.5 if backward else 1.0)


def attention_s(batch: float, seq: float, heads: int, head_dim: int, g: GPU | str = "A100-SXM-80GB",
                causal: bool = True, backward: bool = False, seq_k: float | None = None, dtype: str = "bf16",
                sm_fraction: float = 1.0) -> float:
    """Seconds of one FlashAttention-style forward (or backward) over ``batch`` sequences of ``seq`` query tokens
    against ``seq_k`` (default ``seq``) keys, ``heads`` query heads of ``head_dim``."""
    g = gpu(g)
    cal = calibration(g)
    seq_k = seq if seq_k is None else seq_k
    if batch <= 0 or seq <= 0 or seq_k <= 0:
        return 0.0
    eff_max, s0 = cal.attention(head_dim, backward, dtype)
    keys = seq_k / 2.0 if causal else seq_k
    eff = eff_max * keys / (keys + s0)
    sms = _sms(g, sm_fraction)
    units = batch * heads * math.ceil(seq / ATTN_BLOCK_Q)
    flops = attention_flops(batch, seq, heads, head_dim, causal, backward, seq_k)
    compute = flops / (g.peak_flops(dtype) * eff * sms / g.sm_count * float(_waves_efficiency(np.asarray(units),
                                                                                               sms)))
    eb = DTYPE_BYTES[dtype]
    io = batch * heads * head_dim * (2 * seq + 2 * seq_k) * eb * (2.5 if backward else 1.0)
    memory = io / (g.hbm_bytes_per_s * cal.hbm_eff)
    return max(compute, memory) + cal.launch_s


def decode_attention_s(batch_context_tokens: float | np.ndarray, kv_heads: int, head_dim: int,
                       g: GPU | str = "A100-SXM-80GB", dtype: str = "bf16", sm_fraction: float = 1.0,
                       curve: SMCurve = DEFAULT_CURVE) -> float | np.ndarray:
    """Seconds of one layer's decode attention: every request's cached K and V (``batch_context_tokens`` summed
    over the batch) read once; a memory-bound kernel (FlashInfer/FlashDecoding style)."""
    g = gpu(g)
    cal = calibration(g)
    tokens = np.asarray(batch_context_tokens, dtype=np.float64)
    n_bytes = 2.0 * tokens * kv_heads * head_dim * DTYPE_BYTES[dtype]
    floor = max(cal.decode_floor_s, cal.launch_s)
    out = np.where(tokens > 0, n_bytes / (g.hbm_bytes_per_s * cal.decode_eff * curve.memory_share(sm_fraction))
                   + floor, 0.0)
    return float(out) if out.ndim == 0 else out


def memory_s(n_bytes: float | np.ndarray, g: GPU | str = "A100-SXM-80GB", kernels: int = 1,
             sm_fraction: float = 1.0, curve: SMCurve = DEFAULT_CURVE) -> float | np.ndarray:
    """Seconds of memory-bound kernels moving ``n_bytes`` in total (reads + writes) through HBM, ``kernels``
    launches (each pays the launch floor)."""
    g = gpu(g)
    cal = calibration(g)
    b = np.asarray(n_bytes, dtype=np.float64)
    out = np.where(b > 0, b / (g.hbm_bytes_per_s * cal.hbm_eff * curve.memory_share(sm_fraction))
                   + kernels * cal.launch_s, 0.0)
    return float(out) if out.ndim == 0 else out


def attention_pairs_s(pairs: float | np.ndarray, mean_keys: float, heads: int, head_dim: int,
                      g: GPU | str = "A100-SXM-80GB", backward: bool = False, dtype: str = "bf16",
                      sm_fraction: float = 1.0) -> float | np.ndarray:
    """Attention over ``pairs`` (query, key) pairs in total, each query block visiting ``mean_keys`` keys on
    average: what a batch of chunked prefills costs when only its pair count is known (serving engines).
    4 x head_dim FLOPs per pair and head (QK^T and PV), at the efficiency ``attention_s`` uses for that many
    keys; assumes enough query blocks to fill the SMs."""
    g = gpu(g)
    cal = calibration(g)
    p = np.asarray(pairs, dtype=np.float64)
    eff_max, s0 = cal.attention(head_dim, backward, dtype)
    keys = max(float(mean_keys), 1.0)
    flops = 4.0 * head_dim * heads * p * (2.5 if backward else 1.0)
    speed = g.peak_flops(dtype) * eff_max * keys / (keys + s0) * _sms(g, sm_fraction) / g.sm_count
    out = np.where(p > 0, flops / speed + cal.launch_s, 0.0)
    return float(out) if out.ndim == 0 else out
