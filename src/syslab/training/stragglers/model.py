"""The dependency model of one training step (§4), rebuilt from the recorded op order."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pandas as pd

from syslab.core.errors import InputError
from syslab.training.stragglers.trace import (
    AG,
    BRECV,
    BSEND,
    BWD,
    CLIP,
    DP_COMM,
    EMBEDDING_AR,
    FRECV,
    FSEND,
    FWD,
    GC,
    LAYERNORM_AR,
    OPTIMIZER,
    P2P,
    P2P_MATCH_EPS_S,
    RS,
    SEP_AR,
    Node,
)

# ---------------------------------------------------------------------------------------------------------
# The dependency model (§4): built from DP rank 0 of the first step, shared by all steps and DP ranks
# ---------------------------------------------------------------------------------------------------------

@dataclass
class DependencyModel:
    nodes: list[Node]
    deps: dict[Node, list[Node]]        # in-rank and compute<->comm dependencies
    groups: list[list[Node]]            # communication groups: members start together, end together
    dp_sync: set[Node]                  # groups that also synchronise across DP ranks

    def group_of(self) -> dict[Node, int]:
        return {n: g for g, members in enumerate(self.groups) for n in members}


def _sorted_ops(rows: pd.DataFrame) -> pd.DataFrame:
    """Observed order on a rank: by start time, ties by seq_id then op type (the artifact's order)."""
    return rows.sort_values(["start_ts", "seq_id", "optype"], kind="stable")


def _node(row: Any) -> Node:
    return (str(row.optype), int(row.seq_id), int(row.stage))


def chain_deps(deps: dict[Node, list[Node]], ops: list[Node], first_after: list[Node] | None = None) -> None:
    """ops[0] after ``first_after``, ops[i] after ops[i-1]."""
    last = list(first_after or [])
    for op in ops:
        deps.setdefault(op, []).extend(last)
        last = [op]


def _pair_p2p(mp: pd.DataFrame, pp: int, vpp: int, source: str) -> tuple[dict[Node, list[Node]],
                                                                          list[list[Node]], list[Node]]:
    """Match each PP send/recv with its compute op and with its peer on the neighbouring stage.

    A recv gates compute i and may start after compute i-1; a send follows its compute. Sends/recvs whose
    peer model chunk is outside the model (first/last chunk) or that fall outside the step's compute window
    are no-ops the profiler recorded but never launched: they form single-member groups.
    """
    delta = {(FWD, "send"): 1, (FWD, "recv"): -1, (BWD, "send"): -1, (BWD, "recv"): 1}
    peer_type = {FSEND: FRECV, FRECV: FSEND, BSEND: BRECV, BRECV: BSEND}
    peer_shift = {FSEND: 1, FRECV: -1, BSEND: -1, BRECV: 1}
    deps: dict[Node, list[Node]] = {}
    labelled: dict[tuple[Node, Node], list[Node]] = defaultdict(list)
    no_ops: list[Node] = []
    for stage in range(pp):
        rows = mp[mp.stage == stage]
        comm = _sorted_ops(rows[rows.optype.isin(P2P)])
        comp = _sorted_ops(rows[rows.optype.isin((FWD, BWD))])
        gmc_of = {(r.optype, int(r.seq_id)): int(r.gmc) for r in comp.itertuples()}
        match: dict[Node, tuple[str, Node]] = {}   # comm node -> ("send" | "recv", its compute op)
        noop: dict[Node, bool] = {_node(r): True for r in comm.itertuples()}
        for compute in (FWD, BWD):
            comp_t = comp[comp.optype == compute]
            if comp_t.empty:
                continue
            last_start, first_end = comp_t.start_ts.max(), comp_t.end_ts.min()
            for direction in ("send", "recv"):
                optype = f"{compute.split('-')[0]}-{direction}"
                ops = comm[comm.optype == optype]
                if direction == "recv":
                    in_window = ops.start_ts <= last_start + P2P_MATCH_EPS_S
                else:
                    in_window = ops.end_ts >= first_end - P2P_MATCH_EPS_S
                compute_id = 0
                if int(in_window.sum()) != len(comp_t):
                    n = int(in_window.sum())
                    if stage not in (0, pp - 1) or not (n == 0 or n + 1 == len(comp_t)):
                        raise InputError(f"stage {stage} has {n} {optype} ops for {len(comp_t)} {compute} ops in "
                                         "the first step of DP rank 0.", file=source, field="optype",
                                         fix="record every PP send/recv of the step.")
                    if direction == "recv" and n + 1 == len(comp_t):
                        compute_id = 1  # the first recv of stage 0 was never recorded
                for r, inside in zip(ops.itertuples(), in_window, strict=True):
                    if not inside:
                        continue
                    if (compute, compute_id) not in gmc_of:
                        raise InputError(f"no {compute} op with seq_id {compute_id} on stage {stage}.",
                                         file=source, field="seq_id", fix="number compute ops 0..n-1 per stage.")
                    peer_gmc = gmc_of[(compute, compute_id)] + delta[(compute, direction)]
                    node = _node(r)
                    noop[node] = not (0 <= peer_gmc < vpp * pp)
                    match[node] = (direction, (compute, compute_id, stage))
                    compute_id += 1
        # Pair the i-th launched op of each type with the i-th launched peer op on the neighbouring stage.
        for optype in P2P:
            valid = 0
            for r in comm[comm.optype == optype].itertuples():
                node = _node(r)
                if noop[node]:
                    no_ops.append(node)
                    continue
                me = (optype, valid, stage)
                peer = (peer_type[optype], valid, (stage + peer_shift[optype]) % pp)
                labelled[tuple(sorted((me, peer)))].append(node)
                valid += 1
        for node, (direction, compute) in match.items():
            if direction == "send":                         # compute -> send
                deps.setdefault(node, []).append(compute)
            else:                                           # compute[i-1] -> recv -> compute[i]
                deps.setdefault(compute, []).append(node)
                if compute[1] >= 1:
                    deps.setdefault(node, []).append((compute[0], compute[1] - 1, stage))
    groups = []
    for label, members in sorted(labelled.items()):
        if len(members) != 2:
            raise InputError(f"PP op {label[0]} has {len(members)} matching peer op(s), expected 1.", file=source,
                             field="optype", fix="each launched send needs the matching recv on the peer stage.")
        groups.append(members)
    return deps, groups, no_ops


def build_dependency_model(df: pd.DataFrame, dsp_size: int = 1, source: str = "<trace>") -> DependencyModel:
    """The dependency model of one step (§4), from DP rank 0 of the first step of ``df``."""
    mp = df[(df.dp_rank == 0) & (df.step == df.step.min())]
    pp = int(df.stage.max()) + 1
    dp = int(df.dp_rank.max()) + 1
    vpp = int(mp.mc.max()) + 1 if (mp.mc >= 0).any() else 1
    nodes = [_node(r) for r in mp.itertuples()]
    if len(set(nodes)) != len(nodes):
        raise InputError("two ops share (optype, seq_id, stage) in one step of DP rank 0.", file=source,
                         field="seq_id", fix="number repeated ops of a type 0, 1, 2, ... within a step.")
    present = set(nodes)

    deps, groups, no_ops = _pair_p2p(mp, pp, vpp, source)
    groups += [[n] for n in no_ops]
    for stage in range(pp):
        rows = mp[mp.stage == stage]
        comp = _sorted_ops(rows[rows.optype.isin((FWD, BWD))])
        chain_deps(deps, [_node(r) for r in comp.itertuples()])              # one compute stream
        comm = _sorted_ops(rows[rows.optype.isin(P2P)])
        for optype in P2P:                                               # one stream per p2p type
            chain_deps(deps, [_node(r) for r in comm[comm.optype == optype].itertuples()])
        # The first backward send/recv may start once the second-to-last warm-up forward has run.
        kinds = comp.optype.tolist()
        if BWD in kinds and kinds.index(BWD) >= 2:
            i = kinds.index(BWD)
            if kinds[i - 1] != FWD or kinds[i - 2] != FWD:
                raise InputError(f"stage {stage}: the two compute ops before the first backward are not forwards.",
                                 file=source, field="optype", fix="the trace must follow a 1F1B-style schedule.")
            before = _node(comp.iloc[i - 2])
            for optype in (BRECV, BSEND):
                if (optype, 0, stage) in present:
                    deps.setdefault((optype, 0, stage), []).append(before)

    use_dp = dp * dsp_size > 1
    overlapped_dp = bool((df.optype == SEP_AR).any())
    for stage in range(pp):
        rows = mp[mp.stage == stage]
        comp = _sorted_ops(rows[rows.optype.isin((FWD, BWD))])
        if use_dp:
            # DP collectives run on one stream; a chunk's first forward waits for its parameter all-gather.
            chain_deps(deps, [_node(r) for r in _sorted_ops(rows[rows.optype.isin((AG, RS))]).itertuples()])
            ags = rows[rows.optype == AG]
            done: set[int] = set()
            for i in sorted(ags.seq_id.unique(), reverse=True):
                ag = ags[ags.seq_id == i].iloc[0]
                if int(ag.mc) in done:
                    continue
                fwd = comp[(comp.mc == ag.mc) & (comp.optype == FWD)]
                if not fwd.empty:
                    deps.setdefault(_node(fwd.loc[fwd.start_ts.idxmin()]), []).append(_node(ag))
                done.add(int(ag.mc))
            if overlapped_dp:   # a chunk's grad reduce-scatter follows its last backward
                rss, done = rows[rows.optype == RS], set()
                for i in sorted(rss.seq_id.unique()):
                    rs = rss[rss.seq_id == i].iloc[0]
                    bwd = comp[(comp.mc == rs.mc) & (comp.optype == BWD)]
                    if int(rs.mc) not in done and not bwd.empty:
                        deps.setdefault(_node(rs), []).append(_node(bwd.loc[bwd.end_ts.idxmax()]))
                    done.add(int(rs.mc))
        # End of step: last compute -> gc -> layernorm AR -> embedding AR -> (grad RS) -> clip -> optimizer.
        last_compute = _node(comp.loc[comp.end_ts.idxmax()]) if not comp.empty else None
        gc = (GC, 0, stage)
        after = [last_compute] if last_compute else []
        if gc in present:
            deps.setdefault(gc, []).extend(after)
            after = [gc]
        n_rs = int(rows[rows.optype == RS].seq_id.max()) + 1 if (rows.optype == RS).any() else 0
        embedding = [(EMBEDDING_AR, 0, stage)] if stage in (0, pp - 1) else []
        if use_dp and overlapped_dp:
            if n_rs:
                after = [(RS, n_rs - 1, stage), *after]
            tail = [(LAYERNORM_AR, 0, stage), *embedding, (SEP_AR, 0, stage), (CLIP, 0, stage), (OPTIMIZER, 0, stage)]
        elif use_dp:
            tail = [(LAYERNORM_AR, 0, stage), *embedding, *[(RS, i, stage) for i in range(n_rs)], (CLIP, 0, stage),
                    (OPTIMIZER, 0, stage)]
        else:
            tail = [(LAYERNORM_AR, 0, stage), *embedding, (CLIP, 0, stage), (OPTIMIZER, 0, stage)]
        chain_deps(deps, [n for n in tail if n in present], after)

    if use_dp:
        groups += [[n] for n in nodes if n[0] in DP_COMM]
    groups.append([n for n in [(EMBEDDING_AR, 0, 0), (EMBEDDING_AR, 0, pp - 1)] if n in present][: 2 if pp > 1 else 1])
    groups.append([(CLIP, 0, s) for s in range(pp) if (CLIP, 0, s) in present])
    groups = [g for g in groups if g]
    in_group = {n for g in groups for n in g}
    dp_sync = {n for n in in_group if n[0] in (*DP_COMM, CLIP)}
    referenced = in_group | {u for v in deps.values() for u in v}
    unknown = sorted(referenced - present)
    if unknown:
        raise InputError(f"the dependency model refers to op(s) absent from the trace: {unknown[:3]}.",
                         file=source, field="seq_id", fix="record every op of the step on every stage.")
    deps = {n: list(dict.fromkeys(deps.get(n, []))) for n in nodes}  # every op is a node; drop repeats
    if not any(n[0] == OPTIMIZER for n in nodes):
        raise InputError("no optimizer op: the end of a step is undefined.", file=source, field="optype",
                         fix="record the optimizer op of each step.")
    return DependencyModel(nodes=nodes, deps=deps, groups=groups, dp_sync=dp_sync)
