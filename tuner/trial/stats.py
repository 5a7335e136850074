"""Throughput with its spread: per-step samples, warm-up detection, intervals, and comparisons of measurements.

A trial's speed is a sample, not a number. The same point measured twice differs (the issue that led here saw
7-15% between repeats on a quiet CPU and 22% under load), so every figure the search compares carries an
interval, and every comparison asks whether two intervals are apart, not which sample is larger.

Three levels of noise, each with its own estimate:

* **within a run**: the per-optimizer-step tokens/s after the warm-up. The run's figure is their *median*
  (robust to the odd step stalled by another process), with a t-type interval built from a robust scale:
  ``median ± t(n-1) × 1.2533 × 1.4826 × MAD / √n`` (1.2533 is the asymptotic standard error of a median in
  units of σ/√n, 1.4826 × MAD estimates σ). A trial measures until that interval is within ``target`` (2%) of
  the median or a time cap is hit (:func:`converged`).
* **between runs** of the same point (process start, memory layout, other load): estimated from points measured
  more than once, pooled over the study (:func:`pooled_between`) on the log scale.
* **paired**: runs of two points taken back to back (A B A B ...) share the machine's slow drifts; the ratio of
  their medians, averaged over rounds, is the figure for "is A faster than B" (:func:`paired_ratio`).

Everything is on the log scale where it combines (ratios become differences, relative errors add in quadrature)
and pure Python: the search process imports neither numpy nor torch for this.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

CONFIDENCE = 0.95
#: A trial stops measuring once its interval's half-width is within this fraction of its median ...
TARGET_REL_CI = 0.02
#: ... after at least this many measured steps (fewer give no usable spread).
MIN_SAMPLES = 5
#: Standard error of the median of normal data, in units of sigma / sqrt(n).
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)
#: 1.4826 x MAD estimates sigma for normal data.
MAD_TO_SIGMA = 1.4826
#: A leading step is warm-up when it is slower than the later steps' median by more than this many robust
#: sigmas, and by at least WARMUP_MIN_EXCESS of that median.
WARMUP_SIGMAS = 3.0
WARMUP_MIN_EXCESS = 0.05


# -- quantiles ------------------------------------------------------------------------------------------------------


def normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion in the normal
    quantile (Abramowitz & Stegun 26.7.5), accurate to about 1e-3 from 3 degrees of freedom on at 95%."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if math.isinf(df):
        return normal_quantile(p)
    z = normal_quantile(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def two_sided(confidence: float) -> float:
    """The upper quantile probability of a two-sided interval: 0.975 for 95%."""
    return 0.5 + confidence / 2


# -- one run --------------------------------------------------------------------------------------------------------


def robust_sigma(xs: Sequence[float]) -> float:
    """1.4826 × MAD, or the standard deviation when more than half the values are equal (MAD 0)."""
    if len(xs) < 2:
        return 0.0
    med = statistics.median(xs)
    mad = statistics.median(abs(x - med) for x in xs)
    return MAD_TO_SIGMA * mad if mad > 0 else statistics.stdev(xs)


def detect_warmup(step_times: Sequence[float], minimum: int = 1, max_fraction: float = 0.5) -> int:
    """How many leading steps to skip: at least ``minimum``, then every leading step that is clearly slower than the
    steps after it (allocator growth, lazy initialisation, caches), up to ``max_fraction`` of the steps.

    A step is "clearly slower" when its time exceeds the median of the later steps by more than
    ``WARMUP_SIGMAS`` robust sigmas of them and by at least ``WARMUP_MIN_EXCESS``; the later steps must number at
    least three, so a short run keeps what it has.
    """
    n = len(step_times)
    w = min(minimum, n)
    while w < n * max_fraction:
        rest = step_times[w + 1 :]
        if len(rest) < 3:
            break
        med = statistics.median(rest)
        if step_times[w] > med + max(WARMUP_SIGMAS * robust_sigma(rest), WARMUP_MIN_EXCESS * med):
            w += 1
        else:
            break
    return w


@dataclass(frozen=True)
class Measurement:
    """Tokens/s of one run: the median of its per-step samples with a two-sided interval."""

    median: float
    lo: float
    hi: float
    n: int  # measured steps (after the warm-up)
    warmup: int = 0  # leading steps skipped
    se_rel: float = 0.0  # standard error of the median relative to it (log scale): the figure that combines
    confidence: float = CONFIDENCE
    samples: tuple[float, ...] = ()
    stop: str = ""  # why the run stopped measuring

    @property
    def rel_half(self) -> float:
        """Half-width of the interval relative to the median."""
        return (self.hi - self.lo) / 2 / self.median if self.median else math.inf

    @property
    def exact(self) -> bool:
        """A figure without a spread: one sample, or a result from before per-step samples were kept."""
        return self.n < 2

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "lo": self.lo, "hi": self.hi, "n": self.n, "warmup": self.warmup,
                "se_rel": self.se_rel, "confidence": self.confidence,
                "samples": [round(x, 3) for x in self.samples], "stop": self.stop}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(median=float(d["median"]), lo=float(d["lo"]), hi=float(d["hi"]), n=int(d["n"]),
                   warmup=int(d.get("warmup", 0)), se_rel=float(d.get("se_rel", 0.0)),
                   confidence=float(d.get("confidence", CONFIDENCE)),
                   samples=tuple(float(x) for x in d.get("samples", ())), stop=str(d.get("stop", "")))  # fmt: skip

    @classmethod
    def exactly(cls, value: float) -> Measurement:
        return cls(value, value, value, 1)


def measure(samples: Sequence[float], *, warmup: int = 0, confidence: float = CONFIDENCE, stop: str = "") -> Measurement:
    """The median of ``samples`` (tokens/s per step, warm-up already removed) with its interval."""
    xs = [float(x) for x in samples if x > 0 and math.isfinite(x)]
    if not xs:
        raise ValueError("no positive sample to measure")
    med = statistics.median(xs)
    n = len(xs)
    if n < 2:
        return Measurement(med, med, med, n, warmup, 0.0, confidence, tuple(xs), stop)
    se = MEDIAN_SE_FACTOR * robust_sigma(xs) / math.sqrt(n)
    half = t_quantile(two_sided(confidence), n - 1) * se
    return Measurement(med, max(med - half, 0.0), med + half, n, warmup, se / med, confidence, tuple(xs), stop)


def step_measurement(step_times: Sequence[float], tokens_per_step: float, *, min_warmup: int = 1,
                     confidence: float = CONFIDENCE, stop: str = "") -> Measurement:  # fmt: skip
    """Tokens/s from optimizer-step times: the warm-up is detected and skipped, the rest measured."""
    w = detect_warmup(step_times, min_warmup)
    kept = [tokens_per_step / t for t in step_times[w:] if t > 0]
    if not kept:  # every step was warm-up (too few steps): measure what there is rather than nothing
        kept = [tokens_per_step / t for t in step_times if t > 0]
        w = 0
    return measure(kept, warmup=w, confidence=confidence, stop=stop)


def converged(m: Measurement, target: float = TARGET_REL_CI, min_samples: int = MIN_SAMPLES) -> bool:
    return m.n >= min_samples and m.rel_half <= target


# -- several runs of one point ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point's tokens/s over all its runs: center, interval, and how it was obtained."""

    center: float
    lo: float
    hi: float
    se_log: float  # standard error of log(center)
    runs: int
    samples: int
    confidence: float = CONFIDENCE

    @property
    def rel_half(self) -> float:
        return (self.hi - self.lo) / 2 / self.center if self.center else math.inf

    @property
    def exact(self) -> bool:
        return self.se_log == 0.0


