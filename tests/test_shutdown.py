"""Clean shutdown: SIGTERM in the middle of a long-running tool leaves nothing behind.

Each tool runs in its own process session (``setsid``), with TMPDIR pointing at a private folder. Once its
children are up, the session leader gets SIGTERM; it must exit 143 without a traceback, and afterwards no
process of that session, no new syslab entry in /dev/shm and nothing in its TMPDIR may remain."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need

SHM = Path("/dev/shm")


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is ``sid``, from /proc."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def shm_entries() -> set[str]:
    return {p.name for p in SHM.iterdir() if "syslab" in p.name} if SHM.is_dir() else set()


def terminate_mid_run(args: list[str], tmp_path: Path, children: int, timeout_s: float = 120.0,
                      settle_s: float = 0.5) -> str:
    """Start ``python -m syslab.cli ARGS`` in a new session, wait until it has ``children`` live descendants,
    SIGTERM the leader, and check that everything is gone. Returns its stderr."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    before = shm_entries()
    proc = subprocess.Popen([sys.executable, "-m", "syslab.cli", *args], start_new_session=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + timeout_s
    while len(session_pids(proc.pid)) < 1 + children:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{args} ended (exit {proc.returncode}) before its children were up: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{args}: {children} children never appeared")
        time.sleep(0.05)
    time.sleep(settle_s)                                  # well inside the run, not at its first fork
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{args} did not exit within 60 s of SIGTERM")
    left = session_pids(proc.pid)
    for _ in range(100):                                  # children get their own SIGTERM; give them 10 s
        if not left:
            break
        time.sleep(0.1)
        left = session_pids(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert not left, f"processes left behind: {left}"
    assert shm_entries() <= before, f"/dev/shm entries left behind: {shm_entries() - before}"
    assert not list(tmp.iterdir()), f"temporary files left behind: {list(tmp.iterdir())}"
    return err


@pytest.mark.slow
def test_sigterm_burst_stops_redis_and_packs(tmp_path):
    from syslab.cloud.burst.resp import server_executable

    if server_executable() is None:
        pytest.skip("no Redis-compatible server")
    # the server and both packs of a 16-worker burst, mid-iteration
    terminate_mid_run(["burst", "pagerank", "--workers", "16", "--group-size", "8", "--iterations", "200"], tmp_path,
                      children=3)


@pytest.mark.slow
def test_sigterm_afaas_stops_every_daemon_and_seed(tmp_path):
    terminate_mid_run(["afaas", "bench", "--concurrency", "4", "--requests", "200"], tmp_path, children=2,
                      settle_s=2.0)


@pytest.mark.slow
def test_sigterm_dede_reaps_its_workers_and_shared_state(tmp_path):
    store = need("dede_inputs")
    topo = store.path("dede_inputs", "UsCarrier.json")
    terminate_mid_run(["dede", "te", "--topology", str(topo), "--pairs", "3000", "--workers", "2"], tmp_path,
                      children=2)


@pytest.mark.slow
def test_sigterm_poby_removes_its_pool_and_scratch(tmp_path):
    terminate_mid_run(["poby", "provision"], tmp_path, children=1, settle_s=1.0)


@pytest.mark.slow
def test_sigterm_reproduce_stops_its_pool(tmp_path):
    terminate_mid_run(["reproduce", "kamino", "kvcache-wild", "--out", str(tmp_path / "report"), "--jobs", "2"],
                      tmp_path, children=2, settle_s=1.0)


@pytest.mark.slow
def test_sigterm_during_a_gloo_demo_leaves_no_rank(tmp_path):
    pytest.importorskip("torch")
    # `syslab run greyhound` ends in a REAL demo: a launcher and four gloo ranks training with DDP
    terminate_mid_run(["run", "greyhound", "--out", str(tmp_path / "report")], tmp_path, children=5, timeout_s=240)
