"""The planner: which point to measure next when the obvious beats chance, and the answer to a repeated proposal.

A study of a few dozen trials cannot afford to find the obvious by chance, so the planner goes before the
sampler:

1. the **baseline**, the hand-written recipe (batch 1, accumulation to the global batch, checkpointing on), so the
   report can always state the gain over it;
2. **re-checks** of points whose only run was over the ceiling by less than the memory noise (a marginal point
   prunes nothing until a second run settles it);
3. **retries** of trials a Ctrl-C or a crash interrupted;
4. the **boundary** of each memory regime (every combination of the dimensions other than micro batch and rank,
   the ones expected to be fastest first) at the highest rank: the largest micro batch the calibrated estimator
   says fits, stepping down when a trial runs out of memory;
5. the untried **cheaper neighbours** of the current choice (checkpointing off at the same batch; a smaller rank
   under the throughput policy), so the rule "a choice gives way to a cheaper neighbour it does not beat" has the
   measurement it needs; then the boundaries at the lowest rank, where it frees memory for a larger batch;
6. then the **sampler** (multi-objective TPE with constraints) and, in turns with it or when it keeps proposing
   points already measured, the untried **neighbours** of the best points.

A proposal of a point already measured or pruned is **answered** from what is known (:meth:`Planner.answer`):
the trial is told that point's values and constraints and marked as a repeat, so Optuna learns nothing false and
no trial is recorded as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tuner.search.candidates import Pool
from tuner.search.policy import Policy, choose
from tuner.search.prune import Pruner
from tuner.search.records import DUPLICATE, INTERRUPTED, LOST, PRUNED, TrialRecord
from tuner.search.space import REGIME_DIMENSIONS, Point, SearchSpace

#: Boundary probes per regime and rank before the sampler takes over.
MAX_BOUNDARY_PROBES = 4


@dataclass(frozen=True)
class Answer:
    """What Optuna is told for a repeated proposal: the earlier trial's values and constraints."""

    tokens_per_s: float
    memory: float  # the memory constraint: peak / ceiling - 1 (<= 0 feasible)
    failure: float  # 1 when the point failed for another reason