def _interval(center_log: float, se_log: float, confidence: float) -> tuple[float, float]:
    z = normal_quantile(two_sided(confidence))
    return math.exp(center_log - z * se_log), math.exp(center_log + z * se_log)


def combine(runs: Sequence[Measurement], between: float | None = None, confidence: float = CONFIDENCE) -> Estimate:
    """One estimate from several runs of the same point: the geometric mean of the run medians.

    Its standard error (log scale) is the larger of what the runs say about themselves and what they say about
    each other: ``sqrt(mean(se_i²)/k + between²/k)`` with the study's pooled run-to-run noise ``between``, and,
    from three runs on, the runs' own spread ``sd(log median_i)/sqrt(k)``. Exact runs (no samples) with no
    known between-run noise stay exact.
    """
    if not runs:
        raise ValueError("no run to combine")
    k = len(runs)
    logs = [math.log(r.median) for r in runs]
    center = sum(logs) / k
    noisy = any(not r.exact for r in runs)
    within = sum(r.se_rel**2 for r in runs) / k
    var = within / k + ((between or 0.0) ** 2 / k if noisy else 0.0)
    if k >= 3 or (k == 2 and noisy and between is None):
        var = max(var, statistics.variance(logs) / k)
    se = math.sqrt(var)
    lo, hi = _interval(center, se, confidence)
    return Estimate(math.exp(center), lo, hi, se, k, sum(r.n for r in runs), confidence)


