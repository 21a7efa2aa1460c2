"""The Qwen-Bailian trace schema (JSONL), its loader, and a synthetic twin generator.

Schema (one request per line, as published in alibaba-edu/qwen-bailian-usagetraces-anon): ``chat_id``,
``parent_chat_id`` (-1 for a root), ``timestamp`` (seconds), ``input_length``, ``output_length``, ``type``
(text / search / image / file), ``turn``, ``hash_ids`` (ids of the prompt's 16-token blocks; a shared prefix
shares ids).

The real trace is not available here, so ``generate`` builds a twin in exactly that schema. Every generator
constant below is an assumption (marked) or a published *input* statistic of the paper that the twin is
checked against before use (ideal hit ratio 0.5-0.65, top-10% blocks ~70-80% of reuses, single-turn hits
>= 90% in the to-B variant); none is chosen by looking at any policy's result.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from syslab.core.errors import InputError

BLOCK_TOKENS = 16
FIELDS = ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length", "type", "turn", "hash_ids")
TYPES = ("text", "search", "image", "file")


@dataclass
class Trace:
    """Requests as parallel arrays, sorted by timestamp; ``blocks[i]`` is request i's hash_ids."""

    timestamp: np.ndarray
    input_length: np.ndarray
    output_length: np.ndarray
    type: list[str]
    turn: np.ndarray
    chat_id: np.ndarray
    parent_chat_id: np.ndarray
    blocks: list[np.ndarray]
    synthetic: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.timestamp)

    def category(self, i: int) -> str:
        """The WA policy's request category: type and turn (turns beyond 3 share one category)."""
        return f"{self.type[i]}_{min(int(self.turn[i]), 3)}"

    def split(self, t: float) -> tuple[Trace, Trace]:
        """Requests before ``t`` and from ``t`` on (for fit-then-evaluate)."""
        k = int(np.searchsorted(self.timestamp, t))
        return self._take(slice(0, k)), self._take(slice(k, len(self)))

    def _take(self, s: slice) -> Trace:
        return Trace(self.timestamp[s], self.input_length[s], self.output_length[s], self.type[s], self.turn[s],
                     self.chat_id[s], self.parent_chat_id[s], self.blocks[s], self.synthetic, dict(self.meta))

    def to_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "w") as f:
            for i in range(len(self)):
                f.write(json.dumps({"chat_id": int(self.chat_id[i]), "parent_chat_id": int(self.parent_chat_id[i]),
                                    "timestamp": float(self.timestamp[i]), "input_length": int(self.input_length[i]),
                                    "output_length": int(self.output_length[i]), "type": self.type[i],
                                    "turn": int(self.turn[i]), "hash_ids": self.blocks[i].tolist()}) + "\n")
        return path


