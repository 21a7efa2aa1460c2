"""GreyHound's detection: iteration times from a collective-call log, and fail-slow change points in them.

1. **Iteration time without touching the framework** (§ Step 1). The call-type IDs of a rank's collectives
   repeat once per iteration. Their autocorrelation (FFT, up to ``nlags`` = 200) peaks at the period P;
   the first peak above 0.95 is taken, then verified by finding an offset where the next P IDs repeat
   exactly. The iteration time is then t(call i + P) - t(call i).
2. **Change points** (§ Step 2). Bayesian online change-point detection (Adams & MacKay 2007): a posterior
   over the current run length, a constant hazard 1/``hazard_s`` and a Normal-Gamma conjugate model, so each
   run length predicts the next point with a Student-t. A change is declared when the posterior puts more
   than 0.8 on a run that began within the last ``window`` iterations; it is kept only if it passes the
   paper's checks: at least 10 iterations after the previous change point, and a relative mean change
   |mu_L - mu_R| / max(mu_L, mu_R) above 10%. Single-iteration spikes are removed first: a point more than 3
   robust standard deviations from the median of its 5-point neighbourhood is replaced by that median.
   (The released code calls Rbeast instead of BOCD; we follow the paper.)

The detector runs many series at once (one row each): per iteration it does O(series x max_run) work, so
200 series of 2,000 iterations take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal, special

from syslab.core.errors import InputError

# ---------------------------------------------------------------------------------------------------------
# Step 1: the period of the collective-call sequence
# ---------------------------------------------------------------------------------------------------------


def autocorrelation(x: np.ndarray, nlags: int) -> np.ndarray:
    """Sample autocorrelation at lags 0..nlags (FFT; the biased estimator statsmodels uses by default)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, size)
    acov = np.fft.irfft(f * np.conj(f), size)[: nlags + 1] / n
    return acov / acov[0] if acov[0] > 0 else np.zeros(nlags + 1)


def find_period(ids: np.ndarray, nlags: int = 200, height: float = 0.95) -> tuple[int, int] | None:
    """(period, offset) of a repeating ID sequence: the first ACF peak above ``height`` whose window of P IDs
    repeats exactly from some offset; None if there is none."""
    ids = np.asarray(ids)
    if len(ids) < 4 or len(np.unique(ids)) < 2:
        return None
    acf = autocorrelation(ids, min(nlags, len(ids) - 1))
    peaks, _ = signal.find_peaks(acf, height=height)
    for p in peaks:
        p = int(p)
        for offset in range(min(p, len(ids) - 2 * p + 1)):
            if np.array_equal(ids[offset: offset + p], ids[offset + p: offset + 2 * p]):
                return p, offset
    return None


def iteration_times(ids: np.ndarray, timestamps: np.ndarray, nlags: int = 200, height: float = 0.95
                    ) -> tuple[int, np.ndarray]:
    """The period and the iteration times t(i + P) - t(i) for every P-th call from the verified offset."""
    ids, ts = np.asarray(ids), np.asarray(timestamps, dtype=np.float64)
    if len(ids) != len(ts):
        raise InputError(f"{len(ids)} call IDs but {len(ts)} timestamps.", field="calls",
                         fix="give one timestamp per collective call.")
    if len(ts) and (not np.isfinite(ts).all() or (np.diff(ts) < 0).any()):
        bad = int(np.flatnonzero(~np.isfinite(ts) | np.r_[False, np.diff(ts) < 0])[0])
        raise InputError(f"timestamp {ts[bad]} at call {bad} is not finite or earlier than the call before it.",
                         field="timestamp_s", fix="give one rank's calls in issue order, timestamps never "
                                                  "decreasing.")
    found = find_period(ids, nlags, height)
    if found is None:
        raise InputError("no repeating pattern in the call IDs (no autocorrelation peak verified).", field="calls",
                         fix="give a longer log (several iterations) of one rank's collective calls.")
    p, offset = found
    starts = ts[offset::p]
    return p, np.diff(starts)