def pooled_between(groups: Iterable[Sequence[Measurement]]) -> tuple[float | None, int]:
    """Run-to-run noise (standard deviation of log tokens/s) pooled over points measured more than once, with its
    degrees of freedom; (None, 0) when no point was measured twice with per-step samples."""
    ss = 0.0
    df = 0
    for runs in groups:
        noisy = [r for r in runs if not r.exact]
        if len(noisy) < 2:
            continue
        logs = [math.log(r.median) for r in noisy]
        mean = sum(logs) / len(logs)
        ss += sum((x - mean) ** 2 for x in logs)
        df += len(logs) - 1
    if df == 0:
        return None, 0
    return math.sqrt(ss / df), df


# -- comparisons ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """How many times faster A is than B, with an interval, and how that was obtained."""

    center: float
    lo: float
    hi: float
    rounds: int  # paired rounds (0: the two points' estimates compared unpaired)
    method: str
    confidence: float = CONFIDENCE

    @property
    def rel_half(self) -> float:
        return (self.hi - self.lo) / 2 / self.center if self.center else math.inf

    @property
    def a_faster(self) -> bool:
        """A is faster beyond noise: the whole interval is above 1."""
        return self.lo > 1.0

    @property
    def b_faster(self) -> bool:
        return self.hi < 1.0

    @property
    def separated(self) -> bool:
        return self.a_faster or self.b_faster

    def text(self) -> str:
        return f"{self.center:.3f}x [{self.lo:.3f}, {self.hi:.3f}]"


def unpaired_ratio(a: Estimate, b: Estimate) -> Ratio:
    """A / B from two estimates taken independently: errors add in quadrature on the log scale."""
    d = math.log(a.center) - math.log(b.center)
    se = math.sqrt(a.se_log**2 + b.se_log**2)
    lo, hi = _interval(d, se, a.confidence)
    return Ratio(math.exp(d), lo, hi, 0, "unpaired (independent runs)", a.confidence)


def paired_ratio(pairs: Sequence[tuple[Measurement, Measurement]], between: float | None = None,
                 confidence: float = CONFIDENCE, between_df: int = 0) -> Ratio:  # fmt: skip
    """A / B from runs taken back to back, one pair per round.

    The variance of one round's log ratio is pooled from two estimates: the spread of the rounds' own ratios
    (k - 1 degrees of freedom, which sees what pairing cancels) and twice the study's run-to-run variance
    ``between²`` (``between_df`` degrees of freedom, from every point measured more than once), so that two or
    three rounds do not pay a t quantile of 1 or 2 degrees of freedom. The interval is a t-interval with the
    pooled degrees of freedom, never narrower than the runs' own standard errors allow.
    """
    if not pairs:
        raise ValueError("no paired rounds")
    k = len(pairs)
    diffs = [math.log(a.median) - math.log(b.median) for a, b in pairs]
    d = sum(diffs) / k
    within = sum(a.se_rel**2 + b.se_rel**2 for a, b in pairs) / k / k
    noisy = any(not (a.exact and b.exact) for a, b in pairs)
    ss, df = 0.0, 0
    if k >= 2 and noisy:
        ss, df = sum((x - d) ** 2 for x in diffs), k - 1
    if noisy and between is not None and between_df > 0:
        ss += between_df * 2 * between**2
        df += between_df
    if df > 0:
        var = max(ss / df / k, within)
        q = t_quantile(two_sided(confidence), df)
        method = f"paired over {k} round(s), t-interval with {df} degrees of freedom"
    else:
        var = within
        q = normal_quantile(two_sided(confidence))
        method = f"paired over {k} round(s), from the runs' own errors"
    se = math.sqrt(var)
    return Ratio(math.exp(d), math.exp(d - q * se), math.exp(d + q * se), k, method, confidence)


@dataclass
class Summary:
    """The study's noise level, for the report."""

    between: float | None  # pooled run-to-run standard deviation of log tokens/s
    between_df: int
    within_median: float | None  # median relative half-width of single runs' intervals
    runs: int
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = []
        if self.within_median is not None:
            parts.append(f"a single run's 95% interval is ±{self.within_median:.1%} of its median (median over "
                         f"{self.runs} runs)")  # fmt: skip
        if self.between is not None:
            parts.append(f"repeated runs of the same point differ by {self.between:.1%} (standard deviation, "
                         f"{self.between_df} degree(s) of freedom)")  # fmt: skip
        else:
            parts.append("no point was measured twice, so run-to-run noise is not known"
                         + (f" ({'; '.join(self.notes)} in the intervals)" if self.notes else ""))  # fmt: skip
        return "; ".join(parts)
