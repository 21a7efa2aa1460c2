"""FlexPipe's mapping search (HBSA), its trigger conditions (FMOP) and the trace-driven training loop.

**HBSA** (§4.3): for each stage count N, stages get between floor(L/N) and floor(L/N) + (L mod N) layers and
between floor(D/N) and floor(D/N) + (D mod N) GPUs (the paper writes L mod N for the GPU bound too; we read
it as D mod N); the mapping inside these bounds minimising T(new) + T_switch(old -> new) that fits in memory
is kept. The bounded space is still up to ~10^8 mappings at 11-12 stages, so ``hbsa_space`` prunes it (see
there); ``brute_force`` enumerates every composition on small instances to measure the loss.

**FMOP** (§4.4, Eq. 7) before each iteration, on the *next* mini-batch's longest sequence mu:

    A: the current mapping fits;   B: T_new + T_switch >= T_cur
    C: the current mapping fits with memory optimisation (full recomputation);
    D: T_new + T_switch >= T_cur with memory optimisation
    A and B: keep;   A and not B: switch (shrink);   not A, C and D: memory optimisation only;   else: grow.

The paper compares one iteration's times; a switch then only pays if it recovers its 0.8 s stall within
one iteration, so a job that grew for one long batch would keep the grown mapping. We amortise the switch
over ``horizon`` iterations (T_switch / horizon in B and D; ``horizon = 1`` is the paper's literal rule).
Both are reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from syslab.training.flexpipe import model as M

T_SWITCH_S = 0.8                               # the paper's measured live-reconfiguration stall (0.79 s)


def _compositions(total: int, parts: int, lo: int, hi: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        if lo <= total <= hi:
            yield (total,)
        return
    for first in range(lo, min(hi, total - lo * (parts - 1)) + 1):
        for rest in _compositions(total - first, parts - 1, lo, hi):
            yield (first, *rest)


def _non_increasing(total: int, parts: int, lo: int, hi: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        if lo <= total <= hi:
            yield (total,)
        return
    for first in range(min(hi, total - lo * (parts - 1)), lo - 1, -1):
        for rest in _non_increasing(total - first, parts - 1, lo, first):
            yield (first, *rest)


def _layer_splits(L: int, gpus: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The even split and the split that balances layers per GPU (water-filling within HBSA's bounds)."""
    n = len(gpus)
    lo, hi = L // n, L // n + L % n
    even = tuple(lo + (1 if i < L % n else 0) for i in range(n))
    layers = [lo] * n
    for _ in range(L - lo * n):
        i = min((i for i in range(n) if layers[i] < hi), key=lambda i: ((layers[i] + 1) / gpus[i], -i))
        layers[i] += 1
    return list(dict.fromkeys([even, tuple(layers)]))


