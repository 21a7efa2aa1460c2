"""Every tool's command line, fed hundreds of generated malformed inputs each (files and option values), in process
through ``syslab.cli.main``: it exits 2 with one line (or 0/1 when the generated input happens to be valid),
never prints a traceback, never hangs, and leaves the user's files byte for byte as they were.

Tools whose valid run is expensive or starts real processes have the step that runs *after* validation replaced
by a stub raising ``Reached`` (named in each test), so the fuzz exercises the input boundary only."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import signal
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from syslab.cli import main

# ~60 s for the whole file on one core; in-process and untimed, so it runs beside the other unit tests

# no explain phase: its line tracing slows deep recursion (a 5,000-deep YAML) past the timeout
FUZZ = settings(max_examples=200, deadline=None, phases=[p for p in Phase if p != Phase.explain],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
TIMEOUT_S = 20


class Reached(Exception):
    """The stubbed expensive step was reached: every input passed validation."""


class Hung(BaseException):
    """The call ran past TIMEOUT_S (BaseException, so no ``except Exception`` in the code under test hides it)."""


def _reached(*args, **kwargs):
    raise Reached


# ---------------------------------------------------------------------------------------------------------
# running one command line on generated files
# ---------------------------------------------------------------------------------------------------------

MISSING, DIRECTORY = "missing", "directory"


def run_tool(argv: list, files: dict[str, bytes | str], *, bad: bool = False, dirs: tuple[str, ...] = ()) -> int:
    """Write ``files`` (name -> bytes, or MISSING / DIRECTORY) into a fresh folder, substitute their paths for
    the arguments ``{name}`` in ``argv``, run ``main``; check the exit code, the output and the files. ``bad``: the
    input is malformed for sure (a missing file, an out-of-range option), so the exit code must be 2. ``dirs``:
    the names that are meant to be directories."""
    root = Path(tempfile.mkdtemp(prefix="syslab-fuzz-"))
    paths = {}
    try:
        for name, data in files.items():
            p = paths[name] = root / name
            if data == DIRECTORY:
                p.mkdir()
            elif data != MISSING:
                p.write_bytes(data)
            bad = bad or data == MISSING or (data == DIRECTORY) != (name in dirs)
        args = [str(paths[a[1:-1]]) if a[:1] == "{" and a[1:-1] in paths else str(a) for a in argv]
        code, out, err = _call(args)
        text = out + err
        event(f"exit {code}")                           # --hypothesis-show-statistics: how many got through
        assert "Traceback" not in text, text
        assert code in (0, 1, 2), (code, text)
        if bad:
            assert code == 2, (args, code, text)
        if code == 2:
            assert text.strip(), "an error must say what went wrong"
        for name, data in files.items():
            p = paths[name]
            if data == MISSING:
                assert not p.exists(), f"{p} was created"
            elif data == DIRECTORY:
                assert p.is_dir() and not any(p.iterdir()), f"{p} was changed"
            else:
                assert p.read_bytes() == data, f"{p} was modified"
        return code
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _call(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def hung(signum, frame):
        raise Hung

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                main(args)
                code = 0
            except SystemExit as e:
                code = 0 if e.code is None else e.code
            except Reached:
                event("reached the stubbed step")
                code = 0
    except Hung:
        pytest.fail(f"no answer within {TIMEOUT_S} s: {args}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------------------
# strategies: malformed files and option values
# ---------------------------------------------------------------------------------------------------------

WEIRD = [math.nan, math.inf, -math.inf, 1e308, -1e308, 2**70, -(2**70), 2**63, 2**64, 10**11, -1, 0, 0.5, 1e-300,
         True, None, "x", "", [], {}]
weird_scalars = st.one_of(st.sampled_from(WEIRD), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=6))
json_values = st.recursive(
    weird_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
    max_leaves=12)
junk = st.one_of(
    st.binary(max_size=200), st.text(max_size=200).map(str.encode),
    st.sampled_from([b"", b"\x00\x01\x02\x03", b"\xff\xfe\xfa\xfb", "\u00e9t\u00e9".encode("latin-1"), b"[" * 5000,
                     b"{\"a\":" * 3000, b"null", b"5", b"\"text\"", b"true", b"NaN", b"[NaN]", b"[1e999]", b"{}",
                     b"[]", b"\x1f\x8b\x08\x00junk", b"PAR1\x00\x00PAR1", b"\x93NUMPY\x01\x00"]))


def jbytes(v) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


def any_file(*structured, valid: bytes | None = None):
    """A file's bytes: structured content (sometimes ``valid``, so the tool's accepting path runs too), junk, or
    no file at all / a directory where the file should be."""
    good = [st.just(valid)] * 2 if valid is not None else []
    return st.one_of(*good, *structured, junk, json_values.map(jbytes), st.sampled_from([MISSING, DIRECTORY]))


BAD_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1e308", "1" + "0" * 30, "-1" + "0" * 30, "abc", "", "1e999", "0x10"]


def opt(name: str, good: list, bad: list = (), *, required: bool = False):
    """(argv fragment, known bad): ``name`` with a good value, a known-bad one, or left out."""
    choices = [st.sampled_from(good).map(lambda v: ([name, str(v)], False)),
               st.sampled_from([*BAD_NUMBERS, *map(str, bad)]).map(lambda v: ([name, v], True))]
    if not required:
        choices.append(st.just(([], False)))
    return st.one_of(*choices)


def options(*opts):
    """Several ``opt``s joined: (argv, any known bad)."""
    return st.tuples(*opts).map(lambda parts: ([a for p, _ in parts for a in p], any(b for _, b in parts)))


def csv_bytes(header: list[str], cells) -> st.SearchStrategy[bytes]:
    """A CSV with this header (sometimes mangled) and rows of generated cells."""
    head = st.one_of(st.just(header), st.permutations(header), st.lists(st.sampled_from([*header, "x", ""]),
                                                                          max_size=4))
    rows = st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=6)
    return st.tuples(head, rows).map(
        lambda hr: ("\n".join([",".join(hr[0]), *(",".join(r) for r in hr[1])]) + "\n").encode())


CELLS = ["", "nan", "NaN", "inf", "-inf", "1e308", "1e309", "-1", "0", "1", "3", "7", "2.5", "abc", "1e20",
         str(2**70), str(2**63), "2023-11-16 18:15:46.6805900", "2023-11-16 18:15:47", "1970-01-01 00:00:00",
         "2199-12-31 23:59:59", "x\x00y", "\"a,b\""]
cells = st.one_of(st.sampled_from(CELLS), st.integers(-5, 10**6).map(str),
                  st.floats(0, 100, allow_nan=False).map(repr))


# ---------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------

lengths_json = st.one_of(
    st.lists(st.integers(1, 100_000), min_size=1, max_size=40).map(jbytes),
    st.lists(st.one_of(st.integers(1, 100_000), weird_scalars), min_size=1, max_size=8).map(jbytes))


@FUZZ
@given(any_file(lengths_json, valid=b"[4096, 812, 30211, 100, 7000]"),
       options(opt("--context", [32, 4096, 131072], [0, -1, 31, 2**31]),
               opt("--microbatches", [1, 2, 8], [0, -1, 10**6]),
               opt("--queues", [0, 1, 2, 5], [-1, 6, 10**9]),
               opt("--iterations", [0, 1, 3], [-1])),
       st.booleans())
def test_wlb_pack(lengths, opts, split):
    args, bad = opts
    run_tool(["wlb", "pack", "--lengths", "{lengths.json}", *args, *(["--split-long"] if split else []), "--json"],
             {"lengths.json": lengths}, bad=bad)


def _straggler_trace():
    from syslab.training import stragglers as S

    return S.synthesize_trace(S.SynthConfig(pp=2, dp=2, microbatches=2, steps=2), "gc", np.random.default_rng(0))[0]


def _parquet(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


STRAGGLER_TRACE = _straggler_trace()
STRAGGLER_OK = _parquet(STRAGGLER_TRACE)


@st.composite
def straggler_parquet(draw):
    """The schema's parquet with generated damage: a column dropped, a cell replaced, rows removed."""
    import pandas as pd

    df = STRAGGLER_TRACE.copy()
    what = draw(st.sampled_from(["drop", "cell", "empty", "types", "none"]))
    if what == "drop":
        df = df.drop(columns=[draw(st.sampled_from(list(df.columns)))])
    elif what == "cell":
        col = draw(st.sampled_from(list(df.columns)))
        value = draw(st.sampled_from([math.nan, math.inf, -1.0, 1e308, -1e308, 2.0**70, 0.5]))
        numeric = pd.api.types.is_numeric_dtype(df[col])
        df[col] = df[col].astype(np.float64 if numeric else object)
        df.loc[draw(st.integers(0, len(df) - 1)), col] = value if numeric else str(value)
    elif what == "empty":
        df = df.iloc[:0]
    elif what == "types":
        col = draw(st.sampled_from(list(df.columns)))
        df[col] = pd.Series(["a"] * len(df), dtype=object)
    return _parquet(df)


