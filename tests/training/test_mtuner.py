"""mTuner: the implementation space, the memory and communication arithmetic, the planners against brute
force and each other; the real demo runs in the quick reproduction."""

import dataclasses
import itertools

import numpy as np
import pytest

from syslab.core.hardware import gpu, link
from syslab.core.models import Transformer, model
from syslab.training.mtuner import plan as P
from tests.conftest import table

SERVER = P.Server("PCIe", gpu("A100-80GB"), link("pcie4"))


def test_the_implementation_space_respects_its_constraints():
    assert len({(c.gather_to, c.discard_to, c.bwd_discard_to) for c in P.CHOICES}) == 20
    for c in P.CHOICES:
        assert c.discard_to <= c.gather_to and c.bwd_discard_to <= c.gather_to
        assert c.bwd_discard_to >= c.discard_to and c.tp * c.gather_to == 8


def test_gather_bytes_and_memory_of_the_named_policies():
    w = P.Workload(model("llama2-7b"), 2048)
    weight = w.layer_weight_bytes
    fsdp = P.layer_cost(w, SERVER, P.Choice(8, 1, 1, False))
    cache = P.layer_cost(w, SERVER, P.Choice(8, 8, 1, False))
    tp8 = P.layer_cost(w, SERVER, P.Choice(1, 1, 1, False))
    assert fsdp.gather_bytes == pytest.approx(weight * 14 / 8)          # gather for forward and for backward
    assert cache.gather_bytes == pytest.approx(weight * 7 / 8)          # cached from forward to backward
    assert tp8.gather_bytes == 0 and tp8.tp_s > 0 and fsdp.tp_s == 0
    assert cache.peak_bytes - fsdp.peak_bytes == pytest.approx(weight * 7 / 8)
    rc = P.layer_cost(w, SERVER, P.Choice(8, 1, 1, True))
    assert rc.peak_bytes < fsdp.peak_bytes and fsdp.compute_s < rc.compute_s < 2 * fsdp.compute_s   # + 1 forward


TINY = Transformer("tiny", 3, 1024, 8, 8, 2816, 1000)


def _brute(w, server, choices):
    limit = server.memory_bytes - w.reserve_gb * 1e9
    best = np.inf
    for combo in itertools.product(choices, repeat=w.shape.layers):
        costs = [P.layer_cost(w, server, c) for c in combo]
        if sum(k.peak_bytes for k in costs) <= limit and sum(k.valley_bytes for k in costs) <= limit:
            best = min(best, sum(k.time_s for k in costs))
    return best


@pytest.mark.parametrize("reserve", [79.5, 79.9, 79.95])
def test_counts_program_agrees_with_brute_force_under_tight_memory(reserve):
    w = P.Workload(TINY, 4096, micro_batch=4, reserve_gb=reserve)
    choices = tuple(c for c in P.CHOICES if c.gather_to == 8)[:8]
    exact = _brute(w, SERVER, choices)
    counts = P.solve_counts(w, SERVER, choices)
    assert counts.time_s == pytest.approx(exact) if np.isfinite(exact) else not counts.feasible


def test_mtuner_is_never_worse_than_the_baselines_and_fits():
    for name, seq in (("llama2-13b", 8192), ("llama2-70b", 2048)):
        w = P.Workload(model(name), seq)
        m = P.mtuner(w, SERVER)
        assert P.fits(w, SERVER, m) and len(m.choices) == w.shape.layers
        for base in (P.uniform(w, SERVER, *P.FSDP), P.uniform(w, SERVER, *P.MEGATRON_TP8), P.best_uniform(w, SERVER)):
            assert m.time_s <= base.time_s + 1e-12
        assert len({c.gather_to for c in m.choices}) == 1                # one tensor-parallel degree


def test_the_sensitivity_knobs_are_neutral_at_their_defaults_and_only_slow_things_down():
    w = P.Workload(model("llama2-13b"), 8192)
    c = P.Choice(8, 8, 1, False)
    default = P.layer_cost(w, SERVER, c)
    same = P.layer_cost(w, dataclasses.replace(SERVER, overlap=1.0, link_speed=1.0), c)
    assert same == default and default.time_s == pytest.approx(max(default.compute_s, default.gather_s)
                                                               + default.tp_s)
    serial = P.layer_cost(w, dataclasses.replace(SERVER, overlap=0.0), c)     # no prefetch: compute + gathers
    assert serial.time_s == pytest.approx(default.compute_s + default.gather_s + default.tp_s)
    slow = P.layer_cost(w, dataclasses.replace(SERVER, link_speed=0.5), c)
    assert slow.gather_s > default.gather_s and slow.compute_s == default.compute_s
    assert (slow.peak_bytes, slow.valley_bytes) == (default.peak_bytes, default.valley_bytes)


