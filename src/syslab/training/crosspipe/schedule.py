"""CrossPipe's schedules on a pipeline that spans datacenters (Chen et al., ATC'25, arXiv 2507.00217).

The setting is the paper's sensitivity study (§5): p stages over ``dcs`` datacenters, cut evenly; every
stage-to-stage message that crosses a datacenter boundary pays an alpha-beta link (``Delay``: latency and
serialisation time of one activation message, both in units of one stage's forward time T_F), everything
else is free. F = B = W = 1 (the backward split as in zero bubble); the unsplit baselines' backward is B + W.

Three traversal patterns (§3.3) place the model's virtual stages on devices:

| pattern | like           | virtual stages per device | DC crossings per micro-batch (2 DCs) |
|---------|----------------|---------------------------|---------------------------------------|
| UD      | 1F1B, ZB-H1    | 1                         | 2                                     |
| Wave    | ZB-V           | 2, in a V                 | 4                                     |
| Loop    | interleaved    | 2, round and round        | 6                                     |

*Static* schedules keep the per-device order they were designed with at zero delay (1F1B, interleaved
1F1B, ZB-H1, ZB-V), so a delay just stretches them. CrossPipe's *dynamic* schedules are built by the greedy
list scheduler with phase priorities (``pipeline.Greedy(phases=True)``, the paper's Alg. 1) playing the
iteration out under the delay model, so the order itself adapts: CrossUD (UD), CrossUDSub (UD with each W
split into ``n_sub`` sub-blocks that can slot between arriving work; which blocks the paper splits is our
reading: only W, the one nothing waits for) and CrossWave (Wave). CrossPipe takes the best of the three.
The sensitivity study also runs the greedy on Loop (CrossLoop) and without the B/W split
(``pattern_makespan``).

Memory: every schedule gets one budget, 1F1B's peak: p micro-batches' activations per device (a micro-batch
holds its activations from its forward to its W), which is also ZB-H1's in-flight bound; interleaved 1F1B
needs more than the budget (its natural peak, reported beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

from syslab.core.errors import InputError
from syslab.core.timeline import Schedule
from syslab.training import pipeline as P

STATIC = ("1F1B", "IV1F1B", "ZBH1", "ZBV")
DYNAMIC = ("CrossUD", "CrossUDSub", "CrossWave")
PATTERN = {"1F1B": "UD", "IV1F1B": "Loop", "ZBH1": "UD", "ZBV": "Wave",
           "CrossUD": "UD", "CrossUDSub": "UD", "CrossWave": "Wave", "CrossLoop": "Loop"}


@dataclass(frozen=True)
class Delay:
    """Cross-DC link cost in units of T_F: ``latency`` (alpha) delays a message without occupying the link,
    ``bandwidth`` (beta x message) is how long one activation message occupies it."""

    latency: float = 0.0
    bandwidth: float = 0.0

    def __post_init__(self) -> None:
        if self.latency < 0 or self.bandwidth < 0:
            raise InputError(f"negative delay {self}.", field="delay", fix="latency and bandwidth are >= 0 (x T_F).")


def stages(pp: int, microbatches: int, delay: Delay, pattern: str = "UD", split: bool = True,
           weight_pieces: int = 1, dcs: int = 2, t_f: float = 1.0) -> P.Stages:
    """The iteration's work: F = B = W = ``t_f`` per stage (each of two chunks takes half), message size 1."""
    if pattern not in ("UD", "Wave", "Loop"):
        raise InputError(f"unknown pattern {pattern!r}.", field="pattern", fix="use UD, Wave or Loop.")
    if not 1 <= dcs <= pp:
        raise InputError(f"{dcs} datacenters for {pp} stages.", field="dcs", fix="use 1 <= dcs <= stages.")
    cuts = [pp * k // dcs for k in range(1, dcs)]
    links = P.cross_dc_links(pp, cuts, P.Link(delay.latency * t_f, delay.bandwidth * t_f))
    chunks = 1 if pattern == "UD" else 2
    return P.uniform_stages(pp, microbatches, t_f, t_f if split else 2 * t_f, t_f if split else None, chunks,
                            v_shape=pattern == "Wave", message_bytes=1.0, links=links,
                            weight_pieces=weight_pieces if split else 1)


def memory_budget(pp: int) -> float:
    """1F1B's peak (stage 0 holds p micro-batches), given to every device."""
    return float(pp)


def run(name: str, pp: int, microbatches: int, delay: Delay, dcs: int = 2, n_sub: int = 4) -> Schedule:
    """Simulate schedule ``name`` (one of ``STATIC`` + ``DYNAMIC``) under ``delay``."""
    if name == "1F1B":
        return P.simulate(stages(pp, microbatches, delay, "UD", split=False, dcs=dcs), P.orders_1f1b(pp, microbatches))
    if name == "IV1F1B":
        return P.simulate(stages(pp, microbatches, delay, "Loop", split=False, dcs=dcs),
                          P.orders_interleaved(pp, 2, microbatches))
    if name == "ZBH1":
        return P.simulate(stages(pp, microbatches, delay, "UD", dcs=dcs), P.orders_zb_h1(pp, microbatches))
    if name == "ZBV":
        return P.simulate(stages(pp, microbatches, delay, "Wave", dcs=dcs), P.orders_zb_v(pp, microbatches))
    greedy = P.Greedy(memory_budget(pp), phases=True)
    if name == "CrossUD":
        return P.simulate(stages(pp, microbatches, delay, "UD", dcs=dcs), greedy)
    if name == "CrossUDSub":
        return P.simulate(stages(pp, microbatches, delay, "UD", weight_pieces=n_sub, dcs=dcs), greedy)
    if name == "CrossWave":
        return P.simulate(stages(pp, microbatches, delay, "Wave", dcs=dcs), greedy)
    if name == "CrossLoop":                                     # the sensitivity study's third pattern
        return P.simulate(stages(pp, microbatches, delay, "Loop", dcs=dcs), greedy)
    raise InputError(f"unknown schedule {name!r}.", field="schedule",
                     fix=f"use one of {', '.join(STATIC + DYNAMIC)} or CrossLoop.")


def pattern_makespan(pattern: str, pp: int, microbatches: int, delay: Delay, split: bool = True,
                     dcs: int = 2) -> float:
    """The sensitivity study's cell (§5.1): the greedy scheduler on one traversal pattern, with or without
    the B/W split, under ``delay``."""
    st = stages(pp, microbatches, delay, pattern, split=split, dcs=dcs)
    return P.simulate(st, P.Greedy(memory_budget(pp), phases=True)).makespan


def best_dynamic(pp: int, microbatches: int, delay: Delay, dcs: int = 2, n_sub: int = 4) -> tuple[str, Schedule]:
    """CrossPipe's pick: the shortest of its dynamic schedules."""
    runs = {n: run(n, pp, microbatches, delay, dcs, n_sub) for n in DYNAMIC}
    name = min(runs, key=lambda n: runs[n].makespan)
    return name, runs[name]
