"""FlexPipe's mapping search (HBSA), its trigger conditions (FMOP) and the trace-driven training loop.

**HBSA** (§4.3): for each stage count N, stages get between floor(L/N) and floor(L/N) + (L mod N) layers and
between floor(D/N) and floor(D/N) + (D mod N) GPUs (the paper writes L mod N for the GPU bound too; we read
it as D mod N); the mapping inside these bounds minimising T(new) + T_switch(old -> new) that fits in memory
is kept. Every mapping is searched with and without full recomputation (T_new is the better of the two that
fit), always, not only when nothing fits without it: a shallow recomputing mapping can beat a deep one that
needs none. The bounded space is still up to ~10^8 mappings at 11-12 stages, so ``hbsa_space`` prunes it (see
there); ``brute_force`` enumerates every composition on small instances to measure the loss.

**FMOP** (§4.4, Eq. 7) before each iteration, on the *next* mini-batch's longest sequence mu:

    A: the current mapping fits;   B: T_new + T_switch >= T_cur
    C: the current mapping fits with memory optimisation (full recomputation);
    D: T_new + T_switch >= T_cur with memory optimisation
    A and B: keep;   A and not B: switch (shrink);   not A, C and D: memory optimisation only;   else: grow.

The paper compares one iteration's times; a switch then only pays if it recovers its 0.8 s stall within
one iteration, so a job that grew for one long batch would keep the grown mapping. We amortise the switch
over ``horizon`` iterations (T_switch / horizon in B and D; ``horizon = 1`` is the paper's literal rule).
Either rule judges one iteration at a time and can pay more in stalls over a run than it wins, so
``flexpipe`` adds a guard (ours) that bounds its total time by the static pipeline it starts on; both the
guarded and the unguarded runs are reported.

**Baselines** (``static``): one mapping for the run, sized for its longest sequence, without recomputation,
with it in every iteration, or (an ablation: FMOP's memory-optimisation action alone) only where it must.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from syslab.core.errors import InputError
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


Plan = tuple[M.Mapping, bool]                  # (mapping, full recomputation on)
RECOMPUTE = (False, True)


def best(job: M.Job, lengths: np.ndarray, space: list[M.Mapping], current: M.Mapping | None = None,
         recompute: bool | None = None, switch_s: float = 0.0,
         costs: dict[bool, M.BatchCost] | None = None) -> tuple[Plan | None, float]:
    """The fitting (mapping, recomputation) pair of ``space`` x {off, on} (or only ``recompute``'s setting) with
    the least T + (switch_s if the mapping differs from ``current``)."""
    mu = float(np.max(lengths))
    costs = costs or {rc: M.batch_cost(job, lengths, rc) for rc in RECOMPUTE}
    choice, score = None, np.inf
    for rc in RECOMPUTE if recompute is None else (recompute,):
        for mp in space:
            if not M.fits(job, mp, mu, rc):
                continue
            s = M.iteration_time(job, mp, costs[rc]) + (switch_s if current is not None and mp != current else 0.0)
            if s < score:
                choice, score = (mp, rc), s
    return choice, score


def brute_force(job: M.Job, lengths: np.ndarray, recompute: bool | None = None) -> tuple[Plan | None, float]:
    return best(job, lengths, list(full_space(job)), recompute=recompute)


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
    def time_s(self) -> float:
        return sum(s.time_s for s in self.steps)

    @property
    def throughput(self) -> float:
        return sum(s.tokens for s in self.steps) / self.time_s

    @property
    def switches(self) -> int:
        return sum(s.action in ("shrink", "grow") for s in self.steps)

    def count(self, action: str) -> int:
        return sum(s.action == action for s in self.steps)


def flexpipe(job: M.Job, batches: list[np.ndarray], initial: M.Mapping, horizon: float = 10.0,
             switch_s: float = T_SWITCH_S, guard: bool = True) -> Trace:
    """Run FMOP + HBSA before every iteration on the next mini-batch.

    HBSA searches every mapping of its space with and without recomputation, always (not only when nothing
    fits without it), and FMOP takes the candidate with the least T + T_switch / horizon. With recomputation
    searched for every mapping this argmin is Eq. 7: the current mapping without recomputation wins when it
    fits and nothing beats it (A and B: keep); with it, when only that fits and nothing beats it (not A, C and
    D: memory optimisation only); otherwise the best other mapping (shrink or grow).

    ``guard`` (ours, not the paper's): FMOP judges a switch on one iteration, so a run of batches can make it
    pay stalls that a fixed mapping never pays. The guard keeps the time saved so far against staying on
    ``initial`` (recomputing only when it must), the credit, at least one T_switch whenever FlexPipe is away
    from ``initial``, so that going back is always affordable: a candidate that would break this is skipped.
    Staying on ``initial`` and going back to it always keep it, so FlexPipe's total time never exceeds that
    of the static pipeline ``initial`` with recomputation only when needed."""
    space = list(hbsa_space(job))
    cur = initial
    credit = 0.0
    out = Trace()
    for lengths in batches:
        mu = float(lengths.max())
        t0 = time.perf_counter()
        costs = {rc: M.batch_cost(job, lengths, rc) for rc in RECOMPUTE}
        ref = 0.0
        if guard:                              # staying on ``initial``; a reference that cannot run it binds nothing
            ref = (M.iteration_time(job, initial, costs[not M.fits(job, initial, mu)])
                   if M.fits(job, initial, mu, True) else np.inf)
        choice, score, t_choice = None, np.inf, np.inf
        for rc in RECOMPUTE:
            for mp in space:
                if not M.fits(job, mp, mu, rc):
                    continue
                t = M.iteration_time(job, mp, costs[rc]) + (switch_s if mp != cur else 0.0)
                if guard and credit + ref - t < (switch_s if mp != initial else 0.0) - 1e-9:
                    continue                                   # could not afford the way back to ``initial``
                s = t - (switch_s - switch_s / horizon if mp != cur else 0.0)      # T + T_switch / horizon
                if s < score:
                    choice, score, t_choice = (mp, rc), s, t
        if choice is None:
            raise InputError(f"no mapping fits a mini-batch whose longest sequence has {mu:,.0f} tokens, even "
                             "with recomputation.", field="lengths", fix="cap or split the longest sequences.")
        mapping, rc = choice
        action = ("memopt" if rc else "keep") if mapping == cur else _direction(cur, mapping)
        decide = time.perf_counter() - t0
        credit += ref - t_choice
        out.steps.append(Step(mu, action, mapping, rc, t_choice, int(lengths.sum()), decide))
        cur = mapping
    return out


def _direction(old: M.Mapping, new: M.Mapping) -> str:
    """FlexPipe's words: *shrink* to fewer stages (more data parallelism), *grow* to more; a re-split at the
    same depth counts as a shrink (it is the A-and-not-B branch)."""
    return "grow" if len(new) > len(old) else "shrink"


STATIC_RECOMPUTE = ("never", "always", "when needed")


def static(job: M.Job, batches: list[np.ndarray], recompute: bool | str = False,
           fewest_stages: bool = True) -> tuple[Trace, M.Mapping | None]:
    """One mapping for the whole run, among those of HBSA's space (which holds every even split) that fit every
    one of its mini-batches (sized for the longest sequence), the one with the least total time over all of them
    (the best a fixed mapping can do on this run: it only strengthens the baseline). ``recompute``:
    ``"never"`` (False), ``"always"`` (True: full recomputation every iteration) or ``"when needed"``
    (recomputation only in iterations the mapping cannot hold without it: FMOP's memory-optimisation action
    alone, an ablation rather than the paper's baseline). ``fewest_stages``: the paper's baseline, the fewest
    stages that fit with the remaining GPUs as data parallelism; otherwise the fastest fixed mapping of any
    depth (a stronger baseline than the paper's)."""
    mode = {False: "never", True: "always"}.get(recompute, recompute)
    if mode not in STATIC_RECOMPUTE:
        raise ValueError(f"recompute must be one of {STATIC_RECOMPUTE}, not {recompute!r}")
    mu = max(float(b.max()) for b in batches)
    space = [mp for mp in hbsa_space(job) if M.fits(job, mp, mu, mode != "never")]
    if fewest_stages and space:
        depth = min(len(mp) for mp in space)
        space = [mp for mp in space if len(mp) == depth]
    out = Trace()
    if not space:
        return out, None
    costs = [{rc: M.batch_cost(job, b, rc) for rc in RECOMPUTE} for b in batches]

    def plan(mp: M.Mapping, b: np.ndarray) -> bool:
        return mode == "always" or (mode == "when needed" and not M.fits(job, mp, float(b.max())))

    totals = {mp: sum(M.iteration_time(job, mp, c[plan(mp, b)]) for b, c in zip(batches, costs, strict=True))
              for mp in space}
    mapping = min(space, key=totals.__getitem__)
    for lengths, c in zip(batches, costs, strict=True):
        rc = plan(mapping, lengths)
        out.steps.append(Step(float(lengths.max()), "memopt" if rc and mode == "when needed" else "keep", mapping,
                              rc, M.iteration_time(job, mapping, c[rc]), int(lengths.sum()), 0.0))
    return out, mapping


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
