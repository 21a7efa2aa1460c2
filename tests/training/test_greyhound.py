"""GreyHound: period finding, BOCD against a scalar reference, the paper's checks, the solvers against brute
force, the ladder's simulation, and the tools."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from syslab.core.errors import InputError
from syslab.training.greyhound import detect as D
from syslab.training.greyhound import mitigate as M


def test_autocorrelation_matches_the_direct_sum():
    x = np.random.default_rng(0).normal(size=50)
    xc = x - x.mean()
    direct = np.array([np.dot(xc[: 50 - k], xc[k:]) for k in range(11)]) / np.dot(xc, xc)
    assert np.allclose(D.autocorrelation(x, 10), direct)


def test_period_and_iteration_times_from_a_call_log():
    pattern = [4, 1, 1, 2, 7, 3]
    ids = np.array([2, 1] + pattern * 30)                  # two stray calls before the loop settles
    durations = np.random.default_rng(1).uniform(0.9, 1.1, 30)
    ts = np.concatenate([[0.0, 0.05], 0.1 + np.repeat(np.r_[0, np.cumsum(durations)[:-1]], 6)
                         + np.tile(np.linspace(0, 0.5, 6), 30)])
    period, its = D.iteration_times(ids, ts)
    assert period == 6 and np.allclose(its, durations[:-1])
    with pytest.raises(InputError, match="no repeating pattern"):
        D.iteration_times(np.random.default_rng(2).integers(0, 5, 100), np.arange(100.0))
    with pytest.raises(InputError, match="timestamps"):
        D.iteration_times(np.arange(5), np.arange(4.0))


def _naive_bocd(z, hazard, max_run):
    """Adams & MacKay, one point at a time with scipy's Student-t and explicit sufficient statistics."""
    R = np.array([1.0])
    params = [(0.0, 1.0, 1.0, 1.0)]
    out = []
    for x in z:
        pred = np.array([stats.t.pdf(x, 2 * a, loc=m, scale=math.sqrt(b * (k + 1) / (a * k))) for m, k, a, b in params])
        joint = R * pred
        R = np.r_[joint.sum() * hazard, joint * (1 - hazard)]
        params = [(0.0, 1.0, 1.0, 1.0)] + [((k * m + x) / (k + 1), k + 1, a + 0.5, b + k * (x - m) ** 2 / (2 * (k + 1)))
                                           for m, k, a, b in params]
        R = R / R.sum()
        out.append(np.pad(R, (0, max(0, max_run + 1 - len(R))))[: max_run + 1])
    return np.array(out)


def test_bocd_posterior_matches_a_scalar_reference():
    z = np.r_[np.random.default_rng(3).normal(0, 1, 25), np.random.default_rng(4).normal(4, 1, 15)]
    cfg = D.BOCDConfig(hazard=1 / 30, max_run=60)
    got = []
    D.run_length_posteriors(z[None, :], cfg, lambda t, R: got.append(R[0].copy()))
    assert np.allclose(np.array(got), _naive_bocd(z, cfg.hazard, cfg.max_run), atol=1e-9)


def test_detect_finds_level_shifts_ignores_spikes_and_small_changes():
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 0.02, 800)
    x[300:500] *= 1.3
    x[[100, 200, 650]] *= 2.5                              # single-iteration spikes
    x[600:] *= 1.05                                        # a 5% shift: below the paper's 10% check
    cps = D.detect(x)[0]
    assert [c.index for c in cps] == [300, 500]
    assert cps[0].slowdown and not cps[1].slowdown
    assert all(c.index <= c.detected_at <= c.index + 5 for c in cps)
    assert cps[0].after == pytest.approx(1.3, rel=0.02)


def test_detect_rejects_bad_series():
    with pytest.raises(InputError):
        D.detect(np.array([1.0, -1.0, 2.0, 1.0]))
    with pytest.raises(InputError):
        D.detect(np.array([1.0, 2.0]))


