"""Prefill/decode (PD) disaggregated pools beside colocated instances, on the shared serving engine.

A *disaggregated group* is a pool of prefill instances and a pool of decode instances. A request routed to it
is prefilled on a prefill instance (the engine's ``Instance`` running a shadow of the request with one output
token: the prefill's last position emits the first token, so TTFT is the prefill's), then its KV cache crosses a
modelled link to a decode instance (``kv_bytes`` at ``transfer_s``, by default ``core.gpu``'s point-to-point
time on the node's NVLink or across nodes), and it decodes its remaining tokens there (submitted to the decode
instance with its prompt cached and one token generated, so the engine only decodes it). A *colocated group*
is plain engine instances (chunked prefill and decode in the same batches). ``simulate_pd`` replays a trace on
both groups: a ``route`` function sends each arriving request to one group; inside a group, a request goes to
the instance with the least outstanding work (the engine's ``least_loaded``).

*Exactness.* Instances advance only to times where every earlier event is known: prefill and colocated
instances first (they depend on nothing else), then each KV hand-off, in time order, advances the decode
instances to its arrival and routes it. A hand-off found at step T belongs to an iteration that started at or
after the previous step, so hand-offs are never discovered in a decode instance's past. With an infinitely fast
link, one prefill and one decode instance serve a lone request exactly as one colocated instance does (the
tests check it against the engine). *Cost*: O(events x instances), like ``engine.simulate``.

KV bytes per token come from ``core.models`` (K and V of every layer for the model's KV heads); each of the
``tp`` GPUs of a prefill instance sends its 1/tp shard to its decode peer in parallel.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.serving.engine import Instance, IterationCost, Request, least_loaded, request_frame

PD = "pd"                 # the disaggregated group
COLOCATED = "colocated"   # the colocated group

Route = Callable[[Request], str]          # a request -> PD or COLOCATED
MakeInstance = Callable[[int], Instance]  # instance id -> a warm instance (fixed pools start warm)


def kv_bytes(cost: IterationCost, tokens: int) -> float:
    """Bytes of one request's KV cache for ``tokens`` tokens, per GPU of a ``cost.tp``-GPU instance."""
    return tokens * cost.shape.kv_bytes_per_token(cost.dtype) / cost.tp


def nvlink_transfer(device: str, nodes: int = 1) -> Callable[[float], float]:
    """Seconds to move n bytes point to point: ``core.gpu``'s NCCL send/recv on ``device``'s node fabric
    (``nodes=1``, NVLink) or across two nodes over their NICs (``nodes=2``)."""
    if nodes not in (1, 2):
        raise InputError(f"nodes={nodes}.", field="nodes", fix="use 1 (same host) or 2 (across hosts).")
    return lambda n_bytes: G.collective_s("sendrecv", n_bytes, 2, device, nodes=nodes) if n_bytes > 0 else 0.0


def instant_transfer(n_bytes: float) -> float:
    """An infinitely fast link (the reference the tests compare against)."""
    return 0.0


@dataclass
class PDResult:
    """One replay: per-request metrics (``group`` says where each request ran) and cluster totals."""

    requests: pd.DataFrame
    gpu_seconds: float
    makespan_s: float
    transfers: int
    transfer_s: float                       # summed KV transfer time
    instances: dict[str, int] = field(default_factory=dict)

    def mean_e2e_s(self) -> float:
        return float(self.requests.e2e_s.mean())

    def ttft_quantile(self, q: float) -> float:
        return float(self.requests.ttft_s.quantile(q))


