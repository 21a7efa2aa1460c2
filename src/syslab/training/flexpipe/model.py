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
micro-batches go round them, so each replica runs ceil(B / g) of them.

Memory: the paper's model. Its text was not reachable from here, so its terms come from our notes on it
(shared/papers/flexpipe.md): M_peak(L, B, mu) = M_params+grads+opt(|L|, mu) + M_act(|L|, B, mu) + M_buf, for a
layer set L, micro-batch size B and mu the next mini-batch's longest length. It reads only mu, so every
micro-batch in flight is provisioned at mu (here B = 1 sequence). Under 1F1B stage i of S holds up to S - i
micro-batches' activations (a replica never more than the ceil(B / g_i) it runs), so per GPU of stage i (bytes):

    M_i = 16 x params(L_i)                         # BF16 weights + grads, FP32 master + Adam m, v
        + k_i x M_act(L_i, 1, mu)                  # k_i = min(S - i, ceil(B / g_i)) micro-batches in flight
        + 4 GB                                     # M_buf: buffers, context, fragmentation (assumed)
    M_act(L_i, b, mu) = L_i x b x mu x A x h       # A = 34 bytes per token and hidden unit

M_act is Korthikanti et al. (2022, "Reducing Activation Recomputation in Large Transformer Models", §4.1):
s b h (34 + 5 a s / h) bytes per layer; flash attention keeps no s^2 score matrix, which leaves 34 s b h;
their §4.3 has 1F1B's first stage hold p micro-batches.
With full recomputation only each layer's input stays, 2 s b h (their §5), A = 2, and compute grows by one
more forward (x 4/3). (The per-layer 34 s b h + 5 a s^2 b is also quoted in AWS Neuron's "Activation Memory
Reduction" guide; the section numbers are from our reading of the paper.) At 32K no mapping of HBSA's space then
fits without recomputation (a test checks it): an even split's stage 0 holds S micro-batches of 32 / S layers,
32 layers' worth (110 GB) whatever S is. Time still reads each sequence's own length; only memory is provisioned
at mu. (Before, we counted only the k_i longest sequences of the batch as in flight, which let one 32K sequence
among short ones fit without recomputation.)

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


def in_flight(job: Job, mapping: Mapping) -> list[int]:
    """k_i: micro-batches whose activations stage i holds at once under 1F1B, min(S - i, ceil(B / g_i))."""
    return [min(len(mapping) - i, -(-job.batch // g)) for i, (_, g) in enumerate(mapping)]


def act_bytes(layers: int, micro_batch: int, mu: float, hidden: int, recompute: bool = False) -> float:
    """M_act(L, B, mu) = L x B x mu x A x h (Korthikanti et al. 2022; A = 34, or 2 with full recomputation)."""
    return layers * micro_batch * mu * (ACT_BYTES_RECOMPUTE if recompute else ACT_BYTES) * hidden


def memory_per_gpu(job: Job, mapping: Mapping, lengths: np.ndarray | float, recompute: bool = False) -> list[float]:
    """Peak bytes per GPU of each stage for a mini-batch whose longest sequence is max(``lengths``) = mu:
    16 x params(L_i) + k_i x M_act(L_i, 1, mu) + M_buf."""
    mu = float(np.max(lengths))
    return [fixed + k * act_bytes(la, 1, mu, job.hidden, recompute) for fixed, la, k in _memory_shape(job, mapping)]


@functools.cache
def _memory_shape(job: Job, mapping: Mapping) -> tuple[tuple[float, int, int], ...]:
    """Per stage: the bytes that do not depend on mu (16 x params + M_buf), layers and k_i."""
    return tuple((16 * job.params_per_layer * la + BUFFER_GB * GB, la, k)
                 for (la, _), k in zip(mapping, in_flight(job, mapping), strict=True))


def fits(job: Job, mapping: Mapping, lengths: np.ndarray | float, recompute: bool = False) -> bool:
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


@dataclass(frozen=True)
class BatchCost:
    """What ``iteration_s`` reads of a mini-batch, computed once per batch and recomputation setting: per-layer
    time (forward, + forward again with recomputation, + backward) summed over the batch's sequences and for
    its longest and its last one, and the same three for a hand-off inside a node (False) and across (True).
    ``microbatch_times`` gives the full [stage, sequence] matrix these sums come from."""
    total: float
    longest: float
    last: float
    handoff: dict[bool, tuple[float, float, float]]


def batch_cost(job: Job, lengths: np.ndarray, recompute: bool = False) -> BatchCost:
    lengths = np.asarray(lengths, dtype=np.int64)
    uniq, inv = np.unique(lengths, return_inverse=True)
    inv = inv.reshape(-1)
    per_layer = np.array([_layer_s(int(x), job.hidden, job.heads) for x in uniq]).reshape(-1, 2)
    one = (per_layer[:, 0] * (2 if recompute else 1) + per_layer[:, 1])[inv]
    j_long = int(np.argmax(lengths))
    hand = {}
    for hop in (False, True):
        h = np.array([_handoff_s(int(x), job.hidden, hop, job.fabric) for x in uniq])[inv]
        hand[hop] = (float(h.sum()), float(h[j_long]), float(h[-1]))
    return BatchCost(float(one.sum()), float(one[j_long]), float(one[-1]), hand)


@functools.cache
def _shape(job: Job, mapping: Mapping) -> tuple[tuple[int, int, bool | None, float], ...]:
    """Per stage: layers, GPUs, whether its hand-off to the next stage crosses nodes (None for the last) and its
    gradient all-reduce time (0 for a single GPU)."""
    groups = _groups(mapping)
    out = []
    for i, ((la, g), (first, _)) in enumerate(zip(mapping, groups, strict=True)):
        hop = _nodes(first, groups[i + 1][0] - first + 1) > 1 if i < len(mapping) - 1 else None
        ar = _collective_s("allreduce", 2 * job.params_per_layer * la, first, g, job.fabric) if g > 1 else 0.0
        out.append((la, g, hop, ar))
    return tuple(out)


def iteration_time(job: Job, mapping: Mapping, cost: BatchCost) -> float:
    """max_i max(W_i / g_i, t_i*) + sum_i t_i* - max_i t_i*, plus the exposed gradient all-reduce (see the
    module docstring), from a mini-batch's ``BatchCost``."""
    slowest, fill, top, exposed = 0.0, 0.0, 0.0, 0.0
    for la, g, hop, ar in _shape(job, mapping):
        h_total, h_long, h_last = (0.0, 0.0, 0.0) if hop is None else cost.handoff[hop]
        t_star = la * cost.longest + 2 * h_long                                     # hand-off, fwd + bwd
        work = la * cost.total + 2 * h_total
        slowest = max(slowest, work / g, t_star)
        fill += t_star
        top = max(top, t_star)
        if g > 1:                                                  # overlaps the last backward (DDP buckets)
            exposed = max(exposed, ar - 2 / 3 * (la * cost.last + 2 * h_last))
    return slowest + fill - top + exposed


def iteration_s(job: Job, mapping: Mapping, lengths: np.ndarray, recompute: bool = False) -> float:
    """One iteration of mini-batch ``lengths`` on ``mapping`` (``iteration_time`` of its ``batch_cost``)."""
    return iteration_time(job, mapping, batch_cost(job, lengths, recompute))
