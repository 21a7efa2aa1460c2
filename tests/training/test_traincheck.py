"""TrainCheck: the tracer leaves training untouched, each template infers and checks on small synthetic runs,
preconditions separate legitimate exceptions, and the tools work on a script the suite has never seen."""

import json
import textwrap

import pytest

torch = pytest.importorskip("torch")

from syslab.core.errors import InputError  # noqa: E402
from syslab.training.traincheck import api  # noqa: E402
from syslab.training.traincheck import relations as R  # noqa: E402
from syslab.training.traincheck.collect import collect, collect_many  # noqa: E402
from syslab.training.traincheck.instrument import Tracer, fingerprint  # noqa: E402
from syslab.training.traincheck.reproduce import loss_anomaly  # noqa: E402


def _train(steps=3, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(torch.randn(5, 4)), torch.randint(0, 2, (5,))).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)      # a generator: must not be consumed
        opt.step()
    return [p.detach().clone() for p in m.parameters()]


def test_tracing_changes_nothing_and_records_each_iteration(tmp_path):
    plain = _train()
    with api.tracing(tmp_path) as box:
        traced = _train()
    assert all(torch.equal(a, b) for a, b in zip(plain, traced, strict=True))
    run = box["run"]
    steps = [c for c in run.calls if c.api == "Optimizer.step"]
    assert [c.iter for c in steps] == [0, 1, 2]
    order = [c.api for c in run.calls if c.iter == 1]
    assert order == ["Optimizer.zero_grad", "Module.forward", "functional.dropout", "Tensor.backward",
                     "nn.utils.clip_grad_norm_", "Optimizer.step"]
    clip = next(c for c in run.calls if c.api == "nn.utils.clip_grad_norm_")
    assert clip.args == {"params": 4, "with_grad": 4} and clip.ret["value"] > 0
    params = [v for v, (t, _) in steps[0].pre.items() if t == "param"]
    assert params == ["Sequential.0.weight", "Sequential.0.bias", "Sequential.2.weight", "Sequential.2.bias"]
    assert all(steps[0].pre[v][1]["value"] != steps[0].post[v][1]["value"] for v in params)


def test_fingerprint_sees_changes_that_keep_the_sum():
    a = torch.tensor([1.0, -1.0, 0.5])
    assert fingerprint(a) != fingerprint(torch.tensor([-1.0, 1.0, 0.5]))
    assert fingerprint(a) == fingerprint(a.clone()) and fingerprint(a.to(torch.bfloat16)) != fingerprint(a)


def test_fingerprint_cache_never_serves_a_dead_gradients_fingerprint_to_its_successor():
    # zero_grad frees each gradient and backward allocates a new one, which can reuse the dead one's id,
    # storage and version counter: the cache must still hash the new values
    from syslab.training.traincheck.instrument import _Fingerprints

    fp = _Fingerprints()
    torch.manual_seed(0)
    m = torch.nn.Linear(8, 16)
    for _ in range(30):
        m.zero_grad()
        m(torch.randn(4, 8)).pow(2).sum().backward()
        assert fp(m.weight.grad)[0] == fingerprint(m.weight.grad)
    assert len(fp._cache) <= 2                  # entries of dead gradients go with them


def test_iteration_advances_on_a_new_forward_when_no_step_comes(tmp_path):
    tracer = Tracer(tmp_path).install()
    try:
        m = torch.nn.Linear(3, 1)
        for _ in range(3):
            m(torch.randn(2, 3)).sum().backward()                  # never an optimizer step
    finally:
        tracer.close()
    forwards = [e for e in tracer.events if e["kind"] == "api" and e["api"] == "Module.forward"]
    assert [e["iter"] for e in forwards if e["phase"] == "pre"] == [0, 1, 2]


# --- templates on synthetic runs -----------------------------------------------------------------------


def _call(api, it, seq, rank=0, args=None, pre=None, post=None):
    return R.Call(api, rank, it, seq, args or {}, None, pre or {}, post or {})


def _run(calls):
    run = R.Run(calls)
    R._mark_training_forwards(run.calls)
    return run


