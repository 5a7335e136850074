"""A local record of real runs, so later estimates can be calibrated by what runs on this machine really used.

One JSON object per line in ``$CFGTUNE_HOME/history.jsonl`` (default ``$XDG_DATA_HOME/cfgtune/history.jsonl``,
i.e. ``~/.local/share/cfgtune/history.jsonl``). Each record is appended with a single ``write`` on a descriptor
opened with ``O_APPEND``, so two launches finishing at once do not interleave; a line that does not parse (a
crash mid-write, a hand edit) is skipped when reading, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

FILENAME = "history.jsonl"
VERSION = 1


def history_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CFGTUNE_HOME"):
        return Path(env["CFGTUNE_HOME"]).expanduser() / FILENAME
    base = Path(env["XDG_DATA_HOME"]).expanduser() if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base / "cfgtune" / FILENAME


def append_record(record: Mapping[str, Any], path: Path | None = None) -> Path:
    """Append one run; raises OSError when the file cannot be written."""
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"version": VERSION, **record}, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def read_records(path: Path | None = None) -> tuple[list[dict[str, Any]], int]:
    """The records, oldest first, and how many lines were skipped as unreadable."""
    path = path or history_path()
    try:
        raw = path.read_bytes()
    except OSError:
        return [], 0
    records: list[dict[str, Any]] = []
    bad = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


@dataclass(frozen=True)
class HistoryCalibration:
    """Observed/estimated over past runs of one model on one hardware."""

    factor: float
    runs: int  # finished runs whose ratio was used
    oom_runs: int  # runs that ran out of memory: their ratio is a lower bound
    ratios: tuple[float, ...]

    @property
    def total(self) -> int:
        return self.runs + self.oom_runs

    def describe(self) -> str:
        what = f"{self.runs} real run{'s' if self.runs != 1 else ''}"
        if self.oom_runs:
            what += f" and {self.oom_runs} out-of-memory run{'s' if self.oom_runs != 1 else ''} (lower bounds)"
        return what

    def to_dict(self) -> dict[str, Any]:
        return {"factor": round(self.factor, 4), "runs": self.runs, "oom_runs": self.oom_runs,
                "ratios": [round(r, 4) for r in self.ratios]}  # fmt: skip


def _ratio(rec: Mapping[str, Any], key: str) -> float | None:
    est, seen = rec.get("estimate_raw_bytes"), rec.get(key)
    if not isinstance(est, (int, float)) or not isinstance(seen, (int, float)) or est <= 0 or seen <= 0:
        return None
    return float(seen) / float(est)


def calibration(records: Iterable[Mapping[str, Any]], *, model: str, hardware: str) -> HistoryCalibration | None:
    """The factor to multiply the estimator's raw peak by, from past runs of this model on this hardware.

    It is the median of observed/estimated over runs that finished (exit 0, no OOM). A run that ran out of
    memory needed *at least* what it had when it failed, so its ratio is a lower bound: the factor is raised to
    the median of those bounds when it is below it. Runs that failed otherwise, or were stopped, are left out
    (their peak may never have been reached). None when no run matches.
    """
    points: list[float] = []
    bounds: list[float] = []
    for rec in records:
        if rec.get("model") != model or rec.get("hardware") != hardware:
            continue
        if rec.get("oom"):
            r = _ratio(rec, "needed_bytes")
            if r is not None:
                bounds.append(r)
        elif rec.get("exit_code") == 0:
            r = _ratio(rec, "observed_peak_bytes")
            if r is not None:
                points.append(r)
    if not points and not bounds:
        return None
    factor = median(points) if points else 0.0
    if bounds:
        factor = max(factor, median(bounds))
    return HistoryCalibration(factor, len(points), len(bounds), tuple(points + bounds))


def calibration_for(model: str, hardware: str, path: Path | None = None) -> HistoryCalibration | None:
    records, _ = read_records(path)
    return calibration(records, model=model, hardware=hardware)


def key_settings(data: Mapping[str, Any], zero_stage: int | None) -> dict[str, Any]:
    """The settings of a LLaMA-Factory config that decide its memory, as recorded with a run; a key the config
    leaves out has LLaMA-Factory's default (from the key schema)."""
    from tuner.config.schema import load_schema

    schema = load_schema()

    def get(key: str) -> Any:
        if key in data:
            return data[key]
        spec = schema.get(key)
        return spec.default_for(4) if spec else None  # these keys' defaults are the same under transformers 5

    ft = get("finetuning_type")
    ds = data.get("deepspeed")
    return {
        "stage": get("stage"),
        "finetuning_type": ft,
        "per_device_train_batch_size": get("per_device_train_batch_size"),
        "gradient_accumulation_steps": get("gradient_accumulation_steps"),
        "cutoff_len": get("cutoff_len"),
        "lora_rank": get("lora_rank") if ft == "lora" else None,
        "gradient_checkpointing": not bool(get("disable_gradient_checkpointing")),
        "liger": bool(get("enable_liger_kernel")),
        "deepspeed": ds if isinstance(ds, str) else ("inline" if ds else None),
        "zero_stage": zero_stage,
        "quantization_bit": get("quantization_bit"),
        "use_cpu": bool(get("use_cpu")),
    }
