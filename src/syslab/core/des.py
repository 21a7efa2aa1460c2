"""Helpers over SimPy for discrete-event models: a bandwidth-shared link and a server with a queue.

Processes are generator functions that ``yield`` events, as in SimPy; these two resources are the pieces
most serving and cloud models need. Both record what they did so models can report utilisation.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy


class SharedLink:
    """A link of ``gbps`` GB/s shared equally by its concurrent transfers (processor sharing), plus a fixed
    per-message ``latency_s``. ``transfer(n_bytes)`` is a process to ``yield``; it ends when the bytes land.

    Implementation: on every arrival or departure the remaining bytes of active transfers are advanced at
    the old fair share, and one timer process waits for the earliest completion at the new share.
    """

    def __init__(self, env: simpy.Environment, gbps: float, latency_s: float = 0.0) -> None:
        if gbps <= 0:
            raise ValueError("link bandwidth must be positive")
        self.env, self.rate, self.latency_s = env, gbps * 1e9, latency_s
        self._active: dict[int, list[Any]] = {}   # id -> [remaining bytes, done event]
        self._next_id = 0
        self._last = env.now
        self._timer: simpy.Process | None = None
        self.bytes_moved = 0.0
        self.busy_s = 0.0

    def _advance(self) -> None:
        dt = self.env.now - self._last
        if self._active and dt > 0:
            share = self.rate / len(self._active)
            for entry in self._active.values():
                entry[0] -= share * dt
            self.busy_s += dt
        self._last = self.env.now

    def _reschedule(self) -> None:
        if self._timer is not None and self._timer.is_alive:
            self._timer.interrupt()
        if self._active:
            self._timer = self.env.process(self._wait_next())

    def _wait_next(self) -> Generator[Any, Any, None]:
        share = self.rate / len(self._active)
        _, (remaining, _) = min(self._active.items(), key=lambda kv: kv[1][0])
        try:
            yield self.env.timeout(max(remaining, 0.0) / share)
        except simpy.Interrupt:
            return
        self._timer = None          # this process is ending; do not interrupt it
        self._advance()
        for k in [k for k, (rem, _) in self._active.items() if rem <= 1e-6]:
            self._active.pop(k)[1].succeed()
        self._reschedule()

    def transfer(self, n_bytes: float) -> Generator[Any, Any, None]:
        if self.latency_s:
            yield self.env.timeout(self.latency_s)
        if n_bytes <= 0:
            return
        self._advance()
        done = self.env.event()
        self._active[self._next_id] = [float(n_bytes), done]
        self._next_id += 1
        self.bytes_moved += n_bytes
        self._reschedule()
        yield done


@dataclass
class QueueServer:
    """``servers`` identical servers with one FIFO queue; ``serve(duration)`` waits, holds, releases."""

    env: simpy.Environment
    servers: int = 1
    waits_s: list[float] = field(default_factory=list)
    busy_s: float = 0.0

    def __post_init__(self) -> None:
        self.resource = simpy.Resource(self.env, capacity=self.servers)

    def serve(self, duration_s: float) -> Generator[Any, Any, None]:
        arrived = self.env.now
        with self.resource.request() as req:
            yield req
            self.waits_s.append(self.env.now - arrived)
            yield self.env.timeout(duration_s)
            self.busy_s += duration_s

    @property
    def queue_length(self) -> int:
        return len(self.resource.queue)

    def utilisation(self) -> float:
        return self.busy_s / (self.servers * self.env.now) if self.env.now > 0 else 0.0