def _seq_loop(iters, skip_zero_grad_at=None, rank=0, seq0=0):
    calls, seq = [], seq0
    for it in range(iters):
        for api_name in ("Optimizer.zero_grad", "Module.forward", "Tensor.backward", "Optimizer.step"):
            if api_name == "Optimizer.zero_grad" and it == skip_zero_grad_at:
                continue
            seq += 1
            calls.append(_call(api_name, it, seq, rank))
    return calls


def test_sequence_invariants_catch_a_missing_call_in_the_first_iteration_it_is_missing():
    invs = R.infer([_run(_seq_loop(4)), _run(_seq_loop(3))])
    texts = {i.text for i in invs}
    assert "every Tensor.backward comes after a Optimizer.zero_grad in its iteration" in texts
    assert "every Tensor.backward is followed by a Optimizer.step in its iteration" in texts
    assert R.check(_run(_seq_loop(5)), invs) == []
    v = R.check(_run(_seq_loop(5, skip_zero_grad_at=2)), invs)
    assert v and min(x.iter for x in v) == 2
    assert all(x.iter == 2 for x in v)


def _param(value, grad=True, requires_grad=True, in_opt=True):
    attrs = {"value": value, "requires_grad": requires_grad, "dtype": "float32", "in_optimizer": in_opt,
             "has_grad": grad}
    if grad:
        attrs["grad"], attrs["grad_zero"] = "g", False
    return ("param", attrs)


def test_changes_invariant_learns_its_precondition_from_frozen_parameters():
    calls = []
    for it in range(3):          # "w" trains; "frozen" has no grad and never changes
        calls.append(_call("Optimizer.step", it, it, pre={"w": _param(f"w{it}"), "frozen": _param("f", grad=False)},
                           post={"w": _param(f"w{it + 1}"), "frozen": _param("f", grad=False)}))
    invs = {i.key: i for i in R.infer([_run(calls)])}
    inv = invs[("changes", "Optimizer.step", "value")]
    assert inv.precondition == [[("var.has_grad", True)]] and inv.negatives == 3
    bad = [_call("Optimizer.step", 0, 0, pre={"w": _param("a")}, post={"w": _param("a")})]   # lr = 0, say
    v = R.check(_run(bad), [inv])
    assert len(v) == 1 and v[0].subject == "w" and "unchanged" in v[0].evidence
    frozen_ok = [_call("Optimizer.step", 0, 0, pre={"w": _param("a", grad=False)}, post={"w": _param("a", grad=False)})]
    assert R.check(_run(frozen_ok), [inv]) == []                     # the precondition excuses it


def test_precondition_is_none_when_no_clause_separates():
    pos = [R.Example(("k",), True, {"a": 1}, 0, 0, "x"), R.Example(("k",), True, {"a": 1}, 0, 1, "x")]
    neg = [R.Example(("k",), False, {"a": 1}, 0, 2, "x")]
    assert R.precondition(pos, neg) is None
    neg2 = [R.Example(("k",), False, {"a": 2, "b": 0}, 0, 2, "x")]
    assert R.precondition(pos, neg2) == [[("a", 1)]]


def test_const_invariant_flags_a_value_the_references_never_had():
    def step(dtype, it):
        p = _param(f"v{it}")
        p[1]["dtype"] = dtype
        return _call("Optimizer.step", it, it, pre={"w": p}, post={"w": p})
    invs = R.infer([_run([step("float32", i) for i in range(3)])])
    v = R.check(_run([step("float32", 0), step("bfloat16", 1)]), invs)
    assert any(x.invariant.key == ("const", "param", "dtype", "float32") and x.iter == 1 for x in v)


