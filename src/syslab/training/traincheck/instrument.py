"""Tracing a PyTorch training program without editing it: API calls as pre/post events, and the state of the
model and optimizer summarised at API boundaries.

What is traced (selective, to keep overhead low; our notes: TrainCheck proxies every variable, which is
intrusive; hooks plus snapshots at API boundaries suffice here):

* API calls: ``Optimizer.step`` (torch's global step hooks) and ``Optimizer.zero_grad``; ``Tensor.backward``
  and ``torch.autograd.backward``; top-level ``Module.forward`` (global forward hooks, outermost call only);
  ``Module.train`` (and so ``eval``); ``clip_grad_norm_`` / ``clip_grad_value_``; ``LRScheduler.step``;
  ``GradScaler.step`` / ``update``; ``torch.nn.functional.dropout``; ``torch.distributed`` collectives.
* State, at the pre and post of ``Optimizer.step``, ``zero_grad``, ``backward`` and clipping, and at each
  top-level forward: per parameter of the traced model(s) a fingerprint of its values (a hash of its bytes:
  exact across data-parallel ranks), whether it has a gradient, the gradient's fingerprint and whether it is
  all zeros, ``requires_grad``, dtype, and whether an optimizer holds it; per model its ``training`` flag; per
  optimizer its learning rates. The traced models are the outermost modules the program ran or took
  ``parameters()`` of, so a loop that calls ``model.enc`` and ``model.head`` directly is traced as ``model``,
  under the same names as one that calls ``model(x)``.

Every event carries the process's rank and the *iteration*: it starts at 0 and advances after each
``Optimizer.step``, or, if a step never came, at the first top-level forward after a backward (so a
skipped step still ends an iteration).

Events go to ``<dir>/trace-<pid>.jsonl`` (one JSON object per line), written when the process exits or when
``Tracer.close`` is called. Cost: O(parameters) tensor reductions per traced boundary, a handful per
iteration.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import math
import os
import weakref
from pathlib import Path
from typing import Any

import torch

ENV_DIR = "SYSLAB_TRAINCHECK_DIR"
ENV_STATE_APIS = "SYSLAB_TRAINCHECK_STATE_APIS"     # comma-separated; unset = all
ENV_EVERY = "SYSLAB_TRAINCHECK_EVERY"
ENV_APIS = "SYSLAB_TRAINCHECK_APIS"                 # comma-separated dotted names of more APIs to trace
ENV_ONLINE = "SYSLAB_TRAINCHECK_ONLINE"             # an invariants file to check online (see online.py)


FULL_HASH_ELEMENTS = 1 << 16


def fingerprint(t: torch.Tensor) -> str:
    """A summary of a tensor's values that changes whenever they do, and agrees across data-parallel ranks
    (which hold bitwise-equal parameters). Up to 65,536 elements: a BLAKE2b hash of the bytes. Larger: the
    hash of a fixed strided sample of 65,536 elements plus the exact float64 sum of all of them; a change
    that misses every sampled element *and* keeps the sum goes unseen (sums alone are blind: a cross-entropy
    bias gradient sums to zero, so its update keeps the sum)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.numel() <= FULL_HASH_ELEMENTS:
        return hashlib.blake2b(flat.view(torch.uint8).numpy().tobytes(), digest_size=8).hexdigest()
    step = flat.numel() // FULL_HASH_ELEMENTS
    sample = flat[::step][:FULL_HASH_ELEMENTS].contiguous()
    total = float(flat.sum(dtype=torch.float64)) if flat.is_floating_point() else int(flat.sum())
    digest = hashlib.blake2b(sample.view(torch.uint8).numpy().tobytes(), digest_size=8)
    digest.update(repr(total).encode())
    return digest.hexdigest()


