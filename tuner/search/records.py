"""One trial as the policy, the live view and the report see it, read back from an Optuna trial's attributes.

Everything a trial specified and measured is stored in the Optuna trial's ``user_attrs`` (JSON), so a study is
self-describing: a resumed run, a worker on another node, or optuna-dashboard all see the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.search.space import Point
from tuner.trial.spec import TrialResult, TrialSpec
from tuner.trial.stats import Measurement

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: Fates beyond the trial runner's statuses: decided without running anything, or never finished.
PRUNED = "pruned"
DUPLICATE = "duplicate"
INTERRUPTED = "interrupted"
RUNNING = "running"
#: A point whose worker died twice while running it: not retried again (it may be what kills the worker).
LOST = "lost"
#: The user attr another worker writes before it closes a trial whose worker stopped (see tuner.search.heartbeat).
LOST_ATTR = "lost"

#: Fates of trials that ran a process.
RAN = ("ok", "oom", "over_budget", "crash", "timeout", "error")

#: Origins of re-measurements: a point measured again to race it against others (``race``), to measure the
#: gain of the choice over the baseline back to back (``gain``), or because its peak was over the ceiling by
#: less than the memory noise (``recheck``). ``race`` and ``gain`` runs have their own budget (--race-trials);
#: the others count against --n-trials.
REMEASURE = ("race", "gain", "recheck")
FINAL_PHASE = ("race", "gain")

FATE_TEXT = {
    "ok": "feasible",
    "oom": "out of memory",
    "over_budget": "over the ceiling",
    "crash": "crashed",
    "timeout": "timed out",
    "error": "error",
    PRUNED: "pruned (not run)",
    DUPLICATE: "repeat (not run)",
    INTERRUPTED: "interrupted",
    RUNNING: "running",
    LOST: "failed: its worker died twice",
}


@dataclass
class TrialRecord:
    number: int
    point: Point
    fate: str
    reason: str = ""
    origin: str = ""  # baseline | boundary | sampler | neighbor | retry | recheck | race | gain
    spec: TrialSpec | None = None
    result: TrialResult | None = None
    tokens_per_s: float | None = None
    peak_bytes: int | None = None
    predicted_bytes: int | None = None  # the estimator's raw number
    calibrated_bytes: int | None = None  # after calibration, when the trial was decided
    prediction_basis: str = ""
    ceiling_bytes: int = 0
    grad_accum: int | None = None
    wall_s: float = 0.0
    worker: str = ""
    duplicate_of: int | None = None
    lost_by: str = ""  # the worker that stopped while running it (see ``lost``)
    round_id: int | None = None  # race and gain runs: the round whose runs ran back to back

    @property
    def measurement(self) -> Measurement | None:
        """This run's tokens/s with its interval (exact for a result without per-step samples)."""
        if self.tokens_per_s is None:
            return None
        if self.result is not None and self.spec is not None and self.result.throughput:
            m = self.result.measurement(self.spec)
            if m is not None:
                return m
        return Measurement.exactly(self.tokens_per_s)

    @property
    def measured(self) -> bool:
        """Ran to the end with a peak and a throughput (feasible or over the ceiling)."""
        return self.fate in ("ok", "over_budget") and self.tokens_per_s is not None and self.peak_bytes is not None

    @property
    def feasible(self) -> bool:
        """Measured, and its measured peak within the ceiling."""
        return (
            self.fate == "ok"
            and self.tokens_per_s is not None
            and self.peak_bytes is not None
            and self.peak_bytes <= self.ceiling_bytes
        )

    @property
    def ran(self) -> bool:
        return self.fate in RAN

    @property
    def lost(self) -> bool:
        """Closed by another worker because the one running it stopped (a kill, a dead node)."""
        return self.fate == LOST or (self.fate == INTERRUPTED and self.lost_by != "")

    @property
    def is_baseline(self) -> bool:
        return self.origin == "baseline"

    @property
    def peak_fraction(self) -> float | None:
        if self.peak_bytes is None or not self.ceiling_bytes:
            return None
        return self.peak_bytes / self.ceiling_bytes

    @property
    def fate_text(self) -> str:
        return FATE_TEXT.get(self.fate, self.fate)

    # -- storage -------------------------------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        """The user_attrs written for this record (JSON-ready): the facts people filter on in optuna-dashboard as
        their own keys, everything else in ``detail`` (each key is a storage round trip)."""
        return {
            "point": self.point.to_dict(),
            "fate": self.fate,
            "origin": self.origin,
            "worker": self.worker,
            "tokens_per_s": self.tokens_per_s,
            "peak_bytes": self.peak_bytes,
            "reason": self.reason,
            "detail": {
                "spec": self.spec.to_dict() if self.spec else None,
                "result": self.result.to_dict() if self.result else None,
                "predicted_bytes": self.predicted_bytes,
                "calibrated_bytes": self.calibrated_bytes,
                "prediction_basis": self.prediction_basis,
                "ceiling_bytes": self.ceiling_bytes,
                "grad_accum": self.grad_accum,
                "wall_s": self.wall_s,
                "duplicate_of": self.duplicate_of,
                "round_id": self.round_id,
            },
        }

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord | None:
        """The record of an Optuna trial written by cfgtune (None for a trial with no point yet)."""
        if "point" not in trial.user_attrs:
            return None
        a = {**(trial.user_attrs.get("detail") or {}), **trial.user_attrs}
        fate = a.get("fate") or ""
        state = trial.state.name
        if state == "RUNNING":
            fate = RUNNING
        reason = a.get("reason") or ""
        lost_by = ""
        if state == "FAIL" and fate in ("", RUNNING):
            fate = INTERRUPTED  # a Ctrl-C, or a process that died and was closed on --resume
            lost = trial.user_attrs.get(LOST_ATTR)
            if isinstance(lost, dict):  # closed by another worker because the one running it stopped
                fate = LOST if lost.get("final") else INTERRUPTED
                reason = str(lost.get("reason") or reason)
                lost_by = str(lost.get("worker") or "?")
        elif not fate:
            fate = "error"
        spec = result = None
        try:
            spec = TrialSpec.from_dict(a["spec"]) if a.get("spec") else None
        except (TypeError, KeyError, ValueError):
            spec = None
        try:
            result = TrialResult.from_dict(a["result"]) if a.get("result") else None
        except (TypeError, KeyError, ValueError):
            result = None
        return cls(
            number=trial.number,
            point=Point.from_dict(a["point"]),
            fate=fate,
            reason=reason,
            origin=a.get("origin") or "",
            spec=spec,
            result=result,
            tokens_per_s=a.get("tokens_per_s"),
            peak_bytes=a.get("peak_bytes"),
            predicted_bytes=a.get("predicted_bytes"),
            calibrated_bytes=a.get("calibrated_bytes"),
            prediction_basis=a.get("prediction_basis") or "",
            ceiling_bytes=int(a.get("ceiling_bytes") or 0),
            grad_accum=a.get("grad_accum"),
            wall_s=float(a.get("wall_s") or 0.0),
            worker=a.get("worker") or "",
            duplicate_of=a.get("duplicate_of"),
            lost_by=lost_by,
            round_id=a.get("round_id"),
        )


def records_of(trials: Sequence[Any]) -> list[TrialRecord]:
    """The records of the trials cfgtune wrote (a trial with no point yet has none)."""
    return [r for r in map(TrialRecord.from_trial, trials) if r is not None]
