"""Synthetic serverless functions with heavy initialisation, written to disk as real Python packages.

A function is a package ``<root>/<name>/`` whose import loads numpy and a generated tree of modules that
each do some CPU work at import time (hashing), so importing it costs a few hundred milliseconds, as the
cold starts AFaaS targets do (our notes: 300-600 ms of imports). ``handler.handle(event)`` answers with
the event echoed and a little work. Cost of ``write_function``: O(modules) small files.
"""

from __future__ import annotations

from pathlib import Path

from syslab.core.errors import InputError

HANDLER = '''\
import os


def handle(event):
    from . import state
    return {"ok": True, "function": __package__, "pid": os.getpid(), "init_digest": state.DIGEST[:12],
            "echo": event}
'''

MODULE = '''\
import hashlib

_h = hashlib.sha256(b"{name}")
for _ in range({rounds}):
    _h = hashlib.sha256(_h.digest() * 8)
VALUE = _h.hexdigest()
'''


def write_function(root: Path, name: str, modules: int = 24, rounds: int = 12_000) -> Path:
    """Write function ``name`` under ``root``; returns its package directory."""
    if not name.isidentifier():
        raise InputError(f"function name {name!r} is not a Python identifier.", field="name",
                         fix="use letters, digits and underscores, not starting with a digit.")
    if modules < 1 or rounds < 0:
        raise InputError(f"{modules} modules, {rounds} rounds.", field="modules", fix="use >= 1 module, rounds >= 0.")
    pkg = root / name
    (pkg / "lib").mkdir(parents=True, exist_ok=True)
    (pkg / "lib" / "__init__.py").write_text("")
    for i in range(modules):
        (pkg / "lib" / f"m{i}.py").write_text(MODULE.format(name=f"{name}.{i}", rounds=rounds))
    imports = "\n".join(f"from .lib import m{i}" for i in range(modules))
    (pkg / "state.py").write_text(
        "import hashlib\nimport numpy  # the platform's heavy library\n" + imports + "\n\n"
        "DIGEST = hashlib.sha256(''.join([" + ", ".join(f"m{i}.VALUE" for i in range(modules)) +
        "]).encode()).hexdigest()\nTABLE = numpy.arange(100_000, dtype=numpy.float64)  # initialised state\n")
    (pkg / "handler.py").write_text(HANDLER)
    (pkg / "__init__.py").write_text("from . import handler, state  # noqa: F401  (initialise at import)\n")
    return pkg