def load_trace(path: str | Path) -> Trace:
    """Read a trace in the Qwen-Bailian JSONL schema. Malformed lines are InputErrors naming line and field;
    unsorted timestamps are sorted with a warning."""
    from syslab.core.inputs import INT64_MAX, parse_json, read_text
    from syslab.core.workloads import MAX_TOKENS

    path = Path(path)
    fix = "pass a JSONL trace in the Qwen-Bailian schema: one JSON object per line."
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(read_text(path, fix=fix).splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, source=path, fix=fix, field=f"line {n}")
        if not isinstance(row, dict):
            raise InputError(f"line {n} is not a JSON object.", file=path, field=f"line {n}",
                             fix="write one JSON object per line.")
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise InputError(f"line {n} lacks {', '.join(missing)}.", file=path, field=missing[0],
                             fix=f"each line needs {', '.join(FIELDS)}.")
        for k in ("input_length", "output_length", "turn"):      # bounded as the serving traces are (MAX_TOKENS)
            if not isinstance(row[k], int) or isinstance(row[k], bool) or not 0 <= row[k] <= MAX_TOKENS:
                raise InputError(f"line {n} has {k}={row[k]!r}.", file=path, field=k,
                                 fix=f"lengths and turns are non-negative integers up to {MAX_TOKENS:,}.")
        for k in ("chat_id", "parent_chat_id"):
            if not isinstance(row[k], int) or isinstance(row[k], bool) or abs(row[k]) > INT64_MAX:
                raise InputError(f"line {n} has {k}={row[k]!r}.", file=path, field=k,
                                 fix="ids are 64-bit integers (parent_chat_id -1 for a root).")
        ids = row["hash_ids"]
        if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                and abs(x) <= INT64_MAX for x in ids):
            raise InputError(f"line {n}: hash_ids must be a list of 64-bit integers.", file=path, field="hash_ids",
                             fix="give the prompt's block ids, e.g. [0, 1, 2].")
        t = row["timestamp"]
        if not isinstance(t, int | float) or isinstance(t, bool) or not abs(t) <= 1e12:   # 1e12 s: 31,700 years
            raise InputError(f"line {n} has timestamp {t!r}.", file=path, field="timestamp",
                             fix="timestamps are seconds from the trace start.")
        rows.append(row)
    if not rows:
        raise InputError("the trace has no requests.", file=path, fix="one JSON object per request.")
    if not any(r["hash_ids"] for r in rows):
        raise InputError("no request has any hash_ids, so there is nothing to cache.", file=path, field="hash_ids",
                         fix="give each prompt's block ids, e.g. [0, 1, 2].")
    ts = np.array([r["timestamp"] for r in rows], dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    if (np.diff(ts) < 0).any():
        warnings.warn(f"{path}: timestamps were not sorted; sorted them.", stacklevel=2)
    rows = [rows[i] for i in order]
    return Trace(timestamp=ts[order], input_length=np.array([r["input_length"] for r in rows]),
                 output_length=np.array([r["output_length"] for r in rows]), type=[str(r["type"]) for r in rows],
                 turn=np.array([r["turn"] for r in rows]), chat_id=np.array([r["chat_id"] for r in rows]),
                 parent_chat_id=np.array([r["parent_chat_id"] for r in rows]),
                 blocks=[np.asarray(r["hash_ids"], dtype=np.int64) for r in rows], meta={"source": str(path)})


# ---------------------------------------------------------------------------------------------------------
# The synthetic twin
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TwinConfig:
    """Generator settings; every number is an assumption unless marked as a published input statistic."""

    variant: str = "A"                 # "A": to-C, multi-turn heavy; "B": to-B API, single-turn, shared prompts
    hours: float = 2.0                 # the published traces span 2 h
    requests_per_s: float = 5.5        # ~40k requests over 2 h, the published traces' size
    reuse: str = "exponential"         # follow-up delays: "exponential" (as WA assumes) or "lognormal" (misspecified)
    type_mix: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)            # text, search, image, file (assumption)
    follow_up_mean_s: tuple[float, ...] = (90.0, 60.0, 30.0, 300.0)   # per type (assumption, as in our notes)
    continue_p: tuple[float, ...] = (0.55, 0.25, 0.45, 0.5)           # P(another turn) per type (assumption)
    system_prompts: int = 40           # distinct system prompts (assumption)
    system_zipf: float = 1.2           # their popularity (Zipf exponent, assumption)
    system_blocks: tuple[int, int] = (8, 96)      # system-prompt length range in blocks (assumption)
    user_tokens_median: float = 200.0  # new user tokens per turn (assumption; sets the ideal hit ratio ~0.63)
    output_tokens_median: float = 200.0
    file_tokens_median: float = 3000.0            # an uploaded document (assumption)
    image_tokens: int = 1024           # tokens of one image (assumption, a typical VLM patch count)
    # to-B only: an application's shared context (few-shot template, reference document) between its system
    # prompt and the request's own text, from a pool with Zipf popularity (assumptions; together with
    # ``b_user_tokens_median`` they set the twin's ideal hit ratio and reuse skew, which are checked against
    # the paper's published to-B inputs: ideal hit ratio 0.54, top-10% blocks ~70-80% of reuses)
    b_context_share: float = 0.9       # requests that carry a shared context
    b_contexts_per_request: float = 0.55   # the pool grows with the trace, so its reuse does not depend on length
    b_context_zipf: float = 0.6
    b_context_blocks_median: float = 120.0
    b_user_tokens_median: float = 500.0


def _lengths(rng: np.random.Generator, median: float, n: int, sigma: float = 1.0) -> np.ndarray:
    return np.maximum(1, np.round(rng.lognormal(np.log(median), sigma, n))).astype(np.int64)


