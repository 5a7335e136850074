"""TMPL rules: template names, missing templates, efficient_eos, reasoning templates, model-family fit."""

from __future__ import annotations

from typing import Any

import pytest

from tuner.lint.rule import Severity, Violation
from tuner.lint.testing import fix_text, lint_text


def found(text: str, code: str, **options: Any) -> list[Violation]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


def cfg(model: str | None, template: str | None, stage: str = "sft", extra: str = "") -> str:
    lines = []
    if model:
        lines.append(f"model_name_or_path: {model}")
    lines.append(f"stage: {stage}")
    if template:
        lines.append(f"template: {template}")
    return "\n".join(lines) + "\n" + extra


# -- TMPL001 --------------------------------------------------------------------------------------------------


def test_unknown_template_suggests_the_family_template() -> None:
    [v] = found(cfg(None, "qwen2.5"), "TMPL001")
    assert v.severity is Severity.ERROR and "Template qwen2.5 does not exist." in v.message
    assert "`qwen`" in (v.hint or "") and v.fix is None


def test_case_and_separator_slips_are_fixed_safely() -> None:
    text = cfg(None, "Llama-3") + "# end\n"
    [v] = found(text, "TMPL001")
    assert v.fix is not None and v.fix.safe
    assert fix_text(text, select=["TMPL001"]) == cfg(None, "llama3") + "# end\n"


def test_unknown_template_uses_the_model_for_suggestions() -> None:
    [v] = found(cfg("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3.1"), "TMPL001")
    assert (v.hint or "").startswith("did you mean `llama3`?")


@pytest.mark.parametrize("name", ["llama3", "qwen3_nothink", "openchat-3.6", "default"])
def test_registered_templates_are_fine(name: str) -> None:
    assert found(cfg(None, name), "TMPL001") == []


# -- TMPL002 --------------------------------------------------------------------------------------------------


def test_missing_template_for_sft_offers_the_registered_one() -> None:
    text = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct  # hub\nstage: sft\ndo_train: true\n"
    [v] = found(text, "TMPL002")
    assert v.severity is Severity.WARNING and "`empty` template" in v.message and "template: qwen" in (v.hint or "")
    fixed = fix_text(text, select=["TMPL002"], unsafe=True)
    assert fixed == "model_name_or_path: Qwen/Qwen2.5-7B-Instruct  # hub\ntemplate: qwen\nstage: sft\ndo_train: true\n"


def test_missing_template_for_a_base_model_suggests_default() -> None:
    [v] = found(cfg("/data/models/Meta-Llama-3-8B", None), "TMPL002")
    assert "template: default" in (v.hint or "") and v.fix is None


@pytest.mark.parametrize("text", [cfg("Qwen/Qwen2.5-7B", None, stage="pt"), cfg("Qwen/Qwen2.5-7B-Instruct", "qwen")])
def test_pretraining_or_template_set(text: str) -> None:
    assert found(text, "TMPL002") == []


@pytest.mark.parametrize("stage", ["rm", "dpo", "kto"])
def test_missing_template_for_other_chat_stages(stage: str) -> None:
    assert found(cfg("org/some-model", None, stage=stage), "TMPL002")


# -- TMPL003 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["glm4", "chatglm3", "gemma2", "falcon", "yi_vl", "gpt_oss"])
def test_train_on_prompt_with_efficient_eos(name: str) -> None:
    [v] = found(cfg(None, name, extra="train_on_prompt: true\n"), "TMPL003")
    assert (
        v.severity is Severity.ERROR
        and "does not support `train_on_prompt`" in v.message
        and v.key == "train_on_prompt"
    )


def test_train_on_prompt_with_ordinary_template() -> None:
    assert found(cfg(None, "llama3", extra="train_on_prompt: true\n"), "TMPL003") == []
    assert found(cfg(None, "glm4"), "TMPL003") == []


# -- TMPL004 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "template", "variant"),
    [("Qwen/Qwen3-4B-Instruct-2507", "qwen3", "qwen3_nothink"), ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", "qwen3_vl_nothink"),
     ("/ckpt/Qwen3-30B-A3B-Instruct-2507", "qwen3", "qwen3_nothink"),  # a local copy named like the repo
     ("/ckpt/my-qwen3-vl-instruct-sft", "qwen3_vl", "qwen3_vl_nothink")],  # unknown model, name says Instruct
)  # fmt: skip
def test_reasoning_template_on_instruct_model(model: str, template: str, variant: str) -> None:
    text = cfg(model, template)
    [v] = found(text, "TMPL004")
    assert v.severity is Severity.WARNING and "<think>" in v.message
    assert fix_text(text, select=["TMPL004"], unsafe=True) == cfg(model, variant)


