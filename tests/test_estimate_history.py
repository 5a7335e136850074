"""The run history: where it lives, how it is appended and read, and how it calibrates `cfgtune estimate`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from launch_config import CONFIG

from tuner.cli.tune import cli
from tuner.launch.history import append_record, calibration, history_path, read_records

GIB = 1024**3


#: A stand-in for `llamafactory-cli` that "uses" 6000 MiB of GPU 0 for a moment (the fake NVML reads the file).
FAKE_GPU_CLI = """#!/usr/bin/env python3
import os, time
open(os.environ["FAKE_GPU_FILE"], "w").write("6000")
time.sleep(0.3)
print("done", flush=True)
"""


class FileNvml:
    """One fake H100 whose used memory is 500 MiB plus what the fake trainer wrote to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        used = (500 + (int(self.path.read_text() or 0) if self.path.exists() else 0)) * 1024**2
        return SimpleNamespace(total=81559 * 1024**2, free=81559 * 1024**2 - used, used=used)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CFGTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run(model: str = "m", hardware: str = "h100-sxm-80g", est: int = 10 * GIB, seen: int = 11 * GIB, **kw: Any) -> dict[str, Any]:
    rec = {"model": model, "hardware": hardware, "estimate_raw_bytes": est, "observed_peak_bytes": seen,
           "exit_code": 0, "oom": False}  # fmt: skip
    rec.update(kw)
    return rec


def test_history_path_respects_cfgtune_home_then_xdg_then_home() -> None:
    assert history_path({"CFGTUNE_HOME": "/x/y"}) == Path("/x/y/history.jsonl")
    assert history_path({"XDG_DATA_HOME": "/d"}) == Path("/d/cfgtune/history.jsonl")
    assert history_path({}) == Path.home() / ".local" / "share" / "cfgtune" / "history.jsonl"


def test_append_writes_one_line_per_run_and_reading_skips_corrupt_lines(home: Path) -> None:
    path = append_record(run(seen=12 * GIB))
    assert path == home / "history.jsonl"
    with open(path, "a") as fh:
        fh.write('{"model": "m", "truncated mid-wri\n[1, 2]\n\n')
    append_record(run(seen=13 * GIB))
    records, bad = read_records()
    assert [r["observed_peak_bytes"] for r in records] == [12 * GIB, 13 * GIB] and bad == 2
    assert all(r["version"] == 1 for r in records)
    assert read_records(home / "missing.jsonl") == ([], 0)


def test_calibration_is_the_median_ratio_of_matching_finished_runs() -> None:
    recs = [run(seen=11 * GIB), run(seen=12 * GIB), run(seen=9 * GIB),
            run(model="other", seen=30 * GIB), run(hardware="a100-sxm4-80g", seen=30 * GIB),
            run(seen=20 * GIB, exit_code=1), run(seen=25 * GIB, exit_code=130)]  # fmt: skip
    cal = calibration(recs, model="m", hardware="h100-sxm-80g")
    assert cal is not None and cal.runs == 3 and cal.oom_runs == 0
    assert cal.factor == pytest.approx(1.1)
    assert calibration(recs, model="nope", hardware="h100-sxm-80g") is None


def test_an_oom_run_is_a_lower_bound_that_raises_the_factor() -> None:
    ok = [run(seen=10 * GIB), run(seen=11 * GIB)]
    oom = run(seen=5 * GIB, needed_bytes=13 * GIB, oom=True, exit_code=1)
    cal = calibration([*ok, oom], model="m", hardware="h100-sxm-80g")
    assert cal is not None and cal.factor == pytest.approx(1.3) and cal.runs == 2 and cal.oom_runs == 1
    low_oom = run(needed_bytes=8 * GIB, oom=True, exit_code=1)
    cal = calibration([*ok, low_oom], model="m", hardware="h100-sxm-80g")
    assert cal is not None and cal.factor == pytest.approx(1.05)  # a bound below the median changes nothing
    assert cal.describe() == "2 real runs and 1 out-of-memory run (lower bounds)"


def _estimate(*args: str) -> Any:
    (Path.cwd() / "run.yaml").write_text(CONFIG)
    return CliRunner().invoke(cli, ["estimate", "run.yaml", "--hw", "h100", *args], catch_exceptions=False)


def test_estimate_prints_the_history_calibration_and_no_history_turns_it_off() -> None:
    raw = json.loads(_estimate("--json").stdout)
    assert raw["history"] is None
    model, peak = raw["model"], raw["peak_bytes"]
    for seen in (1.05, 1.08, 1.20):
        append_record(run(model=model, est=peak, seen=int(peak * seen)))
    append_record(run(model=model, hardware="a100-sxm4-80g", est=peak, seen=peak * 3))  # other hardware
    out = _estimate().stdout
    assert f"calibrated by 3 real runs on this model and hardware: ×1.08 → {peak * 1.08 / GIB:.1f} GiB" in out
    assert "fits under the 71.6 GiB ceiling" in out
    assert "calibrated by" not in _estimate("--no-history").stdout
    data = json.loads(_estimate("--json").stdout)
    assert data["history"]["runs"] == 3 and data["history"]["calibrated_peak_bytes"] == int(peak * 1.08)
    assert data["peak_bytes"] == peak  # the breakdown itself stays the estimator's


def test_a_launch_feeds_the_next_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: a (fake) run on a (fake) H100 is recorded, and `cfgtune estimate --hw h100` uses it."""
    import tuner.hardware.detect as detect_mod

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "llamafactory-cli").write_text(FAKE_GPU_CLI)
    (bindir / "llamafactory-cli").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GPU_FILE", str(tmp_path / "gpu0"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(detect_mod, "load_nvml", lambda: FileNvml(tmp_path / "gpu0"))
    (tmp_path / "run.yaml").write_text(CONFIG)
    launched = CliRunner().invoke(cli, ["launch", "run.yaml", "--sample-interval", "0.05"], catch_exceptions=False)
    assert launched.exit_code == 0, launched.output
    (rec,), _ = read_records()
    assert rec["hardware"] == "h100-sxm-80g" and rec["observed_peak_bytes"] == 6000 * 1024**2
    factor = rec["observed_peak_bytes"] / rec["estimate_raw_bytes"]
    out = _estimate().stdout
    assert f"calibrated by 1 real run on this model and hardware: ×{factor:.2f}" in out
