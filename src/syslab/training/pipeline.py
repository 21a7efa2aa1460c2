"""Pipeline-parallel schedules as op DAGs on ``core.timeline`` (shared by the training systems).

1F1B (PipeDream-Flush / Megatron-LM's non-interleaved schedule; Narayanan et al., SC'21, §2.2): stage s of p
runs min(p - s - 1, m) warm-up forwards, then alternates one forward and one backward, then drains the
remaining backwards. Micro-batch j's forward on stage s waits for its forward on stage s - 1; its backward
waits for its backward on stage s + 1 (the last stage: for its own forward). Scheduling is O(p x m).
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
