"""LORA rules: alpha/rank ratio, non-positive values, learning-rate heuristics, narrow targets, dropout."""

from __future__ import annotations

from typing import Any

import pytest

from tuner.lint.rule import Severity, Violation
from tuner.lint.testing import fix_text, lint_text


def found(text: str, code: str, **options: Any) -> list[Violation]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


# -- LORA001 --------------------------------------------------------------------------------------------------


def test_alpha_far_below_rank_shows_the_scaling() -> None:
    text = "finetuning_type: lora\nlora_rank: 128\nlora_alpha: 16   # old value\n"
    [v] = found(text, "LORA001")
    assert v.severity is Severity.WARNING and v.line == 3
    assert "16/128 = 0.125" in v.message and "down" in v.message
    assert (
        fix_text(text, select=["LORA001"], unsafe=True)
        == "finetuning_type: lora\nlora_rank: 128\nlora_alpha: 256   # old value\n"
    )


def test_rslora_scaling_uses_the_square_root() -> None:
    [v] = found("finetuning_type: lora\nlora_rank: 16\nlora_alpha: 256\nuse_rslora: true\n", "LORA001")
    assert "sqrt(16) = 64" in v.message and "up" in v.message


@pytest.mark.parametrize(
    "text",
    ["finetuning_type: lora\nlora_rank: 16\nlora_alpha: 16\n", "finetuning_type: lora\nlora_rank: 16\nlora_alpha: 64\n",
     "finetuning_type: lora\nlora_rank: 64\n",  # unset: LLaMA-Factory uses 2 x rank
     "finetuning_type: full\nlora_rank: 128\nlora_alpha: 16\n"],
)  # fmt: skip
def test_alpha_within_range_unset_or_not_lora(text: str) -> None:
    assert found(text, "LORA001") == []


def test_default_rank_counts() -> None:
    # lora_rank defaults to 8 in LLaMA-Factory: alpha 256 is 32x
    [v] = found("finetuning_type: lora\nlora_alpha: 256\n", "LORA001")
    assert "`lora_rank: 8`" in v.message


# -- LORA002 --------------------------------------------------------------------------------------------------


def test_zero_rank_is_an_error() -> None:
    [v] = found("finetuning_type: lora\nlora_rank: 0\n", "LORA002")
    assert v.severity is Severity.ERROR and "positive" in v.message


def test_negative_alpha_and_zero_alpha() -> None:
    [neg] = found("finetuning_type: lora\nlora_rank: 8\nlora_alpha: -16\n", "LORA002")
    assert neg.severity is Severity.ERROR and "sign" in neg.message
    [zero] = found("finetuning_type: lora\nlora_rank: 8\nlora_alpha: 0\n", "LORA002")
    assert zero.severity is Severity.INFO and "16" in zero.message
    assert found("finetuning_type: lora\nlora_rank: 8\nlora_alpha: 16\n", "LORA002") == []


# -- LORA003 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "lr", "severity"),
    [("lora", "1.0e-6", Severity.INFO), ("lora", "5.0e-3", Severity.WARNING), ("full", "1.0e-4", Severity.INFO),
     ("full", "2.0e-4", Severity.WARNING), ("freeze", "5.0e-4", Severity.WARNING), ("lora", "-1.0e-4", Severity.ERROR),
     ("lora", "0", Severity.WARNING)],
)  # fmt: skip
def test_learning_rate_out_of_range(method: str, lr: str, severity: Severity) -> None:
    [v] = found(f"stage: sft\ndo_train: true\nfinetuning_type: {method}\nlearning_rate: {lr}\n", "LORA003")
    assert v.severity is severity and v.line == 4
    if lr[0] not in "-0":
        assert "heuristic" in v.message


@pytest.mark.parametrize(
    "text",
    ["stage: sft\ndo_train: true\nlearning_rate: 1.0e-4\n",  # LoRA is the default method
     "stage: sft\ndo_train: true\nfinetuning_type: full\nlearning_rate: 1.0e-5\n",
     "stage: dpo\ndo_train: true\nlearning_rate: 5.0e-6\n",  # preference stages use low rates
     "stage: sft\ndo_predict: true\nlearning_rate: 1.0e-7\n"],  # not training
)  # fmt: skip
def test_usual_learning_rates(text: str) -> None:
    assert found(text, "LORA003") == []


def test_default_learning_rate_is_fine_for_lora() -> None:
    # transformers' default, 5e-5, is at the low end for LoRA but inside the range
    assert found("stage: sft\ndo_train: true\n", "LORA003") == []


# -- LORA004 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["q_proj,v_proj", "[q_proj, k_proj, v_proj]", "query_key_value"])
def test_attention_only_target_is_a_note(target: str) -> None:
    text = f"finetuning_type: lora\nlora_target: {target}\n"
    [v] = found(text, "LORA004")
    assert v.severity is Severity.INFO
    assert fix_text(text, select=["LORA004"], unsafe=True) == "finetuning_type: lora\nlora_target: all\n"


@pytest.mark.parametrize("target", ["all", "q_proj,v_proj,gate_proj,up_proj,down_proj"])
def test_wide_targets_are_fine(target: str) -> None:
    assert found(f"finetuning_type: lora\nlora_target: {target}\n", "LORA004") == []


# -- LORA005 --------------------------------------------------------------------------------------------------


def test_dropout_ranges() -> None:
    [big] = found("finetuning_type: lora\nlora_dropout: 5\n", "LORA005")
    assert big.severity is Severity.ERROR and "0.05" in (big.hint or "")
    [one] = found("finetuning_type: lora\nlora_dropout: 1.0\n", "LORA005")
    assert one.severity is Severity.WARNING
    text = "finetuning_type: lora\nlora_dropout: -0.1\nlora_rank: 8\n"
    [neg] = found(text, "LORA005")
    assert neg.severity is Severity.WARNING
    assert fix_text(text, select=["LORA005"]) == "finetuning_type: lora\nlora_rank: 8\n"  # safe: same behaviour
    for ok in ("0", "0.05", "0.99"):
        assert found(f"finetuning_type: lora\nlora_dropout: {ok}\n", "LORA005") == [], ok


def test_lora_rules_only_for_lora_training() -> None:
    text = "finetuning_type: lora\nlora_rank: 0\nlora_alpha: 1024\nlora_dropout: 5\nlora_target: q_proj\n"
    for code in ("LORA001", "LORA002", "LORA004", "LORA005"):
        assert found(text, code, command="export") == [], code
        assert found(text.replace("lora\n", "full\n", 1), code) == [], code
