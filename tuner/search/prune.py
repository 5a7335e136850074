"""Skip points that cannot fit before they cost a trial: the memory estimator, calibrated as trials come in.

Two independent reasons prune a point, both recorded on the trial so the report can show them:

- **Dominance** (no estimator needed): a point that needs at least as much memory as one that was measured
  over the ceiling (bigger micro batch, higher rank, checkpointing or Liger off, same strategy) is over too.
- **Estimate**: the estimator's per-device peak, calibrated by the trials measured so far, is *far* over the
  ceiling. Pruning wrongly loses a good configuration while running a doomed trial only costs its time, so a
  margin is left on top of the calibrated estimate, wide while little is measured and narrow once the
  estimator is fitted to the point's regime (see :class:`Calibration` for how measurements correct it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tuner.search.sizes import format_bytes
from tuner.search.space import Point, SearchSpace, regime_of
from tuner.trial.spec import TrialSpec

#: A point is pruned when its calibrated estimate exceeds the ceiling by this fraction, which shrinks as the
#: calibration gets better: a line fitted to two or more measurements of the point's own regime ...
PRUNE_MARGIN = 0.10
#: ... one measured ratio (of its regime, or the median of other regimes') ...
PRUNE_MARGIN_RATIO = 0.25
#: ... or nothing measured yet to calibrate the estimator against.
PRUNE_MARGIN_UNCALIBRATED = 0.35

#: A fitted calibration line's slope is kept within these bounds (estimated bytes -> measured bytes).
SLOPE_BOUNDS = (0.2, 5.0)

#: Trial statuses that mean "this point needs more memory than the ceiling".
OVER_STATUSES = ("oom", "over_budget")

Estimator = Callable[[TrialSpec], "int | None"]


@dataclass(frozen=True)
class Observation:
    """A measured trial, as the pruner sees it."""

    number: int
    point: Point
    status: str  # ok | marginal (over by less than the memory noise: prunes nothing) | over_budget | oom | ...
    predicted: int | None  # the raw estimate, bytes per device
    measured: int | None  # the measured peak, bytes per device


@dataclass(frozen=True)
class Prediction:
    raw: int | None  # the estimator's number
    calibrated: int | None  # after the corrections learned from measured trials
    basis: str  # how the calibrated number was obtained, for the report
    margin: float = PRUNE_MARGIN_UNCALIBRATED  # how far over the ceiling it must be to prune: its uncertainty

    @property
    def value(self) -> int | None:
        return self.calibrated if self.calibrated is not None else self.raw


@dataclass
class Calibration:
    """What measured trials taught about the estimator, per memory regime (checkpointing, Liger, strategy).

    Within a regime the estimator's error is mostly smooth in the size of the run, so with two or more measured
    trials the correction is a line ``measured = a + b × estimated`` through the (up to three) measurements
    nearest to the point; it gets both a missed fixed cost (a CPU process's runtime, a CUDA context) and a wrong
    slope (activations) right. With one measurement it is that trial's ratio, and with none in the regime the
    median ratio over the other regimes.
    """

    pairs: list[tuple[Point, int, int]] = field(default_factory=list)  # (point, estimated, measured)

    def add(self, point: Point, predicted: int | None, measured: int | None) -> None:
        if predicted and measured and predicted > 0 and measured > 0:
            self.pairs.append((point, predicted, measured))

    def _regime(self, point: Point) -> list[tuple[int, int]]:
        return [(p, m) for q, p, m in self.pairs if regime_of(q) == regime_of(point)]

    def apply(self, point: Point, raw: int) -> tuple[int, str, float]:
        same = self._regime(point)
        if len({p for p, _ in same}) >= 2:
            near = sorted(same, key=lambda pm: abs(math.log(pm[0] / raw)))[:3]
            if len({p for p, _ in near}) < 2:
                near = sorted(same, key=lambda pm: abs(math.log(pm[0] / raw)))
            xs, ys = [p for p, _ in near], [m for _, m in near]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            var = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 1.0
            slope = min(max(slope, SLOPE_BOUNDS[0]), SLOPE_BOUNDS[1])
            value = my + slope * (raw - mx)
            # never below what the nearest measurement's ratio says at half strength: a line through two noisy
            # points must not predict an absurdly small peak far from them
            floor = raw * min(m / p for p, m in near) * 0.5
            return int(max(value, floor, 1)), f"fitted to {len(near)} measured trial(s) of this regime", PRUNE_MARGIN
        if same:
            p, m = same[0]
            return int(raw * m / p), f"scaled by the measured ratio {m / p:.2f} of this regime", PRUNE_MARGIN_RATIO
        if self.pairs:
            ratios = sorted(m / p for _, p, m in self.pairs)
            r = ratios[len(ratios) // 2]
            return int(raw * r), f"scaled by the median measured ratio {r:.2f} of other regimes", PRUNE_MARGIN_RATIO
        return raw, "estimated (not yet calibrated)", PRUNE_MARGIN_UNCALIBRATED

    @property
    def summary(self) -> str:
        if not self.pairs:
            return "no measured trial to calibrate the estimator against"
        ratios = [m / p for _, p, m in self.pairs]
        return (
            f"measured/estimated peak over {len(ratios)} trial(s): min {min(ratios):.2f}, "
            f"max {max(ratios):.2f}, mean {sum(ratios) / len(ratios):.2f}"
        )


class Pruner:
    """Decides, before a trial runs, whether its point is certain enough to exceed the ceiling to skip it."""

    def __init__(self, space: SearchSpace, ceiling_bytes: int, estimator: Estimator | None = None) -> None:
        self.space = space
        self.ceiling = ceiling_bytes
        self.estimator = estimator
        self.calibration = Calibration()
        self.over: list[Observation] = []  # measured over the ceiling
        self.fit: list[Observation] = []  # measured within it
        self._raw_cache: dict[str, int | None] = {}

    def observe(self, observations: Iterable[Observation]) -> None:
        """Replace what is known with these measured trials (the study's history, re-read before each ask)."""
        self.calibration = Calibration()
        self.over = []
        self.fit = []
        for o in observations:
            if o.status == "ok":
                self.calibration.add(o.point, o.predicted, o.measured)
                if o.measured is not None and o.measured <= self.ceiling:
                    self.fit.append(o)
            elif o.status in OVER_STATUSES:
                self.over.append(o)
            if o.status in ("over_budget", "marginal"):  # the peak was measured, only the verdict differs
                self.calibration.add(o.point, o.predicted, o.measured)

    def raw_estimate(self, point: Point) -> int | None:
        if self.estimator is None:
            return None
        if point.key not in self._raw_cache:
            try:
                value = self.estimator(self.space.spec(point))
            except Exception:  # noqa: BLE001 - an estimator bug must not stop the search; the trial decides
                value = None
            self._raw_cache[point.key] = int(value) if value else None
        return self._raw_cache[point.key]

    def known_bound(self, point: Point) -> Observation | None:
        """The measured trial with the smallest peak that needs at least this point's memory and fitted."""
        cover = [o for o in self.fit if o.point.needs_at_least_as_much_memory_as(point)]
        return min(cover, key=lambda o: o.measured or 0) if cover else None

    def predict(self, point: Point) -> Prediction:
        raw = self.raw_estimate(point)
        if raw is None:
            return Prediction(None, None, "no estimate")
        calibrated, basis, margin = self.calibration.apply(point, raw)
        bound = self.known_bound(point)
        if bound is not None and bound.measured is not None and calibrated > bound.measured:
            # A measurement beats a model: this point needs no more than trial #n, which fitted.
            calibrated, basis = bound.measured, f"at most trial #{bound.number}'s measured peak (it needs no less memory)"
        return Prediction(raw, calibrated, basis, margin)

    def reason(self, point: Point) -> str | None:
        """Why this point should not run, or None when it should."""
        for o in self.over:
            if point.needs_at_least_as_much_memory_as(o.point):
                what = "ran out of memory" if o.status == "oom" else "exceeded the ceiling"
                return f"pruned: needs at least the memory of trial #{o.number} ({o.point.key}), which {what}"
        if self.known_bound(point) is not None:
            return None  # a point needing at least as much memory fitted
        pred = self.predict(point)
        if pred.calibrated is None:
            return None
        if pred.calibrated > self.ceiling * (1 + pred.margin):
            return (
                f"pruned by estimate: predicted {format_bytes(pred.calibrated)} > ceiling {format_bytes(self.ceiling)}"
                f" ({pred.basis})"
            )
        return None


_ATTENTION = {"sdpa": "sdpa", "eager": "eager", "flash_attention_2": "fa2", "flash_attention_3": "fa3"}


def setup_of(spec: TrialSpec) -> object:
    """The estimator's view of a trial: a :class:`tuner.memory.TrainSetup` with the same knobs."""
    from tuner.memory import TrainSetup

    target = tuple(t.strip() for t in str(spec.lora_target or "all").split(",") if t.strip()) or ("all",)
    return TrainSetup(
        arch=spec.arch,
        finetuning_type=spec.finetuning_type,
        lora_rank=max(1, int(spec.lora_rank)),
        lora_target=target,
        lora_dropout=spec.lora_dropout,
        use_dora=spec.use_dora,
        additional_target=spec.additional_target_names,
        upcast_layernorm=spec.upcast_layernorm,
        freeze_trainable_layers=spec.freeze_trainable_layers,
        quantization_bit=spec.quantization_bit,
        batch_size=spec.per_device_train_batch_size,
        cutoff_len=spec.cutoff_len,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        gradient_checkpointing=spec.gradient_checkpointing,
        attention=_ATTENTION.get(spec.attn_implementation, "sdpa"),
        liger=spec.liger,
        optim=spec.optim,
        precision=spec.precision,
        zero_stage=spec.zero_stage,
        offload_optimizer="cpu" if spec.offload_optimizer else None,
        offload_param="cpu" if spec.offload_param else None,
        world_size=spec.world_size,
    )


def estimate_peak(spec: TrialSpec) -> int | None:
    """The estimator's per-device peak for a trial, in bytes (None when it cannot size this setup)."""
    try:
        from tuner.memory import estimate
    except ImportError:  # pragma: no cover - the estimator ships with the package
        return None
    return int(estimate(setup_of(spec)).peak_bytes)  # type: ignore[arg-type]
