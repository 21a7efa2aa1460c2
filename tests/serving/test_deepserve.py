"""DeepServe: the modelled scale-out and the real start-path measurement."""

import os

import numpy as np
import pytest

from syslab.serving import deepserve as D


def test_fork_rounds_double_the_sources():
    st = D.Stages()
    per_round = st.weights_gb / st.fork_gbps
    assert D.deepserve_scaleout_s(1, st) == pytest.approx(per_round + st.deepserve_warmup_s)
    assert D.deepserve_scaleout_s(3, st) == pytest.approx(2 * per_round + st.deepserve_warmup_s)
    assert D.deepserve_scaleout_s(64, st) == pytest.approx(7 * per_round + st.deepserve_warmup_s)


def test_baseline_loads_share_the_storage():
    st = D.Stages()
    assert D.baseline_scaleout_s(1, st) == pytest.approx(12 + 10 + 16 + 4)
    assert D.baseline_scaleout_s(64, st) == pytest.approx(12 + 10 + 16 / (32 / 64) + 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_measured_fork_is_faster_than_cold_and_leaves_no_process(tmp_path):
    m = D.measure_starts(megabytes=32, repeats=1, rng=np.random.default_rng(0), workdir=tmp_path)
    # Only the robust ordering: a fork skips interpreter start-up and imports (~10x); timings are benchmarks.
    assert m["seed"]["client_s"] < m["cold"]["total_s"] and m["prewarm"]["client_s"] < m["cold"]["total_s"]
    assert m["touch"]["touch_s"] >= 0
    assert not list(tmp_path.iterdir())                         # the weight file was removed
    assert not _children()                                       # every helper was reaped (no zombies either)


def _children() -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.append(int(entry))
    return out