def hbsa_space(job: M.Job) -> Iterator[M.Mapping]:
    """HBSA's candidates: for each stage count N, GPUs per stage within the bounds, non-increasing along the
    pipeline (earlier stages hold more micro-batches' activations, so they get GPUs first), and for each
    GPU split the even layer split and the one balancing layers per GPU, within the layer bounds. Pruning
    the paper's bounded space this way (from up to ~10^8 mappings at 11-12 stages to a few hundred) is our
    choice; ``brute_force`` measures what it costs on small instances."""
    L, D = job.layers, job.gpus
    for n in range(1, min(L, D) + 1):
        for gpus in _non_increasing(D, n, D // n, D // n + D % n):
            for layers in _layer_splits(L, gpus):
                yield tuple(zip(layers, gpus, strict=True))


def full_space(job: M.Job) -> Iterator[M.Mapping]:
    """Every mapping: grows combinatorially (about 32 thousand for 12 layers on 8 GPUs, billions for 32 on
    16), so only for small instances."""
    for n in range(1, min(job.layers, job.gpus) + 1):
        for layers in _compositions(job.layers, n, 1, job.layers):
            for gpus in _compositions(job.gpus, n, 1, job.gpus):
                yield tuple(zip(layers, gpus, strict=True))


def best(job: M.Job, lengths: np.ndarray, space: list[M.Mapping], current: M.Mapping | None = None,
         recompute: bool = False, switch_s: float = 0.0) -> tuple[M.Mapping | None, float]:
    """The fitting mapping of ``space`` with the least T + (switch_s if it differs from ``current``)."""
    choice, score = None, np.inf
    for mp in space:
        if not M.fits(job, mp, lengths, recompute):
            continue
        s = M.iteration_s(job, mp, lengths, recompute) + (switch_s if current is not None and mp != current else 0.0)
        if s < score:
            choice, score = mp, s
    return choice, score


def brute_force(job: M.Job, lengths: np.ndarray) -> tuple[M.Mapping | None, float]:
    return best(job, lengths, list(full_space(job)))


@dataclass
class Step:
    mu: float
    action: str                                 # keep | shrink | grow | memopt (see _direction)
    mapping: M.Mapping
    recompute: bool
    time_s: float                               # iteration time, including a switch's stall
    tokens: int
    decide_s: float


@dataclass
class Trace:
    steps: list[Step] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return sum(s.tokens for s in self.steps) / sum(s.time_s for s in self.steps)

    @property
    def switches(self) -> int:
        return sum(s.action in ("shrink", "grow") for s in self.steps)

    def count(self, action: str) -> int:
        return sum(s.action == action for s in self.steps)


def flexpipe(job: M.Job, batches: list[np.ndarray], initial: M.Mapping, horizon: float = 10.0,
             switch_s: float = T_SWITCH_S) -> Trace:
    """Run FMOP + HBSA before every iteration on the next batch's longest sequence."""
    space = list(hbsa_space(job))
    cur = initial
    out = Trace()
    for lengths in batches:
        mu = float(lengths.max())
        t0 = time.perf_counter()
        amort = switch_s / horizon
        new, new_score = best(job, lengths, space, cur, switch_s=amort)
        a = M.fits(job, cur, lengths)
        t_cur = M.iteration_s(job, cur, lengths) if a else np.inf
        if a and (new is None or new == cur or new_score >= t_cur):
            action, mapping, rc = "keep", cur, False
        elif a:
            action, mapping, rc = _direction(cur, new), new, False
        else:
            c = M.fits(job, cur, lengths, recompute=True)
            t_rc = M.iteration_s(job, cur, lengths, recompute=True) if c else np.inf
            if c and (new is None or new_score >= t_rc):
                action, mapping, rc = "memopt", cur, True
            elif new is not None:
                action, mapping, rc = _direction(cur, new), new, False
            else:                                  # nothing fits without recomputation: best mapping with it
                mapping, _ = best(job, lengths, space, cur, recompute=True, switch_s=amort)
                action, rc = ("memopt" if mapping == cur else _direction(cur, mapping)), True
        decide = time.perf_counter() - t0
        t = M.iteration_s(job, mapping, lengths, rc) + (switch_s if mapping != cur else 0.0)
        out.steps.append(Step(mu, action, mapping, rc, t, int(lengths.sum()), decide))
        cur = mapping
    return out


def _direction(old: M.Mapping, new: M.Mapping) -> str:
    """FlexPipe's words: *shrink* to fewer stages (more data parallelism), *grow* to more; a re-split at the
    same depth counts as a shrink (it is the A-and-not-B branch)."""
    return "grow" if len(new) > len(old) else "shrink"


def static(job: M.Job, batches: list[np.ndarray], recompute: bool = False,
           fewest_stages: bool = True) -> tuple[Trace, M.Mapping | None]:
    """One mapping for the whole run, among those (in HBSA's space, which holds every even split) that fit
    every one of its mini-batches, i.e. sized for the worst. ``fewest_stages``: the paper's baseline, the
    fewest stages that fit with the remaining GPUs as data parallelism (the fastest such mapping);
    otherwise the fastest fixed mapping of any depth (a stronger baseline than the paper's)."""
    space = [mp for mp in hbsa_space(job) if all(M.fits(job, mp, b, recompute) for b in _worst(batches))]
    if fewest_stages and space:
        depth = min(len(mp) for mp in space)
        space = [mp for mp in space if len(mp) == depth]
    mapping = min(space, key=lambda mp: sum(M.iteration_s(job, mp, b, recompute) for b in _sample(batches)),
                  default=None)
    out = Trace()
    if mapping is None:
        return out, None
    for lengths in batches:
        mu = float(lengths.max())
        out.steps.append(Step(mu, "keep", mapping, recompute, M.iteration_s(job, mapping, lengths, recompute),
                              int(lengths.sum()), 0.0))
    return out, mapping


def _worst(batches: list[np.ndarray], k: int = 8) -> list[np.ndarray]:
    """The batches with the largest sums of their longest sequences: the ones that bind memory."""
    return sorted(batches, key=lambda b: -np.sort(b)[::-1][:k].sum())[:k]


def _sample(batches: list[np.ndarray], k: int = 64) -> list[np.ndarray]:
    step = max(1, len(batches) // k)
    return batches[::step]


# ---------------------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------------------


def mixture_batches(short: np.ndarray, long: np.ndarray, batch: int, iterations: int, long_batch_share: float,
                    rng: np.random.Generator, cap: int = 32768) -> list[np.ndarray]:
    """Mini-batches of ``batch`` lengths, each drawn from ``short`` except with probability q from ``long``,
    q chosen so that ``long_batch_share`` of mini-batches contain at least one long sequence
    (1 - (1 - q)^batch); lengths capped at ``cap``."""
    q = 1 - (1 - long_batch_share) ** (1 / batch)
    out = []
    for _ in range(iterations):
        pick_long = rng.random(batch) < q
        lengths = np.where(pick_long, rng.choice(long, batch), rng.choice(short, batch))
        out.append(np.minimum(lengths, cap).astype(np.int64))
    return out
