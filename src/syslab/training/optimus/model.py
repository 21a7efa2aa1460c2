"""The multimodal job Optimus schedules: an LLM under interleaved 1F1B with TP and DP bubbles, and a ViT
encoder as a list of kernels (Feng et al., ATC'25, arXiv 2408.03505).

LLM (GPT-175B, sequence 2,048, one sample per micro-batch): PP = 8 stages with 2 chunks each (16 virtual
stages of 6 layers), TP = 8 H100s per stage. One layer's forward is two compute kernels (attention block,
MLP block) each followed by a tensor-parallel all-reduce during which compute idles (a *TP bubble*); the
backward is the same with its own compute. Kernel times come from the shared GPU cost model (``syslab.core.gpu``,
calibrated on published cuBLAS/CUTLASS GEMM, FlashAttention-3 and NCCL measurements; see
``core/gpu/calibration.py``): the attention block is the QKV GEMM (s x h) @ (h x 3h / t), causal
FlashAttention over h / head_dim / t heads and the output projection (s x h / t) @ (h / t x h); the MLP block the
up (s x h) @ (h x 4h / t) and down (s x 4h / t) @ (4h / t x h) GEMMs (``gemm_s``, ``attention_s``). The backward
runs, per GEMM, the input-gradient GEMM (s x n) @ (n x k) and the weight-gradient GEMM (k x s) @ (s x n), and the
attention backward. TP all-reduce: ``collective_s("allreduce")`` of the s x h BF16 activations over the t GPUs of
one DGX H100 (NVLink 4). DP bubbles: an all-gather of the stage's BF16 parameters before the iteration and a
reduce-scatter of its gradients after it, over the DP replicas, one per node (``collective_s`` with nodes = DP on
InfiniBand NDR; the 8 TP ranks of a node run 8 such rings at once, so each ring gets one of the node's 8 NICs),
the GPU's compute idle meanwhile.

Encoder (ViT-22B: 48 layers): per micro-batch, a layer takes 1.4 ms forward and 2.0 ms backward at TP = 8
(the paper's measurement, our notes), as 8 kernels: 6 compute kernels and 2 TP all-reduces of 0.15 ms each.
The split of the compute time among the six (QKV, attention, projection, MLP up, GELU, MLP down) is our
assumption; only their sum is the paper's.

Everything here is durations and intervals; ``schedule.py`` packs and checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from syslab.core import gpu as G
from syslab.core.gpu.transformer import gemm_shapes
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.training import pipeline as P

DEVICE = "H100-SXM"
NODE = G.Fabric(intra="nvlink4", gpus_per_node=8, nic="ib-ndr", nics_per_node=8)     # DGX H100
DP_RING = G.Fabric(intra="nvlink4", gpus_per_node=1, nic="ib-ndr", nics_per_node=1)  # one DP ring per NIC
ENC_LAYERS = 48
ENC_PARAMS = 22e9
ENC_FWD_MS, ENC_BWD_MS = 1.4, 2.0                # per ViT-22B layer and micro-batch at TP = 8 (the paper)
ENC_COMM_MS = 0.15                               # each of a layer's two TP all-reduces (our split)
ENC_FWD_SPLIT = (0.22, 0.18, 0.10, 0.26, 0.04, 0.20)   # QKV, attention, proj, MLP up, GELU, MLP down (ours)


@dataclass(frozen=True)
class Kernel:
    name: str
    duration_s: float
    comm: bool = False


@dataclass
class LLMJob:
    """GPT-175B-like LLM on PP x TP H100s with ``dp`` pipelines; per-layer kernel times."""

    microbatches: int
    pp: int = 8
    chunks: int = 2
    tp: int = 8
    dp: int = 48
    seq: int = 2048
    name: str = "gpt3-175b"
    enc_scale: float = 1.0                       # encoder work per micro-batch relative to the paper's ViT-22B

    def __post_init__(self) -> None:
        t = model(self.name)
        g = gpu(DEVICE)
        s, tp = self.seq, self.tp
        qkv, proj, up, down = gemm_shapes(t, tp)

        def fwd(shapes: list[tuple[int, int]]) -> float:
            return sum(G.gemm_s(s, n, k, g) for n, k in shapes)

        def bwd(shapes: list[tuple[int, int]]) -> float:       # input gradient + weight gradient per GEMM
            return sum(G.gemm_s(s, k, n, g) + G.gemm_s(k, n, s, g) for n, k in shapes)

        heads = max(t.heads // tp, 1)
        attn_f = G.attention_s(1, s, heads, t.head_dim, g, causal=True)
        attn_b = G.attention_s(1, s, heads, t.head_dim, g, causal=True, backward=True)
        self.attn_fwd_s, self.mlp_fwd_s = fwd([qkv, proj]) + attn_f, fwd([up, down])
        self.attn_bwd_s, self.mlp_bwd_s = bwd([qkv, proj]) + attn_b, bwd([up, down])
        self.compute_fwd_s = self.attn_fwd_s + self.mlp_fwd_s
        self.compute_bwd_s = self.attn_bwd_s + self.mlp_bwd_s
        act_bytes = s * t.hidden * 2
        self.allreduce_s = G.collective_s("allreduce", act_bytes, tp, g, fabric=NODE)
        self.layers = t.layers
        params_per_gpu = t.params / (self.pp * self.tp)
        self.all_gather_s = G.collective_s("allgather", params_per_gpu * 2, self.dp, g, nodes=self.dp,
                                           fabric=DP_RING)
        self.reduce_scatter_s = G.collective_s("reducescatter", params_per_gpu * 2, self.dp, g, nodes=self.dp,
                                               fabric=DP_RING)
        self.params = t.params

    @property
    def layers_per_virtual_stage(self) -> int:
        return self.layers // (self.pp * self.chunks)

    def layer_fwd_s(self) -> float:
        return self.compute_fwd_s + 2 * self.allreduce_s

    def layer_bwd_s(self) -> float:
        return self.compute_bwd_s + 2 * self.allreduce_s

    def kernels(self, backward: bool) -> list[Kernel]:
        """One layer: [compute, TP all-reduce] x 2 (attention block, MLP block)."""
        attn, mlp = (self.attn_bwd_s, self.mlp_bwd_s) if backward else (self.attn_fwd_s, self.mlp_fwd_s)
        return [Kernel("attn", attn), Kernel("tp-ar", self.allreduce_s, True), Kernel("mlp", mlp),
                Kernel("tp-ar", self.allreduce_s, True)]


def encoder_kernels(backward: bool, scale: float = 1.0) -> list[Kernel]:
    """One ViT-22B layer at TP = 8 (forward 1.4 ms, backward 2.0 ms; ``scale`` multiplies its compute)."""
    compute = ((ENC_BWD_MS if backward else ENC_FWD_MS) - 2 * ENC_COMM_MS) * 1e-3 * scale
    names = ("qkv", "attn", "proj", "mlp-up", "gelu", "mlp-down")
    ks = [Kernel(n, compute * share) for n, share in zip(names, ENC_FWD_SPLIT, strict=True)]
    comm = ENC_COMM_MS * 1e-3
    return ks[:3] + [Kernel("tp-ar", comm, True)] + ks[3:] + [Kernel("tp-ar", comm, True)]


def encoder_layer_s(backward: bool, scale: float = 1.0) -> float:
    return sum(k.duration_s for k in encoder_kernels(backward, scale))


def stage_times(job: LLMJob, enc_layers: list[int], llm_layers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward time per virtual stage and micro-batch when virtual stage v holds
    ``enc_layers[v]`` encoder layers and ``llm_layers[v]`` LLM layers."""
    ef, eb = encoder_layer_s(False, job.enc_scale), encoder_layer_s(True, job.enc_scale)
    f = np.array([e * ef + n * job.layer_fwd_s() for e, n in zip(enc_layers, llm_layers, strict=True)])
    b = np.array([e * eb + n * job.layer_bwd_s() for e, n in zip(enc_layers, llm_layers, strict=True)])
    m = job.microbatches
    return np.repeat(f[:, None], m, axis=1), np.repeat(b[:, None], m, axis=1)


