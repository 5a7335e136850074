"""PREC rules: fp16/bf16/pure_bf16/tf32 against each other, the GPU profile and the checkpoint's dtype."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tuner.cli.lint import cli
from tuner.lint.rule import Severity, Violation
from tuner.lint.testing import fix_text, lint_result, lint_text

LLAMA = {
    "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 32000,
}  # fmt: skip


def model_dir(tmp_path: Path, dtype: str | None) -> Path:
    d = tmp_path / f"model-{dtype}"
    d.mkdir()
    cfg: dict[str, Any] = dict(LLAMA)
    if dtype:
        cfg["torch_dtype"] = dtype
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def found(text: str, code: str, **options: Any) -> list[Violation]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


# -- PREC001 --------------------------------------------------------------------------------------------------


def test_fp16_and_bf16_is_an_error_on_the_bf16_line() -> None:
    [v] = found("stage: sft\nfp16: true\nbf16: true\n", "PREC001")
    assert v.severity is Severity.ERROR and v.line == 3 and "At most one of fp16 and bf16" in v.message
    assert v.fix is None  # which one to keep depends on the GPU


def test_full_eval_pair_too() -> None:
    [v] = found("stage: sft\nfp16_full_eval: true\nbf16_full_eval: true\n", "PREC001")
    assert "full eval" in v.message


@pytest.mark.parametrize(("hw", "kept"), [("t4", "fp16"), ("h100-sxm-80g", "bf16")])
def test_with_hardware_the_fix_keeps_what_the_gpu_supports(hw: str, kept: str) -> None:
    text = "stage: sft\nfp16: true\nbf16: true\n"
    fixed = fix_text(text, select=["PREC001"], hw=hw, unsafe=True)
    assert fixed == f"stage: sft\n{kept}: true\n"
    assert fix_text(text, select=["PREC001"], hw=hw) == text  # unsafe: not applied by a plain --fix


def test_one_precision_is_fine() -> None:
    assert found("stage: sft\nfp16: false\nbf16: true\n", "PREC001") == []


# -- PREC002 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", ["t4", "v100-sxm2-32g", "v100-pcie-16g"])
def test_bf16_on_pre_ampere_is_an_error_with_fp16_fix(hw: str) -> None:
    text = "stage: sft\nbf16: true   # from the example\n"
    [v] = found(text, "PREC002", hw=hw)
    assert v.severity is Severity.ERROR and "no bf16 support" in v.message and "compute capability 7." in v.message
    assert fix_text(text, select=["PREC002"], hw=hw, unsafe=True) == "stage: sft\nfp16: true   # from the example\n"


def test_bf16_is_fine_on_ampere_and_amd() -> None:
    for hw in ("a100-sxm4-80g", "rtx-3090-24g", "mi300x-192g"):
        assert found("stage: sft\nbf16: true\npure_bf16: true\nbf16_full_eval: true\n", "PREC002", hw=hw) == [], hw


def test_tf32_needs_ampere_nvidia() -> None:
    [v] = found("stage: sft\ntf32: true\n", "PREC002", hw="t4")
    assert "--tf32 requires Ampere" in v.message
    assert found("stage: sft\ntf32: true\n", "PREC002", hw="mi300x-192g")  # ROCm: transformers refuses TF32 too
    assert found("stage: sft\ntf32: true\n", "PREC002", hw="a10-24g") == []


def test_pure_bf16_and_full_eval_are_reported_separately() -> None:
    vs = found("stage: sft\npure_bf16: true\nbf16_full_eval: true\n", "PREC002", hw="t4")
    assert [v.key for v in vs] == ["pure_bf16", "bf16_full_eval"]
    assert vs[0].fix is None and "pure_bf16" in vs[0].message
    assert vs[1].fix is not None and "fp16_full_eval" in vs[1].fix.description


def test_bf16_native_model_gets_an_nan_warning_in_the_hint(tmp_path: Path) -> None:
    text = "stage: sft\nbf16: true\n"
    [v] = found(text, "PREC002", hw="t4", model=str(model_dir(tmp_path, "bfloat16")))
    assert "overflow" in (v.hint or "")
    [plain] = found(text, "PREC002", hw="t4", model=str(model_dir(tmp_path, "float16")))
    assert "overflow" not in (plain.hint or "")


def test_without_hardware_prec002_is_skipped_with_a_reason() -> None:
    result = lint_result("stage: sft\nbf16: true\n", select=["PREC002"])
    assert result.violations == [] and "--hw" in result.skipped["PREC002"]


def test_cli_reports_bf16_on_t4(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\nbf16: true\n")
    result = CliRunner().invoke(cli, ["check", "--select", "PREC", "--hw", "t4", "--format", "concise", str(p)])
    assert result.exit_code == 1, result.output
    assert f"{p}:4:1: error: PREC002" in result.output


# -- PREC003 --------------------------------------------------------------------------------------------------


def test_pure_bf16_under_zero3(tmp_path: Path) -> None:
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    (tmp_path / "z2.json").write_text('{"zero_optimization": {"stage": 2}}')
    text = "stage: sft\nfinetuning_type: full\npure_bf16: true\ndeepspeed: z3.json\n"
    [v] = found(text, "PREC003", path=tmp_path / "run.yaml")
    assert v.severity is Severity.ERROR and v.line == 3
    fixed = fix_text(text, select=["PREC003"], path=tmp_path / "run.yaml", unsafe=True)
    assert fixed == "stage: sft\nfinetuning_type: full\nbf16: true\ndeepspeed: z3.json\n"
    assert found(text.replace("z3", "z2"), "PREC003", path=tmp_path / "run.yaml") == []
    assert found("stage: sft\npure_bf16: true\n", "PREC003") == []


# -- PREC004 --------------------------------------------------------------------------------------------------


def test_training_in_fp32_warns_and_offers_the_right_precision() -> None:
    text = "stage: sft\ndo_train: true\n"
    [v] = found(text, "PREC004")
    assert v.severity is Severity.WARNING and v.fix is None
    assert fix_text(text, select=["PREC004"], hw="h100-sxm-80g", unsafe=True) == text + "bf16: true\n"
    assert fix_text(text, select=["PREC004"], hw="t4", unsafe=True) == text + "fp16: true\n"


@pytest.mark.parametrize("extra", ["bf16: true\n", "fp16: true\n", "pure_bf16: true\n"])
def test_any_half_precision_counts(extra: str) -> None:
    assert found("stage: sft\ndo_train: true\n" + extra, "PREC004") == []


def test_no_warning_when_not_training() -> None:
    assert found("stage: sft\ndo_predict: true\n", "PREC004") == []


def test_no_warning_for_a_cpu_run() -> None:
    assert found("stage: sft\ndo_train: true\nuse_cpu: true\n", "PREC004") == []


# -- PREC005 --------------------------------------------------------------------------------------------------


def test_fp16_on_bf16_model(tmp_path: Path) -> None:
    text = "stage: sft\nfp16: true\n"
    model = str(model_dir(tmp_path, "bfloat16"))
    [v] = found(text, "PREC005", model=model)
    assert v.severity is Severity.WARNING and "bfloat16" in v.message and v.fix is None
    assert (
        fix_text(text, select=["PREC005"], model=model, hw="a100-sxm4-80g", unsafe=True) == "stage: sft\nbf16: true\n"
    )
    [t4] = found(text, "PREC005", model=model, hw="t4")
    assert t4.fix is None and "fp32" in (t4.hint or "")


@pytest.mark.parametrize("dtype", ["float16", "float32", None])
def test_fp16_fine_for_models_not_stored_in_bf16(tmp_path: Path, dtype: str | None) -> None:
    assert found("stage: sft\nfp16: true\n", "PREC005", model=str(model_dir(tmp_path, dtype))) == []


def test_prec005_needs_the_model() -> None:
    result = lint_result("stage: sft\nfp16: true\n", select=["PREC005"])
    assert result.violations == [] and "model" in result.skipped["PREC005"]


# -- PREC006 --------------------------------------------------------------------------------------------------


def gemma2_dir(tmp_path: Path, dtype: str | None = "float32", model_type: str = "gemma2") -> str:
    d = tmp_path / f"{model_type}-{dtype}"
    d.mkdir()
    cfg: dict[str, Any] = {**LLAMA, "model_type": model_type, "architectures": ["Gemma2ForCausalLM"]}
    if dtype:
        cfg["torch_dtype"] = dtype
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def test_fp16_on_gemma2_stored_in_fp32(tmp_path: Path) -> None:
    """Gemma 2 stores float32 weights, so PREC005 cannot see it; PREC006 knows the family overflows fp16."""
    text = "stage: sft\ndo_train: true\nfp16: true\n"
    model = gemma2_dir(tmp_path)
    [v] = found(text, "PREC006", model=model)
    assert v.severity is Severity.WARNING and v.line == 3 and "gemma2" in v.message and "float32" in v.message
    assert found(text, "PREC005", model=model) == []  # one problem, one finding
    assert fix_text(text, select=["PREC006"], model=model, unsafe=True) == "stage: sft\ndo_train: true\nbf16: true\n"
    [t4] = found(text, "PREC006", model=model, hw="t4")
    assert t4.fix is None and "no bf16" in (t4.hint or "")


def test_gemma2_from_the_catalog_is_known_to_store_fp32() -> None:
    text = "model_name_or_path: google/gemma-2-9b\nstage: sft\ndo_train: true\nfp16: true\n"
    [v] = found(text, "PREC006")
    assert "float32" in v.message


def test_no_precision_key_loads_gemma2_in_fp16(tmp_path: Path) -> None:
    """Without bf16/fp16 LLaMA-Factory's infer_optim_dtype picks fp16 for a float32 checkpoint."""
    text = "stage: sft\ndo_train: true\n"
    model = gemma2_dir(tmp_path)
    [v] = found(text, "PREC006", model=model)
    assert "loads it in float16" in v.message and "infer_optim_dtype" in v.message
    assert fix_text(text, select=["PREC006"], model=model, unsafe=True) == text + "bf16: true\n"
    [unstated] = found(text, "PREC006", model=gemma2_dir(tmp_path, None))
    assert "no stored dtype" in unstated.message