@pytest.mark.parametrize("persistence, spike_filter", [(1, False), (3, False), (3, True), (2, True)])
def test_threshold_baseline_matches_its_definition(persistence, spike_filter):
    x = np.random.default_rng(6).normal(1, 0.05, (3, 120))
    x[0, 60] = 2.0                                                     # a spike
    x[1, 80:90] *= 1.5                                                 # a fail-slow
    got = D.threshold_detect(x, window=10, persistence=persistence, spike_filter=spike_filter)
    ref = D.remove_spikes(x) if spike_filter else x
    lag = 2 if spike_filter else 0
    for row, alarms in zip(ref, got, strict=True):
        expect, run = [], 0
        for t in range(1, len(row)):
            run = run + 1 if row[t] > 1.1 * np.median(row[max(0, t - 10): t]) else 0
            if run == persistence:
                expect.append(min(t + lag, len(row) - 1))
        assert alarms == expect
    assert (60 in got[0]) == (persistence == 1 and not spike_filter)  # the rules exist to drop spikes
    assert any(80 <= a <= 80 + persistence + lag for a in got[1])


def test_score_onsets_counts_hits_misses_and_false_alarms():
    truth = [[D.FailSlow(100, 200, 1.3), D.FailSlow(500, 600, 1.3)], []]
    s = D.score_onsets([[103, 150, 560], [40]], truth, 1000, tolerance=30)
    assert (s.true_positives, s.missed, s.false_alarms) == (1, 1, 3) and s.delays == (3,)


def test_synthetic_series_has_the_events_it_reports():
    x, truth = D.synthetic_series(5, 1000, np.random.default_rng(7), spike_rate=0.0)
    for row, events in zip(x, truth, strict=True):
        for e in events:
            assert 1.1 <= e.factor <= 1.6 and 20 <= e.end - e.start <= 400
            assert np.median(row[e.start: e.end]) == pytest.approx(e.factor, rel=0.05)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 3.0), min_size=2, max_size=4), st.integers(0, 6))
def test_rebalance_is_optimal_against_brute_force(times, extra):
    total = len(times) + extra
    got = M.rebalance_microbatches(np.array(times), total)
    assert got.sum() == total and (got >= 1).all()
    best = min(max(n * t for n, t in zip(split, times, strict=True))
               for split in itertools.product(range(1, total + 1), repeat=len(times)) if sum(split) == total)
    assert max(got * np.array(times)) == pytest.approx(best)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.2, 2.0), st.floats(0.0, 3.0)), min_size=2, max_size=4), st.integers(0, 6))
def test_repartition_is_optimal_against_brute_force(stages, extra):
    a, b = np.array([s[0] for s in stages]), np.array([s[1] for s in stages])
    layers = len(stages) + extra
    got = M.repartition_layers(a, b, layers)
    assert got.sum() == layers and (got >= 1).all()
    best = min(max(k * x + y for k, x, y in zip(split, a, b, strict=True))
               for split in itertools.product(range(1, layers + 1), repeat=len(stages)) if sum(split) == layers)
    assert max(got * a + b) == pytest.approx(best)


def test_s2_on_one_slow_rank():
    split = M.rebalance_microbatches(np.r_[1.5, np.ones(7)] * 0.12, 64)
    assert split[0] == 6 and split.sum() == 64 and max(split * np.r_[1.5, np.ones(7)]) == 9


def test_simulation_policies():
    job, costs = M.Job(), M.Costs(storage_gbps=5.0)     # a slow store: restarting costs 93 s, so the ladder waits
    healthy = job.step_s(job.even(), np.ones(job.dp))
    n = 4000
    s1 = M.simulate(job, costs, "s1", n, 0, 1.5, 600.0, 1800.0)
    assert s1.actions == []
    lost = s1.finish_s - n * healthy
    slow = job.step_s(job.even(), np.r_[1.5, np.ones(7)])
    assert lost == pytest.approx(1800.0 * (1 - healthy / slow), rel=0.01)   # the fail-slow's wall time, slowed
    s4 = M.simulate(job, costs, "s4", n, 0, 1.5, 600.0, 1800.0)
    assert [a for _, a in s4.actions] == ["detected, profiled", "S4 restart"]
    ladder = M.simulate(job, costs, "ladder", n, 0, 1.5, 600.0, 60.0)        # short: S2, then undone
    assert [a.split(" [")[0] for _, a in ladder.actions] == ["detected, profiled", "S2 rebalance", "S2 undone"]
    quiet = M.simulate(job, costs, "ladder", 500, 0, 1.5, 1e9, 10.0)         # never slowed
    assert quiet.actions == [] and quiet.finish_s == pytest.approx(500 * healthy)


