"""The trial loop of `cfgtune auto` and `cfgtune worker`: explore, then race the finalists, then measure the gain.

Objectives: tokens/s (maximise) and, for LoRA, the rank (maximise) - rank is a quality choice, so it is kept
as a second objective and traded against speed only by the selection policy afterwards. Feasibility is an
Optuna constraint (``trial.set_constraint``): ``memory = peak / ceiling - 1`` and ``failure = 1`` for a trial
that crashed, hung or errored. Infeasible trials are COMPLETE, so the sampler learns where the memory boundary
is; only a Ctrl-C, a lost worker, or two workers claiming one point at once leave a FAIL trial.

**Exploration.** Each turn asks the planner (:mod:`tuner.search.planner`) for a point, else the sampler. Points
the pruner rules out (:mod:`tuner.search.prune`) are recorded as infeasible trials without running; a proposal
of a point already decided is answered with what is known (a repeat). Neither counts against ``--n-trials``,
which counts the exploration trials of the whole study that ran a process (re-checks of marginal peaks
included), so ``--resume`` continues to the same total and several workers sharing a study stop together.

**Racing** (the process that writes the result only). A single run of a point is a sample, so before choosing,
the points the measurements cannot yet tell apart from the policy's choice (:func:`tuner.search.policy.finalists`)
are measured again, interleaved: round 1 runs A B C, round 2 B C A, ... After each round the finalists that
are now separated from the choice drop out; racing stops when one is left or ``--race-trials`` is spent. Then the
choice and the baseline run back to back (choice, baseline; baseline, choice; ...) so the gain over the
hand-written recipe is a paired ratio with an interval, not two samples taken minutes apart. Results without a
spread (no per-step samples) need neither.

Several workers (``cfgtune worker``, on other nodes) share one study through its storage. Two rules keep them
consistent (docs/distributed.md):

- a worker **claims** a point by writing it on its RUNNING trial, then reads the study again; when another live
  trial holds the same point it records its own as a repeat instead of running it (both may step back; neither
  runs twice), so no point runs twice. ``--n-trials`` counts the other workers' RUNNING trials, so a study stops
  at N, or at most N + (workers - 1) when several workers start their last trials at the same moment;
- each RUNNING trial carries a heartbeat (:mod:`tuner.search.heartbeat`); :mod:`tuner.search.recovery` closes the
  trials of workers that stopped beating, and the planner retries such a point once.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.search.candidates import Pool
from tuner.search.heartbeat import HEARTBEAT_ATTR, Heartbeat, beat_value, interval_from_env
from tuner.search.planner import Answer, Planner
from tuner.search.policy import Policy, choose, finalists
from tuner.search.prune import OVER_STATUSES, Observation, Pruner
from tuner.search.records import (
    DUPLICATE,
    FINAL_PHASE,
    INTERRUPTED,
    LOST,
    PRUNED,
    RUNNING,
    TrialRecord,
    records_of,
)
from tuner.search.recovery import Recovery, worker_id
from tuner.search.space import Point, SearchSpace
from tuner.search.view import PlainView, TrialView
from tuner.trial.spec import TrialResult, TrialSpec

if TYPE_CHECKING:
    import optuna

_MISSING = object()

Runner = Callable[..., TrialResult]

#: Finalists raced at once.
RACE_FINALISTS = 3
#: Gain rounds (choice and baseline back to back) at most, and the interval half-width that ends them earlier.
MAX_GAIN_ROUNDS = 2
GAIN_TARGET = 0.10


class SearchInterrupted(Exception):
    """Ctrl-C during the search: what was measured is kept, and ``--resume`` continues."""


@dataclass
class Budget:
    n_trials: int = 20  # exploration trials that run a process, counted over the whole study
    timeout_s: float | None = None  # no trial starts after this many seconds of this process
    trial_timeout_s: float = 600.0
    patience: int = 0  # stop after this many trials in a row that add nothing to the Pareto front (0: never)
    race_trials: int = 8  # re-measurements of the finalists and of the baseline against the choice


@dataclass
class SearchOutcome:
    records: list[TrialRecord]
    stop_reason: str
    interrupted: bool = False
    elapsed_s: float = 0.0
    ran_here: int = 0  # trials this process ran
    calibration: str = ""  # what the measured trials said about the memory estimator
    race_note: str = ""  # how racing ended


@dataclass
class Search:
    study: optuna.Study
    space: SearchSpace
    ceiling_bytes: int
    runner: Runner
    trials_dir: Path
    budget: Budget = field(default_factory=Budget)
    estimator: Callable[[TrialSpec], int | None] | None = None
    view: TrialView = field(default_factory=PlainView)
    baseline: Point | None = None
    within: float = 0.10  # the balanced policy's tolerance, when no policy is given
    runner_env: dict[str, str] | None = None
    heartbeat_s: float | None = None  # None: $CFGTUNE_HEARTBEAT_S, else 15 s
    wait_for_others: bool = True  # at the end, wait for other workers' RUNNING trials (the head writes the result)
    policy: Policy | None = None  # what racing decides for (default: balanced with ``within``)

    def __post_init__(self) -> None:
        self.pruner = Pruner(self.space, self.ceiling_bytes, self.estimator)
        self.me = worker_id()
        self.baseline = self.baseline or self.space.baseline()
        self.policy = self.policy or Policy("balanced", self.within)
        self.planner = Planner(self.space, self.pruner, self.ceiling_bytes, self.baseline, self.policy)
        self._lora_objective = len(self.study.directions) > 1
        self._written: dict[int, dict[str, Any]] = {}
        self.interval_s: float = self.heartbeat_s or interval_from_env()
        self.recovery = Recovery(self.study, self.me, self.interval_s, self.view)
        self._beats: dict[int, int] = {}  # trial number -> the heartbeat seq its claim wrote
        self._ran_here = 0

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        """The study's records, after closing the trials of workers that stopped."""
        trials = self.study.get_trials(deepcopy=False)
        if self.recovery.recover(trials):
            trials = self.study.get_trials(deepcopy=False)
        return records_of(trials)

    def pool(self, records: Sequence[TrialRecord]) -> Pool:
        return Pool.build(records, self.ceiling_bytes)

    def recover_stale(self) -> int:
        """Close the trials left RUNNING by workers that stopped; returns how many this process closed."""
        return self.recovery.recover(self.study.get_trials(deepcopy=False))

    def _live(self, r: TrialRecord) -> bool:
        return self.recovery.live(r)

    def _holds(self, r: TrialRecord) -> bool:
        """Whether ``r`` keeps its point from being explored again: it ran, it is running, or it was lost twice."""
        return r.ran or r.fate == LOST or self._live(r)

    def observations(self, pool: Pool) -> list[Observation]:
        """What the pruner learns from: one observation per point, with its status over all its runs (a marginal
        point calibrates the estimator but prunes nothing)."""
        out = []
        for c in pool:
            out.append(Observation(c.number, c.point, c.status, c.predicted_bytes, c.peak_bytes))
        return out

    # -- one trial -----------------------------------------------------------------------------------------
    def _write(self, trial: optuna.Trial, rec: TrialRecord) -> None:
        """Store the record's attributes that changed since the last write (each one is a storage round trip)."""
        written = self._written.setdefault(trial.number, dict(trial.user_attrs))
        for k, v in rec.attrs().items():
            if written.get(k, _MISSING) != v:
                trial.set_user_attr(k, v)
                written[k] = v

    def _tell(self, trial: optuna.Trial, tokens_per_s: float, rank: int, memory: float, failure: float) -> None:
        trial.set_constraint("memory", float(memory))
        trial.set_constraint("failure", float(failure))
        values: list[float] = [float(tokens_per_s)]
        if self._lora_objective:
            values.append(float(rank))
        self.study.tell(trial, values)

    def _fail(self, trial: optuna.Trial) -> None:
        import optuna

        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def run_point(self, trial: optuna.Trial, point: Point, origin: str, round_id: int | None = None) -> TrialRecord:
        spec = self.space.spec(point)
        pred = self.pruner.predict(point)
        rec = TrialRecord(
            number=trial.number, point=point, fate=RUNNING, origin=origin, spec=spec,
            predicted_bytes=pred.raw, calibrated_bytes=pred.calibrated, prediction_basis=pred.basis,
            ceiling_bytes=self.ceiling_bytes, grad_accum=spec.gradient_accumulation_steps, worker=self.me,
            round_id=round_id,
        )  # fmt: skip
        self._write(trial, rec)
        self.view.started(rec)
        workdir = (self.trials_dir / f"trial-{trial.number:04d}").resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        heartbeat = Heartbeat(trial, self.me, self.interval_s, seq=self._beats.get(trial.number, 0))
        try:
            kwargs: dict[str, Any] = {"timeout_s": self.budget.trial_timeout_s, "workdir": workdir}
            if self.runner_env is not None:
                kwargs["env"] = self.runner_env
            with heartbeat:
                result = self.runner(spec, **kwargs)
        except KeyboardInterrupt:
            rec.fate, rec.reason = INTERRUPTED, "interrupted by Ctrl-C; --resume runs it again"
            rec.wall_s = time.monotonic() - t0
            self._write(trial, rec)
            self._fail(trial)
            self.view.finished(rec)
            raise SearchInterrupted from None
        except Exception as exc:  # noqa: BLE001 - a trial must never take the study down
            result = TrialResult(status="error", reason=f"the trial runner failed: {type(exc).__name__}: {exc}")
        rec.wall_s = result.wall_s or (time.monotonic() - t0)
        self._judge(rec, spec, result)
        memory = rec.peak_fraction - 1 if rec.peak_fraction is not None else 0.0
        failure = 0.0
        if rec.fate in OVER_STATUSES and memory <= 0:
            est = rec.calibrated_bytes or rec.predicted_bytes
            memory = max((est / self.ceiling_bytes - 1) if est else 0.0, 0.05)
        elif rec.fate != "ok":
            failure = 1.0
        try:
            self._write(trial, rec)
            self._tell(trial, rec.tokens_per_s or 0.0, point.rank, memory, failure)
        except Exception:
            if heartbeat.closed or not self._running(trial):
                # Another worker saw no heartbeat for the grace period (a storage outage, clocks far apart) and
                # closed the trial; the point runs again there, so this result is dropped, not counted twice.
                rec.fate, rec.reason = INTERRUPTED, "closed by another worker while it ran (heartbeats missed); result dropped"
                self.view.note(f"trial {trial.number}: {rec.reason}")
                return rec
            raise
        self._ran_here += rec.ran
        self.view.finished(rec)
        return rec

    def _running(self, trial: optuna.Trial) -> bool:
        import optuna

        try:
            return self.study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING
        except Exception:  # noqa: BLE001 - the storage is what failed: say so by re-raising the original error
            return True

    def _claim(self, trial: optuna.Trial, point: Point, origin: str) -> None:
        """Put the point and a first heartbeat on the RUNNING trial, so other workers see the point as taken
        (and this trial as alive) before it runs."""
        trial.set_user_attr("point", point.to_dict())
        if trial.user_attrs.get("origin") != origin:
            trial.set_user_attr("origin", origin)
        self._beats[trial.number] = 1
        trial.set_user_attr(HEARTBEAT_ATTR, beat_value(self.me, self.interval_s, 1))

    def _rival(self, records: Sequence[TrialRecord], trial: optuna.Trial, point: Point) -> TrialRecord | None:
        """Another trial that ran, or is running, the point this one just claimed."""
        for r in records:
            if r.number != trial.number and r.point.key == point.key and self._holds(r):
                return r
        return None

    def _judge(self, rec: TrialRecord, spec: TrialSpec, result: TrialResult) -> None:
        """Feasible iff the trial ran to the end and its measured peak is within the ceiling."""
        judge_result(rec, spec, result, self.ceiling_bytes)

    def record_pruned(self, trial: optuna.Trial, point: Point, origin: str, reason: str) -> TrialRecord:
        pred = self.pruner.predict(point)
        spec = self.space.spec(point)
        rec = TrialRecord(
            number=trial.number, point=point, fate=PRUNED, reason=reason, origin=origin, spec=spec,
            predicted_bytes=pred.raw, calibrated_bytes=pred.calibrated, prediction_basis=pred.basis,
            ceiling_bytes=self.ceiling_bytes, grad_accum=spec.gradient_accumulation_steps, worker=self.me,
        )  # fmt: skip
        self._write(trial, rec)
        est = pred.value
        memory = max((est / self.ceiling_bytes - 1) if est else 0.0, 0.05)
        self._tell(trial, 0.0, point.rank, memory, 0.0)
        self.view.finished(rec)
        return rec

    def record_duplicate(self, trial: optuna.Trial, point: Point, origin: str, of: TrialRecord | None,
                         answer: Answer | None = None) -> None:  # fmt: skip
        """A proposal of a point already decided: answered with the known values (a COMPLETE trial marked as a
        repeat), or, when the point's trial is still running elsewhere and nothing is known yet, closed as FAIL."""
        rec = TrialRecord(
            number=trial.number, point=point, fate=DUPLICATE, origin=origin, ceiling_bytes=self.ceiling_bytes,
            reason=(f"already {'pruned' if of.fate == PRUNED else 'tried'} as trial #{of.number}" if of else "already tried"),
            worker=self.me,
            duplicate_of=of.number if of else None, grad_accum=self.space.grad_accum(point.micro),
        )  # fmt: skip
        self._write(trial, rec)
        if answer is None:
            self._fail(trial)
        else:
            self._tell(trial, answer.tokens_per_s, point.rank, answer.memory, answer.failure)

    # -- stopping ------------------------------------------------------------------------------------------
    def _stale_count(self, records: Sequence[TrialRecord]) -> int:
        """Exploration trials in a row (most recent last) that were not on the Pareto front when they finished."""
        seen: list[TrialRecord] = []
        stale = 0
        for r in sorted((r for r in records if r.ran and r.origin not in FINAL_PHASE), key=lambda r: r.number):
            improves = r.feasible and not any(
                (o.tokens_per_s or 0) >= (r.tokens_per_s or 0) * 1.01 and o.point.rank >= r.point.rank for o in seen
            )
            if r.feasible:
                seen.append(r)
            stale = 0 if improves else stale + 1
        return stale

    def _timed_out(self, started: float) -> bool:
        b = self.budget
        return b.timeout_s is not None and time.monotonic() - started >= b.timeout_s

    def _stop_reason(self, records: Sequence[TrialRecord], started: float) -> str | None:
        b = self.budget
        # Other workers' trials that are running now count, so that every worker stops at N together; a trial of a
        # worker that stopped beating does not (it is closed, and its point runs again).
        ran = sum(1 for r in records if r.origin not in FINAL_PHASE and (r.ran or (self._live(r) and r.worker != self.me)))
        if ran >= b.n_trials:
            return f"--n-trials {b.n_trials} reached"
        if self._timed_out(started):
            return f"--timeout {b.timeout_s:g}s reached"
        if b.patience and any(r.feasible for r in records) and self._stale_count(records) >= b.patience:
            return f"{b.patience} trials in a row added nothing to the Pareto front (--patience)"
        return None

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> SearchOutcome:
        started = time.monotonic()
        self.recover_stale()  # each closed trial is noted with its reason
        self._ran_here = 0
        stop = ""
        race_note = ""
        self._trial: Any = None
        try:
            stop = self.explore(started)
            if self.wait_for_others:
                self._wait_for_others()
            if self.budget.race_trials > 0 and self.wait_for_others:
                race_note = self.race(started)
        except (KeyboardInterrupt, SearchInterrupted):
            if self._trial is not None:
                with contextlib.suppress(Exception):  # the storage may be what failed
                    self._fail(self._trial)
            return SearchOutcome(self.records(), "interrupted (Ctrl-C)", True, time.monotonic() - started,
                                 self._ran_here, self.pruner.calibration.summary)
        return SearchOutcome(self.records(), stop, False, time.monotonic() - started, self._ran_here,
                             self.pruner.calibration.summary, race_note)

    def explore(self, started: float) -> str:
        """Measure new points until a budget ends; returns why it stopped."""
        idle = 0  # proposals in a row that ran nothing
        idle_total = 0
        idle_cap = 4 * self.space.size + 50
        while True:
            records = self.records()
            reason = self._stop_reason(records, started)
            if reason:
                return reason
            pool = self.pool(records)
            self.pruner.observe(self.observations(pool))
            taken = {r.point.key: r for r in records if self._holds(r)}
            busy = {r.point.key for r in records if self._live(r)}
            # A point pruned earlier is proposable again once calibration says it may fit after all.
            done = dict(taken)
            for r in records:
                if r.fate == PRUNED and r.point.key not in done and self.pruner.reason(r.point):
                    done[r.point.key] = r
            remaining = [p for p in self.space.points() if p.key not in done and self.pruner.reason(p) is None]
            rechecks = self.planner.rechecks(records, pool, busy)
            if not remaining and not rechecks and not self.planner.baseline_pending(records, set(done)):
                return "every point of the search space was measured or pruned"
            if idle_total >= idle_cap:
                return "the sampler kept proposing points already tried"
            planned = self.planner.plan(records, pool, remaining, set(taken), busy)
            if planned is None and (idle >= 1 or self.planner.exploit_turn(records)):
                n = self.planner.neighbour(pool, remaining)
                planned = (n, "neighbor") if n is not None else None
            if planned is not None:
                self.study.enqueue_trial(self.space.params(planned[0]), user_attrs={"origin": planned[1]})
            trial = self._trial = self.study.ask()
            trial.set_user_attr("worker", self.me)
            point = self.space.suggest(trial)
            origin = str(trial.user_attrs.get("origin") or "sampler")
            prior = done.get(point.key) if origin != "recheck" else None
            if prior is not None:
                self.record_duplicate(trial, point, origin, prior, self.planner.answer(prior, pool))
                self._trial, idle, idle_total = None, idle + 1, idle_total + 1
                continue
            why = None if origin in ("baseline", "retry", "recheck") else self.pruner.reason(point)
            if why:
                self.record_pruned(trial, point, origin, why)
                self._trial, idle, idle_total = None, idle + 1, idle_total + 1
                continue
            # Claim, then look again: between this worker's plan and its claim another worker may have
            # claimed the same point (both planned it at once). Then this one steps back and records a repeat.
            self._claim(trial, point, origin)
            rival = self._rival(self.records(), trial, point) if origin != "recheck" else None
            if rival is not None:
                self.record_duplicate(trial, point, origin, rival)
                self._trial, idle, idle_total = None, idle + 1, idle_total + 1
                time.sleep(random.uniform(0.05, 0.5))  # two workers that both stepped back do not meet again
                continue
            idle = 0
            self.run_point(trial, point, origin)
            self._trial = None

    # -- racing and the gain -----------------------------------------------------------------------------------
    def _remeasure(self, point: Point, origin: str, round_id: int) -> TrialRecord | None:
        """Run ``point`` again as part of round ``round_id`` (a race or gain run)."""
        self.study.enqueue_trial(self.space.params(point), user_attrs={"origin": origin, "round_id": round_id})
        trial = self._trial = self.study.ask()
        trial.set_user_attr("worker", self.me)
        got = self.space.suggest(trial)
        if got != point or trial.user_attrs.get("origin") != origin:  # another process took the queued trial
            self._fail(trial)
            self._trial = None
            return None
        self._claim(trial, point, origin)
        rec = self.run_point(trial, point, origin, round_id=round_id)
        self._trial = None
        return rec

    def race(self, started: float) -> str:
        """Re-measure the finalists interleaved until they separate, and the choice against the baseline.

        One round at a time, the budget permitting: a race round while the measurements cannot separate the
        choice from a contender (keeping two runs for the gain), else a gain round while the gain's interval is
        wide. A gain round also measures the run-to-run noise, which until then was assumed; when it turns out
        larger, contenders that looked separated may not be, and racing resumes.
        """
        assert self.policy is not None
        records = self.records()
        used = sum(1 for r in records if r.origin in FINAL_PHASE and r.ran)
        budget = self.budget.race_trials
        next_round = max((r.round_id for r in records if r.round_id is not None), default=0) + 1
        pool = self.pool(records)
        if choose(pool, self.policy) is None:
            return "no feasible point to race"
        race_rounds = gain_rounds = 0
        ended = ""
        while not self._timed_out(started):
            choice = choose(pool, self.policy)
            assert choice is not None
            pick, base = choice.record, pool.baseline()
            fin = [c for c in finalists(pool, self.policy, RACE_FINALISTS) if c.estimate is not None]
            race_needed = len(fin) > 1 and any(not c.estimate.exact for c in fin)  # type: ignore[union-attr]
            gain_possible = (base is not None and base.feasible and base is not pick and pick.estimate is not None
                             and base.estimate is not None and not (pick.estimate.exact and base.estimate.exact))  # fmt: skip
            shared = len(pool.shared_rounds(pick, base)) if gain_possible and base is not None else 0
            gain_needed = gain_possible and shared < MAX_GAIN_ROUNDS and (
                shared == 0 or choice.gain is None or choice.gain.rel_half > GAIN_TARGET)
            reserve = 2 if gain_needed and shared == 0 else 0
            if race_needed and used + len(fin) <= budget - reserve:
                order = fin[race_rounds % len(fin):] + fin[: race_rounds % len(fin)]
                self.view.note(f"race round {race_rounds + 1}: " + ", ".join(f"#{c.number}" for c in order))
                for c in order:
                    self._remeasure(c.point, "race", next_round)
                used += len(fin)
                race_rounds += 1
            elif gain_needed and used + 2 <= budget and base is not None:
                pair = [pick, base] if gain_rounds % 2 == 0 else [base, pick]
                self.view.note(f"gain round {gain_rounds + 1}: " + ", ".join(f"#{c.number}" for c in pair))
                for c in pair:
                    self._remeasure(c.point, "gain", next_round)
                used += 2
                gain_rounds += 1
            else:
                if race_needed:
                    ended = f"race budget spent with {len(fin)} finalists not separated"
                elif race_rounds:
                    ended = "finalists separated"
                else:
                    ended = "no finalist needed racing"
                break
            next_round += 1
            pool = self.pool(self.records())
        else:
            ended = "--timeout reached"
        notes = ([f"{race_rounds} race round(s)"] if race_rounds else []) + [ended]
        if gain_rounds:
            notes.append(f"{gain_rounds} gain round(s) against the baseline")
        return "; ".join(notes)

    def _wait_for_others(self) -> None:
        """Wait until the trials other workers are running end (or are closed as abandoned), so that the result
        written from this process includes them. Bounded: a trial ends by its timeout or stops beating."""
        deadline = time.monotonic() + self.budget.trial_timeout_s + 8 * self.interval_s + 60
        said = False
        while time.monotonic() < deadline:
            live = [r for r in self.records() if self._live(r) and r.worker != self.me]
            if not live:
                return
            if not said:
                workers = sorted({r.worker for r in live})
                self.view.note(f"waiting for {len(live)} trial(s) still running on {', '.join(workers)}")
                said = True
            time.sleep(min(2.0, self.interval_s))


