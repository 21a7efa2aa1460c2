"""The multimodal job Optimus schedules: an LLM under interleaved 1F1B with TP and DP bubbles, and a ViT
encoder as a list of kernels (Feng et al., ATC'25, arXiv 2408.03505).

LLM (GPT-175B, sequence 2,048, micro-batches of 2 sequences, the paper's Appendix D): PP = 8 stages, TP = 8
H100s per stage, V = 12 chunks per stage (96 virtual stages of one layer: the paper's "Megatron-LM balanced"
configuration, Appendix D, Table 12, which Optimus's LLM gets too so that the comparison is not about V); DP =
the global batch (1,536) over micro-batches x 2 sequences per pipeline (24, 32, 48 at 32, 24, 16 micro-batches:
the paper's 1,536, 2,048 and 3,072 GPUs). One layer's forward is two compute kernels (attention block, MLP
block) each followed by a tensor-parallel all-reduce during which compute idles (a *TP bubble*); the
backward is the same with its own compute. Kernel times come from the shared GPU cost model (``syslab.core.gpu``,
calibrated on published cuBLAS/CUTLASS GEMM, FlashAttention-3 and NCCL measurements; see
``core/gpu/calibration.py``): with T = sequence x micro-batch tokens, the attention block is the QKV GEMM
(T x h) @ (h x 3h / t), causal FlashAttention over h / head_dim / t heads and the output projection
(T x h / t) @ (h / t x h); the MLP block the up (T x h) @ (h x 4h / t) and down (T x 4h / t) @ (4h / t x h) GEMMs
(``gemm_s``, ``attention_s``). The backward runs, per GEMM, the input-gradient GEMM and the weight-gradient
GEMM, and the attention backward. TP all-reduce: ``collective_s("allreduce")`` of the T x h BF16 activations over
the t GPUs of one DGX H100 (NVLink 4). DP bubbles: an all-gather of the stage's BF16 parameters before the
iteration and a reduce-scatter of its gradients after it, over the DP replicas, one per node (``collective_s``
with nodes = DP on InfiniBand NDR; the 8 TP ranks of a node run 8 such rings at once, so each ring gets one of
the node's 8 NICs), the GPU's compute idle meanwhile.

Encoder (ViT-22B: 48 layers, the paper's Table 8): per micro-batch, a layer takes 1.4 ms forward and 2.0 ms
backward at TP = 8 (the paper's measurement, §2), as 8 kernels: 6 compute kernels and 2 TP all-reduces of 0.15
ms each. The split of the compute time among the six (QKV, attention, projection, MLP up, GELU, MLP down) is
our assumption; only their sum is the paper's. The smaller ViTs of Table 8 (for ``syslab optimus plan``) are
not measured in the paper: their compute is ViT-22B's scaled by the per-layer matmul parameters (4 w^2 + 2 w
mlp) and their all-reduces by the width (the bytes of one activation), our assumption.

Everything here is durations and intervals; ``schedule.py`` packs and checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.core.gpu.transformer import gemm_shapes
from syslab.core.hardware import gpu
from syslab.core.models import MODELS, model
from syslab.training import pipeline as P

DEVICE = "H100-SXM"
NODE = G.Fabric(intra="nvlink4", gpus_per_node=8, nic="ib-ndr", nics_per_node=8)     # DGX H100
DP_RING = G.Fabric(intra="nvlink4", gpus_per_node=1, nic="ib-ndr", nics_per_node=1)  # one DP ring per NIC
ENC_FWD_MS, ENC_BWD_MS = 1.4, 2.0                # per ViT-22B layer and micro-batch at TP = 8 (the paper, §2)
ENC_COMM_MS = 0.15                               # each of a ViT-22B layer's two TP all-reduces (our split)
ENC_FWD_SPLIT = (0.22, 0.18, 0.10, 0.26, 0.04, 0.20)   # QKV, attention, proj, MLP up, GELU, MLP down (ours)
GLOBAL_BATCH = 1536                              # sequences per iteration in the paper's strong scaling (§5.2.2)


@dataclass(frozen=True)
class Encoder:
    """A ViT of the paper's Table 8: width, depth, MLP dimension, parameters."""

    name: str
    width: int
    depth: int
    mlp: int
    params: float

    @property
    def compute_ratio(self) -> float:
        """Per-layer matmul parameters relative to ViT-22B's (4 w^2 + 2 w mlp): scales the measured times."""
        ref = ENCODERS["vit-22b"]
        return (4 * self.width ** 2 + 2 * self.width * self.mlp) / (4 * ref.width ** 2 + 2 * ref.width * ref.mlp)

    @property
    def comm_ratio(self) -> float:
        return self.width / ENCODERS["vit-22b"].width