def test_rank_and_distinct_invariants():
    def ddp_run(diverge_at=None, same_input_at=None):
        calls, seq = [], 0
        for it in range(4):
            for rank in (0, 1):
                seq += 1
                x = "same" if it == same_input_at else f"x{it}r{rank}"
                calls.append(_call("Module.forward", it, seq, rank, args={"input": x}))
                seq += 1
                calls.append(_call("Tensor.backward", it, seq, rank))
                value = f"w{it}" + (f"r{rank}" if diverge_at is not None and it >= diverge_at else "")
                seq += 1
                calls.append(_call("Optimizer.step", it, seq, rank, post={"w": _param(value)}))
        return _run(calls)

    invs = R.infer([ddp_run()])
    keys = {i.key for i in invs}
    assert ("ranks_equal", "Optimizer.step.post", "value") in keys and ("distinct_ranks", "Module.forward",
                                                                         "input") in keys
    assert R.check(ddp_run(), invs) == []
    assert [v.iter for v in R.check(ddp_run(diverge_at=2), invs) if v.invariant.key[0] == "ranks_equal"] == [2]
    assert [v.iter for v in R.check(ddp_run(same_input_at=1), invs) if v.invariant.key[0] == "distinct_ranks"] == [1]


def test_invariants_file_roundtrip_and_bad_files(tmp_path):
    invs = R.infer([_run(_seq_loop(3))])
    path = tmp_path / "inv.json"
    R.save(invs, path, ["ref"])
    back = R.load(path)
    assert [i.to_dict() for i in back] == [i.to_dict() for i in invs]
    path.write_text("{not json")
    with pytest.raises(InputError, match="not an invariants file"):
        R.load(path)
    with pytest.raises(InputError, match="not found"):
        R.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="directory not found"):           # the Python API, as the CLI
        api.check(invs, trace=tmp_path / "nodir")


def test_loss_monitor_flags_nan_spikes_and_plateaus():
    assert loss_anomaly([(i, 1.0 - 0.1 * i) for i in range(8)]) is None
    assert loss_anomaly([(0, 1.0), (1, float("nan"))]) == 1
    assert loss_anomaly([(i, 1.0) for i in range(4)] + [(4, 5.0)]) == 4
    assert loss_anomaly([(i, 2.0 - 0.1 * min(i, 3)) for i in range(10)]) == 7


# --- end to end, on a script the suite has never seen ----------------------------------------------------

SCRIPT = textwrap.dedent('''
    import sys, torch, torch.nn as nn
    seed, bug = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for i in range(8):
        x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
        if not (bug == "accumulate" and i >= 3):
            opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
''')


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    d = tmp_path_factory.mktemp("unseen")
    script = d / "cnn.py"
    script.write_text(SCRIPT)
    cmds = [["python", str(script), "0"], ["python", str(script), "1"], ["python", str(script), "2"],
            ["python", str(script), "3", "accumulate"]]
    dirs = [d / f"t{i}" for i in range(len(cmds))]
    collect_many(cmds, dirs)
    return script, dirs


def test_learn_then_check_an_unseen_script(unseen, tmp_path):
    script, dirs = unseen
    out = tmp_path / "inv.json"
    invs = api.learn(traces=dirs[:2], out=out)
    assert invs and json.loads(out.read_text())["invariants"]
    assert api.check(out, trace=dirs[2]) == []
    v = api.check(out, trace=dirs[3])
    assert v and min(x.iter for x in v) == 3


def test_zygote_and_plain_runs_trace_the_same(unseen, tmp_path):
    script, dirs = unseen
    collect(["python", str(script), "0"], tmp_path)
    a, b = R.Run.load(tmp_path), R.Run.load(dirs[0])
    assert [(c.api, c.iter) for c in a.calls] == [(c.api, c.iter) for c in b.calls]
    assert [sorted(c.post) for c in a.calls] == [sorted(c.post) for c in b.calls]


