"""Findings that hold only for some supported releases: with the default target they are info and ask for the
version, since the linter cannot know which release a file is meant for; with a stated target they keep their
severity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tuner.lint.rule import Severity
from tuner.lint.testing import lint_text

OLD = (
    "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\ndataset: alpaca_en_demo\n"
    "template: qwen\nbf16: true\nevaluation_strategy: steps\neval_steps: 100\nval_size: 0.1\n"
)


def _check(tmp_path: Path, text: str, *flags: str) -> dict:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.entry", "check", "--isolated", "--format", "json", *flags, str(p)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    return {"rc": out.returncode, "report": json.loads(out.stdout)}


def test_a_key_of_older_releases_is_info_under_the_default_target(tmp_path: Path) -> None:
    res = _check(tmp_path, OLD)
    (v,) = [v for v in res["report"]["files"][0]["violations"] if v["key"] == "evaluation_strategy"]
    assert v["severity"] == "info" and "--target-transformers" in v["message"]
    assert res["rc"] == 0


def test_the_same_key_is_an_error_for_a_stated_target(tmp_path: Path) -> None:
    res = _check(tmp_path, OLD, "--target-transformers", "5.6.0")
    (v,) = [v for v in res["report"]["files"][0]["violations"] if v["key"] == "evaluation_strategy"]
    assert v["severity"] == "error" and "--target-transformers" not in v["message"]
    assert res["rc"] == 1
    # a deprecated alias where the release still accepts it: it runs, so a warning
    res = _check(tmp_path, OLD, "--target-llamafactory", "0.8.3", "--target-transformers", "4.43.4")
    (v,) = [v for v in res["report"]["files"][0]["violations"] if v["key"] == "evaluation_strategy"]
    assert v["severity"] == "warning" and "deprecated" in v["message"]


def test_a_typo_is_an_error_whatever_the_target(tmp_path: Path) -> None:
    res = _check(tmp_path, OLD.replace("evaluation_strategy", "eval_strategy") + "lerning_rate: 1.0e-4\n")
    (v,) = [v for v in res["report"]["files"][0]["violations"] if v["key"] == "lerning_rate"]
    assert v["code"] == "KEY001" and v["severity"] == "error"


def test_api_targets_count_as_stated() -> None:
    # lint_text() builds its target in code: that is a stated target
    vs = [v for v in lint_text(OLD, select=["KEY001", "KEY002"]) if v.key == "evaluation_strategy"]
    assert vs and all(v.severity is Severity.ERROR for v in vs)


def test_hydra_object_specs_are_not_configs(tmp_path: Path) -> None:
    text = "_target_: mypkg.models.VLLMModel\nname: vllm_model\nmodel_name_or_path: /models/m\ntemplate: default\nuse_vllm: true\n"
    res = _check(tmp_path, text)
    assert res["rc"] == 0
    assert res["report"]["files"][0]["not_a_config"] is True
