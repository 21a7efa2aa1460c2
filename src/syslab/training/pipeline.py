"""Pipeline-parallel schedules as op DAGs on ``core.timeline`` (shared by the training systems).

1F1B (PipeDream-Flush / Megatron-LM's non-interleaved schedule; Narayanan et al., SC'21, §2.2): stage s of p
runs min(p - s - 1, m) warm-up forwards, then alternates one forward and one backward, then drains the
remaining backwards. Micro-batch j's forward on stage s waits for its forward on stage s - 1; its backward
waits for its backward on stage s + 1 (the last stage: for its own forward). Scheduling is O(p x m).

Interleaved 1F1B (Megatron-LM's virtual pipeline, same paper, §2.2.2): each stage holds ``v`` model chunks,
virtual stage ``c x p + s`` being chunk c on stage s; forwards walk the chunks in groups of p micro-batches,
with (p - s - 1) x 2 + (v - 1) x p warm-up forwards; its bubble is (p - 1) / (v m) of the ideal time rather
than (p - 1) / m.

ZB-H1-style zero-bubble schedule (Qi et al., ICLR'24, "Zero Bubble Pipeline Parallelism"): the backward is
split into B (gradient of the input, on the critical path) and W (gradient of the weights, which nothing
downstream waits for). ``zero_bubble`` builds it by list scheduling, our construction in the spirit of the
paper's H1: whenever a stage is free it runs a ready B first, else a ready F if fewer than p - s micro-batches
hold activations on it (1F1B's memory bound, as H1 keeps), else a pending W, so the W's fill what would be
bubbles. At uniform unit times (F = B = W) this greedy leaves 2 (p - 1) units of bubble per stage, between
1F1B's 3 (p - 1) and the paper's handcrafted H1, (p - 1) (F + B - W) = p - 1: it spends W's early that H1
keeps for the cool-down. (H1's exact orders, ZB-V and the automatic schedules are not here yet.)

``activation_peaks`` accounts activation memory per stage (a forward holds its micro-batch's activations until
the matching backward), ``validate`` checks a scheduled iteration (every op after its dependencies, one op at
a time per stage, memory within a limit), and ``bubble_fraction`` reports each stage's idle share.
"""

from __future__ import annotations

import numpy as np

from syslab.core.errors import InputError
from syslab.core.timeline import Op, Schedule, schedule


def one_f_one_b_order(stage: int, pp: int, microbatches: int) -> list[tuple[str, int]]:
    """Compute order on ``stage``: ("F", j) and ("B", j) items."""
    warmup = min(pp - stage - 1, microbatches)
    order = [("F", j) for j in range(warmup)]
    for j in range(microbatches - warmup):
        order += [("F", warmup + j), ("B", j)]
    return order + [("B", j) for j in range(microbatches - warmup, microbatches)]


def one_f_one_b(forward_s: np.ndarray, backward_s: np.ndarray, p2p_s: float = 0.0) -> list[Op]:
    """Ops of one 1F1B iteration. ``forward_s[s, j]`` / ``backward_s[s, j]``: compute time of micro-batch j on
    stage s; ``p2p_s``: activation/gradient transfer between neighbouring stages (a pure delay)."""
    fwd, bwd = np.asarray(forward_s, dtype=np.float64), np.asarray(backward_s, dtype=np.float64)
    if fwd.ndim != 2 or fwd.shape != bwd.shape:
        raise InputError(f"forward {fwd.shape} and backward {bwd.shape} must both be [stages, micro-batches].",
                         field="forward_s", fix="pass one time per (stage, micro-batch).")
    pp, m = fwd.shape
    ops: list[Op] = []
    for s in range(pp):
        for kind, j in one_f_one_b_order(s, pp, m):
            if kind == "F":
                deps = (f"send-F{s - 1}.{j}",) if s > 0 else ()
                ops.append(Op(f"F{s}.{j}", float(fwd[s, j]), f"stage{s}", deps, "forward"))
                if s < pp - 1:
                    ops.append(Op(f"send-F{s}.{j}", p2p_s, None, (f"F{s}.{j}",), "p2p"))
            else:
                deps = (f"send-B{s + 1}.{j}",) if s < pp - 1 else (f"F{s}.{j}",)
                ops.append(Op(f"B{s}.{j}", float(bwd[s, j]), f"stage{s}", deps, "backward"))
                if s > 0:
                    ops.append(Op(f"send-B{s}.{j}", p2p_s, None, (f"B{s}.{j}",), "p2p"))
    return ops


