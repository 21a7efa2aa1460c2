"""Running a user's training command under the tracer, without editing it.

The command runs in a subprocess whose ``PYTHONPATH`` starts with a tiny bootstrap directory holding a
``sitecustomize.py``: every Python process the command starts (the script itself, ``torchrun`` workers,
``torch.multiprocessing.spawn`` children) starts the tracer the moment it imports torch, and writes its own
``trace-<pid>.jsonl`` into the trace directory when it exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from syslab.core.errors import InputError
from syslab.training.traincheck.instrument import ENV_DIR

_BOOTSTRAP = '''
import os, sys
if os.environ.get("ENV_DIR"):
    import importlib.abc, importlib.util

    class _StartAfterTorch(importlib.abc.MetaPathFinder):
        """Start the tracer right after torch is imported (processes that never import torch pay nothing)."""

        def find_spec(self, name, path=None, target=None):
            if name != "torch":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_then_trace(module):
                exec_module(module)
                from syslab.training.traincheck.instrument import start
                start(os.environ["ENV_DIR"])

            spec.loader.exec_module = exec_then_trace
            return spec

    sys.meta_path.insert(0, _StartAfterTorch())
'''.replace("ENV_DIR", ENV_DIR)


def _python(command: list[str]) -> list[str]:
    """``python``/``python3`` means this interpreter (the one that has syslab and torch)."""
    if command and Path(command[0]).name in ("python", "python3", Path(sys.executable).name):
        return [sys.executable, *command[1:]]
    return list(command)


def collect(command: list[str], trace_dir: str | Path, timeout_s: float | None = None) -> list[Path]:
    """Run ``command`` traced; return the per-process trace files. A command that fails on its own is an
    ``InputError`` with the end of its stderr (nothing it wrote is removed)."""
    if not command:
        raise InputError("no training command given.", field="COMMAND",
                         fix="put the command after --, e.g. -- python train.py --epochs 1.")
    trace_dir = Path(trace_dir)
    trace_dir.mkdir(parents=True, exist_ok=True)
    boot = Path(tempfile.mkdtemp(prefix="syslab-traincheck-"))
    try:
        (boot / "sitecustomize.py").write_text(_BOOTSTRAP)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(boot), *filter(None, [env.get("PYTHONPATH")])])
        env[ENV_DIR] = str(trace_dir.resolve())
        try:
            proc = subprocess.run(_python(command), env=env, capture_output=True, text=True, timeout=timeout_s)
        except FileNotFoundError as e:
            raise InputError(f"cannot run {command[0]!r}: {e.strerror}.", field="COMMAND",
                             fix="give a command that runs on its own, e.g. -- python train.py.") from e
        except subprocess.TimeoutExpired as e:
            raise InputError(f"the training command ran longer than {timeout_s:.0f} s.", field="COMMAND",
                             fix="shorten the run (fewer steps) or raise the timeout.") from e
    finally:
        shutil.rmtree(boot, ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise InputError(f"the training command failed on its own (exit {proc.returncode}):\n{tail}",
                         field="COMMAND", fix="run it without syslab first and fix the error.")
    traces = sorted(trace_dir.glob("trace-*.jsonl"))
    if not traces:
        raise InputError("the command ran but never imported torch, so there is nothing to trace.",
                         field="COMMAND", fix="point it at a PyTorch training script.")
    return traces