meta_yaml = st.one_of(
    st.fixed_dictionaries({"dp_size": weird_scalars, "pp_size": weird_scalars},
                          optional={"tp_size": weird_scalars, "world_size": weird_scalars,
                                    "trial_name": weird_scalars, "run_id": weird_scalars}).map(
        lambda d: "\n".join(f"{k}: {json.dumps(v)}" for k, v in d.items()).encode()),
    st.sampled_from([b"dp_size: 2\npp_size: 2\n", b"dp_size: [\n", b"- 1\n- 2\n", b"a: &x [*x, *x]\n",
                     b"!!python/object/apply:os.system ['true']\n", b"dp_size: 2\npp_size: 2\nrun_id: .inf\n",
                     b"dp_size: 2\npp_size: 2\nrun_id: 1e400\n", b"dp_size: 2\npp_size: 2\nrun_id: [1]\n"]))


@FUZZ
@given(any_file(straggler_parquet(), valid=STRAGGLER_OK), any_file(meta_yaml, valid=b"dp_size: 2\npp_size: 2\n"),
       options(opt("--step", [0, 1], [-1])))
def test_stragglers_analyze(monkeypatch, trace, meta, opts):
    # stubbed: the what-if analysis itself (whatif.analyze), which runs once the trace and metadata are loaded
    monkeypatch.setattr("syslab.training.stragglers.whatif.analyze", _reached)
    args, bad = opts
    run_tool(["stragglers", "analyze", "--trace", "{t.parquet}", "--meta", "{m.yaml}", *args, "--json"],
             {"t.parquet": trace, "m.yaml": meta}, bad=bad)


