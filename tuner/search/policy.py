"""Which measured configuration to recommend: a documented, changeable policy over the feasible points, by statistics.

Throughput and LoRA rank pull in different directions (a higher rank costs memory, which may force a smaller
micro batch or gradient checkpointing), and only the user can say how much speed a higher rank is worth. So
the search keeps both objectives and the choice is made afterwards, by one of these policies:

``balanced`` (default)
    The highest LoRA rank whose throughput is within ``--within`` (default 10%) of the best feasible
    throughput; among points with that rank, the fastest. "Rank is worth up to 10% of speed."
``throughput``
    The fastest feasible point, whatever its rank.
``quality``
    The highest feasible rank, and the fastest point at that rank: "speed only breaks ties".

Every figure compared is a point's estimate over all its runs (:mod:`tuner.search.candidates`), not one sample,
and the bar of ``balanced`` is set by the best point's estimate. Then one rule guards against choosing by
noise: **a choice gives way to a strictly cheaper neighbour it does not beat beyond noise** - a point that
differs in one dimension only, at a lower cost in that dimension (checkpointing off instead of on, a smaller
rank, less ZeRO communication or offload; see ``Dimension.cost``), measured and feasible, and whose tokens/s the
choice does not exceed with the whole 95% interval of their ratio. The rank is the policy's own objective under
``balanced`` and ``quality``, so there only the other dimensions count. For full and freeze tuning there is no
rank, and every policy picks the fastest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tuner.search.candidates import Candidate, Pool, one_dimension_apart
from tuner.search.records import TrialRecord
from tuner.search.space import DIMENSIONS, Dimension
from tuner.trial.stats import Ratio

POLICIES = ("balanced", "throughput", "quality")
DEFAULT_POLICY = "balanced"
DEFAULT_WITHIN = 0.10
#: Racing stops for a contender whose ratio to the choice is known to within this of 1 either way: a
#: difference that small does not change what a run costs, and no number of rounds would make it matter.
EQUIVALENCE = 0.02

POLICY_HELP = (
    "How to choose among feasible trials: 'balanced' = the highest LoRA rank within --within of the best "
    "tokens/s (fastest at that rank); 'throughput' = the fastest; 'quality' = the highest rank, fastest at it. "
    "A choice that does not beat a cheaper neighbour (checkpointing off, a smaller rank) beyond noise gives way to it."
)


@dataclass(frozen=True)
class Policy:
    name: str = DEFAULT_POLICY
    within: float = DEFAULT_WITHIN

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"unknown policy {self.name!r}: choose one of {', '.join(POLICIES)}")
        if not 0.0 <= self.within < 1.0:
            raise ValueError(f"--within must be a fraction in [0, 1), got {self.within}")

    def describe(self) -> str:
        if self.name == "balanced":
            return f"the highest LoRA rank within {self.within:.0%} of the best feasible tokens/s, fastest at that rank"
        if self.name == "throughput":
            return "the highest feasible tokens/s"
        return "the highest feasible LoRA rank, fastest at that rank"

    def cost_dimensions(self) -> list[Dimension]:
        """The dimensions in which a cheaper neighbour takes over a choice it is not beaten by."""
        return [d for d in DIMENSIONS if d.cost is not None and (self.name == "throughput" or d.field != "rank")]

    def same_class(self, a: Candidate, b: Candidate) -> bool:
        """Whether ``b`` would be chosen instead of ``a`` if it were faster: any point for throughput, a point of
        the same rank for the policies that pick the rank first."""
        return self.name == "throughput" or a.point.rank == b.point.rank


@dataclass(frozen=True)
class Comparison:
    """The choice against one measured neighbour (one dimension apart), as the report states it."""

    other: Candidate
    dimension: str  # the dimension's label
    ratio: Ratio  # choice / other
    verdict: str


@dataclass(frozen=True)
class Choice:
    record: Candidate
    best: Candidate  # the fastest feasible point (by estimate)
    baseline: Candidate | None
    policy: Policy
    explanation: str
    gain: Ratio | None = None  # choice / baseline, with its interval
    comparisons: list[Comparison] = field(default_factory=list)
    gave_way: list[str] = field(default_factory=list)  # earlier picks that gave way to a cheaper neighbour

    @property
    def gain_over_baseline(self) -> float | None:
        """Tokens/s of the choice over the baseline's; None when the baseline did not run feasibly."""
        return self.gain.center if self.gain is not None else None