class _Fingerprints:
    """Fingerprints cached by tensor identity, version counter and storage: a tensor nobody wrote to since the
    last snapshot is not hashed again (an iteration takes eight snapshots, but each parameter changes once and
    each gradient once or twice). Limitation: writes through ``.data`` do not bump the version counter, so a
    program that updates parameters only through ``.data`` needs ``cache=False``.

    Identity is a weak reference, not ``id`` alone: ``zero_grad`` frees each gradient and the next backward
    allocates a fresh one, which may get the dead one's ``id``, storage and version 0; keyed by ``id`` alone,
    the new gradient would read the old one's fingerprint. An entry goes when its tensor dies."""

    def __init__(self, cache: bool = True) -> None:
        self.cache = cache
        self._cache: dict[int, tuple[weakref.ref, tuple, tuple[str, bool]]] = {}

    def __call__(self, t: torch.Tensor) -> tuple[str, bool]:
        """(fingerprint, whether every element is zero)."""
        key = (t._version, t.data_ptr(), t.dtype)
        hit = self._cache.get(id(t))
        if self.cache and hit is not None and hit[0]() is t and hit[1] == key:
            return hit[2]
        out = (fingerprint(t), not bool(t.detach().any()))
        if self.cache:
            self._cache[id(t)] = (weakref.ref(t, functools.partial(self._forget, id(t))), key, out)
        return out

    def _forget(self, ident: int, ref: weakref.ref) -> None:
        entry = self._cache.get(ident)
        if entry is not None and entry[0] is ref:          # not a newer tensor's entry under a reused id
            del self._cache[ident]


def _rank() -> int:
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except Exception:  # a half-initialised process group must not break the traced program
        pass
    return int(os.environ.get("RANK", "0"))


