"""Recovery: closing the trials of workers that stopped, so their points run again (once).

Each RUNNING trial carries a heartbeat (:mod:`tuner.search.heartbeat`). Every worker, on each turn of its loop,
closes the RUNNING trials of other workers that stopped beating (or, on the same host, whose process is gone) as
FAIL with a reason in their ``lost`` attribute: the first loss of a point makes an interrupted trial the planner
retries; a second one, a failed (``lost``) point that is not retried (it may be what kills the worker).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.search.heartbeat import StaleWatch
from tuner.search.records import LOST_ATTR, RUNNING, TrialRecord
from tuner.search.view import TrialView

if TYPE_CHECKING:
    import optuna


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class Recovery:
    """Which RUNNING trials are abandoned, and closing them; remembers the ones it judged (``stale``)."""

    def __init__(self, study: optuna.Study, me: str, interval_s: float, view: TrialView) -> None:
        self.study = study
        self.me = me
        self.view = view
        self.watch = StaleWatch(interval_s)
        self.stale: set[int] = set()  # RUNNING trials judged abandoned (closed, or being closed by someone)

    def live(self, r: TrialRecord) -> bool:
        """A RUNNING trial whose worker is still there."""
        return r.fate == RUNNING and r.number not in self.stale

    def abandoned(self, t: Any) -> tuple[str, str] | None:
        """(worker, why) for a RUNNING trial of another worker that stopped: on this host, a process that is gone
        (at once); anywhere, no heartbeat for the grace period."""
        who = str(t.user_attrs.get("worker", ""))
        if who == self.me:
            return None
        h, _, pid = who.rpartition(":")
        if h == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            return who, f"worker {who} is gone (process {pid} no longer exists on this host)"
        why = self.watch.stale_reason(t)
        return (who, why) if why else None

    def recover(self, trials: Sequence[Any]) -> int:
        """Close abandoned RUNNING trials as FAIL with a reason; returns how many this process closed."""
        import optuna

        running = optuna.trial.TrialState.RUNNING
        n = 0
        for t in trials:
            if t.state != running:
                self.watch.forget(t.number)
                continue
            verdict = self.abandoned(t)
            if verdict is None:
                continue
            who, why = verdict
            self.stale.add(t.number)
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
