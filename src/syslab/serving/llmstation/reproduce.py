"""LLMStation's reproduction: fine-tuning throughput at the inference SLO, for real on this CPU, against
temporal sharing, spatial sharing and chunked training on the same requests (each with the same warm-up).

Negative control (``run.control``): LLMStation's run is replaced by the temporal (FineInfer-like) baseline's run
at its best SLO-meeting knob (or, if none meets the SLO, the one closest to it)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.errors import InputError
from syslab.core.run import Run, pyplot
from syslab.core.workloads import load_lmsys, lognormal_lengths, poisson_arrivals
from syslab.serving.llmstation.model import FineTuneStep, JointSegment, TinyConfig, TinyLlama
from syslab.serving.llmstation.serve import (
    SLO,
    Chunked,
    Clock,
    Engine,
    Isolated,
    LLMStation,
    Request,
    RunStats,
    Spatial,
    Temporal,
    Tuner,
    WaitController,
    make_requests,
    markov_samples,
    mean_token_gap,
    serve,
    slo_from_isolated,
)

CLAIMS = (
    Claim("throughput-vs-best-baseline", "fine-tuning samples/s at the SLO: LLMStation over the best of temporal "
          "sharing, spatial sharing and chunked training (each at its best SLO-meeting knob)", paper="1.38-14.77x",
          unit="x",
          expect=Expect(at_least=1.3), source="abstract; our notes' acceptance >= 1.3x"),
    Claim("llmstation-meets-slo", "LLMStation's worst of P99 TTFT / SLO and P99 TPOT / SLO (adaptive wait)",
          paper="meets SLOs", unit="x SLO", expect=Expect(at_most=1.0), source="abstract",
          kind=CHECK),  # an absolute level the baselines meet too at their knobs; the throughput claim requires it
    Claim("temporal-tpot-at-equal-throughput", "temporal sharing's P99 TPOT / SLO at a fine-tuning throughput at "
          "least LLMStation's, where LLMStation meets the SLO: min(temporal's P99 TPOT / SLO, SLO / LLMStation's "
          "worst P99), >= 1 iff temporal violates while LLMStation meets", paper="violates", unit="x SLO",
          expect=Expect(at_least=1.0), source="our notes' acceptance: LLMStation meets the SLO; temporal violates "
          "P99 TPOT at equal throughput"),
    Claim("tasklet-equivalence", "max |difference| of the LoRA weights after a tasklet-suspended, jointly batched "
          "step vs one uninterrupted step", paper="identical", unit="", expect=Expect(at_most=1e-5),
          source="our notes' acceptance (allclose)", kind=CHECK),
)

CFG = TinyConfig(layers=8, context=512)
# The paper packs fine-tuning samples to ~512 tokens; our notes suggest 128 at quick scale. On a CPU a 512-token
# tasklet costs several decode iterations (a GPU's is a fraction of one), so quick scale is also the closer one.


@dataclass(frozen=True)
class Plan:
    requests: int
    rates_per_s: tuple[float, ...]
    temporal_every: tuple[int, ...]
    spatial_duty: tuple[float, ...]
    chunk_tokens: tuple[int, ...]
    repeats: int
    max_prompt: int
    max_output: int
    sample_tokens: int


ISOLATED_PASSES = 3                 # passes of serving alone behind the SLO (the median P99s)
QUICK = Plan(32, (8.0,), (16, 64, 10**9), (1.0,), (32, 64), 1, 64, 32, 128)
FULL = Plan(120, (4.0, 8.0, 12.0), (16, 64, 256, 10**9), (0.5, 1.0), (64, 128, 256), 3, 128, 128, 512)


# ---------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------


def request_lengths(run: Run, n: int, max_prompt: int, max_output: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Prompt and output lengths: sampled from LMSYS-Chat when the dataset is present (ShareGPT, the paper's,
    is not provided), else a lognormal twin with LMSYS's medians; clipped to what the tiny model serves in a
    run of this scale."""
    rng = run.rng(1)
    if run.data.has("lmsys_lengths"):
        df = load_lmsys(run.data.path("lmsys_lengths", "lmsys.csv"))
        rows = df.iloc[rng.choice(len(df), n, replace=False)]
        p, o = rows["prompt_tokens"].to_numpy(), rows["output_tokens"].to_numpy()
        source = "LMSYS-Chat lengths"
    else:
        p = lognormal_lengths(70, 1.0, n, rng)
        o = lognormal_lengths(150, 1.0, n, rng)
        source = "synthetic lognormal lengths (LMSYS-like medians; dataset lmsys_lengths not found)"
    return np.clip(p, 4, max_prompt), np.clip(o, 2, max_output), source


