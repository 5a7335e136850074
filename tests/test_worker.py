"""`cfgtune worker`: joining a shared `cfgtune auto` study from another node."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.trial.spec import TrialResult, TrialSpec

MIB = 1024**2


def _runner(spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
    peak = (300 + 5 * spec.per_device_train_batch_size * (1 if spec.gradient_checkpointing else 3)) * MIB
    return TrialResult(status="ok", peak_bytes=peak, micro_step_s=0.01 * spec.per_device_train_batch_size**0.5,
                       optimizer_step_s=0.001, wall_s=0.01)  # fmt: skip


def test_worker_joins_a_study_and_shares_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    from tuner.models.arch import Architecture
    from tuner.search.space import SearchSpace, micro_batch_choices
    from tuner.search.study import META_KEY, Budget, Search, open_study, read_records
    from tuner.search.view import PlainView

    arch = Architecture(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=128, vocab_size=512)  # fmt: skip
    sp = SearchSpace(template=TrialSpec(arch=arch, cutoff_len=32, device="cpu", memory_limit_bytes=900 * MIB),
                     global_batch=8, micro_batches=micro_batch_choices(8, 1), ranks=(8, 16))  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    meta = {"model": "tiny", "device": "cpu", "ceiling_bytes": 900 * MIB, "memory_total_bytes": 1000 * MIB,
            "baseline": sp.baseline().to_dict()}  # fmt: skip
    study, _ = open_study(storage, "shared", space=sp, meta=meta, resume=False)
    study.set_user_attr(f"{META_KEY}.n_trials", 5)
    Search(study=study, space=sp, ceiling_bytes=900 * MIB, runner=_runner, trials_dir=tmp_path / "head",
           budget=Budget(n_trials=2), view=PlainView(io.StringIO())).run()  # the head node's share  # fmt: skip
    monkeypatch.setattr("tuner.trial.runner.run_trial", _runner)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--storage", storage, "--study", "shared"])
    assert result.exit_code == 0, result.output
    assert "ran 3 trial(s)" in result.output and "stopped: --n-trials 5 reached" in result.output
    records = read_records(study)
    assert sum(r.ran for r in records) == 5
    assert sum(r.origin == "baseline" for r in records) == 1
    keys = [r.point.key for r in records if r.ran]
    assert len(keys) == len(set(keys))  # the worker never re-ran what the head measured
    assert (tmp_path / "cfgtune-worker" / "trials").is_dir()


def test_worker_for_a_missing_study_is_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = CliRunner().invoke(cli, ["worker", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study", "nope"])
    assert result.exit_code == 2 and "no study 'nope'" in result.output


def test_bad_storage_url_is_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = CliRunner().invoke(cli, ["worker", "--storage", "not a url", "--study", "s"])
    assert result.exit_code == 2 and "is not a storage URL" in result.output
