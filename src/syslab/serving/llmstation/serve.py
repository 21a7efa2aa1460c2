"""Co-serving on this CPU, for real and in real time: a continuous-batching inference engine on the tiny model,
with LoRA fine-tuning multiplexed in by one of four policies.

* ``Isolated``: inference only; it sets the SLOs.
* ``Temporal`` (FineInfer-like): a *whole* fine-tuning step between inference iterations, at most once every
  ``every`` iterations, and back to back while no request is in the system. A request that arrives during a
  step waits for it to end. Knob: ``every``.
* ``Spatial`` (MPS-like static split): fine-tuning runs in its own process (one torch thread) beside the
  serving process, throttled to a duty cycle, and the OS shares the two cores. This is *not* MPS: two CPU
  processes contend for cores, caches and memory bandwidth rather than SMs. Knob: ``duty``.
* ``LLMStation``: the step is cut into per-layer tasklets (``FineTuneStep``). Forward tasklets ride in decode
  iterations (joint batching: the base GEMMs of a layer run once for both kinds of rows); backward tasklets
  run between iterations. After each tasklet the tuner yields for ``wait`` seconds of inference, and an
  adaptive controller moves ``wait`` from the latencies it observes against the SLO. With no request in the
  system the tasklets run back to back.

Time is wall-clock time on this machine (``time.perf_counter``). The only liberty: when a policy has nothing
at all to run (inference only, no request in the system), the clock jumps to the next arrival instead of
sleeping. Requests arrive by an open-loop schedule (Poisson or a trace's timestamps) measured from the start.

Cost: a run takes as long as its trace (plus the drain); each iteration is one real forward pass.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from syslab.core.errors import InputError
from syslab.core.stats import percentile
from syslab.serving.llmstation.model import ChunkedStep, FineTuneStep, JointSegment, KVCache, TinyConfig, TinyLlama

# ---------------------------------------------------------------------------------------------------------
# Requests, fine-tuning data and metrics
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    rid: int
    arrival_s: float
    prompt: torch.Tensor
    output_tokens: int
    adapter: int
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    generated: int = 0
    slot: int = -1
    last_token: int = 0

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """vLLM's definition: (end-to-end - TTFT) / (output tokens - 1); NaN for one-token outputs."""
        if self.output_tokens <= 1:
            return float("nan")
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


def make_requests(arrivals_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                  cfg: TinyConfig, rng: np.random.Generator) -> list[Request]:
    """Requests with random prompt tokens (content does not matter to latency), adapters round-robin over the
    serving adapters (the artifact serves four LoRA modules). Lengths must fit the tiny model's context."""
    n = len(arrivals_s)
    if not (len(prompt_tokens) == len(output_tokens) == n):
        raise InputError("arrivals, prompt and output lengths differ in length.", field="requests",
                         fix="give one prompt and one output length per arrival.")
    if n == 0:
        raise InputError("no requests.", field="requests", fix="give at least one request.")
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    if (p < 1).any() or (o < 1).any():
        raise InputError("prompt and output lengths must be at least 1 token.", field="prompt/output tokens",
                         fix="drop or fix rows with zero or negative lengths.")
    if (p + o > cfg.context).any():
        raise InputError(f"a request needs more than the model's {cfg.context}-token context.",
                         field="prompt/output tokens", fix=f"clip lengths so prompt + output <= {cfg.context}.")
    order = np.argsort(arrivals_s, kind="stable")
    return [Request(int(i), float(arrivals_s[i]), torch.from_numpy(rng.integers(0, cfg.vocab, int(p[i]))),
                    int(o[i]), int(i) % cfg.serving_adapters) for i in order]


def markov_samples(n: int, seq_len: int, cfg: TinyConfig, rng: np.random.Generator,
                   branching: int = 4) -> torch.Tensor:
    """Fine-tuning samples packed to ``seq_len + 1`` tokens from a random sparse bigram chain, so the LoRA
    adapter has something to learn and its loss visibly falls: [n, seq_len + 1]."""
    chain_rng = np.random.default_rng(12345)
    successors = chain_rng.integers(0, cfg.vocab, (cfg.vocab, branching))
    out = np.empty((n, seq_len + 1), dtype=np.int64)
    out[:, 0] = rng.integers(0, cfg.vocab, n)
    picks = rng.integers(0, branching, (n, seq_len))
    for t in range(seq_len):
        out[:, t + 1] = successors[out[:, t], picks[:, t]]
    return torch.from_numpy(out)