def judge_result(rec: TrialRecord, spec: TrialSpec, result: TrialResult, ceiling_bytes: int) -> None:
    """Fill ``rec`` from a trial's result: feasible iff the trial ran to the end and its measured peak is within the
    ceiling. tokens/s is the median of the per-step samples (or, for a result without them, the median step
    times combined)."""
    from tuner.search.sizes import format_bytes

    rec.result = result
    rec.fate = result.status if result.status else "error"
    rec.reason = result.reason
    rec.peak_bytes = result.peak_bytes
    rec.tokens_per_s = None
    if rec.fate == "ok":
        m = result.measurement(spec)
        tps = m.median if m is not None else None
        if result.peak_bytes is None or tps is None:
            rec.fate = "error"
            rec.reason = "the trial finished but reported no peak memory or step time"
        elif result.peak_bytes > ceiling_bytes:
            rec.fate = "over_budget"
            rec.reason = f"measured peak {format_bytes(result.peak_bytes)} > ceiling {format_bytes(ceiling_bytes)}"
            rec.tokens_per_s = tps
        else:
            rec.tokens_per_s = tps
    elif rec.fate == "over_budget" and result.peak_bytes is not None:
        m = result.measurement(spec)
        rec.tokens_per_s = m.median if m is not None else None
        if not rec.reason:
            rec.reason = f"measured peak {format_bytes(result.peak_bytes)} > ceiling {format_bytes(ceiling_bytes)}"