INVARIANT = {"relation": "cover", "key": ["cover", "Optimizer.zero_grad", "Optimizer.step"], "precondition": [],
             "positives": 5, "negatives": 0, "text": "x"}
invariant_files = st.one_of(
    st.lists(st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), json_values) for k, v in INVARIANT.items()}),
             max_size=3).map(lambda invs: jbytes({"invariants": invs, "apis": []})),
    st.fixed_dictionaries({"invariants": st.one_of(json_values, st.just([INVARIANT]))},
                          optional={"apis": json_values}).map(jbytes),
    st.sampled_from([jbytes({"invariants": [INVARIANT]}),
                     jbytes({"invariants": [dict(INVARIANT, key=["const", "param", "requires_grad", True])]}),
                     jbytes({"invariants": [dict(INVARIANT, key=["teleport", 1, 2])]}),
                     jbytes({"invariants": [dict(INVARIANT, key=["cover"])]}),
                     jbytes({"invariants": [dict(INVARIANT, key="cover")]}),
                     jbytes({"invariants": [dict(INVARIANT, positives=1e308)]}),
                     jbytes({"invariants": [dict(INVARIANT, precondition=[[["a"], 1]])]}),
                     jbytes({"invariants": [dict(INVARIANT, precondition=[["a"]])]})]))


@FUZZ
@given(any_file(invariant_files, valid=jbytes({"invariants": [INVARIANT]})))
def test_traincheck_show(invariants):
    run_tool(["traincheck", "show", "{inv.json}", "--json"], {"inv.json": invariants})


@FUZZ
@given(any_file(invariant_files, valid=jbytes({"invariants": [INVARIANT]})),
       st.sampled_from(["trace", "command", "neither"]), st.sampled_from([b"", MISSING, DIRECTORY]),
       options(opt("--every", [1, 10], [0, -1])))
def test_traincheck_check(monkeypatch, invariants, run, trace, opts):
    pytest.importorskip("torch")
    # stubbed: api.check, which traces the command (or reads the trace directory) once the invariants are loaded
    monkeypatch.setattr("syslab.training.traincheck.api.check", _reached)
    args, bad = opts
    files = {"inv.json": invariants}
    if run == "trace":
        files["trace"] = trace
        args += ["--trace", "{trace}"]
    elif run == "command":
        args += ["--", "python", "train.py"]
    run_tool(["traincheck", "check", "--invariants", "{inv.json}", *args], files, bad=bad, dirs=("trace",))


@FUZZ
@given(any_file(csv_bytes(["iter_time_s"], cells),
                valid=("iter_time_s\n" + "1.0\n" * 60 + "1.5\n" * 60).encode()))