@dataclass
class Span:
    kind: str          # prefill | decode | joint | forward | backward | step
    start_s: float
    end_s: float


@dataclass
class RunStats:
    policy: str
    knob: str
    requests: list[Request]
    ft_samples: int
    duration_s: float
    losses: list[float] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    waits: list[tuple[float, float]] = field(default_factory=list)   # (time, wait) of the adaptive tuner

    @property
    def ft_throughput(self) -> float:
        """Fine-tuning samples per second over the serving window."""
        return self.ft_samples / self.duration_s if self.duration_s > 0 else 0.0

    def p99_ttft(self) -> float:
        return percentile([r.ttft_s for r in self.requests], 99)

    def p99_tpot(self) -> float:
        return percentile([r.tpot_s for r in self.requests if r.output_tokens > 1], 99)

    def summary(self) -> dict[str, float | str]:
        return {"policy": self.policy, "knob": self.knob, "ft_samples_per_s": self.ft_throughput,
                "p99_ttft_s": self.p99_ttft(), "p99_tpot_s": self.p99_tpot(), "ft_samples": self.ft_samples,
                "duration_s": self.duration_s, "requests": len(self.requests)}


@dataclass(frozen=True)
class SLO:
    ttft_s: float
    tpot_s: float

    def met(self, stats: RunStats) -> bool:
        return stats.p99_ttft() <= self.ttft_s and stats.p99_tpot() <= self.tpot_s

    def worst_ratio(self, stats: RunStats) -> float:
        """max(P99 TTFT / SLO, P99 TPOT / SLO): at most 1 when both are met."""
        return max(stats.p99_ttft() / self.ttft_s, stats.p99_tpot() / self.tpot_s)


def slo_from_isolated(stats: RunStats, ttft_factor: float = 2.0, tpot_factor: float = 1.5,
                      ttft_s: float | None = None) -> SLO:
    """The SLO of our notes' suggested reproduction: P99 TTFT within 2x and P99 TPOT within 1.5x of inference
    running alone on the same requests (``ttft_s``: the isolated P99 TTFT to use instead of ``stats``')."""
    return SLO(ttft_factor * (stats.p99_ttft() if ttft_s is None else ttft_s), tpot_factor * stats.p99_tpot())


# ---------------------------------------------------------------------------------------------------------
# The inference engine
# ---------------------------------------------------------------------------------------------------------


class Engine:
    """Continuous batching over ``slots`` KV-cache slots: a prefill iteration admits every waiting request
    that finds a slot (prefill first, as vLLM 0.6 does without chunked prefill); otherwise a decode
    iteration advances every running request by one token."""

    def __init__(self, model: TinyLlama, slots: int = 16) -> None:
        self.model = model
        self.cache = KVCache(model.cfg, slots)
        self.free = list(range(slots - 1, -1, -1))
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.finished: list[Request] = []

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def admit(self, request: Request) -> None:
        self.waiting.append(request)

    def step(self, clock: Clock, ft: JointSegment | None = None) -> str:
        """One iteration. Returns its kind. ``ft`` rides along only in decode iterations."""
        if self.waiting and self.free:
            while self.waiting and self.free:
                r = self.waiting.popleft()
                r.slot = self.free.pop()
                r.last_token = self.model.prefill(r.prompt, r.adapter, self.cache, r.slot)
                r.generated = 1
                r.first_token_s = clock.now()
                if r.generated >= r.output_tokens:
                    self._finish(r, clock)
                else:
                    self.running.append(r)
            return "prefill"
        batch = self.running
        tokens = torch.tensor([r.last_token for r in batch])
        adapters = torch.tensor([r.adapter for r in batch])
        slots = torch.tensor([r.slot for r in batch])
        positions = torch.tensor([len(r.prompt) + r.generated - 1 for r in batch])
        nxt = self.model.decode(tokens, adapters, self.cache, slots, positions, ft=ft).tolist()
        now = clock.now()
        still = []
        for r, tok in zip(batch, nxt, strict=True):
            r.last_token = tok
            r.generated += 1
            if r.generated >= r.output_tokens:
                self._finish(r, clock, now)
            else:
                still.append(r)
        self.running = still
        return "joint" if ft is not None else "decode"

    def _finish(self, r: Request, clock: Clock, now: float | None = None) -> None:
        r.finish_s = clock.now() if now is None else now
        self.free.append(r.slot)
        self.finished.append(r)