def as_pool(data: Sequence[TrialRecord] | Pool) -> Pool:
    return data if isinstance(data, Pool) else Pool.build(list(data))


def feasible(data: Sequence[TrialRecord] | Pool) -> list[Candidate]:
    return as_pool(data).feasible()


def _fastest(cands: Sequence[Candidate]) -> Candidate:
    # ties: lower peak memory, then the earlier trial
    return max(cands, key=lambda c: (c.tokens_per_s or 0.0, -(c.peak_bytes or 0), -c.number))


def baseline_of(data: Sequence[TrialRecord] | Pool) -> Candidate | TrialRecord | None:
    """The hand-written recipe: its point's candidate when it ran, else its record (pruned, interrupted)."""
    pool = as_pool(data)
    return pool.baseline() or pool.baseline_record()


def pareto_front(data: Sequence[TrialRecord] | Pool) -> list[Candidate]:
    """Feasible points no other feasible point beats on both tokens/s and rank, fastest first."""
    cands = feasible(data)
    front: list[Candidate] = []
    for c in cands:
        t, k = c.tokens_per_s or 0.0, c.point.rank
        dominated = any(
            (o.tokens_per_s or 0.0) >= t and o.point.rank >= k and ((o.tokens_per_s or 0.0) > t or o.point.rank > k)
            for o in cands
        )
        if not dominated:
            front.append(c)
    seen: set[tuple[float, int]] = set()
    unique = []
    for c in sorted(front, key=lambda c: (-(c.tokens_per_s or 0.0), -c.point.rank, c.number)):
        if (c.tokens_per_s or 0.0, c.point.rank) not in seen:
            seen.add((c.tokens_per_s or 0.0, c.point.rank))
            unique.append(c)
    return unique


def _rule(cands: Sequence[Candidate], policy: Policy) -> tuple[Candidate, Candidate, str]:
    """(pick, best, why) by the policy's rule on the estimates."""
    best = _fastest(cands)
    best_tps = best.tokens_per_s or 0.0
    if policy.name == "throughput":
        return best, best, f"trial #{best.number} is the fastest feasible point ({best.interval_text()} tokens/s)"
    if policy.name == "quality":
        top = max(c.point.rank for c in cands)
        pick = _fastest([c for c in cands if c.point.rank == top])
        return pick, best, f"rank {top} is the highest feasible rank; trial #{pick.number} is the fastest at it"
    floor = (1.0 - policy.within) * best_tps
    near = [c for c in cands if (c.tokens_per_s or 0.0) >= floor]
    top = max(c.point.rank for c in near)
    pick = _fastest([c for c in near if c.point.rank == top])
    if pick is best:
        return pick, best, (f"trial #{pick.number} is the fastest feasible point ({best.interval_text()} tokens/s), and "
                            f"no higher rank is within {policy.within:.0%} of it")  # fmt: skip
    share = (pick.tokens_per_s or 0.0) / best_tps if best_tps else 0.0
    return pick, best, (f"rank {top} is the highest rank within {policy.within:.0%} of the best estimate (trial "
                        f"#{best.number}, {best.interval_text()} tokens/s); trial #{pick.number} reaches {share:.1%} of it")  # fmt: skip


def cheaper_neighbours(pick: Candidate, cands: Sequence[Candidate], policy: Policy) -> list[tuple[Dimension, Candidate]]:
    """Measured feasible points one dimension from ``pick``, at a strictly lower cost in that dimension."""
    dims = policy.cost_dimensions()
    out = []
    for c in cands:
        diff = one_dimension_apart(pick.point, c.point)
        if len(diff) != 1 or diff[0] not in dims or diff[0].cost is None:
            continue
        d = diff[0]
        if d.cost(c.point.get(d)) < d.cost(pick.point.get(d)):
            out.append((d, c))
    return out