def test_cli_check_exit_codes(unseen, tmp_path, capsys):
    from syslab.cli import main

    script, dirs = unseen
    inv = tmp_path / "inv.json"
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "learn", "--out", str(inv), "--trace", str(dirs[0]), "--trace", str(dirs[1])])
    assert e.value.code == 0 and inv.is_file()
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "check", "--invariants", str(inv), "--trace", str(dirs[2])])
    assert e.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "check", "--invariants", str(inv), "--trace", str(dirs[3]), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert e.value.code == 1 and report["violations"][0]["iteration"] == 3
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "show", str(tmp_path / "nope.json")])
    assert e.value.code == 2
    # a missing trace folder, and an output path whose folder does not exist: exit 2 before any work
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "check", "--invariants", str(inv), "--trace", str(tmp_path / "nodir")])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
    ran = tmp_path / "ran"
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "learn", "--out", str(tmp_path / "nonexistent" / "x.json"), "--", "python", "-c",
              f"open({str(ran)!r}, 'w')"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--out" in err and "Traceback" not in err and not ran.exists()


def test_a_command_that_fails_on_its_own_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ValueError('broken script')\n")
    with pytest.raises(InputError, match="broken script"):
        collect(["python", str(bad)], tmp_path / "t")
    with pytest.raises(InputError, match="broken script"):
        collect_many([["python", str(bad)]], [tmp_path / "t2"], workers=1)
    plain = tmp_path / "plain.py"
    plain.write_text("print('no torch here')\n")
    with pytest.raises(InputError, match="never imported torch"):
        collect(["python", str(plain)], tmp_path / "t3")
    with pytest.raises(InputError, match="no training command"):
        collect([], tmp_path / "t4")


def test_threshold_invariants_flag_a_zero_learning_rate():
    def step(lr, it):
        return _call("Optimizer.step", it, it, pre={"opt": ("optimizer", {"lr": lr, "params": 1})})
    invs = R.infer([_run([step(0.1, i) for i in range(3)])])
    assert ("positive", "Optimizer.step", "lr") in {i.key for i in invs}
    v = R.check(_run([step(0.1, 0), step(0.0, 1)]), invs)
    assert [(x.invariant.key[0], x.iter) for x in v] == [("positive", 1)]


def test_extra_apis_are_traced_and_saved_with_the_invariants(unseen, tmp_path):
    script, _ = unseen
    out = tmp_path / "inv.json"
    api.learn([["python", str(script), "0"]], out=out, apis=["torch.nn.functional.relu"])
    assert json.loads(out.read_text())["apis"] == ["torch.nn.functional.relu"]
    assert any("nn.functional.relu" in i.text for i in R.load(out))
    assert api.check(out, ["python", str(script), "1"]) == []
    with pytest.raises(InputError, match="cannot find"):
        api.learn([["python", str(script), "0"]], apis=["torch.no_such_api"])


SUBMODULE_LOOP = textwrap.dedent('''
    import sys
    import torch

    seed, mode, bug = int(sys.argv[1]), sys.argv[2], len(sys.argv) > 3
    torch.manual_seed(seed)


    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(8, 16)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(torch.relu(self.enc(x)))


    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for i in range(6):
        x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
        opt.zero_grad()
        if mode == "whole":
            out = net(x)
        else:                                   # no top-level net(x): the loop calls the submodules
            h = torch.relu(net.enc(x))
            if bug and i >= 3:
                h = h.detach()                  # the encoder silently stops learning
            out = net.head(h)
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()
''')


def _param_events(run):
    """Every parameter snapshot around the state APIs, as (api, iteration, phase, variable, attributes)."""
    return [(c.api, c.iter, phase, var, attrs) for c in run.calls if c.api in R.STATE_APIS
            for phase, snap in (("pre", c.pre), ("post", c.post)) for var, (vtype, attrs) in snap.items()
            if vtype == "param"]


@pytest.fixture(scope="module")
def submodule_traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("submodules")
    script = d / "sub.py"
    script.write_text(SUBMODULE_LOOP)
    argvs = [("0", "parts"), ("1", "parts"), ("2", "parts"), ("3", "parts", "bug"), ("0", "whole"), ("1", "whole")]
    dirs = [d / f"t{i}" for i in range(len(argvs))]
    collect_many([["python", str(script), *a] for a in argvs], dirs)
    return dirs