ENCODERS = {e.name: e for e in (Encoder("vit-3b", 2304, 48, 9216, 3e9), Encoder("vit-5b", 3072, 48, 12288, 5.5e9),
                                Encoder("vit-10b", 4096, 48, 16384, 10e9),
                                Encoder("vit-22b", 6144, 48, 24576, 22e9))}
ENC_LAYERS = ENCODERS["vit-22b"].depth
ENC_PARAMS = ENCODERS["vit-22b"].params


def encoder(name: str) -> Encoder:
    if name not in ENCODERS:
        raise InputError(f"unknown encoder {name!r}.", field="encoder", fix=f"use one of {', '.join(ENCODERS)}.")
    return ENCODERS[name]


@dataclass(frozen=True)
class Kernel:
    name: str
    duration_s: float
    comm: bool = False


@dataclass
class LLMJob:
    """An LLM on PP x TP H100s with ``dp`` pipelines and a ViT encoder; per-layer kernel times."""

    microbatches: int
    pp: int = 8
    chunks: int = 12                             # V: model chunks per stage (Appendix D: V = 12)
    tp: int = 8
    dp: int = 48
    seq: int = 2048
    micro_batch_size: int = 2                    # sequences per micro-batch (Appendix D)
    name: str = "gpt3-175b"
    encoder: str = "vit-22b"
    enc_scale: float = 1.0                       # encoder work per micro-batch relative to the paper's measurement

    def __post_init__(self) -> None:
        for f in ("microbatches", "pp", "chunks", "tp", "dp", "seq", "micro_batch_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{f} = {v!r}.", field=f, fix="use a positive integer.")
        if not (np.isfinite(self.enc_scale) and self.enc_scale > 0):
            raise InputError(f"enc_scale = {self.enc_scale!r}.", field="enc_scale", fix="use a positive number.")
        if self.name not in MODELS:
            raise InputError(f"unknown LLM {self.name!r}.", field="llm", fix=f"use one of {', '.join(MODELS)}.")
        t = model(self.name)
        self.enc = encoder(self.encoder)
        if t.experts > 1:
            raise InputError(f"{self.name} is a mixture of experts; the model here is dense layers.", field="llm",
                             fix="use a dense LLM.")
        if t.layers % (self.pp * self.chunks):
            raise InputError(f"{self.name}'s {t.layers} layers do not split into {self.pp} stages x {self.chunks} "
                             "chunks.", field="pp", fix="use stages x chunks dividing the layer count.")
        if t.heads % self.tp or t.kv_heads % self.tp and self.tp % t.kv_heads:
            raise InputError(f"TP = {self.tp} does not divide {self.name}'s {t.heads} attention heads.",
                             field="tp", fix="use a TP degree dividing the head count.")
        if self.chunks > 1 and self.microbatches % self.pp:
            raise InputError(f"{self.microbatches} micro-batches is not a multiple of {self.pp} stages.",
                             field="microbatches", fix="the interleaved schedule needs micro-batches divisible "
                                                       "by the pipeline size.")
        g = gpu(DEVICE)
        tokens, tp = self.seq * self.micro_batch_size, self.tp
        qkv, proj, up, down = gemm_shapes(t, tp)

        def fwd(shapes: list[tuple[int, int]]) -> float:
            return sum(G.gemm_s(tokens, n, k, g) for n, k in shapes)

        def bwd(shapes: list[tuple[int, int]]) -> float:       # input gradient + weight gradient per GEMM
            return sum(G.gemm_s(tokens, k, n, g) + G.gemm_s(k, n, tokens, g) for n, k in shapes)

        heads = max(t.heads // tp, 1)
        attn_f = G.attention_s(self.micro_batch_size, self.seq, heads, t.head_dim, g, causal=True)
        attn_b = G.attention_s(self.micro_batch_size, self.seq, heads, t.head_dim, g, causal=True, backward=True)
        self.attn_fwd_s, self.mlp_fwd_s = fwd([qkv, proj]) + attn_f, fwd([up, down])
        self.attn_bwd_s, self.mlp_bwd_s = bwd([qkv, proj]) + attn_b, bwd([up, down])
        self.compute_fwd_s = self.attn_fwd_s + self.mlp_fwd_s
        self.compute_bwd_s = self.attn_bwd_s + self.mlp_bwd_s
        act_bytes = tokens * t.hidden * 2
        self.allreduce_s = G.collective_s("allreduce", act_bytes, tp, g, fabric=NODE) if tp > 1 else 0.0
        self.layers = t.layers
        params_per_gpu = t.params / (self.pp * self.tp)
        if self.dp > 1:
            self.all_gather_s = G.collective_s("allgather", params_per_gpu * 2, self.dp, g, nodes=self.dp,
                                               fabric=DP_RING)
            self.reduce_scatter_s = G.collective_s("reducescatter", params_per_gpu * 2, self.dp, g,
                                                   nodes=self.dp, fabric=DP_RING)
        else:
            self.all_gather_s = self.reduce_scatter_s = 0.0
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


def encoder_kernels(backward: bool, scale: float = 1.0, enc: Encoder | None = None) -> list[Kernel]:
    """One encoder layer at TP = 8 (ViT-22B: forward 1.4 ms, backward 2.0 ms; ``scale`` multiplies its
    compute; another ViT of Table 8 scales as the module docstring says)."""
    enc = ENCODERS["vit-22b"] if enc is None else enc
    comm = ENC_COMM_MS * 1e-3 * enc.comm_ratio
    compute = ((ENC_BWD_MS if backward else ENC_FWD_MS) - 2 * ENC_COMM_MS) * 1e-3 * enc.compute_ratio * scale
    names = ("qkv", "attn", "proj", "mlp-up", "gelu", "mlp-down")
    ks = [Kernel(n, compute * share) for n, share in zip(names, ENC_FWD_SPLIT, strict=True)]
    return ks[:3] + [Kernel("tp-ar", comm, True)] + ks[3:] + [Kernel("tp-ar", comm, True)]


def encoder_layer_s(backward: bool, scale: float = 1.0, enc: Encoder | None = None) -> float:
    return sum(k.duration_s for k in encoder_kernels(backward, scale, enc))


def stage_times(job: LLMJob, enc_layers: list[int], llm_layers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward time per virtual stage and micro-batch when virtual stage v holds
    ``enc_layers[v]`` encoder layers and ``llm_layers[v]`` LLM layers."""
    ef, eb = (encoder_layer_s(b, job.enc_scale, job.enc) for b in (False, True))
    f = np.array([e * ef + n * job.layer_fwd_s() for e, n in zip(enc_layers, llm_layers, strict=True)])
    b = np.array([e * eb + n * job.layer_bwd_s() for e, n in zip(enc_layers, llm_layers, strict=True)])
    m = job.microbatches
    return np.repeat(f[:, None], m, axis=1), np.repeat(b[:, None], m, axis=1)


def pipeline(job: LLMJob, enc_layers: list[int], llm_layers: list[int], chunks: int | None = None,
             warmups: list[int] | None = None) -> P.Schedule:
    """The LLM pipeline with the given layer split over pp x chunks virtual stages (default ``job.chunks``):
    Megatron's 1F1B for one chunk, its interleaved 1F1B otherwise (``warmups``: per-stage warm-up counts in
    place of Megatron's, see ``schedule.get_enc_llm_dep``)."""
    chunks = job.chunks if chunks is None else chunks
    f, b = stage_times(job, enc_layers, llm_layers)
    st = P.Stages(f, b, placement=[v % job.pp for v in range(job.pp * chunks)])
    if chunks == 1:
        return P.simulate(st, P.orders_1f1b(job.pp, job.microbatches))
    return P.simulate(st, P.orders_interleaved(job.pp, chunks, job.microbatches, warmups))


def kernel_intervals(job: LLMJob, sch: P.Schedule, offset: float = 0.0) -> dict[int, dict[str, np.ndarray]]:
    """Per device, the busy intervals (an [n, 2] array, sorted) of its compute and of its TP links, opening
    every op of the LLM-only schedule ``sch`` into its layers' kernels, shifted by ``offset`` (the time the LLM
    starts). Pure: ``schedule.LLMTimeline`` keeps the result for the packer's repeated calls."""
    out: dict[int, dict[str, list[tuple[float, float]]]] = {d: {"compute": [], "link": []} for d in range(job.pp)}
    for name, op in sch.ops.items():
        if op.resource is None or "kind" not in op.args:
            continue
        d = int(op.resource[5:])
        t = sch.start[name] + offset
        for _ in range(job.layers_per_virtual_stage):
            for k in job.kernels(op.args["kind"] == "B"):
                out[d]["link" if k.comm else "compute"].append((t, t + k.duration_s))
                t += k.duration_s
    return {d: {r: np.array(sorted(v)).reshape(-1, 2) for r, v in res.items()} for d, res in out.items()}
