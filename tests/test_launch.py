"""`cfgtune launch`: the LLaMA-Factory command for a tuned config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.launch.command import plan_launch

MIB = 1024**2
CONFIG = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_alpha: 32
lora_target: all
dataset: alpaca_en_demo
template: qwen
cutoff_len: 1024
output_dir: saves/q
per_device_train_batch_size: 4
gradient_accumulation_steps: 4
learning_rate: 1.0e-4
num_train_epochs: 1.0
bf16: true
"""


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


def test_launch_dry_run_prints_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": "auto",
                                                  "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"}))
    (tmp_path / "tuned.yaml").write_text(CONFIG + "deepspeed: ds.json\n")
    result = CliRunner().invoke(cli, ["launch", "tuned.yaml", "--gpus", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("CUDA_VISIBLE_DEVICES=0 FORCE_TORCHRUN=1 llamafactory-cli train tuned.yaml")


def test_launch_refuses_a_config_with_lint_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(CONFIG + "per_device_train_batch: 4\n")  # a misspelt key
    result = CliRunner().invoke(cli, ["launch", "bad.yaml", "--dry-run"])
    assert result.exit_code == 1
    assert "lint error" in result.output and "--no-lint" in result.output
    assert CliRunner().invoke(cli, ["launch", "bad.yaml", "--dry-run", "--no-lint"]).exit_code == 0


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


# -- worker -------------------------------------------------------------------------------------------------------
