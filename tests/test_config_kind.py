"""Config kinds: each YAML is linted against the command that will read it (train, export, chat, eval)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.config.kind import EVAL, EXPORT, INFER, TRAIN, detect_kind
from tuner.lint.testing import codes

EXPORT_YAML = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
adapter_name_or_path: saves/qwen2.5-7b/lora/sft
template: qwen
finetuning_type: lora
export_dir: output/qwen2.5-7b-sft-merged
export_size: 5
export_device: cpu
export_legacy_format: false
"""

CHAT_YAML = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
adapter_name_or_path: saves/qwen2.5-7b/lora/sft
template: qwen
infer_backend: vllm
finetuning_type: lora
"""

EVAL_YAML = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
template: fewshot
task: mmlu_test
lang: en
n_shot: 5
save_dir: saves/eval
batch_size: 4
"""

TRAIN_YAML = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
dataset: alpaca_en_demo
template: qwen
output_dir: saves/qwen/lora
"""


@pytest.mark.parametrize(
    ("text", "kind"),
    [(EXPORT_YAML, EXPORT), (CHAT_YAML, INFER), (EVAL_YAML, EVAL), (TRAIN_YAML, TRAIN), ("stage: pt\n", TRAIN)],
)
def test_detect_kind(text: str, kind: str) -> None:
    import yaml

    assert detect_kind(yaml.safe_load(text)).kind == kind


def test_export_dir_in_a_training_run_is_still_training() -> None:
    import yaml

    assert detect_kind(yaml.safe_load(TRAIN_YAML + "export_dir: out/merged\n")).kind == TRAIN
    # an export YAML that repeats the stage of the run it merges is still an export
    assert detect_kind(yaml.safe_load(EXPORT_YAML + "stage: sft\n")).kind == EXPORT


def test_stated_command_wins() -> None:
    assert detect_kind({"export_dir": "x"}, "train").kind == TRAIN
    assert detect_kind({}, "chat").kind == INFER


def test_training_rules_stay_off_export_and_chat_yamls() -> None:
    # PRAC007 ("nothing to run") and MODEL012 (vLLM backend in training) were reported on these files.
    assert "PRAC007" not in codes(EXPORT_YAML)
    assert "PRAC007" not in codes(CHAT_YAML)
    assert "MODEL012" not in codes(CHAT_YAML)
    # the same keys in a training run are still checked
    assert "PRAC007" in codes("stage: sft\nfinetuning_type: lora\ndataset: alpaca_en_demo\n")
    assert "MODEL012" in codes(TRAIN_YAML + "infer_backend: vllm\n")


def test_unknown_keys_are_judged_against_the_files_own_command() -> None:
    # `export_dir` belongs to export; `task` to eval: none is unknown where it belongs
    assert not [c for c in codes(EXPORT_YAML) if c.startswith("KEY")]
    assert not [c for c in codes(EVAL_YAML) if c.startswith("KEY")]  # batch_size is an eval key


def test_json_report_names_the_kind(tmp_path: Path) -> None:
    p = tmp_path / "merge.yaml"
    p.write_text(EXPORT_YAML)
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.entry", "check", "--isolated", "--format", "json", str(p)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    files = report["files"] if isinstance(report, dict) and "files" in report else report
    entry = files[0] if isinstance(files, list) else files
    assert entry.get("kind") == "export", report
