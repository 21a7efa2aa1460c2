"""FlexPipe's memory and time models (Zhao et al., ATC'25, §4), written out because the paper leaves them to
prior work.

Cluster: 16 A100-80GB, 4 nodes of 4 (NVLink 300 GB/s per GPU inside a node, InfiniBand 50 GB/s between
nodes: the paper's testbed figures; as ``core.gpu.Fabric("nvlink3", 4, "ib-hdr", 2)``, two HDR 200 Gb/s NICs
per node). Model: GPT-3.35B-like (32 layers, hidden 3,072, 24 heads, MLP 4h;
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

Time of sequence j on one replica of stage i, t_ij: L_i layers of forward and backward from the shared GPU cost
model (``syslab.core.gpu``, calibrated on published cuBLAS/CUTLASS GEMM and FlashAttention-2 measurements; see
``core/gpu/calibration.py``). A layer's forward is the QKV, output, MLP-up and MLP-down GEMMs at m = n_j rows
(``gemm_s``) and causal attention over the sequence (``attention_s``); its backward is each GEMM's
input-gradient GEMM (n_j x n) @ (n x k) and weight-gradient GEMM (k x n_j) @ (n_j x n), and the attention
backward; recomputation adds one more forward. Plus the activation hand-off to the next stage (n_j h x 2 bytes
each way, a ``collective_s("sendrecv")`` over NVLink inside a node, else InfiniBand).
Iteration: T = max_i max(W_i / g_i, t_i*) + sum_i t_i* - max_i t_i*, where W_i = sum_j t_ij is stage i's work
and t_i* the longest sequence's time there (the pipeline fills and drains with it; a replica cannot finish
before its longest sequence does), plus the exposed part of the slowest group's gradient all-reduce
(``collective_s("allreduce")`` of the 2-byte gradients over the stage's GPUs and the nodes they span), which
overlaps the last micro-batch's backward (DDP's bucketed all-reduce). For
equal sequences this is 1F1B's (B / g + S - 1) t, and plain data parallelism's (B / g) t at S = 1. Our
notes transcribe the paper's Eq. 1 as sum_i t_i + (B - S + 1) max_i t_i, which for S equal stages is
(B + 1) t whatever S is, so we use this form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from syslab.core import gpu as G
from syslab.core.errors import InputError

GB = 1e9
DEVICE = "A100-80GB"
GPUS_PER_NODE = 4
FABRIC = G.Fabric(intra="nvlink3", gpus_per_node=GPUS_PER_NODE, nic="ib-hdr", nics_per_node=2)
ACT_BYTES, ACT_BYTES_RECOMPUTE = 34, 2
BUFFER_GB = 4.0
GPU_GB = 80.0

Mapping = tuple[tuple[int, int], ...]            # ((layers, gpus), ...) per stage, in order


@dataclass(frozen=True)
class Job:
    layers: int = 32
    hidden: int = 3072
    heads: int = 24
    gpus: int = 16
    batch: int = 32                               # sequences per iteration (one per micro-batch)
    gpu_gb: float = GPU_GB
    fabric: G.Fabric = FABRIC                     # the links; the reproduction sweeps the NICs per node

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


def _nodes(first: int, count: int) -> int:
    """Nodes the GPUs first .. first + count - 1 span."""
    return (first + count - 1) // GPUS_PER_NODE - first // GPUS_PER_NODE + 1


def _collective_s(op: str, n_bytes: float, first: int, count: int, fabric: G.Fabric = FABRIC) -> float:
    """``op`` over GPUs first .. first + count - 1 of the cluster; a group spread unevenly over its nodes is
    costed as one GPU per node (the same bus bandwidth, every step a network hop)."""
    nodes = _nodes(first, count)
    if count % nodes:
        nodes = count
    return G.collective_s(op, n_bytes, count, DEVICE, nodes=nodes, fabric=fabric)


@functools.cache
def _layer_s(tokens: int, hidden: int, heads: int) -> tuple[float, float]:
    """(forward, backward) seconds of one layer over one sequence of ``tokens`` tokens (see the docstring)."""
    shapes = [(3 * hidden, hidden), (hidden, hidden), (4 * hidden, hidden), (hidden, 4 * hidden)]
    fwd = sum(G.gemm_s(tokens, n, k, DEVICE) for n, k in shapes)
    bwd = sum(G.gemm_s(tokens, k, n, DEVICE) + G.gemm_s(k, n, tokens, DEVICE) for n, k in shapes)
    hd = hidden // heads
    fwd += G.attention_s(1, tokens, heads, hd, DEVICE, causal=True)
    bwd += G.attention_s(1, tokens, heads, hd, DEVICE, causal=True, backward=True)
    return fwd, bwd


@functools.cache
def _handoff_s(tokens: int, hidden: int, across_nodes: bool, fabric: G.Fabric = FABRIC) -> float:
    """One activation hand-off of ``tokens`` x ``hidden`` BF16 values to the next stage's GPU."""
    return G.collective_s("sendrecv", tokens * hidden * 2, 2, DEVICE, nodes=2 if across_nodes else 1, fabric=fabric)


def microbatch_times(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> np.ndarray:
    """[stage, micro-batch]: forward + backward (+ hand-off) time of each sequence on one replica."""
    h = job.hidden
    uniq, inv = np.unique(np.asarray(lengths, dtype=np.int64), return_inverse=True)
    per_layer = np.array([_layer_s(int(x), h, job.heads) for x in uniq]).reshape(-1, 2)
    fwd, bwd = per_layer[inv.reshape(-1), 0], per_layer[inv.reshape(-1), 1]
    one = fwd * (2 if recompute else 1) + bwd
    layers = np.array([la for la, _ in mapping], dtype=np.float64)[:, None]
    t = layers * one[None, :]
    groups = _groups(mapping)
    handoff: dict[bool, np.ndarray] = {}                 # per sequence, inside a node / across nodes
    for i in range(len(mapping) - 1):
        first, nxt = groups[i][0], groups[i + 1][0]
        hop = _nodes(first, nxt - first + 1) > 1
        if hop not in handoff:
            handoff[hop] = np.array([_handoff_s(int(x), h, hop, job.fabric) for x in uniq])[inv.reshape(-1)]
        t[i] += 2 * handoff[hop]                                                   # hand-off, fwd + bwd
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
            allreduce = _collective_s("allreduce", 2 * job.params_per_layer * la, first, gg, job.fabric)
            exposed = max(exposed, allreduce - 2 / 3 * t[i, -1])    # overlaps the last backward (DDP buckets)
    return pipeline + exposed
