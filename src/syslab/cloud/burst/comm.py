"""Burst's communication middleware: workers packed into groups; messages inside a group are in-memory and
zero-copy, messages across groups go through a remote broker; collectives built on that.

A burst of ``size`` workers with granularity ``group_size`` has groups of contiguous ids; a group's leader is
its smallest id. FaaS mode is ``group_size = 1`` (every exchange is remote).

* broadcast: the root sends locally to its group and remotely to every other group's leader, which
  re-broadcasts locally: G - 1 remote messages (FaaS: P - 1);
* reduce: a binary tree over worker ids (size a power of two); at level l, worker w with w mod 2^(l+1) = 0
  adds what w + 2^l sends. Groups are contiguous, so the first log2(g) levels stay inside a group: G - 1
  remote messages (FaaS: P - 1). The tree fixes the summation order, so every mode adds the same numbers in
  the same order;
* gather, scatter, all-to-all: point to point, local inside a group, remote otherwise.

Messages are matched by (destination, collective counter, source): every worker calls the same collectives
in the same order. The emulated network sits on each worker's own connection to the broker: every remote
send or receive waits RTT/2 + bytes / bandwidth (assumed constants, see ``Network``), then really goes through
the broker. Payloads are float64 vectors; received arrays are read-only views.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from syslab.core.errors import InputError


@dataclass(frozen=True)
class Network:
    """The link between a worker and the remote broker. Defaults: our notes' suggestion for a cloud VPC to a
    Redis-compatible store, ~1 ms RTT and 100 MB/s per connection (assumptions; the report sweeps them)."""

    rtt_s: float = 1e-3
    bandwidth_Bps: float = 100e6

    def delay(self, nbytes: int) -> float:
        return self.rtt_s / 2 + nbytes / self.bandwidth_Bps


def check_burst(size: int, group_size: int) -> None:
    pow2 = lambda n: n >= 1 and n & (n - 1) == 0                       # noqa: E731
    if not pow2(size) or not pow2(group_size) or group_size > size:
        raise InputError(f"{size} workers in groups of {group_size}.", field="workers/group-size",
                         fix="the tree reduce needs powers of two, with group size <= workers (e.g. 16 and 8).")


class Mailbox:
    """A group's in-memory channels: object references, no copies."""

    def __init__(self):
        self.items: dict[tuple, deque] = defaultdict(deque)
        self.cv = threading.Condition()

    def put(self, key: tuple, obj) -> None:
        with self.cv:
            self.items[key].append(obj)
            self.cv.notify_all()

    def get(self, key: tuple, timeout_s: float = 120.0):
        with self.cv:
            if not self.cv.wait_for(lambda: self.items.get(key), timeout=timeout_s):
                raise TimeoutError(f"no local message {key} within {timeout_s} s")
            return self.items[key].popleft()


class LocalBroker:
    """An in-process broker (for tests and threads-only runs) that counts what passes through it."""

    def __init__(self):
        self.box = Mailbox()
        self.bytes = 0
        self.messages = 0
        self.lock = threading.Lock()

    def push(self, key: str, data: bytes) -> None:
        with self.lock:
            self.bytes += len(data)
            self.messages += 1
        self.box.put((key,), data)

    def pop(self, key: str) -> bytes:
        return self.box.get((key,))


class RedisLink:
    """A worker's own connection to the Redis broker: RPUSH to send, BLPOP to receive."""

    def __init__(self, client, timeout_s: int = 120):
        self.client = client
        self.timeout_s = timeout_s

    def push(self, key: str, data: bytes) -> None:
        self.client.rpush(key, data)

    def pop(self, key: str) -> bytes:
        reply = self.client.blpop([key], timeout=self.timeout_s)
        if reply is None:
            raise TimeoutError(f"no remote message {key} within {self.timeout_s} s")
        return reply[1]


class Communicator:
    def __init__(self, rank: int, size: int, group_size: int, mailbox: Mailbox, remote, network: Network,
                 job: str = "job"):
        check_burst(size, group_size)
        self.rank, self.size, self.g = rank, size, group_size
        self.mailbox, self.remote, self.network, self.job = mailbox, remote, network, job
        self.tag = 0
        self.remote_sent = 0

    def group(self, w: int) -> int:
        return w // self.g

    def leader(self, w: int) -> int:
        return self.group(w) * self.g

    def _send(self, dst: int, arr: np.ndarray) -> None:
        if self.group(dst) == self.group(self.rank):
            self.mailbox.put((dst, self.tag, self.rank), arr)
            return
        data = np.ascontiguousarray(arr, dtype=np.float64).tobytes()
        time.sleep(self.network.delay(len(data)))
        self.remote.push(f"{self.job}:{dst}:{self.tag}:{self.rank}", data)
        self.remote_sent += 1

    def _recv(self, src: int) -> np.ndarray:
        if self.group(src) == self.group(self.rank):
            return self.mailbox.get((self.rank, self.tag, src))
        data = self.remote.pop(f"{self.job}:{self.rank}:{self.tag}:{src}")
        time.sleep(self.network.delay(len(data)))
        return np.frombuffer(data, dtype=np.float64)

    def _members(self, w: int) -> range:
        lead = self.leader(w)
        return range(lead, min(lead + self.g, self.size))

    def broadcast(self, arr: np.ndarray | None, root: int = 0) -> np.ndarray:
        self.tag += 1
        me = self.rank
        if me == root:
            for lead in range(0, self.size, self.g):
                if self.group(lead) != self.group(root):
                    self._send(lead, arr)
            out = arr
        elif self.group(me) == self.group(root):
            return self._recv(root)
        elif me == self.leader(me):
            out = self._recv(root)
        else:
            return self._recv(self.leader(me))
        for w in self._members(me):
            if w != me:
                self._send(w, out)
        return out

    def reduce(self, arr: np.ndarray) -> np.ndarray | None:
        """Sum over all workers to worker 0 by the binary tree; None elsewhere."""
        self.tag += 1
        acc, step = arr, 1
        while step < self.size:
            if self.rank % (2 * step) == 0:
                acc = acc + self._recv(self.rank + step)
            elif self.rank % (2 * step) == step:
                self._send(self.rank - step, acc)
                return None
            step *= 2
        return acc

    def gather(self, arr: np.ndarray, root: int = 0) -> list[np.ndarray] | None:
        self.tag += 1
        if self.rank != root:
            self._send(root, arr)
            return None
        return [arr if w == root else self._recv(w) for w in range(self.size)]

    def scatter(self, chunks: list[np.ndarray] | None, root: int = 0) -> np.ndarray:
        self.tag += 1
        if self.rank != root:
            return self._recv(root)
        for w in range(self.size):
            if w != root:
                self._send(w, chunks[w])
        return chunks[root]

    def all_to_all(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        self.tag += 1
        for w in range(self.size):
            if w != self.rank:
                self._send(w, chunks[w])
        return [chunks[w] if w == self.rank else self._recv(w) for w in range(self.size)]


def remote_fraction(size: int, group_size: int) -> float:
    """Analytic share of FaaS's remote messages a burst still sends, for a broadcast or a tree reduce:
    (G - 1) / (P - 1) with G = P / g groups."""
    check_burst(size, group_size)
    return (size // group_size - 1) / (size - 1) if size > 1 else 0.0
