"""The input boundary: every loader, fed hundreds of generated malformed files, either returns checked data or
raises an InputError naming the file; never another exception, never a hang, never a changed file."""

import io
import json
import math
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syslab.core import inputs as I
from syslab.core.errors import InputError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIX = "see the docs."

# JSON-ish values, including what breaks naive loaders: NaN, inf, 1e308, ints beyond int64, bools, nesting
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 0.5, -1, 0]),
                    st.text(max_size=8))
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=5), kids, max_size=5),
    max_leaves=20)
junk_bytes = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                       st.sampled_from([b"", b"\x00\x01\x02", b"\xff\xfe\xfa", "é".encode("latin-1"), b"[" * 5000,
                                        b"null", b"5", b"NaN", b"[NaN]", b"[1e999]", b"{}", b"[]"]))


def _file(data: bytes, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


def _loads_or_input_error(load, data: bytes, suffix: str = ""):
    """Call ``load(path)`` on a file holding ``data``; only InputError may escape; the file must be unchanged."""
    path = _file(data, suffix)
    try:
        return load(path)
    except InputError as e:
        assert str(path) in str(e)        # names the file
        return None
    finally:
        assert path.read_bytes() == data  # untouched
        path.unlink()


def _json_bytes(v) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


@FUZZ
@given(st.one_of(junk_bytes, json_values.map(_json_bytes)))
def test_read_json_fuzz(data):
    _loads_or_input_error(lambda p: I.read_json(p, fix=FIX, expect=list), data)


@FUZZ
@given(st.lists(st.one_of(junk_bytes, json_values.map(_json_bytes)), max_size=6))
def test_read_jsonl_fuzz(lines):
    out = _loads_or_input_error(lambda p: I.read_jsonl(p, fix=FIX), b"\n".join(lines))
    assert out is None or all(isinstance(r, dict) for r in out)


@FUZZ
@given(st.one_of(junk_bytes, st.text(max_size=200).map(str.encode),
                 st.sampled_from([b"a: [1, 2", b"- 1\n- 2", b"!!python/object:os.system {}", b"a: &x [*x]"])))
def test_read_yaml_fuzz(data):
    out = _loads_or_input_error(lambda p: I.read_yaml(p, fix=FIX), data)
    assert out is None or isinstance(out, dict)


cells = st.one_of(st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e308", "1e309", "-1", "0", "3", "2.5", "abc",
                                   str(2**64), "9223372036854775807", '"1,2"', "2024-01-01 00:00:00", "\x00"]),
                  st.integers(-5, 10**6).map(str), st.text(max_size=6))
headers = st.one_of(st.just("time_s,tokens"), st.just("tokens,time_s"), st.just("time_s"),
                    st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t))


@FUZZ
@given(headers, st.lists(st.lists(cells, min_size=0, max_size=3), max_size=6), st.booleans())
def test_read_csv_fuzz(header, rows, binary_tail):
    text = header + "\n" + "\n".join(",".join(r) for r in rows)
    data = text.encode("utf-8", "surrogatepass") + (b"\x00\xff" if binary_tail else b"")
    cols = {"time_s": I.Column("float", min=0), "tokens": I.Column("int", min=0)}
    df = _loads_or_input_error(lambda p: I.read_csv(p, columns=cols, fix=FIX), data)
    if df is not None:
        assert len(df) >= 1 and df["tokens"].dtype == np.int64 and (df["tokens"] >= 0).all()
        assert np.isfinite(df["time_s"]).all() and (df["time_s"] >= 0).all()


@FUZZ
@given(st.one_of(junk_bytes, st.lists(st.tuples(st.integers(-3, 2**40), st.integers(-3, 2**40)), max_size=8)
                 .map(lambda es: "\n".join(f"{a} {b}" for a, b in es).encode()),
                 st.sampled_from([b"1", b"1 x", b"# only a comment\n", b"0 99999999999", b"1\t2\n3 4 5\n"])))
