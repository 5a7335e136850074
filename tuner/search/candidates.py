"""Points as the policy, the planner and the report see them: every run of a point combined, with its spread.

A point may run more than once: a re-check when its peak was over the ceiling by less than the memory noise,
race rounds against the other finalists, gain rounds against the baseline. A :class:`Candidate` combines them:

* **tokens/s**: the geometric mean of the runs' medians with an interval that carries the runs' own spread and
  the study's run-to-run noise (:func:`tuner.trial.stats.combine`);
* **memory**: the median of the runs' peaks; a point is *feasible* when that median is within the ceiling and no
  run ran out of memory. A single run over the ceiling by no more than the **memory noise** (the largest spread
  seen between repeated runs of a point, and at least :data:`MEMORY_NOISE_FLOOR` of the ceiling) is *marginal*:
  it prunes nothing until a second run settles it.

A :class:`Pool` holds the candidates of a study with the noise levels, and compares two points: paired when they
ran back to back in at least two rounds (drifts of the machine cancel), else from their combined estimates.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.search.records import TrialRecord
from tuner.search.space import Point
from tuner.trial.stats import (
    Estimate,
    Measurement,
    Ratio,
    Summary,
    combine,
    paired_ratio,
    pooled_between,
    unpaired_ratio,
)

#: Run-to-run noise (sd of log tokens/s) assumed for a single run while no point has been measured twice: a
#: single run's own interval knows nothing of how the next process will do (the issue that led here saw 7-15%
#: between repeats of short trials on a quiet CPU). Replaced by the measured figure from the first repeat on.
BETWEEN_PRIOR = 0.03
#: The smallest memory noise assumed, as a fraction of the ceiling: the same CPU trial measured 838 MiB once
#: and 837 MiB another time; GPU peaks vary less, but a fraction of a percent costs nothing to respect.
MEMORY_NOISE_FLOOR = 0.005


@dataclass
class Candidate:
    """One point with every run of it. Reads like a :class:`TrialRecord` of its first run where the report and the
    tuned-config writer need one (number, spec, origin, estimates), with tokens/s and peak over all runs."""

    point: Point
    runs: list[TrialRecord]  # every record of this point that ran a process, oldest first
    estimate: Estimate | None = None
    ceiling_bytes: int = 0
    memory_noise: int = 0

    # -- identity: the first run --------------------------------------------------------------------------
    @property
    def first(self) -> TrialRecord:
        return self.runs[0]

    @property
    def number(self) -> int:
        return self.first.number

    @property
    def key(self) -> str:
        return self.point.key

    def __getattr__(self, name: str) -> Any:
        # spec, origin, grad_accum, predicted_bytes, calibrated_bytes, prediction_basis, worker, ...
        if name.startswith("__") or name in ("runs", "point"):
            raise AttributeError(name)
        return getattr(self.first, name)

    # -- measurements -----------------------------------------------------------------------------------------
    @property
    def measured_runs(self) -> list[TrialRecord]:
        return [r for r in self.runs if r.measured]

    @property
    def measurements(self) -> list[Measurement]:
        return [m for r in self.measured_runs if (m := r.measurement) is not None]

    @property
    def tokens_per_s(self) -> float | None:
        return self.estimate.center if self.estimate is not None else None

    @property
    def peaks(self) -> list[int]:
        return [int(r.peak_bytes) for r in self.measured_runs if r.peak_bytes is not None]

    @property
    def peak_bytes(self) -> int | None:
        peaks = self.peaks
        return int(statistics.median(peaks)) if peaks else None

    @property
    def peak_fraction(self) -> float | None:
        p = self.peak_bytes
        return p / self.ceiling_bytes if p is not None and self.ceiling_bytes else None

    @property
    def status(self) -> str:
        """ok | marginal | over_budget | oom, or the last run's failure (crash, timeout, error)."""
        if any(r.fate == "oom" for r in self.runs):
            return "oom"
        peak = self.peak_bytes
        if peak is None or self.tokens_per_s is None:
            return self.runs[-1].fate
        if peak <= self.ceiling_bytes:
            return "ok"
        if len(self.peaks) == 1 and peak - self.ceiling_bytes <= self.memory_noise:
            return "marginal"
        return "over_budget"

    @property
    def fate(self) -> str:
        s = self.status
        return "over_budget" if s == "marginal" else s

    @property
    def feasible(self) -> bool:
        return self.status == "ok"

    @property
    def fate_text(self) -> str:
        from tuner.search.records import FATE_TEXT

        if self.status == "marginal":
            return "over the ceiling by less than the memory noise"
        return FATE_TEXT.get(self.fate, self.fate)

    @property
    def reason(self) -> str:
        failed = [r for r in self.runs if r.fate != "ok"]
        return failed[-1].reason if failed and not self.feasible else ""

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def rounds(self) -> dict[int, Measurement]:
        """Race and gain rounds this point ran in: round id -> that run's measurement."""
        out: dict[int, Measurement] = {}
        for r in self.measured_runs:
            if r.round_id is not None and (m := r.measurement) is not None:
                out[int(r.round_id)] = m
        return out

    def interval_text(self) -> str:
        e = self.estimate
        if e is None:
            return "-"
        if e.exact:
            return f"{e.center:,.0f}"
        return f"{e.center:,.0f} [{e.lo:,.0f}, {e.hi:,.0f}]"


