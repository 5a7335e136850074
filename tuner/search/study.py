"""The Optuna study behind `cfgtune auto` and `cfgtune worker`: creation, resume, and the trial loop.

Objectives: tokens/s (maximise) and, for LoRA, the rank (maximise) - rank is a quality choice, so it is kept
as a second objective and traded against speed only by the selection policy afterwards. Feasibility is an
Optuna constraint (``trial.set_constraint``, the v5 core API): ``memory = peak / ceiling - 1`` and
``failure = 1`` for a trial that crashed, hung or errored. Infeasible trials are COMPLETE, so the sampler
learns where the memory boundary is; only a Ctrl-C or a repeated proposal leaves a FAIL trial.

The loop asks Optuna for points, but a small planner goes first, because a study of a few dozen trials cannot
afford to find the obvious by chance:

1. the **baseline**, the hand-written recipe (batch 1, accumulation to the global batch, checkpointing on),
   so the report can always state the gain over it;
2. **retries** of trials a Ctrl-C or a crash interrupted;
3. the **boundary** of each memory regime (checkpointing, Liger, ZeRO) at the highest rank: the largest micro
   batch the calibrated estimator says fits, stepping down when a trial runs out of memory;
4. then the **sampler** (multi-objective TPE with constraints), and when it keeps proposing points already
   measured or pruned, the untried **neighbours** of the best trials.

Points the pruner rules out (see :mod:`tuner.search.prune`) are recorded as infeasible trials without running
and do not count against ``--n-trials``; neither do repeats. ``--n-trials`` counts the trials of the whole study
that ran a process, so ``--resume`` continues to the same total, and several workers sharing a study stop together.

Several workers (``cfgtune worker``, on other nodes) share one study through its storage. Two rules keep them
consistent (docs/distributed.md):

- a worker **claims** a point by writing it on its RUNNING trial, then reads the study again; when another live
  trial holds the same point it records its own as a repeat instead of running it (both may step back; neither
  runs twice), so no point runs twice. ``--n-trials`` counts the other workers' RUNNING trials, so a study stops
  at N, or at most N + (workers - 1) when several workers start their last trials at the same moment;
- each RUNNING trial carries a heartbeat (:mod:`tuner.search.heartbeat`). Every worker, on each turn of its loop,
  closes the RUNNING trials of workers that stopped beating (or, on the same host, whose process is gone); the
  planner retries such a point once, and a point whose worker died twice is recorded as failed (``lost``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.search.heartbeat import (
    HEARTBEAT_ATTR,
    Heartbeat,
    StaleWatch,
    beat_value,
    interval_from_env,
)
from tuner.search.prune import OVER_STATUSES, Observation, Pruner
from tuner.search.records import (
    DUPLICATE,
    INTERRUPTED,
    LOST,
    LOST_ATTR,
    PRUNED,
    RUNNING,
    TrialRecord,
)
from tuner.search.space import Point, SearchSpace
from tuner.search.view import PlainView, TrialView
from tuner.trial.spec import TrialResult, TrialSpec

if TYPE_CHECKING:
    import optuna

META_KEY = "cfgtune"
_MISSING = object()
META_VERSION = 1

Runner = Callable[..., TrialResult]


class StudyError(Exception):
    """A study that cannot be created, found or resumed; the message says what to do."""


class SearchInterrupted(Exception):
    """Ctrl-C during the search: what was measured is kept, and ``--resume`` continues."""


@dataclass
class Budget:
    n_trials: int = 20  # trials that run a process, counted over the whole study
    timeout_s: float | None = None  # no trial starts after this many seconds of this process
    trial_timeout_s: float = 600.0
    patience: int = 0  # stop after this many trials in a row that add nothing to the Pareto front (0: never)


@dataclass
class SearchOutcome:
    records: list[TrialRecord]
    stop_reason: str
    interrupted: bool = False
    elapsed_s: float = 0.0
    ran_here: int = 0  # trials this process ran
    calibration: str = ""  # what the measured trials said about the memory estimator


# -- storage and study --------------------------------------------------------------------------------------------


def default_storage(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'study.db').resolve()}"


def make_storage(url: str) -> Any:
    """Any Optuna storage from one string.

    ``sqlite:///file.db``, ``postgresql://...``, ``mysql+pymysql://...`` (SQLAlchemy URLs, RDB storage);
    ``journal:PATH`` or a path ending in ``.log``/``.journal`` (append-only journal file, safe on NFS);
    ``redis://host:port`` (journal in Redis); ``grpc://host:port`` (an ``optuna grpc`` storage proxy).
    """
    import optuna

    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:").removeprefix("//")
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(Path(path).expanduser())))
    if url.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    if url.startswith("grpc://"):
        host, _, port = url.removeprefix("grpc://").partition(":")
        return optuna.storages.GrpcStorageProxy(host=host or "localhost", port=int(port or 13000))
    if "://" not in url:
        raise StudyError(
            f"--storage {url!r} is not a storage URL: use e.g. sqlite:///study.db, postgresql://user@host/db, "
            "journal:/shared/study.log or redis://host:6379"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several local workers wait for the lock, not fail
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ModuleNotFoundError as exc:
        hint = {"postgresql": "pip install 'psycopg[binary]' (or psycopg2-binary with postgresql+psycopg2://...)",
                "mysql": "pip install pymysql, and write the URL as mysql+pymysql://user:password@host/db"}  # fmt: skip
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        raise StudyError(f"cannot open storage {url!r}: the database driver is missing ({exc}); "
                         + hint.get(scheme, "install the SQLAlchemy driver the URL names")) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds
        raise StudyError(f"cannot open storage {url!r}: {exc}") from None


def make_sampler(n_objectives: int, seed: int | None, n_startup_trials: int = 4) -> Any:
    import optuna

    # Multivariate TPE with constant liar (v5 defaults) copes with parallel workers; the few random start-up
    # trials matter because the planner has already placed the informative first points.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True, constant_liar=True
    )


def directions(space: SearchSpace) -> list[str]:
    return ["maximize", "maximize"] if space.is_lora and len(space.ranks) > 1 else ["maximize"]


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def open_study(
    storage_url: str,
    name: str,
    *,
    space: SearchSpace | None,
    meta: dict[str, Any] | None,
    resume: bool,
    seed: int | None = None,
    create: bool = True,
) -> tuple[optuna.Study, dict[str, Any]]:
    """Create the study, or load it when resuming or joining; returns it with its stored cfgtune metadata.

    ``space`` None (a worker) takes the stored space as it is. Otherwise a resumed study must have been
    created for the same search space, and the differences are named when it was not.
    """
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    storage = make_storage(storage_url)
    try:
        exists = name in study_names(storage)
    except Exception as exc:  # noqa: BLE001
        raise StudyError(f"cannot read storage {storage_url!r}: {exc}") from None
    if exists and not resume:
        raise StudyError(
            f"study {name!r} already exists in {storage_url}: pass --resume to continue it, "
            "or --study NAME (or another --output-dir) to start a new one"
        )
    if not exists and not create:
        known = ", ".join(study_names(storage)) or "none"
        raise StudyError(f"no study {name!r} in {storage_url} (studies there: {known})")
    if exists:
        probe = optuna.load_study(study_name=name, storage=storage)
        stored = probe.user_attrs.get(META_KEY)
        if not isinstance(stored, dict) or "space" not in stored:
            raise StudyError(f"study {name!r} in {storage_url} was not created by cfgtune auto")
        stored_space = SearchSpace.from_dict(stored["space"])
        if space is not None:
            diff = space.differences(stored_space)
            if diff:
                raise StudyError(
                    f"study {name!r} was created for a different search; --resume needs the same options. "
                    "Differences: " + "; ".join(diff[:6])
                )
        sampler = make_sampler(len(probe.directions), seed)
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        return study, stored
    assert space is not None and meta is not None
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions(space),  # type: ignore[arg-type]
        sampler=make_sampler(len(directions(space)), seed), load_if_exists=True,
    )  # fmt: skip
    if META_KEY not in study.user_attrs:
        study.set_user_attr(META_KEY, {"version": META_VERSION, **meta, "space": space.to_dict()})
    return study, study.user_attrs[META_KEY]


def read_records(study: optuna.Study) -> list[TrialRecord]:
    return records_of(study.get_trials(deepcopy=False))


def records_of(trials: Sequence[Any]) -> list[TrialRecord]:
    """The records of the trials cfgtune wrote (a trial with no point yet has none)."""
    return [r for r in map(TrialRecord.from_trial, trials) if r is not None]


# -- the loop ----------------------------------------------------------------------------------------------------


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


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
    within: float = 0.10  # the policy's tolerance, for the planner's notion of "close to the best"
    runner_env: dict[str, str] | None = None
    heartbeat_s: float | None = None  # None: $CFGTUNE_HEARTBEAT_S, else 15 s
    wait_for_others: bool = True  # at the end, wait for other workers' RUNNING trials (the head writes the result)

    def __post_init__(self) -> None:
        self.pruner = Pruner(self.space, self.ceiling_bytes, self.estimator)
        self.me = worker_id()
        self.baseline = self.baseline or self.space.baseline()
        self._lora_objective = len(self.study.directions) > 1
        self._written: dict[int, dict[str, Any]] = {}
        self.interval_s: float = self.heartbeat_s or interval_from_env()
        self._watch = StaleWatch(self.interval_s)
        self._stale: set[int] = set()  # RUNNING trials judged abandoned (closed, or being closed by someone)
        self._beats: dict[int, int] = {}  # trial number -> the heartbeat seq its claim wrote

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        """The study's records, after closing the trials of workers that stopped."""
        trials = self.study.get_trials(deepcopy=False)
        if self._recover(trials):
            trials = self.study.get_trials(deepcopy=False)
        return records_of(trials)

    def _live(self, r: TrialRecord) -> bool:
        """A RUNNING trial whose worker is still there."""
        return r.fate == RUNNING and r.number not in self._stale

    def _holds(self, r: TrialRecord) -> bool:
        """Whether ``r`` keeps its point from being run again: it ran, it is running, or its point was lost twice."""
        return r.ran or r.fate == LOST or self._live(r)

    def _observations(self, records: Sequence[TrialRecord]) -> list[Observation]:
        return [Observation(r.number, r.point, r.fate, r.predicted_bytes, r.peak_bytes) for r in records if r.ran]

    def recover_stale(self) -> int:
        """Close the trials left RUNNING by workers that stopped; returns how many this process closed."""
        return self._recover(self.study.get_trials(deepcopy=False))

    def _abandoned(self, t: Any) -> tuple[str, str] | None:
        """(worker, why) for a RUNNING trial of another worker that stopped: on this host, a process that is gone
        (at once); anywhere, no heartbeat for the grace period."""
        who = str(t.user_attrs.get("worker", ""))
        if who == self.me:
            return None
        h, _, pid = who.rpartition(":")
        if h == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            return who, f"worker {who} is gone (process {pid} no longer exists on this host)"
        why = self._watch.stale_reason(t)
        return (who, why) if why else None

    def _recover(self, trials: Sequence[Any]) -> int:
        """Close abandoned RUNNING trials as FAIL with a reason: the first loss of a point makes it an
        interrupted trial the planner retries; a second one, a failed (``lost``) point that is not retried."""
        import optuna

        running = optuna.trial.TrialState.RUNNING
        n = 0
        for t in trials:
            if t.state != running:
                self._watch.forget(t.number)
                continue
            verdict = self._abandoned(t)
            if verdict is None:
                continue
            who, why = verdict
            self._stale.add(t.number)
            point = t.user_attrs.get("point")
            final = point is not None and any(
                o.number != t.number and o.state == optuna.trial.TrialState.FAIL and o.user_attrs.get("point") == point
                and isinstance(o.user_attrs.get(LOST_ATTR), dict)
                for o in trials
            )
            reason = why + ("; this point lost its worker twice: not retried" if final else "; the point runs again")
            try:
                # The reason goes in its own attr: if the worker was alive after all and finishes first, its
                # trial's own fate and reason stay as it wrote them.
                self.study._storage.set_trial_user_attr(
                    t._trial_id, LOST_ATTR, {"worker": who, "reason": reason, "final": final}
                )
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001, S112 - another worker closed it first, or its own worker finished it
                continue
            n += 1
            self.view.note(f"trial {t.number} closed: {reason}")
        return n

    # -- planning ------------------------------------------------------------------------------------------
    def _regimes(self) -> list[tuple[str, bool, bool]]:
        """(dist, liger, gc), the ones expected to be fastest first."""
        out = []
        for dist in self.space.dists:
            for liger in sorted(self.space.ligers, reverse=True):
                for gc in sorted(self.space.gcs):
                    out.append((dist, liger, gc))
        return out

    def plan(self, records: Sequence[TrialRecord], remaining: Sequence[Point]) -> tuple[Point, str] | None:
        taken = {r.point.key for r in records if self._holds(r)}
        rem = {p.key for p in remaining}
        base = self.baseline
        assert base is not None
        if not any(r.origin == "baseline" for r in records) and base.key not in taken:
            return base, "baseline"
        for r in records:
            if r.fate == INTERRUPTED and r.point.key not in taken and r.point.key in rem:
                return r.point, "retry"
        ranks = [max(self.space.ranks)]
        if min(self.space.ranks) != ranks[0]:
            ranks.append(min(self.space.ranks))
        for rank in ranks:
            for regime in self._regimes():
                pick = self._climb(records, remaining, regime, rank, top=rank == ranks[0])
                if pick is not None:
                    return pick, "boundary"
        return None

    def _climb(
        self, records: Sequence[TrialRecord], remaining: Sequence[Point], regime: tuple[str, bool, bool], rank: int, *, top: bool
    ) -> Point | None:
        """The next boundary probe of one regime at one rank: the largest micro batch predicted to fit above
        the largest measured to fit, or None when that boundary is known."""
        dist, liger, gc = regime

        def here(r: TrialRecord, k: int) -> bool:
            return (r.point.dist, r.point.liger, r.point.gc, r.point.rank) == (dist, liger, gc, k)

        mine = [r for r in records if here(r, rank)]
        if sum(1 for r in mine if r.origin == "boundary" and r.ran) >= 4:
            return None
        floor = max((r.point.micro for r in mine if r.feasible), default=0)
        if not top:
            # A lower rank only matters where it frees enough memory for a larger batch than the top rank got.
            best_top = max((r.point.micro for r in records if r.feasible and here(r, max(self.space.ranks))), default=0)
            floor = max(floor, best_top)
            if best_top == 0 and not any(r.ran and here(r, max(self.space.ranks)) for r in records):
                return None  # the top rank of this regime is still being probed
        cands = sorted(
            (p for p in remaining if (p.dist, p.liger, p.gc, p.rank) == (dist, liger, gc, rank) and p.micro > floor),
            key=lambda p: p.micro,
        )
        if not cands:
            return None
        preds = [self.pruner.predict(p).value for p in cands]
        if all(v is None for v in preds):
            return cands[len(cands) // 2]  # no estimator: bisect between what fitted and what did not
        fitting = [p for p, v in zip(cands, preds) if v is not None and v <= self.ceiling_bytes]
        if fitting:
            return fitting[-1]
        # Predicted over, but not by enough to be pruned: the estimate is uncertain there, so one measurement
        # settles it (and, over or not, calibrates the estimator for this regime).
        return cands[0]

    def neighbour(self, records: Sequence[TrialRecord], remaining: Sequence[Point]) -> Point | None:
        """An untried point one step from the fastest trials (batch, rank, checkpointing, Liger, strategy),
        those the calibrated estimator expects to fit first."""
        if not remaining:
            return None
        rem = {p.key: p for p in remaining}
        sp = self.space
        best = sorted((r for r in records if r.feasible), key=lambda r: -(r.tokens_per_s or 0.0))[:4]
        steps: list[Point] = []
        for r in best:
            p = r.point
            mi, ri = sp.micro_batches.index(p.micro), sp.ranks.index(p.rank)
            if mi + 1 < len(sp.micro_batches):
                steps.append(Point(sp.micro_batches[mi + 1], p.rank, p.gc, p.liger, p.dist))
            if ri + 1 < len(sp.ranks):
                steps.append(Point(p.micro, sp.ranks[ri + 1], p.gc, p.liger, p.dist))
            steps.append(Point(p.micro, p.rank, not p.gc, p.liger, p.dist))
            steps.append(Point(p.micro, p.rank, p.gc, not p.liger, p.dist))
            steps.extend(Point(p.micro, p.rank, p.gc, p.liger, d) for d in sp.dists if d != p.dist)
            if mi > 0:
                steps.append(Point(sp.micro_batches[mi - 1], p.rank, p.gc, p.liger, p.dist))
            if ri > 0:
                steps.append(Point(p.micro, sp.ranks[ri - 1], p.gc, p.liger, p.dist))
        steps = [rem[q.key] for q in steps if q.key in rem]

        def fits(p: Point) -> bool:
            v = self.pruner.predict(p).value
            return v is None or v <= self.ceiling_bytes

        for q in steps:
            if fits(q):
                return q
        if steps:
            return steps[0]
        # Nothing next to a good trial: the untried point predicted to use the most memory that still fits.
        return max(remaining, key=lambda p: (fits(p), p.micro, p.rank))

    # -- one trial -----------------------------------------------------------------------------------------
    def _write(self, trial: optuna.Trial, rec: TrialRecord) -> None:
        """Store the record's attributes that changed since the last write (each one is a storage round trip)."""
        written = self._written.setdefault(trial.number, dict(trial.user_attrs))
        for k, v in rec.attrs().items():
            if written.get(k, _MISSING) != v:
                trial.set_user_attr(k, v)
                written[k] = v

    def _tell(self, trial: optuna.Trial, rec: TrialRecord, memory: float, failure: float) -> None:
        trial.set_constraint("memory", float(memory))
        trial.set_constraint("failure", float(failure))
        values: list[float] = [float(rec.tokens_per_s or 0.0)]
        if self._lora_objective:
            values.append(float(rec.point.rank))
        self.study.tell(trial, values)

    def _fail(self, trial: optuna.Trial) -> None:
        import optuna

        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def run_point(self, trial: optuna.Trial, point: Point, origin: str) -> TrialRecord:
        spec = self.space.spec(point)
        pred = self.pruner.predict(point)
        rec = TrialRecord(
            number=trial.number, point=point, fate=RUNNING, origin=origin, spec=spec,
            predicted_bytes=pred.raw, calibrated_bytes=pred.calibrated, prediction_basis=pred.basis,
            ceiling_bytes=self.ceiling_bytes, grad_accum=spec.gradient_accumulation_steps, worker=self.me,
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
            self._tell(trial, rec, memory, failure)
        except Exception:
            if heartbeat.closed or not self._running(trial):
                # Another worker saw no heartbeat for the grace period (a storage outage, clocks far apart) and
                # closed the trial; the point runs again there, so this result is dropped, not counted twice.
                rec.fate, rec.reason = INTERRUPTED, "closed by another worker while it ran (heartbeats missed); result dropped"
                self.view.note(f"trial {trial.number}: {rec.reason}")
                return rec
            raise
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
        from tuner.search.sizes import format_bytes

        rec.result = result
        rec.fate = result.status if result.status else "error"
        rec.reason = result.reason
        rec.peak_bytes = result.peak_bytes
        rec.tokens_per_s = None
        if rec.fate == "ok":
            tps = result.tokens_per_s(spec)
            if result.peak_bytes is None or tps is None:
                rec.fate = "error"
                rec.reason = "the trial finished but reported no peak memory or step time"
            elif result.peak_bytes > self.ceiling_bytes:
                rec.fate = "over_budget"
                rec.reason = f"measured peak {format_bytes(result.peak_bytes)} > ceiling {format_bytes(self.ceiling_bytes)}"
                rec.tokens_per_s = tps
            else:
                rec.tokens_per_s = tps
        elif rec.fate == "over_budget" and result.peak_bytes is not None and not rec.reason:
            rec.reason = f"measured peak {format_bytes(result.peak_bytes)} > ceiling {format_bytes(self.ceiling_bytes)}"

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
        self._tell(trial, rec, memory, 0.0)
        self.view.finished(rec)
        return rec

    def record_duplicate(self, trial: optuna.Trial, point: Point, origin: str, of: TrialRecord | None) -> None:
        rec = TrialRecord(
            number=trial.number, point=point, fate=DUPLICATE, origin=origin, ceiling_bytes=self.ceiling_bytes,
            reason=(f"already {'pruned' if of.fate == PRUNED else 'tried'} as trial #{of.number}" if of else "already tried"),
            worker=self.me,
            duplicate_of=of.number if of else None, grad_accum=self.space.grad_accum(point.micro),
        )  # fmt: skip
        self._write(trial, rec)
        self._fail(trial)

    # -- stopping ------------------------------------------------------------------------------------------
    def _stale_count(self, records: Sequence[TrialRecord]) -> int:
        """Trials in a row (most recent last) that were not on the Pareto front when they finished."""
        seen: list[TrialRecord] = []
        stale = 0
        for r in sorted((r for r in records if r.ran), key=lambda r: r.number):
            improves = r.feasible and not any(
                (o.tokens_per_s or 0) >= (r.tokens_per_s or 0) * 1.01 and o.point.rank >= r.point.rank for o in seen
            )
            if r.feasible:
                seen.append(r)
            stale = 0 if improves else stale + 1
        return stale

    def _stop_reason(self, records: Sequence[TrialRecord], started: float) -> str | None:
        b = self.budget
        # Other workers' trials that are running now count, so that every worker stops at N together; a trial of a
        # worker that stopped beating does not (it is closed, and its point runs again).
        ran = sum(1 for r in records if r.ran or (self._live(r) and r.worker != self.me))
        if ran >= b.n_trials:
            return f"--n-trials {b.n_trials} reached"
        if b.timeout_s is not None and time.monotonic() - started >= b.timeout_s:
            return f"--timeout {b.timeout_s:g}s reached"
        if b.patience and any(r.feasible for r in records) and self._stale_count(records) >= b.patience:
            return f"{b.patience} trials in a row added nothing to the Pareto front (--patience)"
        return None

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> SearchOutcome:
        started = time.monotonic()
        self.recover_stale()  # each closed trial is noted with its reason
        ran_here = 0
        idle = 0  # proposals in a row that ran nothing
        idle_total = 0
        idle_cap = 4 * self.space.size + 50
        stop = ""
        trial = None
        try:
            while True:
                records = self.records()
                reason = self._stop_reason(records, started)
                if reason:
                    stop = reason
                    break
                self.pruner.observe(self._observations(records))
                taken = {r.point.key: r for r in records if self._holds(r)}
                # A point pruned earlier is proposable again once calibration says it may fit after all.
                done = dict(taken)
                for r in records:
                    if r.fate == PRUNED and r.point.key not in done and self.pruner.reason(r.point):
                        done[r.point.key] = r
                remaining = [p for p in self.space.points() if p.key not in done and self.pruner.reason(p) is None]
                if not remaining and not self._baseline_pending(records, done):
                    stop = "every point of the search space was measured or pruned"
                    break
                if idle_total >= idle_cap:
                    stop = "the sampler kept proposing points already tried"
                    break
                planned = self.plan(records, remaining)
                if planned is None and (idle >= 2 or self._exploit_turn(records)):
                    n = self.neighbour(records, remaining)
                    planned = (n, "neighbor") if n is not None else None
                if planned is not None:
                    self.study.enqueue_trial(self.space.params(planned[0]), user_attrs={"origin": planned[1]})
                trial = self.study.ask()
                trial.set_user_attr("worker", self.me)
                point = self.space.suggest(trial)
                origin = str(trial.user_attrs.get("origin") or "sampler")
                prior = done.get(point.key)
                if prior is not None:
                    self.record_duplicate(trial, point, origin, prior)
                    trial, idle, idle_total = None, idle + 1, idle_total + 1
                    continue
                why = None if origin in ("baseline", "retry") else self.pruner.reason(point)
                if why:
                    self.record_pruned(trial, point, origin, why)
                    trial, idle, idle_total = None, idle + 1, idle_total + 1
                    continue
                # Claim, then look again: between this worker's plan and its claim another worker may have
                # claimed the same point (both planned it at once). Then this one steps back and records a repeat.
                self._claim(trial, point, origin)
                rival = self._rival(self.records(), trial, point)
                if rival is not None:
                    self.record_duplicate(trial, point, origin, rival)
                    trial, idle, idle_total = None, idle + 1, idle_total + 1
                    time.sleep(random.uniform(0.05, 0.5))  # two workers that both stepped back do not meet again
                    continue
                idle = 0
                rec = self.run_point(trial, point, origin)
                trial = None
                ran_here += rec.ran
            if self.wait_for_others:
                self._wait_for_others()
        except (KeyboardInterrupt, SearchInterrupted):
            if trial is not None:
                with contextlib.suppress(Exception):  # the storage may be what failed
                    self._fail(trial)
            return SearchOutcome(self.records(), "interrupted (Ctrl-C)", True, time.monotonic() - started, ran_here,
                                 self.pruner.calibration.summary)
        return SearchOutcome(self.records(), stop, False, time.monotonic() - started, ran_here,
                             self.pruner.calibration.summary)

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

    def _exploit_turn(self, records: Sequence[TrialRecord]) -> bool:
        """After the planned points, alternate the sampler (explore) with neighbours of the best (exploit)."""
        sampled = sum(1 for r in records if r.ran and r.origin == "sampler")
        local = sum(1 for r in records if r.ran and r.origin == "neighbor")
        return sampled > local

    def _baseline_pending(self, records: Sequence[TrialRecord], done: dict[str, TrialRecord]) -> bool:
        assert self.baseline is not None
        return not any(r.origin == "baseline" for r in records) and self.baseline.key not in done