def pipeline(job: LLMJob, enc_layers: list[int], llm_layers: list[int]) -> P.Schedule:
    """Interleaved 1F1B with the given layer split over the pp x chunks virtual stages."""
    f, b = stage_times(job, enc_layers, llm_layers)
    st = P.Stages(f, b, placement=[v % job.pp for v in range(job.pp * job.chunks)])
    return P.simulate(st, P.orders_interleaved(job.pp, job.chunks, job.microbatches))


def kernel_intervals(job: LLMJob, sch: P.Schedule, offset: float) -> dict[int, dict[str, np.ndarray]]:
    """Per device, the busy intervals (an [n, 2] array, sorted) of its compute and of its TP links, opening
    every LLM op into its layers' kernels, shifted by ``offset`` (the time the LLM starts)."""
    base = _kernel_intervals(job, sch)
    return {d: {r: a + offset for r, a in res.items()} for d, res in base.items()}


_INTERVALS: dict[int, tuple[P.Schedule, dict[int, dict[str, np.ndarray]]]] = {}


def _kernel_intervals(job: LLMJob, sch: P.Schedule) -> dict[int, dict[str, np.ndarray]]:
    hit = _INTERVALS.get(id(sch))
    if hit is not None and hit[0] is sch:
        return hit[1]
    out: dict[int, dict[str, list[tuple[float, float]]]] = {d: {"compute": [], "link": []} for d in range(job.pp)}
    for name, op in sch.ops.items():
        if op.resource is None or "kind" not in op.args:
            continue
        d = int(op.resource[5:])
        t = sch.start[name]
        for _ in range(job.layers_per_virtual_stage):
            for k in job.kernels(op.args["kind"] == "B"):
                out[d]["link" if k.comm else "compute"].append((t, t + k.duration_s))
                t += k.duration_s
    arrays = {d: {r: np.array(sorted(v)).reshape(-1, 2) for r, v in res.items()} for d, res in out.items()}
    _INTERVALS[id(sch)] = (sch, arrays)
    return arrays
