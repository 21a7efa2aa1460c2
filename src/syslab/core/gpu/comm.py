"""Collectives, host<->device copies and storage reads.

**Collectives** (NCCL, nccl-tests conventions). For ``n`` ranks and a buffer of S bytes (the full buffer:
all-reduce's input, all-gather's output), a ring moves ``factor x S`` bytes through each rank's link, with
``factor`` = 2 (n-1)/n for all-reduce and (n-1)/n for all-gather, reduce-scatter and all-to-all (nccl-tests'
"bus bandwidth" factors, so that bus bandwidth is comparable with a link's speed). Time = latency + factor x S /
bus bandwidth, where

- *bus bandwidth* inside a node is the measured large-message bus bandwidth of that op on that fabric
  (``busbw_gbps``; ops without rows use the fabric's ring collectives); across nodes a ring leaves each node once per
  channel, one channel per NIC, so bus bandwidth is min(intra-node, NICs per node x NIC speed x ``net_eff``);
  all-to-all instead sends (N - g)/N of every rank's data through its own NIC (g GPUs per node);
- *latency* is ``hops x hop_latency``: a ring all-reduce takes 2 (n-1) steps, the others n-1; a hop inside a
  node costs the fabric's fitted ``hop_s``, a hop across nodes the network's (fitted on small-message rows).

**Copies** between host and device cross the GPU's PCIe link: pinned at the link speed x ``pinned_eff``
(fitted on bandwidthTest/nvbandwidth rows per PCIe generation), pageable at the measured host-staged rate, plus a
fixed per-copy latency. **Storage** reads at the medium's measured sequential throughput.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from syslab.core.gpu.calibration import comm_rows
from syslab.core.gpu.compute import DEFAULT_CURVE, SMCurve
from syslab.core.hardware import GPU, Link, gpu, link

OPS = ("allreduce", "allgather", "reducescatter", "alltoall", "broadcast", "sendrecv")


def bus_factor(op: str, ranks: int) -> float:
    """nccl-tests' bus-bandwidth factor: bytes through each rank's link per byte of buffer."""
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; known: {', '.join(OPS)}")
    if ranks <= 1:
        return 0.0
    if op == "allreduce":
        return 2.0 * (ranks - 1) / ranks
    if op in ("broadcast", "sendrecv"):
        return 1.0
    return (ranks - 1) / ranks


def _hops(op: str, ranks: int) -> int:
    return 2 * (ranks - 1) if op == "allreduce" else 1 if op == "sendrecv" else ranks - 1


@dataclass(frozen=True)
class Fabric:
    """The links of a job's GPUs: ``intra`` inside a node (NVLink/NVSwitch or PCIe), ``nic`` x ``nics_per_node``
    between nodes. DGX A100: 8 x A100, NVLink 3 + NVSwitch, 8 x HDR 200 Gb/s; DGX H100: 8 x H100, NVLink 4,
    8 x NDR 400 Gb/s (NVIDIA DGX A100 / DGX H100 user guides)."""

    intra: str = "nvlink3"
    gpus_per_node: int = 8
    nic: str = "ib-hdr"
    nics_per_node: int = 8


def default_fabric(g: GPU | str) -> Fabric:
    """The usual server of ``g``: SXM parts in a DGX/HGX box, PCIe parts over their PCIe link and 100 GbE RoCE."""
    g = gpu(g)
    if g.name in ("H100-SXM", "H200", "H800"):
        return Fabric("nvlink4", 8, "ib-ndr", 8)
    if g.name.startswith("A100-SXM") or g.name == "V100":
        return Fabric("nvlink3", 8, "ib-hdr", 8)
    return Fabric(g.host_link, 8, "roce-100", 1)


def _row_time_s(r: dict) -> float:
    """A measured collective's time: given directly, or from its bus bandwidth (time = factor x bytes / busbw)."""
    if r["metric"] == "time":
        return r["value"] * (1e-6 if r["unit"] == "us" else 1e-3)
    return bus_factor(r["op"], int(r["ranks"])) * r["bytes"] / (r["value"] * 1e9)