def one_f_one_b_schedule(forward_s: np.ndarray, backward_s: np.ndarray, p2p_s: float = 0.0) -> Schedule:
    return schedule(one_f_one_b(forward_s, backward_s, p2p_s))


# ---------------------------------------------------------------------------------------------------------
# Interleaved 1F1B
# ---------------------------------------------------------------------------------------------------------


def interleaved_order(stage: int, pp: int, chunks: int, microbatches: int) -> list[tuple[str, int, int]]:
    """Compute order on ``stage`` of Megatron's interleaved schedule: ("F" | "B", chunk, micro-batch)."""
    if microbatches % pp:
        raise InputError(f"{microbatches} micro-batches is not a multiple of {pp} stages.", field="microbatches",
                         fix="the interleaved schedule needs micro-batches divisible by the pipeline size.")
    total = chunks * microbatches

    def item(k: int, forward: bool) -> tuple[str, int, int]:
        chunk = (k // pp) % chunks
        mb = (k // (pp * chunks)) * pp + k % pp
        return ("F", chunk, mb) if forward else ("B", chunks - 1 - chunk, mb)

    warmup = min(total, (pp - stage - 1) * 2 + (chunks - 1) * pp)
    order = [item(k, True) for k in range(warmup)]
    for k in range(total - warmup):
        order += [item(warmup + k, True), item(k, False)]
    return order + [item(k, False) for k in range(total - warmup, total)]


def interleaved(forward_s: np.ndarray, backward_s: np.ndarray, chunks: int, p2p_s: float = 0.0) -> list[Op]:
    """Ops of one interleaved-1F1B iteration. ``forward_s[s, j]`` / ``backward_s[s, j]``: the *whole stage's*
    time for micro-batch j (each chunk takes 1 / ``chunks`` of it)."""
    fwd, bwd = np.asarray(forward_s, dtype=np.float64), np.asarray(backward_s, dtype=np.float64)
    pp, m = fwd.shape
    last = pp * chunks - 1
    ops: list[Op] = []
    for s in range(pp):
        for kind, c, j in interleaved_order(s, pp, chunks, m):
            vs = c * pp + s                                     # the virtual stage
            if kind == "F":
                deps = (f"send-F{vs - 1}.{j}",) if vs > 0 else ()
                ops.append(Op(f"F{vs}.{j}", float(fwd[s, j]) / chunks, f"stage{s}", deps, "forward",
                              {"stage": s, "chunk": c, "mb": j}))
                if vs < last:
                    ops.append(Op(f"send-F{vs}.{j}", p2p_s, None, (f"F{vs}.{j}",), "p2p"))
            else:
                deps = (f"send-B{vs + 1}.{j}",) if vs < last else (f"F{vs}.{j}",)
                ops.append(Op(f"B{vs}.{j}", float(bwd[s, j]) / chunks, f"stage{s}", deps, "backward",
                              {"stage": s, "chunk": c, "mb": j}))
                if vs > 0:
                    ops.append(Op(f"send-B{vs}.{j}", p2p_s, None, (f"B{vs}.{j}",), "p2p"))
    return ops


def interleaved_schedule(forward_s: np.ndarray, backward_s: np.ndarray, chunks: int, p2p_s: float = 0.0) -> Schedule:
    return schedule(interleaved(forward_s, backward_s, chunks, p2p_s))


# ---------------------------------------------------------------------------------------------------------
# Memory, validation, bubbles
# ---------------------------------------------------------------------------------------------------------


def _key(name: str) -> tuple[str, str] | None:
    """("F" | "B" | "W", "<virtual stage>.<micro-batch>") for compute ops, None for transfers."""
    if name[0] in "FBW" and name[1:2].isdigit():
        return name[0], name[1:]
    return None


def activation_peaks(sch: Schedule, activation_bytes: float | dict[str, float] = 1.0) -> dict[str, float]:
    """Peak activation memory per stage: each forward adds its micro-batch's activations (``activation_bytes``
    per forward op, or per op name) and the matching backward frees them at its end (with a B/W split, the
    W frees them: the weight gradient still needs the saved inputs)."""
    events: dict[str, list[tuple[float, float]]] = {}
    for name, op in sch.ops.items():
        k = _key(name)
        if k is None or op.resource is None:
            continue
        size = activation_bytes.get("F" + k[1], 0.0) if isinstance(activation_bytes, dict) else activation_bytes
        if k[0] == "F":
            events.setdefault(op.resource, []).append((sch.start[name], +size))
        elif k[0] == "W" or (k[0] == "B" and f"W{k[1]}" not in sch.ops):
            events.setdefault(op.resource, []).append((sch.end[name], -size))
    peaks = {}
    for resource, ev in events.items():
        level = peak = 0.0
        for _, delta in sorted(ev, key=lambda e: (e[0], e[1])):       # frees before allocations at a tie
            level += delta
            peak = max(peak, level)
        peaks[resource] = peak
    return peaks


def validate(sch: Schedule, memory_limit: float | None = None, activation_bytes: float = 1.0,
             tol: float = 1e-9) -> list[str]:
    """Problems with a scheduled iteration (an empty list if none): an op starting before a dependency ends,
    two ops overlapping on one stage, a backward without its forward, or a stage over ``memory_limit``."""
    problems = []
    for name, op in sch.ops.items():
        for d in op.deps:
            if sch.start[name] < sch.end[d] - tol:
                problems.append(f"{name} starts before its dependency {d} ends")
        k = _key(name)
        if k is not None and k[0] == "B" and f"F{k[1]}" not in sch.ops:
            problems.append(f"{name} has no forward")
    by_res: dict[str, list[str]] = {}
    for name, op in sch.ops.items():
        if op.resource is not None:
            by_res.setdefault(op.resource, []).append(name)
    for resource, names in by_res.items():
        names.sort(key=lambda n: sch.start[n])
        for a, b in zip(names, names[1:], strict=False):
            if sch.start[b] < sch.end[a] - tol:
                problems.append(f"{a} and {b} overlap on {resource}")
    if memory_limit is not None:
        for resource, peak in activation_peaks(sch, activation_bytes).items():
            if peak > memory_limit + tol:
                problems.append(f"{resource} holds {peak:g} of activations, above the limit {memory_limit:g}")
    return problems


def bubble_fraction(sch: Schedule) -> dict[str, float]:
    """Each stage's idle share of the iteration (1 - busy / makespan)."""
    return {r: 1.0 - u for r, u in sch.utilisation().items()}


# ---------------------------------------------------------------------------------------------------------
# Zero bubble (B / W split), H1-style
# ---------------------------------------------------------------------------------------------------------


def zero_bubble(forward_s: np.ndarray, backward_input_s: np.ndarray, backward_weight_s: np.ndarray,
                p2p_s: float = 0.0, memory_limit: np.ndarray | None = None) -> list[Op]:
    """Ops of one iteration with the backward split into B (``backward_input_s``) and W
    (``backward_weight_s``), in per-stage orders found by list scheduling (see the module docstring).
    ``memory_limit[s]``: micro-batches whose activations stage s may hold (default p - s, as 1F1B). Cost:
    O(p x m x log(p m)) events."""
    import heapq

    f, bi, bw = (np.asarray(a, dtype=np.float64) for a in (forward_s, backward_input_s, backward_weight_s))
    pp, m = f.shape
    limit = np.asarray(memory_limit if memory_limit is not None else [pp - s for s in range(pp)])
    ready_f = {0: set(range(m))} | {s: set() for s in range(1, pp)}     # forwards whose input has arrived
    ready_b: dict[int, set[int]] = {s: set() for s in range(pp)}
    pending_w: dict[int, list[int]] = {s: [] for s in range(pp)}
    next_f = [0] * pp                                                   # forwards run in micro-batch order
    held = [0] * pp                                                     # micro-batches holding activations
    free_at = [0.0] * pp
    orders: dict[int, list[tuple[str, int]]] = {s: [] for s in range(pp)}
    arrivals: list[tuple[float, int, str, int, int]] = []               # (time, seq, kind, stage, mb)
    seq = 0
    done = 0
    now = 0.0
    total = 3 * pp * m

    def pick(s: int) -> tuple[str, int] | None:
        if ready_b[s]:
            return "B", min(ready_b[s])
        j = next_f[s]
        if j < m and j in ready_f[s] and held[s] < limit[s]:
            return "F", j
        if pending_w[s]:
            return "W", pending_w[s][0]
        return None

    busy_until: list[tuple[float, int]] = []                            # (finish time, stage) of running ops
    running: dict[int, tuple[str, int]] = {}
    while done < total:
        for s in range(pp):
            if s in running or free_at[s] > now:
                continue
            choice = pick(s)
            if choice is None:
                continue
            kind, j = choice
            dur = {"F": f, "B": bi, "W": bw}[kind][s, j]
            if kind == "F":
                ready_f[s].discard(j)
                next_f[s] += 1
                held[s] += 1
            elif kind == "B":
                ready_b[s].discard(j)
            else:
                pending_w[s].pop(0)
            running[s] = choice
            free_at[s] = now + dur
            orders[s].append(choice)
            heapq.heappush(busy_until, (now + dur, s))
        t, s = heapq.heappop(busy_until)
        now = t
        kind, j = running.pop(s)
        done += 1
        if kind == "F":
            if s < pp - 1:
                seq += 1
                heapq.heappush(arrivals, (now + p2p_s, seq, "F", s + 1, j))
            else:
                ready_b[s].add(j)
        elif kind == "B":
            pending_w[s].append(j)
            if s > 0:
                seq += 1
                heapq.heappush(arrivals, (now + p2p_s, seq, "B", s - 1, j))
        else:
            held[s] -= 1                                               # W frees the micro-batch's activations
        while arrivals and arrivals[0][0] <= now + 1e-15:
            _, _, k, st, mb = heapq.heappop(arrivals)
            (ready_f if k == "F" else ready_b)[st].add(mb)
        if not busy_until and arrivals:                                 # idle until the next transfer lands
            now = arrivals[0][0]
            while arrivals and arrivals[0][0] <= now + 1e-15:
                _, _, k, st, mb = heapq.heappop(arrivals)
                (ready_f if k == "F" else ready_b)[st].add(mb)
    ops: list[Op] = []
    for s in range(pp):
        for kind, j in orders[s]:
            if kind == "F":
                deps = (f"send-F{s - 1}.{j}",) if s > 0 else ()
                ops.append(Op(f"F{s}.{j}", float(f[s, j]), f"stage{s}", deps, "forward"))
                if s < pp - 1:
                    ops.append(Op(f"send-F{s}.{j}", p2p_s, None, (f"F{s}.{j}",), "p2p"))
            elif kind == "B":
                deps = (f"send-B{s + 1}.{j}",) if s < pp - 1 else (f"F{s}.{j}",)
                ops.append(Op(f"B{s}.{j}", float(bi[s, j]), f"stage{s}", deps, "backward"))
                if s > 0:
                    ops.append(Op(f"send-B{s}.{j}", p2p_s, None, (f"B{s}.{j}",), "p2p"))
            else:
                ops.append(Op(f"W{s}.{j}", float(bw[s, j]), f"stage{s}", (f"B{s}.{j}",), "weight-grad"))
    return ops


def zero_bubble_schedule(forward_s: np.ndarray, backward_input_s: np.ndarray, backward_weight_s: np.ndarray,
                         p2p_s: float = 0.0, memory_limit: np.ndarray | None = None) -> Schedule:
    return schedule(zero_bubble(forward_s, backward_input_s, backward_weight_s, p2p_s, memory_limit))
