"""Pipeline-parallel schedules as op DAGs on ``core.timeline`` (shared by the training systems).

One iteration of pipeline training is a set of *compute items* ``(kind, virtual stage, micro-batch)`` placed on
devices: F (forward), B (backward; with a B/W split only the input gradient, which is on the critical path) and
W (the weight gradient, which nothing downstream waits for). ``Stages`` says what each item costs and where
each virtual stage lives; a *policy* says in which order each device runs its items; ``simulate`` plays the
iteration out in time and returns a ``core.timeline.Schedule`` (so every schedule can be validated, measured
and exported to Perfetto the same way).

Dependencies: F(v, j) needs F(v - 1, j)'s output; B(v, j) needs B(v + 1, j)'s (the last virtual stage: its own
F); W(v, j) needs B(v, j). When producer and consumer sit on different devices the message crosses an
alpha-beta ``Link``: it occupies the directed link for beta x bytes (first-come first-served, so messages
queue behind each other) and arrives alpha later (latency delays a message but does not occupy the link;
CrossPipe, ATC'25, §3). Each device runs one item at a time.

Policies: a fixed per-device order (every static schedule), or a greedy list scheduler that picks among the
items whose inputs have arrived whenever a device falls idle (the ZB-H1 construction here and CrossPipe's
greedy). Static orders:

* 1F1B (PipeDream-Flush / Megatron-LM; Narayanan et al., SC'21, §2.2): stage s runs min(p - s - 1, m) warm-up
  forwards, then alternates one forward and one backward, then drains. Bubble (p - 1) / (m + p - 1).
* Interleaved 1F1B (same paper, §2.2.2): v chunks per device, virtual stage c x p + s on device s;
  (p - s - 1) x 2 + (v - 1) x p warm-up forwards; bubble (p - 1) / (v m) of the ideal time.
* ZB-H1 (Qi et al., ICLR'24, "Zero Bubble Pipeline Parallelism", §2.1): 1F1B's pattern with each backward
  split into B and W and the W's delayed to fill the tail, every stage keeping p micro-batches in flight.
  Built here by the greedy list scheduler with phase priorities under that in-flight bound, at zero
  communication cost, then frozen; at F = B = W it reaches the paper's bubble, (p - 1)(F + B - W) = p - 1
  units (1F1B: 3 (p - 1)), checked for p up to 8. Our accounting holds a micro-batch's activations until its
  W, so every stage holds p; the paper counts the deferred W's smaller activations, so its stage 0 stays at
  1F1B's peak.
* ZB-V (same paper, §6; the V-Shape schedules of Qi et al., "Pipeline Parallelism with Controllable Memory",
  NeurIPS'24, arXiv 2405.15362): two chunks per device in a V (chunk 0 of device r is virtual stage r, chunk 1
  is 2p - 1 - r), each backward split into B and W. The paper's hand-built order, phase by phase (the
  counts as in PyTorch's ``ScheduleZBVZeroBubble``, which implements §6; read, not copied): device r runs
  2 (p - r) - 1 chunk-0 forwards; then r pairs (chunk-1 F, chunk-0 F); then p - r triples (chunk-1 F, B, W);
  then the steady state repeats (chunk-0 F while any is left, chunk-0 B, W, chunk-1 F, B, W) until every
  forward has run; the cool-down runs r pairs (chunk-0 B, chunk-1 B), p - r pairs (chunk-0 B, the oldest
  chunk-0 W), then the W's left. With fewer than 2p - 1 micro-batches the order is built for 2p - 1 and the
  missing micro-batches' items are dropped. At F = B = W (each chunk taking half a stage's time) and m >= 2p,
  no device idles between its first and its last item (the paper's zero bubble: bubble rate
  1 - (F + B + W) m / longest stage time = 0), so the makespan is 3m + (p - 1) / 2 units: the only idle time
  is device r starting r chunk-forwards late, which no schedule avoids (device p - 1 cannot start before one
  micro-batch has crossed p - 1 chunks). Peak memory is 1F1B's, p micro-batches' activations per device,
  as the paper states. Checked for p up to 8.

Memory: a forward of virtual stage v holds ``Stages.activation[v]`` (or ``[v, j]`` per micro-batch, for
schedules that recompute or swap some micro-batches; default: 1 / chunks-per-device, so a
whole device's share of one micro-batch is 1) until the item that frees it ends (its W, or its B when the
backward is not split). ``activation_peaks`` and ``validate`` read that from the schedule.

Cost: ``simulate`` is an event loop over O(V m) items with a heap, O(V m log(V m)); only the device an event
touches is re-polled.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from syslab.core.errors import InputError
from syslab.core.timeline import Op, Schedule

Item = tuple[str, int, int]                   # (kind "F" | "B" | "W", virtual stage, micro-batch)


@dataclass(frozen=True)
class Link:
    """A directed alpha-beta link: a message of n bytes occupies it for ``s_per_byte`` x n seconds and
    arrives ``latency_s`` after that."""

    latency_s: float = 0.0
    s_per_byte: float = 0.0


@dataclass
class Stages:
    """What one iteration computes. Times are ``[virtual stages, micro-batches]`` arrays in seconds;
    ``backward_s`` is B (input gradient) when ``weight_s`` is given, the whole backward otherwise.
    ``placement[v]``: the device of virtual stage v (default: v itself). ``message_bytes``: one activation
    (or its gradient) sent between consecutive virtual stages. ``links[(a, b)]``: the link from device a to
    b (default ``default_link``). ``weight_pieces``: W split into that many sub-blocks that a greedy policy
    may interleave with other work (CrossPipe's sub-blocks)."""

    forward_s: np.ndarray
    backward_s: np.ndarray
    weight_s: np.ndarray | None = None
    placement: Sequence[int] | None = None
    message_bytes: float = 0.0
    links: dict[tuple[int, int], Link] = field(default_factory=dict)
    default_link: Link = Link()
    activation: np.ndarray | None = None
    weight_pieces: int = 1

    def __post_init__(self) -> None:
        self.forward_s = np.asarray(self.forward_s, dtype=np.float64)
        self.backward_s = np.asarray(self.backward_s, dtype=np.float64)
        arrays = [("forward_s", self.forward_s), ("backward_s", self.backward_s)]
        if self.weight_s is not None:
            self.weight_s = np.asarray(self.weight_s, dtype=np.float64)
            arrays.append(("weight_s", self.weight_s))
        for name, a in arrays:
            if a.ndim != 2 or a.shape != self.forward_s.shape:
                raise InputError(f"{name} has shape {a.shape}; every time array must be [virtual stages, "
                                 f"micro-batches] = {self.forward_s.shape}.", field=name,
                                 fix="pass one time per (virtual stage, micro-batch).")
            if (a < 0).any() or not np.isfinite(a).all():
                raise InputError(f"{name} has negative or non-finite times.", field=name, fix="times are >= 0 s.")
        n_virtual = self.forward_s.shape[0]
        self.placement = tuple(range(n_virtual)) if self.placement is None else tuple(int(d) for d in self.placement)
        if len(self.placement) != n_virtual or min(self.placement) < 0:
            raise InputError(f"placement has {len(self.placement)} entries for {n_virtual} virtual stages.",
                             field="placement", fix="give one device index (>= 0) per virtual stage.")
        if self.activation is None:
            per_device = np.bincount(self.placement)
            self.activation = np.array([1.0 / per_device[d] for d in self.placement])
        act = np.asarray(self.activation, dtype=np.float64)
        if act.ndim == 1:
            act = np.repeat(act[:, None], self.forward_s.shape[1], axis=1)
        if act.shape != self.forward_s.shape or (act < 0).any():
            raise InputError(f"activation has shape {act.shape}; give one size >= 0 per virtual stage or per "
                             f"(virtual stage, micro-batch) {self.forward_s.shape}.", field="activation",
                             fix="pass a [virtual stages] or [virtual stages, micro-batches] array.")
        self.activation = act
        if self.weight_pieces < 1:
            raise InputError(f"weight_pieces = {self.weight_pieces}.", field="weight_pieces", fix="use >= 1.")
        # per device: its first virtual stage; per virtual stage: what its later chunks on that device hold
        self.first_chunk = {d: self.placement.index(d) for d in set(self.placement)}
        self.later_activation = np.array([sum((act[u] for u in range(v + 1, n_virtual)
                                               if self.placement[u] == self.placement[v]), np.zeros(act.shape[1]))
                                          for v in range(n_virtual)])

    @property
    def virtual_stages(self) -> int:
        return self.forward_s.shape[0]

    @property
    def microbatches(self) -> int:
        return self.forward_s.shape[1]

    @property
    def devices(self) -> int:
        return max(self.placement) + 1

    @property
    def split_backward(self) -> bool:
        return self.weight_s is not None

    def link(self, a: int, b: int) -> Link:
        return self.links.get((a, b), self.default_link)

    def duration(self, item: Item) -> float:
        kind, v, j = item
        if kind == "F":
            return float(self.forward_s[v, j])
        if kind == "B":
            return float(self.backward_s[v, j])
        assert self.weight_s is not None
        return float(self.weight_s[v, j]) / self.weight_pieces

    def items(self, device: int) -> list[Item]:
        kinds = "FBW" if self.split_backward else "FB"
        return [(k, v, j) for v in range(self.virtual_stages) if self.placement[v] == device
                for j in range(self.microbatches) for k in kinds]


def uniform_stages(devices: int, microbatches: int, forward_s: float = 1.0, backward_s: float = 2.0,
                   weight_s: float | None = None, chunks: int = 1, v_shape: bool = False, **kw) -> Stages:
    """Every virtual stage costs the same. With ``chunks`` > 1 each device holds that many chunks, each taking
    1 / chunks of the stage times; ``v_shape`` places chunk 1 back down the devices (ZB-V, CrossPipe's Wave)
    instead of looping round again (interleaved, CrossPipe's Loop)."""
    if v_shape and chunks != 2:
        raise InputError("a V-shaped placement has exactly 2 chunks per device.", field="chunks", fix="use chunks=2.")
    n = devices * chunks
    shape = (n, microbatches)
    placement = [v % devices if not (v_shape and v >= devices) else 2 * devices - 1 - v for v in range(n)]
    return Stages(np.full(shape, forward_s / chunks), np.full(shape, backward_s / chunks),
                  None if weight_s is None else np.full(shape, weight_s / chunks), placement, **kw)


def cross_dc_links(devices: int, cuts: Sequence[int], link: Link) -> dict[tuple[int, int], Link]:
    """Both directions of every device pair that straddles a datacenter boundary; ``cuts`` lists the first
    device of each datacenter after the first (devices [0, cuts[0]) form DC 0, and so on)."""
    dc = np.searchsorted(np.asarray(sorted(cuts)), np.arange(devices), side="right")
    return {(a, b): link for a in range(devices) for b in range(devices) if dc[a] != dc[b]}


# ---------------------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SimState:
    """What a policy sees when a device falls idle."""

    stages: Stages
    now: float
    ready: list[set[Item]]                # per device: items whose inputs have arrived, not yet started
    held: np.ndarray                      # activation held per device
    reserved: np.ndarray                  # activation promised to admitted micro-batches' later chunks
    forwards_left: np.ndarray             # per device: forwards not yet started
    last_kind: list[str]                  # per device: kind of the last item started ("" before any)

    def admissible(self, device: int, item: Item, limit: float) -> bool:
        """Whether forward (v, .) fits in ``limit``: a micro-batch's first forward on a device also
        reserves what its later chunks there will hold, so admitted micro-batches can always finish their
        forward pass here (no memory deadlock on multi-chunk placements)."""
        st, (_, v, j) = self.stages, item
        if st.first_chunk[device] != v:
            return True                                         # its memory was reserved on admission
        need = st.activation[v, j] + st.later_activation[v, j]
        return self.held[device] + self.reserved[device] + need <= limit + 1e-9


Policy = Callable[[int, SimState], Item | None]


class FixedOrder:
    """A static schedule: each device runs its list of items in order, waiting for each one's inputs."""

    def __init__(self, orders: dict[int, list[Item]]):
        self.orders = orders
        self.next = dict.fromkeys(orders, 0)

    def __call__(self, device: int, state: SimState) -> Item | None:
        order, k = self.orders.get(device, []), self.next.get(device, 0)
        if k < len(order) and order[k] in state.ready[device]:
            self.next[device] = k + 1
            return order[k]
        return None


def simulate(st: Stages, policy: Policy | dict[int, list[Item]]) -> Schedule:
    """Play one iteration out: a device that falls idle asks ``policy`` for its next item (a dict of
    per-device orders is a static schedule). Raises ``InputError`` if the policy stalls with work left (an
    order that contradicts the dependencies, or a memory limit too small to make progress)."""
    if isinstance(policy, dict):
        _check_orders(st, policy)
        policy = FixedOrder(policy)
    n_dev, n_virtual, m = st.devices, st.virtual_stages, st.microbatches
    state = SimState(st, 0.0, [set() for _ in range(n_dev)], np.zeros(n_dev), np.zeros(n_dev),
                     np.bincount(st.placement, minlength=n_dev) * m, [""] * n_dev)
    for j in range(m):
        state.ready[st.placement[0]].add(("F", 0, j))
    w_left = {(v, j): st.weight_pieces for v in range(n_virtual) for j in range(m)}
    busy = [False] * n_dev
    link_free: dict[tuple[int, int], float] = {}
    input_op: dict[Item, str] = {}                              # op a ready item depends on
    placed: list[tuple[float, int, Op]] = []                    # (start, seq, op)
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    events: list[tuple[float, int, int, object]] = []           # (time, seq, 0=completion/1=arrival, payload)
    seq = 0
    total = n_virtual * m * (2 + (st.weight_pieces if st.split_backward else 0))
    completed = 0

    def record(op: Op, t0: float) -> None:
        nonlocal seq
        seq += 1
        placed.append((t0, seq, op))
        start[op.name], end[op.name] = t0, t0 + op.duration_s

    def push(t: float, kind: int, payload: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    def deliver(producer: str, item: Item, src: int, t: float, touched: set[int]) -> None:
        dst = st.placement[item[1]]
        if dst == src:
            input_op[item] = producer
            state.ready[dst].add(item)
            touched.add(dst)
            return
        link, tag = st.link(src, dst), f"{item[0]}{item[1] - 1 if item[0] == 'F' else item[1] + 1}.{item[2]}"
        serial = link.s_per_byte * st.message_bytes
        if serial > 0:
            t0 = max(t, link_free.get((src, dst), 0.0))
            link_free[(src, dst)] = t0 + serial
            record(Op(f"send-{tag}", serial, f"link{src}>{dst}", (producer,), "p2p"), t0)
            last = f"send-{tag}"
            if link.latency_s > 0:
                record(Op(f"lat-{tag}", link.latency_s, None, (last,), "latency"), t0 + serial)
                last = f"lat-{tag}"
        else:
            record(Op(f"send-{tag}", link.latency_s, None, (producer,), "p2p"), t)
            last = f"send-{tag}"
        input_op[item] = last
        push(end[last], 1, item)

    def poll(d: int) -> None:
        nonlocal seq
        if busy[d]:
            return
        item = policy(d, state)
        if item is None:
            return
        if item not in state.ready[d]:
            raise InputError(f"the policy chose {item} on device {d}, which is not ready.", field="policy",
                             fix="choose only items in state.ready[device].")
        kind, v, j = item
        name, act = f"{kind}{v}.{j}", 0.0
        if kind == "W":
            piece = st.weight_pieces - w_left[(v, j)]
            w_left[(v, j)] -= 1
            if st.weight_pieces > 1:
                name += f"/{piece}"
            if w_left[(v, j)] == 0:
                state.ready[d].discard(item)
                act = -float(st.activation[v, j])
        else:
            state.ready[d].discard(item)
            if kind == "F":
                act = float(st.activation[v, j])
                if st.first_chunk[d] == v:
                    state.reserved[d] += st.later_activation[v, j]
                else:
                    state.reserved[d] -= act
                state.held[d] += act
                state.forwards_left[d] -= 1
            elif not st.split_backward:
                act = -float(st.activation[v, j])
        deps = (input_op[item],) if item in input_op else ()
        op = Op(name, st.duration(item), f"stage{d}", deps, {"F": "forward", "B": "backward"}.get(kind, "weight-grad"),
                {"kind": kind, "vs": v, "mb": j, "act": act})
        record(op, state.now)
        busy[d] = True
        state.last_kind[d] = kind
        push(end[name], 0, (d, item, name, act))

    state.now = 0.0
    for d in range(n_dev):
        poll(d)
    while events:
        state.now = events[0][0]
        touched: set[int] = set()
        while events and events[0][0] <= state.now + 1e-12:
            t_event, _, kind, payload = heapq.heappop(events)
            state.now = max(state.now, t_event)                 # never start before an op that just ended
            if kind == 1:                                       # a message arrived
                item = payload                                  # type: ignore[assignment]
                d = st.placement[item[1]]                       # type: ignore[index]
                state.ready[d].add(item)                        # type: ignore[arg-type]
                touched.add(d)
                continue
            d, item, name, act = payload                        # type: ignore[misc]
            busy[d] = False
            completed += 1
            touched.add(d)
            if act < 0:
                state.held[d] += act
            k, v, j = item
            if k == "F":
                nxt: Item = ("F", v + 1, j) if v < n_virtual - 1 else ("B", v, j)
                deliver(name, nxt, d, end[name], touched)
            elif k == "B":
                if st.split_backward:
                    input_op[("W", v, j)] = name
                    state.ready[d].add(("W", v, j))
                if v > 0:
                    deliver(name, ("B", v - 1, j), d, end[name], touched)
        for d in sorted(touched):
            poll(d)
    if completed != total:
        stuck = {d: sorted(state.ready[d])[:3] for d in range(n_dev) if state.ready[d]}
        raise InputError(f"the schedule stalled with {total - completed} of {total} items left (ready: {stuck}).",
                         field="policy", fix="check the order against the dependencies, or raise the memory limit.")
    placed.sort(key=lambda x: (x[0], x[1]))
    return Schedule(ops={op.name: op for _, _, op in placed}, start=start, end=end)


def _check_orders(st: Stages, orders: dict[int, list[Item]]) -> None:
    for d in range(st.devices):
        want = sorted(st.items(d) + [("W", v, j) for (k, v, j) in st.items(d) if k == "W"] * (st.weight_pieces - 1))
        if sorted(orders.get(d, [])) != want:
            raise InputError(f"device {d}'s order does not list each of its items exactly once.", field="orders",
                             fix="list every (kind, virtual stage, micro-batch) placed on the device"
                                 + (f" (W {st.weight_pieces} times)" if st.weight_pieces > 1 else "") + ".")


def orders_of(sch: Schedule) -> dict[int, list[Item]]:
    """The per-device item orders a schedule ran (to freeze a greedy schedule into a static one)."""
    out: dict[int, list[Item]] = {}
    for name in sorted(sch.ops, key=lambda n: (sch.start[n], sch.end[n])):
        a = sch.ops[name].args
        if "kind" in a:
            out.setdefault(int(sch.ops[name].resource[5:]), []).append((a["kind"], a["vs"], a["mb"]))  # type: ignore[index]
    return out


# ---------------------------------------------------------------------------------------------------------
# Policies: static orders and the greedy list scheduler
# ---------------------------------------------------------------------------------------------------------


def one_f_one_b_order(stage: int, pp: int, microbatches: int) -> list[tuple[str, int]]:
    """1F1B's compute order on ``stage``: ("F", j) and ("B", j) items."""
    warmup = min(pp - stage - 1, microbatches)
    order = [("F", j) for j in range(warmup)]
    for j in range(microbatches - warmup):
        order += [("F", warmup + j), ("B", j)]
    return order + [("B", j) for j in range(microbatches - warmup, microbatches)]


def orders_1f1b(pp: int, microbatches: int) -> dict[int, list[Item]]:
    return {s: [(k, s, j) for k, j in one_f_one_b_order(s, pp, microbatches)] for s in range(pp)}


def interleaved_warmup(stage: int, pp: int, chunks: int, microbatches: int) -> int:
    """Megatron's warm-up forwards on ``stage`` of the interleaved schedule: (p - s - 1) x 2 + (v - 1) x p."""
    return min(chunks * microbatches, (pp - stage - 1) * 2 + (chunks - 1) * pp)


def interleaved_order(stage: int, pp: int, chunks: int, microbatches: int,
                      warmup: int | None = None) -> list[tuple[str, int, int]]:
    """Compute order on ``stage`` of Megatron's interleaved schedule: ("F" | "B", chunk, micro-batch).
    ``warmup`` replaces Megatron's count of forwards before the first backward (``interleaved_warmup``);
    the forward and backward sequences stay the same, only where they start to alternate moves."""
    if microbatches % pp:
        raise InputError(f"{microbatches} micro-batches is not a multiple of {pp} stages.", field="microbatches",
                         fix="the interleaved schedule needs micro-batches divisible by the pipeline size.")
    total = chunks * microbatches

    def item(k: int, forward: bool) -> tuple[str, int, int]:
        chunk = (k // pp) % chunks
        mb = (k // (pp * chunks)) * pp + k % pp
        return ("F", chunk, mb) if forward else ("B", chunks - 1 - chunk, mb)

    if warmup is None:
        warmup = interleaved_warmup(stage, pp, chunks, microbatches)
    if not 0 <= warmup <= total:
        raise InputError(f"warm-up of {warmup} forwards on stage {stage} out of {total}.", field="warmup",
                         fix=f"use 0 <= warm-up <= chunks x micro-batches = {total}.")
    order = [item(k, True) for k in range(warmup)]
    for k in range(total - warmup):
        order += [item(warmup + k, True), item(k, False)]
    return order + [item(k, False) for k in range(total - warmup, total)]


def orders_interleaved(pp: int, chunks: int, microbatches: int,
                       warmups: Sequence[int] | None = None) -> dict[int, list[Item]]:
    """Virtual stage c x p + s on device s (``uniform_stages(.., chunks=v)`` places them so); ``warmups[s]``
    overrides stage s's warm-up count (see ``interleaved_order``)."""
    return {s: [(k, c * pp + s, j) for k, c, j in
                interleaved_order(s, pp, chunks, microbatches, None if warmups is None else warmups[s])]
            for s in range(pp)}


class Greedy:
    """List scheduling: an idle device runs a ready B first (it is on the critical path), else the next
    forward that fits in ``memory_limit`` (per device, in micro-batch activations), else a W. With
    ``phases`` (CrossPipe's priorities, ATC'25 Alg. 1): once backwards have started, a device alternates F
    and B (after an F it prefers B, after a B it prefers F) and only falls back to W when neither can run;
    with no forwards left, B before W. Ties: lowest micro-batch, then the deepest virtual stage."""

    def __init__(self, memory_limit: float | Sequence[float], phases: bool = False):
        self.limit = memory_limit
        self.phases = phases

    def _limit(self, device: int) -> float:
        return float(self.limit if np.isscalar(self.limit) else self.limit[device])  # type: ignore[index]

    def __call__(self, device: int, state: SimState) -> Item | None:
        ready = state.ready[device]
        if not ready:
            return None
        limit = self._limit(device)
        bs, fs, ws = [], [], []
        for i in ready:
            (bs if i[0] == "B" else fs if i[0] == "F" else ws).append(i)
        fs = [i for i in fs if state.admissible(device, i, limit)]
        b = min(bs, key=lambda i: (i[2], -i[1])) if bs else None
        f = min(fs, key=lambda i: (i[2], -i[1])) if fs else None
        w = min(ws, key=lambda i: (i[2], -i[1])) if ws else None
        if self.phases and state.last_kind[device] != "F":
            return f or b or w
        return b or f or w


def orders_zb_v(pp: int, microbatches: int) -> dict[int, list[Item]]:
    """ZB-V's per-device orders (Qi et al., §6; the phases are in the module docstring), for the V placement
    of ``uniform_stages(pp, m, chunks=2, v_shape=True)``: device r holds virtual stages r and 2p - 1 - r."""
    if pp < 1 or microbatches < 1:
        raise InputError(f"{pp} devices and {microbatches} micro-batches.", field="microbatches",
                         fix="use at least one device and one micro-batch.")
    n = max(microbatches, 2 * pp - 1)                 # built for at least 2p - 1, the rest dropped below
    return {r: [i for i in _zb_v_device_order(r, pp, n) if i[2] < microbatches] for r in range(pp)}


def _zb_v_device_order(r: int, pp: int, n: int) -> list[Item]:
    """Device r's ZB-V order for n >= 2p - 1 micro-batches, phase by phase (module docstring)."""
    chunk = (r, 2 * pp - 1 - r)                      # virtual stage of chunk 0 and of chunk 1 on device r
    done = {k: [0, 0] for k in "FBW"}                # items of each kind issued so far, per chunk
    order: list[Item] = []

    def issue(*steps: tuple[str, int]) -> None:
        for kind, c in steps:
            order.append((kind, chunk[c], done[kind][c]))
            done[kind][c] += 1

    for _ in range(2 * (pp - r) - 1):                # warm-up: chunk-0 forwards ...
        issue(("F", 0))
    for _ in range(r):                               # ... then chunk-1 and chunk-0 forwards in turn ...
        issue(("F", 1), ("F", 0))
    for _ in range(pp - r):                          # ... then chunk 1's first micro-batches all the way
        issue(("F", 1), ("B", 1), ("W", 1))
    while done["F"][1] < done["F"][0] or done["F"][0] < n:        # steady state
        if done["F"][0] < n:
            issue(("F", 0))
        issue(("B", 0), ("W", 0), ("F", 1), ("B", 1), ("W", 1))
    for _ in range(r):                               # cool-down: both chunks' last backwards ...
        issue(("B", 0), ("B", 1))
    for _ in range(pp - r):                          # ... chunk 0's with its oldest W ...
        issue(("B", 0), ("W", 0))
    issue(*[("W", 1)] * (done["B"][1] - done["W"][1]))             # ... and the W's left
    issue(*[("W", 0)] * (done["B"][0] - done["W"][0]))
    assert all(done[k] == [n, n] for k in "FBW"), done
    return order


def orders_zb_h1(pp: int, microbatches: int, forward_s: float = 1.0, backward_s: float = 1.0,
                 weight_s: float = 1.0) -> dict[int, list[Item]]:
    """ZB-H1's per-device orders: the phase-priority greedy with p micro-batches in flight per stage, at
    zero communication cost, frozen (see the module docstring)."""
    st = uniform_stages(pp, microbatches, forward_s, backward_s, weight_s)
    return orders_of(simulate(st, Greedy(float(pp), phases=True)))


# ---------------------------------------------------------------------------------------------------------
# Memory, validation, bubbles
# ---------------------------------------------------------------------------------------------------------


def activation_peaks(sch: Schedule, activation_bytes: float | Sequence[float] | None = None) -> dict[str, float]:
    """Peak activation held per device. Each forward allocates at its start and the item that frees it
    (its W, or its B without a B/W split) releases at its end; sizes are those the schedule was simulated
    with, or ``activation_bytes`` (one number per forward, or one per virtual stage)."""
    events: dict[str, list[tuple[float, float]]] = {}
    for name, op in sch.ops.items():
        act = op.args.get("act", 0.0)
        if not act or op.resource is None:
            continue
        if activation_bytes is None:
            size = abs(act)
        else:
            size = float(activation_bytes if np.isscalar(activation_bytes)
                         else activation_bytes[op.args["vs"]])  # type: ignore[index]
        t = sch.start[name] if act > 0 else sch.end[name]
        events.setdefault(op.resource, []).append((t, size if act > 0 else -size))
    peaks = {}
    for resource, ev in events.items():
        level = peak = 0.0
        for _, delta in sorted(ev):                             # frees before allocations at a tie
            level += delta
            peak = max(peak, level)
        peaks[resource] = peak
    return peaks


def validate(sch: Schedule, memory_limit: float | None = None,
             activation_bytes: float | Sequence[float] | None = None, tol: float = 1e-9) -> list[str]:
    """Problems with a scheduled iteration (an empty list if none): an op starting before a dependency ends,
    two ops overlapping on one device or link, a backward without its forward, a weight gradient before its
    backward, or a device holding more than ``memory_limit`` of activations."""
    problems = []
    for name, op in sch.ops.items():
        for d in op.deps:
            if sch.start[name] < sch.end[d] - tol:
                problems.append(f"{name} starts before its dependency {d} ends")
        a = op.args
        if a.get("kind") in ("B", "W"):
            base = f"{a['vs']}.{a['mb']}"
            if f"F{base}" not in sch.ops:
                problems.append(f"{name} has no forward")
            elif a["kind"] == "W" and f"B{base}" in sch.ops and sch.start[name] < sch.end[f"B{base}"] - tol:
                problems.append(f"{name} runs before B{base} ends")
    by_res: dict[str, list[str]] = {}
    for name, op in sch.ops.items():
        if op.resource is not None:
            by_res.setdefault(op.resource, []).append(name)
    for resource, names in by_res.items():
        names.sort(key=lambda n: (sch.start[n], sch.end[n]))
        for a, b in zip(names, names[1:], strict=False):
            if sch.start[b] < sch.end[a] - tol:
                problems.append(f"{a} and {b} overlap on {resource}")
    if memory_limit is not None:
        for resource, peak in activation_peaks(sch, activation_bytes).items():
            if peak > memory_limit + tol:
                problems.append(f"{resource} holds {peak:g} of activations, above the limit {memory_limit:g}")
    return problems


def bubble_fraction(sch: Schedule) -> dict[str, float]:
    """Each device's idle share of the iteration (1 - busy / makespan); links are left out."""
    return {r: 1.0 - u for r, u in sch.utilisation().items() if r.startswith("stage")}


# ---------------------------------------------------------------------------------------------------------
# Shorthands over [stages, micro-batches] time arrays (one chunk per device unless said otherwise)
# ---------------------------------------------------------------------------------------------------------


def one_f_one_b_schedule(forward_s: np.ndarray, backward_s: np.ndarray, p2p_s: float = 0.0) -> Schedule:
    """1F1B; ``p2p_s``: the delay of every stage-to-stage transfer."""
    st = Stages(forward_s, backward_s, default_link=Link(latency_s=p2p_s))
    return simulate(st, orders_1f1b(st.devices, st.microbatches))


def one_f_one_b(forward_s: np.ndarray, backward_s: np.ndarray, p2p_s: float = 0.0) -> list[Op]:
    """The ops of ``one_f_one_b_schedule``, in an order ``core.timeline.schedule`` replays exactly."""
    return list(one_f_one_b_schedule(forward_s, backward_s, p2p_s).ops.values())


def interleaved_schedule(forward_s: np.ndarray, backward_s: np.ndarray, chunks: int, p2p_s: float = 0.0) -> Schedule:
    """Interleaved 1F1B; ``forward_s[s, j]`` is the *whole stage's* time (each chunk takes 1 / chunks)."""
    fwd, bwd = np.asarray(forward_s, dtype=np.float64), np.asarray(backward_s, dtype=np.float64)
    pp, m = fwd.shape
    st = Stages(np.tile(fwd / chunks, (chunks, 1)), np.tile(bwd / chunks, (chunks, 1)),
                placement=[v % pp for v in range(pp * chunks)], default_link=Link(latency_s=p2p_s))
    return simulate(st, orders_interleaved(pp, chunks, m))


def interleaved(forward_s: np.ndarray, backward_s: np.ndarray, chunks: int, p2p_s: float = 0.0) -> list[Op]:
    return list(interleaved_schedule(forward_s, backward_s, chunks, p2p_s).ops.values())


def zero_bubble_schedule(forward_s: np.ndarray, backward_input_s: np.ndarray, backward_weight_s: np.ndarray,
                         p2p_s: float = 0.0, memory_limit: Sequence[float] | None = None) -> Schedule:
    """B/W-split schedule by the greedy list scheduler within ``memory_limit`` (default p - s micro-batches
    on stage s, 1F1B's peak)."""
    st = Stages(forward_s, backward_input_s, backward_weight_s, default_link=Link(latency_s=p2p_s))
    pp = st.devices
    return simulate(st, Greedy(memory_limit if memory_limit is not None else [pp - s for s in range(pp)]))


def zero_bubble(forward_s: np.ndarray, backward_input_s: np.ndarray, backward_weight_s: np.ndarray,
                p2p_s: float = 0.0, memory_limit: Sequence[float] | None = None) -> list[Op]:
    return list(zero_bubble_schedule(forward_s, backward_input_s, backward_weight_s, p2p_s, memory_limit).ops.values())


# ---------------------------------------------------------------------------------------------------------
# A picture of a schedule
# ---------------------------------------------------------------------------------------------------------

KIND_COLOURS = {"forward": "#4C72B0", "backward": "#55A868", "weight-grad": "#DD8452", "p2p": "#8C8C8C",
                "recompute": "#C44E52", "swap": "#8172B3", "encoder": "#937860"}


def plot_gantt(ax, sch: Schedule, title: str = "", links: bool = True, label_mb: bool = True) -> None:
    """Draw ``sch`` on a matplotlib axis: one row per device (and per busy link), one box per op, coloured
    by category, labelled with its micro-batch."""
    rows = sorted({op.resource for op in sch.ops.values() if op.resource is not None
                   and (links or op.resource.startswith("stage"))},
                  key=lambda r: (not r.startswith("stage"), int("".join(c for c in r if c.isdigit()) or 0), r))
    y = {r: i for i, r in enumerate(rows)}
    for name, op in sch.ops.items():
        if op.resource not in y:
            continue
        s, e = sch.start[name], sch.end[name]
        ax.barh(y[op.resource], e - s, left=s, height=0.8, color=KIND_COLOURS.get(op.category, "#999999"),
                edgecolor="white", linewidth=0.4)
        if label_mb and "mb" in op.args and e - s > sch.makespan / 120:
            ax.text((s + e) / 2, y[op.resource], str(op.args["mb"]), ha="center", va="center", fontsize=5,
                    color="white")
    ax.set_yticks(range(len(rows)), [r.replace("stage", "dev ") for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, sch.makespan)
    ax.set_title(title, fontsize=8)