@functools.cache
def _fit(fabric_link: str, op: str) -> tuple[float, float]:
    """(bus bandwidth GB/s, hop latency s) of ``op`` inside a node on ``fabric_link``: the largest fit busbw at
    >= 100 MB (or a size-less statement), and the smallest fit message's time over its hop count. An op without
    rows uses the fabric's ring ops (allgather), then all-reduce; a fabric with no collective rows at all
    (PCIe) moves data at its fitted pinned-copy bandwidth with the link's nominal latency."""
    rows = [r for r in comm_rows() if r["fabric"] == fabric_link and r["role"] == "fit" and r["op"] in OPS
            and (math.isnan(r["nodes"]) or r["nodes"] <= 1)]
    for candidate in (op, "allgather", "allreduce"):
        mine = [r for r in rows if r["op"] == candidate]
        big = [r["value"] for r in mine if r["metric"] == "busbw" and (math.isnan(r["bytes"]) or r["bytes"] >= 1e8)]
        if big:
            break
    else:
        return copy_gbps(fabric_link), link(fabric_link).latency_us * 1e-6
    timed = [r for r in rows if r["op"] in (candidate, "allreduce") and not math.isnan(r["bytes"])
             and r["bytes"] <= 65536]
    if timed:
        r = min(timed, key=lambda r: r["bytes"])
        hop = _row_time_s(r) / max(_hops(r["op"], int(r["ranks"])), 1)
    else:
        hop = link(fabric_link).latency_us * 1e-6
    return max(big), hop


def busbw_gbps(fabric_link: str, op: str = "allreduce") -> float:
    """Bus bandwidth (GB/s) a large ``op`` reaches inside a node on ``fabric_link`` (measured; all-reduce over
    NVLink 4 uses NVLink SHARP, whose bus bandwidth exceeds the link's line rate because the switch reduces)."""
    return _fit(link(fabric_link).name, op)[0]


def _hop_s(fabric_link: str, op: str = "allreduce") -> float:
    return _fit(fabric_link, op)[1]


def collective_s(op: str, n_bytes: float, ranks: int, g: GPU | str = "A100-SXM-80GB", nodes: int = 1,
                 fabric: Fabric | None = None, sm_fraction: float = 1.0, curve: SMCurve = DEFAULT_CURVE) -> float:
    """Seconds of one NCCL collective of ``n_bytes`` (the full buffer) over ``ranks`` GPUs on ``nodes`` nodes.
    *Cost*: O(1)."""
    bus_factor(op, 2)                      # validates op
    if ranks <= 1 or n_bytes <= 0:
        return 0.0
    fabric = fabric or default_fabric(g)
    nodes = max(1, nodes)
    if ranks % nodes:
        raise ValueError(f"{ranks} ranks do not split evenly over {nodes} nodes")
    per_node = ranks // nodes
    share = float(curve.collective_share(sm_fraction))
    intra = busbw_gbps(fabric.intra, op) * 1e9 * share
    factor = bus_factor(op, ranks)
    if nodes == 1:
        return _hops(op, ranks) * _hop_s(fabric.intra, op) + factor * n_bytes / intra
    net = link(fabric.nic).gbps * net_eff(fabric.nic) * 1e9 * share
    latency = (_hops(op, per_node) * _hop_s(fabric.intra, op) if per_node > 1 else 0.0) \
        + _hops(op, nodes) * _hop_s_net(fabric.nic)
    if op == "alltoall":
        # each rank's (N - g)/N share crosses the network; all-to-all cannot pool a node's NICs (one per GPU)
        per_gpu_net = net * min(1.0, fabric.nics_per_node / per_node)
        return latency + max(n_bytes * (ranks - per_node) / ranks / per_gpu_net, factor * n_bytes / intra)
    # rings leave a node once per channel, one channel per NIC: the node's NICs together bound bus bandwidth
    ring_intra = busbw_gbps(fabric.intra, "allgather") * 1e9 * share   # no in-switch reduction across nodes
    busbw = min(ring_intra, fabric.nics_per_node * net)
    return latency + factor * n_bytes / busbw


@functools.cache
def net_eff(nic: str) -> float:
    """Achieved / line rate of a NIC (``nic`` rows); a NIC without rows borrows InfiniBand NDR's fraction."""
    for name in (nic, "ib-ndr"):
        rows = [r for r in comm_rows() if r["fabric"] == name and r["role"] == "fit" and r["op"] == "nic"]
        if rows:
            return min(1.0, max(r["value"] for r in rows) / link(name).gbps)
    raise LookupError("no NIC bandwidth rows in core/gpu/comm.csv")


