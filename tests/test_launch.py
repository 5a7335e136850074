"""`cfgtune launch`: the LLaMA-Factory command for a tuned config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from launch_config import CONFIG

from tuner.cli.tune import cli
from tuner.launch.command import plan_launch

MIB = 1024**2


def test_deepspeed_on_one_gpu_forces_torchrun() -> None:
    plan = plan_launch(Path("tuned.yaml"), uses_deepspeed=True, gpus=1, environ={})
    assert plan.argv == ["llamafactory-cli", "train", "tuned.yaml"]
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "0", "FORCE_TORCHRUN": "1"}
    assert plan.shell() == "CUDA_VISIBLE_DEVICES=0 FORCE_TORCHRUN=1 llamafactory-cli train tuned.yaml"


def test_single_gpu_without_deepspeed_runs_plainly() -> None:
    plan = plan_launch(Path("t.yaml"), uses_deepspeed=False, gpus=None, environ={})
    assert plan.env == {} and plan.shell() == "llamafactory-cli train t.yaml"


def test_several_gpus_and_nodes() -> None:
    plan = plan_launch(Path("t.yaml"), uses_deepspeed=False, gpus=4, environ={}, nnodes=2, node_rank=1,
                       master_addr="10.0.0.1", master_port=29500)  # fmt: skip
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "FORCE_TORCHRUN": "1", "NNODES": "2", "NODE_RANK": "1",
                        "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}  # fmt: skip


def test_a_preset_cuda_visible_devices_is_kept_and_a_mismatch_noted() -> None:
    plan = plan_launch(Path("t.yaml"), uses_deepspeed=False, gpus=2, environ={"CUDA_VISIBLE_DEVICES": "3"})
    assert "CUDA_VISIBLE_DEVICES" not in plan.env
    assert plan.notes and "names 1 GPU(s), not 2" in plan.notes[0]


def test_launch_dry_run_prints_the_command_and_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no LLaMA-Factory needed for a dry run
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": "auto",
                                                  "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"}))
    (tmp_path / "tuned.yaml").write_text(CONFIG + "deepspeed: ds.json\n")
    result = CliRunner().invoke(cli, ["launch", "tuned.yaml", "--gpus", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "CUDA_VISIBLE_DEVICES=0 FORCE_TORCHRUN=1 llamafactory-cli train tuned.yaml"
    assert "CUDA_VISIBLE_DEVICES=0  # --gpus 1: the first 1 GPU(s)" in lines
    assert "FORCE_TORCHRUN=1  # DeepSpeed needs torchrun, even on one GPU" in lines


def test_dry_run_on_several_nodes_shows_every_variable_and_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    (tmp_path / "tuned.yaml").write_text(CONFIG)
    result = CliRunner().invoke(cli, ["launch", "tuned.yaml", "--gpus", "2", "--nnodes", "2", "--node-rank", "1",
                                      "--master-addr", "10.0.0.1", "--master-port", "29500", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for line in ("FORCE_TORCHRUN=1", "NNODES=2", "NODE_RANK=1", "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29500"):
        assert any(out.startswith(line + "  # ") for out in result.stdout.splitlines()), line
    assert "note: CUDA_VISIBLE_DEVICES=3 names 1 GPU(s), not 2; it is kept as set" in result.stderr
    bare = CliRunner().invoke(cli, ["launch", "tuned.yaml", "--dry-run"])
    assert bare.stdout.splitlines() == ["# environment: nothing set on top of yours", "llamafactory-cli train tuned.yaml"]


def test_launch_refuses_a_config_with_lint_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(CONFIG + "per_device_train_batch: 4\n")  # a misspelt key
    result = CliRunner().invoke(cli, ["launch", "bad.yaml", "--dry-run"])
    assert result.exit_code == 1
    assert "bad.yaml:17: KEY001 unknown key `per_device_train_batch`" in result.stderr
    assert "1 lint error(s); fix them or pass --force" in result.stderr
    assert "llamafactory-cli" not in result.stdout  # nothing was started or printed as if it would be
    forced = CliRunner().invoke(cli, ["launch", "bad.yaml", "--dry-run", "--force"])
    assert forced.exit_code == 0 and forced.stdout.strip().endswith("llamafactory-cli train bad.yaml")
    assert CliRunner().invoke(cli, ["launch", "bad.yaml", "--dry-run", "--no-lint"]).exit_code == 0  # the old name
    assert "--no-lint" not in CliRunner().invoke(cli, ["launch", "--help"]).output  # hidden


def test_lint_gate_stops_a_real_launch_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CFGTUNE_HOME", str(tmp_path / "home"))
    fake = tmp_path / "llamafactory-cli"
    fake.write_text("#!/usr/bin/env python3\nopen('started', 'w').write('yes')\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    (tmp_path / "bad.yaml").write_text(CONFIG + "per_device_train_batch: 4\n")
    assert CliRunner().invoke(cli, ["launch", "bad.yaml"]).exit_code == 1
    assert not (tmp_path / "started").exists() and not (tmp_path / "home").exists()
    forced = CliRunner().invoke(cli, ["launch", "bad.yaml", "--force", "--sample-interval", "0.05"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "started").exists() and (tmp_path / "home" / "history.jsonl").exists()


def test_launch_without_llamafactory_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "tuned.yaml").write_text(CONFIG)
    result = CliRunner().invoke(cli, ["launch", "tuned.yaml"])
    assert result.exit_code == 2
    assert "`llamafactory-cli` is not on PATH" in result.output and "pip install llamafactory" in result.output


def test_launch_missing_file_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["launch", "nope.yaml", "--dry-run"])
    assert result.exit_code == 2 and "nope.yaml" in result.output


