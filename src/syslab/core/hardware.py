"""Datasheet specs of the GPUs and links the papers ran on, and roofline helpers.

Peak FLOP/s are *dense* tensor-core figures (NVIDIA quotes 2x "with sparsity"; we never use those).
Bandwidths are per direction. Sources, by entry:

- H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet (2023): BF16/FP16 989.4 TFLOP/s, FP8 1,978.9, TF32 494.7,
  FP64 tensor 66.9; 80 GB HBM3 at 3.35 TB/s; NVLink 4 900 GB/s bidirectional. 132 SMs: NVIDIA H100
  whitepaper ("NVIDIA H100 Tensor Core GPU Architecture", 2022), SXM5 configuration.
- H200 SXM: NVIDIA H200 datasheet (2024): same compute as H100 SXM; 141 GB HBM3e at 4.8 TB/s.
- H800 SXM5: NVIDIA H800 product brief (2023): H100 compute; 80 GB at 3.35 TB/s; NVLink 400 GB/s.
- A100 80GB SXM: NVIDIA A100 datasheet (2021): BF16/FP16 312, TF32 156, FP64 tensor 19.5, INT8 624;
  2,039 GB/s HBM2e; 108 SMs (A100 whitepaper); NVLink 3 600 GB/s bidirectional.
- V100 SXM2 32GB: NVIDIA V100 datasheet (2020): FP16 tensor 125 (no BF16), FP32 15.7, FP64 7.8;
  900 GB/s HBM2; 80 SMs.
- A10: NVIDIA A10 datasheet (2021): BF16/FP16 tensor 125, TF32 62.5, FP32 31.2, INT8 250; 24 GB GDDR6
  at 600 GB/s; 72 SMs.
- Links: NVLink 3/4 from the A100/H100 datasheets (per-GPU aggregate, halved per direction); PCIe 4.0/5.0
  x16 from the PCI-SIG specifications (16/32 GT/s x 16 lanes, 128b/130b: 31.5/63 GB/s per direction);
  InfiniBand HDR 200 Gb/s and NDR 400 Gb/s (NVIDIA ConnectX-6/7 datasheets); RoCE 200/400 GbE at line rate.
  Latencies are order-of-magnitude figures for one message (NVLink/PCIe ~1-2 us, IB ~2 us, RoCE ~3 us
  end to end through one switch, as commonly measured with nccl-tests/perftest); models that are
  latency-sensitive say so and cite their own number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TB = 1e12
GB = 1e9


@dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops: dict[str, float]      # dense TFLOP/s by dtype
    hbm_gbps: float                    # GB/s
    hbm_gb: float                      # GB
    sm_count: int
    nvlink_gbps: float = 0.0           # per direction, GB/s
    source: str = ""

    def peak_flops(self, dtype: str = "bf16") -> float:
        if dtype not in self.peak_tflops:
            raise KeyError(f"{self.name} has no {dtype} peak; known: {', '.join(self.peak_tflops)}")
        return self.peak_tflops[dtype] * TB

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_gbps * GB

    def ridge_point(self, dtype: str = "bf16") -> float:
        """Arithmetic intensity (FLOP/byte) above which a kernel is compute-bound."""
        return self.peak_flops(dtype) / self.hbm_bytes_per_s


@dataclass(frozen=True)
class Link:
    name: str
    gbps: float          # GB/s per direction
    latency_us: float
    source: str = ""

    def transfer_s(self, n_bytes: float) -> float:
        """alpha-beta time of one message: latency + size / bandwidth."""
        return self.latency_us * 1e-6 + n_bytes / (self.gbps * GB)


_HOPPER = {"fp64": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9}

GPUS: dict[str, GPU] = {g.name: g for g in [
    GPU("H100-SXM", dict(_HOPPER), 3350, 80, 132, nvlink_gbps=450, source="NVIDIA H100 datasheet 2023"),
    GPU("H200", dict(_HOPPER), 4800, 141, 132, nvlink_gbps=450, source="NVIDIA H200 datasheet 2024"),
    GPU("H800", dict(_HOPPER), 3350, 80, 132, nvlink_gbps=200, source="NVIDIA H800 product brief 2023"),
    GPU("A100-80GB", {"fp64": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624}, 2039, 80, 108,
        nvlink_gbps=300, source="NVIDIA A100 datasheet 2021"),
    GPU("V100", {"fp64": 7.8, "fp32": 15.7, "fp16": 125}, 900, 32, 80, nvlink_gbps=150,
        source="NVIDIA V100 datasheet 2020"),
    GPU("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125, "int8": 250}, 600, 24, 72,
        source="NVIDIA A10 datasheet 2021"),
]}

LINKS: dict[str, Link] = {lk.name: lk for lk in [
    Link("nvlink3", 300, 1.0, "A100 datasheet: 600 GB/s bidirectional"),
    Link("nvlink4", 450, 1.0, "H100 datasheet: 900 GB/s bidirectional"),
    Link("pcie4", 31.5, 1.5, "PCIe 4.0 x16, 16 GT/s x 16 lanes, 128b/130b"),
    Link("pcie5", 63.0, 1.5, "PCIe 5.0 x16, 32 GT/s x 16 lanes, 128b/130b"),
    Link("ib-hdr", 25.0, 2.0, "InfiniBand HDR 200 Gb/s (ConnectX-6)"),
    Link("ib-ndr", 50.0, 2.0, "InfiniBand NDR 400 Gb/s (ConnectX-7)"),
    Link("roce-200", 25.0, 3.0, "RoCE v2 over 200 GbE"),
    Link("roce-400", 50.0, 3.0, "RoCE v2 over 400 GbE"),
]}


def gpu(name: str) -> GPU:
    if name not in GPUS:
        raise KeyError(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


def link(name: str) -> Link:
    if name not in LINKS:
        raise KeyError(f"unknown link {name!r}; known: {', '.join(LINKS)}")
    return LINKS[name]


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of peak; each model that uses one cites where its numbers come from."""

    compute: float = 1.0
    memory: float = 1.0
    notes: dict[str, str] = field(default_factory=dict)


def roofline_s(flops: float, n_bytes: float, g: GPU, dtype: str = "bf16", eff: Efficiency | None = None) -> float:
    """Time of a kernel bounded by compute or memory: max(FLOPs / achieved FLOP/s, bytes / achieved B/s)."""
    eff = eff or Efficiency()
    return max(flops / (g.peak_flops(dtype) * eff.compute), n_bytes / (g.hbm_bytes_per_s * eff.memory))
