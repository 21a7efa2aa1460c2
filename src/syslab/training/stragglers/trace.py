"""The trace schema, op types and job metadata of the stragglers analysis, with input validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.core.inputs import Column, number, read_parquet, read_yaml

# ---------------------------------------------------------------------------------------------------------
# The trace: schema, op types, job metadata
# ---------------------------------------------------------------------------------------------------------

TRACE_COLUMNS = ("dp_rank", "stage", "rank", "step", "optype", "start_ts", "duration", "seq_id", "mc", "gmc",
                 "mb_id")
META_SIZES = ("dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")

FWD, BWD = "forward-compute", "backward-compute"
FSEND, FRECV, BSEND, BRECV = "forward-send", "forward-recv", "backward-send", "backward-recv"
AG, RS, SEP_AR = "params-all-gather", "grads-reduce-scatter", "separate-grads-all-reduce"
LAYERNORM_AR, EMBEDDING_AR = "layernorm-grads-all-reduce", "embedding-grads-all-reduce"
CLIP, OPTIMIZER, GC = "optimizer-clip-main-grad", "optimizer", "gc"
P2P = (FSEND, FRECV, BSEND, BRECV)
DP_COMM = (AG, RS, SEP_AR)
KNOWN_OPTYPES = (FWD, BWD, *P2P, *DP_COMM, LAYERNORM_AR, EMBEDDING_AR, CLIP, OPTIMIZER, GC)
# Ops whose ideal value is the median (communication, robust to stalls); the rest take the mean (§4).
COMM_OPTYPES = frozenset((*P2P, *DP_COMM, LAYERNORM_AR, EMBEDDING_AR, CLIP))
# Attribution merges the four PP point-to-point types into two groups, as the paper's figures do.
ATTRIBUTION_GROUP = {FSEND: "forward-pp-comm", FRECV: "forward-pp-comm",
                     BSEND: "backward-pp-comm", BRECV: "backward-pp-comm"}

CLOCK_EPS_S = 1e-2          # negative gaps above -10 ms are clock skew and kept; below are clamped to 0
P2P_MATCH_EPS_S = 5e-5      # tolerance when matching a send/recv to its compute op
DECOMPOSE_THRESHOLD = 1.03  # attribute only jobs with S >= 1.03 (artifact default)
WORKER_TOP_PERCENT = 3      # M_W idealises the top 3% of workers (ceiling division)


@dataclass(frozen=True)
class JobMeta:
    """Parallel layout of the traced job (the artifact's ``meta-*.yaml``)."""

    trial_name: str
    dp_size: int
    pp_size: int
    tp_size: int = 1
    dsp_size: int = 1
    vpp_size: int = 1
    world_size: int = 0
    run_id: int = 0


MAX_WORLD = 1 << 20   # GPUs: a million, beyond any recorded job; bounds the (stage, DP rank) grids the analysis builds


def load_meta(path: str | Path) -> JobMeta:
    """Read and validate a job-metadata YAML; raise InputError naming the field at fault."""
    path = Path(path)
    raw = read_yaml(path, fix="pass the job's metadata YAML with --meta: `key: value` lines (dp_size, pp_size, ...).")
    return meta_from_dict(raw, source=path)


def meta_from_dict(raw: dict[str, Any], source: str | Path = "<meta>") -> JobMeta:
    for required in ("dp_size", "pp_size"):
        if required not in raw:
            raise InputError("missing.", file=source, field=required,
                             fix=f"add `{required}: N`, the job's {required[:2].upper()} degree.")
    sizes = {}
    for key in META_SIZES:
        value = raw.get(key, 1 if key != "world_size" else None)
        if key == "world_size" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"must be a positive integer, got {value!r}.", file=source, field=key,
                             fix=f"set `{key}` to the job's degree, e.g. `{key}: 1`.")
        if value > MAX_WORLD:
            raise InputError(f"{value} is more than {MAX_WORLD:,} GPUs.", file=source, field=key,
                             fix=f"set `{key}` to the job's degree, e.g. `{key}: 1`.")
        sizes[key] = value
    product = sizes["dp_size"] * sizes["pp_size"] * sizes["tp_size"] * sizes["dsp_size"]
    world = sizes.get("world_size", product)
    if world != product:
        raise InputError(f"world_size={world} but dp*pp*tp*dsp={product}.", file=source, field="world_size",
                         fix="make world_size the product of the four degrees.")
    if product > MAX_WORLD:
        raise InputError(f"dp*pp*tp*dsp={product:,} GPUs, more than {MAX_WORLD:,}.", file=source, field="world_size",
                         fix="pass the degrees of the job that recorded the trace.")
    trial_name = raw.get("trial_name", Path(str(source)).stem)
    if not isinstance(trial_name, str | int | float) or isinstance(trial_name, bool):
        raise InputError(f"must be a name, got {type(trial_name).__name__}.", file=source, field="trial_name",
                         fix="write `trial_name: my-job`.")
    run_id = raw.get("run_id", 0) or 0
    if isinstance(run_id, str) and run_id.strip().lstrip("-").isdigit():
        run_id = int(run_id)
    run_id = number(run_id, field="run_id", file=source, integer=True, fix="write `run_id: N`, an integer.")
    return JobMeta(trial_name=str(trial_name), dp_size=sizes["dp_size"],
                   pp_size=sizes["pp_size"], tp_size=sizes["tp_size"], dsp_size=sizes["dsp_size"],
                   vpp_size=sizes["vpp_size"], world_size=world, run_id=run_id)