def test_cli_detect_and_period(tmp_path, capsys):
    from syslab.cli import main

    x = np.random.default_rng(8).normal(1.0, 0.02, 400)
    x[200:] *= 1.5
    p = tmp_path / "it.csv"
    p.write_text("iter_time_s\n" + "\n".join(map(str, x)) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["greyhound", "detect", "--iter-times", str(p), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and [c["index"] for c in d["change_points"]] == [200]
    assert set(d["change_points"][0]) == {"index", "detected_at", "before_s", "after_s"}
    calls = tmp_path / "calls.csv"
    calls.write_text("call_id,timestamp_s\n" + "\n".join(f"{i % 3},{i * 0.1}" for i in range(60)) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["greyhound", "period", "--calls", str(calls), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and d["period"] == 3 and np.allclose(d["iter_times_s"], 0.3)
    p.write_text("seconds\n1.0\n")
    with pytest.raises(SystemExit) as e:
        main(["greyhound", "detect", "--iter-times", str(p)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "iter_time_s" in err and "Traceback" not in err


def test_communication_fail_slow_gets_a_pipeline_repartition():
    job, costs = M.PipelineJob(), M.Costs()
    slow = np.r_[1.0, 5.0, 1.0, 1.0]
    split = job.mitigate(slow)
    assert split.sum() == job.layers and split[1] < split[0]
    assert job.step_s(split, slow) < job.step_s(job.even(), slow)
    ladder = M.simulate(job, costs, "ladder", 3000, 1, 5.0, 600.0, 120.0)
    assert [a.split(" [")[0] for _, a in ladder.actions] == ["detected, profiled", "S3 re-partition", "S3 undone"]


@pytest.mark.parametrize("kind, factor, action", [("comp", 1.5, "S2 rebalance"), ("comm", 5.0, "S3 re-partition")])
def test_hybrid_dp_pp_job_gets_the_matching_adjustment(kind, factor, action):
    job, costs = M.HybridJob(kind), M.Costs()
    slow = np.ones(job.units)
    slow[5] = factor                                                   # group 1, stage 1
    config = job.mitigate(slow)
    assert config.sum() == (job.microbatches if kind == "comp" else job.layers)
    assert job.step_s(config, slow) < job.step_s(job.even(), slow)
    assert job.step_s(job.even(), np.ones(job.units)) < job.step_s(job.even(), slow)
    run = M.simulate(job, costs, "ladder", 3000, 5, factor, 600.0, 60.0)
    assert [a.split(" [")[0] for _, a in run.actions][:2] == ["detected, profiled", action]


@pytest.mark.parametrize("body, field", [
    ("iter_time_s\n", "iter_time_s"),                                  # header only
])
def test_cli_detect_rejects_a_header_only_csv(tmp_path, capsys, body, field):
    from syslab.cli import main

    p = tmp_path / "it.csv"
    p.write_text(body)
    with pytest.raises(SystemExit) as e:
        main(["greyhound", "detect", "--iter-times", str(p)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and field in err and "Traceback" not in err and p.read_text() == body


def test_cli_period_rejects_decreasing_timestamps(tmp_path, capsys):
    from syslab.cli import main

    rows = [f"{i % 3},{i * 0.1}" for i in range(60)]
    rows[30] = "0,0.5"                                                 # earlier than the call before it
    p = tmp_path / "calls.csv"
    p.write_text("call_id,timestamp_s\n" + "\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["greyhound", "period", "--calls", str(p)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "timestamp_s" in err and "call 30" in err and "Traceback" not in err


def test_the_online_detector_declares_exactly_what_the_batch_detector_does():
    x, _ = D.synthetic_series(12, 1500, np.random.default_rng(11))
    batch = D.detect(x)
    for row, expected in zip(x, batch, strict=True):
        det, online = D.OnlineDetector(), []
        for k, v in enumerate(row):
            cp = det.push(v)
            if cp is not None:
                assert cp.detected_at == k                              # reported the moment it is known
                online.append(cp)
        assert [(c.index, c.detected_at) for c in online] == [(c.index, c.detected_at) for c in expected]
        assert all(c.detected_at >= c.index + 2 for c in online)          # the spike filter's look-ahead


def test_a_slow_drift_escapes_bocd_and_the_threshold_but_not_the_level_guard():
    rng = np.random.default_rng(12)
    level = np.ones(2400)
    level[400:1000] = np.linspace(1.0, 1.5, 600)
    level[1000:] = 1.5
    x = level * rng.normal(1.0, 0.03, level.size)
    assert not [c for c in D.detect(x)[0] if c.slowdown]               # BOCD absorbs the creep
    crossing = int(np.argmax(level > 1.1))
    guard = D.level_alarm(x)
    assert guard is not None and crossing - 20 <= guard <= crossing + 40       # noise: a few early or late
    assert D.level_alarm(rng.normal(1.0, 0.03, 2000)) is None


def test_root_cause_follows_the_artifacts_thresholds():
    ones = np.ones(8)
    assert M.root_cause(np.r_[ones[:3], 2.1, ones[4:]], ones) == ("comp", 3)
    assert M.root_cause(np.r_[ones[:3], 1.9, ones[4:]], ones) == (None, 3)       # 1.9x: not over 2x the median
    assert M.root_cause(np.r_[ones[:3], 1.9, ones[4:]], np.r_[ones[:6], 1.2, 1.0]) == ("comm", 6)


def test_the_detector_in_the_loop_finds_localises_and_pays_for_what_it_sees():
    job, costs = M.Job(), M.Costs()
    healthy = job.step_s(job.even(), np.ones(job.dp))
    run = M.simulate(job, costs, "ladder", 3000, 2, 1.5, 600.0, 900.0, sensing=M.Sensing(seed=1))
    assert run.onset_iteration is not None and run.first_true_detection is not None
    assert 2 <= run.first_true_detection - run.onset_iteration <= 10
    assert run.detections[0][1:3] == (True, 2)                          # the right unit is blamed
    assert [a.split(" [")[0] for _, a in run.actions][:2] == ["detected, profiled", "S2 rebalance"]
    s1 = M.simulate(job, costs, "s1", 3000, 2, 1.5, 600.0, 900.0, sensing=M.Sensing(seed=1))
    assert s1.detections == [] and run.finish_s < s1.finish_s
    # never slowed: whatever the detector raises on noise is a false alarm and costs its pause
    quiet = M.simulate(job, costs, "ladder", 3000, 2, 1.5, 1e9, 10.0, sensing=M.Sensing(seed=2, noise=0.08))
    assert all(not real for _, real, *_ in quiet.detections)
    assert quiet.finish_s >= 3000 * healthy + quiet.false_alarms * costs.profile_s - 1e-6
    # the oracle sees the slowdown exactly detect_after iterations in
    oracle = M.simulate(job, costs, "ladder", 3000, 2, 1.5, 600.0, 900.0)
    assert oracle.first_true_detection - oracle.onset_iteration == 2


def test_the_fair_threshold_has_far_fewer_false_alarms_than_the_bare_one_and_more_than_ours():
    x, truth = D.synthetic_series(40, 2000, np.random.default_rng(13))
    fair = D.score_onsets(D.threshold_detect(x), truth, 2000)
    bare = D.score_onsets(D.threshold_detect(x, persistence=1, spike_filter=False), truth, 2000)
    assert fair.false_alarms < bare.false_alarms / 10 and fair.f1 > bare.f1
