"""Running a burst for real: packs as fresh processes (a container each), workers as threads inside a pack
sharing its memory, a real Redis server between packs.

``run_pagerank`` invokes the job the way each platform would: FaaS mode (``group_size = 1``) starts one
fresh interpreter per worker (``python -m syslab.cloud.burst.pack``); burst mode starts one per pack of
``group_size`` workers (the group invocation), whose threads start together. Each pack loads its edge
partitions from storage (a temporary directory), opens one broker connection per worker, reports ready,
runs the workers and reports done. We time request -> last worker ready (start-up spread) and request ->
result (job time), and read the broker's own byte and message counters. Every pack process is waited for
(killed after ``timeout_s``) and the temporary files removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syslab.cloud.burst import pagerank as PR
from syslab.cloud.burst.comm import Communicator, Mailbox, Network, RedisLink, check_burst
from syslab.cloud.burst.resp import RedisServer, broker_counts, connect

DEFAULT_NETWORK = Network()


@dataclass
class JobResult:
    ranks: np.ndarray
    time_s: float            # request -> ranks written
    startup_s: float         # request -> last worker ready
    remote_bytes: int        # at the broker: bytes in + out
    remote_messages: int     # at the broker: RPUSH calls
    workers: int
    group_size: int

    def summary(self) -> dict:
        return {"time_s": self.time_s, "startup_s": self.startup_s, "remote_bytes": self.remote_bytes,
                "remote_messages": self.remote_messages, "workers": self.workers, "group_size": self.group_size}


def pack_main(args: dict) -> None:
    """A pack: load this pack's partitions, connect its workers to the broker, report ready, run the workers
    as threads, report done (timestamps on stdout as JSON lines)."""
    folder, nodes, size, g, pack = args["folder"], args["nodes"], args["size"], args["group_size"], args["pack"]
    src = np.load(f"{folder}/src.npy", mmap_mode="r")
    dst = np.load(f"{folder}/dst.npy", mmap_mode="r")
    off = np.load(f"{folder}/offsets.npy")
    inv = np.load(f"{folder}/inv_outdeg.npy")
    dangling = np.load(f"{folder}/dangling.npy") if pack == 0 else np.array([], dtype=np.int64)
    network = Network(args["rtt_s"], args["bandwidth_Bps"])
    ids = range(pack * g, (pack + 1) * g)
    mailbox = Mailbox()
    comms = {w: Communicator(w, size, g, mailbox, RedisLink(connect(args["port"])), network, args["job"])
             for w in ids}
    parts = {w: (np.array(src[off[w]:off[w + 1]]), np.array(dst[off[w]:off[w + 1]])) for w in ids}
    print(json.dumps({"ready": time.time()}), flush=True)
    out, errors = {}, []

    def run(w: int) -> None:
        try:
            out[w] = PR.worker(comms[w], *parts[w], inv, dangling, nodes, args["iterations"], args["tol"])
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(w,)) for w in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in comms.values():
        c.remote.client.close()
    if errors:
        raise RuntimeError(errors[0])
    if pack == 0:
        np.save(f"{folder}/ranks.npy", out[0])
    print(json.dumps({"done": time.time()}), flush=True)


def run_pagerank(server: RedisServer, src: np.ndarray, dst: np.ndarray, nodes: int, workers: int,
                 group_size: int, iterations: int, tol: float = 0.0, network: Network = DEFAULT_NETWORK,
                 timeout_s: float = 300.0) -> JobResult:
    check_burst(workers, group_size)
    ctl = server.client()
    ctl.flushall()
    ctl.config_resetstat()
    base = broker_counts(ctl)                      # the counters' own traffic so far
    with tempfile.TemporaryDirectory(prefix="syslab-burst-") as folder:
        outdeg = np.bincount(src, minlength=nodes)
        np.save(f"{folder}/src.npy", src)
        np.save(f"{folder}/dst.npy", dst)
        np.save(f"{folder}/offsets.npy", PR.partition(len(src), workers))
        np.save(f"{folder}/inv_outdeg.npy", np.where(outdeg > 0, 1.0 / np.maximum(outdeg, 1), 0.0))
        np.save(f"{folder}/dangling.npy", np.flatnonzero(outdeg == 0))
        t0 = time.time()
        common = {"folder": folder, "nodes": nodes, "size": workers, "group_size": group_size, "port": server.port,
                  "rtt_s": network.rtt_s, "bandwidth_Bps": network.bandwidth_Bps, "iterations": iterations,
                  "tol": tol, "job": f"pr{int(t0 * 1e6)}"}
        # Pack start-up is measured, so no preexec hook (it turns posix_spawn into a fork of this process, and FaaS
        # mode starts 16 packs to burst's 2). A pack outlives us only until the broker, which dies with us, goes.
        procs = [subprocess.Popen([sys.executable, "-m", "syslab.cloud.burst.pack", json.dumps(common | {"pack": p})],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for p in range(workers // group_size)]
        try:
            stamps = [_read_stamps(p, t0 + timeout_s) for p in procs]
        finally:
            for p in procs:                        # reap every pack, also on errors and timeouts
                if p.poll() is None:
                    p.kill()
                p.communicate()
        ranks = np.load(Path(folder) / "ranks.npy")
    counts = broker_counts(ctl)
    ctl.close()
    return JobResult(ranks, max(s["done"] for s in stamps) - t0, max(s["ready"] for s in stamps) - t0,
                     counts["bytes_in"] + counts["bytes_out"] - base["bytes_in"] - base["bytes_out"],
                     counts["messages"] - base["messages"], workers, group_size)


def _read_stamps(proc: subprocess.Popen, deadline: float) -> dict[str, float]:
    """Wait for a pack to finish (until ``deadline``) and parse its ready/done timestamps."""
    try:
        out, err = proc.communicate(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        raise RuntimeError("a burst pack did not finish in time") from None
    stamps: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            stamps |= json.loads(line)
    if proc.returncode != 0 or "done" not in stamps:
        raise RuntimeError(f"a burst pack failed (exit {proc.returncode}): {err[-2000:]}")
    return stamps
