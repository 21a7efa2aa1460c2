"""The remote backend: a real Redis server (Debian's ``redis-server``) on a loopback port, and a minimal RESP2
client for the five commands the middleware needs (RPUSH, BLPOP, INFO, CONFIG RESETSTAT, FLUSHALL).

Bytes and messages are counted *at the broker* (``INFO stats`` and ``INFO commandstats``), not at the workers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from syslab.core.errors import InputError


class RespError(RuntimeError):
    pass


class Redis:
    """One connection. Values are bytes; replies are parsed into bytes, int, list or None."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = self.sock.makefile("rb")

    def command(self, *args: bytes | str | int):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"".join([b"*%d\r\n" % len(parts)] + [b"$%d\r\n%s\r\n" % (len(p), p) for p in parts]))
        return self._reply()

    def _reply(self):
        line = self.buf.readline()
        if not line:
            raise RespError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError(f"unexpected reply {line[:40]!r}")

    def info(self, section: str) -> dict[str, str]:
        text = self.command("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    def close(self) -> None:
        try:
            self.buf.close()
            self.sock.close()
        except OSError:
            pass


def broker_counts(r: Redis) -> dict[str, int]:
    """What the broker saw since the last reset: bytes in and out, RPUSH (messages sent) calls."""
    stats = r.info("stats")
    cmd = r.info("commandstats").get("cmdstat_rpush", "calls=0")
    calls = int(dict(kv.split("=") for kv in cmd.split(","))["calls"])
    return {"bytes_in": int(stats["total_net_input_bytes"]), "bytes_out": int(stats["total_net_output_bytes"]),
            "messages": calls}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence; stopped and reaped on exit."""

    def __init__(self, executable: str | None = None):
        exe = executable or shutil.which("redis-server")
        if exe is None:
            raise InputError("redis-server is not installed.", field="redis-server",
                             fix="install it (Debian: apt-get install redis-server); .ci/run does this.")
        self.exe = exe
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.dir = tempfile.TemporaryDirectory(prefix="syslab-redis-")

    def __enter__(self) -> RedisServer:
        for _ in range(5):                         # a port can be taken between choosing and binding it
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir.name, "--logfile", str(Path(self.dir.name) / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    c = Redis(self.port, timeout_s=2)
                    c.command("PING")
                    c.close()
                    return self
                except (OSError, RespError):
                    time.sleep(0.02)
            self._stop()
        raise RuntimeError(f"redis-server did not start; see {self.dir.name}/redis.log")

    def client(self) -> Redis:
        return Redis(self.port)

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __exit__(self, *exc) -> None:
        self._stop()
        self.dir.cleanup()
