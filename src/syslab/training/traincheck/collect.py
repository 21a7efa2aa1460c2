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
from syslab.core.lifecycle import child_of_me
from syslab.training.traincheck.instrument import ENV_DIR

_BOOTSTRAP = '''
import os, sys
if os.environ.get("ENV_DIR"):
    # Every process of the traced command dies with its parent (Linux PR_SET_PDEATHSIG), so stopping syslab
    # never leaves a DDP worker of the user's script waiting forever in a collective.
    from syslab.core.lifecycle import die_with_parent
    die_with_parent()
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


def collect(command: list[str], trace_dir: str | Path, timeout_s: float | None = None,
            tracer_env: dict[str, str] | None = None) -> list[Path]:
    """Run ``command`` traced; return the per-process trace files. ``tracer_env`` selects what the tracer
    snapshots (``instrument.ENV_STATE_APIS``, ``ENV_EVERY``). A command that fails on its own is an
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
        env.update(tracer_env or {})
        try:
            proc = subprocess.run(_python(command), env=env, capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=child_of_me())
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


# ---------------------------------------------------------------------------------------------------------
# Many runs: a pre-warmed interpreter forks one child per run
# ---------------------------------------------------------------------------------------------------------

# A zygote: import torch (and what its first optimizer pulls in, ~3 s in torch 2.13) once, then fork a child per
# job. A child runs ``python SCRIPT ARGS`` as __main__ (runpy) under a fresh tracer; stdout and stderr go to
# files. Processes the script itself spawns are fresh interpreters and trace through the bootstrap as usual.
# No torch op runs in the zygote, so no thread pool exists when it forks.
_ZYGOTE = r'''
import json, os, runpy, sys, traceback
import torch, torch.nn, torch.optim, torch.nn.functional
torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)      # pull in the lazy imports, no compute
from syslab.training.traincheck import instrument
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            from syslab.core.lifecycle import die_with_parent
            die_with_parent()                  # a job never outlives the zygote
            out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.environ["ENV_DIR"] = job["trace_dir"]
            os.environ.update(job["env"])
            sys.argv = job["argv"]
            tracer = instrument.start(job["trace_dir"])
            try:
                runpy.run_path(job["argv"][0], run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
            instrument.stop()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"id": job["id"], "code": os.waitstatus_to_exitcode(status)}), flush=True)
'''.replace("ENV_DIR", ENV_DIR)


def _is_python_script(command: list[str]) -> bool:
    cmd = _python(command)
    return len(cmd) >= 2 and cmd[0] == sys.executable and cmd[1].endswith(".py") and Path(cmd[1]).is_file()


def collect_many(commands: list[list[str]], trace_dirs: list[str | Path], workers: int = 2,
                 timeout_s: float | None = None, progress=lambda message: None,
                 tracer_env: dict[str, str] | None = None) -> list[list[Path]]:
    """``collect`` for many commands, ``workers`` at a time. ``python SCRIPT.py ...`` commands run in children
    forked from pre-warmed zygotes (one per worker), which saves the ~3 s torch import of each run; anything
    else runs as in ``collect``. Same traces either way."""
    from concurrent.futures import ThreadPoolExecutor

    if len(commands) != len(trace_dirs):
        raise ValueError("one trace directory per command")
    if not hasattr(os, "fork"):
        workers_fn = [lambda c, d: collect(c, d, timeout_s, tracer_env)] * workers
    else:
        workers_fn = [_Zygote(timeout_s, tracer_env) for _ in range(workers)]
    try:
        slots = list(range(workers))
        import threading
        lock = threading.Lock()

        def one(i: int) -> list[Path]:
            with lock:
                slot = slots.pop()
            try:
                runner = workers_fn[slot]
                out = runner(commands[i], trace_dirs[i]) if _is_python_script(commands[i]) else collect(
                    commands[i], trace_dirs[i], timeout_s, tracer_env)
                progress(" ".join(Path(c).name for c in commands[i][1:3]))
                return out
            finally:
                with lock:
                    slots.append(slot)

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(len(commands))))
    finally:
        for w in workers_fn:
            if isinstance(w, _Zygote):
                w.close()


class _Zygote:
    """One pre-warmed interpreter; ``__call__`` runs one job in a forked child and waits for it."""

    def __init__(self, timeout_s: float | None, tracer_env: dict[str, str] | None = None) -> None:
        self.timeout_s = timeout_s
        self.tracer_env = dict(tracer_env or {})
        self.boot = Path(tempfile.mkdtemp(prefix="syslab-traincheck-"))
        (self.boot / "sitecustomize.py").write_text(_BOOTSTRAP)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.boot), *filter(None, [env.get("PYTHONPATH")])])
        env.pop(ENV_DIR, None)                       # the zygote itself is not traced
        env.update(self.tracer_env)                  # (children the scripts spawn inherit the selection)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.jobs = 0

    def _start(self) -> subprocess.Popen:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=self.env, preexec_fn=child_of_me())
            if self.proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the tracing zygote did not start")
        return self.proc

    def __call__(self, command: list[str], trace_dir: str | Path) -> list[Path]:
        import json

        trace_dir = Path(trace_dir).resolve()
        trace_dir.mkdir(parents=True, exist_ok=True)
        proc = self._start()
        self.jobs += 1
        job = {"id": self.jobs, "argv": _python(command)[1:], "trace_dir": str(trace_dir),
               "stdout": str(trace_dir / "stdout.txt"), "stderr": str(trace_dir / "stderr.txt"),
               "env": self.tracer_env}
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        stderr = Path(job["stderr"]).read_text() if Path(job["stderr"]).exists() else ""
        for f in ("stdout", "stderr"):
            Path(job[f]).unlink(missing_ok=True)
        if reply["code"] != 0:
            tail = "\n".join(stderr.strip().splitlines()[-8:])
            raise InputError(f"the training command failed on its own (exit {reply['code']}):\n{tail}",
                             field="COMMAND", fix="run it without syslab first and fix the error.")
        return sorted(trace_dir.glob("trace-*.jsonl"))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None
        shutil.rmtree(self.boot, ignore_errors=True)
