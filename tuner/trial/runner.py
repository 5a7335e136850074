"""Run one trial in a child process and turn whatever happens to it into a :class:`TrialResult`.

The child runs in a new session (its own process group), so a timeout or a memory watchdog can end it together
with everything it started (torchrun's ranks, DataLoader workers); when it is gone, its GPU memory is free again.
A new session also means the child does not die with its parent: on Linux it asks the kernel for SIGTERM when the
parent goes (``PR_SET_PDEATHSIG``), so a SIGKILLed ``cfgtune worker`` does not leave a trial holding the GPU
(torchrun passes the SIGTERM on to its ranks). The kernel sends it when the *thread* that started the child
exits, not the process: call :func:`run_trial` from a thread that outlives the trial (the search loop runs it
from the main thread).
Nothing here raises for a failed trial: an OOM, a crash, a kill, a hang or a broken setup is a status with a reason,
and the study goes on.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.trial.spec import TrialResult, TrialSpec
from tuner.trial.throughput import Throughput, measure_throughput

__all__ = ["Throughput", "classify_exit", "measure_throughput", "run_trial", "worker_command"]

#: On the CPU, the parent kills a trial when one of its processes' RSS passes this multiple of the budget.
WATCHDOG_FACTOR = 1.5
POLL_S = 0.1
TERM_GRACE_S = 5.0
STDERR_TAIL_CHARS = 4000

_OOM_PATTERNS = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED", "out of memory")
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\)|File \"|\s|During handling|The above exception|\[rank\d+\]:?\s*$|"
    r"W\d{4} |I\d{4} |E\d{4} |warnings\.warn|.*Warning:|\*{5,}|-{5,}|={5,})"
)


def _package_root() -> str:
    """The directory that holds the ``tuner`` package, so the child imports this same copy."""
    import tuner

    return str(Path(tuner.__file__).resolve().parent.parent)


def uses_torchrun(spec: TrialSpec) -> bool:
    """Several processes, or DeepSpeed (which wants torchrun's rendezvous even on one GPU, as LLaMA-Factory does)."""
    return spec.world_size > 1 or spec.zero_stage is not None


def worker_command(spec: TrialSpec, spec_path: Path, out_path: Path, python: str = sys.executable) -> list[str]:
    args = ["-m", "tuner.trial.worker", "--spec", str(spec_path), "--out", str(out_path)]
    if uses_torchrun(spec):
        return [python, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                "--nproc_per_node", str(spec.world_size), *args]
    return [python, *args]


PR_SET_PDEATHSIG = 1
_prctl: Any = None


def _resolve_prctl() -> Any:
    """libc's prctl, looked up in the parent: the forked child must not load libraries (another thread of the
    parent, a heartbeat, may hold the loader's lock at the moment of the fork)."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            fn = ctypes.CDLL(None, use_errno=True).prctl
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            _prctl = fn
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def die_with_parent_hook() -> Any:
    """A ``preexec_fn`` that makes the child get SIGTERM when this thread exits (Linux), else None."""
    prctl = _resolve_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


#: CPU trials: OpenMP threads that spin while they wait make every parallel region of a step wait for a
#: scheduler quantum whenever another process holds a core. On a shared 2-core machine a tiny model's step took
#: 1.28 s with spinning threads and 0.045 s with sleeping ones (25x), the same for every configuration, which
#: hides the differences a trial is there to measure. Sleeping threads cost little on a quiet machine. A value
#: the user set wins.
CPU_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def _child_env(env: Mapping[str, str] | None, device: str = "cuda") -> dict[str, str]:
    out = {**os.environ, **(env or {})}
    if device == "cpu":
        for k, v in CPU_THREAD_ENV.items():
            out.setdefault(k, v)
    root = _package_root()
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        out["PYTHONPATH"] = os.pathsep.join([root, *paths])
    # Trials never download anything, and their logs should not drown the error that matters.
    out.setdefault("HF_HUB_OFFLINE", "1")
    out.setdefault("TRANSFORMERS_OFFLINE", "1")
    out.setdefault("TRANSFORMERS_VERBOSITY", "error")
    out.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


def _largest_rss(pid: int) -> int:
    """The largest RSS among a process and its descendants: the budget is per rank, as it is per GPU."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    largest = 0
    for p in procs:
        try:
            largest = max(largest, p.memory_info().rss)
        except psutil.Error:
            pass
    return largest


def descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def signal_all(pgid: int, procs: list[Any], sig: signal.Signals) -> None:
    """``sig`` to the child's group and to each descendant and its own group: torchrun starts every rank in a
    new session, so the child's group alone would miss them."""
    groups = {pgid}
    for p in procs:
        try:
            groups.add(os.getpgid(p.pid))
        except (ProcessLookupError, PermissionError):
            pass
    for g in groups:
        if g == os.getpgrp():  # never our own group
            continue
        try:
            os.killpg(g, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.send_signal(sig)
        except Exception:  # noqa: BLE001, S110 - already gone, or not ours to signal
            pass


def _kill_group(pgid: int, proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child and everything below it, then SIGKILL to whatever is left."""
    import psutil

    procs = descendants(proc.pid)  # before the leader dies: orphans cannot be found from it afterwards
    signal_all(pgid, procs, signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(procs, timeout=0.5)
    procs = alive + [p for p in descendants(proc.pid) if p not in alive]
    signal_all(pgid, procs, signal.SIGKILL)
    try:
        proc.kill()
        proc.wait(timeout=5.0)
    except (OSError, subprocess.TimeoutExpired):
        pass
    psutil.wait_procs(procs, timeout=5.0)


def _tail(path: Path, limit: int = STDERR_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_meaningful_line(stderr: str) -> str:
    """The line that says what went wrong: the last exception line, else the last line that is not noise."""
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        text = re.sub(r"^\[rank\d+\]:\s*", "", ln)
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?", text):
            return text.strip()
    for ln in reversed(lines):
        if not _NOISE.match(ln):
            return ln.strip()
    return lines[-1].strip() if lines else ""


def _signal_name(returncode: int) -> str | None:
    num = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
    if num is None:
        return None
    try:
        return signal.Signals(num).name
    except ValueError:
        return None


def classify_exit(returncode: int, stderr_tail: str, result: TrialResult | None) -> TrialResult:
    """What a finished child amounts to, when no timeout or watchdog ended it."""
    if result is not None:
        if result.status != "ok" and not result.reason:
            result.reason = last_meaningful_line(stderr_tail)
        return result
    if any(p in stderr_tail for p in _OOM_PATTERNS[:3]) or "CUDA error: out of memory" in stderr_tail:
        return TrialResult(status="oom", reason=last_meaningful_line(stderr_tail) or "CUDA out of memory")
    sig = _signal_name(returncode)
    if sig == "SIGKILL":
        reason = "the trial process was killed (SIGKILL): the host may have run out of memory"
        line = last_meaningful_line(stderr_tail)
        return TrialResult(status="crash", reason=f"{reason}; {line}" if line else reason)
    if sig is not None:
        line = last_meaningful_line(stderr_tail)
        return TrialResult(status="crash", reason=f"the trial process died of {sig}" + (f"; {line}" if line else ""))
    if returncode != 0:
        line = last_meaningful_line(stderr_tail)
        return TrialResult(status="crash", reason=line or f"the trial process exited with code {returncode}")
    return TrialResult(status="crash", reason="the trial process exited without writing a result")


def _read_result(out_path: Path, spec: TrialSpec) -> TrialResult | None:
    """The result rank 0 wrote, else the first failure another rank wrote."""
    candidates = [out_path] + [out_path.with_name(f"{out_path.name}.rank{r}") for r in range(1, spec.world_size)]
    for path in candidates:
        if path.exists():
            try:
                return TrialResult.read(path)
            except (OSError, ValueError, TypeError):
                continue
    return None


@dataclass
class _Outcome:
    returncode: int | None = None
    timed_out: bool = False
    watchdog_rss: int | None = None


def _supervise(proc: subprocess.Popen[bytes], spec: TrialSpec, timeout_s: float) -> _Outcome:
    """Wait for the child, killing its group on a timeout or (CPU) when it passes the memory watchdog."""
    outcome = _Outcome()
    deadline = time.monotonic() + timeout_s
    limit = spec.memory_limit_bytes
    watch = spec.device == "cpu" and bool(limit)
    try:
        while True:
            try:
                outcome.returncode = proc.wait(timeout=POLL_S)
                # The leader is done; anything it left in its group (a rank torchrun lost track of) goes too.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return outcome
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                outcome.timed_out = True
                break
            if watch:
                rss = _largest_rss(proc.pid)
                if rss > WATCHDOG_FACTOR * limit:  # type: ignore[operator]
                    outcome.watchdog_rss = rss
                    break
    except BaseException:
        # Ctrl-C reaches only our process group, not the child's new session: end the child before leaving.
        _kill_group(proc.pid, proc)
        raise
    _kill_group(proc.pid, proc)
    outcome.returncode = proc.returncode
    return outcome


def run_trial(
    spec: TrialSpec,
    *,
    timeout_s: float,
    workdir: Path,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> TrialResult:
    """Run ``spec`` in a child process (torchrun for several GPUs or DeepSpeed) and return its result.

    ``workdir`` receives ``spec.json``, ``result.json``, ``stdout.log`` and ``stderr.log``. ``env`` holds variables
    set for the child on top of this process's environment (``PYTORCH_CUDA_ALLOC_CONF``, ``CUDA_VISIBLE_DEVICES``).
    ``wall_s`` is the whole trial, launch included (the worker's own time is ``extra["worker_wall_s"]``). Never
    raises for a failed trial; a result's ``extra`` carries the stderr tail of a failure and the command line.
    """
    start = time.monotonic()
    try:
        workdir = Path(workdir).resolve()  # the child runs in workdir: relative paths would break
        workdir.mkdir(parents=True, exist_ok=True)
        spec_path, out_path = workdir / "spec.json", workdir / "result.json"
        for stale in [out_path, *workdir.glob("result.json.rank*")]:
            stale.unlink(missing_ok=True)
        spec.write(spec_path)
        cmd = worker_command(spec, spec_path, out_path, python)
        stderr_path = workdir / "stderr.log"
        with open(workdir / "stdout.log", "wb") as out_fh, open(stderr_path, "wb") as err_fh:
            proc = subprocess.Popen(
                cmd, stdout=out_fh, stderr=err_fh, stdin=subprocess.DEVNULL, env=_child_env(env, spec.device),
                cwd=str(workdir), start_new_session=True,
                preexec_fn=die_with_parent_hook(),  # noqa: PLW1509 - only a pre-resolved prctl call runs there
            )
            outcome = _supervise(proc, spec, timeout_s)
        tail = _tail(stderr_path)
        written = _read_result(out_path, spec)
        if outcome.timed_out and written is not None:
            # The worker judged the trial, then hung on its way out (a wedged CUDA context, a stuck collective).
            result = classify_exit(0, tail, written)
            result.extra["hung_at_exit"] = True
        elif outcome.timed_out:
            result = TrialResult(
                status="timeout",
                reason=f"no result after {timeout_s:g} s: the trial was stopped (hung, or too slow for --trial-timeout)",
            )
        elif outcome.watchdog_rss is not None:
            limit = spec.memory_limit_bytes or 0
            result = TrialResult(
                status="over_budget",
                reason=f"RSS {outcome.watchdog_rss / 1024**3:.2f} GiB passed {WATCHDOG_FACTOR:g}x the memory budget "
                f"{limit / 1024**3:.2f} GiB: the trial was stopped",
                peak_bytes=outcome.watchdog_rss,
                peak_rss_bytes=outcome.watchdog_rss,
            )
        else:
            result = classify_exit(outcome.returncode or 0, tail, written)
        if result.status != "ok":
            result.extra.setdefault("stderr_tail", tail[-2000:])
            result.extra.setdefault("returncode", outcome.returncode)
        result.extra.setdefault("command", " ".join(cmd))
        if result.wall_s:
            result.extra.setdefault("worker_wall_s", result.wall_s)
        result.wall_s = time.monotonic() - start
        return result
    except Exception as exc:  # noqa: BLE001 - never take the study down
        return TrialResult(status="error", reason=f"could not run the trial: {type(exc).__name__}: {exc}",
                           wall_s=time.monotonic() - start)
