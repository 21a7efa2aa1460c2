"""One hop of a serverless control path: a threaded Unix-socket RPC daemon.

Run as ``python -m syslab.cloud.afaas.daemon CONFIG.json``. A *forwarding* hop (``next`` set) optionally
persists the request to disk with fsync (standing in for a Kubernetes object written to etcd) and passes it
on; the *launcher* (no ``next``) acquires the instance's sandbox resources, starts the instance and relays its
answer. Launch modes: ``spawn`` (a fresh interpreter imports the runtime and the function, then runs it),
``fork`` (ask the function's seed, or the generic zygote, to fork an instance) or ``noop`` (answer at once:
to time the control path alone).

Sandbox resources per instance (``resources.py``): fresh, created on the critical path, or taken from a pool
created in advance and recycled. The daemon removes every resource it created when it stops (SIGTERM).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from syslab.cloud.afaas import resources as R

RUNNER = """
import os, sys, json, time
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
t0 = time.perf_counter()
import numpy, importlib
sys.path.insert(0, sys.argv[1])
mod = importlib.import_module(sys.argv[2])
load = time.perf_counter() - t0
out = mod.handler.handle(json.loads(sys.argv[3]))
out["user_code_load_s"] = load
print(json.dumps(out))
"""


def ask(path: str, request: dict, timeout: float = 120.0) -> dict:
    """Send one JSON request to a Unix-socket server and read its one-line JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf) if buf else {"ok": False, "error": "empty answer"}


class Daemon:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.counter = 0
        self.lock = threading.Lock()
        self.sandboxes = R.Sandboxes(cfg["resource_kind"], cfg["resource_dir"], prefix=cfg["prefix"])
        self.pool: queue.Queue | None = None
        if cfg.get("pool", 0) > 0:
            self.pool = queue.Queue()
            for _ in range(cfg["pool"]):
                self.pool.put(self.sandboxes.create())

    def handle(self, req: dict) -> dict:
        cfg = self.cfg
        if cfg.get("persist_dir"):
            with self.lock:
                self.counter += 1
                n = self.counter
            _persist(Path(cfg["persist_dir"]) / f"{os.getpid()}-{n}.json", req)
        if cfg.get("next"):
            return ask(cfg["next"], req)
        if cfg["launch"] == "noop":                                # the control path alone
            return {"ok": True, "pid": os.getpid()}
        fn = req.get("function")
        if not isinstance(fn, str) or not fn.isidentifier() or not (Path(cfg["functions_dir"]) / fn).is_dir():
            return {"ok": False, "error": f"unknown function {fn!r}", "unknown_function": True}
        box = self.pool.get() if self.pool is not None else self.sandboxes.create()
        try:
            if cfg["launch"] == "spawn":
                proc = subprocess.run([sys.executable, "-c", RUNNER, cfg["functions_dir"], req["function"],
                                       json.dumps(req.get("event"))], capture_output=True, text=True, timeout=120)
                if proc.returncode != 0:
                    return {"ok": False, "error": proc.stderr[-500:]}
                return json.loads(proc.stdout)
            seed = cfg.get("seeds", {}).get(req["function"]) or cfg["zygote"]
            return ask(seed, req)
        finally:
            if self.pool is not None:
                self.pool.put(self.sandboxes.recycle(box))
            else:
                self.sandboxes.destroy(box)

    def close(self) -> None:
        self.sandboxes.destroy_all()


def _persist(path: Path, req: dict) -> None:
    """Write the request durably: the file and its directory entry reach the disk before we go on."""
    with open(path, "w") as f:
        json.dump(req, f)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    daemon = Daemon(cfg)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            try:
                out = daemon.handle(json.loads(line))
            except Exception as e:  # a failed instance is an answer, not a dead daemon
                out = {"ok": False, "error": repr(e)}
            self.wfile.write((json.dumps(out) + "\n").encode())

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        request_queue_size = 256

    server = Server(cfg["listen"], Handler)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        daemon.close()


if __name__ == "__main__":
    main(sys.argv[1])