def test_greyhound_detect(iter_times):
    run_tool(["greyhound", "detect", "--iter-times", "{it.csv}", "--json"], {"it.csv": iter_times})


@FUZZ
@given(any_file(csv_bytes(["call_id", "timestamp_s"], cells),
                st.lists(st.integers(0, 3), min_size=1, max_size=60).map(
                    lambda ids: ("call_id,timestamp_s\n" + "".join(f"{c},{i * 0.01}\n" for i, c in enumerate(ids))
                                 ).encode()),
                valid=("call_id,timestamp_s\n" + "".join(f"{c},{i * 0.1}\n" for i, c in
                                                          enumerate([4, 1, 1, 2, 7, 3] * 20))).encode()))
def test_greyhound_period(calls):
    run_tool(["greyhound", "period", "--calls", "{calls.csv}", "--json"], {"calls.csv": calls})


@FUZZ
@given(options(opt("--stages", [1, 2, 4], [0, -1, 10**6]), opt("--microbatches", [4, 8], [0, -1, 10**7]),
               opt("--latency", [0, 0.5, 2], [-1, -0.5]), opt("--bandwidth", [0, 0.25, 1], [-1]),
               opt("--dcs", [1, 2], [0, -1, 10**6]), opt("--milp-seconds", [0], [-1, 10**9])))
def test_crosspipe_compare(opts):
    args, bad = opts
    run_tool(["crosspipe", "compare", *args, "--json"], {}, bad=bad)


@FUZZ
@given(any_file(lengths_json, valid=b"[4096, 812, 30211, 100, 7000]"),
       options(opt("--batch", [16, 32], [0, -1, 10**9]), opt("--iterations", [1, 3], [0, -1, 10**9]),
               opt("--seed", [0, 7], [-1]), opt("--horizon", [1, 10], [0, -1])))
def test_flexpipe_simulate(lengths, opts):
    args, bad = opts
    if "--iterations" not in args:
        args += ["--iterations", "2"]                   # keep valid runs short
    run_tool(["flexpipe", "simulate", "--lengths", "{l.json}", *args, "--json"], {"l.json": lengths}, bad=bad)


@FUZZ
@given(options(opt("--m", [1, 64, 8192], [0, -1, 10**12], required=True), opt("--n", [1, 4096], [0, -1], required=True),
               opt("--k", [1, 4096], [0, -1], required=True), opt("--sm-fraction", [0.5, 1], [0, -0.5, 2]),
               opt("--gpu", ["A100", "h100-sxm", "L40S"], ["TPU", ""]), opt("--dtype", ["bf16", "fp16"], ["fp4", "x"])))
def test_gpu_gemm(opts):
    args, bad = opts
    run_tool(["gpu", "gemm", *args, "--json"], {}, bad=bad)


@FUZZ
@given(options(opt("--op", ["allreduce", "all_gather", "alltoall"], ["gossip", ""], required=True),
               opt("--bytes", [1, 1e6, 1e9], [0, -1, 1e300], required=True), opt("--ranks", [1, 8, 16], [0, -1]),
               opt("--nodes", [1, 2], [0, -1, 10**6]), opt("--gpu", ["A100-SXM", "H100"], ["TPU"])))
def test_gpu_collective(opts):
    args, bad = opts
    run_tool(["gpu", "collective", *args, "--json"], {}, bad=bad)


# ---------------------------------------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------------------------------------

AZURE = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
azure_rows = st.lists(st.tuples(st.integers(0, 59), st.integers(0, 2000), st.integers(0, 300)), min_size=1,
                      max_size=8).map(lambda rows: ("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
                          f"2023-11-16 18:00:{s:02d}.5,{p},{o}\n" for s, p, o in rows)).encode())
AZURE_OK = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,20,4\n2023-11-16 18:00:01.5,300,8\n"
azure_csv = st.one_of(csv_bytes(AZURE, cells), azure_rows)


@FUZZ
@given(any_file(azure_csv, valid=AZURE_OK), options(opt("--time-scale", [1, 4, 0.5], [0, -1, 1e-300])))
def test_blitzscale_replay(trace, opts):
    args, bad = opts
    run_tool(["blitzscale", "replay", "--trace", "{t.csv}", *args, "--json"], {"t.csv": trace}, bad=bad)


