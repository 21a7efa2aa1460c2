"""Start a small serverless platform on this machine, drive cold starts through it, tear it down.

A *configuration* says how an instance is started: through 5 forwarding hops that persist each request
with fsync (a Kubernetes-like pod path) or one hop straight to the node's runtime daemon (AFaaS's
Function Runtime Interface, FRI); with sandbox resources created on the critical path or taken from a pool;
by spawning a fresh interpreter or forking the generic zygote (user code then imported in the child) or the
function's seed (user code already initialised). ``ABLATION`` adds one technique at a time, from the
baseline to AFaaS. Every process started is stopped and waited for, and every sandbox removed, even when a
measurement fails.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syslab.cloud.afaas import resources as R
from syslab.cloud.afaas.daemon import ask
from syslab.cloud.afaas.functions import write_function
from syslab.core.errors import InputError
from syslab.core.lifecycle import child_of_me


@dataclass(frozen=True)
class Config:
    name: str
    hops: int
    persist: bool
    pool: bool
    launch: str                                   # "spawn" | "fork"
    seed: bool                                    # fork from the function's seed (else the zygote)


ABLATION = (
    Config("baseline (5 hops, fresh sandbox, spawn)", 5, True, False, "spawn", False),
    Config("+ FRI (1 hop, no persistence)", 1, False, False, "spawn", False),
    Config("+ zygote fork (user code loaded in the child)", 1, False, False, "fork", False),
    Config("+ seed (user code initialised before the fork)", 1, False, False, "fork", True),
    Config("+ sandbox pool = AFaaS", 1, False, True, "fork", True),
)


def _start(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    """A daemon or template, started before any timing; it dies with us even if we are killed outright."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=child_of_me())
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        err = proc.stderr.read() if proc.stderr else ""
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{cmd[2:4]} did not start: {line!r} {err[-400:]}")
    return proc


def control_path(hops: int, persist: bool, n: int, concurrency: int = 1) -> list[float]:
    """Round trips through the control path alone (the launcher answers at once): what FRI removes."""
    cfg = Config(f"{hops} hops", hops, persist, False, "noop", False)
    with Platform(cfg, Path(tempfile.gettempdir()), ["none"], "emulated", pool_size=0) as plat:
        measure(plat, 1, 1)
        return measure(plat, n, concurrency)


def runtime_start(n: int, resource_kind: str = "emulated") -> dict[str, list[float]]:
    """Cold starts of a function with almost no user code (so what is left is booting the interpreter and
    importing the platform libraries) by spawning versus forking the generic zygote: what the zygote
    removes. One hop, pooled sandboxes."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="afaas-light-") as d:
        root = Path(d)
        prepare_functions(root, ["light"], modules=1, rounds=0)
        for name, launch in (("spawn", "spawn"), ("zygote fork", "fork")):
            cfg = Config(name, 1, False, True, launch, False)
            with Platform(cfg, root, ["light"], resource_kind, pool_size=2) as plat:
                measure(plat, 1, 1)
                out[name] = measure(plat, n, 1)
    return out


def sandbox_costs(kind: str, n: int, concurrency: int = 1) -> dict[str, list[float]]:
    """Seconds to get and give back one sandbox: created and destroyed on the critical path, or taken from a
    pool and returned; ``concurrency`` threads at once (creation serialises on the kernel's locks)."""
    import queue

    work = Path(tempfile.mkdtemp(prefix="afaas-sb-"))
    prefix = f"syslab-afaas-{uuid.uuid4().hex[:6]}"
    boxes = R.Sandboxes(kind, str(work), prefix)
    out: dict[str, list[float]] = {"fresh": [], "pooled": []}
    try:
        pool: queue.Queue = queue.Queue()
        for _ in range(concurrency):
            pool.put(boxes.create())

        def fresh() -> float:
            t0 = time.perf_counter()
            boxes.destroy(boxes.create())
            return time.perf_counter() - t0

        def pooled() -> float:
            t0 = time.perf_counter()
            pool.put(boxes.recycle(pool.get()))
            return time.perf_counter() - t0

        with ThreadPoolExecutor(concurrency) as ex:
            out["fresh"] = list(ex.map(lambda _: fresh(), range(n)))
            out["pooled"] = list(ex.map(lambda _: pooled(), range(n)))
    finally:
        boxes.destroy_all()
        R.sweep(prefix)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return out


class Platform:
    """The daemons and template processes of one configuration (a context manager)."""

    def __init__(self, cfg: Config, functions_dir: Path, functions: list[str], resource_kind: str,
                 pool_size: int = 40):
        self.cfg, self.functions_dir, self.functions = cfg, functions_dir, functions
        self.resource_kind, self.pool_size = resource_kind, pool_size
        self.tmp = Path(tempfile.mkdtemp(prefix="afaas-"))
        self.prefix = f"syslab-afaas-{uuid.uuid4().hex[:6]}"
        self.procs: list[subprocess.Popen] = []
        self.templates: dict[str, subprocess.Popen] = {}
        self.entry = ""

    def __enter__(self) -> Platform:
        try:
            self._up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _up(self) -> None:
        cfg = self.cfg
        seeds: dict[str, str] = {}
        zygote = ""
        if cfg.launch == "fork":
            targets = self.functions if cfg.seed else [None]
            for fn in targets:
                sock = str(self.tmp / f"seed-{fn or 'zygote'}.sock")
                cmd = [sys.executable, "-m", "syslab.cloud.afaas.seed", sock, str(self.functions_dir)]
                self.templates[fn or "zygote"] = _start(cmd + ([fn] if fn else []))
                if fn:
                    seeds[fn] = sock
                else:
                    zygote = sock
        nxt = None
        for i in reversed(range(cfg.hops)):
            sock = str(self.tmp / f"hop{i}.sock")
            conf = {"listen": sock, "next": nxt, "persist_dir": str(self.tmp) if cfg.persist else None,
                    "launch": cfg.launch, "seeds": seeds, "zygote": zygote, "functions_dir": str(self.functions_dir),
                    "pool": self.pool_size if (cfg.pool and nxt is None) else 0, "resource_kind": self.resource_kind,
                    "resource_dir": str(self.tmp / "sandboxes"), "prefix": self.prefix}
            path = self.tmp / f"hop{i}.json"
            path.write_text(json.dumps(conf))
            self.procs.append(_start([sys.executable, "-m", "syslab.cloud.afaas.daemon", str(path)]))
            nxt = sock
        self.entry = nxt or ""

    def pss_mb(self) -> dict[str, float]:
        return {name: pss_mb(p.pid) for name, p in self.templates.items()}

    def __exit__(self, *exc: object) -> None:
        for name in self.templates:
            try:
                ask(str(self.tmp / f"seed-{name}.sock"), {"stop": True}, timeout=5)
            except (OSError, ValueError):
                pass
        for p in [*self.procs, *self.templates.values()]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs, *self.templates.values()]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        R.sweep(self.prefix)
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)