def simulate_pd(requests: Iterable[Request], *, make_prefill: MakeInstance | None = None, n_prefill: int = 0,
                make_decode: MakeInstance | None = None, n_decode: int = 0,
                make_colocated: MakeInstance | None = None, n_colocated: int = 0,
                route: Route | None = None, transfer_s: Callable[[float], float] = instant_transfer,
                router: Callable[[Request, Sequence[Instance]], Instance] = least_loaded) -> PDResult:
    """Replay ``requests`` (sorted by arrival) on ``n_prefill`` + ``n_decode`` disaggregated and ``n_colocated``
    colocated instances (fixed pools, warm from t = 0). ``route(r)`` picks the group (default: the only one
    there is); ``router`` picks the instance inside a pool. Returns per-request TTFT, TPOT and end-to-end
    latency."""
    reqs = list(requests)
    if any(b.arrival_s < a.arrival_s for a, b in zip(reqs, reqs[1:], strict=False)):
        raise InputError("requests are not sorted by arrival.", field="arrival_s",
                         fix="sort them (engine.requests_from_frame does).")
    has_pd, has_co = n_prefill > 0 or n_decode > 0, n_colocated > 0
    if has_pd and (n_prefill < 1 or n_decode < 1 or make_prefill is None or make_decode is None):
        raise InputError(f"{n_prefill} prefill and {n_decode} decode instances.", field="n_prefill/n_decode",
                         fix="a disaggregated group needs at least one of each (and a builder for each).")
    if has_co and make_colocated is None:
        raise InputError("colocated instances without a builder.", field="make_colocated",
                         fix="pass make_colocated.")
    if not has_pd and not has_co:
        raise InputError("no instances.", field="n_colocated", fix="give at least one group some instances.")
    if route is None:
        route = (lambda r: PD) if not has_co else (lambda r: COLOCATED) if not has_pd else None
        if route is None:
            raise InputError("two groups but no route.", field="route", fix="pass route(request) -> 'pd' or "
                             "'colocated'.")
    ids = iter(range(1 << 30))
    prefill = [make_prefill(next(ids)) for _ in range(n_prefill)] if has_pd else []
    decode = [make_decode(next(ids)) for _ in range(n_decode)] if has_pd else []
    coloc = [make_colocated(next(ids)) for _ in range(n_colocated)] if has_co else []
    shadow_of: dict[int, Request] = {}     # id(shadow) -> the request it prefills
    group: dict[int, str] = {}
    handoffs: list[tuple[float, int, Request]] = []
    seen: dict[int, int] = {id(p): 0 for p in prefill}    # how many of each prefill instance's done we handled
    n_xfer, xfer_total = 0, 0.0

    def harvest() -> None:
        nonlocal n_xfer, xfer_total
        for p in prefill:
            for sh in p.done[seen[id(p)]:]:
                r = shadow_of.pop(id(sh))
                r.first_token_s = sh.first_token_s
                r.preemptions += sh.preemptions
                if r.output <= 1:                          # nothing left to decode
                    r.generated, r.finish_s = 1, sh.first_token_s
                    continue
                dt = float(transfer_s(kv_bytes(p.cost, r.prompt)))
                n_xfer, xfer_total = n_xfer + 1, xfer_total + dt
                heapq.heappush(handoffs, (sh.first_token_s + dt, r.id, r))
            seen[id(p)] = len(p.done)

    def hand_off_until(t: float) -> None:
        while handoffs and handoffs[0][0] <= t:
            a, _, r = heapq.heappop(handoffs)
            for d in decode:
                d.advance_to(a)
            r.kv, r.generated = r.prompt, 1               # the prompt's KV arrived; the first token is out
            router(_AtTime(r, a), decode).submit(r)

    for r in reqs:
        t = r.arrival_s
        for inst in prefill + coloc:
            inst.advance_to(t)
        harvest()
        hand_off_until(t)
        g = route(r)
        if g not in (PD, COLOCATED) or (g == PD and not has_pd) or (g == COLOCATED and not has_co):
            raise InputError(f"route sent request {r.id} to {g!r}.", field="route",
                             fix="return 'pd' or 'colocated', for a group that has instances.")
        group[r.id] = g
        if g == COLOCATED:
            router(r, coloc).submit(r)
        else:
            sh = Request(r.id, r.arrival_s, r.prompt, 1, r.cached, model=r.model)
            shadow_of[id(sh)] = r
            router(sh, prefill).submit(sh)
    while True:                                            # drain: prefills first, then their hand-offs
        for inst in prefill + coloc:
            inst.advance_to(math.inf)
        harvest()
        if not handoffs:
            break
        hand_off_until(math.inf)
    for d in decode:
        d.advance_to(math.inf)
    instances = prefill + decode + coloc
    finish = [r.finish_s for r in reqs if math.isfinite(r.finish_s)]
    end = max([i.clock for i in instances if math.isfinite(i.clock)] + finish + [0.0])
    df = request_frame(reqs).assign(group=[group[r.id] for r in reqs])
    start = float(df.arrival_s.min()) if len(df) else 0.0
    gpu_s = sum(end * i.cost.tp for i in instances)       # fixed pools hold their GPUs from t = 0 to the end
    return PDResult(df, gpu_s, end - start, n_xfer, xfer_total,
                    {"prefill": len(prefill), "decode": len(decode), "colocated": len(coloc)})


class _AtTime:
    """A request seen by a router at time ``t`` (a hand-off's arrival at the decode pool, not the request's)."""

    __slots__ = ("_r", "arrival_s")

    def __init__(self, r: Request, t: float) -> None:
        self._r, self.arrival_s = r, t

    def __getattr__(self, name: str):
        return getattr(self._r, name)


# ---------------------------------------------------------------------------------------------------------
# Routing by request shape
# ---------------------------------------------------------------------------------------------------------

def by_ratio(predict_output: Callable[[Request], float], threshold: float) -> Route:
    """PD-aware routing: a request whose prompt / predicted-output ratio is at least ``threshold`` (prefill-heavy)
    goes to the disaggregated group, the rest to the colocated group."""
    if not threshold > 0:
        raise InputError(f"threshold {threshold!r}.", field="threshold", fix="use a positive prompt/output ratio.")
    return lambda r: PD if r.prompt / max(predict_output(r), 1.0) >= threshold else COLOCATED


@dataclass(frozen=True)
class BucketMedian:
    """A realistic decode-length predictor: the median output length of past requests whose prompt length fell
    in the same log2 bucket (the overall median for an unseen bucket). Fitted on a training sample."""

    medians: dict[int, float]
    overall: float

    @staticmethod
    def fit(prompts: Sequence[int], outputs: Sequence[int]) -> BucketMedian:
        p = np.asarray(prompts, dtype=np.int64)
        o = np.asarray(outputs, dtype=np.float64)
        if len(p) == 0 or len(p) != len(o):
            raise InputError(f"{len(p)} prompts and {len(o)} outputs.", field="outputs",
                             fix="fit on one output length per prompt, at least one.")
        b = np.floor(np.log2(np.maximum(p, 1))).astype(np.int64)
        return BucketMedian({int(k): float(np.median(o[b == k])) for k in np.unique(b)}, float(np.median(o)))

    def __call__(self, r: Request) -> float:
        return self.medians.get(int(math.floor(math.log2(max(r.prompt, 1)))), self.overall)


def oracle_output(r: Request) -> float:
    """The true decode length (an oracle: a router cannot know it)."""
    return float(r.output)