@FUZZ
@given(any_file(azure_csv, valid=AZURE_OK),
       options(opt("--time-scale", [1, 4], [0, -1, 1e-300]), opt("--max-requests", [1, 64], [0, -1]),
               opt("--max-prompt", [16, 128], [0, -1, 10**9]), opt("--max-output", [8, 64], [0, -1, 10**9]),
               opt("--repeats", [1, 2], [0, -1, 10**9])))
def test_llmstation_compare(monkeypatch, trace, opts):
    pytest.importorskip("torch")
    # stubbed: compare_trace, the real-time serving of the trace, which runs once the trace is loaded
    monkeypatch.setattr("syslab.serving.llmstation.reproduce.compare_trace", _reached)
    args, bad = opts
    run_tool(["llmstation", "compare", "--trace", "{t.csv}", *args, "--json"], {"t.csv": trace}, bad=bad)


REQUEST = {"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 40, "output_length": 8,
           "type": "text", "turn": 1, "hash_ids": [0, 1, 2]}
KV_OK = "\n".join(json.dumps(dict(REQUEST, chat_id=i, timestamp=float(i), hash_ids=[0, 1, i])) for i in range(6)
                  ).encode()
request_lines = st.lists(st.one_of(
    st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), json_values) for k, v in REQUEST.items()}).map(
        json.dumps),
    st.builds(lambda t, ids, n: json.dumps(dict(REQUEST, timestamp=t, hash_ids=ids, input_length=n)),
              st.floats(0, 100), st.lists(st.integers(0, 20), max_size=5), st.integers(0, 100)),
    json_values.map(json.dumps), st.sampled_from(["", "{", "[]", "null", "NaN"])), min_size=1, max_size=6).map(
    lambda lines: "\n".join(lines).encode())


@FUZZ
@given(any_file(request_lines, valid=KV_OK),
       options(opt("--capacity-blocks", [1, 16, 1000], [0, -1], required=True),
               opt("--policy", ["lru", "lfu", "wa", "belady"], ["mru", "LRU"]),
               opt("--fit-fraction", [0, 0.5, 0.9], [-0.1, 1, 2])))
def test_kvcache_replay(trace, opts):
    args, bad = opts
    run_tool(["kvcache", "replay", "--trace", "{t.jsonl}", *args, "--json"], {"t.jsonl": trace}, bad=bad)


@FUZZ
@given(any_file(request_lines, valid=KV_OK))
def test_kvcache_characterize(trace):
    run_tool(["kvcache", "characterize", "--trace", "{t.jsonl}", "--json"], {"t.jsonl": trace})


# ---------------------------------------------------------------------------------------------------------
# cloud
# ---------------------------------------------------------------------------------------------------------

@FUZZ
@given(options(opt("--concurrency", [1, 32, 256], [0, -1, 257]), opt("--requests", [1, 8], [0, -1, 10**9])),
       st.booleans())
def test_afaas_bench(monkeypatch, opts, ablation):
    # stubbed: run_ablation, which starts the real sandbox daemons and cold starts once the options are checked
    monkeypatch.setattr("syslab.cloud.afaas.bench.run_ablation", _reached)
    args, bad = opts
    run_tool(["afaas", "bench", *args, *(["--ablation"] if ablation else []), "--json"], {}, bad=bad)


TRIANGLE = jbytes({"nodes": [{"id": i} for i in range(3)],
                   "links": [{"source": a, "target": b, "capacity": 10.0} for a, b in ((0, 1), (1, 2), (2, 0))]})
DEMAND = jbytes([{"source": 0, "target": 2, "demand": 5.0}])
node_ids = st.one_of(st.integers(0, 4), st.sampled_from(["a", "b", 2**70, None, 1.5, [1], {"x": 1}, True]))
topology_json = st.one_of(
    st.fixed_dictionaries({"nodes": st.lists(st.one_of(st.builds(lambda i: {"id": i}, node_ids), json_values),
                                             max_size=5),
                           "links": st.lists(st.one_of(
                               st.fixed_dictionaries({"source": node_ids, "target": node_ids},
                                                     optional={"capacity": st.one_of(weird_scalars,
                                                                                     st.floats(1, 100))}),
                               json_values), max_size=6)},
                          optional={"directed": json_values}).map(jbytes),
    st.just(TRIANGLE))
demands_json = st.one_of(
    st.lists(st.one_of(st.fixed_dictionaries({"source": node_ids, "target": node_ids, "demand": weird_scalars}),
                       json_values), max_size=4).map(jbytes),
    st.just(DEMAND))