def test_mtuners_step_time_never_improves_with_less_memory_a_slower_link_or_less_overlap():
    w = P.Workload(model("llama2-13b"), 8192)
    times = [P.mtuner(w, dataclasses.replace(SERVER, gpu=dataclasses.replace(SERVER.gpu, hbm_gb=gb))).time_s
             for gb in (80.0, 64.0, 48.0, 40.0)]
    assert all(a <= b + 1e-12 for a, b in zip(times, times[1:], strict=False))
    for knob, values in (("link_speed", (1.0, 0.5, 0.25)), ("overlap", (1.0, 0.5, 0.0))):
        t = [P.mtuner(w, dataclasses.replace(SERVER, **{knob: v})).time_s for v in values]
        assert all(a <= b + 1e-12 for a, b in zip(t, t[1:], strict=False)), knob


def test_flip_statement_is_computed_from_the_sweep():
    from syslab.training.mtuner import reproduce as M

    rows = [{"memory_gb": 80.0, "pcie_speed": 1.0, "overlap": 1.0, "pcie_avg": 0.04},
            {"memory_gb": 80.0, "pcie_speed": 0.5, "overlap": 1.0, "pcie_avg": 0.10},
            {"memory_gb": 40.0, "pcie_speed": 0.5, "overlap": 1.0, "pcie_avg": 0.20}]
    note = M.flip_statement(M.CLAIMS[0], rows, "pcie_avg")
    assert "holds" in note and "1 of 2" in note and "40 GB + PCIe x0.5 (+0.200)" in note
    assert "2 changed assumptions" in note
    rows[2]["pcie_avg"] = 0.1
    assert "does not flip" in M.flip_statement(M.CLAIMS[0], rows, "pcie_avg")


@pytest.mark.slow
def test_reproduction_sensitivity_table_starts_at_the_claims_setting(quick_reproduction):
    r, _ = quick_reproduction("mtuner")
    assert r["status"] == "ok", r.get("traceback")
    f = {x["id"]: x for x in r["findings"]}
    t = table(r, "Sensitivity")
    row = dict(zip(t["columns"], t["rows"][0], strict=True))
    assert (row["GPU memory (GB)"], row["gather/compute overlap"]) == ("80", 1.0)
    assert row["PCIe avg gain"] == round(f["avg-gain-pcie"]["measured"], 4)
    assert row["PCIe - NVLink"] == round(f["nvlink-gain-smaller"]["measured"], 4)
    assert "sensitivity:" in f["avg-gain-pcie"]["note"] and "sensitivity:" in f["nvlink-gain-smaller"]["note"]
    steps = {(r_[0], r_[1], r_[2]): r_[7] for r_ in t["rows"]}
    assert steps[("80", 13.1, 1.0)] >= steps[("80", 26.3, 1.0)] and steps[("40", 26.3, 1.0)] >= steps[("80", 26.3, 1.0)]


def test_baselines_get_selective_recomputation():
    for name, seq in (("llama2-13b", 8192), ("llama-30b", 8192)):
        w = P.Workload(model(name), seq)
        fsdp = P.uniform(w, SERVER, *P.FSDP)
        plain = P.uniform(w, SERVER, *P.FSDP, selective=False)
        assert fsdp.time_s <= plain.time_s + 1e-12 and P.fits(w, SERVER, fsdp)
        assert {(c.gather_to, c.discard_to, c.bwd_discard_to) for c in fsdp.choices} == {P.FSDP}
        # the same exact solver over FSDP's two choices: no per-layer recompute mix of FSDP is faster
        assert fsdp.time_s == pytest.approx(P.solve_counts(w, SERVER, (P.Choice(*P.FSDP, False),
                                                                       P.Choice(*P.FSDP, True))).time_s)
        assert P.mtuner(w, SERVER).time_s <= P.best_uniform(w, SERVER).time_s + 1e-12


def test_cli_plan_json_and_bad_input(capsys):
    import json

    from syslab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["mtuner", "plan", "--model", "Llama-2-13B", "--server", "nvlink", "--seq", "4096", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and d["model"] == "llama2-13b" and len(d["per_layer"]) == model("llama2-13b").layers
    assert set(d["plans"]) == {"FSDP", "Megatron TP=8", "best uniform", "mTuner"}
    assert d["mtuner_gain_vs_best"] >= -1e-12
    assert all(r["peak_gb"] <= 80 + 1e-9 for r in d["plans"].values() if r["fits"])
    for args in (["--model", "gpt-9"], ["--model", "llama2-7b", "--gpus", "4"], ["--model", "llama2-7b", "--seq", "0"],
                 ["--model", "llama2-7b", "--lora-rank", "0"], ["--model", "llama2-7b", "--server", "infiniband"],
                 ["--model", "llama2-70b", "--seq", "1000000"], ["--model", "llama2-7b", "--seq", "nan"]):
        with pytest.raises(SystemExit) as e:
            main(["mtuner", "plan", *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err, args


def test_the_demos_gather_count_closed_form():
    from syslab.training.mtuner.demo import LAYERS, MODES, expected_gathers

    assert expected_gathers(MODES["cache"]) == LAYERS                 # forward only
    assert expected_gathers(MODES["fsdp"]) == 2 * LAYERS - 1          # the first layer never runs backward
    assert expected_gathers(MODES["fsdp"]) > expected_gathers(MODES["mix"]) > expected_gathers(MODES["cache"])
