"""The input boundary: one set of loaders for everything a user hands us.

Every tool reads a user's file through one of these loaders and validates a user's numbers through
``number``/``numbers``/``option``. Each checks what can go wrong before anything is computed: the path (missing,
a directory, unreadable), the size (a bound per loader, so a 40 GB file or a 745 GiB array is refused before it
is read), the encoding (a binary or non-UTF-8 file where text is expected), the structure (JSON that is ``null``
or ``5`` or nested 10,000 deep, a header-only CSV, a missing column), and the values (NaN, infinities, 1e308,
integers beyond int64, negative counts). A problem is an ``InputError`` naming the file, the field and the fix.
Loaders only read: the user's files are never modified.

Costs: every loader is O(file size) in time and memory and reads the file once.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from syslab.core.errors import InputError

MiB = 1 << 20
GiB = 1 << 30
TEXT_LIMIT_BYTES = 512 * MiB     # a JSON/CSV/YAML file larger than this is refused before it is read
BINARY_LIMIT_BYTES = 4 * GiB     # .npy / parquet / tar
MAX_ELEMENTS = 200_000_000       # an array (or an id range) larger than this would need > 1.6 GB as int64
JSON_MAX_DEPTH = 64              # deeper nesting is not a data file we read; also keeps the parser's stack bounded
INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------------------------------------
# paths and raw bytes
# ---------------------------------------------------------------------------------------------------------

def user_file(path: str | Path, *, fix: str, field: str | None = None, limit_bytes: int = TEXT_LIMIT_BYTES) -> Path:
    """``path`` as a readable regular file no larger than ``limit_bytes``; anything else is an InputError."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError("file not found.", file=p, field=field, fix=fix) from None
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror or e.__class__.__name__}).", file=p, field=field,
                         fix=fix) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a file.", file=p, field=field, fix=fix)
    if not stat.S_ISREG(st.st_mode):
        raise InputError("is not a regular file (a device, socket or pipe).", file=p, field=field, fix=fix)
    if st.st_size > limit_bytes:
        raise InputError(f"is {st.st_size / MiB:,.0f} MiB, over this tool's limit of {limit_bytes / MiB:,.0f} MiB.",
                         file=p, field=field, fix="pass a smaller file (or a sample of it).")
    if not os.access(p, os.R_OK):
        raise InputError("is not readable (permission denied).", file=p, field=field, fix="check its permissions.")
    return p


def output_file(path: str | Path, *, fix: str, field: str | None = None) -> Path:
    """A file we are about to write for the user: its folder exists and is writable, and the path is not a
    folder. Checked before any long work, so a typo in ``--out`` fails at once, not after the run."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError("is a directory, not a file to write.", file=p, field=field, fix=fix)
    if not parent.is_dir():
        raise InputError(f"folder {parent} does not exist.", file=p, field=field, fix=fix)
    if not os.access(parent, os.W_OK):
        raise InputError(f"folder {parent} is not writable.", file=p, field=field, fix=fix)
    return p


def user_dir(path: str | Path, *, fix: str, field: str | None = None) -> Path:
    """``path`` as an existing, readable directory."""
    p = Path(path)
    if not p.exists():
        raise InputError("directory not found.", file=p, field=field, fix=fix)
    if not p.is_dir():
        raise InputError("is a file, not a directory.", file=p, field=field, fix=fix)
    if not os.access(p, os.R_OK | os.X_OK):
        raise InputError("is not readable (permission denied).", file=p, field=field, fix="check its permissions.")
    return p


def read_text(path: str | Path, *, fix: str, field: str | None = None, limit_bytes: int = TEXT_LIMIT_BYTES) -> str:
    """A user's text file, decoded as UTF-8; a binary file (NUL bytes) or another encoding is an InputError."""
    p = user_file(path, fix=fix, field=field, limit_bytes=limit_bytes)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror}).", file=p, field=field, fix=fix) from None
    if b"\x00" in data[:1 << 16]:
        raise InputError("is a binary file, not text.", file=p, field=field, fix=fix)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"is not UTF-8 text (byte {e.start}, line {line}).", file=p, field=field,
                         fix="save the file as UTF-8. " + fix) from None


# ---------------------------------------------------------------------------------------------------------
# structured text: JSON, JSON lines, YAML
# ---------------------------------------------------------------------------------------------------------