@pytest.mark.parametrize(
    ("text", "dtype", "model_type"),
    [("stage: sft\ndo_train: true\nbf16: true\n", "float32", "gemma2"),
     ("stage: sft\ndo_train: true\nfp16: true\n", "bfloat16", "gemma2"),  # PREC005's finding
     ("stage: sft\ndo_train: true\n", "bfloat16", "gemma2"),  # loaded in bf16 where the GPU has it
     ("stage: sft\ndo_train: true\nfp16: true\n", "float32", "llama"),
     ("stage: sft\ndo_train: true\nuse_cpu: true\n", "float32", "gemma2")],
)  # fmt: skip
def test_fp16_unstable_family_fine_cases(tmp_path: Path, text: str, dtype: str, model_type: str) -> None:
    assert found(text, "PREC006", model=gemma2_dir(tmp_path, dtype, model_type)) == []


def test_precision_hints_say_what_llamafactory_loads(tmp_path: Path) -> None:
    [v] = found("stage: sft\nfp16: true\n", "PREC005", model=str(model_dir(tmp_path, "bfloat16")), hw="t4")
    assert "loads the model in fp16 even without `fp16`" in (v.hint or "")
    [v] = found("stage: sft\ndo_train: true\n", "PREC004")
    assert "fp32" in v.message and "half precision" in v.message