@functools.cache
def _hop_s_net(nic: str) -> float:
    """Latency of one inter-node step, from the smallest multi-node fit row (its intra-node steps removed)."""
    for name in (nic, "ib-ndr"):
        rows = [r for r in comm_rows() if r["fabric"] == name and r["role"] == "fit" and r["op"] in OPS
                and r["nodes"] > 1]
        if rows:
            r = min(rows, key=lambda r: r["bytes"])
            per_node = int(r["ranks"] // r["nodes"])
            intra = _hops(r["op"], per_node) * _hop_s(r["intra"] or "nvlink4", r["op"])
            return max(_row_time_s(r) - intra, 0.0) / max(_hops(r["op"], int(r["nodes"])), 1)
    return link(nic).latency_us * 1e-6


def algbw_busbw(op: str, n_bytes: float, ranks: int, seconds: float) -> tuple[float, float]:
    """nccl-tests' algorithm and bus bandwidth (GB/s) of a collective that took ``seconds``."""
    alg = n_bytes / seconds / 1e9 if seconds > 0 else math.inf
    return alg, alg * bus_factor(op, ranks)


# ---------------------------------------------------------------------------------------------------------
# Host <-> device copies and storage
# ---------------------------------------------------------------------------------------------------------

PCIE_GENERATIONS = ("pcie3", "pcie4", "pcie5")


@functools.cache
def _copy_fit(pcie: str, op: str) -> tuple[float, float]:
    """(bandwidth GB/s, latency s) of ``op`` over a PCIe generation: the largest ``fit`` row's bandwidth; D2H
    without rows uses H2D's (one link, two directions); a generation without rows takes the nearest
    generation's fraction of line rate for pinned copies, and its absolute rate for pageable ones (those are
    bound by the host's staging memcpy, not by the link)."""
    order = sorted(PCIE_GENERATIONS, key=lambda gen: abs(PCIE_GENERATIONS.index(gen) - PCIE_GENERATIONS.index(pcie))
                   if pcie in PCIE_GENERATIONS else 0)
    kind = op.split("_")[1]
    for direction in (op, f"h2d_{kind}"):
        for gen in order:
            rows = [r for r in comm_rows() if r["fabric"] == gen and r["op"] == direction and r["role"] == "fit"]
            if rows:
                best = max(r["value"] for r in rows)
                bw = best if kind == "pageable" else best / link(gen).gbps * link(pcie).gbps
                return min(bw, link(pcie).gbps), link(pcie).latency_us * 1e-6
    raise LookupError(f"no fit rows for {op} in core/gpu/comm.csv")


def copy_s(n_bytes: float, g: GPU | str = "A100-SXM-80GB", direction: str = "h2d", pinned: bool = True,
           host_link: Link | str | None = None) -> float:
    """Seconds of one host<->device copy (``direction`` h2d or d2h) over the GPU's PCIe link. *Cost*: O(1)."""
    if direction not in ("h2d", "d2h"):
        raise ValueError(f"direction must be h2d or d2h, got {direction!r}")
    if n_bytes <= 0:
        return 0.0
    pcie = link(host_link or gpu(g).host_link).name
    bw, lat = _copy_fit(pcie, f"{direction}_{'pinned' if pinned else 'pageable'}")
    return lat + n_bytes / (bw * 1e9)


def copy_gbps(pcie: str, direction: str = "h2d", pinned: bool = True) -> float:
    """The fitted large-copy bandwidth (GB/s) of a PCIe generation."""
    return _copy_fit(link(pcie).name, f"{direction}_{'pinned' if pinned else 'pageable'}")[0]


def storage_gbps(medium: str = "nvme") -> float:
    """Measured sequential read throughput (GB/s) of a storage medium (``storage_read`` rows)."""
    rows = [r for r in comm_rows() if r["op"] == "storage_read" and r["fabric"] == medium and r["role"] == "fit"]
    if not rows:
        known = sorted({r["fabric"] for r in comm_rows() if r["op"] == "storage_read"})
        raise LookupError(f"no storage measurement for {medium!r}; known: {', '.join(known)}")
    return max(r["value"] for r in rows)


def storage_s(n_bytes: float, medium: str = "nvme") -> float:
    return n_bytes / (storage_gbps(medium) * 1e9) if n_bytes > 0 else 0.0