# ---------------------------------------------------------------------------------------------------------
# Step 2: Bayesian online change-point detection
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BOCDConfig:
    hazard: float = 1 / 250.0      # expected run length 250 iterations (our choice; the paper gives none)
    max_run: int = 300             # run lengths beyond this are folded into the last bin (truncation)
    window: int = 10               # a change is "recent" if its run began within this many iterations
    threshold: float = 0.8         # posterior mass on a recent change needed to declare it (the paper's 0.8)
    min_gap: int = 10              # change points closer than this to the previous one are dropped (paper)
    min_rel_change: float = 0.10   # |mu_L - mu_R| / max(mu_L, mu_R) must exceed this (paper)
    spike_z: float = 3.0           # the outlier filter's |z| (paper: 3)
    prior_n: int = 50              # points that set each series' scale (robust median / MAD)


def remove_spikes(x: np.ndarray, z: float = 3.0) -> np.ndarray:
    """Replace points more than ``z`` robust sigmas away from their 5-point rolling median by that median
    (rows are series). Level shifts of 3 or more iterations survive; single-iteration spikes do not."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    padded = np.pad(x, ((0, 0), (2, 2)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 5, axis=1)
    med = np.median(windows, axis=2)
    resid = x - med
    sigma = 1.4826 * np.median(np.abs(resid), axis=1, keepdims=True)
    sigma = np.maximum(sigma, 1e-12)
    return np.where(np.abs(resid) > z * sigma, med, x)


def _standardise(x: np.ndarray, n: int) -> np.ndarray:
    head = x[:, : max(5, min(n, x.shape[1]))]
    med = np.median(head, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(head - med), axis=1, keepdims=True)
    return (x - med) / np.maximum(mad, 1e-3 * np.maximum(np.abs(med), 1e-12))


class _Posterior:
    """Adams & MacKay's run-length posterior for a batch of standardised series (one row each), advanced one
    point at a time: R [series, max_run + 1] and the Normal-Gamma parameters mu, beta of each run length.
    kappa and alpha depend only on the run length (r points seen), so they and the Student-t's log-normaliser
    are computed once; only mu and beta vary by series."""

    MU0, KAPPA0, ALPHA0, BETA0 = 0.0, 1.0, 1.0, 1.0

    def __init__(self, series: int, cfg: BOCDConfig):
        m = cfg.max_run + 1
        r = np.arange(m)
        self.kappa = self.KAPPA0 + r
        alpha = self.ALPHA0 + r / 2
        self.nu = 2 * alpha
        self.scale_factor = (self.kappa + 1) / (alpha * self.kappa)
        self.log_norm = (special.gammaln((self.nu + 1) / 2) - special.gammaln(self.nu / 2)
                         - 0.5 * np.log(np.pi * self.nu))
        self.hazard = cfg.hazard
        self.R = np.zeros((series, m))
        self.R[:, 0] = 1.0
        self.mu = np.full((series, m), self.MU0)
        self.beta = np.full((series, m), self.BETA0)

    def update(self, x: np.ndarray) -> np.ndarray:
        """Absorb one point per series (``x`` [series, 1]) and return the new run-length posterior."""
        R, mu, beta, h = self.R, self.mu, self.beta, self.hazard
        # Student-t predictive: 2 alpha dof, location mu, scale^2 = beta (kappa + 1) / (alpha kappa)
        scale2 = beta * self.scale_factor
        logp = (self.log_norm - 0.5 * np.log(scale2)
                - (self.nu + 1) / 2 * np.log1p((x - mu) ** 2 / (self.nu * scale2)))
        joint = R * np.exp(logp)
        new = np.empty_like(R)
        new[:, 0] = joint.sum(axis=1) * h
        new[:, 1:] = joint[:, :-1] * (1 - h)
        new[:, -1] += joint[:, -1] * (1 - h)                  # fold the tail into the last bin
        self.R = new / np.maximum(new.sum(axis=1, keepdims=True), 1e-300)
        # posterior parameters, shifted by one run length; the prior at run length 0
        kappa = self.kappa
        mu_new = (kappa * mu + x) / (kappa + 1)
        beta_new = beta + kappa * (x - mu) ** 2 / (2 * (kappa + 1))
        mu[:, 1:] = mu_new[:, :-1]
        mu[:, 0] = self.MU0
        beta[:, 1:] = beta_new[:, :-1]
        beta[:, 0] = self.BETA0
        return self.R


def run_length_posteriors(z: np.ndarray, cfg: BOCDConfig, callback) -> None:
    """Adams & MacKay's recursion over standardised series ``z`` [series, T]; after each point calls
    ``callback(t, R)`` with the run-length posterior R [series, max_run + 1]."""
    post = _Posterior(z.shape[0], cfg)
    for t in range(z.shape[1]):
        callback(t, post.update(z[:, t: t + 1]))


@dataclass(frozen=True)
class ChangePoint:
    index: int            # the first iteration of the new regime
    detected_at: int      # the iteration at which it was known (only points up to here were used)
    before: float         # mean iteration time of the regime before (spikes removed)
    after: float          # mean iteration time of the regime after, up to the next change point

    @property
    def slowdown(self) -> bool:
        return self.after > self.before


def detect(series: np.ndarray, cfg: BOCDConfig = BOCDConfig()) -> list[list[ChangePoint]]:
    """Verified change points of each series (rows of ``series``, or one 1-d series), online: each is
    declared using only the points up to ``detected_at``."""
    x = np.atleast_2d(np.asarray(series, dtype=np.float64))
    if x.shape[1] < 3:
        raise InputError(f"only {x.shape[1]} iteration times.", field="iter_time_s",
                         fix="give at least a few dozen iterations.")
    if not np.isfinite(x).all() or (x <= 0).any():
        raise InputError("iteration times must be positive finite numbers.", field="iter_time_s",
                         fix="drop empty or non-positive rows.")
    clean = remove_spikes(x, cfg.spike_z)
    z = _standardise(clean, cfg.prior_n)
    found: list[list[ChangePoint]] = [[] for _ in range(len(x))]
    last = np.zeros(len(x), dtype=np.int64)                  # start of the current regime per series
    armed = np.ones(len(x), dtype=bool)

    def on_point(t: int, R: np.ndarray) -> None:
        recent = R[:, : cfg.window].sum(axis=1)
        for i in np.flatnonzero(recent > cfg.threshold):
            if not armed[i]:
                continue
            run = int(np.argmax(R[i, : cfg.window]))      # the last ``run`` points belong to the new regime
            start = t - run + 1
            if start - last[i] < cfg.min_gap or t - start < 2:
                continue
            before = float(clean[i, last[i]: start].mean())
            after = float(clean[i, start: t + 1].mean())
            if abs(after - before) / max(after, before) > cfg.min_rel_change:
                # declared at point t, but the spike filter looked two points ahead: known at t + 2
                found[i].append(ChangePoint(start, min(t + 2, x.shape[1] - 1), before, after))
                last[i] = start
                armed[i] = False
        armed[recent < 0.5] = True                             # re-arm once the change has been absorbed

    run_length_posteriors(z, cfg, on_point)
    return [_segment_means(clean[i], cps) for i, cps in enumerate(found)]


def _segment_means(x: np.ndarray, cps: list[ChangePoint]) -> list[ChangePoint]:
    """Report each change point with the mean of the whole regime before and after it (the online check
    used only the points up to its detection)."""
    bounds = [0, *(c.index for c in cps), len(x)]
    return [ChangePoint(c.index, c.detected_at, float(x[bounds[k]: c.index].mean()),
                        float(x[c.index: bounds[k + 2]].mean())) for k, c in enumerate(cps)]


class OnlineDetector:
    """GreyHound-Detect as the controller runs it inside a job: iteration times arrive one at a time and a
    verified change point is reported as soon as it is declared. The same BOCD, thresholds and checks as
    ``detect``, with two differences that being online forces: the spike filter's centred 5-point median
    needs the two next points, so point k is judged when point k + 2 arrives (two iterations of lag), and its
    robust sigma, like the standardisation, comes from the first ``prior_n`` points (``detect`` uses the
    whole series for the sigma). ``reset`` starts afresh (after the job's configuration changed, its
    iteration time moves by design). Cost: O(max_run) per point."""

    def __init__(self, cfg: BOCDConfig = BOCDConfig()):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.raw: list[float] = []
        self.clean: list[float] = []
        self.post: _Posterior | None = None
        self.spike_sigma = self.centre = self.scale = 0.0
        self.last, self.armed = 0, True

    @property
    def baseline(self) -> float:
        """The healthy level: the median of the warm-up points (nan before they are in)."""
        return self.centre if self.post is not None else float("nan")

    def push(self, x: float) -> ChangePoint | None:
        """Absorb one iteration time; the change point declared at it, if any (indices count from the last
        reset)."""
        self.raw.append(float(x))
        k = len(self.raw) - 3                                # the point the spike filter can judge now
        if k < 0:
            return None
        lo = self.raw[max(0, k - 2): k + 3]
        window = [self.raw[0]] * (2 - k) + lo if k < 2 else lo        # edge padding, as ``remove_spikes``
        med = sorted(window)[2]                              # the median of 5 (np.median costs 20x more here)
        if self.post is None:                                # warm-up: collect the prior points
            self.clean.append(self.raw[k])
            if len(self.clean) < self.cfg.prior_n:
                return None
            self._start()
            return None
        v = self.raw[k]
        if abs(v - med) > self.cfg.spike_z * self.spike_sigma:
            v = med
        self.clean.append(v)
        return self._absorb(len(self.clean) - 1)

    def _start(self) -> None:
        """Set the spike sigma and the scale from the warm-up points, then run BOCD over them."""
        head = np.array(self.clean)
        padded = np.pad(head, 2, mode="edge")
        med = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
        resid = head - med
        self.spike_sigma = max(1.4826 * float(np.median(np.abs(resid))), 1e-12)
        head = np.where(np.abs(resid) > self.cfg.spike_z * self.spike_sigma, med, head)
        self.clean = head.tolist()
        self.centre = float(np.median(head))
        mad = 1.4826 * float(np.median(np.abs(head - self.centre)))
        self.scale = max(mad, 1e-3 * max(abs(self.centre), 1e-12))
        self.post = _Posterior(1, self.cfg)
        for t in range(len(self.clean)):
            self._absorb(t)

    def _absorb(self, t: int) -> ChangePoint | None:
        cfg = self.cfg
        R = self.post.update(np.array([[(self.clean[t] - self.centre) / self.scale]]))[0]
        recent = R[: cfg.window].sum()
        found = None
        if recent > cfg.threshold and self.armed:
            run = int(np.argmax(R[: cfg.window]))
            start = t - run + 1
            if start - self.last >= cfg.min_gap and t - start >= 2:
                before = float(np.mean(self.clean[self.last: start]))
                after = float(np.mean(self.clean[start: t + 1]))
                if abs(after - before) / max(after, before) > cfg.min_rel_change:
                    found = ChangePoint(start, len(self.raw) - 1, before, after)   # known now: t + 2
                    self.last, self.armed = start, False
        if recent < 0.5:
            self.armed = True
        return found


def level_alarm(series: np.ndarray, cfg: BOCDConfig = BOCDConfig(), window: int = 10) -> int | None:
    """A level guard for slow drifts (ours, not the paper's: the artifact keeps ``min_iter_time`` as state but
    alarms only on change points): the first iteration at which the median of the last ``window``
    spike-filtered iteration times is more than ``cfg.min_rel_change`` above the healthy level (the median of
    the first ``cfg.prior_n``), known two points later (the spike filter's look-ahead); None if never."""
    x = remove_spikes(np.asarray(series, dtype=np.float64), cfg.spike_z)[0]
    if len(x) < cfg.prior_n + window:
        return None
    healthy = float(np.median(x[: cfg.prior_n]))
    rolling = np.median(np.lib.stride_tricks.sliding_window_view(x, window), axis=1)
    over = np.flatnonzero(rolling[cfg.prior_n:] > (1 + cfg.min_rel_change) * healthy)
    return min(int(over[0]) + cfg.prior_n + window - 1 + 2, len(x) - 1) if len(over) else None


def threshold_detect(series: np.ndarray, factor: float = 1.1, window: int = 50, persistence: int = 3,
                     spike_filter: bool = True, spike_z: float = 3.0) -> list[list[int]]:
    """The static-threshold baseline, given the rules our detector has: the same spike filter
    (``remove_spikes``) and a persistence rule. An alarm when ``persistence`` consecutive iterations are above
    ``factor`` x the running median of the ``window`` iterations before each (after being below it), known
    at the last of them plus the spike filter's two points of look-ahead. ``persistence=1,
    spike_filter=False`` is the bare threshold."""
    x = np.atleast_2d(np.asarray(series, dtype=np.float64))
    lag = 0
    if spike_filter:
        x, lag = remove_spikes(x, spike_z), 2
    n, t_len = x.shape
    med = np.empty((n, t_len))
    med[:, 0] = x[:, 0]
    for t in range(1, min(window, t_len)):                   # expanding window at the start
        med[:, t] = np.median(x[:, :t], axis=1)
    if t_len > window:
        med[:, window:] = np.median(np.lib.stride_tricks.sliding_window_view(x[:, :-1], window, axis=1), axis=2)
    above = x > factor * med
    above[:, 0] = False
    # the length of the run of consecutive points above the line, ending at each point
    run = np.zeros((n, t_len), dtype=np.int64)
    for t in range(1, t_len):
        run[:, t] = np.where(above[:, t], run[:, t - 1] + 1, 0)
    alarms = run == persistence
    return [np.minimum(np.flatnonzero(row) + lag, t_len - 1).tolist() for row in alarms]


# ---------------------------------------------------------------------------------------------------------
# Synthetic fail-slow series and scoring
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailSlow:
    start: int
    end: int              # exclusive
    factor: float         # iteration time multiplier while it lasts


def synthetic_series(n: int, length: int, rng: np.random.Generator, spike_rate: float = 0.01,
                     base: float = 1.0, noise: float = 0.03) -> tuple[np.ndarray, list[list[FailSlow]]]:
    """Our notes' suggested workload (SYNTHETIC): N(1.0, 0.03) iteration times with 0-3 non-overlapping
    fail-slows (+10-60%, 20-400 iterations) and single-iteration spikes (+30-100%) at ``spike_rate``."""
    x = rng.normal(base, noise, (n, length))
    truth: list[list[FailSlow]] = []
    for i in range(n):
        events: list[FailSlow] = []
        for _ in range(rng.integers(0, 4)):
            dur = int(rng.integers(20, 401))
            start = int(rng.integers(60, length - dur))
            if all(start > e.end + 30 or start + dur + 30 < e.start for e in events):
                events.append(FailSlow(start, start + dur, float(rng.uniform(1.1, 1.6))))
        for e in events:
            x[i, e.start: e.end] *= e.factor
        spikes = rng.random(length) < spike_rate
        x[i, spikes] *= rng.uniform(1.3, 2.0, spikes.sum())
        truth.append(sorted(events, key=lambda e: e.start))
    return x, truth


@dataclass(frozen=True)
class Score:
    true_positives: int
    false_alarms: int
    missed: int
    delays: tuple[int, ...]
    iterations: int

    @property
    def precision(self) -> float:
        return self.true_positives / max(self.true_positives + self.false_alarms, 1)

    @property
    def recall(self) -> float:
        return self.true_positives / max(self.true_positives + self.missed, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_alarms_per_1k(self) -> float:
        return 1000 * self.false_alarms / max(self.iterations, 1)

    @property
    def mean_delay(self) -> float:
        return float(np.mean(self.delays)) if self.delays else float("nan")


def score_onsets(alarms: list[list[int]], truth: list[list[FailSlow]], iterations: int,
                 tolerance: int = 30) -> Score:
    """Match alarm times to fail-slow onsets: an alarm within [start, start + tolerance] detects it (the
    first such alarm; delay = alarm - start); every other alarm is false."""
    tp = fa = missed = 0
    delays: list[int] = []
    for found, events in zip(alarms, truth, strict=True):
        used: set[int] = set()
        for e in events:
            hit = next((a for a in found if e.start <= a <= e.start + tolerance and a not in used), None)
            if hit is None:
                missed += 1
            else:
                tp += 1
                used.add(hit)
                delays.append(hit - e.start)
        fa += sum(1 for a in found if a not in used)
    return Score(tp, fa, missed, tuple(delays), iterations * len(truth))