def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion), stopping once past ``limit``."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def parse_json(text: str, *, source: str | Path, fix: str, field: str | None = None,
               max_depth: int = JSON_MAX_DEPTH) -> Any:
    try:
        obj = json.loads(text, parse_constant=lambda c: _reject_constant(c, source, field, fix))
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).", file=source,
                         field=field, fix=fix) from None
    except RecursionError:
        raise InputError(f"JSON nested deeper than {max_depth} levels.", file=source, field=field, fix=fix) from None
    if _depth(obj, max_depth) > max_depth:
        raise InputError(f"JSON nested deeper than {max_depth} levels.", file=source, field=field, fix=fix)
    return obj


def _reject_constant(name: str, source: str | Path, field: str | None, fix: str) -> Any:
    raise InputError(f"JSON holds {name}, which is not a number.", file=source, field=field,
                     fix="write finite numbers (or null where a value is unknown). " + fix)


def read_json(path: str | Path, *, fix: str, expect: type | tuple[type, ...] | None = None,
              field: str | None = None, limit_bytes: int = TEXT_LIMIT_BYTES) -> Any:
    """A user's JSON file. ``expect`` (``list``, ``dict``) is the required top-level type: ``null`` or ``5`` where a
    list is needed is an InputError. NaN/Infinity literals are refused."""
    p = Path(path)
    obj = parse_json(read_text(p, fix=fix, field=field, limit_bytes=limit_bytes), source=p, fix=fix, field=field)
    if expect is not None and not isinstance(obj, expect):
        want = " or ".join(_json_type_name(t) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise InputError(f"the top level is {_json_type_name(type(obj))}, not {want}.", file=p, field=field, fix=fix)
    return obj


def _json_type_name(t: type) -> str:
    return {list: "a list", dict: "an object", str: "a string", int: "a number", float: "a number",
            bool: "true/false", type(None): "null"}.get(t, t.__name__)


def read_jsonl(path: str | Path, *, fix: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> list[dict[str, Any]]:
    """A JSON-lines file: one JSON object per non-empty line. An empty file is an InputError."""
    p = Path(path)
    rows = []
    for n, line in enumerate(read_text(p, fix=fix, limit_bytes=limit_bytes).splitlines(), start=1):
        if not line.strip():
            continue
        obj = parse_json(line, source=p, fix=fix, field=f"line {n}")
        if not isinstance(obj, dict):
            raise InputError(f"line {n} is {_json_type_name(type(obj))}, not a JSON object.", file=p, fix=fix)
        rows.append(obj)
    if not rows:
        raise InputError("holds no JSON lines.", file=p, fix=fix)
    return rows


def read_yaml(path: str | Path, *, fix: str, limit_bytes: int = 16 * MiB) -> dict[str, Any]:
    """A YAML mapping (safe loader: no object construction)."""
    import yaml

    p = Path(path)
    text = read_text(p, fix=fix, limit_bytes=limit_bytes)
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"not valid YAML{at}.", file=p, fix=fix) from None
    except RecursionError:
        raise InputError("YAML nested too deeply.", file=p, fix=fix) from None
    if not isinstance(obj, dict):
        raise InputError(f"the top level is {type(obj).__name__}, not a mapping.", file=p, fix=fix)
    return obj


# ---------------------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------------------

def number(value: Any, *, field: str, fix: str, file: str | Path | None = None, integer: bool = False,
           min: float | None = None, max: float | None = None) -> int | float:
    """One finite number (an int within int64 when ``integer``) inside [min, max]; bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"{value!r} is not a number.", file=file, field=field, fix=fix)
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        raise InputError(f"{value} is not a finite number.", file=file, field=field, fix=fix)
    if integer:
        if isinstance(value, float | np.floating) and value != int(value):
            raise InputError(f"{value!r} is not an integer.", file=file, field=field, fix=fix)
        value = int(value)
        if abs(value) > INT64_MAX:
            raise InputError(f"{value} is beyond the 64-bit integer range.", file=file, field=field, fix=fix)
    else:
        value = float(value)
    if min is not None and value < min:
        raise InputError(f"{value!r} is below the minimum {min:g}.", file=file, field=field, fix=fix)
    if max is not None and value > max:
        raise InputError(f"{value!r} is above the maximum {max:g}.", file=file, field=field, fix=fix)
    return value


def numbers(values: Any, *, field: str, fix: str, file: str | Path | None = None, integer: bool = False,
            min: float | None = None, max: float | None = None, max_len: int = MAX_ELEMENTS,
            nonempty: bool = True) -> np.ndarray:
    """A list (or 1-D array) of numbers as int64 / float64, each checked as ``number`` does. O(len)."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InputError(f"expected a 1-D list, got shape {values.shape}.", file=file, field=field, fix=fix)
        return _checked_array(values, field=field, fix=fix, file=file, integer=integer, lo=min, hi=max,
                              nonempty=nonempty, max_len=max_len)
    if not isinstance(values, list | tuple):
        raise InputError(f"expected a list of numbers, got {_json_type_name(type(values))}.", file=file, field=field,
                         fix=fix)
    if len(values) > max_len:
        raise InputError(f"{len(values):,} values, over the limit of {max_len:,}.", file=file, field=field, fix=fix)
    if nonempty and not values:
        raise InputError("the list is empty.", file=file, field=field, fix=fix)
    out = [number(v, field=f"{field}[{i}]", fix=fix, file=file, integer=integer, min=min, max=max)
           for i, v in enumerate(values)]
    return np.asarray(out, dtype=np.int64 if integer else np.float64)


def _checked_array(a: np.ndarray, *, field: str, fix: str, file: str | Path | None, integer: bool,
                   lo: float | None, hi: float | None, nonempty: bool, max_len: int) -> np.ndarray:
    if a.size > max_len:
        raise InputError(f"{a.size:,} values, over the limit of {max_len:,}.", file=file, field=field, fix=fix)
    if nonempty and a.size == 0:
        raise InputError("no values.", file=file, field=field, fix=fix)
    if a.dtype.kind not in "iuf":
        raise InputError(f"values of type {a.dtype}, not numbers.", file=file, field=field, fix=fix)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise InputError(f"value {i} is {a.reshape(-1)[i]}, not a finite number.", file=file, field=field,
                             fix=fix)
        if integer:
            frac = a != np.round(a)
            if frac.any():
                i = int(np.flatnonzero(frac.reshape(-1))[0])
                raise InputError(f"value {i} is {a.reshape(-1)[i]!r}, not an integer.", file=file, field=field,
                                 fix=fix)
            if a.size and np.abs(a).max() > 2.0**63 - 1024:
                raise InputError("a value is beyond the 64-bit integer range.", file=file, field=field, fix=fix)
    if a.dtype.kind == "u" and a.size and a.max() > INT64_MAX:
        raise InputError("a value is beyond the 64-bit integer range.", file=file, field=field, fix=fix)
    out = a.astype(np.int64 if integer else np.float64, copy=False)
    flat = out.reshape(-1)
    for bound, bad in ((lo, flat < lo if lo is not None else None), (hi, flat > hi if hi is not None else None)):
        if bad is not None and bad.any():
            i = int(np.flatnonzero(bad)[0])
            side = "below the minimum" if bound is lo else "above the maximum"
            raise InputError(f"value {i} is {flat[i]!r}, {side} {bound:g}.", file=file, field=field, fix=fix)
    return out


def option(value: Any, name: str, *, min: float | None = None, max: float | None = None,
           integer: bool = False, fix: str | None = None) -> int | float:
    """A command-line option's value: finite, within [min, max]. ``--latency nan`` or ``--queues -1`` stop here."""
    if fix is None:
        rng = [f">= {min:g}" if min is not None else "", f"<= {max:g}" if max is not None else ""]
        fix = "use a finite " + ("integer" if integer else "number") + " " + " and ".join(r for r in rng if r) + "."
    return number(value, field=name, fix=fix, integer=integer, min=min, max=max)


# ---------------------------------------------------------------------------------------------------------
# tables: CSV and parquet
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """What a table column must hold: ``kind`` is "int", "float", "str" or "time" (parsable timestamps);
    numeric columns are finite and inside [min, max]."""

    kind: str = "float"
    min: float | None = None
    max: float | None = None


def read_csv(path: str | Path, *, columns: Mapping[str, Column], fix: str, limit_bytes: int = TEXT_LIMIT_BYTES,
             min_rows: int = 1) -> Any:
    """A CSV with a header naming at least ``columns``; returns a pandas DataFrame whose checked columns have
    their kind's dtype (int64, float64, str, datetime64). A header-only file is an InputError."""
    import io

    import pandas as pd

    p = Path(path)
    text = read_text(p, fix=fix, limit_bytes=limit_bytes)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError("is empty.", file=p, fix=fix) from None
    except (pd.errors.ParserError, ValueError, OverflowError) as e:
        raise InputError(f"cannot be parsed as CSV ({str(e).splitlines()[0][:120]}).", file=p, fix=fix) from None
    return check_table(df, columns=columns, source=p, fix=fix, min_rows=min_rows)


def read_parquet(path: str | Path, *, columns: Mapping[str, Column], fix: str,
                 limit_bytes: int = BINARY_LIMIT_BYTES, min_rows: int = 1) -> Any:
    """A parquet table holding at least ``columns``, checked as ``read_csv`` checks."""
    import pandas as pd

    p = user_file(path, fix=fix, limit_bytes=limit_bytes)
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # pyarrow raises many types (ArrowInvalid, OSError...) for a non-parquet file
        raise InputError(f"cannot be read as parquet ({e.__class__.__name__}).", file=p, fix=fix) from None
    return check_table(df, columns=columns, source=p, fix=fix, min_rows=min_rows)


def check_table(df: Any, *, columns: Mapping[str, Column], source: str | Path, fix: str, min_rows: int = 1) -> Any:
    """Check a DataFrame's required columns (present, of their kind, finite, in range); converts them in place."""
    import pandas as pd

    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns[:8]))}).",
                         file=source, field=missing[0], fix=fix)
    if len(df) < min_rows:
        raise InputError(f"has {len(df)} data row(s); at least {min_rows} needed.", file=source, fix=fix)
    for name, col in columns.items():
        s = df[name]
        if col.kind == "str":
            df[name] = s.astype(str)
            continue
        if col.kind == "time":
            t = pd.to_datetime(s, errors="coerce", format="mixed")
            bad = t.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InputError(f"row {row + 2} has {s.iloc[row]!r}, not a timestamp.", file=source, field=name,
                                 fix="use 'YYYY-MM-DD HH:MM:SS' timestamps. " + fix)
            df[name] = t
            continue
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(v)
        if col.kind == "int":
            bad |= np.isfinite(v) & ((v != np.round(v)) | (np.abs(v) > 2.0**63 - 1024))
        for bound, side in ((col.min, "<"), (col.max, ">")):
            if bound is not None:
                bad |= (v < bound) if side == "<" else (v > bound)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            want = {"int": "an integer", "float": "a finite number"}[col.kind]
            rng = "".join([f" >= {col.min:g}" if col.min is not None else "",
                           f" <= {col.max:g}" if col.max is not None else ""])
            raise InputError(f"row {row + 2} has {s.iloc[row]!r}, not {want}{rng}.", file=source, field=name, fix=fix)
        df[name] = v.astype(np.int64) if col.kind == "int" else v
    return df