# ---------------------------------------------------------------------------------------------------------
# Equivalence of a tasklet-suspended step
# ---------------------------------------------------------------------------------------------------------


def reference_step(model: TinyLlama, tokens: torch.Tensor, lr: float = 1e-3) -> float:
    """One ordinary fine-tuning step: a whole forward, ``loss.backward()``, AdamW."""
    opt = torch.optim.AdamW(model.lora_parameters(), lr=lr)
    x = model.embed[tokens[:, :-1].reshape(-1)] + model.pos[: tokens.shape[1] - 1].repeat(tokens.shape[0], 1)
    for layer in model.layers:
        x = layer.forward_ft(x, tokens.shape[1] - 1)
    loss = torch.nn.functional.cross_entropy(model.logits(x), tokens[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    return float(loss.detach())


def suspended_step(model: TinyLlama, tokens: torch.Tensor, requests: list[Request], lr: float = 1e-3) -> float:
    """The same step as LLMStation runs it: forward tasklets ride in decode iterations of a live engine,
    backward tasklets alternate with decode iterations."""
    opt = torch.optim.AdamW(model.lora_parameters(), lr=lr)
    step = FineTuneStep(model, tokens, opt)
    engine = Engine(model, slots=8)
    clock = Clock()
    for r in requests:
        engine.admit(Request(r.rid, 0.0, r.prompt, 10**6, r.adapter))
    engine.step(clock)                                  # prefill
    while not step.done:
        if not step.forward_done:
            engine.step(clock, JointSegment(step, range(step.next_forward, step.next_forward + 1)))
        else:
            step.backward_layer()
            engine.step(clock)
    assert step.loss is not None
    return step.loss


def tasklet_equivalence(cfg: TinyConfig, rng: np.random.Generator) -> tuple[float, float, float]:
    """max |dW| over the LoRA weights and |d loss| between the two ways of running one step, and how far the
    step moved the weights at all (so that agreement is not the agreement of two no-ops)."""
    tokens = markov_samples(2, 64, cfg, rng)
    a, b = TinyLlama(cfg, seed=3), TinyLlama(cfg, seed=3)
    with torch.no_grad():                              # non-zero B so the step's gradients reach both factors
        for m in (a, b):
            for layer in m.layers:
                layer.lora_b.copy_(torch.linspace(-0.01, 0.01, layer.lora_b.numel()).view_as(layer.lora_b))
    reqs = make_requests(np.zeros(3), np.array([12, 20, 7]), np.array([50, 50, 50]), cfg, rng)
    initial = [p.detach().clone() for p in a.lora_parameters()]
    loss_a = reference_step(a, tokens)
    loss_b = suspended_step(b, tokens, reqs)
    pairs = zip(a.lora_parameters(), b.lora_parameters(), strict=True)
    diff = max(float((pa - pb).detach().abs().max()) for pa, pb in pairs)
    moved = max(float((pa.detach() - p0).abs().max()) for pa, p0 in zip(a.lora_parameters(), initial, strict=True))
    return diff, abs(loss_a - loss_b), moved


def joint_batching_gain(model: TinyLlama, sample_tokens: int, rng: np.random.Generator,
                        repeats: int = 5) -> dict[str, float]:
    """Measured: one decode iteration (8 requests) plus one forward tasklet of one sample run apart,
    vs the two in one joint iteration. Medians of ``repeats``."""
    reqs = make_requests(np.zeros(8), np.full(8, 64), np.full(8, 100), model.cfg, rng)
    samples = markov_samples(1, sample_tokens, model.cfg, rng)
    engine = Engine(model, slots=8)
    clock = Clock()
    for r in reqs:
        engine.admit(Request(r.rid, 0.0, r.prompt, 10**6, r.adapter))
    engine.step(clock)
    tuner = Tuner(model, samples)
    apart, joint = [], []
    for _ in range(repeats):
        step = tuner.new_step()
        t0 = time.perf_counter()
        engine.step(clock)
        step.forward_layer()
        t1 = time.perf_counter()
        engine.step(clock, JointSegment(step, range(1, 2)))
        t2 = time.perf_counter()
        apart.append(t1 - t0)
        joint.append(t2 - t1)
    return {"apart_s": float(np.median(apart)), "joint_s": float(np.median(joint))}


# ---------------------------------------------------------------------------------------------------------
# The serving runs
# ---------------------------------------------------------------------------------------------------------


def best_at_slo(runs: list[RunStats], slo: SLO) -> RunStats | None:
    """The run with the highest fine-tuning throughput among those meeting the SLO."""
    ok = [r for r in runs if slo.met(r)]
    return max(ok, key=lambda r: r.ft_throughput) if ok else None


def _median_run(runs: list[RunStats]) -> RunStats:
    """Of repeated runs of one configuration, the one with the median fine-tuning throughput."""
    return sorted(runs, key=lambda r: r.ft_throughput)[len(runs) // 2]


@dataclass
class Comparison:
    """Every policy on the same requests at one request rate."""

    rate_per_s: float
    isolated: RunStats
    slo: SLO
    temporal: list[RunStats]
    spatial: list[RunStats]
    chunked: list[RunStats]
    station: RunStats

    @property
    def runs(self) -> list[RunStats]:
        return [self.isolated, *self.temporal, *self.spatial, *self.chunked, self.station]

    def best_baseline(self) -> tuple[float, dict[str, RunStats | None]]:
        base = {"temporal": best_at_slo(self.temporal, self.slo), "spatial": best_at_slo(self.spatial, self.slo),
                "chunked": best_at_slo(self.chunked, self.slo)}
        return max((r.ft_throughput for r in base.values() if r is not None), default=0.0), base

    def ratio(self) -> tuple[float, str]:
        """LLMStation's throughput at the SLO over the best baseline's (0 if LLMStation misses the SLO). With no
        baseline setting meeting the SLO, a lower bound against one sample per run (the resolution)."""
        best, _ = self.best_baseline()
        mine = self.station.ft_throughput if self.slo.met(self.station) else 0.0
        if best > 0:
            return mine / best, f"best baseline {best:.2f} samples/s"
        floor = 1.0 / self.station.duration_s
        return mine / floor, f"no baseline met the SLO: a lower bound against one sample per run ({floor:.2f}/s)"

    def temporal_at_equal_throughput(self) -> tuple[RunStats, bool]:
        """The slowest temporal setting at least as fast as LLMStation (or, if none is, the fastest)."""
        faster = [r for r in self.temporal if r.ft_throughput >= self.station.ft_throughput]
        if faster:
            return min(faster, key=lambda r: r.ft_throughput), True
        return max(self.temporal, key=lambda r: r.ft_throughput), False


def warm_up(requests: list[Request], model: TinyLlama, samples: torch.Tensor, data_seed: int,
            n: int = 8) -> None:
    """Serve the first ``n`` requests, arrivals compressed to 0, and run one fine-tuning step, discarding both,
    so that the pass that sets the SLO does not pay for cold caches and first-call allocations (on a small run
    a cold first pass inflated the isolated P99 TTFT, hence the SLO, until every policy met it). The step runs
    on a copy of the adapter state, so the shared model learns nothing from it."""
    head = [Request(r.rid, 0.0, r.prompt, r.output_tokens, r.adapter) for r in requests[:n]]
    serve(head, Isolated(), model)
    saved = [p.detach().clone() for p in model.lora_parameters()]
    tuner = Tuner(model, samples, data_seed=data_seed)
    step = tuner.new_step()
    step.run_to_end()
    with torch.no_grad():
        for p, v in zip(model.lora_parameters(), saved, strict=True):
            p.copy_(v)


def compare_requests(requests: list[Request], model: TinyLlama, samples: torch.Tensor, data_seed: int,
                     temporal_every: tuple[int, ...] = (16, 64, 10**9), spatial_duty: tuple[float, ...] = (1.0,),
                     repeats: int = 1, progress=lambda message: None, control: bool = False,
                     chunk_tokens: tuple[int, ...] = (32, 64)) -> Comparison:
    """Serve ``requests`` alone (to set the SLO), then under every baseline knob and under LLMStation, each
    ``repeats`` times (the median run by fine-tuning throughput is kept). Takes as long as the runs do.
    ``control`` (a negative control): LLMStation's slot takes the temporal baseline's best run instead."""
    rate = len(requests) / max(max(r.arrival_s for r in requests), 1e-9)

    def repeat(policy_factory, label: str) -> RunStats:
        runs = []
        for i in range(repeats):
            progress(f"{len(requests)} requests: {label} ({i + 1}/{repeats})")
            tuner = Tuner(model, samples, data_seed=data_seed)
            runs.append(serve(requests, policy_factory(), model, tuner))
        return _median_run(runs)

    progress(f"{len(requests)} requests: warming up (served and discarded)")
    warm_up(requests, model, samples, data_seed)
    progress(f"{len(requests)} requests: serving alone to set the SLO")
    # At least three passes alone, the SLO from the median P99s: a P99 over a few dozen requests is their
    # slowest, and one stall in one pass (another process taking a core) inflated it up to 8x.
    isolated = [serve(requests, Isolated(), model) for _ in range(max(repeats, ISOLATED_PASSES))]
    iso = sorted(isolated, key=lambda r: r.p99_tpot())[len(isolated) // 2]
    slo = slo_from_isolated(iso, ttft_s=float(np.median([r.p99_ttft() for r in isolated])))
    gap = mean_token_gap(iso)
    temporal = [repeat(lambda k=k: Temporal(every=k), Temporal(every=k).knob) for k in temporal_every]
    spatial = [repeat(lambda d=d: Spatial(duty=d), f"spatial, duty {d:.0%}") for d in spatial_duty]
    chunked = [repeat(lambda c=c: Chunked(chunk=c), Chunked(chunk=c).knob) for c in chunk_tokens]
    if control:   # the temporal baseline at its best SLO-meeting knob (else the closest to the SLO)
        station = best_at_slo(temporal, slo) or min(temporal, key=slo.worst_ratio)
    else:
        station = repeat(lambda: LLMStation(WaitController(slo, gap, iso.p99_tpot())), "LLMStation, adaptive wait")
    return Comparison(rate, iso, slo, temporal, spatial, chunked, station)


def compare(run: Run, plan: Plan, model: TinyLlama, rate: float, samples: torch.Tensor,
            data_seed: int) -> tuple[Comparison, str]:
    p, o, source = request_lengths(run, plan.requests, plan.max_prompt, plan.max_output)
    arrivals = poisson_arrivals(rate, plan.requests, run.rng(2))
    requests = make_requests(arrivals, p, o, CFG, run.rng(3))
    cmp = compare_requests(requests, model, samples, data_seed, plan.temporal_every, plan.spatial_duty,
                           plan.repeats, lambda m: run.progress(f"{rate:g} req/s, {m}"), run.control,
                           plan.chunk_tokens)
    cmp.rate_per_s = rate
    return cmp, source


def compare_trace(trace, max_requests: int = 64, max_prompt: int = 128, max_output: int = 64,
                  sample_tokens: int = 128, repeats: int = 1, seed: int = 0,
                  progress=lambda message: None) -> tuple[Comparison, int]:
    """Every policy on the first ``max_requests`` requests of a trace (a frame with ``arrival_s``,
    ``prompt_tokens``, ``output_tokens``; e.g. ``core.workloads.load_azure_llm``). Lengths are clipped to what
    the tiny model serves; returns the comparison and how many requests were clipped."""
    df = trace.iloc[:max_requests]
    empty = df.index[(df["prompt_tokens"] < 1) | (df["output_tokens"] < 1)]
    if len(empty):                    # clipping would turn an empty request into a 1-token one, silently
        raise InputError(f"{len(empty)} of the first {len(df)} requests have an empty prompt or output (first: row "
                         f"{empty[0]}).", field="ContextTokens/GeneratedTokens",
                         fix="drop requests with 0 prompt or 0 output tokens from the trace.")
    p = df["prompt_tokens"].to_numpy().clip(1, max_prompt)
    o = df["output_tokens"].to_numpy().clip(1, max_output)
    clipped = int(((df["prompt_tokens"] > max_prompt) | (df["output_tokens"] > max_output)).sum())
    arrivals = df["arrival_s"].to_numpy() - float(df["arrival_s"].min())
    rng = np.random.default_rng(seed)
    requests = make_requests(arrivals, p, o, CFG, rng)
    torch.manual_seed(seed)
    model = TinyLlama(CFG, seed=seed)
    samples = markov_samples(64, sample_tokens, CFG, np.random.default_rng(seed + 7))
    return compare_requests(requests, model, samples, seed + 7, repeats=repeats, progress=progress), clipped


def reproduce(run: Run) -> Result:
    result = Result(system="llmstation")
    plan = QUICK if run.quick else FULL
    torch.manual_seed(run.seed)

    run.progress("checking that a tasklet-suspended step equals an uninterrupted one")
    diff, dloss, moved = tasklet_equivalence(TinyConfig(layers=4, context=256), run.rng(5))

    model = TinyLlama(CFG, seed=run.seed)
    data_seed = run.seed + 7
    samples = markov_samples(64, plan.sample_tokens, CFG, np.random.default_rng(data_seed))
    gain = joint_batching_gain(model, plan.sample_tokens, run.rng(4))
    comparisons = []
    for rate in plan.rates_per_s:
        cmp, source = compare(run, plan, model, rate, samples, data_seed)
        comparisons.append(cmp)

    # --- claims: each measured at every rate; the paper's range starts at 1.38x, so the worst rate counts -----
    ratios = [(c, *c.ratio()) for c in comparisons]
    c, ratio, how = min(ratios, key=lambda t: t[1])
    best, base = c.best_baseline()
    result.findings.append(CLAIMS[0].measure(
        ratio, f"at {c.rate_per_s:g} req/s: LLMStation {c.station.ft_throughput:.2f} samples/s "
        f"({'meets' if c.slo.met(c.station) else 'misses'} the SLO); {how}. Temporal best: "
        f"{_describe(base['temporal'])}; spatial best: {_describe(base['spatial'])}; chunked best: "
        f"{_describe(base['chunked'])}. Wall-clock on this machine, "
        f"{plan.repeats} repeat(s) per setting" + _per_rate([(x.rate_per_s, r) for x, r, _ in ratios])))
    worst = max(comparisons, key=lambda x: x.slo.worst_ratio(x.station))
    result.findings.append(CLAIMS[1].measure(
        worst.slo.worst_ratio(worst.station), f"at {worst.rate_per_s:g} req/s: P99 TTFT "
        f"{worst.station.p99_ttft() * 1e3:.0f} ms (SLO {worst.slo.ttft_s * 1e3:.0f}), P99 TPOT "
        f"{worst.station.p99_tpot() * 1e3:.1f} ms (SLO {worst.slo.tpot_s * 1e3:.1f})"))
    # Temporal's violation counts only where LLMStation itself meets the SLO at that throughput (both halves of
    # the acceptance), so that a station that misses the SLO (or a baseline in its slot) cannot pass it.
    picks = [(x, *x.temporal_at_equal_throughput()) for x in comparisons]
    x, pick, found = min(picks, key=lambda t: min(t[1].p99_tpot() / t[0].slo.tpot_s,
                                                  1 / t[0].slo.worst_ratio(t[0].station)))
    result.findings.append(CLAIMS[2].measure(
        min(pick.p99_tpot() / x.slo.tpot_s, 1 / x.slo.worst_ratio(x.station)),
        f"at {x.rate_per_s:g} req/s, temporal ({pick.knob}) at {pick.ft_throughput:.2f} samples/s vs LLMStation "
        f"{x.station.ft_throughput:.2f} (LLMStation at {x.slo.worst_ratio(x.station):.2f}x its SLO): temporal P99 "
        f"TPOT {pick.p99_tpot() * 1e3:.1f} ms ({pick.p99_tpot() / x.slo.tpot_s:.2f}x), P99 TTFT "
        f"{pick.p99_ttft() * 1e3:.0f} ms" + ("" if found else " (no temporal setting reached LLMStation's "
                                               "throughput; its fastest is shown)")))
    result.findings.append(CLAIMS[3].measure(diff, f"the step moved weights by up to {moved:.1e}; loss differs by "
                                                   f"{dloss:.1e}; a 4-layer model, 2 samples of 64 tokens, 3 "
                                                   "requests decoding alongside"))

    # --- tables, metrics, figures -------------------------------------------------------------------------
    for c in comparisons:
        result.tables.append(Table(
            f"{plan.requests} requests at {c.rate_per_s:g}/s ({source}; prompts <= {plan.max_prompt}, outputs <= "
            f"{plan.max_output} tokens); SLO: P99 TTFT <= {c.slo.ttft_s * 1e3:.0f} ms, P99 TPOT <= "
            f"{c.slo.tpot_s * 1e3:.1f} ms (2x and 1.5x serving alone)",
            ["policy", "knob", "fine-tuning samples/s", "P99 TTFT (ms)", "P99 TPOT (ms)", "meets SLO"],
            [[r.policy, r.knob, round(r.ft_throughput, 3), round(r.p99_ttft() * 1e3, 1),
              round(r.p99_tpot() * 1e3, 1), "yes" if c.slo.met(r) else "no"] for r in c.runs]))
    result.tables.append(Table(
        f"Joint batching, measured: a decode iteration of 8 requests and one {plan.sample_tokens}-token forward "
        "tasklet", ["run apart (ms)", "in one joint iteration (ms)", "saved"],
        [[round(gain["apart_s"] * 1e3, 2), round(gain["joint_s"] * 1e3, 2),
          f"{1 - gain['joint_s'] / gain['apart_s']:.0%}"]]))
    result.metrics.update({
        "rates": {f"{c.rate_per_s:g}": {"slo": {"ttft_s": c.slo.ttft_s, "tpot_s": c.slo.tpot_s},
                                        "runs": [r.summary() for r in c.runs]} for c in comparisons},
        "joint_batching": gain,
        "tasklet_equivalence": {"max_abs_weight_diff": diff, "loss_diff": dloss, "max_abs_weight_update": moved}})
    result.notes.append(
        "Everything here ran for real on this CPU: a tiny Llama-style model (8 layers, hidden 512, LoRA r=8 on q "
        "and v) serves multi-LoRA requests with continuous batching while fine-tuning its own adapter on "
        f"{plan.sample_tokens}-token samples. Absolute numbers are CPU numbers at toy scale; only ratios between "
        "policies mean anything. Spatial sharing is two processes with one thread each, not MPS.")
    result.notes.append(
        "Why the gain is small here: on a GPU, decode leaves compute idle and fine-tuning tokens ride along almost "
        "free; on this CPU the joint batch saves nothing measurable (table above), so every policy pays for "
        "fine-tuning with serving time and the SLO caps them all at a similar budget. LLMStation's finer tasklets "
        "then buy tail latency, not throughput.")
    result.figures.append(_scatter(run, comparisons))
    last = comparisons[-1]
    result.figures.append(_timeline(run, [t for t in last.temporal if t.ft_samples] or last.temporal, last.station))
    return result


def _per_rate(pairs: list[tuple[float, float]]) -> str:
    if len(pairs) < 2:
        return ""
    return ". Per rate: " + ", ".join(f"{rate:g}/s {r:.2f}x" for rate, r in pairs)


def _describe(r: RunStats | None) -> str:
    return "none met the SLO" if r is None else f"{r.ft_throughput:.2f} samples/s ({r.knob})"


def _scatter(run: Run, comparisons: list[Comparison]):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(comparisons), figsize=(6.4 * len(comparisons), 3.8), squeeze=False)
    colors = {"isolated": "0.4", "temporal": "tab:orange", "spatial": "tab:green", "chunked": "tab:red",
              "llmstation": "tab:blue"}
    for ax, c in zip(axes[0], comparisons, strict=True):
        for r in c.runs:
            ax.scatter(c.slo.worst_ratio(r), r.ft_throughput, color=colors[r.policy], s=40, label=r.policy,
                       zorder=3)
            ax.annotate(r.knob, (c.slo.worst_ratio(r), r.ft_throughput), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(f"{c.rate_per_s:g} requests/s", fontsize=9)
        ax.set_xlabel("worst of P99 TTFT/SLO, P99 TPOT/SLO (left of the line: met)")
        ax.set_ylabel("fine-tuning samples / s")
    return run.save_figure(fig, "throughput_vs_slo", "Fine-tuning throughput against the inference SLO, every "
                           "policy and knob (measured on this CPU).")


def _timeline(run: Run, temporal: list[RunStats], station: RunStats):
    """One second of each policy: what the CPU was doing."""
    plt = pyplot()
    colors = {"prefill": "tab:red", "decode": "tab:gray", "joint": "tab:purple", "forward": "tab:cyan",
              "backward": "tab:blue", "step": "tab:orange"}
    shown = [max(temporal, key=lambda r: r.ft_throughput), station]
    fig, axes = plt.subplots(len(shown), 1, figsize=(7.5, 1.3 * len(shown) + 0.8), sharex=True)
    for ax, r in zip(np.atleast_1d(axes), shown, strict=True):
        t0 = min(req.arrival_s for req in r.requests) + 1.0
        for s in r.spans:
            if s.end_s >= t0 and s.start_s <= t0 + 1.0:
                ax.broken_barh([(s.start_s - t0, s.end_s - s.start_s)], (0, 1), color=colors[s.kind])
        ax.set_yticks([])
        ax.set_ylabel(f"{r.policy}\n{r.knob}", rotation=0, ha="right", va="center", fontsize=8)
    from matplotlib.patches import Patch
    fig.legend([Patch(color=c) for c in colors.values()], list(colors), ncol=6, fontsize=7, loc="upper center")
    np.atleast_1d(axes)[-1].set_xlim(0, 1.0)
    np.atleast_1d(axes)[-1].set_xlabel("seconds (a 1 s window of the run)")
    return run.save_figure(fig, "timeline", "What the CPU ran during one second: whole fine-tuning steps between "
                           "iterations (temporal) vs per-layer tasklets and joint iterations (LLMStation).")
