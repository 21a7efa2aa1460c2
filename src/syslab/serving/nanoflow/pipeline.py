"""NanoFlow's intra-device pipeline: op times on a GPU, the dense batch, one layer's nano-operations, their
schedule under SM shares, and the two-stage search over the paper's space.

**The op graph.** A decoder layer is seven op kinds in a chain: KQV GEMM -> attention (decode GEMV and prefill)
-> O GEMM -> all-reduce -> up/gate GEMM -> down GEMM -> all-reduce (the next layer's KQV follows). Each op kind
runs as its own number of nano-operations over row ranges of the dense batch (the paper's per-op nano-batch
counts: the artifact's Llama-2-70B pipeline runs KQV and decode attention as 4 nano-operations and O, up/gate
and down as 2, each nano-batch with its own collective). Here the counts are chosen per *block*: the attention
block (KQV + attention), the O block (O + its all-reduce) and the MLP block (up/gate + down + its all-reduce),
each 1-4 nano-batches on the 128-row tile grid. A nano-operation depends on the nano-operations of the
previous op kind whose row ranges intersect its own (the paper's Stage I rule).

**SM shares (Stage II).** Memory-bound attention and the collectives run with capped grids, as in the artifact
(GEMV blocks, 8-32 CTAs per collective): each such op kind has its own share R of the SMs (``attn_share``,
``ar1_share``, ``ar2_share``) and runs for the time ``core.gpu`` gives at that share. The GEMMs take the SMs
the capped kernels leave (R_gemm = 1 - sum of the running capped shares, time-varying: a non-persistent GEMM's
next CTAs land on the SMs that free up), progressing at the rate ``core.gpu`` gives on that many SMs. A capped
op starts only when its share is free (sum R <= 1, the paper's constraint). The model ignores the wave's delay
before a GEMM yields SMs to a newly launched capped kernel (optimistic for overlap).

**Issue order.** Each stream (compute, memory, network) issues in a global order: op kinds in layer order,
nano-batches skewed by ``skew`` (key = 7 x layer + kind position + skew x row-range centre; 0 runs kind by kind,
a large skew runs nano-batch by nano-batch), made dependency-consistent by a priority topological sort.

**The search.** The paper solves Stage I (structure, order) and Stage II (shares) as MILPs; here each stage is an
exhaustive enumeration of its grid (exact on the grid; Stage II over Stage I's best structures), ~2,500
schedules at quick scale, judged on two layers.

**The sequential configuration is in the space.** One nano-batch per block with every share 1.0 runs one op
at a time: its schedule is exactly the non-overlap baseline's sum (a test checks equality), and ``search``
always evaluates it, so the searched pipeline is never slower than non-overlap by construction.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.core.gpu.transformer import ELEMENTWISE_PASSES, gemm_shapes
from syslab.core.hardware import GPU
from syslab.core.models import DTYPE_BYTES, Transformer
from syslab.core.timeline import Op, Schedule

TILE = 128
KINDS = ("qkv", "attn", "o", "ar1", "upgate", "down", "ar2")
BLOCK = {"qkv": 0, "attn": 0, "o": 1, "ar1": 1, "upgate": 2, "down": 2, "ar2": 2}
STREAM = {"qkv": "compute", "attn": "memory", "o": "compute", "ar1": "network", "upgate": "compute",
          "down": "compute", "ar2": "network"}
CAPPED = ("attn", "ar1", "ar2")          # capped-grid kernels; the GEMMs take the SMs they leave
# Stage I's issue-order skews and Stage II's share grids (coarse; the fine grid of the report's search is the same
# family). Shares include 1.0, so the sequential configuration is a point of the space.
SKEWS = (0.0, 1.0, 3.0, 100.0)
ATTN_SHARES = (0.1, 0.2, 0.3, 0.4, 0.6, 1.0)
NET_SHARES = (0.05, 0.1, 0.15, 0.3, 1.0)


@dataclass(frozen=True)
class Hardware:
    """Op times of ``shape`` on one GPU of a ``tp``-GPU ``device`` group, from ``core.gpu`` at an SM share."""

    shape: Transformer
    device: GPU
    tp: int
    alpha: float = 1.0    # a compute op with SM share R runs as on R**alpha of the SMs (1.0: linear, our assumption)
    curve: G.SMCurve = G.DEFAULT_CURVE   # memory/collective saturation points (core.gpu's assumptions)

    def _compute_fraction(self, share: float) -> float:
        return min(1.0, share ** self.alpha)

    def gemm_s(self, m: float, n: int, k: int, share: float) -> float:
        """A (m x k) @ (k x n) GEMM on one GPU (n, k already this GPU's shard) with SM share ``share``."""
        return float(G.gemm_s(m, n, k, self.device, sm_fraction=self._compute_fraction(share), curve=self.curve))

    def attention_compute_s(self, pairs: float, share: float, mean_keys: float) -> float:
        """Prefill attention of one layer over ``pairs`` causal (query, key) pairs, on this GPU's heads."""
        if not pairs:
            return 0.0
        heads = max(self.shape.heads // self.tp, 1)
        return float(G.attention_pairs_s(pairs, mean_keys, heads, self.shape.head_dim, self.device,
                                         sm_fraction=self._compute_fraction(share)))

    def gemv_s(self, context_tokens: float, share: float) -> float:
        """Decode attention: read this GPU's share of every decode request's KV for one layer."""
        if not context_tokens:
            return 0.0
        kv_heads = max(self.shape.kv_heads // self.tp, 1)
        return float(G.decode_attention_s(context_tokens, kv_heads, self.shape.head_dim, self.device,
                                          sm_fraction=share, curve=self.curve))

    def allreduce_s(self, m: float, share: float) -> float:
        """Ring all-reduce of the m x hidden bf16 activations over the tp group (0 on one GPU)."""
        return G.collective_s("allreduce", m * self.shape.hidden * DTYPE_BYTES["bf16"], self.tp, self.device,
                              sm_fraction=share, curve=self.curve)

    def other_s(self, m: float, share: float = 1.0) -> float:
        """Norms, rotary, activation and residuals of one layer (the passes ``core.gpu.ForwardModel`` counts)."""
        eb = DTYPE_BYTES["bf16"]
        n_bytes = ELEMENTWISE_PASSES * m * self.shape.hidden * eb + 2 * m * self.shape.ffn // self.tp * eb
        return float(G.memory_s(n_bytes, self.device, kernels=5, sm_fraction=share, curve=self.curve))

    @property
    def optimal_tok_s_per_gpu(self) -> float:
        """The paper's Eq. 5 with its §6.2 convention: the *measured* peak GEMM throughput (here ``core.gpu``'s
        best large bf16 GEMM, calibrated on cited A100/H100 measurements) over 2 x active parameters."""
        return best_gemm_flops(self.device.name) / (2.0 * self.shape.active_params)

    @property
    def datasheet_optimal_tok_s_per_gpu(self) -> float:
        """Eq. 5 on the datasheet peak (a looser bound than the paper's)."""
        return self.device.peak_flops("bf16") / (2.0 * self.shape.active_params)


@functools.lru_cache(maxsize=32)
def best_gemm_flops(device: str) -> float:
    """FLOP/s of ``core.gpu``'s fastest large square bf16 GEMM on ``device`` (the CUTLASS-style peak)."""
    return max(G.gemm_tflops(m, m, m, device) for m in (4096, 8192, 16384)) * 1e12


# ---------------------------------------------------------------------------------------------------------
# The dense batch
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DenseBatch:
    tokens: int               # dense tokens per iteration (the artifact's global batch size)
    decode: int               # decode requests (one token each)
    prefill: int              # prefill tokens
    decode_context: float     # mean KV tokens a decode request attends to
    prefill_pairs: float      # causal (query, key) pairs of the prefill tokens


def dense_batch(prompt: np.ndarray, output: np.ndarray, tokens: int = 2048) -> DenseBatch:
    """Steady state of continuous batching with a fixed token budget: every request contributes its prompt
    once (prefill) and one token per decode step, so decode takes out/(in+out) of the budget; a decode step
    sees on average prompt + half the output as context; prefill chunks attend to earlier chunks too."""
    prompt, output = np.asarray(prompt, dtype=np.float64), np.asarray(output, dtype=np.float64)
    if len(prompt) == 0 or len(prompt) != len(output) or (prompt < 1).any() or (output < 1).any():
        raise InputError("need requests with positive prompt and output lengths.", field="lengths",
                         fix="pass a workload with at least one request, prompt and output >= 1 token each.")
    decode = int(round(tokens * output.sum() / (prompt.sum() + output.sum())))
    prefill = tokens - decode
    ctx = float((output * (prompt + output / 2)).sum() / output.sum())
    # A prompt of length p split in chunks: pairs per prefill token ~ p/2 on average (causal), weighted by p.
    pairs_per_token = float((prompt * prompt / 2).sum() / prompt.sum())
    return DenseBatch(tokens, decode, prefill, ctx, prefill * pairs_per_token)


# ---------------------------------------------------------------------------------------------------------
# Configurations and their op graphs
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """One point of the search space: nano-batch sizes per block (attention, O, MLP), per-op SM shares of the
    capped kernels, the issue-order skew, and whether ops overlap (False: one stream, every op on all SMs)."""

    splits: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    attn_share: float = 1.0
    ar1_share: float = 1.0
    ar2_share: float = 1.0
    skew: float = 0.0
    overlap: bool = True

    @staticmethod
    def sequential(tokens: int) -> Config:
        """The non-overlap baseline as a point of the space: one nano-batch everywhere, every share 1.0."""
        return Config(((tokens,),) * 3)

    def share(self, kind: str) -> float:
        return {"attn": self.attn_share, "ar1": self.ar1_share, "ar2": self.ar2_share}.get(kind, 1.0)

    @property
    def max_nano_batches(self) -> int:
        return max(len(s) for s in self.splits)

    def describe(self) -> str:
        if not self.overlap:
            return f"nano-batches {'/'.join(map(_fmt, self.splits))} (attention/O/MLP), one stream"
        return (f"nano-batches {'/'.join(map(_fmt, self.splits))} (attention/O/MLP); SM shares attention "
                f"{self.attn_share:g}, all-reduces {self.ar1_share:g}/{self.ar2_share:g} (GEMMs take the rest); "
                f"order skew {self.skew:g}")


def _fmt(sizes: tuple[int, ...]) -> str:
    return "+".join(map(str, sizes))


@dataclass(frozen=True)
class _Node:
    name: str
    kind: str
    rows: tuple[int, int]
    key: float
    deps: tuple[int, ...]


@functools.lru_cache(maxsize=4096)
def _rows(sizes: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    edges = (0, *itertools.accumulate(sizes))
    return tuple(zip(edges[:-1], edges[1:], strict=True))


def graph(cfg: Config, tokens: int, layers: int) -> tuple[_Node, ...]:
    """The nano-operations of ``layers`` layers in issue order (a priority topological sort by skewed key)."""
    if any(sum(s) != tokens or min(s) <= 0 for s in cfg.splits) or len(cfg.splits) != 3:
        raise InputError(f"nano-batch sizes {cfg.splits} do not split the dense batch of {tokens}.",
                         field="splits", fix="give each of the 3 blocks positive nano-batches that sum to the batch.")
    return _graph(cfg.splits, cfg.skew, tokens, layers)


@functools.lru_cache(maxsize=8192)
def _graph(splits: tuple[tuple[int, ...], ...], skew: float, tokens: int, layers: int) -> tuple[_Node, ...]:
    nodes: list[_Node] = []
    prev: list[tuple[int, tuple[int, int]]] = []       # (index, rows) of the previous op kind's nano-operations
    for layer in range(layers):
        for pos, kind in enumerate(KINDS):
            cur = []
            for i, (a, b) in enumerate(_rows(splits[BLOCK[kind]])):
                deps = tuple(j for j, (pa, pb) in prev if pa < b and a < pb)
                key = 7 * layer + pos + skew * (a + b) / (2 * tokens)
                nodes.append(_Node(f"L{layer}.{kind}{i}", kind, (a, b), key, deps))
                cur.append((len(nodes) - 1, (a, b)))
            prev = cur
    # priority topological sort: issue by key, never before a dependency
    succ: list[list[int]] = [[] for _ in nodes]
    indeg = [len(n.deps) for n in nodes]
    for i, n in enumerate(nodes):
        for d in n.deps:
            succ[d].append(i)
    heap = [(n.key, i) for i, n in enumerate(nodes) if not n.deps]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, (nodes[j].key, j))
    remap = {old: new for new, old in enumerate(order)}
    return tuple(_Node(nodes[i].name, nodes[i].kind, nodes[i].rows, nodes[i].key,
                       tuple(sorted(remap[d] for d in nodes[i].deps))) for i in order)


class Costs:
    """Memoised op times of one (hardware, batch): capped ops at a share, compute ops on a number of SMs."""

    def __init__(self, hw: Hardware, batch: DenseBatch):
        self.hw, self.batch = hw, batch
        self.shapes = dict(zip(("qkv", "o", "upgate", "down"), gemm_shapes(hw.shape, hw.tp), strict=True))
        self.keys = batch.prefill_pairs / batch.prefill if batch.prefill else 1.0   # mean keys per prefill query
        self._memo: dict[tuple, float] = {}

    def capped_s(self, kind: str, m: int, share: float) -> float:
        key = (kind, m, share)
        if key not in self._memo:
            hw, b = self.hw, self.batch
            if kind == "attn":
                f = m / b.tokens
                t = hw.gemv_s(b.decode * f * b.decode_context, share) + hw.attention_compute_s(
                    b.prefill_pairs * f, share, self.keys)
            else:
                t = hw.allreduce_s(m, share)
            self._memo[key] = t
        return self._memo[key]

    def compute_s(self, kind: str, m: int, sms: int) -> float:
        """A GEMM nano-operation (with its half of the layer's norms/activations) on ``sms`` SMs."""
        key = (kind, m, sms)
        if key not in self._memo:
            share = sms / self.hw.device.sm_count
            n, k = self.shapes[kind]
            t = self.hw.gemm_s(m, n, k, share)
            if kind in ("qkv", "upgate"):
                t += self.hw.other_s(m, share) / 2
            self._memo[key] = t
        return self._memo[key]

    def full_s(self, kind: str, m: int) -> float:
        """The op alone on the whole GPU."""
        return self.capped_s(kind, m, 1.0) if kind in CAPPED else self.compute_s(kind, m, self.hw.device.sm_count)


def sequential_layer_s(costs: Costs, splits: tuple[tuple[int, ...], ...]) -> float:
    """One layer on one stream, every op on all SMs, one after another (non-overlap / nano-batch-only)."""
    return sum(costs.full_s(kind, b - a) for kind in KINDS for a, b in _rows(tuple(splits[BLOCK[kind]])))


def _run(costs: Costs, cfg: Config, layers: int) -> tuple[tuple[_Node, ...], list[float], list[float]]:
    """The event loop behind ``simulate``: start and end time of every nano-operation."""
    nodes = graph(cfg, costs.batch.tokens, layers)
    sms_total = costs.hw.device.sm_count
    n = len(nodes)
    kinds = [nd.kind for nd in nodes]
    capped = [k in CAPPED for k in kinds]
    share = [(cfg.share(k) if cfg.overlap else 1.0) for k in kinds]
    rows = [nd.rows[1] - nd.rows[0] for nd in nodes]
    deps = [nd.deps for nd in nodes]
    names = ("compute", "memory", "network") if cfg.overlap else ("gpu",)
    queues: list[list[int]] = [[] for _ in names]
    stream_of = [names.index(STREAM[k]) if cfg.overlap else 0 for k in kinds]
    for i in range(n):
        queues[stream_of[i]].append(i)
    head = [0] * len(names)
    busy = [False] * len(names)                # a stream runs one op at a time (CUDA stream semantics)
    done = [False] * n
    start, end = [0.0] * n, [0.0] * n
    capped_end: dict[int, float] = {}          # running capped op -> end time
    used = 0.0                                 # SM share held by running capped ops
    g_op, g_left = -1, 0.0                     # the running compute op and the fraction of it left
    t, finished = 0.0, 0
    while finished < n:
        started = True
        while started:
            started = False
            for s, queue in enumerate(queues):
                if busy[s] or head[s] >= len(queue):
                    continue
                i = queue[head[s]]
                if not all(done[d] for d in deps[i]):
                    continue
                if capped[i]:
                    if used + share[i] > 1.0 + 1e-9:
                        continue
                    used += share[i]
                    capped_end[i] = t + costs.capped_s(kinds[i], rows[i], share[i])
                elif g_op >= 0:
                    continue
                else:
                    g_op, g_left = i, 1.0
                start[i] = t
                head[s] += 1
                busy[s] = started = True
        free_sms = int(math.floor((1.0 - used) * sms_total + 1e-9))
        t_next, rate = min(capped_end.values(), default=math.inf), 0.0
        if g_op >= 0 and free_sms >= 1:
            rate = 1.0 / costs.compute_s(kinds[g_op], rows[g_op], free_sms)
            t_next = min(t_next, t + g_left / rate)
        if t_next == math.inf:
            raise RuntimeError("pipeline deadlock (no op can run)")
        if g_op >= 0:
            g_left -= rate * (t_next - t)
        t = t_next
        for i in [i for i, e in capped_end.items() if e <= t + 1e-15]:
            del capped_end[i]
            used = max(0.0, used - share[i])
            end[i], done[i], busy[stream_of[i]] = t, True, False
            finished += 1
        if g_op >= 0 and g_left <= 1e-12:
            end[g_op], done[g_op], busy[stream_of[g_op]] = t, True, False
            finished += 1
            g_op = -1
    return nodes, start, end


def simulate(costs: Costs, cfg: Config, layers: int = 4) -> Schedule:
    """Schedule ``layers`` layers of ``cfg``: in-order streams, capped ops at their shares (sum <= 1), the compute
    stream's GEMM progressing at the rate of the SMs left over. Returns a ``core.timeline.Schedule``."""
    nodes, start, end = _run(costs, cfg, layers)
    ops, starts, ends = {}, {}, {}
    for i, node in enumerate(nodes):
        share = cfg.share(node.kind) if cfg.overlap else 1.0
        ops[node.name] = Op(node.name, end[i] - start[i], STREAM[node.kind] if cfg.overlap else "gpu",
                            tuple(nodes[d].name for d in node.deps), category=node.kind,
                            args={"rows": list(node.rows), "share": share})
        starts[node.name], ends[node.name] = start[i], end[i]
    return Schedule(ops=ops, start=starts, end=ends)


def layer_time_s(costs: Costs, cfg: Config, layers: int = 4) -> float:
    """Time per layer: the makespan of ``layers`` consecutive layers over ``layers`` (includes pipeline fill)."""
    _, _, end = _run(costs, cfg, layers)
    return max(end) / layers


# ---------------------------------------------------------------------------------------------------------
# The search (Stage I: structure and order at interference-free shares; Stage II: per-op shares)
# ---------------------------------------------------------------------------------------------------------

def tile_splits(tokens: int, parts: int) -> list[tuple[int, ...]]:
    """Nano-batch sizes on the 128-row tile grid: the whole batch; 2-way splits with the first nano-batch at 1/4,
    5/16, 3/8, 1/2 or 5/8 of it (at 2048 tokens: 512, 640, 768, 1024, 1280; the artifact's 70B config splits
    640/1408 and 768/1280); near-equal 3- and 4-way."""
    if parts == 1:
        return [(tokens,)]
    if parts == 2:
        firsts = sorted({int(round(tokens * f / TILE)) * TILE for f in (0.25, 0.3125, 0.375, 0.5, 0.625)})
        return [(a, tokens - a) for a in firsts if 0 < a < tokens]
    base = (tokens // parts) // TILE * TILE
    return [(*[base] * (parts - 1), tokens - base * (parts - 1))] if base > 0 else []


def block_options(tokens: int, counts: tuple[int, ...] = (1, 2, 3, 4)) -> list[tuple[int, ...]]:
    return [s for c in counts for s in tile_splits(tokens, c)]


@dataclass(frozen=True)
class SearchResult:
    config: Config
    per_layer_s: float
    evaluated: int
    sequential_s: float


def search(hw: Hardware, batch: DenseBatch, *, counts: tuple[int, ...] = (1, 2, 3, 4),
           skews: tuple[float, ...] = SKEWS, attn_shares: tuple[float, ...] = ATTN_SHARES,
           net_shares: tuple[float, ...] = NET_SHARES, top: int = 3, layers: int = 2,
           exhaustive: bool = False, costs: Costs | None = None) -> SearchResult:
    """The paper's two-stage search. Stage I: every per-block nano-batch split x issue order, with the capped
    kernels at their saturation shares (where ``core.gpu`` gives them full speed: interference-free); keep the
    ``top`` structures. Stage II: every per-op share triple (attention, both all-reduces) for those. The
    sequential configuration is always evaluated; the best of all is returned, judged on ``layers`` layers.
    ``exhaustive``: the full product instead (for tests on small spaces)."""
    costs = costs or Costs(hw, batch)
    options = block_options(batch.tokens, counts)
    seq = Config.sequential(batch.tokens)
    seq_t = layer_time_s(costs, seq, layers)
    best, best_t, evaluated = seq, seq_t, 1
    shares = list(itertools.product(attn_shares, net_shares, net_shares))
    if exhaustive:
        for splits, skew, (v, n1, n2) in itertools.product(itertools.product(options, repeat=3), skews, shares):
            cfg = Config(splits, v, n1, n2, skew)
            t = layer_time_s(costs, cfg, layers)
            evaluated += 1
            if t < best_t - 1e-15:
                best, best_t = cfg, t
        return SearchResult(best, best_t, evaluated, seq_t)
    v0 = min(1.0, hw.curve.memory_saturation)
    n0 = min(1.0, hw.curve.collective_saturation)
    stage1 = []
    for splits, skew in itertools.product(itertools.product(options, repeat=3), skews):
        cfg = Config(splits, v0, n0, n0, skew)
        stage1.append((layer_time_s(costs, cfg, layers), len(stage1), cfg))
    evaluated += len(stage1)
    for _, _, cfg in sorted(stage1)[:top]:
        for v, n1, n2 in shares:
            c = replace(cfg, attn_share=v, ar1_share=n1, ar2_share=n2)
            t = layer_time_s(costs, c, layers)
            evaluated += 1
            if t < best_t - 1e-15:
                best, best_t = c, t
    return SearchResult(best, best_t, evaluated, seq_t)


# the artifact's Llama-2-70B structure (pipeline/config_all/llama2-70B/2048.json; pipeline.cu): KQV and decode
# attention in 4 nano-operations (KQV1 256, KQV2 384 = 640 - 256, KQV3 768, KQV4 the rest), O/up-gate/down in 2
# (640 / 1408, nanobatch_1_size = 640); scaled to other batch sizes on the tile grid
def artifact_splits(tokens: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    def at(x: int) -> int:
        return max(TILE, int(round(tokens * x / 2048 / TILE)) * TILE)
    a, b, c = at(256), at(640), at(1408)
    if not a < b < c < tokens:
        return ((tokens,),) * 3
    four = (a, b - a, c - b, tokens - c)
    two = (b, tokens - b)
    return four, two, two