@dataclass
class Pool:
    """The candidates of a study, the noise levels, and comparisons between points."""

    candidates: dict[str, Candidate]
    ceiling_bytes: int
    between: float | None = None  # pooled run-to-run noise (sd of log tokens/s)
    between_df: int = 0
    memory_noise: int = 0
    records: list[TrialRecord] = field(default_factory=list)
    between_assumed: bool = False  # no point measured twice yet: ``between`` is BETWEEN_PRIOR

    @classmethod
    def build(cls, records: Sequence[TrialRecord], ceiling_bytes: int | None = None) -> Pool:
        ceiling = ceiling_bytes if ceiling_bytes is not None else max((r.ceiling_bytes for r in records), default=0)
        by_key: dict[str, list[TrialRecord]] = {}
        for r in sorted(records, key=lambda r: r.number):
            if r.ran:
                by_key.setdefault(r.point.key, []).append(r)
        groups = [[m for r in runs if r.measured and (m := r.measurement) is not None] for runs in by_key.values()]
        between, df = pooled_between(groups)
        assumed = between is None
        if assumed:
            between = BETWEEN_PRIOR
        spread = 0
        for runs in by_key.values():
            peaks = [int(r.peak_bytes) for r in runs if r.measured and r.peak_bytes is not None]
            if len(peaks) >= 2:
                spread = max(spread, max(peaks) - min(peaks))
        noise = max(int(MEMORY_NOISE_FLOOR * ceiling), spread)
        cands: dict[str, Candidate] = {}
        for key, runs in by_key.items():
            ms = [m for r in runs if r.measured and (m := r.measurement) is not None]
            est = combine(ms, between) if ms else None
            cands[key] = Candidate(runs[0].point, runs, est, ceiling, noise)
        return cls(cands, ceiling, between, df, noise, list(records), assumed)

    # -- views --------------------------------------------------------------------------------------------
    def __iter__(self) -> Any:
        return iter(self.candidates.values())

    def get(self, point: Point) -> Candidate | None:
        return self.candidates.get(point.key)

    def get_key(self, key: str | None) -> Candidate | None:
        return self.candidates.get(key) if key else None

    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.feasible]

    def baseline(self) -> Candidate | None:
        """The hand-written recipe's point (the first baseline trial's), if it ran."""
        base = [r for r in self.records if r.is_baseline]
        ran = [r for r in base if r.ran]
        for r in ran or base:
            c = self.candidates.get(r.point.key)
            if c is not None:
                return c
        return None

    def baseline_record(self) -> TrialRecord | None:
        base = [r for r in self.records if r.is_baseline]
        ran = [r for r in base if r.ran]
        return (ran or base)[0] if (ran or base) else None

    # -- comparisons --------------------------------------------------------------------------------------------
    def shared_rounds(self, a: Candidate, b: Candidate) -> list[tuple[Measurement, Measurement]]:
        ra, rb = a.rounds(), b.rounds()
        return [(ra[k], rb[k]) for k in sorted(set(ra) & set(rb))]

    def compare(self, a: Candidate, b: Candidate, *, min_rounds: int = 2) -> Ratio:
        """A's tokens/s over B's with an interval: paired over the rounds they ran back to back (from
        ``min_rounds`` of them), else from the two combined estimates."""
        pairs = self.shared_rounds(a, b)
        if len(pairs) >= min_rounds:
            return paired_ratio(pairs, self.between, between_df=self.between_df)
        assert a.estimate is not None and b.estimate is not None
        return unpaired_ratio(a.estimate, b.estimate)

    def summary(self) -> Summary:
        """The noise level of the study's measurements, for the report."""
        singles = [m.rel_half for c in self.candidates.values() for m in c.measurements if not m.exact]
        within = statistics.median(singles) if singles else None
        if self.between_assumed:
            return Summary(None, 0, within, len(singles), [f"run-to-run noise assumed {BETWEEN_PRIOR:.0%}"] if singles else [])
        return Summary(self.between, self.between_df, within, len(singles))


def one_dimension_apart(a: Point, b: Point) -> list[Any]:
    """The dimensions in which two points differ."""
    from tuner.search.space import DIMENSIONS

    return [d for d in DIMENSIONS if a.get(d) != b.get(d)]
