"""One pipeline iteration with swap transfers on the PCIe link, first-come first-served against pipeline traffic.

Compute: each stage runs its fixed order of forwards (F) and backwards (B) one at a time; F(s, j) waits for
F(s - 1, j)'s activation, B(s, j) for B(s + 1, j)'s gradient (the last stage: its own F), and, when stage s
swaps, for the load of micro-batch j's swapped share.

Transfers: every transfer occupies the *channels* on its route for its whole duration; a channel carries one
transfer at a time, in the order they were requested (FCFS: a transfer starts when every channel on its route
is free, after all earlier requests). Channels are directed (PCIe and NVLink are full duplex):

* ``port{s}^`` / ``port{s}v``: GPU s's own x16 PCIe link, up (device to host) and down (host to device);
* ``switch{k}^`` / ``switch{k}v``: the uplink of PCIe switch k to the CPU, shared by ``gpus_per_switch`` GPUs
  (DGX A100: two GPUs per PCIe 4.0 switch; NVIDIA DGX A100 User Guide, system topology; elsewhere we assume
  each GPU has its own path, ``gpus_per_switch`` = 1, and the reproduction sweeps it);
* ``nvl{s}>`` / ``nvl{s}<``: GPU s's NVLink port out and in (NVSwitch is non-blocking), where the fabric is
  NVLink (``core.gpu.default_fabric``: SXM parts); on PCIe parts pipeline messages cross PCIe instead:
  port{a}^ (+ switch uplinks when a and b sit under different switches) + port{b}v, so they contend with swaps.

A swap-out (evict) of micro-batch j's swapped bytes is requested when F(s, j) ends and takes
``core.gpu.copy_s(bytes, gpu, "d2h")``; its swap-in (load) is requested when the stage *starts* the backward
before B(s, j) in its order (one backward of look-ahead, the period the paper's inequality budgets; the first
backward: when the item two places before it starts), and not before the evict has finished, and takes
``copy_s(bytes, gpu, "h2d")``. A pipeline message (one micro-batch's activation or gradient) takes
``core.gpu.collective_s("sendrecv", bytes, 2, gpu)``. All three times come from the shared GPU cost model.

Memory, measured on the timeline per stage: a forward allocates its micro-batch's (post-recomputation)
activation a at its start; an evict frees beta a at its end; a load allocates beta a at its start; the backward
frees what is left at its end. A plan whose evicts fall behind therefore holds more, and one whose loads fall
behind waits: both show up here, neither is assumed away.

Cost: an event loop over O(p m) items and transfers with a heap, O(p m log(p m)).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from syslab.core import gpu as G
from syslab.core.timeline import Op, Schedule

Item = tuple[str, int, int]


@dataclass(frozen=True)
class Topology:
    """Where transfers go and how long they take on one GPU type."""

    gpu: str = "A100-SXM-80GB"
    message_bytes: float = 0.0
    gpus_per_switch: int = 1
    pipeline_on_pcie: bool = False

    def message_s(self) -> float:
        return G.collective_s("sendrecv", self.message_bytes, 2, self.gpu) if self.message_bytes > 0 else 0.0

    def copy_s(self, n_bytes: float, direction: str) -> float:
        return G.copy_s(n_bytes, self.gpu, direction)

    def host_route(self, s: int, direction: str) -> tuple[str, ...]:
        arrow = "^" if direction == "d2h" else "v"
        route = (f"port{s}{arrow}",)
        if self.gpus_per_switch > 1:
            route += (f"switch{s // self.gpus_per_switch}{arrow}",)
        return route

    def message_route(self, a: int, b: int) -> tuple[str, ...]:
        if not self.pipeline_on_pcie:
            return (f"nvl{a}>", f"nvl{b}<")
        route = (f"port{a}^", f"port{b}v")
        k = self.gpus_per_switch
        if k > 1 and a // k != b // k:
            route += (f"switch{a // k}^", f"switch{b // k}v")
        return route


def topology_for(gpu_name: str, message_bytes: float, gpus_per_switch: int | None = None) -> Topology:
    """The usual server of ``gpu_name`` (``core.gpu.default_fabric``): NVLink for pipeline messages on SXM parts,
    PCIe otherwise; two GPUs per PCIe switch on DGX A100 (A100-SXM parts), one elsewhere unless given."""
    from syslab.core.hardware import gpu

    g = gpu(gpu_name)
    fabric = G.default_fabric(g)
    if gpus_per_switch is None:
        gpus_per_switch = 2 if g.name.startswith("A100-SXM") else 1
    return Topology(g.name, message_bytes, gpus_per_switch, pipeline_on_pcie=fabric.intra.startswith("pcie"))


@dataclass
class SimResult:
    """What the planner needs (makespan, per-stage peak of activation bytes, bytes swapped in) and the ops, from
    which ``schedule()`` builds a ``core.timeline.Schedule`` for validation and plots."""

    makespan: float
    peaks: list[float]
    swapped_bytes: float
    records: list[tuple] = field(repr=False, default_factory=list)

    def schedule(self) -> Schedule:
        ops, start, end = {}, {}, {}
        for name, dur, res, deps, cat, args, t0 in self.records:
            ops[name] = Op(name, dur, res, deps, cat, args)
            start[name], end[name] = t0, t0 + dur
        return Schedule(ops, start, end)


def simulate(forward_s: list[float], backward_s: list[float], activation: list[float], swap: list[float],
             orders: dict[int, list[Item]], topo: Topology, keep_ops: bool = True) -> SimResult:
    """Play one iteration out. Per stage s: forward and backward time per micro-batch, the activation bytes a
    micro-batch holds after recomputation, the swapped share beta; ``orders[s]``: its items in order.
    ``keep_ops`` False records no ops (the planner's fast path; makespan and peaks are the same)."""
    p = len(forward_s)
    msg_s = topo.message_s()
    moved = [swap[s] * activation[s] for s in range(p)]
    out_s = [topo.copy_s(moved[s], "d2h") if swap[s] > 0 else 0.0 for s in range(p)]
    in_s = [topo.copy_s(moved[s], "h2d") if swap[s] > 0 else 0.0 for s in range(p)]
    fwd_route = [topo.message_route(s, s + 1) if s < p - 1 else () for s in range(p)]
    bwd_route = [topo.message_route(s, s - 1) if s > 0 else () for s in range(p)]
    out_route = [topo.host_route(s, "d2h") for s in range(p)]
    in_route = [topo.host_route(s, "h2d") for s in range(p)]
    free: dict[str, float] = {}
    events: list[tuple[float, int, int, tuple]] = []
    seq = 0
    idx = [0] * p
    busy = [False] * p
    arrived: dict[Item, str] = {}                 # item -> the op it waits for (a message, or its own forward)
    evicted: dict[tuple[int, int], str] = {}
    loaded: dict[tuple[int, int], str] = {}
    want_load: set[tuple[int, int]] = set()
    mem: list[list[tuple[float, float]]] = [[] for _ in range(p)]
    records: list[tuple] = []
    end_t = 0.0
    swapped = 0.0
    # load triggers: starting order position i requests the loads listed at i
    triggers: list[dict[int, list[int]]] = []
    for s in range(p):
        trig: dict[int, list[int]] = {}
        if swap[s] > 0:
            b_pos = [i for i, it in enumerate(orders[s]) if it[0] == "B"]
            for n, i in enumerate(b_pos):
                at = b_pos[n - 1] if n > 0 else max(0, i - 2)
                trig.setdefault(at, []).append(orders[s][i][2])
        triggers.append(trig)

    def reserve(route: tuple[str, ...], t: float, dur: float, name: str, dep: str, cat: str, args: dict) -> str:
        """Book ``route`` FCFS from ``t``; returns the op name a dependant waits for and pushes nothing."""
        nonlocal end_ok, start_ok
        t0 = t
        for ch in route:
            f = free.get(ch, 0.0)
            if f > t0:
                t0 = f
        for ch in route:
            free[ch] = t0 + dur
        start_ok, end_ok = t0, t0 + dur
        if not keep_ops:
            return ""
        first = ""
        for ch in route:
            n = name if len(route) == 1 else f"{name}@{ch}"
            records.append((n, dur, ch, (dep,), cat, args, t0))
            first = first or n
        return first

    start_ok = end_ok = 0.0

    def request_load(s: int, j: int, t: float) -> None:
        nonlocal seq, swapped
        op = reserve(in_route[s], t, in_s[s], f"load{s}.{j}" if keep_ops else "", evicted[(s, j)], "swap",
                     {"stage": s, "mb": j, "alloc_at_start": moved[s]} if keep_ops else {})
        swapped += moved[s]
        mem[s].append((start_ok, moved[s]))                       # allocated when the copy begins
        seq += 1
        heapq.heappush(events, (end_ok, seq, 2, (s, j, op)))

    def poll(s: int, now: float) -> None:
        nonlocal seq
        if busy[s] or idx[s] >= len(orders[s]):
            return
        kind, _, j = orders[s][idx[s]]
        is_f = kind == "F"
        if is_f:
            if s > 0 and ("F", s, j) not in arrived:
                return
        elif ("B", s, j) not in arrived or (swap[s] > 0 and (s, j) not in loaded):
            return
        dur = forward_s[s] if is_f else backward_s[s]
        a = activation[s]
        name = ""
        if is_f:
            mem[s].append((now, a))
        if keep_ops:
            name = f"{kind}{s}.{j}"
            deps = [arrived[(kind, s, j)]] if (not is_f or s > 0) else []
            if not is_f and swap[s] > 0:
                deps.append(loaded[(s, j)])
            records.append((name, dur, f"stage{s}", tuple(deps), "forward" if is_f else "backward",
                            {"kind": kind, "vs": s, "mb": j, "act": a if is_f else -a}, now))
        busy[s] = True
        trig = triggers[s].get(idx[s])
        if trig:
            for jj in trig:
                if (s, jj) in evicted:
                    request_load(s, jj, now)
                else:
                    want_load.add((s, jj))
        idx[s] += 1
        seq += 1
        heapq.heappush(events, (now + dur, seq, 0, (s, is_f, j, name)))

    for s in range(p):
        poll(s, 0.0)
    while events:
        t, _, kind, payload = heapq.heappop(events)
        end_t = t if t > end_t else end_t
        if kind == 0:                                            # a compute item ended
            s, is_f, j, name = payload
            busy[s] = False
            if is_f:
                if s < p - 1:
                    op = reserve(fwd_route[s], t, msg_s, f"send-F{s}.{j}" if keep_ops else "", name, "p2p", {})
                    seq += 1
                    heapq.heappush(events, (end_ok, seq, 1, (("F", s + 1, j), op)))
                else:
                    arrived[("B", s, j)] = name
                if swap[s] > 0:
                    op = reserve(out_route[s], t, out_s[s], f"evict{s}.{j}" if keep_ops else "", name, "swap",
                                 {"stage": s, "mb": j, "free_at_end": moved[s]} if keep_ops else {})
                    mem[s].append((end_ok, -moved[s]))
                    seq += 1
                    heapq.heappush(events, (end_ok, seq, 3, (s, j, op)))
            else:
                mem[s].append((t, -activation[s]))
                if s > 0:
                    op = reserve(bwd_route[s], t, msg_s, f"send-B{s}.{j}" if keep_ops else "", name, "p2p", {})
                    seq += 1
                    heapq.heappush(events, (end_ok, seq, 1, (("B", s - 1, j), op)))
            poll(s, t)
        elif kind == 1:                                          # a message arrived
            item, op = payload
            arrived[item] = op
            poll(item[1], t)
        elif kind == 2:                                          # a load finished
            s, j, op = payload
            loaded[(s, j)] = op
            poll(s, t)
        else:                                                    # an evict finished
            s, j, op = payload
            evicted[(s, j)] = op
            if (s, j) in want_load:
                want_load.discard((s, j))
                request_load(s, j, t)
    for s in range(p):
        if idx[s] < len(orders[s]) or busy[s]:
            raise RuntimeError(f"stage {s} stalled at {orders[s][idx[s]] if idx[s] < len(orders[s]) else 'end'}")
    peaks = []
    for s in range(p):
        level = peak = 0.0
        for _, delta in sorted(mem[s]):                          # frees before allocations at a tie
            level += delta
            if level > peak:
                peak = level
        peaks.append(peak)
    return SimResult(end_t, peaks, swapped, records)


def free_swaps(topo: Topology) -> Topology:
    """The same server with swap transfers that take no time (what the feasibility inequality assumes when it
    holds): the reference for how much the simulated swaps cost."""
    return _FreeSwap(topo.gpu, topo.message_bytes, topo.gpus_per_switch, topo.pipeline_on_pcie)


class _FreeSwap(Topology):
    def copy_s(self, n_bytes: float, direction: str) -> float:
        return 0.0
