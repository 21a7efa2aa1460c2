"""Provisioning an image onto the filesystem, four ways, all real on this machine except the links.

* ``containerd``: download every layer's gzip in parallel over the shared link, then unpack the layers one
  after another, each as one gunzip stream feeding untar (containerd's unpacker, single-threaded);
* ``blocks``: Poby's block format, but no pipeline: fetch all blocks, decompress each, untar, in turn;
* ``pipelined``: download(i+2) | decompress(i+1) | untar(i) over a fixed pool of ``buffers`` host buffers
  (33 MiB each, as the artifact's end-to-end runs), decompression in a host thread;
* ``poby``: the same pipeline with download and decompression offloaded to a separate "DPU" process, pinned
  to the last core, which fills the host's buffers through shared memory (the DMA write); the host only
  untars, streaming the buffers in order into one untar per layer (a tar entry may span blocks).

Every path unpacks with the same native streaming untar (GNU ``tar -x`` reading a pipe; Python's tarfile is
~3x slower and would make untar, not the work Poby moves, dominate).

Links are emulated: a ``Link`` serialises transfers at ``rate_Bps`` (parallel downloads share it). Host CPU
seconds are the host process's own (``getrusage``); the DPU process reports its own. Each run untars into a
fresh directory; ``tree_digest`` hashes the result so modes can be compared byte for byte.
"""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing as mp
import os
import queue
import resource
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from syslab.cloud.poby.image import SEGMENT_BYTES, Registry

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


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _host_cpu() -> float:
    """This process plus the children it has waited for (the untar processes; the DPU's own CPU is
    reported separately and subtracted)."""
    return _cpu() + _cpu(resource.RUSAGE_CHILDREN)


class Untar:
    """A native streaming untar (GNU tar reading stdin) into ``target``: the same unpacker on every path, as
    containerd's and Poby's are native code. GNU tar drops leading '/' and refuses '..' members."""

    def __init__(self, target: Path):
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
    t0, c0 = time.perf_counter(), _host_cpu()
    link = Link(rate_Bps)

    def pull(name: str) -> None:
        (store / f"{name}.tar.gz").write_bytes(link.fetch(reg.gz(name)))

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
    return Outcome("containerd", t2 - t0, _host_cpu() - c0,
                   stages_s={"download": t1 - t0, "gunzip | untar": t2 - t1})


def blocks(reg: Registry, target: Path, rate_Bps: float) -> Outcome:
    t0, c0 = time.perf_counter(), _host_cpu()
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
    return Outcome("blocks", t3 - t0, _host_cpu() - c0,
                   stages_s={"download": t1 - t0, "decompress": t2 - t1, "untar": t3 - t2})


# --- the pipeline -------------------------------------------------------------------------------------------

def _dpu(reg: Registry, rate_Bps: float, pool: mmap.mmap, free_q, filled_q, pin: bool) -> None:
    """Download blocks (two ahead) and decompress each into a free host buffer; report (layer, buffer, length),
    (layer, None, 0) at the end of a layer, then the busy seconds and own CPU."""
    if pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    c0 = _cpu()
    link = Link(rate_Bps)
    fetched: queue.Queue = queue.Queue(maxsize=2)
    busy = {"download": 0.0, "decompress": 0.0}

    def download() -> None:
        for li, name in enumerate(reg.layers):
            for i in range(reg.segments[name]):
                t = time.perf_counter()
                data = link.fetch(reg.block(name, i))
                busy["download"] += time.perf_counter() - t
                fetched.put((li, data))
            fetched.put((li, None))

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
    filled_q.put(("done", busy, _cpu() - c0))


def _untar_layer(pool: mmap.mmap, free_q, filled_q, target: Path) -> float:
    """Stream one layer's buffers, in order, into a native untar as they arrive (a tar entry may span
    buffers); give each buffer back once written. Returns the seconds spent waiting for buffers."""
    untar, waited, view = Untar(target), 0.0, memoryview(pool)
    while True:
        t = time.perf_counter()
        _, buf, length = filled_q.get()
        waited += time.perf_counter() - t
        if buf is None:
            break
        untar.write(view[buf * BUFFER_BYTES: buf * BUFFER_BYTES + length])
        free_q.put(buf)
    view.release()
    untar.close()
    return waited


def pipelined(reg: Registry, target: Path, rate_Bps: float, offload: bool, buffers: int = 3,
              pin: bool = True) -> Outcome:
    if buffers < 1:
        raise ValueError("the pipeline needs at least one buffer")
    t0, c0 = time.perf_counter(), _host_cpu()
    pool = mmap.mmap(-1, buffers * BUFFER_BYTES, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    ctx = mp.get_context("fork")
    free_q, filled_q = (ctx.Queue(), ctx.Queue()) if offload else (queue.Queue(), queue.Queue())
    for b in range(buffers):
        free_q.put(b)
    args = (reg, rate_Bps, pool, free_q, filled_q, pin and offload)
    worker = ctx.Process(target=_dpu, args=args, daemon=True) if offload else \
        threading.Thread(target=_dpu, args=args, daemon=True)
    worker.start()
    waited = 0.0
    try:
        for _ in reg.layers:
            waited += _untar_layer(pool, free_q, filled_q, target)
        _, busy, dpu_cpu = filled_q.get(timeout=60)
    finally:
        worker.join(timeout=10)
        if offload and worker.is_alive():
            worker.kill()
            worker.join()
        pool.close()
    t1 = time.perf_counter()
    if not offload:
        return Outcome("pipelined", t1 - t0, _host_cpu() - c0, stages_s={
            "download": busy["download"], "decompress": busy["decompress"], "host busy": t1 - t0 - waited})
    return Outcome("poby", t1 - t0, _host_cpu() - c0 - dpu_cpu, dpu_cpu, stages_s={
        "download": busy["download"], "decompress": busy["decompress"], "host busy": t1 - t0 - waited})


def tree_digest(root: Path) -> str:
    """sha256 over every regular file's relative path, mode and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + oct(p.stat().st_mode & 0o777).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
