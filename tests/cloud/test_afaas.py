import json
import os
import subprocess
import sys

import numpy as np
import pytest

from syslab.cloud.afaas import bench as B
from syslab.cloud.afaas import resources as R
from syslab.cloud.afaas.functions import write_function
from syslab.cloud.afaas.reproduce import seed_rule
from syslab.core.errors import InputError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork-based starts need POSIX")


@pytest.fixture
def functions(tmp_path):
    for name in ("alpha", "beta"):
        write_function(tmp_path, name, modules=2, rounds=200)
    return tmp_path


def test_a_written_function_imports_and_answers(functions):
    code = (f"import sys, json; sys.path.insert(0, {str(functions)!r}); import alpha; "
            "print(json.dumps(alpha.handler.handle(7)))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["ok"] and out["echo"] == 7 and out["function"] == "alpha"
    with pytest.raises(InputError):
        write_function(functions, "not-an-identifier")


@pytest.mark.parametrize("cfg", [B.ABLATION[0], B.ABLATION[2], B.ABLATION[-1]], ids=lambda c: c.name.split()[0])
def test_each_platform_starts_fresh_instances_and_leaves_nothing(functions, cfg):
    with B.Platform(cfg, functions, ["alpha", "beta"], "emulated", pool_size=4) as plat:
        answers = [B.ask(plat.entry, {"function": fn, "event": i}) for i, fn in enumerate(["alpha", "beta", "alpha"])]
        assert all(a["ok"] for a in answers), answers
        assert len({a["pid"] for a in answers}) == 3                    # a new process per cold start
        assert answers[0]["init_digest"] == answers[2]["init_digest"]  # same user code, same initialised state
        if cfg.launch == "fork" and cfg.seed:
            assert all(a["user_code_load_s"] < 0.005 for a in answers)  # the seed already imported it
        lat = B.measure(plat, 6, 3)
        assert len(lat) == 6 and min(lat) > 0
        pss = plat.pss_mb()
        tmp = plat.tmp
    assert B.leftovers() == []
    assert not tmp.exists()
    if cfg.launch == "fork":
        assert all(v > 0 for v in pss.values())


def test_an_unknown_function_is_a_clear_error(functions):
    with B.Platform(B.ABLATION[-1], functions, ["alpha"], "emulated", pool_size=1) as plat:
        with pytest.raises(InputError, match="unknown function 'gamma'"):
            B.measure(plat, 1, 1, function="gamma")
        answer = B.ask(plat.entry, {"function": "gamma", "event": 0})      # straight to the daemon
        assert not answer["ok"] and answer["unknown_function"] and "gamma" in answer["error"]
    assert B.leftovers() == []


def test_the_baseline_persists_every_hop(functions):
    cfg = B.ABLATION[0]
    with B.Platform(cfg, functions, ["alpha"], "emulated") as plat:
        B.ask(plat.entry, {"function": "alpha", "event": 0})
        persisted = list(plat.tmp.glob("*-1.json"))
    assert len(persisted) == cfg.hops                                    # one durable write per hop


def test_emulated_sandboxes_are_created_and_removed(tmp_path):
    boxes = R.Sandboxes("emulated", str(tmp_path / "sb"), prefix="syslab-afaas-test")
    names = [boxes.create() for _ in range(3)]
    assert all((tmp_path / "sb" / n / "cpu" / "config").exists() for n in names)
    boxes.destroy_all()
    assert not any((tmp_path / "sb").glob("syslab-afaas-test-*"))


def test_real_sandboxes_when_the_kernel_allows(tmp_path):
    if R.detect() != "real":
        pytest.skip("no permission to create cgroups and network namespaces here")
    boxes = R.Sandboxes("real", str(tmp_path / "sb"), prefix="syslab-afaas-rtest")
    name = boxes.create()
    assert any((c / name).is_dir() for c in R._controllers())
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    boxes.destroy_all()
    assert R.sweep("syslab-afaas-rtest") == 0


def test_seed_rule_trades_latency_for_memory():
    rates = np.array([0.001, 0.1, 10.0])
    keep = seed_rule(rates, init_s=0.4, seed_mb=20.0, kappa=1e-3)
    assert keep.tolist() == [False, True, True]
    assert seed_rule(rates, 0.4, 20.0, kappa=1.0).tolist() == [False, False, False]