# ---------------------------------------------------------------------------------------------------------
# arrays, edge lists, tar layers
# ---------------------------------------------------------------------------------------------------------

def read_npy(path: str | Path, *, fix: str, ndim: int | None = None, finite: bool = True,
             min: float | None = None, max_elements: int = MAX_ELEMENTS,
             limit_bytes: int = BINARY_LIMIT_BYTES) -> np.ndarray:
    """A numeric .npy array (no pickles), of ``ndim`` dimensions, finite, every value >= ``min``."""
    p = user_file(path, fix=fix, limit_bytes=limit_bytes)
    try:
        a = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a numeric .npy array ({str(e)[:100]}).", file=p, fix=fix) from None
    if not isinstance(a, np.ndarray):
        raise InputError("is an .npz archive, not one .npy array.", file=p, fix=fix)
    if a.dtype.kind not in "biuf":
        raise InputError(f"holds {a.dtype}, not numbers.", file=p, fix=fix)
    if ndim is not None and a.ndim != ndim:
        raise InputError(f"has {a.ndim} dimension(s) (shape {a.shape}), not {ndim}.", file=p, fix=fix)
    if a.size > max_elements:
        raise InputError(f"{a.size:,} elements, over the limit of {max_elements:,}.", file=p, fix=fix)
    a = a.astype(np.float64) if a.dtype.kind in "bf" else a.astype(np.int64)
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise InputError("holds NaN or infinite values.", file=p, fix=fix)
    if min is not None and a.size and a.min() < min:
        raise InputError(f"holds {a.min()!r}, below the minimum {min:g}.", file=p, fix=fix)
    return a


