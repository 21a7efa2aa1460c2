"""The trace as [op, copy] matrices and the vectorised max-plus simulator of a step (§4)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.training.stragglers.model import DependencyModel
from syslab.training.stragglers.trace import OPTIMIZER, Node

# ---------------------------------------------------------------------------------------------------------
# Trace tensor and the vectorised simulator
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TraceTensor:
    """The trace as [node, copy] matrices; copy k = step_index * dp + dp_rank; times relative to step start."""

    model: DependencyModel
    steps: np.ndarray
    dp: int
    start: np.ndarray
    end: np.ndarray
    rank: np.ndarray           # [node, dp]: the global rank that ran the op

    @property
    def n_steps(self) -> int:
        return len(self.steps)


def _node_ids(df: pd.DataFrame, nodes: list) -> np.ndarray:
    """Each row's index in ``nodes`` ((optype, seq_id, stage) triples), -1 where the row's op is not a node.
    Vectorised: the triple becomes one int64 key (op-type code, seq_id, stage in mixed radix) looked up by
    binary search, O(rows log nodes); a per-row tuple lookup took most of a whole analysis's time."""
    optypes = sorted({n[0] for n in nodes} | set(df.optype.unique()))
    op = pd.Categorical(df.optype, categories=optypes).codes.astype(np.int64)
    seq, stage = df.seq_id.to_numpy(np.int64), df.stage.to_numpy(np.int64)
    n_op = np.array([optypes.index(n[0]) for n in nodes], dtype=np.int64)
    n_seq = np.array([n[1] for n in nodes], dtype=np.int64)
    n_stage = np.array([n[2] for n in nodes], dtype=np.int64)
    lo_seq, lo_stage = min(seq.min(), n_seq.min()), min(stage.min(), n_stage.min())
    span_seq = max(seq.max(), n_seq.max()) - lo_seq + 1
    span_stage = max(stage.max(), n_stage.max()) - lo_stage + 1
    if len(optypes) * span_seq * span_stage >= 2**62:      # ids too sparse for one key: fall back to tuples
        index = {n: i for i, n in enumerate(nodes)}
        keys = zip(df.optype, df.seq_id, df.stage, strict=True)
        return np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(df))

    def key(o: np.ndarray, q: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (o * span_seq + (q - lo_seq)) * span_stage + (t - lo_stage)

    node_keys = key(n_op, n_seq, n_stage)
    order = np.argsort(node_keys, kind="stable")
    sorted_keys = node_keys[order]
    row_keys = key(op, seq, stage)
    pos = np.minimum(np.searchsorted(sorted_keys, row_keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == row_keys, order[pos], -1)


def to_tensor(df: pd.DataFrame, model: DependencyModel, source: str = "<trace>") -> TraceTensor:
    steps = np.sort(df.step.unique())
    dp = int(df.dp_rank.max()) + 1
    n, k_total = len(model.nodes), len(steps) * dp
    node_id = _node_ids(df, model.nodes)
    if (node_id < 0).any():
        bad = df.iloc[int(np.argmax(node_id < 0))]
        raise InputError(f"op ({bad.optype}, seq_id {bad.seq_id}, stage {bad.stage}) at step {bad.step}, dp_rank "
                         f"{bad.dp_rank} is not in the schedule of step {steps[0]}, dp_rank 0.", file=source,
                         field="seq_id", fix="every step and DP rank must run the same ops.")
    k = np.searchsorted(steps, df.step.to_numpy()) * dp + df.dp_rank.to_numpy()
    flat = node_id * k_total + k
    counts = np.bincount(flat, minlength=n * k_total)
    if counts.max() > 1 or counts.min() < 1:
        where = int(np.argmax(counts != 1))
        node, kk = model.nodes[where // k_total], where % k_total
        raise InputError(f"op {node} appears {counts[where]} times at step {steps[kk // dp]}, dp_rank {kk % dp}.",
                         file=source, field="step", fix="every step and DP rank must run each op exactly once.")
    step_start = df.groupby("step").start_ts.min()
    rel = df.start_ts.to_numpy() - step_start.loc[df.step].to_numpy()
    start = np.empty(n * k_total)
    end = np.empty(n * k_total)
    start[flat] = rel
    end[flat] = rel + df.duration.to_numpy()
    rank = np.zeros(n * k_total, dtype=np.int64)
    rank[flat] = df["rank"].to_numpy()
    return TraceTensor(model=model, steps=steps, dp=dp, start=start.reshape(n, k_total),
                       end=end.reshape(n, k_total), rank=rank.reshape(n, k_total)[:, :dp])


class Simulator:
    """Replays a step in topological order (§4). Compute ops end at start + duration; a communication group
    starts when its last member starts (and, for DP collectives, the last DP rank) and each member ends at
    that time + its transfer duration. All steps and DP ranks are simulated at once."""

    def __init__(self, model: DependencyModel, n_steps: int, dp: int) -> None:
        self.model, self.n_steps, self.dp = model, n_steps, dp
        index = {n: i for i, n in enumerate(model.nodes)}
        gid = model.group_of()
        unit: dict[Node, int] = {}
        units: list[list[int]] = []
        for g in model.groups:
            units.append([index[m] for m in g])
            for m in g:
                unit[m] = len(units) - 1
        for n in model.nodes:
            if n not in gid:
                unit[n] = len(units)
                units.append([index[n]])
        # Kahn's algorithm over units (a communication group is one unit): detects cycles, fixes an order.
        succ: list[set[int]] = [set() for _ in units]
        indeg = [0] * len(units)
        for v, us in model.deps.items():
            for u in us:
                a, b = unit[u], unit[v]
                if a != b and b not in succ[a]:
                    succ[a].add(b)
                    indeg[b] += 1
        queue = deque(i for i in range(len(units)) if indeg[i] == 0)
        order = []
        while queue:
            a = queue.popleft()
            order.append(a)
            for b in sorted(succ[a]):
                indeg[b] -= 1
                if indeg[b] == 0:
                    queue.append(b)
        if len(order) != len(units):
            raise InputError("the ops' observed order implies a dependency cycle.", field="start_ts",
                             fix="the trace must follow a pipeline schedule syslab understands (1F1B, interleaved).")
        self.plan = []
        for a in order:
            members = np.array(units[a])
            deps = [np.array([index[u] for u in model.deps[model.nodes[m]]], dtype=np.int64) for m in members]
            is_comm = model.nodes[members[0]] in gid
            sync = is_comm and any(model.nodes[m] in model.dp_sync for m in members)
            self.plan.append((members, deps, is_comm, sync))
        self.optimizers = np.array([index[n] for n in model.nodes if n[0] == OPTIMIZER])

    def run(self, duration: np.ndarray, transfer: np.ndarray, delay: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Start and end times [node, copy] given per-op durations, transfer durations and launch delays."""
        start = np.empty_like(duration)
        end = np.empty_like(duration)
        for members, deps, is_comm, sync in self.plan:
            for m, d in zip(members, deps, strict=True):
                if len(d) == 0:
                    s = np.zeros(duration.shape[1])
                elif len(d) == 1:
                    s = end[d[0]].copy()
                else:
                    s = end[d].max(axis=0)
                start[m] = s if delay is None else s + delay[m]
            if not is_comm:
                end[members[0]] = start[members[0]] + duration[members[0]]
                continue
            go = start[members].max(axis=0)
            if sync:  # a DP collective: every DP rank of the step waits for the last one
                go = np.repeat(go.reshape(self.n_steps, self.dp).max(axis=1), self.dp)
            end[members] = go + transfer[members]
        return start, end

    def step_time(self, end: np.ndarray) -> np.ndarray:
        """Per step: the last optimizer end over all DP ranks (steps start at 0)."""
        return end[self.optimizers].reshape(len(self.optimizers), self.n_steps, self.dp).max(axis=(0, 2))

    def span(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Per step: last end minus first start over every op of every rank."""
        shape = (start.shape[0], self.n_steps, self.dp)
        return end.reshape(shape).max(axis=(0, 2)) - start.reshape(shape).min(axis=(0, 2))
