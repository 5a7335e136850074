"""Where a tuned.yaml came from: a JSON sidecar ``tuned.cfgtune.json`` written by ``cfgtune auto``.

``cfgtune launch`` reads it to hold the real run against the chosen trial's measured peak and the calibrated
estimate. The sidecar keeps the sha256 of the YAML as written, so launch can tell a config the user has edited
since (the trial then measured something else, and launch says so).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".cfgtune.json"
VERSION = 1


def sidecar_path(config: Path) -> Path:
    """``tuned.yaml`` -> ``tuned.cfgtune.json``."""
    return config.with_name(config.stem + SUFFIX)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_provenance(config: Path, data: dict[str, Any]) -> Path:
    """Write the sidecar for ``config`` (already on disk); the sha256 is taken from the file itself."""
    from tuner.lint.fixes import write_atomic

    out = {"version": VERSION, "written_by": "cfgtune auto", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "config": config.name, "config_sha256": sha256_of(config), **data}  # fmt: skip
    path = sidecar_path(config)
    write_atomic(path, json.dumps(out, indent=2, default=str) + "\n")
    return path


def write_for_choice(prep: Any, record: Any, config: Path, deepspeed: Path | None = None) -> Path:
    """The sidecar for the trial ``cfgtune auto`` chose (a :class:`tuner.search.records.TrialRecord`)."""
    dev = prep.device
    return write_provenance(config, {
        "model": prep.model.name,
        "model_describe": prep.model.describe(),
        "hardware": dev.description,
        "hardware_profile": dev.profile,
        "device": dev.kind,
        "memory_total_bytes": dev.memory_total,
        "memory_method": dev.memory_method,
        "world_size": prep.space.world_size,
        "ceiling_bytes": prep.ceiling_bytes,
        "ceiling_fraction": prep.options.vram_ceiling,
        "deepspeed": deepspeed.name if deepspeed else None,
        "trial": {
            "number": record.number,
            "point": record.point.to_dict() if hasattr(record.point, "to_dict") else str(record.point),
            "peak_bytes": record.peak_bytes,
            "tokens_per_s": record.tokens_per_s,
            "predicted_bytes": record.predicted_bytes,
            "calibrated_bytes": record.calibrated_bytes,
            "prediction_basis": record.prediction_basis,
            "grad_accum": record.grad_accum,
        },
        "study": {"name": prep.study_name, "storage": prep.storage},
    })  # fmt: skip


@dataclass(frozen=True)
class Provenance:
    path: Path
    data: dict[str, Any]
    edited: bool  # the YAML no longer matches the sha256 the sidecar recorded

    def _trial(self, key: str) -> Any:
        trial = self.data.get("trial")
        return trial.get(key) if isinstance(trial, dict) else None

    @property
    def trial_number(self) -> int | None:
        v = self._trial("number")
        return v if isinstance(v, int) else None

    @property
    def trial_peak_bytes(self) -> int | None:
        v = self._trial("peak_bytes")
        return int(v) if isinstance(v, (int, float)) and v > 0 else None

    @property
    def estimate_bytes(self) -> tuple[int | None, str]:
        """The calibrated estimate of the chosen trial, else its raw estimate; and which it is."""
        cal, raw = self._trial("calibrated_bytes"), self._trial("predicted_bytes")
        if isinstance(cal, (int, float)) and cal > 0:
            basis = self._trial("prediction_basis") or "calibrated by the study's trials"
            return int(cal), f"calibrated ({basis})"
        if isinstance(raw, (int, float)) and raw > 0:
            return int(raw), "the estimator's raw number at tuning time"
        return None, ""


def read_provenance(config: Path) -> tuple[Provenance | None, str]:
    """The sidecar next to ``config``, or None and why not ("" when there simply is none)."""
    path = sidecar_path(config)
    if not path.is_file():
        return None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path}: unreadable ({exc}); ignored"
    if not isinstance(data, dict):
        return None, f"{path}: not a JSON object; ignored"
    try:
        edited = data.get("config_sha256") != sha256_of(config)
    except OSError:
        edited = True
    return Provenance(path, data, edited), ""