class Planner:
    def __init__(self, space: SearchSpace, pruner: Pruner, ceiling_bytes: int, baseline: Point,
                 policy: Policy | None = None) -> None:  # fmt: skip
        self.space = space
        self.pruner = pruner
        self.ceiling_bytes = ceiling_bytes
        self.baseline = baseline
        self.policy = policy or Policy()

    # -- the planned points ----------------------------------------------------------------------------------
    def regimes(self) -> list[dict[str, object]]:
        """Every combination of the dimensions other than micro batch and rank, the expected fastest first."""
        combos: list[dict[str, object]] = [{}]
        for dim in reversed(REGIME_DIMENSIONS):
            values = sorted(self.space.values(dim), key=dim.probe_first)
            combos = [{**c, dim.field: v} for c in combos for v in values]
        return combos

    @staticmethod
    def _in_regime(p: Point, regime: dict[str, object], rank: int) -> bool:
        return p.rank == rank and all(getattr(p, f) == v for f, v in regime.items())

    def baseline_pending(self, records: Sequence[TrialRecord], taken: set[str]) -> bool:
        """The baseline has not run, is not running, and was not interrupted (a retry runs that). A repeat does not
        count: when two workers claim the baseline at once, both may step back, and it must still run."""
        return not any(r.origin == "baseline" and r.fate != DUPLICATE for r in records) and self.baseline.key not in taken

    def rechecks(self, records: Sequence[TrialRecord], pool: Pool, busy: set[str]) -> list[Point]:
        """Marginal points (one run, over the ceiling by no more than the memory noise) not re-checked yet."""
        rechecked = {r.point.key for r in records if r.origin == "recheck"}
        return [c.point for c in pool if c.status == "marginal" and c.key not in rechecked and c.key not in busy]

    def plan(self, records: Sequence[TrialRecord], pool: Pool, remaining: Sequence[Point], taken: set[str],
             busy: set[str]) -> tuple[Point, str] | None:  # fmt: skip
        """The next planned point with its origin, or None to let the sampler (or a neighbour) choose.

        ``taken``: points that ran, are running, or were lost twice; ``busy``: points with a live trial now.
        """
        rem = {p.key for p in remaining}
        if self.baseline_pending(records, taken):
            return self.baseline, "baseline"
        for p in self.rechecks(records, pool, busy):
            return p, "recheck"
        for r in records:
            if r.fate == INTERRUPTED and r.point.key not in taken and r.point.key in rem:
                return r.point, "retry"
        ranks = [max(self.space.ranks)]
        if min(self.space.ranks) != ranks[0]:
            ranks.append(min(self.space.ranks))
        for rank in ranks:
            if rank != ranks[0]:
                # before a lower rank's boundary: what the current choice must beat to stand
                q = self.cheaper_neighbour(pool, remaining)
                if q is not None:
                    return q, "neighbor"
            for regime in self.regimes():
                pick = self._climb(records, pool, remaining, regime, rank, top=rank == ranks[0])
                if pick is not None:
                    return pick, "boundary"
        q = self.cheaper_neighbour(pool, remaining)
        return (q, "neighbor") if q is not None else None

    def fits(self, p: Point) -> bool:
        v = self.pruner.predict(p).value
        return v is None or v <= self.ceiling_bytes

    def cheaper_neighbour(self, pool: Pool, remaining: Sequence[Point]) -> Point | None:
        """An untried point one dimension from the current choice at a lower cost there (checkpointing off, a
        smaller rank under the throughput policy), predicted to fit: the policy needs it measured to know
        whether the choice beats it."""
        choice = choose(pool, self.policy)
        if choice is None:
            return None
        rem = {p.key for p in remaining}
        for _, q in self.space.cheaper_neighbours(choice.record.point, self.policy.cost_dimensions()):
            if q.key in rem and self.fits(q):
                return q
        return None

    def _climb(self, records: Sequence[TrialRecord], pool: Pool, remaining: Sequence[Point],
               regime: dict[str, object], rank: int, *, top: bool) -> Point | None:  # fmt: skip
        """The next boundary probe of one regime at one rank: the largest micro batch predicted to fit above the
        largest measured to fit, or None when that boundary is known."""
        top_rank = max(self.space.ranks)
        mine = [c for c in pool if self._in_regime(c.point, regime, rank)]
        probes = sum(1 for r in records if r.origin == "boundary" and r.ran and self._in_regime(r.point, regime, rank))
        if probes >= MAX_BOUNDARY_PROBES:
            return None
        floor = max((c.point.micro for c in mine if c.feasible), default=0)
        if not top:
            # A lower rank only matters where it frees enough memory for a larger batch than the top rank got.
            at_top = [c for c in pool if self._in_regime(c.point, regime, top_rank)]
            best_top = max((c.point.micro for c in at_top if c.feasible), default=0)
            floor = max(floor, best_top)
            if best_top == 0 and not at_top:
                return None  # the top rank of this regime is still being probed
        cands = sorted((p for p in remaining if self._in_regime(p, regime, rank) and p.micro > floor), key=lambda p: p.micro)
        if not cands:
            return None
        preds = [self.pruner.predict(p).value for p in cands]
        if all(v is None for v in preds):
            return cands[len(cands) // 2]  # no estimator: bisect between what fitted and what did not
        fitting = [p for p, v in zip(cands, preds, strict=True) if v is not None and v <= self.ceiling_bytes]
        if fitting:
            return fitting[-1]
        # Predicted over, but not by enough to be pruned: the estimate is uncertain there, so one measurement
        # settles it (and, over or not, calibrates the estimator for this regime).
        return cands[0]

    def neighbour(self, pool: Pool, remaining: Sequence[Point]) -> Point | None:
        """An untried point one step from the fastest points (along any dimension), those the calibrated
        estimator expects to fit first."""
        if not remaining:
            return None
        rem = {p.key: p for p in remaining}
        best = sorted(pool.feasible(), key=lambda c: -(c.tokens_per_s or 0.0))[:4]
        steps = [rem[q.key] for c in best for q in self.space.neighbours(c.point) if q.key in rem]
        fits = self.fits
        for q in steps:
            if fits(q):
                return q
        if steps:
            return steps[0]
        # Nothing next to a good point: the untried point predicted to use the most memory that still fits.
        return max(remaining, key=lambda p: (fits(p), p.micro, p.rank))

    @staticmethod
    def exploit_turn(records: Sequence[TrialRecord]) -> bool:
        """After the planned points, alternate the sampler (explore) with neighbours of the best (exploit)."""
        sampled = sum(1 for r in records if r.ran and r.origin == "sampler")
        local = sum(1 for r in records if r.ran and r.origin == "neighbor")
        return sampled > local

    # -- repeated proposals -------------------------------------------------------------------------------------
    def answer(self, prior: TrialRecord, pool: Pool) -> Answer | None:
        """The values to tell Optuna for a proposal of a point already decided: its measurement, the estimate a
        pruned point was pruned on, or a failure; None while its trial is still running elsewhere."""
        c = pool.get(prior.point)
        if prior.fate == LOST:
            return Answer(0.0, 0.0, 1.0)
        if c is not None and c.peak_bytes is not None and c.tokens_per_s is not None:
            return Answer(c.tokens_per_s, c.peak_bytes / self.ceiling_bytes - 1, 0.0)
        if prior.fate == PRUNED:
            est = prior.calibrated_bytes or prior.predicted_bytes
            return Answer(0.0, max((est / self.ceiling_bytes - 1) if est else 0.0, 0.05), 0.0)
        if c is not None and c.status == "oom":
            return Answer(0.0, 0.05, 0.0)
        if prior.ran or (c is not None):
            return Answer(0.0, 0.0, 1.0)
        return None