def generate(cfg: TwinConfig, rng: np.random.Generator) -> Trace:
    """A synthetic trace in the Qwen-Bailian schema (labelled synthetic)."""
    if cfg.variant not in ("A", "B"):
        raise InputError(f"unknown variant {cfg.variant!r}.", field="variant", fix="use 'A' (to-C) or 'B' (to-B).")
    horizon = cfg.hours * 3600.0
    next_id = iter(range(1 << 62))
    sys_len = rng.integers(cfg.system_blocks[0], cfg.system_blocks[1] + 1, cfg.system_prompts)
    sys_blocks = [np.array([next(next_id) for _ in range(k)]) for k in sys_len]
    sys_p = 1.0 / np.arange(1, cfg.system_prompts + 1) ** cfg.system_zipf
    sys_p /= sys_p.sum()

    rows: list[tuple] = []   # (ts, in_len, out_len, type, turn, chat, parent, blocks)
    chat = iter(range(1 << 62))
    if cfg.variant == "B":   # API traffic: one turn; a popular system prompt, maybe a shared context, own text
        n = rng.poisson(cfg.requests_per_s * horizon)
        ts = np.sort(rng.uniform(0, horizon, n))
        s = rng.choice(cfg.system_prompts, n, p=sys_p)
        # each context belongs to one application (system prompt): its block ids continue that prefix
        pool = max(1, int(round(cfg.b_contexts_per_request * cfg.requests_per_s * horizon)))
        owner = rng.choice(cfg.system_prompts, pool, p=sys_p)
        ctx_len = _lengths(rng, cfg.b_context_blocks_median, pool, 0.8)
        ctx_blocks = [np.concatenate([sys_blocks[owner[k]], [next(next_id) for _ in range(int(ctx_len[k]))]])
                      for k in range(pool)]
        ctx_p = 1.0 / np.arange(1, pool + 1) ** cfg.b_context_zipf
        ctx_p /= ctx_p.sum()
        ctx = np.where(rng.random(n) < cfg.b_context_share, rng.choice(pool, n, p=ctx_p), -1)
        users = _lengths(rng, cfg.b_user_tokens_median, n)
        outs = _lengths(rng, cfg.output_tokens_median / 2, n)
        for i in range(n):
            prefix = ctx_blocks[ctx[i]] if ctx[i] >= 0 else sys_blocks[s[i]]
            n_tokens = len(prefix) * BLOCK_TOKENS + int(users[i])
            tail = [next(next_id) for _ in range(-(-n_tokens // BLOCK_TOKENS) - len(prefix))]
            rows.append((ts[i], n_tokens, int(outs[i]), "text", 1, next(chat), -1, np.concatenate([prefix, tail])))
    else:                    # to-C chat: conversations of several turns; each turn extends its parent's prompt
        type_p = np.asarray(cfg.type_mix) / np.sum(cfg.type_mix)
        mean_turns = float(np.dot(type_p, 1.0 / (1.0 - np.asarray(cfg.continue_p))))
        n_conv = rng.poisson(cfg.requests_per_s * horizon / mean_turns)
        starts = rng.uniform(0, horizon, n_conv)
        for start in starts:
            k = int(rng.choice(len(TYPES), p=type_p))
            kind = TYPES[k]
            prefix = sys_blocks[rng.choice(cfg.system_prompts, p=sys_p)]
            tokens = len(prefix) * BLOCK_TOKENS
            blocks = list(prefix)
            t, turn, parent = start, 1, -1
            while t < horizon:
                new = int(_lengths(rng, cfg.user_tokens_median, 1)[0])
                if turn == 1 and kind == "file":
                    new += int(_lengths(rng, cfg.file_tokens_median, 1, 0.8)[0])
                if kind == "image":
                    new += cfg.image_tokens
                full = tokens // BLOCK_TOKENS                      # the parent's partial last block is not shared
                blocks = blocks[:full]
                tokens += new
                blocks += [next(next_id) for _ in range(-(-tokens // BLOCK_TOKENS) - full)]
                out = int(_lengths(rng, cfg.output_tokens_median, 1)[0])
                cid = next(chat)
                rows.append((t, tokens, out, kind, turn, cid, parent, np.array(blocks)))
                if rng.random() > cfg.continue_p[k]:
                    break
                mean = cfg.follow_up_mean_s[k]
                gap = rng.exponential(mean) if cfg.reuse == "exponential" else rng.lognormal(np.log(mean) - 0.5, 1.0)
                # The next prompt holds this turn's output too (its blocks are new ids).
                full = tokens // BLOCK_TOKENS
                blocks = blocks[:full]
                tokens += out
                blocks += [next(next_id) for _ in range(-(-tokens // BLOCK_TOKENS) - full)]
                t, turn, parent = t + gap, turn + 1, cid
    rows.sort(key=lambda r: r[0])
    return Trace(timestamp=np.array([r[0] for r in rows]), input_length=np.array([r[1] for r in rows]),
                 output_length=np.array([r[2] for r in rows]), type=[r[3] for r in rows],
                 turn=np.array([r[4] for r in rows]), chat_id=np.array([r[5] for r in rows]),
                 parent_chat_id=np.array([r[6] for r in rows]), blocks=[r[7] for r in rows], synthetic=True,
                 meta={"variant": cfg.variant, "reuse": cfg.reuse})