def test_a_loop_that_calls_submodules_directly_is_traced_like_one_that_calls_the_model(submodule_traces):
    parts, whole = R.Run.load(submodule_traces[0]), R.Run.load(submodule_traces[4])
    assert sorted({c.iter for c in parts.calls}) == list(range(6))    # one iteration per step, not per call
    events = _param_events(parts)
    assert {e[3] for e in events} == {"Net.enc.weight", "Net.enc.bias", "Net.head.weight", "Net.head.bias"}
    assert events == _param_events(whole)            # same seed, same computation: the same state, same names
    state = ("changes", "keeps", "const")
    learned = [{i.key for i in api.learn(traces=submodule_traces[k:k + 2]) if i.key[0] in state} for k in (0, 4)]
    assert learned[0] == learned[1]


def test_a_bug_in_a_submodule_calling_loop_is_caught_at_its_trigger(submodule_traces):
    for refs in (submodule_traces[:2], submodule_traces[4:]):        # learned from either form of the loop
        invs = api.learn(traces=refs)
        assert api.check(invs, trace=submodule_traces[2]) == []
        v = api.check(invs, trace=submodule_traces[3])
        assert v and min(x.iter for x in v) == 3
        assert any(x.invariant.key == ("changes", "Tensor.backward", "grad") and x.subject.startswith("Net.enc")
                   for x in v)


# --- online checking ----------------------------------------------------------------------------------------


def _loop(steps, seed, no_zero_grad_from=None, reached=None):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for i in range(steps):
        if reached is not None:
            reached.append(i)
        if no_zero_grad_from is None or i < no_zero_grad_from:
            opt.zero_grad()
        torch.nn.functional.cross_entropy(m(torch.randn(5, 4)), torch.randint(0, 2, (5,))).backward()
        opt.step()


def test_online_check_stops_the_run_as_the_trigger_iteration_ends(tmp_path):
    from syslab.training.traincheck.online import SilentErrorDetected

    runs = []
    for seed in (0, 1):
        with api.tracing() as box:
            _loop(8, seed)
        runs.append(box["run"])
    invs = R.infer(runs)
    with api.tracing(online=invs):
        _loop(8, 2)                                             # clean: runs to the end, nothing raised
    reached = []
    with pytest.raises(SilentErrorDetected) as e, api.tracing(tmp_path, online=invs) as box:
        _loop(8, 3, no_zero_grad_from=3, reached=reached)
    first = e.value.violations[0]
    assert first.iter == 3 and first.reported_at == 3 and reached[-1] == 3    # stopped in its step, 4 early
    assert {v.iter for v in R.check(box["run"], invs)} == {3}   # the offline check of the same prefix agrees
    assert (tmp_path / f"violation-{__import__('os').getpid()}.json").is_file()


def test_cli_online_check_reports_the_trigger_iteration_and_stops_the_run(unseen, tmp_path, capsys, monkeypatch):
    from syslab.cli import main

    script, dirs = unseen
    inv = tmp_path / "inv.json"
    api.learn(traces=dirs[:2], out=inv)
    marked = tmp_path / "marked.py"                  # the unseen script, leaving a mark if it runs to its end
    marked.write_text(SCRIPT + "import os\nopen(os.environ['DONE_MARK'], 'w').close()\n")
    done = tmp_path / "done"
    monkeypatch.setenv("DONE_MARK", str(done))
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "check", "--invariants", str(inv), "--online", "--json", "--", "python", str(marked),
              "2"])
    assert e.value.code == 0 and done.exists()       # a clean run goes to its end, with no violation
    done.unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "check", "--invariants", str(inv), "--online", "--json", "--", "python", str(marked),
              "3", "accumulate"])
    first = json.loads(capsys.readouterr().out)["violations"][0]
    assert e.value.code == 1 and first["iteration"] == 3 and first["reported_at_iteration"] == 3
    assert not done.exists()                         # stopped at its trigger, four iterations before its end
    offline = api.check(inv, trace=dirs[3])
    assert min(v.iter for v in offline) == first["iteration"]
    with pytest.raises(SystemExit) as e:             # online needs a running command, not a finished trace
        main(["traincheck", "check", "--invariants", str(inv), "--online", "--trace", str(dirs[3])])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--online" in err and "Traceback" not in err