def _summary(value: Any) -> Any:
    """A JSON-able summary of an argument or return value."""
    if isinstance(value, torch.Tensor):
        out = {"tensor": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        if value.numel() == 1:
            v = float(value.detach())
            out["value"] = v if math.isfinite(v) else str(v)
        return out
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple) and len(value) <= 8 and all(isinstance(v, int | float) for v in value):
        return [_summary(v) for v in value]
    return type(value).__name__


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel (or similar) wrapper, so names match with and without it."""
    inner = getattr(module, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else module


class Tracer:
    """Collects events for one process. ``install()`` patches torch; ``close()`` writes the trace."""

    def __init__(self, out_dir: str | Path, state_apis: set[str] | None = None, every: int = 1,
                 extra_apis: tuple[str, ...] = (), online: list | None = None) -> None:
        """``state_apis``: snapshot parameters only around these APIs (selective instrumentation: a check needs
        only what its invariants read); ``every``: only in every ``every``-th iteration (sampling);
        ``extra_apis``: more functions or methods to trace by dotted name (``torch.nn.functional.softmax``,
        ``torch.Tensor.add_``), recorded with their scalar arguments and result; ``online``: invariants to
        check as each iteration ends, stopping the program at the first violation (``online.py``)."""
        from syslab.training.traincheck.online import OnlineChecker

        self._online = OnlineChecker(online, out_dir) if online else None
        self.extra_apis = tuple(extra_apis)
        self.path = Path(out_dir) / f"trace-{os.getpid()}.jsonl"
        self.state_apis = state_apis
        self.every = max(1, int(every))
        self._rank: int | None = None
        self.events: list[dict] = []
        self.iteration = 0
        self._backward_since_boundary = False
        self._seq = 0
        self._call = 0
        self._depth = 0
        # every module the program ran (outermost forward) or asked for its parameters (``model.parameters()``
        # to build an optimizer or clip): the traced models are the outermost of these, so a loop that calls
        # ``model.enc`` and ``model.head`` directly is still traced as ``model`` under the same names
        self._models: weakref.WeakValueDictionary[int, torch.nn.Module] = weakref.WeakValueDictionary()
        # each root's name in the state: its type, with #k for the k-th other of that type (two unrelated Linear
        # roots must not be filed both under "Linear")
        self._model_names: dict[int, str] = {}
        self._named: weakref.WeakValueDictionary[int, torch.nn.Module] = weakref.WeakValueDictionary()
        self._optimizers: weakref.WeakValueDictionary[int, torch.optim.Optimizer] = weakref.WeakValueDictionary()
        self._undo: list = []
        self._fingerprint = _Fingerprints()
        self._closed = False
        self._busy = False                      # no tracing of the tracer's own torch calls
        self._inside = 0                        # only the outermost traced API call is recorded

    # --- events -------------------------------------------------------------------------------------------
    def rank(self) -> int:
        if self._rank is None:
            r = _rank()
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                self._rank = r                          # fixed once the process group exists
            return r
        return self._rank

    def emit(self, kind: str, **fields: Any) -> None:
        self._seq += 1
        event = {"kind": kind, "seq": self._seq, "iter": self.iteration, "rank": self.rank(), **fields}
        self.events.append(event)
        if self._online is not None:
            self._online.feed(event)

    def _advance(self, next_started: bool) -> None:
        """End the iteration; checked online, its violation stops the program here (raised into it): still in
        the iteration that ended (its ``step`` returning), or in the next one (``next_started``: its forward)."""
        ended = self.iteration
        self.iteration += 1
        self._backward_since_boundary = False
        if self._online is not None:
            found = self._online.end_iteration(ended, ended + 1 if next_started else ended)
            if found:
                from syslab.training.traincheck.online import SilentErrorDetected

                raise SilentErrorDetected(found)

    def api(self, name: str, phase: str, call: int, **fields: Any) -> None:
        self.emit("api", api=name, phase=phase, call=call, **fields)

    def snapshot(self, api: str, phase: str, call: int, params: bool = True) -> None:
        """One ``state`` event: every traced model's mode, every optimizer's learning rates and, unless
        ``params`` is False or this API/iteration is not selected, every parameter's summary."""
        params = params and (self.state_apis is None or api in self.state_apis) and self.iteration % self.every == 0
        held = {id(p) for opt in self._optimizers.values() for g in opt.param_groups for p in g["params"]}
        named: dict[int, str] = {}
        state: dict[str, list] = {}
        for model in self.roots():
            root = self._name(model)
            state[root] = ["module", {"training": bool(model.training)}]
            if not params:
                continue
            for name, p in model.named_parameters():
                named[id(p)] = f"{root}.{name}"
                state[f"{root}.{name}"] = ["param", self._param(p, id(p) in held)]
        for i, opt in enumerate(self._optimizers.values()):
            for g, group in enumerate(opt.param_groups):
                state[f"{type(opt).__name__}{i}.group{g}"] = ["optimizer", {"lr": float(group.get("lr", 0.0)),
                                                                           "params": len(group["params"])}]
                for j, p in enumerate(group["params"]):
                    if params and id(p) not in named:            # held by an optimizer but in no traced model
                        state[f"{type(opt).__name__}{i}.group{g}.param{j}"] = ["param", self._param(p, True)]
        self.emit("state", api=api, phase=phase, call=call, vars=state)

    def see(self, module: torch.nn.Module) -> None:
        """Remember a module the program uses (unwrapped from DDP)."""
        model = _unwrap(module)
        self._models[id(model)] = model

    def roots(self) -> list[torch.nn.Module]:
        """The seen modules that are part of no other seen module, in the order first seen. Recomputed at each
        snapshot (O(modules)), since a program may re-parent modules mid-run (``model[5] = nn.Linear(...)``)."""
        seen = list(self._models.values())
        inner = {id(sub) for m in seen for sub in m.modules() if sub is not m}
        return [m for m in seen if id(m) not in inner]

    def _name(self, model: torch.nn.Module) -> str:
        if id(model) not in self._model_names or self._named.get(id(model)) is not model:
            base = type(model).__name__
            taken = sum(1 for n in self._model_names.values() if n.split("#")[0] == base)
            self._model_names[id(model)] = base if taken == 0 else f"{base}#{taken}"
            self._named[id(model)] = model
        return self._model_names[id(model)]

    def _param(self, p: torch.Tensor, in_optimizer: bool) -> dict:
        attrs = {"value": self._fingerprint(p)[0], "requires_grad": bool(p.requires_grad),
                 "dtype": str(p.dtype).replace("torch.", ""), "in_optimizer": in_optimizer,
                 "has_grad": p.grad is not None}
        if p.grad is not None:
            attrs["grad"], attrs["grad_zero"] = self._fingerprint(p.grad)
        return attrs

    # --- the wrappers ----------------------------------------------------------------------------------------
    def _traced(self, name: str, snapshot: bool = False, args_of=None, ret_of=None, materialise: bool = False):
        """A decorator factory: pre/post events (and state snapshots) around a function. ``materialise`` turns a
        one-shot iterable first argument (``model.parameters()``) into a list, so that summarising the
        arguments never consumes what the function is given."""
        def wrap(fn):
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                if self._busy or self._closed or self._inside:
                    return fn(*args, **kwargs)
                if materialise and args and not isinstance(args[0], torch.Tensor):
                    args = (list(args[0]), *args[1:])
                self._busy = True
                try:
                    self._call += 1
                    call = self._call
                    self.api(name, "pre", call, args=args_of(*args, **kwargs) if args_of else {})
                    if snapshot:
                        self.snapshot(name, "pre", call)
                finally:
                    self._busy = False
                self._inside += 1
                try:
                    out = fn(*args, **kwargs)
                finally:
                    self._inside -= 1
                self._busy = True
                try:
                    if snapshot:
                        self.snapshot(name, "post", call)
                    self.api(name, "post", call, ret=ret_of(out) if ret_of else _summary(out))
                    self._after(name)
                finally:
                    self._busy = False
                return out
            inner.__syslab_traced__ = True
            return inner
        return wrap

    def _after(self, name: str) -> None:
        if name == "Tensor.backward" or name == "autograd.backward":
            self._backward_since_boundary = True

    def _patch(self, owner: Any, attr: str, wrapper) -> None:
        original = getattr(owner, attr)
        if getattr(original, "__syslab_traced__", False):
            return
        setattr(owner, attr, wrapper(original))
        self._undo.append((owner, attr, original))

    def install(self) -> Tracer:
        import torch.nn.functional as F
        import torch.nn.modules.module as module_hooks
        import torch.optim.lr_scheduler as sched
        import torch.optim.optimizer as optim_hooks

        # optimizer step: torch's global hooks see every optimizer class
        def step_pre(opt, args, kwargs):
            if self._busy:
                return
            self._busy = True
            try:
                self._optimizers[id(opt)] = opt
                self._call += 1
                opt.__syslab_call__ = self._call
                self.api("Optimizer.step", "pre", self._call, args={"optimizer": type(opt).__name__})
                self.snapshot("Optimizer.step", "pre", self._call)
            finally:
                self._busy = False

        def step_post(opt, args, kwargs):
            if self._busy:
                return
            self._busy = True
            try:
                call = getattr(opt, "__syslab_call__", self._call)
                self.snapshot("Optimizer.step", "post", call)
                self.api("Optimizer.step", "post", call, ret=None)
                self._advance(next_started=False)           # an optimizer step ends the iteration
            finally:
                self._busy = False

        self._undo.append(optim_hooks.register_optimizer_step_pre_hook(step_pre))
        self._undo.append(optim_hooks.register_optimizer_step_post_hook(step_post))

        def track_optimizer(fn):
            @functools.wraps(fn)
            def init(opt, *args, **kwargs):
                fn(opt, *args, **kwargs)
                self._optimizers[id(opt)] = opt
            init.__syslab_traced__ = True
            return init

        self._patch(torch.optim.Optimizer, "__init__", track_optimizer)

        def track_module(fn):
            @functools.wraps(fn)
            def parameters(module, *args, **kwargs):
                if not self._busy and not self._closed:
                    self.see(module)
                return fn(module, *args, **kwargs)
            parameters.__syslab_traced__ = True
            return parameters

        for attr in ("parameters", "named_parameters"):
            self._patch(torch.nn.Module, attr, track_module)
        self._patch(torch.optim.Optimizer, "zero_grad", self._traced(
            "Optimizer.zero_grad", snapshot=True, args_of=lambda opt, set_to_none=True: {
                "optimizer": type(opt).__name__, "set_to_none": bool(set_to_none)}))
        self._patch(torch.Tensor, "backward", self._traced(
            "Tensor.backward", snapshot=True, args_of=lambda t, *a, **k: {"loss": _summary(t)}))
        self._patch(torch.autograd, "backward", self._traced("autograd.backward", snapshot=True))
        for owner in (torch.nn.utils, torch.nn.utils.clip_grad):
            for fn in ("clip_grad_norm_", "clip_grad_value_"):
                if hasattr(owner, fn):
                    self._patch(owner, fn, self._traced(f"nn.utils.{fn}", snapshot=True,
                                                        args_of=_clip_args, materialise=True))
        self._patch(torch.nn.Module, "train", self._traced(
            "Module.train", args_of=lambda m, mode=True: {"module": type(m).__name__, "mode": bool(mode)},
            ret_of=lambda out: None))
        self._patch(sched.LRScheduler, "step", self._traced(
            "LRScheduler.step", args_of=lambda s, *a, **k: {"scheduler": type(s).__name__},
            ret_of=lambda out: None))
        self._patch(F, "dropout", self._traced(
            "functional.dropout", args_of=lambda x, p=0.5, training=True, inplace=False: {
                "p": float(p), "training": bool(training)}, ret_of=lambda out: None))
        try:
            from torch.amp import GradScaler
            self._patch(GradScaler, "step", self._traced("GradScaler.step", ret_of=_summary))
            self._patch(GradScaler, "update", self._traced("GradScaler.update", ret_of=lambda out: None))
        except ImportError:  # pragma: no cover
            pass
        import torch.distributed as dist
        if dist.is_available():
            for fn in ("all_reduce", "broadcast", "barrier", "all_gather", "reduce_scatter"):
                if hasattr(dist, fn):
                    self._patch(dist, fn, self._traced(f"distributed.{fn}", args_of=lambda *a, **k: {},
                                                       ret_of=lambda out: None))

        for dotted in self.extra_apis:
            owner, attr = _resolve(dotted)
            self._patch(owner, attr, self._traced(dotted.removeprefix("torch."), args_of=_generic_args))

        # the outermost forward of any module is a model being run
        def fwd_pre(module, args):
            if self._busy:
                return
            self._depth += 1
            if self._depth != 1:
                return
            self._busy = True
            try:
                if self._backward_since_boundary:           # a new forward after a backward with no step
                    try:
                        self._advance(next_started=True)
                    except BaseException:                   # stopped online: this forward never runs
                        self._depth -= 1
                        raise
                model = _unwrap(module)
                self.see(model)
                self._call += 1
                first = next((a for a in args if isinstance(a, torch.Tensor)), None)
                self.api("Module.forward", "pre", self._call,
                         args={"module": type(model).__name__, "training": bool(model.training),
                               "input": fingerprint(first) if first is not None else None})
                self.snapshot("Module.forward", "pre", self._call, params=False)   # modes; no check uses params
                module.__syslab_call__ = self._call
            finally:
                self._busy = False

        def fwd_post(module, args, output):
            if self._busy:
                return
            self._depth -= 1
            if self._depth != 0:
                return
            self._busy = True
            try:
                self.api("Module.forward", "post", getattr(module, "__syslab_call__", self._call),
                         ret=_summary(output))
            finally:
                self._busy = False

        self._undo.append(module_hooks.register_module_forward_pre_hook(fwd_pre))
        self._undo.append(module_hooks.register_module_forward_hook(fwd_post))
        return self

    def uninstall(self) -> None:
        for item in reversed(self._undo):
            if isinstance(item, tuple):
                owner, attr, original = item
                setattr(owner, attr, original)
            else:
                item.remove()
        self._undo.clear()

    def close(self) -> Path:
        """Uninstall and write the trace (idempotent)."""
        if not self._closed:
            self._closed = True
            self.uninstall()
            if self._online is not None:                    # the final iteration, as the run's last
                self._online.end_iteration(self.iteration, self.iteration, last=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w") as f:
                for e in self.events:
                    f.write(json.dumps(e, separators=(",", ":")) + "\n")
        return self.path


def _resolve(dotted: str) -> tuple[Any, str]:
    """``torch.nn.functional.softmax`` -> (the module, "softmax"); ``torch.Tensor.add_`` -> (the class, "add_")."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:-1]:
                owner = getattr(owner, name)
            if callable(getattr(owner, parts[-1], None)):
                return owner, parts[-1]
        except AttributeError:
            pass
        break
    raise ValueError(f"cannot find the API {dotted!r} to trace")


def _generic_args(*args, **kwargs) -> dict:
    out = {f"arg{i}": _summary(a) for i, a in enumerate(args)}
    out.update({k: _summary(v) for k, v in kwargs.items()})
    return {k: v for k, v in out.items() if v is not None}


def _clip_args(parameters, *args, **kwargs) -> dict:
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    return {"params": len(params), "with_grad": sum(p.grad is not None for p in params)}


_ACTIVE: Tracer | None = None


def start(out_dir: str | Path) -> Tracer:
    """Start tracing this process into ``out_dir`` (and write the trace at exit); the selection of state
    snapshots comes from the environment (``SYSLAB_TRAINCHECK_STATE_APIS``, ``SYSLAB_TRAINCHECK_EVERY``)."""
    global _ACTIVE
    if _ACTIVE is None:
        apis = os.environ.get(ENV_STATE_APIS)
        extra = tuple(a for a in os.environ.get(ENV_APIS, "").split(",") if a)
        online = None
        if os.environ.get(ENV_ONLINE):
            from syslab.training.traincheck.relations import load

            online = load(Path(os.environ[ENV_ONLINE]))
        _ACTIVE = Tracer(out_dir, set(apis.split(",")) if apis is not None else None,
                         int(os.environ.get(ENV_EVERY, "1")), extra, online).install()
        atexit.register(_ACTIVE.close)
    return _ACTIVE


def stop() -> Path | None:
    global _ACTIVE
    if _ACTIVE is None:
        return None
    path = _ACTIVE.close()
    _ACTIVE = None
    return path