def test_read_edge_list_fuzz(data):
    out = _loads_or_input_error(lambda p: I.read_edge_list(p, fix=FIX, max_nodes=10**6), data)
    if out is not None:
        s, t, n = out
        assert len(s) == len(t) > 0 and 0 < n <= 10**6 and s.max() < n and t.max() < n


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


arrays = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=12).map(lambda v: _npy(np.array(v))),
    st.lists(st.integers(-10, 10), max_size=24).map(lambda v: _npy(np.array(v, dtype=np.int64).reshape(-1, 2)
                                                                   if len(v) % 2 == 0 else np.array(v))),
    st.just(_npy(np.array(["a", "b"]))), st.just(_npy(np.array([{"x": 1}], dtype=object))),
    junk_bytes, st.binary(max_size=200).map(lambda b: _npy(np.zeros(3))[:40] + b))


@FUZZ
@given(arrays)
def test_read_npy_fuzz(data):
    out = _loads_or_input_error(lambda p: I.read_npy(p, fix=FIX, ndim=2, min=0), data, ".npy")
    if out is not None:
        assert out.ndim == 2 and (out >= 0).all() and np.isfinite(out.astype(float)).all()


def _tar(members: list[tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
            elif kind == "dev":
                info.type = tarfile.CHRTYPE
            tf.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    return buf.getvalue()


names = st.one_of(st.sampled_from(["a.txt", "d/b.bin", "../escape", "/abs/path", "d/../../x", "ok/../y"]),
                  st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=8))


@FUZZ
@given(st.one_of(st.lists(st.tuples(names, st.sampled_from(["file", "file", "sym", "dev"])), max_size=5).map(_tar),
                 junk_bytes))
def test_check_tar_fuzz(data):
    out = _loads_or_input_error(lambda p: I.check_tar(p, fix=FIX), data, ".tar")
    if out is not None:
        assert all(not n.startswith("/") and ".." not in Path(n).parts for n in out)


@FUZZ
@given(json_values)
def test_numbers_accepts_exactly_finite_int64_lists(v):
    try:
        a = I.numbers(v, field="lengths", fix=FIX, integer=True, min=1)
    except InputError:
        return
    assert isinstance(v, list) and len(a) == len(v) and (a >= 1).all()
    assert all(not isinstance(x, bool) and int(x) == x for x in v)


@FUZZ
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.booleans(),
                 st.text(max_size=3)))
def test_option_is_finite_and_in_range(x):
    try:
        v = I.option(x, "--latency", min=0, max=1e6)
    except InputError as e:
        assert "--latency" in str(e)
        return
    assert 0 <= v <= 1e6 and math.isfinite(v)


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(InputError, match="directory"):
        I.read_json(tmp_path, fix=FIX)
    with pytest.raises(InputError, match="not found"):
        I.read_json(tmp_path / "nope.json", fix=FIX)
    with pytest.raises(InputError, match="not a directory"):
        I.user_dir(_file(b"x"), fix=FIX)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(InputError, match="over this tool's limit"):
        I.read_json(big, fix=FIX, limit_bytes=1024)


def test_deep_json_and_wrong_top_level_are_named(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested deeper"):
        I.read_json(p, fix=FIX)
    p.write_text("null")
    with pytest.raises(InputError, match="top level is null, not a list"):
        I.read_json(p, fix=FIX, expect=list)


def test_valid_inputs_round_trip(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time_s,tokens,extra\n0.5,3,a\n1.5,4,b\n")
    df = I.read_csv(p, columns={"time_s": I.Column("float", min=0), "tokens": I.Column("int", min=0)}, fix=FIX)
    assert df["tokens"].tolist() == [3, 4] and df["time_s"].tolist() == [0.5, 1.5]
    assert df["extra"].tolist() == ["a", "b"]
    p = tmp_path / "e.txt"
    p.write_text("# comment\n0 1\n1 2 # trailing\n")
    s, t, n = I.read_edge_list(p, fix=FIX)
    assert s.tolist() == [0, 1] and t.tolist() == [1, 2] and n == 3
    assert I.numbers([1, 2.0], field="x", fix=FIX, integer=True).tolist() == [1, 2]
