"""Datasheet specs of the GPUs and links the papers ran on: peaks only. Achieved kernel, link and copy times
come from the one calibrated cost model, ``core.gpu``.

Peak FLOP/s are *dense* tensor-core figures (NVIDIA quotes 2x "with sparsity"; we never use those).
Bandwidths are per direction. Sources, by entry:

- H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet (2023): BF16/FP16 989.4 TFLOP/s, FP8 1,978.9, TF32 494.7,
  FP64 tensor 66.9; 80 GB HBM3 at 3.35 TB/s; NVLink 4 900 GB/s bidirectional. 132 SMs: NVIDIA H100
  whitepaper ("NVIDIA H100 Tensor Core GPU Architecture", 2022), SXM5 configuration.
- H200 SXM: NVIDIA H200 datasheet (2024): same compute as H100 SXM; 141 GB HBM3e at 4.8 TB/s.
- H800 SXM5: NVIDIA H800 product brief (2023): H100 compute; 80 GB at 3.35 TB/s; NVLink 400 GB/s.
- H100 PCIe: same datasheet: BF16/FP16 756 dense (1,513 with sparsity), FP8 1,513, TF32 378, FP64 tensor 51;
  80 GB HBM2e at 2.0 TB/s; 114 SMs (H100 whitepaper, PCIe configuration); NVLink bridge 600 GB/s.
- A100 SXM / PCIe, 40 / 80 GB: NVIDIA A100 datasheet (2021): BF16/FP16 312, TF32 156, FP64 tensor 19.5,
  INT8 624 on every variant; HBM 1,555 GB/s (40 GB), 2,039 GB/s (80 GB SXM), 1,935 GB/s (80 GB PCIe);
  108 SMs (A100 whitepaper); NVLink 3 600 GB/s bidirectional (SXM; a bridge joins two PCIe cards).
- L40S: NVIDIA L40S datasheet (2023): BF16/FP16 tensor 362.05 dense (733 with sparsity), FP8 733, TF32 183,
  FP32 91.6; 48 GB GDDR6 at 864 GB/s; 142 SMs; PCIe 4.0 x16, no NVLink.
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

from dataclasses import dataclass

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
    arch: str = ""                     # ampere, hopper, ada ... (core.gpu borrows calibrations within an arch)
    host_link: str = "pcie4"           # the PCIe generation to the host (core.hardware.LINKS)
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
_H100_PCIE = {"fp64": 51.2, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5, "fp8": 1513.0, "int8": 1513.0}
_AMPERE = {"fp64": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624}
_ADA_L40S = {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0, "int8": 733.0}

GPUS: dict[str, GPU] = {g.name: g for g in [
    GPU("H100-SXM", dict(_HOPPER), 3350, 80, 132, nvlink_gbps=450, arch="hopper", host_link="pcie5",
        source="NVIDIA H100 datasheet 2023 (SXM5)"),
    GPU("H100-PCIe", dict(_H100_PCIE), 2000, 80, 114, nvlink_gbps=300, arch="hopper", host_link="pcie5",
        source="NVIDIA H100 datasheet 2023 (PCIe: 756 dense BF16, 2.0 TB/s HBM2e, NVLink bridge 600 GB/s; "
               "114 SMs per the H100 whitepaper)"),
    GPU("H200", dict(_HOPPER), 4800, 141, 132, nvlink_gbps=450, arch="hopper", host_link="pcie5",
        source="NVIDIA H200 datasheet 2024"),
    GPU("H800", dict(_HOPPER), 3350, 80, 132, nvlink_gbps=200, arch="hopper", host_link="pcie5",
        source="NVIDIA H800 product brief 2023"),
    GPU("A100-SXM-80GB", dict(_AMPERE), 2039, 80, 108, nvlink_gbps=300, arch="ampere", host_link="pcie4",
        source="NVIDIA A100 datasheet 2021 (80GB SXM: 2,039 GB/s HBM2e)"),
    GPU("A100-SXM-40GB", dict(_AMPERE), 1555, 40, 108, nvlink_gbps=300, arch="ampere", host_link="pcie4",
        source="NVIDIA A100 datasheet 2021 (40GB SXM: 1,555 GB/s HBM2)"),
    GPU("A100-PCIe-80GB", dict(_AMPERE), 1935, 80, 108, nvlink_gbps=300, arch="ampere", host_link="pcie4",
        source="NVIDIA A100 datasheet 2021 (80GB PCIe: 1,935 GB/s; NVLink bridge for 2 GPUs 600 GB/s)"),
    GPU("A100-PCIe-40GB", dict(_AMPERE), 1555, 40, 108, nvlink_gbps=300, arch="ampere", host_link="pcie4",
        source="NVIDIA A100 datasheet 2021 (40GB PCIe: 1,555 GB/s)"),
    GPU("V100", {"fp64": 7.8, "fp32": 15.7, "fp16": 125}, 900, 32, 80, nvlink_gbps=150, arch="volta",
        host_link="pcie3", source="NVIDIA V100 datasheet 2020"),
    GPU("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125, "int8": 250}, 600, 24, 72, arch="ampere-ga10x",
        host_link="pcie4", source="NVIDIA A10 datasheet 2021"),
    GPU("L40S", dict(_ADA_L40S), 864, 48, 142, arch="ada", host_link="pcie4",
        source="NVIDIA L40S datasheet 2023 (BF16 tensor 362.05 dense, 48 GB GDDR6 at 864 GB/s, 142 SMs)"),
]}

# Names the papers and users write for the same parts (lookup is case-insensitive).
GPU_ALIASES: dict[str, str] = {
    "a100": "A100-SXM-80GB", "a100-sxm": "A100-SXM-80GB", "a100-80gb": "A100-SXM-80GB",
    "a100-40gb": "A100-SXM-40GB", "a100-pcie": "A100-PCIe-80GB", "h100": "H100-SXM", "h100-sxm5": "H100-SXM",
    "h200-sxm": "H200", "v100-sxm2": "V100",
}

LINKS: dict[str, Link] = {lk.name: lk for lk in [
    Link("nvlink3", 300, 1.0, "A100 datasheet: 600 GB/s bidirectional"),
    Link("nvlink4", 450, 1.0, "H100 datasheet: 900 GB/s bidirectional"),
    Link("pcie3", 15.75, 1.5, "PCIe 3.0 x16, 8 GT/s x 16 lanes, 128b/130b"),
    Link("pcie4", 31.5, 1.5, "PCIe 4.0 x16, 16 GT/s x 16 lanes, 128b/130b"),
    Link("pcie5", 63.0, 1.5, "PCIe 5.0 x16, 32 GT/s x 16 lanes, 128b/130b"),
    Link("ib-hdr", 25.0, 2.0, "InfiniBand HDR 200 Gb/s (ConnectX-6)"),
    Link("ib-ndr", 50.0, 2.0, "InfiniBand NDR 400 Gb/s (ConnectX-7)"),
    Link("roce-100", 12.5, 3.0, "RoCE v2 over 100 GbE"),
    Link("roce-200", 25.0, 3.0, "RoCE v2 over 200 GbE"),
    Link("roce-400", 50.0, 3.0, "RoCE v2 over 400 GbE"),
    Link("eth-25", 3.125, 10.0, "25 GbE (TCP)"),
    Link("eth-100", 12.5, 10.0, "100 GbE (TCP)"),
]}


def _canonical(name: str, table: dict, aliases: dict[str, str], what: str) -> str:
    key = str(name).strip()
    by_lower = {k.lower(): k for k in table}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    if key.lower() in aliases:
        return aliases[key.lower()]
    raise KeyError(f"unknown {what} {name!r}; known: {', '.join(table)}")


def gpu(name: str | GPU) -> GPU:
    """A GPU by name, case-insensitive; common aliases (``A100``, ``A100-SXM``, ``H100``) resolve to SXM parts."""
    if isinstance(name, GPU):
        return name
    return GPUS[_canonical(name, GPUS, GPU_ALIASES, "GPU")]


def link(name: str | Link) -> Link:
    if isinstance(name, Link):
        return name
    return LINKS[_canonical(name, LINKS, {}, "link")]


def roofline_s(flops: float, n_bytes: float, g: GPU, dtype: str = "bf16") -> float:
    """The datasheet bound: max(FLOPs / peak FLOP/s, bytes / peak B/s). No kernel runs faster; achieved
    times come from ``core.gpu``."""
    return max(flops / g.peak_flops(dtype), n_bytes / g.hbm_bytes_per_s)