def test_precision_rules_only_apply_to_train_configs() -> None:
    # `export`/`infer` configs have no TrainingArguments: KEY001 reports bf16 there, not the PREC rules
    text = "stage: sft\nfp16: true\nbf16: true\n"
    assert found(text, "PREC001", command="export") == []
    assert found(text, "PREC002", hw="t4", command="infer") == []


# -- PREC007 --------------------------------------------------------------------------------------------------

PURE_ULN = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\npure_bf16: true\nupcast_layernorm: true\n"


def test_upcast_layernorm_under_pure_bf16_is_an_error_with_an_unsafe_fix() -> None:
    [v] = found(PURE_ULN, "PREC007")
    assert v.severity is Severity.ERROR and v.line == 5 and "qwen2" in v.message and "same dtype" in v.message
    assert fix_text(PURE_ULN, select=["PREC007"], unsafe=True) == PURE_ULN.replace("upcast_layernorm: true\n", "")


@pytest.mark.parametrize("extra", ["bf16: true\n", "fp16: true\n", "deepspeed: ds_z2.json\n", "enable_liger_kernel: true\n",
                                   "do_train: false\n"])  # fmt: skip
def test_upcast_layernorm_under_pure_bf16_is_fine_with_autocast_or_when_unknowable(extra: str) -> None:
    text = PURE_ULN.replace("do_train: true\n", "") if extra.startswith("do_train") else PURE_ULN
    assert found(text + extra, "PREC007") == []


def test_upcast_layernorm_under_pure_bf16_on_norms_that_cast_back_is_not_reported(tmp_path: Path) -> None:
    """Gemma's norms return the input's dtype; an unknown model is not guessed at."""
    text = PURE_ULN.replace("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\n", "")
    assert found(text, "PREC007", model=gemma2_dir(tmp_path)) == []
    assert found(text.replace("stage", "model_name_or_path: ./some-local-model\nstage"), "PREC007") == []
