"""Run the training as a child process we watch but do not hide: its output streams through, Ctrl-C reaches it.

The child starts in its own session, so a Ctrl-C at the terminal reaches only us; we forward it to the child's
whole process group (``llamafactory-cli``, the ``torchrun`` it starts and every rank), exactly once, and keep
waiting so the trainer can save and stop. A second Ctrl-C escalates to SIGTERM and, after a grace period,
SIGKILL. Output is read through pipes by two threads that write every chunk straight to our own stdout/stderr
as it arrives and keep the last :data:`TAIL_BYTES` of each, which is where an out-of-memory error is looked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

TAIL_BYTES = 64 * 1024
#: After the second Ctrl-C (SIGTERM sent), how long the training has before SIGKILL.
KILL_GRACE_S = 15.0


@dataclass
class RunResult:
    exit_code: int  # the child's code; 128+N when a signal N ended it
    signal: int | None  # the signal that ended the child, if one did
    stdout_tail: str
    stderr_tail: str
    started_at: float  # time.time()
    duration_s: float
    pid: int
    forwarded: list[str] = field(default_factory=list)  # signals we sent, in order ("SIGINT", "SIGTERM", ...)

    @property
    def tail(self) -> str:
        return self.stdout_tail + "\n" + self.stderr_tail


class _Tee(threading.Thread):
    """Copies a pipe to a stream chunk by chunk (progress bars included) and keeps a bounded tail."""

    def __init__(self, pipe: IO[bytes], sink: Any, limit: int = TAIL_BYTES) -> None:
        super().__init__(daemon=True, name="cfgtune-tee")
        self.pipe = pipe
        self.sink = sink
        self.limit = limit
        self.tail = bytearray()

    def _write(self, chunk: bytes) -> None:
        try:
            buf = getattr(self.sink, "buffer", None)
            if buf is not None:
                self.sink.flush()  # keep our own earlier text lines ahead of the child's bytes
                buf.write(chunk)
                buf.flush()
            else:
                self.sink.write(chunk.decode("utf-8", "replace"))
                self.sink.flush()
        except (OSError, ValueError):  # our stdout went away (a closed pipe): keep draining the child
            pass

    def run(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._write(chunk)
            self.tail += chunk
            if len(self.tail) > 2 * self.limit:
                del self.tail[: len(self.tail) - self.limit]
        self.pipe.close()

    def text(self) -> str:
        return bytes(self.tail[-self.limit :]).decode("utf-8", "replace")


def exit_code_of(returncode: int) -> int:
    """A shell's exit status for a child's return code: a signal death N is 128+N (Ctrl-C: 130)."""
    return 128 - returncode if returncode < 0 else returncode


class _Forwarder:
    """Our SIGINT/SIGTERM handlers while the child runs: forward, then escalate.

    They are installed before the child starts: a caught signal is reset to the default in the child at
    ``exec``, whereas an ignored one (a background job's SIGINT) would stay ignored and Ctrl-C could not stop it.
    """

    def __init__(self, grace_s: float, say: Callable[[str], None]) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.grace_s = grace_s
        self.say = say
        self.count = 0
        self.pending: int | None = None  # a signal that came before the child existed
        self.sent: list[str] = []
        self._timer: threading.Timer | None = None
        self._tree: list[Any] = []  # the child's descendants when SIGTERM went out (psutil processes)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        if self.pending is not None:
            self.count = 0
            self.handle(self.pending, None)

    def _kill(self, sig: int) -> None:
        if self.proc is None:
            return
        if sig == signal.SIGKILL:
            # torchrun starts each rank in a session of its own, and cannot pass a SIGKILL on: every process of
            # the tree gets it, those seen when SIGTERM went out too (orphans cannot be found from a dead leader).
            from tuner.trial.runner import descendants, signal_all

            # Recorded before it is sent: the main thread may see the child die and judge the run before this
            # timer thread gets to run again, and a SIGKILL cfgtune did not record reads as the kernel's OOM killer.
            self.sent.append(signal.SIGKILL.name)
            signal_all(self.proc.pid, [*self._tree, *descendants(self.proc.pid)], signal.SIGKILL)
            return
        name = signal.Signals(sig).name
        self.sent.append(name)  # before it is sent, as above
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            self._unsend(name)
            return
        except PermissionError:  # pragma: no cover - a group we cannot signal: the child alone
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                self._unsend(name)
                return

    def _unsend(self, name: str) -> None:
        """Take back the last record of ``name``: the process was gone and nothing was sent."""
        last = len(self.sent) - 1 - self.sent[::-1].index(name)
        del self.sent[last]

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.proc is None:
            self.pending = signum
            return
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self._kill(signum)
            self.say(f"{name}: forwarded to the training (process group {self.proc.pid}); waiting for it to stop "
                     f"cleanly (press Ctrl-C again to terminate it)")  # fmt: skip
        elif self.count == 2:
            from tuner.trial.runner import descendants

            self._tree = descendants(self.proc.pid)
            self._kill(signal.SIGTERM)
            self.say(f"{name} again: sent SIGTERM; SIGKILL in {self.grace_s:g} s unless it stops (Ctrl-C again: now)")
            self._timer = threading.Timer(self.grace_s, self._kill, args=(signal.SIGKILL,))
            self._timer.daemon = True
            self._timer.start()
        else:
            self.say(f"{name} a third time: sent SIGKILL")
            self._kill(signal.SIGKILL)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def run_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    on_start: Callable[[int], None] | None = None,
    say: Callable[[str], None] | None = None,
    grace_s: float = KILL_GRACE_S,
    stdout: Any = None,
    stderr: Any = None,
) -> RunResult:
    """Start ``argv``, stream its output, forward signals, and wait; ``on_start(pid)`` lets a monitor attach.

    Raises OSError when the program cannot be started.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr

    def _say(msg: str) -> None:
        (say or (lambda m: print(f"cfgtune launch: {m}", file=err, flush=True)))(msg)

    forwarder = _Forwarder(grace_s, _say)
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, forwarder.handle)
    started_at = time.time()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        tees = [_Tee(proc.stdout, out), _Tee(proc.stderr, err)]
        for t in tees:
            t.start()
        if on_start is not None:
            on_start(proc.pid)
        forwarder.started(proc)
        returncode = proc.wait()
    finally:
        forwarder.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for t in tees:
        t.join(timeout=5)
    duration = time.monotonic() - t0
    return RunResult(
        exit_code=exit_code_of(returncode),
        signal=-returncode if returncode < 0 else None,
        stdout_tail=tees[0].text(),
        stderr_tail=tees[1].text(),
        started_at=started_at,
        duration_s=duration,
        pid=proc.pid,
        forwarded=forwarder.sent,
    )