@FUZZ
@given(any_file(topology_json, valid=TRIANGLE), st.one_of(st.none(), any_file(demands_json, valid=DEMAND)),
       options(opt("--pairs", [1, 20], [0, -1]), opt("--paths", [1, 4], [0, -1, 10**9]),
               opt("--workers", [1, 2], [0, -1, 257]), opt("--backend", ["process"], ["mpi"]),
               opt("--seed", [0, 3], [-1])))
def test_dede_te(monkeypatch, topology, demands, opts):
    # stubbed: solve_admm, which starts the DeDe worker processes once the problem is built
    monkeypatch.setattr("syslab.cloud.dede.te.solve_admm", _reached)
    args, bad = opts
    files = {"topo.json": topology}
    if demands is not None:
        files["demands.json"] = demands
        args += ["--demands", "{demands.json}"]
    run_tool(["dede", "te", "--topology", "{topo.json}", *args, "--json"], files, bad=bad)


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _scaled_npy(shape_and_scale) -> bytes:
    *shape, scale = shape_and_scale
    with np.errstate(all="ignore"):                     # 1e308 x a normal overflows to inf: that is the point
        return _npy(np.abs(np.random.default_rng(0).normal(size=shape)) * scale)


throughput_npy = st.one_of(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 4),
              st.sampled_from([1.0, 0.0, -1.0, math.nan, math.inf, 1e308])).map(_scaled_npy),
    st.sampled_from([_npy(np.ones((2, 3))), _npy(np.ones((2, 2, 2), dtype=np.int8)), _npy(np.array(["a", "b"])),
                     _npy(np.array([{"a": 1}], dtype=object)), _npy(np.zeros((2, 2, 2))),
                     _npy(np.ones((2, 2, 2), dtype=np.complex128)), _npy(np.ones((2, 2, 2), dtype=bool)),
                     _npy(np.full((2, 2, 2), np.iinfo(np.uint64).max, dtype=np.uint64)), _npy(np.ones((2, 2, 2)))]))
spec_json = st.one_of(
    st.dictionaries(st.sampled_from(["worker_0", "worker_1", "worker_2"]), weird_scalars, max_size=3).map(jbytes),
    st.just(jbytes({"worker_0": 8, "worker_1": 8})))


@FUZZ
@given(any_file(throughput_npy, valid=_npy(np.ones((2, 3, 2)))),
       any_file(spec_json, valid=jbytes({"worker_0": 8, "worker_1": 8})),
       options(opt("--jobs", [1, 20], [0, -1, 10**12]), opt("--workers", [1, 2], [0, -1, 257]),
               opt("--backend", ["process"], ["mpi"]), opt("--seed", [0, 3], [-1])))
def test_dede_cluster(monkeypatch, throughputs, spec, opts):
    # stubbed: solve_admm, which starts the DeDe worker processes once the problem is built
    monkeypatch.setattr("syslab.cloud.dede.cluster.solve_admm", _reached)
    args, bad = opts
    run_tool(["dede", "cluster", "--throughputs", "{t.npy}", "--spec", "{spec.json}", *args, "--json"],
             {"t.npy": throughputs, "spec.json": spec}, bad=bad)


@FUZZ
@given(st.one_of(st.none(), any_file(csv_bytes(["time_s", "signature"], cells),
                                    valid=b"time_s,signature\n0.1,a\n0.2,b\n0.3,a\n")),
       options(opt("--load", [0.3, 0.7, 1.2], [0, -1, 1.5, 10]), opt("--allocators", [1, 8], [0, -1, 10**9]),
               opt("--cache", [1, 64], [0, -1, 10**12]), opt("--n", [1, 50, 300], [0, -1, 10**12]),
               opt("--seed", [0, 5], [-1])))
def test_kamino_simulate(requests, opts):
    args, bad = opts
    files = {}
    if requests is not None:
        files["r.csv"] = requests
        args += ["--requests", "{r.csv}"]
    elif "--n" not in args:
        args += ["--n", "100"]                          # keep valid runs short
    run_tool(["kamino", "simulate", *args, "--json"], files, bad=bad)


edge_lists = st.one_of(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=30).map(
        lambda es: "".join(f"{a} {b}\n" for a, b in es).encode()),
    st.lists(st.tuples(st.sampled_from(CELLS + ["10" + "0" * 10, "9" * 30, "-3", "# c", "1 2 3"]),
                       st.sampled_from(CELLS + ["5", "10" + "0" * 10])), max_size=5).map(
        lambda es: "".join(f"{a} {b}\n" for a, b in es).encode()),
    st.sampled_from([b"0 100000000000\n", b"0 1\n1 99999999999999999999\n", b"# only a comment\n", b"0\n",
                     b"0 1 # edge\n1 0\n", b"0\t1\n1\t2\n"]))


