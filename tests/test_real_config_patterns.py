"""Minimal reproductions of the patterns found in real configs from public repositories.

Each test is one class of false positive or missed problem from the corpus behind ``benchmarks/real_configs.py``
(the files themselves stay out of this repository; ``benchmarks/RESULTS.md`` lists where they come from). The
configs here are written for the tests and only keep the keys that make the pattern.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tuner.config.versions import TargetVersions, Version
from tuner.lint.rule import Severity
from tuner.lint.testing import lint_result, lint_text

SFT = "model_name_or_path: {model}\nstage: {stage}\ndo_train: true\nfinetuning_type: {ft}\ndataset: a\ntemplate: {template}\nbf16: true\n"


def sft(model: str = "Qwen/Qwen2.5-7B-Instruct", stage: str = "sft", ft: str = "lora", template: str = "qwen") -> str:
    return SFT.format(model=model, stage=stage, ft=ft, template=template)


def _cli(tmp_path: Path, text: str, *flags: str, name: str = "run.yaml") -> tuple[int, list[dict[str, Any]]]:
    """``cfglint check --isolated --format json FILE`` as a pre-commit user runs it; returns (rc, violations)."""
    p = tmp_path / name
    p.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.entry", "check", "--isolated", "--format", "json", *flags, str(p)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)["files"][0]["violations"]


def _of(violations: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [v for v in violations if v["code"] == code]


def _sev(text: str, code: str, **options: Any) -> list[Severity]:
    return [v.severity for v in lint_text(text, select=[code], **options)]


# -- the launch directory: unknown unless stated ---------------------------------------------------------------
def test_a_deepspeed_path_that_does_not_resolve_here_is_info_until_the_launch_dir_is_given(tmp_path: Path) -> None:
    text = sft() + "deepspeed: configs/ds_z3.json\n"
    rc, vs = _cli(tmp_path, text)
    (v,) = _of(vs, "FILE002")
    assert rc == 0 and v["severity"] == "info" and "--data-root" in v["hint"]
    launch = tmp_path / "launch"
    launch.mkdir()
    rc, vs = _cli(tmp_path, text, "--data-root", str(launch))
    (v,) = _of(vs, "FILE002")
    assert v["severity"] == "warning"
    (launch / "configs").mkdir()
    (launch / "configs" / "ds_z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    rc, vs = _cli(tmp_path, text, "--data-root", str(launch), "--nnodes", "2", "--gpus", "8")
    assert _of(vs, "FILE002") == []


def test_data_root_must_be_a_directory(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text(sft())
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.entry", "check", "--isolated", "--data-root", str(tmp_path / "nope"), str(p)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "not a directory" in out.stderr and "Traceback" not in out.stderr


def test_data_root_from_the_settings_file_is_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "lf" / "ds").mkdir(parents=True)
    (tmp_path / "lf" / "ds" / "z2.json").write_text('{"zero_optimization": {"stage": 2}}')
    (tmp_path / "pyproject.toml").write_text('[tool.cfglint]\ndata-root = "lf"\n')
    p = tmp_path / "run.yaml"
    p.write_text(sft() + "deepspeed: ds/z2.json\n")
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.entry", "check", "--format", "json", str(p)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert _of(json.loads(out.stdout)["files"][0]["violations"], "FILE002") == []


# -- templates by release --------------------------------------------------------------------------------------
def test_a_template_removed_in_the_default_release_is_info_and_fine_for_its_own_release(tmp_path: Path) -> None:
    text = sft("baichuan-inc/Baichuan2-7B-Chat", template="baichuan2")
    rc, vs = _cli(tmp_path, text)
    (v,) = _of(vs, "TMPL001")
    assert rc == 0 and v["severity"] == "info" and "0.8.0-0.9.4" in v["message"]
    assert _of(_cli(tmp_path, text, "--target-llamafactory", "0.9.4")[1], "TMPL001") == []
    rc, vs = _cli(tmp_path, text, "--target-llamafactory", "0.9.5")
    assert rc == 1 and _of(vs, "TMPL001")[0]["severity"] == "error"


def test_a_template_no_release_registers_is_an_error_whatever_the_target(tmp_path: Path) -> None:
    rc, vs = _cli(tmp_path, sft(template="qwen2.5"))
    assert rc == 1 and _of(vs, "TMPL001")[0]["severity"] == "error"


@pytest.mark.parametrize(
    ("model", "template", "old_release"),
    [
        ("google/gemma-2-2b-it", "gemma", "0.9.3"),  # gemma2 registered from v0.9.4
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek3", "0.9.2"),  # deepseekr1 from v0.9.3
        ("llava-hf/llava-1.5-7b-hf", "vicuna", "0.8.3"),  # llava from v0.9.0
    ],
)
def test_the_template_an_older_release_registers_for_the_model(tmp_path: Path, model: str, template: str, old_release: str) -> None:
    text = sft(model, template=template)
    rc, vs = _cli(tmp_path, text)
    (v,) = _of(vs, "TMPL005")
    assert v["severity"] == "info" and old_release in v["message"]
    assert _of(_cli(tmp_path, text, "--target-llamafactory", old_release)[1], "TMPL005") == []
    assert _of(_cli(tmp_path, text, "--target-llamafactory", "0.9.5")[1], "TMPL005")[0]["severity"] == "warning"


def test_another_familys_template_is_still_an_error() -> None:
    assert _sev(sft(template="llama3"), "TMPL005") == [Severity.ERROR]


def test_template_rules_leave_eval_export_and_chat_configs_alone() -> None:
    evaluation = "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\ntemplate: fewshot\ntask: mmlu_test\nn_shot: 5\nlang: en\nbatch_size: 4\n"
    export = "model_name_or_path: Qwen/Qwen3-VL-8B-Instruct\nadapter_name_or_path: saves/x\ntemplate: qwen3_vl\nfinetuning_type: lora\nexport_dir: out\n"
    chat = "model_name_or_path: Qwen/Qwen3-14B\nadapter_name_or_path: saves/x\ntemplate: qwen\nfinetuning_type: lora\n"
    for text in (evaluation, export, chat):
        assert [v.code for v in lint_text(text, select=["TMPL"])] == []


def test_a_foreign_eos_in_pretraining_is_still_found() -> None:
    text = sft("Qwen/Qwen2.5-32B-Instruct", stage="pt", template="llama3")
    (v,) = lint_text(text, select=["TMPL005"])
    assert "<|end_of_text|>" in v.message and v.severity is Severity.ERROR


# -- config kinds ---------------------------------------------------------------------------------------------
def test_an_inference_config_that_keeps_cutoff_len_is_not_a_training_run() -> None:
    text = "model_name_or_path: Qwen/Qwen2-7B-Instruct\nadapter_name_or_path: model\ncutoff_len: 2000\ntemplate: qwen\nfinetuning_type: lora\n"
    result = lint_result(text)
    assert result.kind.kind == "infer"
    assert not [v for v in result.violations if v.code == "PRAC007"]


def test_a_tokenisation_only_run_is_not_nothing_to_run() -> None:
    text = sft().replace("do_train: true", "do_train: false") + "tokenized_path: cache/tok\n"
    assert _sev(text, "PRAC007") == []
    assert _sev(text.replace("tokenized_path: cache/tok\n", ""), "PRAC007") == [Severity.WARNING]


# -- heuristics narrowed to what is far off --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rank", "alpha", "rslora", "expected"),
    [
        (64, 16, False, [Severity.INFO]),  # QLoRA's published setting: scaling 0.25
        (128, 16, False, [Severity.WARNING]),  # raised the rank, forgot alpha: 0.125
        (8, 256, False, [Severity.WARNING]),  # 32
        (64, 16, True, []),  # rsLoRA: 16/sqrt(64) = 2
        (16, 32, False, []),
    ],
)
def test_lora_alpha_is_judged_by_the_scaling_peft_applies(rank: int, alpha: int, rslora: bool, expected: list[Severity]) -> None:
    text = sft() + f"lora_rank: {rank}\nlora_alpha: {alpha}\n" + ("use_rslora: true\n" if rslora else "")
    assert _sev(text, "LORA001") == expected


def test_lora001_message_shows_the_scaling_it_judges() -> None:
    (v,) = lint_text(sft() + "lora_rank: 64\nlora_alpha: 1\nuse_rslora: true\n", select=["LORA001"])
    assert "1/sqrt(64) = 0.125" in v.message and v.severity is Severity.WARNING
    assert v.fix is not None and "lora_alpha: 16" in v.fix.description  # 2 * sqrt(64)


def test_pretraining_learning_rates_are_not_fine_tuning_ones() -> None:
    full = sft(stage="pt", ft="full", template="default") + "learning_rate: 3.0e-4\n"
    assert _sev(full, "LORA003") == []
    assert _sev(full.replace("stage: pt", "stage: sft"), "LORA003") == [Severity.WARNING]


def test_fp32_written_on_purpose_is_not_a_forgotten_precision() -> None:
    base = sft().replace("bf16: true\n", "")
    assert _sev(base, "PREC004") == [Severity.WARNING]
    assert _sev(base + "bf16: false\n", "PREC004") == []


def test_a_run_without_intermediate_checkpoints_is_info() -> None:
    assert _sev(sft() + "max_steps: 50\nsave_steps: 1000\n", "PRAC003") == [Severity.INFO]
    assert _sev(sft() + "max_steps: 3000\nsave_steps: 500\n", "PRAC003") == []


# -- old key names, nulls, values YAML changes ------------------------------------------------------------------
def test_evaluation_strategy_counts_where_transformers_still_reads_it() -> None:
    text = sft() + "evaluation_strategy: steps\nsave_strategy: steps\nload_best_model_at_end: true\nval_size: 0.1\n"
    assert _sev(text, "TRAIN003", llamafactory="0.9.2", transformers_major=4) == []
    missing = text.replace("val_size: 0.1\n", "")
    old_stack = TargetVersions(Version.parse("0.9.2"), Version.parse("4.45.2"))
    (v,) = lint_text(missing, select=["DSET010"], target=old_stack)
    assert v.key == "evaluation_strategy" and v.line == missing.splitlines().index("evaluation_strategy: steps") + 1
    assert "first evaluation" in v.message  # 0.9.2 has no start-up check: transformers fails at the first eval
    # transformers 5 refuses the old name itself: KEY002 reports that, DSET010 adds nothing
    assert [v.code for v in lint_text(missing, select=["DSET010", "KEY002"], transformers_major=5)] == ["KEY002"]


def test_a_null_the_stage_never_reads_breaks_nothing() -> None:
    text = sft() + "pref_beta: null\npref_loss: null\n"
    assert [v.code for v in lint_text(text, select=["KEY003", "STAGE016"])] == []
    dpo = sft(stage="dpo") + "pref_beta: null\n"
    assert [v.code for v in lint_text(dpo, select=["KEY003"])] == ["KEY003"]


def test_yaml_no_for_a_strategy_is_a_boolean_that_stops_the_run() -> None:
    (v,) = lint_text(sft() + "eval_strategy: no\n", select=["KEY003"])
    assert v.severity is Severity.ERROR and "IntervalStrategy" in v.message
    assert v.fix is not None and v.fix.safe
    assert _sev(sft() + 'eval_strategy: "no"\n', "KEY003") == []


def test_an_unfilled_list_placeholder_for_output_dir_stops_the_run() -> None:
    (v,) = lint_text(sft() + "output_dir: [save_path]\n", select=["KEY003"])
    assert "expanduser" in v.message


def test_dora_with_bitsandbytes_is_refused_only_from_0_9_3(tmp_path: Path) -> None:
    text = sft() + "use_dora: true\nquantization_bit: 4\n"
    assert _sev(text, "QUANT013", llamafactory="0.9.2") == []
    assert _sev(text, "QUANT013", llamafactory="0.9.5") == [Severity.ERROR]
    (v,) = _of(_cli(tmp_path, text)[1], "QUANT013")
    assert v["severity"] == "info"


# -- the template history table ---------------------------------------------------------------------------------
def test_template_history_covers_every_supported_release() -> None:
    from tuner.config._template_history import RELEASES, TEMPLATE_RELEASES
    from tuner.config._templates_data import TEMPLATES
    from tuner.config.versions import llamafactory_releases

    assert tuple(str(r) for r in llamafactory_releases()) == RELEASES
    assert set(TEMPLATES) <= set(TEMPLATE_RELEASES)  # every template the flags table knows has its releases
    assert TEMPLATE_RELEASES["qwen"] == tuple(range(len(RELEASES)))


@pytest.mark.skipif(not os.environ.get("CFGLINT_LF_GIT"), reason="set CFGLINT_LF_GIT (a LLaMA-Factory git dir) to check the table")
def test_template_history_is_generated_from_the_release_tags() -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_template_history.py"), "--repo", os.environ["CFGLINT_LF_GIT"], "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


# -- values LLaMA-Factory accepts as written (HfArgumentParser.parse_dict neither converts nor checks types) ------
def test_values_that_run_as_written_are_not_type_errors() -> None:
    train = sft().replace("do_train: true", "do_train: 1") + "seed: 42\nresume_from_checkpoint: false\nplot_loss: 0\n"
    assert [v.code for v in lint_text(train, select=["KEY"])] == []
    export = (
        "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nadapter_name_or_path: saves/x\ntemplate: qwen\n"
        "finetuning_type: lora\nexport_dir: out\nexport_device: gpu\n"
    )
    assert [v.code for v in lint_text(export, select=["KEY"])] == []


def test_a_model_newer_than_the_target_release_gets_no_template_advice() -> None:
    text = sft("google/gemma-4-31B-it", template="gemma")
    assert _sev(text, "TMPL005", llamafactory="0.9.5") == [Severity.WARNING]  # 0.9.5 registers gemma4
    assert _sev(text, "TMPL005", llamafactory="0.9.4") == []  # 0.9.4 has no gemma4 to recommend


def test_low_learning_rates_and_skipped_checkpoints_are_info() -> None:
    assert _sev(sft() + "learning_rate: 1.0e-6\n", "LORA003") == [Severity.INFO]
    assert _sev(sft() + "learning_rate: 5.0e-3\n", "LORA003") == [Severity.WARNING]
    assert _sev(sft() + "max_steps: 1000\nsave_steps: 2000\n", "PRAC003") == [Severity.INFO]


def test_a_duplicate_key_is_a_warning_until_the_release_is_stated(tmp_path: Path) -> None:
    """0.9.4+ refuse the file, earlier releases use the last value: only "one value does nothing" holds for all."""
    text = sft() + "template: qwen\n"
    rc, vs = _cli(tmp_path, text)
    (v,) = _of(vs, "FILE001")
    assert rc == 0 and v["severity"] == "warning" and "earlier releases silently use the last value" in v["message"]
    rc, vs = _cli(tmp_path, text, "--target-llamafactory", "0.9.5")
    assert rc == 1 and _of(vs, "FILE001")[0]["severity"] == "error"


# -- LoRA settings in a run that resumes an adapter (a pattern the holdout corpus showed) ----------------------
RESUME = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: kto\ndo_train: true\nfinetuning_type: lora\ndataset: a\ntemplate: qwen\nbf16: true\nadapter_name_or_path: {adapter}\n"


def _adapter(directory: Path, **config: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], **config}))
    return directory


def test_lora_settings_ignored_on_resume_compared_with_the_adapter(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "dpo")
    text = RESUME.format(adapter=adapter) + "lora_rank: 256\nlora_alpha: 16\nlora_target: q_proj,v_proj\n"
    (v,) = lint_text(text, select=["LORA006"])
    assert v.severity is Severity.WARNING and v.key == "lora_rank"
    assert "`lora_rank: 256` is ignored" in v.message and "r=8" in v.message  # alpha and targets match: not listed
    same = RESUME.format(adapter=adapter) + "lora_rank: 8\nlora_alpha: 16\nlora_target: all\n"
    assert lint_text(same, select=["LORA006"]) == []


def test_lora_settings_on_resume_are_info_when_the_adapter_is_out_of_sight(tmp_path: Path) -> None:
    text = RESUME.format(adapter="saves/dpo") + "lora_rank: 256\nlora_alpha: 512\n"
    (v,) = lint_text(text, select=["LORA006"])
    assert v.severity is Severity.INFO and "`lora_rank: 256`, `lora_alpha: 512` are ignored" in v.message
    # with the launch directory stated, the relative adapter is read
    _adapter(tmp_path / "saves" / "dpo", r=256, lora_alpha=512)
    assert lint_text(text, select=["LORA006"], cwd=tmp_path, launch_dir_stated=True) == []


def test_a_new_adapter_uses_the_settings(tmp_path: Path) -> None:
    text = RESUME.format(adapter="saves/dpo") + "create_new_adapter: true\nlora_rank: 256\n"
    assert lint_text(text, select=["LORA006"]) == []
    # a quantized model cannot merge: the last adapter is resumed even with create_new_adapter
    assert [v.code for v in lint_text(text + "quantization_bit: 4\n", select=["LORA006"])] == ["LORA006"]