def test_enable_thinking_false_is_not_the_same_as_nothink() -> None:
    [v] = found(cfg("Qwen/Qwen3-4B-Instruct-2507", "qwen3", extra="enable_thinking: false\n"), "TMPL004")
    assert "enable_thinking" in (v.hint or "")


@pytest.mark.parametrize(
    ("model", "template"),
    [("Qwen/Qwen3-8B", "qwen3"),  # hybrid thinking model
     ("Qwen/Qwen3-4B-Thinking-2507", "qwen3"), ("Qwen/Qwen3-4B-Instruct-2507", "qwen3_nothink"),
     ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseekr1"),  # reasoning-only family, no _nothink template
     ("/ckpt/some-model", "qwen3"), (None, "qwen3")],
)  # fmt: skip
def test_reasoning_template_where_it_fits_or_unknown(model: str | None, template: str) -> None:
    assert found(cfg(model, template), "TMPL004") == []


# -- TMPL005 --------------------------------------------------------------------------------------------------


def test_other_family_template_on_chat_model_is_an_error() -> None:
    text = cfg("Qwen/Qwen2.5-7B-Instruct", "llama3")
    [v] = found(text, "TMPL005")
    assert v.severity is Severity.ERROR and "`qwen`" in v.message
    assert fix_text(text, select=["TMPL005"], unsafe=True) == cfg("Qwen/Qwen2.5-7B-Instruct", "qwen")


def test_r1_distill_with_the_base_family_template() -> None:
    [v] = found(cfg("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwen"), "TMPL005")
    assert v.severity is Severity.ERROR and "deepseekr1" in v.message


@pytest.mark.parametrize(
    ("model", "template", "words"),
    [("Qwen/Qwen2.5-7B-Instruct", "default", "generic"), ("Qwen/Qwen2-VL-7B-Instruct", "qwen", "images"),
     ("Qwen/Qwen2.5-7B-Instruct", "qwen3", "<think>"), ("meta-llama/Meta-Llama-3-8B-Instruct", "llama2", "registers")],
)  # fmt: skip
def test_same_family_or_generic_template_is_a_warning(model: str, template: str, words: str) -> None:
    [v] = found(cfg(model, template), "TMPL005")
    assert v.severity is Severity.WARNING and words in v.message


@pytest.mark.parametrize(
    ("model", "template"),
    [("Qwen/Qwen2.5-7B-Instruct", "qwen"), ("/hf/models--meta-llama--Meta-Llama-3-8B-Instruct/snapshots/0a1b", "llama3"),
     ("Qwen/Qwen3-8B", "qwen3_nothink"), ("meta-llama/Meta-Llama-3-8B", "default"),  # base: TMPL006's business
     ("org/unknown-model-Instruct", "llama3")],
)  # fmt: skip
def test_matching_or_unknown_models_are_fine(model: str, template: str) -> None:
    assert found(cfg(model, template), "TMPL005") == []


@pytest.mark.parametrize(
    ("model", "template", "eos"),
    [("meta-llama/Meta-Llama-3-8B", "qwen", "`<|im_end|>`"),  # a new token in Llama 3's vocabulary
     ("Qwen/Qwen2.5-7B", "llama3", "the text `<|end_of_text|>`"),  # pretrain.py appends it as text
     ("Qwen/Qwen2.5-7B-Instruct", "llama3", "the text `<|end_of_text|>`"),
     ("mistralai/Mistral-7B-v0.1", "chatml", "`<|im_end|>`")],
)  # fmt: skip
def test_pretraining_with_another_familys_eos(model: str, template: str, eos: str) -> None:
    """`stage: pt` still uses the template's EOS: a foreign one ends every document with an unknown marker."""
    text = cfg(model, template, stage="pt")
    [v] = found(text, "TMPL005")
    assert v.severity is Severity.ERROR and "`stage: pt`" in v.message and eos in v.message
    assert fix_text(text, select=["TMPL005"], unsafe=True) == cfg(model, "default", stage="pt")