@FUZZ
@given(st.one_of(st.none(), any_file(edge_lists, valid=b"0 1\n1 2\n2 0\n")),
       options(opt("--workers", [1, 4, 16], [0, -1, 3, 512]), opt("--group-size", [1, 2, 4], [0, -1, 3]),
               opt("--nodes", [2, 100], [0, 1, -1, 10**12]), opt("--edges", [1, 500], [0, -1, 10**12]),
               opt("--iterations", [1, 10], [0, -1, 10**9]), opt("--rtt-ms", [0, 1, 2.5], [-1]),
               opt("--bandwidth-mbs", [1, 100], [0, -1]), opt("--seed", [0, 1], [-1])))
def test_burst_pagerank(monkeypatch, graph, opts):
    # stubbed: RedisServer, the real broker the burst and FaaS runs start once the graph is loaded
    monkeypatch.setattr("syslab.cloud.burst.resp.RedisServer", _reached)
    args, bad = opts
    files = {}
    if graph is not None:
        files["g.txt"] = graph
        args += ["--graph", "{g.txt}"]
        # an id that would ask for a rank vector of 10**11 nodes (745 GiB) is malformed for sure
        ids = [t for line in (graph.decode(errors="replace").splitlines() if isinstance(graph, bytes) else [])
               for t in line.split("#")[0].split()[:2]]
        bad = bad or any(t.isascii() and t.isdigit() and int(t) >= 10**7 for t in ids)
    run_tool(["burst", "pagerank", *args, "--json"], files, bad=bad)


def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "dev": tarfile.CHRTYPE,
                             "dir": tarfile.DIRTYPE}[kind]
                info.linkname = payload if isinstance(payload, str) else ""
                tf.addfile(info)
    return buf.getvalue()


member_names = st.one_of(st.sampled_from(["a.txt", "d/b.bin", "../escape", "/etc/passwd", "d/../../x", "./ok",
                                          "d/./c", "\u00e9.txt"]),
                         st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                                 max_size=12))
tar_member = st.tuples(member_names, st.sampled_from(["file", "file", "symlink", "hardlink", "dev", "dir"]),
                       st.one_of(st.binary(max_size=64), st.sampled_from(["../../etc", "/etc/shadow", "a.txt",
                                                                          "d/b.bin"])))
LAYER_OK = _tar([("etc/app.conf", "file", b"x = 1\n"), ("bin/run", "file", b"#!/bin/sh\n")])
layer_tars = st.one_of(
    st.lists(tar_member, min_size=1, max_size=4).map(
        lambda ms: _tar([(n, k, p if k != "file" or isinstance(p, bytes) else p.encode()) for n, k, p in ms])),
    st.sampled_from([_tar([])]).map(lambda b: b[:512]))


@FUZZ
@given(st.lists(any_file(layer_tars, valid=LAYER_OK), max_size=3),
       options(opt("--size-mb", [1, 2], [0, -1, 10**9]), opt("--link-gbps", [0.5, 1, 100], [0, -1]),
               opt("--buffers", [1, 3, 64], [0, -1, 65]), opt("--seed", [0, 1], [-1])))
def test_poby_provision(monkeypatch, layers, opts):
    # stubbed: registry, which builds both image formats from the layers (then provisioning runs for real)
    monkeypatch.setattr("syslab.cloud.poby.image.registry", _reached)
    args, bad = opts
    files = {f"layer{i}.tar": data for i, data in enumerate(layers)}
    for name in files:
        args += ["--layer", "{" + name + "}"]
    run_tool(["poby", "provision", *args, "--json"], files, bad=bad)


# ---------------------------------------------------------------------------------------------------------
# syslab data
# ---------------------------------------------------------------------------------------------------------

def _dataset_names():
    from syslab.core.data import DATASETS

    return sorted(DATASETS)


dataset_names = st.one_of(st.sampled_from(_dataset_names()), st.text(max_size=12),
                          st.sampled_from(["../etc", "/", "a" * 300, "wlb_doc_lengths/../x", "-", "\u00e9"]))


@FUZZ
@given(st.lists(dataset_names, min_size=1, max_size=3),
       st.one_of(st.none(), st.sampled_from(["http://127.0.0.1:1", "", "not a url", "file:///etc"])))