class Clock:
    """Wall-clock seconds since the start, minus the idle gaps the run skipped."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def restart(self) -> None:
        self._t0 = time.perf_counter()

    def skip_to(self, t: float) -> None:
        self._t0 -= max(0.0, t - self.now())


# ---------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------


class Tuner:
    """The fine-tuning job: an endless stream of packed samples, a LoRA optimizer, and the steps done."""

    def __init__(self, model: TinyLlama, samples: torch.Tensor, micro_batch: int = 1, lr: float = 1e-3,
                 data_seed: int = 0) -> None:
        self.model = model
        self.samples = samples
        self.data_seed = data_seed          # how ``samples`` were drawn (the spatial worker redraws them)
        self.micro_batch = micro_batch
        self.optimizer = torch.optim.AdamW(model.lora_parameters(), lr=lr)
        self.cursor = 0
        self.done_samples = 0
        self.losses: list[float] = []

    def _next_samples(self) -> torch.Tensor:
        idx = torch.arange(self.cursor, self.cursor + self.micro_batch) % len(self.samples)
        self.cursor += self.micro_batch
        return self.samples[idx]

    def new_step(self) -> FineTuneStep:
        return FineTuneStep(self.model, self._next_samples(), self.optimizer)

    def new_chunked_step(self, chunk: int) -> ChunkedStep:
        return ChunkedStep(self.model, self._next_samples(), self.optimizer, chunk)

    def finished(self, step: FineTuneStep | ChunkedStep) -> None:
        self.done_samples += self.micro_batch
        assert step.loss is not None
        self.losses.append(step.loss)


class Policy(Protocol):
    name: str
    knob: str

    def run(self, engine: Engine, requests: list[Request], tuner: Tuner | None, clock: Clock,
            spans: list[Span]) -> dict: ...


def _arrive(engine: Engine, pending: deque[Request], clock: Clock) -> None:
    t = clock.now()
    while pending and pending[0].arrival_s <= t:
        engine.admit(pending.popleft())


def _timed(spans: list[Span], kind: str, clock: Clock, fn, *args):
    t0 = clock.now()
    out = fn(*args)
    spans.append(Span(kind if kind else out, t0, clock.now()))
    return out


@dataclass
class Isolated:
    name: str = "isolated"
    knob: str = "-"

    def run(self, engine, requests, tuner, clock, spans):
        pending = deque(requests)
        while pending or engine.busy:
            _arrive(engine, pending, clock)
            if engine.busy:
                _timed(spans, "", clock, engine.step, clock)
            elif pending:
                clock.skip_to(pending[0].arrival_s)
        return {}


@dataclass
class Temporal:
    """FineInfer-like: whole steps, at most one every ``every`` inference iterations while serving."""

    every: int = 8
    name: str = "temporal"

    @property
    def knob(self) -> str:
        return "steps only when idle" if self.every >= 10**6 else f"step every {self.every} iterations"

    def run(self, engine, requests, tuner, clock, spans):
        pending = deque(requests)
        since_step = 0
        while pending or engine.busy:
            _arrive(engine, pending, clock)
            if engine.busy and since_step < self.every:
                _timed(spans, "", clock, engine.step, clock)
                since_step += 1
                continue
            step = tuner.new_step()
            _timed(spans, "step", clock, step.run_to_end)
            tuner.finished(step)
            since_step = 0
        return {}


@dataclass
class Chunked:
    """Chunked training (the paper's third baseline, knob ``chunk_size``): each step cut along the sequence into
    chunks of ``chunk`` tokens (``model.ChunkedStep``), one chunk tasklet (forward or backward) after each of
    ``every`` inference iterations; back to back when no request is in the system. No joint batching and no
    adaptive wait: those are LLMStation's. (Our reading of the artifact's ``chunked`` runs; their scheduler's
    exact interleaving is not in our notes.)"""

    chunk: int = 64
    every: int = 1
    name: str = "chunked"

    @property
    def knob(self) -> str:
        return f"chunk {self.chunk} tokens" + (f", every {self.every} iterations" if self.every > 1 else "")

    def run(self, engine, requests, tuner, clock, spans):
        pending = deque(requests)
        step = tuner.new_chunked_step(self.chunk)
        since = 0
        while pending or engine.busy:
            _arrive(engine, pending, clock)
            if engine.busy and since < self.every:
                _timed(spans, "", clock, engine.step, clock)
                since += 1
                continue
            _timed(spans, "forward" if not step.forward_done else "backward", clock, step.tasklet)
            if step.done:
                tuner.finished(step)
                step = tuner.new_chunked_step(self.chunk)
            since = 0
        return {}


@dataclass
class Spatial:
    """MPS-like static split: fine-tuning in a second process with one thread, at ``duty`` of its time. The
    worker rebuilds the same model and the same samples from their seeds."""

    duty: float = 1.0
    serving_threads: int = 1        # the other core belongs to the fine-tuning process
    name: str = "spatial"

    @property
    def knob(self) -> str:
        return f"duty {self.duty:.0%}"

    def run(self, engine, requests, tuner, clock, spans):
        import dataclasses
        import json
        import subprocess
        import sys

        args = {"cfg": dataclasses.asdict(engine.model.cfg), "seed": engine.model.seed, "duty": self.duty,
                "n_samples": len(tuner.samples), "seq_len": tuner.samples.shape[1] - 1,
                "data_seed": tuner.data_seed, "micro_batch": tuner.micro_batch}
        from syslab.core.lifecycle import child_of_me

        proc = subprocess.Popen([sys.executable, "-m", "syslab.serving.llmstation.worker", json.dumps(args)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=child_of_me())
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the spatial fine-tuning process did not start")
            clock.restart()
            start_wall = time.perf_counter()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            pending = deque(requests)
            while pending or engine.busy:
                _arrive(engine, pending, clock)
                if engine.busy:
                    _timed(spans, "", clock, engine.step, clock)
                else:
                    time.sleep(min(0.002, max(0.0, pending[0].arrival_s - clock.now())))
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            out = json.loads(proc.stdout.readline())
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t0, t1 in out["steps"]:
            spans.append(Span("step", t0 - start_wall, t1 - start_wall))
        return out


@dataclass
class WaitController:
    """The adaptive wait of LLMStation. The paper adapts its waits from the observed P99 TTFT/TPOT against the
    SLO; the exact law is not in our notes, so this one is ours.

    Tasklets lengthen every running request's token gaps alike, so the P99 TPOT rises by about the mean delay
    they add. The SLO leaves ``slo.tpot - isolated_p99_tpot`` of room; the controller aims the mean token gap at
    ``isolated_gap + margin x room``. It starts from the wait at which one tasklet per wait would hit that
    target, ``wait = tasklet x gap / (target - gap)``, then every ``window`` decode iterations compares the
    window's mean gap with the target, and the TTFTs of requests admitted and TPOTs of requests finished since
    with ``margin x`` their SLOs: multiplicative increase when any is over, multiplicative decrease when the
    gap is well under."""

    slo: SLO
    isolated_gap_s: float
    isolated_p99_tpot_s: float
    margin: float = 0.8
    window: int = 16
    up: float = 1.3
    down: float = 0.9
    wait_s: float = 0.0
    _gaps: list[float] = field(default_factory=list)
    _over: bool = False
    _initialised: bool = False

    @property
    def target_s(self) -> float:
        room = max(self.slo.tpot_s - self.isolated_p99_tpot_s, 0.0)
        return self.isolated_gap_s + self.margin * room

    def first_tasklet(self, tasklet_s: float) -> None:
        if not self._initialised:
            self._initialised = True
            slack = max(self.target_s - self.isolated_gap_s, 1e-4)
            self.wait_s = tasklet_s * self.isolated_gap_s / slack

    def observe_gap(self, gap_s: float) -> None:
        self._gaps.append(gap_s)
        if len(self._gaps) >= self.window:
            mean = float(np.mean(self._gaps))
            if mean > self.target_s or self._over:
                self.wait_s = max(self.wait_s * self.up, 1e-3)
            elif mean < 0.8 * self.target_s:
                self.wait_s *= self.down
            self._gaps.clear()
            self._over = False

    def observe_ttft(self, ttft_s: float) -> None:
        if ttft_s > self.margin * self.slo.ttft_s:
            self._over = True

    def observe_tpot(self, tpot_s: float) -> None:
        """A finished request's TPOT (the SLO is on their P99)."""
        if tpot_s > self.margin * self.slo.tpot_s:
            self._over = True