@pytest.mark.parametrize(
    ("model", "template"),
    [("Qwen/Qwen2.5-7B", "qwen"), ("Qwen/Qwen2.5-7B", "chatml"),  # the family's own <|im_end|>
     ("meta-llama/Meta-Llama-3-8B", "llama3"), ("meta-llama/Meta-Llama-3-8B", "default"),
     ("meta-llama/Meta-Llama-3-8B", "alpaca"),  # keeps the tokenizer's EOS
     ("01-ai/Yi-6B", "chatml"),  # Yi's template stops on <|im_end|> too
     ("meta-llama/Meta-Llama-3-8B", "mistral"),  # no replace_eos: the tokenizer's EOS ends each document
     ("org/unknown-model", "qwen"),
     ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwen")],  # registered as deepseekr1, Qwen's vocabulary
)  # fmt: skip
def test_pretraining_with_a_fitting_eos_is_fine(model: str, template: str) -> None:
    assert found(cfg(model, template, stage="pt"), "TMPL005") == []


def test_pretraining_llama3_eos_follows_the_version() -> None:
    """Before LLaMA-Factory 0.8.2 pre-training appended the tokenizer's EOS, i.e. llama3's `<|eot_id|>`."""
    [v] = found(cfg("Qwen/Qwen2.5-7B", "llama3", stage="pt"), "TMPL005", llamafactory="0.8.1")
    assert "`<|eot_id|>`" in v.message


def test_base_model_with_another_familys_eos_in_sft() -> None:
    text = cfg("meta-llama/Meta-Llama-3-8B", "qwen")
    [v] = found(text, "TMPL005")
    assert v.severity is Severity.WARNING and "`<|im_end|>`" in v.message and "new token" in v.message
    assert found(text + "resize_vocab: true\n", "TMPL005") == []  # the new token is intended
    assert found(cfg("meta-llama/Meta-Llama-3-8B", "mistral"), "TMPL005") == []  # text markers, own EOS


# -- TMPL006 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["meta-llama/Meta-Llama-3-8B", "/models/Meta-Llama-3-8B/", "meta-llama/Meta-Llama-3.1-70B"]
)
def test_untrained_chat_markers_on_a_base_model(model: str) -> None:
    text = cfg(model, "llama3")
    [v] = found(text, "TMPL006")
    assert v.severity is Severity.WARNING and "<|eot_id|>" in v.message and "never trained" in v.message
    assert "#5593" in v.message
    assert fix_text(text, select=["TMPL006"], unsafe=True) == cfg(model, "default")


@pytest.mark.parametrize(
    ("model", "template", "stage", "extra"),
    [("meta-llama/Meta-Llama-3-8B", "default", "sft", ""), ("meta-llama/Meta-Llama-3-8B", "alpaca", "sft", ""),
     ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3", "sft", ""), ("meta-llama/Meta-Llama-3-8B", "llama3", "pt", ""),
     ("google/paligemma2-3b-pt-224", "paligemma", "sft", ""),  # multimodal groups use their template on base models
     # the embeddings train, so the markers can be learned
     ("meta-llama/Meta-Llama-3-8B", "llama3", "sft", "finetuning_type: full\n"),
     ("meta-llama/Meta-Llama-3-8B", "llama3", "sft", "resize_vocab: true\n"),
     ("meta-llama/Meta-Llama-3-8B", "llama3", "sft", "additional_target: embed_tokens,lm_head\n"),
     # Qwen2/2.5 base checkpoints (Coder, Math too) carry the ChatML markers: Qwen fine-tunes them with `qwen`
     ("Qwen/Qwen2.5-7B", "qwen", "sft", ""), ("/hf/hub/models--Qwen--Qwen2.5-7B/snapshots/abc", "qwen", "sft", ""),
     ("Qwen/Qwen2.5-Coder-7B", "qwen", "sft", ""), ("Qwen/Qwen2.5-Math-7B", "qwen", "sft", ""),
     ("Qwen/Qwen2-7B", "qwen", "sft", ""),
     ("meta-llama/Meta-Llama-3-8B", "qwen", "sft", "")],  # another family: TMPL005's finding
)  # fmt: skip
def test_base_model_fine_cases(model: str, template: str, stage: str, extra: str) -> None:
    assert found(cfg(model, template, stage=stage, extra=extra), "TMPL006") == []
