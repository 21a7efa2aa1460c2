"""GreyHound's mitigation: the S2 and S3 solvers, the ski-rental ladder, and an iteration-level simulation
of a data-parallel job under a fail-slow to compare it with doing nothing and with always restarting.

**Ladder** (§ Step 4): S1 do nothing -> S2 rebalance micro-batches across DP groups (computation
fail-slows) or S3 re-partition layers across PP stages (communication fail-slows) -> S4 checkpoint and
restart. Ski-rental: keep tolerating ("renting") until the time elapsed since the slowdown began reaches the
cost of the next level, then "buy" it; a slowdown of at most 10% gets S2 at once. Break-even rules like
this are 2-competitive.

**S2** (DP rebalancing): integer micro-batch counts N_i >= 1 with sum N_i = M. The paper minimises the
squared deviation of N_i t_i from their mean with a mixed-integer solver (cvxpy + ECOS_BB); as our notes
suggest we minimise what sets a synchronous step's time, max_i N_i t_i, exactly with HiGHS
(``scipy.optimize.milp``), and check it against brute force on small cases.

**S3** (PP re-partition): layers per stage so that the slowest stage (its layers' compute plus its
communication) is as fast as possible, exactly by binary search on the stage time (the paper rounds layers
proportional to 1/latency).

**Costs** (assumptions, stated in ``Costs``): the paper's formulas where our notes give them (S2:
(check_interval / 2) x (slow_iter - min_iter) / 2; S3: 60 s; S4: checkpoint write + restore + 10 s of
initialisation), with checkpoint sizes and bandwidths that are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from syslab.core.errors import InputError
from syslab.core.gpu import storage_gbps
from syslab.training.greyhound.detect import BOCDConfig, OnlineDetector

# ---------------------------------------------------------------------------------------------------------
# S2 and S3
# ---------------------------------------------------------------------------------------------------------


def rebalance_microbatches(times: np.ndarray, total: int) -> np.ndarray:
    """S2: integers N_i >= 1, sum N_i = ``total``, minimising max_i N_i t_i (``times`` = seconds per
    micro-batch on each DP group). Exact, with HiGHS: variables (N_1..N_n, T), minimise T subject to
    N_i t_i - T <= 0 and sum N_i = total."""
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    if total < n:
        raise InputError(f"{total} micro-batches cannot give each of {n} DP groups one.", field="total",
                         fix="use at least one micro-batch per DP group.")
    if (t <= 0).any():
        raise InputError("micro-batch times must be positive.", field="times", fix="pass seconds per micro-batch.")
    c = np.r_[np.zeros(n), 1.0]
    rows = np.hstack([np.diag(t), -np.ones((n, 1))])
    cons = [LinearConstraint(rows, -np.inf, 0.0), LinearConstraint(np.r_[np.ones(n), 0.0][None, :], total, total)]
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(n), 0.0],
               bounds=Bounds(np.r_[np.ones(n), 0.0], np.r_[np.full(n, total), np.inf]))
    if not res.success:  # pragma: no cover - the problem is always feasible
        raise RuntimeError(res.message)
    return np.round(res.x[:n]).astype(np.int64)


def repartition_layers(layer_s: np.ndarray, comm_s: np.ndarray, layers: int) -> np.ndarray:
    """S3: layers per PP stage (each >= 1, summing to ``layers``) minimising the slowest stage's time
    layers_s x layer_s[s] + comm_s[s]. Exact: the smallest feasible stage time is one of the candidate values
    k x layer_s[s] + comm_s[s]; binary search over them."""
    a, b = np.asarray(layer_s, dtype=np.float64), np.asarray(comm_s, dtype=np.float64)
    p = len(a)
    if layers < p:
        raise InputError(f"{layers} layers cannot fill {p} stages.", field="layers",
                         fix="give at least one layer per stage.")
    candidates = np.unique((np.arange(1, layers + 1)[:, None] * a[None, :] + b[None, :]).ravel())

    def capacity(limit: float) -> np.ndarray:
        return np.floor((limit - b) / a + 1e-9).astype(np.int64)

    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        cap = capacity(candidates[mid])
        if (cap >= 1).all() and cap.sum() >= layers:
            hi = mid
        else:
            lo = mid + 1
    cap = np.maximum(capacity(candidates[lo]), 1)
    out = np.ones(p, dtype=np.int64)
    for _ in range(layers - p):                        # fill greedily, cheapest next layer first
        room = np.flatnonzero(out < cap)
        s = room[np.argmin((out[room] + 1) * a[room] + b[room])]
        out[s] += 1
    return out


# ---------------------------------------------------------------------------------------------------------
# The job and the ladder
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """Mitigation costs in seconds (assumptions except where the paper gives the formula)."""

    check_interval_s: float = 60.0     # how often the controller re-evaluates (ours)
    pp_adjust_s: float = 60.0          # S3 (the paper's constant)
    checkpoint_gb: float = 208.0       # 13B parameters with fp32 master weights and Adam moments (16 B/param)
    # checkpoint write and read bandwidth: a local NVMe's measured sequential read (core.gpu.storage_gbps, the
    # ND A100 v4 fio figure); writes are assumed as fast (no cited write figure is calibrated)
    storage_gbps: float = field(default_factory=lambda: storage_gbps("nvme"))
    init_s: float = 10.0               # restart initialisation (the paper's constant)
    profile_s: float = 20.0            # verification and localisation pause after a detection (ours)
    # how often the controller reads the probe's per-rank timings while an adjustment is in force: the
    # artifact's local controller analyses its call log every 5 s (control_plane/local_controller.py)
    probe_interval_s: float = 5.0

    def dp_adjust_s(self, slow_iter_s: float, min_iter_s: float) -> float:
        return self.check_interval_s / 2 * (slow_iter_s - min_iter_s) / 2

    @property
    def restart_s(self) -> float:
        return 2 * self.checkpoint_gb / self.storage_gbps + self.init_s


@dataclass(frozen=True)
class Job:
    """A data-parallel job: ``dp`` groups share ``microbatches`` per step, ``microbatch_s`` each, then a
    gradient all-reduce of ``allreduce_s``."""

    dp: int = 8
    microbatches: int = 64
    microbatch_s: float = 0.12
    allreduce_s: float = 0.04

    def even(self) -> np.ndarray:
        base = np.full(self.dp, self.microbatches // self.dp)
        base[: self.microbatches % self.dp] += 1
        return base

    @property
    def units(self) -> int:
        return self.dp

    def step_s(self, split: np.ndarray, slow: np.ndarray) -> float:
        """``slow``: each DP group's compute slowdown."""
        return float(np.max(split * self.microbatch_s * slow)) + self.allreduce_s

    def mitigate(self, slow: np.ndarray) -> np.ndarray:
        """S2: rebalance micro-batches for a computation fail-slow."""
        return rebalance_microbatches(self.microbatch_s * slow, self.microbatches)

    def adjust_s(self, costs: Costs, slow_iter_s: float, min_iter_s: float) -> float:
        return costs.dp_adjust_s(slow_iter_s, min_iter_s)

    def profile(self, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the localisation pause measures per unit: a GEMM micro-benchmark's latency on each DP group's
        GPU and each group's share of the gradient all-reduce."""
        return self.microbatch_s * slow, np.full(self.dp, self.allreduce_s)

    name = "S2 rebalance"
    kind = "comp"


@dataclass(frozen=True)
class PipelineJob:
    """A pipeline-parallel job with 1F1B: ``stages`` stages split ``layers`` layers; per micro-batch a layer
    costs ``layer_s`` (forward + backward) and a stage's activations and gradients cross its outgoing link
    in ``comm_s``; a step is (micro-batches + stages - 1) x the slowest stage."""

    stages: int = 4
    layers: int = 32
    microbatches: int = 16
    layer_s: float = 0.008
    comm_s: float = 0.006

    @property
    def units(self) -> int:
        return self.stages

    def even(self) -> np.ndarray:
        base = np.full(self.stages, self.layers // self.stages)
        base[: self.layers % self.stages] += 1
        return base

    def step_s(self, split: np.ndarray, slow: np.ndarray) -> float:
        """``slow``: each stage link's communication slowdown."""
        stage = split * self.layer_s + self.comm_s * slow
        return float((self.microbatches + self.stages - 1) * np.max(stage))

    def mitigate(self, slow: np.ndarray) -> np.ndarray:
        """S3: re-partition layers for a communication fail-slow."""
        return repartition_layers(np.full(self.stages, self.layer_s), self.comm_s * slow, self.layers)

    def adjust_s(self, costs: Costs, slow_iter_s: float, min_iter_s: float) -> float:
        return costs.pp_adjust_s

    def profile(self, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per stage: the GEMM micro-benchmark on its GPU and the point-to-point test of its outgoing link."""
        return np.full(self.stages, self.layer_s), self.comm_s * slow

    name = "S3 re-partition"
    kind = "comm"


@dataclass(frozen=True)
class HybridJob:
    """A DP x PP job: ``dp`` data-parallel groups, each a ``pp``-stage 1F1B pipeline over ``layers`` layers,
    sharing ``microbatches`` per step; GPU (i, s) is stage s of group i, link (i, s) its outgoing link. A step
    lasts as long as the slowest group's pipeline, (its micro-batches + pp - 1) x its slowest stage, then the
    gradient all-reduce. ``kind`` says what the fail-slow hits: ``comp`` (a GPU computes slower; the ladder's
    adjustment is S2, rebalancing micro-batches across DP groups by their per-micro-batch time) or ``comm`` (a
    link is slower; S3, re-partitioning layers across stages, the same partition in every group)."""

    kind: str = "comp"
    dp: int = 4
    pp: int = 4
    layers: int = 32
    microbatches: int = 64
    layer_s: float = 0.008
    comm_s: float = 0.006
    allreduce_s: float = 0.04

    @property
    def units(self) -> int:
        return self.dp * self.pp

    def even(self) -> np.ndarray:
        """The configuration: micro-batches per DP group (comp) or layers per stage (comm)."""
        n, total = (self.dp, self.microbatches) if self.kind == "comp" else (self.pp, self.layers)
        base = np.full(n, total // n)
        base[: total % n] += 1
        return base

    def _stage_s(self, layers: np.ndarray, slow: np.ndarray) -> np.ndarray:
        """Per group and stage, one micro-batch's time: [dp, pp]."""
        s = slow.reshape(self.dp, self.pp)
        compute = layers[None, :] * self.layer_s * (s if self.kind == "comp" else 1.0)
        return compute + self.comm_s * (s if self.kind == "comm" else 1.0)

    def _split(self, config: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "comp":
            layers = np.full(self.pp, self.layers // self.pp)
            layers[: self.layers % self.pp] += 1
            return config, layers
        return np.full(self.dp, self.microbatches // self.dp), config

    def step_s(self, config: np.ndarray, slow: np.ndarray) -> float:
        micro, layers = self._split(config)
        per_micro = self._stage_s(layers, slow).max(axis=1)                   # each group's slowest stage
        return float(np.max((micro + self.pp - 1) * per_micro)) + self.allreduce_s

    def mitigate(self, slow: np.ndarray) -> np.ndarray:
        if self.kind == "comp":                                                # S2 across DP groups
            _, layers = self._split(self.even())
            return rebalance_microbatches(self._stage_s(layers, slow).max(axis=1), self.microbatches)
        worst_comm = self.comm_s * slow.reshape(self.dp, self.pp).max(axis=0)  # S3: one partition for all
        return repartition_layers(np.full(self.pp, self.layer_s), worst_comm, self.layers)

    def adjust_s(self, costs: Costs, slow_iter_s: float, min_iter_s: float) -> float:
        return costs.dp_adjust_s(slow_iter_s, min_iter_s) if self.kind == "comp" else costs.pp_adjust_s

    def profile(self, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per GPU (group x pp + stage): the GEMM micro-benchmark, and the point-to-point test of its link."""
        comp = np.full(self.units, self.layer_s) * (slow if self.kind == "comp" else 1.0)
        return comp, np.full(self.units, self.comm_s) * (slow if self.kind == "comm" else 1.0)

    @property
    def name(self) -> str:
        return "S2 rebalance" if self.kind == "comp" else "S3 re-partition"


def root_cause(comp: np.ndarray, comm: np.ndarray) -> tuple[str | None, int]:
    """The artifact's rule on the localisation pause's measurements: ``comp`` if the slowest GPU's
    micro-benchmark is over 2x the median, else ``comm`` if the slowest link's test is over 1.1x the median,
    else no cause (the artifact then adjusts micro-batches anyway, from the measured GPU times); with the unit
    it blames (the slowest of the kind)."""
    if np.max(comp) > 2 * np.median(comp):
        return "comp", int(np.argmax(comp))
    if np.max(comm) > 1.1 * np.median(comm):
        return "comm", int(np.argmax(comm))
    return None, int(np.argmax(comp))


@dataclass(frozen=True)
class Sensing:
    """The controller's view of a running job, for the detector in the loop: each iteration time it observes
    is the true one x N(1, ``noise``), with single-iteration spikes of +30-100% at ``spike_rate`` (the
    detection workload's noise, ``detect.synthetic_series``); the localisation pause measures each unit's
    latencies x N(1, ``profile_noise``), and so does the probe's per-rank call timing the controller reads
    at each check interval after an adjustment (to see the fail-slow end, which a rebalanced job's iteration
    time hides). Noise levels are ours."""

    seed: int = 0
    noise: float = 0.03
    spike_rate: float = 0.01
    profile_noise: float = 0.02
    detector: BOCDConfig = BOCDConfig()


@dataclass
class Outcome:
    policy: str
    finish_s: float
    actions: list[tuple[float, str]] = field(default_factory=list)
    iter_times: list[float] = field(default_factory=list)
    # the controller's detections: (iteration, a fail-slow was active, the unit blamed, the cause found)
    detections: list[tuple[int, bool, int, str | None]] = field(default_factory=list)
    onset_iteration: int | None = None

    @property
    def first_true_detection(self) -> int | None:
        return next((i for i, real, *_ in self.detections if real), None)

    @property
    def false_alarms(self) -> int:
        return sum(1 for _, real, *_ in self.detections if not real)


AnyJob = Job | PipelineJob | HybridJob


def simulate(job: AnyJob, costs: Costs, policy: str, iterations: int, slow_rank: int, factor: float,
             start_s: float, duration_s: float, detect_after: int = 3, sensing: Sensing | None = None) -> Outcome:
    """Run ``iterations`` steps; unit ``slow_rank`` (a DP group's GPU for ``Job``, a stage's link for
    ``PipelineJob``, GPU or link ``group x pp + stage`` for ``HybridJob``) is ``factor`` x slower from
    ``start_s`` for ``duration_s`` (wall-clock). Policies: ``s1`` (do nothing), ``s4`` (restart on detection,
    without the unit blamed), ``ladder`` (GreyHound: after a detection and the localisation pause, the job's
    adjustment, S2 for computation or S3 for communication, when the time since the slowdown began reaches its
    cost, S4 when it reaches the restart's; the adjustment is undone when the fail-slow is seen to end).

    Detection and localisation: with ``sensing`` (the reproduction), GreyHound-Detect (``OnlineDetector``)
    runs on the noisy iteration times inside the loop; a verified slowdown costs a profiling pause, whose
    noisy per-unit measurements give the cause and the unit blamed (``root_cause``), so misses, late
    detections, false alarms (a pause, and an adjustment from noise) and wrong blame all cost what they
    cost. Without it (an oracle bound): the slowdown is seen exactly ``detect_after`` iterations in, and its
    unit and kind are known. Cost: O(iterations x the detector's max run)."""
    if policy not in ("s1", "s4", "ladder"):
        raise ValueError(policy)
    now, split = 0.0, job.even()
    ones = np.ones(job.units)
    min_iter = job.step_s(split, ones)
    out = Outcome(policy, 0.0)
    rng = np.random.default_rng(sensing.seed) if sensing else None
    det = OnlineDetector(sensing.detector) if sensing else None
    iter_start: list[float] = []         # since the detector's last reset
    level, removed = 1, -1               # removed: the unit a restart left out
    began: float | None = None           # onset of the slowdown being handled (as the controller sees it)
    blamed, slow_ref = slow_rank, min_iter
    seen_slow = seen_healed = 0          # oracle: consecutive slow / healthy iterations
    next_probe = np.inf
    for it in range(iterations):
        active = start_s <= now < start_s + duration_s and removed != slow_rank
        if active and out.onset_iteration is None:
            out.onset_iteration = it
        slow = ones.copy()
        if active:
            slow[slow_rank] = factor
        t = job.step_s(split, slow)
        iter_start.append(now)
        now += t
        out.iter_times.append(t)
        if policy == "s1":
            continue
        detected = healed = False
        if det is None:                                                  # the oracle
            seen_slow, seen_healed = (seen_slow + 1, 0) if active else (0, seen_healed + 1)
            if active and seen_slow == detect_after and began is None:
                detected, began, blamed, cause = True, now - detect_after * t, slow_rank, job.kind
            healed = not active and began is not None and seen_healed == detect_after
        else:
            observed = t * rng.normal(1.0, sensing.noise)
            if rng.random() < sensing.spike_rate:
                observed *= rng.uniform(1.3, 2.0)
            cp = det.push(observed)
            if cp is not None and cp.slowdown and began is None:
                detected, began, slow_ref = True, iter_start[cp.index], cp.after
            elif cp is not None and not cp.slowdown and began is not None and level == 1:
                healed = True                                            # seen to end before any action
            elif level == 2 and now >= next_probe:                       # the probe's per-rank timings
                comp, comm = job.profile(slow)
                measured = (comp if job.kind == "comp" else comm) * rng.normal(1.0, sensing.profile_noise, job.units)
                healed = measured[blamed] <= 1.1 * np.median(measured)
                next_probe = now + costs.probe_interval_s
        if detected:
            now += costs.profile_s
            if det is not None:                                          # localise from the pause's measurements
                comp, comm = job.profile(slow)
                noise = lambda: rng.normal(1.0, sensing.profile_noise, job.units)  # noqa: E731
                cause, blamed = root_cause(comp * noise(), comm * noise())
                sensed = (comp if job.kind == "comp" else comm) * noise()
                measured_slow = sensed / np.median(sensed)
            else:
                measured_slow = slow
            out.detections.append((it, bool(active), blamed, cause))
            out.actions.append((now, "detected, profiled"))
            if policy == "s4":
                now += costs.restart_s
                removed, level, began = blamed, 1, None
                out.actions.append((now, "S4 restart"))
                if det is not None:
                    det.reset()
                    iter_start = []
                continue
            if t <= 1.1 * min_iter:                                      # small slowdowns: adjust at once
                now = _adjust(job, costs, split, measured_slow, t, min_iter, out, now)
                level, next_probe = 2, now + costs.check_interval_s
        # the oracle knows the moment the fail-slow ends; the controller in the loop only what it sees
        if policy == "ladder" and began is not None and not healed and (active or det is not None):
            elapsed = now - began
            cur = t if det is None else slow_ref
            if level == 1 and elapsed >= job.adjust_s(costs, cur, min_iter):
                now = _adjust(job, costs, split, measured_slow, cur, min_iter, out, now)
                level, next_probe = 2, now + costs.check_interval_s
                if det is not None:
                    det.reset()
                    iter_start = []
            elif level == 2 and elapsed >= costs.restart_s:
                now += costs.restart_s
                removed, level, began, split = blamed, 1, None, job.even()
                out.actions.append((now, "S4 restart"))
                if det is not None:
                    det.reset()
                    iter_start = []
        if healed:                                                       # the fail-slow is over
            if level == 2:
                now += job.adjust_s(costs, job.step_s(split, ones), min_iter)
                split = job.even()
                out.actions.append((now, f"{job.name.split()[0]} undone"))
                if det is not None:
                    det.reset()
                    iter_start = []
            level, began, next_probe = 1, None, np.inf
    out.finish_s = now
    return out


def _adjust(job: AnyJob, costs: Costs, split: np.ndarray, slow: np.ndarray, t: float, min_iter: float,
            out: Outcome, now: float) -> float:
    split[:] = job.mitigate(slow)
    now += job.adjust_s(costs, t, min_iter)
    out.actions.append((now, f"{job.name} {split.tolist()}"))
    return now


def recovered_share(job: AnyJob, costs: Costs, policy: str, factor: float, duration_s: float,
                    iterations: int | None = None, start_s: float = 600.0, sensing: Sensing | None = None) -> float:
    """Share of the time S1 loses to the fail-slow that ``policy`` wins back (1 = all, < 0 = worse);
    ``sensing``: the detector in the loop (else the oracle)."""
    base = job.step_s(job.even(), np.ones(job.units))
    n = iterations or int(math.ceil((start_s + duration_s * factor + 3600.0) / base))
    healthy = n * base
    lost_s1 = simulate(job, costs, "s1", n, 0, factor, start_s, duration_s).finish_s - healthy
    lost = simulate(job, costs, policy, n, 0, factor, start_s, duration_s, sensing=sensing).finish_s - healthy
    return (lost_s1 - lost) / lost_s1 if lost_s1 > 0 else 0.0