def load_trace(path: str | Path) -> pd.DataFrame:
    """Read a parquet trace and validate its schema; raise InputError naming the file and field."""
    # ids index the analysis's arrays: below 2**31; times are finite seconds (validate_trace checks the rest)
    columns = {c: Column("str") if c == "optype" else Column("float") if c in ("start_ts", "duration")
               else Column("int", max=2**31) for c in TRACE_COLUMNS}
    df = read_parquet(path, columns=columns, fix="write the trace with DataFrame.to_parquet(), one row per op with "
                      f"columns {', '.join(TRACE_COLUMNS)}.", min_rows=0)
    return validate_trace(df, source=path)


def validate_trace(df: pd.DataFrame, source: str | Path = "<trace>") -> pd.DataFrame:
    """Check columns and values, return a copy with plain dtypes (str optype, float64 times)."""
    missing = [c for c in TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}.", file=source, field=missing[0],
                         fix=f"a trace needs one row per op with columns {', '.join(TRACE_COLUMNS)}.")
    if df.empty:
        raise InputError("the trace has no rows.", file=source, fix="record at least one full step.")
    out = pd.DataFrame({c: df[c] for c in TRACE_COLUMNS})
    out["optype"] = out["optype"].astype(str)
    unknown = sorted(set(out["optype"].unique()) - set(KNOWN_OPTYPES))
    if unknown:
        raise InputError(f"unknown op type(s) {unknown}.", file=source, field="optype",
                         fix=f"use the artifact's op types: {', '.join(KNOWN_OPTYPES)}.")
    for col in ("dp_rank", "stage", "rank", "step", "seq_id", "mc", "gmc", "mb_id"):
        if out[col].isna().any():
            raise InputError("has missing values.", file=source, field=col, fix="fill every row's value.")
        out[col] = out[col].astype(np.int64)
    for col in ("start_ts", "duration"):
        values = out[col].astype(np.float64)
        if not np.isfinite(values).all():
            raise InputError("has NaN or infinite values.", file=source, field=col, fix="drop broken rows.")
        out[col] = values
    if (out["duration"] < 0).any():
        raise InputError("has negative durations.", file=source, field="duration",
                         fix="durations are end - start in seconds and must be >= 0.")
    if (out["dp_rank"] < 0).any() or (out["stage"] < 0).any():
        raise InputError("ranks must be >= 0.", file=source, field="dp_rank", fix="number ranks from 0.")
    out["end_ts"] = out["start_ts"] + out["duration"]
    return out


Node = tuple[str, int, int]  # (optype, seq_id, stage): one op of one step of one DP rank
