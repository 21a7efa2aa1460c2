"""A template process that forks instances: the generic *zygote* (language runtime and platform libraries
loaded) or a function's *seed* (its user code imported and initialised too).

Run as ``python -m syslab.cloud.afaas.seed SOCKET FUNCTIONS_DIR [FUNCTION]`` (no FUNCTION: a zygote). It
stays single-threaded, so forking is safe (no lock can be held by a thread that the child lacks). For each
connection it reads one JSON request ``{"function": name, "event": ...}`` and forks; the child closes the
listening socket, re-seeds its random generators, imports the function if this is a zygote (lazy user-code
load), runs the handler, writes the JSON answer on the connection and exits without running the parent's
cleanup (``os._exit``). SIGCHLD is ignored so the kernel reaps children at once: no zombies.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"                      # before numpy: no BLAS threads may exist when we fork

import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy  # noqa: E402,F401  (the platform's runtime libraries, shared copy-on-write)


def _recv_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def serve(path: str, functions_dir: str, seeded: str | None) -> None:
    sys.path.insert(0, functions_dir)
    if seeded:
        importlib.import_module(seeded)          # the seed: user code loaded and initialised once
    # Move everything imported so far out of the collector's reach: a forked child that runs the cyclic GC
    # would write to (and so copy) every page holding a tracked object (the standard pre-fork recipe).
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(256)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        req = json.loads(_recv_line(conn) or b"{}")
        if req.get("stop"):
            conn.close()
            break
        pid = os.fork()
        if pid == 0:                             # the new instance
            try:
                gc.disable()                     # a short-lived instance: no collections, no copied pages
                server.close()
                random.seed()
                numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
                t0 = time.perf_counter()
                mod = importlib.import_module(req["function"])
                load_s = time.perf_counter() - t0
                out = mod.handler.handle(req.get("event"))
                out["user_code_load_s"] = load_s
                conn.sendall((json.dumps(out) + "\n").encode())
            except BaseException as e:           # report, never fall back into the parent's loop
                try:
                    conn.sendall((json.dumps({"ok": False, "error": repr(e)}) + "\n").encode())
                finally:
                    os._exit(1)
            os._exit(0)
        conn.close()
    server.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
