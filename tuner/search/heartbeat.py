"""Trial heartbeats: how a worker tells the other nodes that its RUNNING trial is still alive.

A worker that is SIGKILLed, or a node that loses power, leaves its trial RUNNING in the shared storage forever.
Optuna's RDB storage has a native heartbeat, but the journal storages (a file on NFS, Redis) have none, so the
heartbeat is a trial user attr that every storage holds: ``heartbeat = {"at": wall-clock time, "seq": n,
"every": interval, "worker": "host:pid"}``, rewritten every ``interval`` seconds by a daemon thread while the
trial runs (default 15 s; ``CFGTUNE_HEARTBEAT_S`` sets it).

A RUNNING trial is *stale* when its last beat is older than ``GRACE_FACTOR`` × the writer's own interval (60 s at
the default): by this node's wall clock, or by how long this process has watched the same ``seq`` without a new
beat. The first test compares two nodes' clocks, so they must agree to within the grace minus one interval
(45 s at the default; NTP keeps them within milliseconds). The second needs no clock agreement, so a dead worker
whose clock ran ahead cannot keep its trial alive for longer than one grace period of being watched.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

HEARTBEAT_ATTR = "heartbeat"
ENV = "CFGTUNE_HEARTBEAT_S"
DEFAULT_INTERVAL_S = 15.0
GRACE_FACTOR = 4.0
MIN_INTERVAL_S = 0.1


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    """``CFGTUNE_HEARTBEAT_S`` when it is a positive number, else ``default``."""
    raw = os.environ.get(ENV, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return max(value, MIN_INTERVAL_S) if value > 0 else default


def grace_s(interval: float) -> float:
    return GRACE_FACTOR * interval


def beat_value(worker: str, interval: float, seq: int) -> dict[str, Any]:
    return {"at": time.time(), "seq": seq, "every": interval, "worker": worker}


class Heartbeat:
    """A daemon thread that rewrites one trial's heartbeat every ``interval`` seconds while a ``with`` block runs.

    A beat that finds the trial already finished means another worker judged it stale and closed it: ``closed``
    turns true and the thread stops (the trial's result is then dropped by the caller). Other storage errors
    (a database restart) are retried at the next beat: a few missed beats are what the grace period is for.
    """

    def __init__(self, trial: optuna.Trial, worker: str, interval: float, seq: int = 0) -> None:
        self.trial = trial
        self.worker = worker
        self.interval = interval
        self.seq = seq
        self.closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Write one beat now; False when the trial was closed by someone else."""
        from optuna.exceptions import UpdateFinishedTrialError

        self.seq += 1
        try:
            self.trial.set_user_attr(HEARTBEAT_ATTR, beat_value(self.worker, self.interval, self.seq))
        except UpdateFinishedTrialError:
            self.closed = True
            return False
        except Exception:  # noqa: BLE001 - a storage hiccup: the next beat tries again
            return True
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.beat():
                return

    def __enter__(self) -> Heartbeat:  # noqa: PYI034 - final in practice
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"cfgtune-heartbeat-{self.trial.number}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(timeout=max(5.0, 2 * self.interval))
            self._thread = None


@dataclass
class Beat:
    at: float  # the writer's wall clock
    seq: int
    every: float
    worker: str


def read_beat(trial: FrozenTrial, default_interval: float = DEFAULT_INTERVAL_S) -> Beat:
    """The trial's last beat; a trial with none yet (just asked, or written by an older cfgtune) counts from its
    start time with the default interval."""
    raw = trial.user_attrs.get(HEARTBEAT_ATTR)
    worker = str(trial.user_attrs.get("worker") or "")
    if isinstance(raw, dict):
        try:
            return Beat(float(raw["at"]), int(raw["seq"]), float(raw.get("every") or default_interval),
                        str(raw.get("worker") or worker))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            pass
    start = trial.datetime_start
    at = start.timestamp() if start else time.time()  # Optuna stores the asker's naive local time
    return Beat(at, -1, default_interval, worker)


class StaleWatch:
    """Decides which RUNNING trials of other workers have stopped beating; remembers what it has seen, for the
    clock-free test."""

    def __init__(self, default_interval: float = DEFAULT_INTERVAL_S) -> None:
        self.default_interval = default_interval
        self._seen: dict[int, tuple[int, float]] = {}  # trial number -> (seq, monotonic time it was first seen)

    def silent_for(self, trial: FrozenTrial) -> tuple[float, float, str]:
        """(seconds since the last beat, the grace for this trial, its worker)."""
        b = read_beat(trial, self.default_interval)
        now_mono = time.monotonic()
        seq, since = self._seen.get(trial.number, (None, now_mono))
        if seq != b.seq:
            since = now_mono
            self._seen[trial.number] = (b.seq, since)
        wall_age = time.time() - b.at
        watched = now_mono - since
        return max(wall_age, watched), grace_s(b.every), b.worker

    def stale_reason(self, trial: FrozenTrial) -> str | None:
        """Why the trial counts as abandoned, or None while its worker keeps beating."""
        age, grace, worker = self.silent_for(trial)
        if age <= grace:
            return None
        return (f"worker {worker or '?'} stopped sending heartbeats {age:.0f} s ago "
                f"(grace {grace:g} s = {GRACE_FACTOR:g} intervals)")  # fmt: skip

    def forget(self, number: int) -> None:
        self._seen.pop(number, None)