def mean_token_gap(stats: RunStats) -> float:
    """Mean time between a request's consecutive tokens over a run (the decode-to-decode gap)."""
    gaps = [(r.finish_s - r.first_token_s) / (r.output_tokens - 1) for r in stats.requests if r.output_tokens > 1]
    weights = [r.output_tokens - 1 for r in stats.requests if r.output_tokens > 1]
    return float(np.average(gaps, weights=weights))


@dataclass
class LLMStation:
    """Tasklets (one layer each), joint batching of forward tasklets with decode, adaptive wait."""

    controller: WaitController | None = None
    fixed_wait_s: float | None = None
    joint: bool = True
    name: str = "llmstation"

    @property
    def knob(self) -> str:
        if self.fixed_wait_s is not None:
            return f"wait {self.fixed_wait_s * 1e3:.0f} ms"
        return "adaptive wait"

    def _wait(self) -> float:
        if self.fixed_wait_s is not None:
            return self.fixed_wait_s
        return self.controller.wait_s if self.controller else 0.0

    def run(self, engine, requests, tuner, clock, spans):
        pending = deque(requests)
        step = tuner.new_step()
        next_tasklet = 0.0               # the tuner may run again once this time has come
        last_decode_end: float | None = None
        waits: list[tuple[float, float]] = []
        seen_first: set[int] = set()
        while pending or engine.busy:
            _arrive(engine, pending, clock)
            # prefills never wait for the tuner; otherwise the tuner runs once its wait is over, or at once when
            # no request is in the system
            tuner_turn = not engine.busy or (not engine.waiting and clock.now() >= next_tasklet)
            if not tuner_turn:
                kind = _timed(spans, "", clock, engine.step, clock)
                last_decode_end = self._observe(engine, kind, clock, last_decode_end, seen_first)
                continue
            t0 = clock.now()
            if not step.forward_done and engine.running and self.joint:
                seg = JointSegment(step, range(step.next_forward, step.next_forward + 1))
                kind = _timed(spans, "joint", clock, engine.step, clock, seg)
                last_decode_end = self._observe(engine, kind, clock, last_decode_end, seen_first)
            elif not step.forward_done:
                _timed(spans, "forward", clock, step.forward_layer)
            else:
                _timed(spans, "backward", clock, step.backward_layer)
            if self.controller is not None:
                self.controller.first_tasklet(clock.now() - t0)
            if step.done:
                tuner.finished(step)
                step = tuner.new_step()
            next_tasklet = clock.now() + self._wait()
            waits.append((clock.now(), self._wait()))
        return {"waits": waits}

    def _observe(self, engine, kind, clock, last_decode_end, seen_first) -> float | None:
        """Feed the controller the token gap of this iteration (decode end to decode end, so prefills and
        tasklets in between count) and the TTFT of newly admitted requests. Returns the new last decode end."""
        now = clock.now()
        decoded = kind in ("decode", "joint")
        if self.controller is not None:
            for r in engine.running:
                if r.rid not in seen_first:
                    seen_first.add(r.rid)
                    self.controller.observe_ttft(r.ttft_s)
            while engine.finished:
                r = engine.finished.pop()
                if r.output_tokens > 1:
                    self.controller.observe_tpot(r.tpot_s)
            if decoded and last_decode_end is not None:
                self.controller.observe_gap(now - last_decode_end)
        if not engine.running:
            return None
        return now if decoded else last_decode_end


