"""Per-instance sandbox resources: created for real where the kernel lets us, emulated otherwise.

``real``: a cgroup under every writable cgroup-v1 controller among cpu and memory (``mkdir`` under the
kernel's cgroup lock) plus a network namespace (``ip netns add``, which takes the rtnl lock): the kernel
objects whose creation contends under concurrency in the paper's account. ``emulated`` (no privileges): a
directory tree created under one global file lock with fsync, so creation still serialises. ``detect``
says which this machine allows. Every object is named with a run prefix; ``sweep`` removes leftovers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")


def _controllers() -> list[Path]:
    return [CGROUP_ROOT / c for c in CONTROLLERS if (CGROUP_ROOT / c / "cgroup.procs").exists()]


def detect() -> str:
    """``real`` if cgroups and network namespaces can be created here, else ``emulated``."""
    probe = f"syslab-probe-{uuid.uuid4().hex[:8]}"
    made: list[Path] = []
    try:
        ctrls = _controllers()
        if not ctrls or shutil.which("ip") is None:
            return "emulated"
        for c in ctrls:
            (c / probe).mkdir()
            made.append(c / probe)
        ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return "real" if ok else "emulated"
    except OSError:
        return "emulated"
    finally:
        for p in made:
            try:
                p.rmdir()
            except OSError:
                pass


class Sandboxes:
    def __init__(self, kind: str, work_dir: str, prefix: str):
        self.kind, self.work_dir, self.prefix = kind, Path(work_dir), prefix
        self.live: set[str] = set()
        self.lock_path = self.work_dir / "global.lock"
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def create(self) -> str:
        name = f"{self.prefix}-{uuid.uuid4().hex[:10]}"
        if self.kind == "real":
            for c in _controllers():
                (c / name).mkdir()
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        else:
            with open(self.lock_path, "a") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)                  # one global lock, like cgroup_mutex / rtnl
                root = self.work_dir / name
                for sub in ("cpu", "memory", "pids", "net"):
                    (root / sub).mkdir(parents=True)
                    (root / sub / "config").write_text(name)
                fd = os.open(root, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        self.live.add(name)
        return name

    def recycle(self, name: str) -> str:
        """A pooled sandbox goes back to the pool as it is (its instance is gone)."""
        return name

    def destroy(self, name: str) -> None:
        if self.kind == "real":
            for c in _controllers():
                try:
                    (c / name).rmdir()
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        else:
            with open(self.lock_path, "a") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)
                shutil.rmtree(self.work_dir / name, ignore_errors=True)
        self.live.discard(name)

    def destroy_all(self) -> None:
        for name in list(self.live):
            self.destroy(name)


def sweep(prefix: str) -> int:
    """Remove any cgroup or network namespace left with this prefix (after a crash); returns how many."""
    n = 0
    for c in _controllers():
        for p in c.glob(f"{prefix}-*"):
            try:
                p.rmdir()
                n += 1
            except OSError:
                pass
    if shutil.which("ip"):
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(prefix + "-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                n += 1
    return n