def read_npz(path: str | Path, *, fix: str, arrays: Mapping[str, tuple[int, ...]], optional: Sequence[str] = (),
             min: float | None = None, max_elements: int = MAX_ELEMENTS,
             limit_bytes: int = BINARY_LIMIT_BYTES) -> dict[str, np.ndarray]:
    """Named numeric arrays from an .npz archive (no pickles): each name in ``arrays`` with one of the allowed
    numbers of dimensions, finite, every value >= ``min``; names in ``optional`` may be absent. The file size
    limit bounds what is loaded; arrays are read one at a time."""
    import zipfile

    p = user_file(path, fix=fix, limit_bytes=limit_bytes)
    try:
        archive = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"not an .npz archive of numeric arrays ({str(e)[:100]}).", file=p, fix=fix) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError("is one .npy array, not an .npz archive of named arrays.", file=p, fix=fix)
    out: dict[str, np.ndarray] = {}
    with archive:
        for name, ndims in arrays.items():
            if name not in archive.files:
                if name in optional:
                    continue
                raise InputError(f"has no array {name!r} (it holds {', '.join(archive.files) or 'none'}).",
                                 file=p, field=name, fix=fix)
            try:
                a = archive[name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise InputError(f"array {name!r} cannot be read ({str(e)[:100]}).", file=p, field=name,
                                 fix=fix) from None
            if a.dtype.kind not in "biuf":
                raise InputError(f"holds {a.dtype}, not numbers.", file=p, field=name, fix=fix)
            if a.ndim not in ndims:
                raise InputError(f"has {a.ndim} dimension(s) (shape {a.shape}), not "
                                 f"{' or '.join(map(str, ndims))}.", file=p, field=name, fix=fix)
            if a.size > max_elements:
                raise InputError(f"{a.size:,} elements, over the limit of {max_elements:,}.", file=p, field=name,
                                 fix=fix)
            a = a.astype(np.float64)
            if not np.isfinite(a).all():
                raise InputError("holds NaN or infinite values.", file=p, field=name, fix=fix)
            if min is not None and a.size and a.min() < min:
                raise InputError(f"holds {a.min()!r}, below the minimum {min:g}.", file=p, field=name, fix=fix)
            out[name] = a
    return out


def read_edge_list(path: str | Path, *, fix: str, max_nodes: int = 50_000_000,
                   limit_bytes: int = TEXT_LIMIT_BYTES) -> tuple[np.ndarray, np.ndarray, int]:
    """``source target`` pairs of non-negative integer node ids, one per line (``#`` starts a comment).
    Returns (sources, targets, node count). An id that would make the node range exceed ``max_nodes`` is an
    InputError (ids 0 and 10**11 would otherwise ask for a 745 GiB array). O(edges)."""
    import io

    p = Path(path)
    text = read_text(p, fix=fix, limit_bytes=limit_bytes)
    rows = []
    for n, line in enumerate(io.StringIO(text), start=1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        if len(body) < 2:
            raise InputError(f"line {n} has {len(body)} field(s), not 'source target'.", file=p, fix=fix)
        try:
            s, t = int(body[0]), int(body[1])
        except ValueError:
            raise InputError(f"line {n} has {body[0]!r} {body[1]!r}, not integer node ids.", file=p, fix=fix) from None
        if s < 0 or t < 0:
            raise InputError(f"line {n} has a negative node id.", file=p, fix=fix)
        if s >= max_nodes or t >= max_nodes:
            raise InputError(f"line {n} has node id {max(s, t):,}: ids must be below {max_nodes:,} "
                             "(they index an array).", file=p, fix="renumber the nodes 0..N-1. " + fix)
        rows.append((s, t))
    if not rows:
        raise InputError("holds no edges.", file=p, fix=fix)
    e = np.asarray(rows, dtype=np.int64)
    return e[:, 0].copy(), e[:, 1].copy(), int(e.max()) + 1



def check_tar(path: str | Path, *, fix: str, limit_bytes: int = BINARY_LIMIT_BYTES) -> list[str]:
    """The member names of an uncompressed tar layer, refusing anything that would write outside the target:
    absolute names, ``..`` components, links pointing out, device files. Reads headers only."""
    import tarfile

    p = user_file(path, fix=fix, limit_bytes=limit_bytes)
    try:
        with tarfile.open(p, mode="r:") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise InputError(f"not an uncompressed tar archive ({e.__class__.__name__}).", file=p, fix=fix) from None
    if not members:
        raise InputError("is an empty tar archive.", file=p, fix=fix)
    for m in members:
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts:
            raise InputError(f"member {m.name!r} would be written outside the target directory.", file=p,
                             field=m.name, fix="rebuild the layer with relative paths.")
        if m.isdev():
            raise InputError(f"member {m.name!r} is a device file.", file=p, field=m.name,
                             fix="rebuild the layer without device nodes.")
        if m.issym() or m.islnk():
            target = Path(m.linkname)
            resolved = (Path(m.name).parent / target) if m.issym() else target
            if target.is_absolute() or ".." in Path(os.path.normpath(resolved)).parts:
                raise InputError(f"member {m.name!r} links outside the layer ({m.linkname!r}).", file=p,
                                 field=m.name, fix="rebuild the layer with links inside it.")
    return [m.name for m in members]


def one_of(value: str, choices: Sequence[str], *, field: str) -> str:
    """A string option restricted to ``choices``."""
    if value not in choices:
        raise InputError(f"{value!r} is not one of {', '.join(choices)}.", field=field,
                         fix=f"use one of: {', '.join(choices)}.")
    return value