# ---------------------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------------------


def serve(requests: list[Request], policy, model: TinyLlama, tuner: Tuner | None = None, slots: int = 16,
          threads: int = 2) -> RunStats:
    """Serve ``requests`` (fresh copies; the originals are untouched) under ``policy`` and return latencies,
    fine-tuning throughput and the timeline. ``model`` is shared: its trainable adapter keeps learning."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(getattr(policy, "serving_threads", threads))
    reqs = [Request(r.rid, r.arrival_s, r.prompt, r.output_tokens, r.adapter) for r in requests]
    engine = Engine(model, slots)
    spans: list[Span] = []
    done_before = tuner.done_samples if tuner else 0
    losses_before = len(tuner.losses) if tuner else 0
    clock = Clock()
    try:
        extra = policy.run(engine, reqs, tuner, clock, spans)
    finally:
        torch.set_num_threads(previous_threads)
    end = max(r.finish_s for r in reqs)
    start = min(r.arrival_s for r in reqs)
    if "steps" in extra:                                 # the spatial worker's own count
        steps = [s for s in spans if s.kind == "step" and start <= s.end_s <= end]
        samples = len(steps) * extra["micro_batch"]
        losses = extra["losses"]
    else:                                               # every step ran inside the serving loop
        samples = (tuner.done_samples - done_before) if tuner else 0
        losses = tuner.losses[losses_before:] if tuner else []
    return RunStats(policy.name, policy.knob, reqs, samples, end - start, losses, spans, extra.get("waits", []))