def _verdict(pick: Candidate, other: Candidate, dim: Dimension, r: Ratio, policy: Policy) -> str:
    """Why the choice stands against a neighbour, in words."""
    mine, theirs = pick.point.get(dim), other.point.get(dim)
    rank_rule = dim.field == "rank" and policy.name != "throughput"
    if r.a_faster:
        return f"the choice is faster beyond noise ({r.center - 1:+.1%})"
    if r.b_faster:
        if rank_rule:
            return f"faster by {1 / r.center - 1:.1%} beyond noise, but the policy keeps the higher rank"
        return f"faster by {1 / r.center - 1:.1%} beyond noise"
    if rank_rule:
        return "not distinguishable within noise; the policy keeps the higher rank"
    if dim.cost is not None and dim.cost(mine) < dim.cost(theirs):
        return f"not distinguishable within noise; the choice is the cheaper one ({dim.label} {dim.show(mine)})"
    return "not distinguishable within noise"


def choose(data: Sequence[TrialRecord] | Pool, policy: Policy | None = None) -> Choice | None:
    """The recommended point under ``policy``, or None when no point is feasible."""
    policy = policy or Policy()
    pool = as_pool(data)
    cands = pool.feasible()
    if not cands:
        return None
    pick, best, why = _rule(cands, policy)
    gave_way: list[str] = []
    while True:
        options = []
        for dim, c in cheaper_neighbours(pick, cands, policy):
            r = pool.compare(pick, c)
            if not r.a_faster:
                options.append((dim, c, r))
        if not options:
            break
        dim, c, r = max(options, key=lambda o: (o[1].tokens_per_s or 0.0, -o[1].number))
        gave_way.append(
            f"trial #{pick.number} gave way to trial #{c.number} ({dim.label} {dim.show(c.point.get(dim))}): it is not "
            f"faster beyond noise (ratio {r.text()})"
        )
        pick = c
    if gave_way:
        why += "; " + "; ".join(gave_way)
    comparisons = []
    for c in pool:
        if c is pick or c.estimate is None or pick.estimate is None:
            continue
        diff = one_dimension_apart(pick.point, c.point)
        if len(diff) != 1 or not c.feasible:
            continue
        r = pool.compare(pick, c)
        comparisons.append(Comparison(c, diff[0].label, r, _verdict(pick, c, diff[0], r, policy)))
    comparisons.sort(key=lambda x: x.other.number)
    base = pool.baseline()
    gain = None
    if base is not None and base.feasible and pick.estimate is not None:
        gain = Ratio(1.0, 1.0, 1.0, 0, "the choice is the baseline") if base is pick else pool.compare(pick, base, min_rounds=1)
    return Choice(pick, best, base, policy, why, gain, comparisons, gave_way)


# -- racing: which points the data cannot tell apart yet ------------------------------------------------------------


def finalists(data: Sequence[TrialRecord] | Pool, policy: Policy, limit: int = 3) -> list[Candidate]:
    """The choice and the points the measurements cannot yet separate from it, closest first, at most ``limit``.

    A contender is a feasible point the policy would choose instead if it were faster (see
    :meth:`Policy.same_class`; this includes the cheaper neighbours the choice must beat) whose ratio to the
    choice has an interval containing 1, unless that interval is within :data:`EQUIVALENCE` of 1 both ways. Under ``balanced``, the best point is one too when the choice's
    share of it could be on either side of the bar, and so is a higher rank whose share straddles the bar.
    """
    pool = as_pool(data)
    choice = choose(pool, policy)
    if choice is None:
        return []
    pick = choice.record
    scored: list[tuple[float, Candidate]] = []
    for c in pool.feasible():
        if c is pick:
            continue
        r = pool.compare(pick, c)
        equivalent = r.lo >= 1 / (1 + EQUIVALENCE) and r.hi <= 1 + EQUIVALENCE
        if policy.same_class(pick, c) and not r.separated and not equivalent:
            scored.append((abs(r.center - 1), c))
    if policy.name == "balanced" and choice.best is not pick:
        bar = 1 / (1 - policy.within)  # best / pick must stay below this for the pick to qualify
        for c in pool.feasible():
            if c.point.rank < pick.point.rank:
                continue
            r = pool.compare(choice.best, c)
            if r.lo <= bar <= r.hi and all(c is not s for _, s in scored):
                scored.append((abs(r.center - bar), c))
        if all(choice.best is not s for _, s in scored):
            r = pool.compare(choice.best, pick)
            if r.lo <= bar <= r.hi:
                scored.append((abs(r.center - bar), choice.best))
    scored.sort(key=lambda x: (x[0], x[1].number))
    return [pick] + [c for _, c in scored[: max(0, limit - 1)]]