def pss_mb(pid: int) -> float:
    """Proportional set size (shared pages divided among their sharers), from /proc/<pid>/smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def measure(platform: Platform, requests: int, concurrency: int, function: str | None = None) -> list[float]:
    """Cold-start latencies (seconds, request sent to answer received) of ``requests`` requests issued in
    waves of ``concurrency`` simultaneous ones."""
    fn = function or platform.functions[0]
    if fn not in platform.functions:
        raise InputError(f"unknown function {fn!r}.", field="function",
                         fix=f"use one of the platform's functions: {', '.join(platform.functions)}.")
    out: list[float] = []
    errors: list[str] = []

    def one(i: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        ans = ask(platform.entry, {"function": fn, "event": {"i": i}})
        t1 = time.perf_counter()
        if not ans.get("ok"):
            errors.append(str(ans.get("error"))[:300])
        out.append(t1 - t0)

    with ThreadPoolExecutor(concurrency) as pool:
        for start in range(0, requests, concurrency):
            n = min(concurrency, requests - start)
            barrier = threading.Barrier(n)
            list(pool.map(lambda i, b=barrier: one(i, b), range(start, start + n)))
    if errors:
        raise RuntimeError(f"{len(errors)} of {requests} instances failed: {errors[0]}")
    return out


def summary(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def prepare_functions(root: Path, names: list[str], modules: int = 24, rounds: int = 24_000) -> dict[str, float]:
    """Write the functions and import each once in a fresh interpreter (compiling its bytecode, so later
    cold starts measure imports, not compilation); returns each one's measured import time (s)."""
    times = {}
    for name in names:
        write_function(root, name, modules, rounds)
        code = (f"import sys, time; sys.path.insert(0, {str(root)!r}); import numpy; t = time.perf_counter(); "
                f"import {name}; print(time.perf_counter() - t)")
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
        times[name] = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True, env=env).stdout)
    return times


def run_ablation(requests: int, concurrency: int, high_requests: int | None = None,
                 resource_kind: str | None = None, progress=lambda m: None,
                 configs: tuple[Config, ...] = ABLATION) -> dict:
    """Every configuration at concurrency 1 (``requests`` one after another) and at ``concurrency``."""
    kind = resource_kind or R.detect()
    with tempfile.TemporaryDirectory(prefix="afaas-fns-") as d:
        root = Path(d)
        names = ["resize_image", "score_model"]
        init_s = prepare_functions(root, names)
        results = {}
        for cfg in configs:
            progress(f"{cfg.name}")
            with Platform(cfg, root, names, kind) as plat:
                measure(plat, 1, 1)                                   # warm the page cache and the path
                low = measure(plat, requests, 1)
                high = measure(plat, high_requests or concurrency, concurrency)
                results[cfg.name] = {"c1": summary(low), f"c{concurrency}": summary(high), "pss_mb": plat.pss_mb()}
    return {"resources": kind, "init_s": init_s, "concurrency": concurrency, "results": results,
            "import_median_s": statistics.median(init_s.values())}


def leftovers() -> list[str]:
    """Platform processes still alive (there should be none once every ``Platform`` has exited)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "syslab.cloud.afaas.seed" in cmd or "syslab.cloud.afaas.daemon" in cmd:
                out.append(f"{d.name}: {cmd[:120]}")
    return out