def test_data_fetch(monkeypatch, names, base_url):
    # stubbed: core.data.fetch, the download, which runs once every name is checked
    monkeypatch.setattr("syslab.core.data.fetch", _reached)
    run_tool(["data", "fetch", *(["--base-url", base_url] if base_url is not None else []), "--", *names], {},
             bad=base_url in ("", "not a url"))


@FUZZ
@given(dataset_names, st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["../README.md", "/etc/passwd"])))
def test_data_path(name, file):
    run_tool(["data", "path", "--", name, *([file] if file is not None else [])], {})


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _routing_npz(shape_and_scale) -> bytes:
    *shape, scale = shape_and_scale
    with np.errstate(all="ignore"):
        return _npz(counts=np.abs(np.random.default_rng(0).normal(size=shape)) * scale)


_GOOD_ROUTING = _npz(counts=np.random.default_rng(1).integers(1, 50, (4, 2, 2, 4)).astype(float), top_k=2)
routing_npz = st.one_of(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 3), st.integers(0, 5),
              st.sampled_from([1.0, 0.0, -1.0, math.nan, math.inf, 1e308])).map(_routing_npz),
    st.sampled_from([_npy(np.ones((3, 2, 4))), _npz(counts=np.array(["a", "b"])), _npz(other=np.ones(3)),
                     _npz(counts=np.ones((3, 2, 4)), top_k=0), _npz(counts=np.ones((3, 2, 4)), top_k=99),
                     _npz(counts=np.ones((3, 2, 4)), transitions=np.ones((3, 1, 2, 2))),
                     _npz(counts=np.ones((3, 2, 4), dtype=np.complex128)), _GOOD_ROUTING]))


@FUZZ
@given(any_file(routing_npz, valid=_GOOD_ROUTING),
       options(opt("--workers", [2], [0, -1, 1, 10**6]), opt("--tokens", [64, 8192], [0, -1, 10**9]),
               opt("--hidden", [64, 1024], [0, -1, 10**9]), opt("--nic", ["ib-hdr", "roce-100"], ["x"]),
               opt("--gpu", ["A100", "h100-sxm"], ["B9000"])))
def test_popfetcher_simulate(routing, opts):
    args, bad = opts
    run_tool(["popfetcher", "simulate", "--routing", "{r.npz}", *args, "--json"], {"r.npz": routing}, bad=bad)


_GOOD_LLAMA = jbytes({"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "intermediate_size": 128, "vocab_size": 100})
llama_config = st.dictionaries(st.sampled_from(["hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "intermediate_size", "vocab_size", "hidden", "layers"]),
                               weird_scalars, max_size=6).map(jbytes)


@FUZZ
@given(any_file(llama_config, valid=_GOOD_LLAMA),
       st.one_of(st.none(), any_file(throughput_npy, valid=_npy(np.arange(300) % 100))),
       options(opt("--seq", [128, 256], [0, -1, 100, 10**9]), opt("--batch", [1, 2], [0, -1, 10**6]),
               opt("--layers", [3, 4], [0, 2, -1]), opt("--keep", [0.5, 1], [-0.1, 2]),
               opt("--mlp-keep", [0.5], [0, 2]), opt("--repeats", [1], [0, -1])))
def test_jenga_profile(monkeypatch, config, tokens, opts):
    # stubbed: the profile itself (torch steps), which runs once the model and the tokens are validated
    monkeypatch.setattr("syslab.training.jenga.profile.profile", _reached)
    args, bad = opts
    files = {"config.json": config}
    if tokens is not None:
        files["ids.npy"] = tokens
        args = [*args, "--tokens", "{ids.npy}"]
    run_tool(["jenga", "profile", "--config", "{config.json}", *args, "--json"], files, bad=bad)


@FUZZ
@given(st.sampled_from(["llama2-7b", "Llama-2-70B", "gpt-9", "", "llama2-7b\\x00"]),
       options(opt("--server", ["pcie", "nvlink"], ["ib"]), opt("--gpus", [8], [0, -1, 4, 10**6]),
               opt("--seq", [512, 8192], [0, -1, 10**9]), opt("--micro-batch", [1, 2], [0, -1, 10**6]),
               opt("--lora-rank", [8, 64], [0, -1, 10**9])))
def test_mtuner_plan(name, opts):
    args, bad = opts
    run_tool(["mtuner", "plan", "--model", name, *args, "--json"], {}, bad=bad or name not in ("llama2-7b",
                                                                                              "Llama-2-70B"))
