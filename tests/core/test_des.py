import pytest
import simpy

from syslab.core.des import QueueServer, SharedLink


def _run_transfers(starts_and_bytes, gbps=1.0, latency_s=0.0):
    env = simpy.Environment()
    link = SharedLink(env, gbps, latency_s)
    done = {}

    def client(i, start, n):
        yield env.timeout(start)
        yield env.process(link.transfer(n))
        done[i] = env.now

    for i, (start, n) in enumerate(starts_and_bytes):
        env.process(client(i, start, n))
    env.run()
    return done, link


def test_single_transfer_is_latency_plus_size_over_bandwidth():
    done, link = _run_transfers([(0.0, 2e9)], gbps=1.0, latency_s=0.5)
    assert done[0] == pytest.approx(2.5)
    assert link.bytes_moved == 2e9


def test_concurrent_transfers_share_bandwidth_equally():
    done, _ = _run_transfers([(0.0, 1e9), (0.0, 1e9)])
    assert done[0] == pytest.approx(2.0) and done[1] == pytest.approx(2.0)


def test_staggered_transfers_processor_sharing():
    # A: 2 GB from t=0; B: 1 GB from t=1. Alone A moves 1 GB by t=1; then both share 0.5 GB/s each:
    # B finishes at t=3, A has 0 left at t=3 as well.
    done, _ = _run_transfers([(0.0, 2e9), (1.0, 1e9)])
    assert done[1] == pytest.approx(3.0) and done[0] == pytest.approx(3.0)


def test_queue_server_fifo_waits():
    env = simpy.Environment()
    server = QueueServer(env, servers=1)
    for _ in range(3):
        env.process(server.serve(1.0))
    env.run()
    assert server.waits_s == [0.0, 1.0, 2.0]
    assert server.utilisation() == pytest.approx(1.0)
