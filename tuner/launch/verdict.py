"""Was the memory prediction right? The observed peak of a real run against the estimate and the tuned trial.

Pure functions on numbers and text, so every wording is unit-tested. Percentages are always "prediction against
what the run needed": -23% means the prediction was 23% short. A run that ran out of memory needed *at least*
the point where it failed: torch's own message (``this process has X in use``, ``tried to allocate Y``) when it
is in the output, else the device's capacity (a 0.5 s sampler can miss the last allocation), else the sampled
peak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tuner.search.sizes import format_bytes, parse_size

#: Lines that mean a GPU ran out of memory (torch, cuBLAS, NCCL, DeepSpeed).
_GPU_OOM = re.compile(
    r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|OutOfMemoryError: CUDA|CUBLAS_STATUS_ALLOC_FAILED"
    r"|cudaErrorMemoryAllocation|NCCL[^\n]*(?:out of memory|Failed to CUDA calloc)",
    re.IGNORECASE,
)
#: Lines that mean the host ran out (Python's MemoryError, torchrun reporting a rank killed by SIGKILL).
_HOST_OOM = re.compile(r"^MemoryError\b|\bMemoryError: |Signal 9 \(SIGKILL\) received|exitcode\s*:\s*-9\b", re.MULTILINE)
_IN_USE = re.compile(r"this process has ([\d.]+) ([KMGT]i?B) memory in use", re.IGNORECASE)
_TRIED = re.compile(r"Tried to allocate ([\d.]+) ([KMGT]i?B)", re.IGNORECASE)


def detect_oom(tail: str, *, signal: int | None, forwarded: list[str] | None = None) -> str | None:
    """Why this run is judged out of memory, or None: torch's error in the output, or a SIGKILL we did not send."""
    if _GPU_OOM.search(tail):
        return "CUDA out of memory in the output"
    if signal == 9 and "SIGKILL" not in (forwarded or []):
        return "killed by SIGKILL that cfgtune did not send (the kernel's OOM killer)"
    if _HOST_OOM.search(tail):
        return "the host ran out of memory (MemoryError / a rank killed by SIGKILL)"
    return None


def torch_oom_need(tail: str) -> int | None:
    """What the failing rank needed when torch raised: in use + the allocation that failed (last OOM in the tail)."""
    in_use = list(_IN_USE.finditer(tail))
    tried = list(_TRIED.finditer(tail))
    if not in_use:
        return None
    need = _bytes(in_use[-1])
    if tried:
        need += _bytes(tried[-1])
    return need


def _bytes(m: re.Match[str]) -> int:
    """A size torch printed ("78.00 GiB"); 0 for one under a byte, which parse_size refuses."""
    try:
        return parse_size("".join(m.groups()))
    except ValueError:
        return 0


def oom_floor(observed: int | None, *, tail: str = "", capacity: int | None = None) -> int | None:
    """The least the run needed, given that it ran out of memory."""
    parsed = torch_oom_need(tail)
    candidates = [v for v in (observed, parsed if parsed is not None else capacity) if v]
    return max(candidates) if candidates else None


def deviation(predicted: int, actual: int) -> float:
    """How far a prediction was off, relative to what was needed: -0.23 is 23% short."""
    return predicted / actual - 1


@dataclass(frozen=True)
class Reference:
    """A prediction to hold the run against."""

    name: str  # "the estimate", "trial #7"
    verb: str  # "said", "measured"
    bytes: int | None
    missing: str = ""  # shown when bytes is None, e.g. "no trial measurement (not tuned by cfgtune auto)"
    detail: str = ""  # how it was obtained, for the JSON


@dataclass
class Verdict:
    oom: bool
    actual_bytes: int | None  # the observed peak, or for an OOM the least the run needed
    headline: str
    lines: list[str] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # the references that under-predicted an OOM

    def to_dict(self) -> dict[str, Any]:
        return {"oom": self.oom, "actual_bytes": self.actual_bytes, "headline": self.headline, "lines": self.lines,
                "comparisons": self.comparisons, "under_predicted": self.wrong}  # fmt: skip


def _compare(refs: list[Reference], actual: int | None) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    parts: list[str] = []
    rows: list[dict[str, Any]] = []
    under: list[str] = []
    for r in refs:
        if r.bytes is None:
            parts.append(r.missing or f"no {r.name}")
            rows.append({"name": r.name, "bytes": None, "deviation": None, "ratio": None, "detail": r.missing})
            continue
        if actual:
            dev = deviation(r.bytes, actual)
            parts.append(f"{r.name} {r.verb} {format_bytes(r.bytes)} ({dev:+.0%})")
            rows.append({"name": r.name, "bytes": r.bytes, "deviation": round(dev, 4), "ratio": round(actual / r.bytes, 4),
                         "detail": r.detail})  # fmt: skip
            if r.bytes < actual:
                under.append(r.name)
        else:
            parts.append(f"{r.name} {r.verb} {format_bytes(r.bytes)}")
            rows.append({"name": r.name, "bytes": r.bytes, "deviation": None, "ratio": None, "detail": r.detail})
    return parts, rows, under


def _who(under: list[str], known: list[str]) -> str:
    if not known:
        return "there was no prediction to compare with"
    if len(under) == len(known):
        return "both under-predicted" if len(known) == 2 else f"{under[0]} under-predicted"
    if not under:
        return ("neither prediction was below it: something else used the memory (another process on the device, "
                "or a phase neither covers)" if len(known) == 2 else f"{known[0]} was not below it")  # fmt: skip
    right = [k for k in known if k not in under]
    return f"{', '.join(under)} under-predicted; {', '.join(right)} did not"


def judge(
    *,
    observed: int | None,
    refs: list[Reference],
    oom_reason: str | None,
    tail: str = "",
    capacity: int | None = None,
    where: str = "",
    exit_code: int = 0,
    stopped_by: str | None = None,
) -> Verdict:
    """Compare a run's observed peak (per device) with the predictions; for an OOM, name which one was wrong."""
    known = [r.name for r in refs if r.bytes is not None]
    if oom_reason:
        need = oom_floor(observed, tail=tail, capacity=capacity)
        parts, rows, under = _compare(refs, need)
        head = f"the run ran out of memory at {format_bytes(need)}" if need else "the run ran out of memory"
        headline = f"{head}; {', '.join(parts)}: {_who(under, known) if need else 'no figure to compare with'}"
        why = [f"out of memory: {oom_reason}"]
        if observed is not None and need is not None and need > observed:
            why.append(f"the sampled peak was {format_bytes(observed)}; the failing allocation pushed it past {format_bytes(need)}")
        return Verdict(True, need, headline, why, rows, under)
    parts, rows, under = _compare(refs, observed)
    if observed is None:
        headline = f"no memory figure was observed; {', '.join(parts)}"
    else:
        headline = f"observed peak {format_bytes(observed)}{f' ({where})' if where else ''}; {', '.join(parts)}"
    lines: list[str] = []
    for row in rows:
        if row["ratio"] is not None and row["name"].startswith("trial"):
            r = row["ratio"]
            lines.append(f"the run peaked at {r:.2f}x {row['name']}'s measurement; a trial runs a few training steps, so "
                         "evaluation and checkpoint saving (which it does not do) can push a real run higher")  # fmt: skip
    if stopped_by:
        lines.append(f"the run was stopped early ({stopped_by}): the peak covers only what ran")
    elif exit_code != 0:
        lines.append(f"the training failed with exit code {exit_code} (not out of memory); see its output above")
    return Verdict(False, observed, headline, lines, rows, [])
