"""Provisioning an image onto the filesystem, four ways, all real on this machine except the links.

* ``containerd``: download every layer's gzip in parallel over the shared link, then unpack the layers one
  after another, each as one gunzip stream feeding untar (containerd's unpacker, single-threaded);
* ``blocks``: Poby's block format, but no pipeline: fetch all blocks, decompress each, untar, in turn;
* ``pipelined``: download(i+2) | decompress(i+1) | untar(i) over a fixed pool of ``buffers`` host buffers
  (33 MiB each, as the artifact's end-to-end runs), decompression in a host thread;
* ``poby``: the same pipeline with download and decompression offloaded to a separate "DPU" process (a fresh
  interpreter, pinned to the last core), which fills the host's buffers through a shared mapping (the DMA
  write), with doorbells as JSON lines on pipes; the host only
  untars, streaming the buffers in order into one untar per layer (a tar entry may span blocks).

Every path unpacks with the same native streaming untar (GNU ``tar -x`` reading a pipe; Python's tarfile is
~3x slower and would make untar, not the work Poby moves, dominate).

Links are emulated: a ``Link`` serialises transfers at ``rate_Bps`` (parallel downloads share it). Host CPU
seconds are those of the threads doing the host's work plus its untar processes (``HostCPU``); the DPU
process reports its own. Each run untars into a
fresh directory; ``tree_digest`` hashes the result so modes can be compared byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from syslab.cloud.poby.image import SEGMENT_BYTES, Registry
from syslab.core.lifecycle import child_of_me

CHUNK = 2**20
BUFFER_BYTES = SEGMENT_BYTES + 2**20          # 34,603,008 bytes: the artifact's buffer size


class Link:
    """A link of ``rate_Bps`` shared by every transfer made through this object (FIFO per chunk)."""

    def __init__(self, rate_Bps: float):
        self.rate = rate_Bps
        self.free_at = 0.0
        self.lock = threading.Lock()

    def fetch(self, path: Path) -> bytes:
        data = path.read_bytes()
        for lo in range(0, len(data), CHUNK):
            with self.lock:
                start = max(time.perf_counter(), self.free_at)
                self.free_at = start + min(CHUNK, len(data) - lo) / self.rate
                until = self.free_at
            time.sleep(max(0.0, until - time.perf_counter()))
        return data


@dataclass
class Outcome:
    mode: str
    time_s: float
    host_cpu_s: float
    dpu_cpu_s: float = 0.0
    stages_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"time_s": self.time_s, "host_cpu_s": self.host_cpu_s, "dpu_cpu_s": self.dpu_cpu_s,
                "stages_s": self.stages_s}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class HostCPU:
    """CPU seconds of the host's work only: the threads that do it (``time.thread_time`` in each, added with
    ``add``) plus the untar processes waited for. Other threads of this process (a test runner's, a
    report's) are not counted, nor is the DPU process (it reports its own, subtracted by the caller)."""

    def __init__(self):
        self.children0, self.thread0, self.threads = _children_cpu(), time.thread_time(), 0.0
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self.lock:
            self.threads += seconds

    def total(self) -> float:
        return self.threads + time.thread_time() - self.thread0 + _children_cpu() - self.children0


class Untar:
    """A native streaming untar (GNU tar reading stdin) into ``target``: the same unpacker on every path, as
    containerd's and Poby's are native code. GNU tar drops leading '/' and refuses '..' members."""

    def __init__(self, target: Path):
        # No preexec hook here: it would make Popen fork the whole host process instead of posix_spawn, CPU that
        # the measurement would charge to every path (it cut the measured host-CPU saving from 70% to 56% in a
        # large test process). tar needs none: it reads our pipe and ends at EOF when we are gone.
        self.proc = subprocess.Popen(["tar", "-x", "-C", str(target), "-f", "-"], stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def write(self, data) -> None:
        self.proc.stdin.write(data)

    def close(self) -> None:
        self.proc.stdin.close()
        err = self.proc.stderr.read()
        if self.proc.wait() != 0:
            raise RuntimeError(f"tar failed: {err.decode(errors='replace')[-500:]}")


def containerd(reg: Registry, target: Path, rate_Bps: float, store: Path) -> Outcome:
    t0, cpu = time.perf_counter(), HostCPU()
    link = Link(rate_Bps)

    def pull(name: str) -> None:
        c = time.thread_time()
        (store / f"{name}.tar.gz").write_bytes(link.fetch(reg.gz(name)))
        cpu.add(time.thread_time() - c)

    threads = [threading.Thread(target=pull, args=(n,)) for n in reg.layers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    for name in reg.layers:                                   # serial unpack, one gunzip stream per layer
        gunzip, untar = zlib.decompressobj(wbits=31), Untar(target)
        with (store / f"{name}.tar.gz").open("rb") as f:
            while chunk := f.read(CHUNK):
                untar.write(gunzip.decompress(chunk))
        untar.write(gunzip.flush())
        untar.close()
    t2 = time.perf_counter()
    return Outcome("containerd", t2 - t0, cpu.total(),
                   stages_s={"download": t1 - t0, "gunzip | untar": t2 - t1})


def blocks(reg: Registry, target: Path, rate_Bps: float) -> Outcome:
    t0, cpu = time.perf_counter(), HostCPU()
    link = Link(rate_Bps)
    fetched = {(n, i): link.fetch(reg.block(n, i)) for n in reg.layers for i in range(reg.segments[n])}
    t1 = time.perf_counter()
    tars = {n: b"".join(zlib.decompress(fetched[(n, i)]) for i in range(reg.segments[n])) for n in reg.layers}
    t2 = time.perf_counter()
    for n in reg.layers:
        untar = Untar(target)
        untar.write(tars[n])
        untar.close()
    t3 = time.perf_counter()
    return Outcome("blocks", t3 - t0, cpu.total(),
                   stages_s={"download": t1 - t0, "decompress": t2 - t1, "untar": t3 - t2})


# --- the pipeline -------------------------------------------------------------------------------------------

def _dpu(reg: Registry, rate_Bps: float, pool, free_q, filled_q) -> None:
    """Download blocks (two ahead) and decompress each into a free host buffer; report (layer, buffer, length),
    (layer, None, 0) at the end of a layer, then ("done", busy seconds per stage, CPU seconds of its threads)."""
    link = Link(rate_Bps)
    fetched: queue.Queue = queue.Queue(maxsize=2)
    busy = {"download": 0.0, "decompress": 0.0}
    cpu = {"download": 0.0}
    c0 = time.thread_time()

    def download() -> None:
        c = time.thread_time()
        for li, name in enumerate(reg.layers):
            for i in range(reg.segments[name]):
                t = time.perf_counter()
                data = link.fetch(reg.block(name, i))
                busy["download"] += time.perf_counter() - t
                fetched.put((li, data))
            fetched.put((li, None))
        cpu["download"] = time.thread_time() - c

    th = threading.Thread(target=download, daemon=True)
    th.start()
    for _ in range(sum(reg.segments[n] + 1 for n in reg.layers)):
        li, data = fetched.get()
        if data is None:
            filled_q.put((li, None, 0))
            continue
        buf = free_q.get()
        t = time.perf_counter()
        plain = zlib.decompress(data)
        pool[buf * BUFFER_BYTES: buf * BUFFER_BYTES + len(plain)] = plain
        busy["decompress"] += time.perf_counter() - t
        filled_q.put((li, buf, len(plain)))
    th.join()
    filled_q.put(("done", busy, time.thread_time() - c0 + cpu["download"]))


def _untar_layer(pool, free_q, filled_q, target: Path) -> float:
    """Stream one layer's buffers, in order, into a native untar as they arrive (a tar entry may span
    buffers); give each buffer back once written. Returns the seconds spent waiting for buffers."""
    untar, waited = Untar(target), 0.0
    with memoryview(pool) as view:
        while True:
            t = time.perf_counter()
            _, buf, length = filled_q.get()
            waited += time.perf_counter() - t
            if buf is None:
                break
            with view[buf * BUFFER_BYTES: buf * BUFFER_BYTES + length] as block:
                untar.write(block)
            free_q.put(buf)
    untar.close()
    return waited


def pipelined(reg: Registry, target: Path, rate_Bps: float, offload: bool, buffers: int = 3,
              pin: bool = True) -> Outcome:
    """The pipeline over ``buffers`` host buffers; with ``offload`` the download and decompression run in the
    "DPU": a separate fresh process (already running, as the SmartNIC's daemon would be, before the clock
    starts) sharing the buffers by named shared memory, pinned to the last core when ``pin``."""
    if buffers < 1:
        raise ValueError("the pipeline needs at least one buffer")
    if offload:
        with DPU(reg, rate_Bps, buffers, pin) as dpu:
            return _run_pipeline(reg, target, buffers, dpu.pool, dpu.free, dpu.filled, "poby")
    pool = bytearray(buffers * BUFFER_BYTES)
    free_q, filled_q = queue.Queue(), queue.Queue()
    worker = threading.Thread(target=_dpu, args=(reg, rate_Bps, pool, free_q, filled_q), daemon=True)
    return _run_pipeline(reg, target, buffers, pool, free_q, filled_q, "pipelined", worker)


def _run_pipeline(reg: Registry, target: Path, buffers: int, pool, free_q, filled_q, mode: str,
                  worker: threading.Thread | None = None) -> Outcome:
    t0, cpu = time.perf_counter(), HostCPU()
    for b in range(buffers):
        free_q.put(b)
    if worker is not None:
        worker.start()
    waited = sum(_untar_layer(pool, free_q, filled_q, target) for _ in reg.layers)
    _, busy, dpu_cpu = filled_q.get()
    if worker is not None:
        worker.join()
    t1 = time.perf_counter()
    stages = {"download": busy["download"], "decompress": busy["decompress"], "host busy": t1 - t0 - waited}
    if mode == "pipelined":                     # the download and decompress threads are the host's own
        return Outcome(mode, t1 - t0, cpu.total() + dpu_cpu, 0.0, stages)
    return Outcome(mode, t1 - t0, cpu.total(), dpu_cpu, stages)


class PeerGone(RuntimeError):
    """The other end of a host <-> DPU pipe closed: the DPU process died, or (seen from the DPU) the host was
    stopped."""


class _Pipe:
    """put/get of small tuples as JSON lines over a pipe (the host <-> DPU doorbells)."""

    def __init__(self, w=None, r=None):
        self.w, self.r = w, r

    def put(self, item) -> None:
        self.w.write(json.dumps(item) + "\n")
        self.w.flush()

    def get(self):
        line = self.r.readline()
        if not line:
            raise PeerGone("the DPU process went away")
        item = json.loads(line)
        return tuple(item) if isinstance(item, list) else item


class DPU:
    """The "DPU" process (``python -m syslab.cloud.poby.dpu``) and the buffer pool it shares with the host: a
    file in /dev/shm mapped by both (not ``multiprocessing.shared_memory``, whose resource-tracker process
    would outlive us). Started and ready before any timing; stopped and reaped on exit; the file removed."""

    def __init__(self, reg: Registry, rate_Bps: float, buffers: int, pin: bool):
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.file = tempfile.NamedTemporaryFile(prefix="syslab-poby-pool-", dir=shm_dir)
        self.file.truncate(buffers * BUFFER_BYTES)
        self.map = mmap.mmap(self.file.fileno(), buffers * BUFFER_BYTES)
        spec = {"root": str(reg.root), "layers": reg.layers, "segments": reg.segments,
                "uncompressed": reg.uncompressed, "gz_bytes": reg.gz_bytes, "block_bytes": reg.block_bytes,
                "rate_Bps": rate_Bps, "pool": self.file.name, "pin": pin}
        self.proc = subprocess.Popen([sys.executable, "-m", "syslab.cloud.poby.dpu", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=child_of_me())
        self.free, self.filled = _Pipe(w=self.proc.stdin), _Pipe(r=self.proc.stdout)
        self.pool = self.map

    def __enter__(self) -> DPU:
        try:
            if self.filled.get() != "ready":
                raise RuntimeError("the DPU process did not start")
        except BaseException:                    # also Terminated: stop the process, remove the pool file
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if exc and exc[0] is not None and not issubclass(exc[0], Exception):   # Terminated: do not wait 10 s
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.map.close()
        self.file.close()


def dpu_main(spec: dict) -> None:
    """The DPU process: map the host's buffers, say ready, serve one image."""
    if spec["pin"] and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    reg = Registry(Path(spec["root"]), spec["layers"], spec["segments"], spec["uncompressed"], spec["gz_bytes"],
                   spec["block_bytes"])
    with open(spec["pool"], "r+b") as f, mmap.mmap(f.fileno(), 0) as pool:
        filled, free = _Pipe(w=sys.stdout), _Pipe(r=sys.stdin)
        filled.put("ready")
        _dpu(reg, spec["rate_Bps"], pool, free, filled)
        for _ in sys.stdin:                      # the host still hands back its last buffers: wait for it
            pass


def tree_digest(root: Path) -> str:
    """sha256 over every regular file's relative path, mode and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + oct(p.stat().st_mode & 0o777).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
