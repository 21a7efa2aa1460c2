"""FlexPipe's memory and time models (Zhao et al., ATC'25, §4), written out because the paper leaves them to
prior work.

Cluster: 16 A100-80GB, 4 nodes of 4 (NVLink 300 GB/s per GPU inside a node, InfiniBand 50 GB/s between
nodes: the paper's testbed figures). Model: GPT-3.35B-like (32 layers, hidden 3,072, 24 heads, MLP 4h;
12 h^2 parameters per layer = 3.6B, our sizing of the paper's "GPT 3.35B").

A *mapping* is a list of stages, each (layers, GPUs), covering the model's layers in order and the
cluster's GPUs in order (a stage's GPUs are contiguous, so they share a node when they fit in one). An
iteration trains B sequences, one per micro-batch, at their own lengths (variable-length attention, no
padding). A stage's g GPUs are data-parallel replicas of it ("redundant GPUs become extra DP replicas"):
micro-batches go round them, so each replica runs ceil(B / g) of them and under 1F1B holds
k_i = min(S - i, ceil(B / g)) at once.

Memory per GPU of stage i (bytes), taking the k_i longest sequences of the batch as the ones in flight:

    M_i = 16 x params(L_i)                         # BF16 weights + grads, FP32 master + Adam m, v
        + L_i x (sum of the k_i longest lengths) x A x h   # activations, A = 34 bytes per token and hidden
        + 4 GB                                     # buffers, context, fragmentation (assumed)

A = 34 is Korthikanti et al. (2022, "Reducing Activation Recomputation in Large Transformer Models")'s
per-token, per-layer activation bytes over h with flash attention (no s^2 term); with full recomputation
only each layer's input stays, A = 2, and compute grows by a forward (x 4/3). The paper's model reads only
the next batch's longest length mu; ours reads the batch's lengths (the dataloader has them), so that one
long sequence does not count as k_i of them.

Time of sequence j on one replica of stage i, t_ij: FLOPs 3 L_i (24 h^2 n_j + 4 n_j^2 h) at an assumed 50% of
the A100's 312 TFLOP/s, plus the activation hand-off to the next stage (n_j h x 2 bytes each way).
Iteration: T = max_i max(W_i / g_i, t_i*) + sum_i t_i* - max_i t_i*, where W_i = sum_j t_ij is stage i's work
and t_i* the longest sequence's time there (the pipeline fills and drains with it; a replica cannot finish
before its longest sequence does), plus the exposed part of the slowest group's gradient all-reduce (ring:
2 (g - 1) / g x 2 bytes x params; NVLink inside a node, else InfiniBand), which overlaps the last
micro-batch's backward (DDP's bucketed all-reduce). For
equal sequences this is 1F1B's (B / g + S - 1) t, and plain data parallelism's (B / g) t at S = 1. Our
notes transcribe the paper's Eq. 1 as sum_i t_i + (B - S + 1) max_i t_i, which for S equal stages is
(B + 1) t whatever S is, so we use this form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from syslab.core.errors import InputError

GB = 1e9
A100_FLOPS = 312e12
EFFICIENCY = 0.5
NVLINK, IB = 300e9, 50e9
GPUS_PER_NODE = 4
ACT_BYTES, ACT_BYTES_RECOMPUTE = 34, 2
BUFFER_GB = 4.0
GPU_GB = 80.0

Mapping = tuple[tuple[int, int], ...]            # ((layers, gpus), ...) per stage, in order


@dataclass(frozen=True)
class Job:
    layers: int = 32
    hidden: int = 3072
    gpus: int = 16
    batch: int = 32                               # sequences per iteration (one per micro-batch)
    gpu_gb: float = GPU_GB

    @property
    def params_per_layer(self) -> float:
        return 12 * self.hidden ** 2


def check_mapping(job: Job, mapping: Mapping) -> None:
    if sum(la for la, _ in mapping) != job.layers or sum(g for _, g in mapping) != job.gpus:
        raise InputError(f"mapping {mapping} covers {sum(la for la, _ in mapping)} layers and "
                         f"{sum(g for _, g in mapping)} GPUs; the job has {job.layers} and {job.gpus}.",
                         field="mapping", fix="give every layer and every GPU to exactly one stage.")
    if any(la < 1 or g < 1 for la, g in mapping):
        raise InputError(f"mapping {mapping} has an empty stage.", field="mapping", fix="use >= 1 layer and GPU.")


def _in_flight(job: Job, mapping: Mapping, i: int, g: int) -> int:
    return min(len(mapping) - i, -(-job.batch // g))


def memory_per_gpu(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> list[float]:
    """Peak bytes per GPU of each stage for a mini-batch of sequences ``lengths`` (worst case: the longest
    ones in flight together)."""
    act = ACT_BYTES_RECOMPUTE if recompute else ACT_BYTES
    top = np.sort(np.asarray(lengths, dtype=np.float64))[::-1]
    return [16 * job.params_per_layer * la + la * top[:_in_flight(job, mapping, i, g)].sum() * act * job.hidden
            + BUFFER_GB * GB for i, (la, g) in enumerate(mapping)]


def fits(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> bool:
    return max(memory_per_gpu(job, mapping, lengths, recompute)) <= job.gpu_gb * GB


def _groups(mapping: Mapping) -> list[tuple[int, int]]:
    """(first GPU, GPU count) of each stage."""
    out, first = [], 0
    for _, g in mapping:
        out.append((first, g))
        first += g
    return out


def _bw(first: int, count: int) -> float:
    """NVLink if the GPUs share a node, else InfiniBand."""
    return NVLINK if first // GPUS_PER_NODE == (first + count - 1) // GPUS_PER_NODE else IB


def microbatch_times(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> np.ndarray:
    """[stage, micro-batch]: forward + backward (+ hand-off) time of each sequence on one replica."""
    h = job.hidden
    n = np.asarray(lengths, dtype=np.float64)
    layers = np.array([la for la, _ in mapping], dtype=np.float64)[:, None]
    flops = 3 * layers * (24 * h * h * n + 4 * n * n * h) * (4 / 3 if recompute else 1.0)
    t = flops / (A100_FLOPS * EFFICIENCY)
    groups = _groups(mapping)
    for i in range(len(mapping) - 1):
        first, nxt = groups[i][0], groups[i + 1][0]
        t[i] += 2 * n * h * 2 / _bw(first, nxt - first + 1)                       # hand-off, fwd + bwd
    return t


def iteration_s(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> float:
    """max_i max(W_i / g_i, t_i*) + sum_i t_i* - max_i t_i*, plus the exposed gradient all-reduce."""
    t = microbatch_times(job, mapping, lengths, recompute)
    g = np.array([g for _, g in mapping], dtype=np.float64)
    longest = t[:, int(np.argmax(lengths))]
    pipeline = float(np.maximum(t.sum(axis=1) / g, longest).max() + longest.sum() - longest.max())
    exposed = 0.0
    for i, ((la, gg), (first, _)) in enumerate(zip(mapping, _groups(mapping), strict=True)):
        if gg > 1:
            allreduce = 2 * (gg - 1) / gg * 2 * job.params_per_layer * la / _bw(first, gg)
            exposed = max(exposed, allreduce - 2 / 3 * t[i, -1])    # overlaps the last backward (DDP buckets)
    return pipeline + exposed
