"""LLaMA-Factory start-up checks: every rule's documented examples, then the stage and dataset rules.

The generic tests lint each Bad example of every STAGE/DSET/FT/QUANT/MODEL/TRAIN/LF rule and expect the rule to
fire, and each Good example and expect silence. Examples say what they need beyond the YAML in comments, as
``tuner.lint.testing.example_options`` reads them: ``# cfglint --gpus 4``, ``# ds_z3_config.json: {...}``,
``# the model's config.json: {...}``. Files may sit in sub-directories (``# saves/run/x.json: {...}``): the
output-directory rules need them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tuner.lint.registry import _rules_in
from tuner.lint.rule import Rule, Severity
from tuner.lint.testing import example_options, fix_text, lint_result, lint_text

MODULES = ("stage", "dataset_args", "finetuning", "quantization", "model_args", "trainer", "rewrites")
PREFIXES = {"stage": "STAGE", "dataset_args": "DSET", "finetuning": "FT", "quantization": "QUANT",
            "model_args": "MODEL", "trainer": "TRAIN", "rewrites": "LF"}  # fmt: skip


def _our_rules() -> list[type[Rule]]:
    out: list[type[Rule]] = []
    for name in MODULES:
        module = importlib.import_module(f"tuner.rules.{name}")
        rules = sorted(_rules_in(module), key=lambda c: c.code)
        assert rules, f"tuner.rules.{name} defines no rule"
        for cls in rules:
            assert cls.code.startswith(PREFIXES[name]), f"{cls.code} in {name}"
        out.extend(rules)
    return out


RULES = _our_rules()


def lint_example(cls: type[Rule], text: str, root: Path) -> list[Any]:
    """Lint a docstring example as ``root/run.yaml`` with the options and files its comments describe."""
    options = example_options(text, root)
    result = lint_result(text, path=root / "run.yaml", select=[cls.code], **options)
    assert cls.code not in result.skipped, f"{cls.code} skipped: {result.skipped[cls.code]}"
    assert not result.rule_errors, result.rule_errors
    return [v for v in result.violations if v.code == cls.code]


def test_every_rule_is_documented() -> None:
    codes = [cls.code for cls in RULES]
    assert len(codes) == len(set(codes))
    for cls in RULES:
        assert cls.summary(), cls.code
        assert cls.bad_examples() and cls.good_examples(), f"{cls.code} needs Bad and Good examples"
        assert cls.fixable in ("safe", "unsafe", "none"), cls.code
        assert cls.doc().count("\n\n") >= 3, f"{cls.code}: say why it matters"


@pytest.mark.parametrize("cls", RULES, ids=lambda c: c.code)
def test_bad_examples_fire(cls: type[Rule], tmp_path: Path) -> None:
    for i, text in enumerate(cls.bad_examples()):
        fired = lint_example(cls, text, tmp_path / f"bad{i}")
        assert fired, f"{cls.code} did not fire on its Bad example:\n{text}"
        for v in fired:
            assert v.message and v.hint, cls.code
            assert v.line >= 1


@pytest.mark.parametrize("cls", RULES, ids=lambda c: c.code)
def test_good_examples_pass(cls: type[Rule], tmp_path: Path) -> None:
    for i, text in enumerate(cls.good_examples()):
        fired = lint_example(cls, text, tmp_path / f"good{i}")
        assert not fired, f"{cls.code} fired on its Good example:\n{text}\n{[v.message for v in fired]}"


@pytest.mark.parametrize("cls", [c for c in RULES if c.fixable != "none"], ids=lambda c: c.code)
def test_fixable_rules_declare_their_fix(cls: type[Rule], tmp_path: Path) -> None:
    """A rule that says it can fix must offer a fix on at least one Bad example, marked as it says."""
    fixes = []
    for i, text in enumerate(cls.bad_examples()):
        fixes += [v.fix for v in lint_example(cls, text, tmp_path / f"fix{i}") if v.fix is not None]
    assert fixes, f"{cls.code} is fixable={cls.fixable} but offers no fix on its Bad examples"
    assert any(f.safe == (cls.fixable == "safe") for f in fixes)


# -- helpers for the specific tests ------------------------------------------------------------------------------
def fired(text: str, code: str, **options: Any) -> list[Any]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


def line_of(text: str, key: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(f"{key}:"))


# -- STAGE -------------------------------------------------------------------------------------------------------
def test_ppo_without_reward_model_is_an_error_at_the_stage_line() -> None:
    text = "model_name_or_path: m\nstage: ppo\ndo_train: true\n"
    (v,) = fired(text, "STAGE001")
    assert v.severity is Severity.ERROR and v.line == 2
    assert "`reward_model` is necessary for PPO training." in v.message
    assert not fired(text + "reward_model: saves/rm\n", "STAGE001")


def test_full_ppo_needs_a_full_reward_model() -> None:
    base = "stage: ppo\nfinetuning_type: full\nreward_model: saves/rm\n"
    assert fired(base, "STAGE002")
    assert fired(base + "reward_model_type: lora\n", "STAGE002")
    assert not fired(base + "reward_model_type: full\n", "STAGE002")
    assert not fired(base.replace("full", "lora"), "STAGE002")
    assert not fired(base.replace("ppo", "sft"), "STAGE002")


def test_reward_api_needs_a_url() -> None:
    text = "stage: ppo\nreward_model_type: api\nreward_model: 10.0.0.1:8000\n"
    assert fired(text, "STAGE003")
    assert not fired(text.replace("10.0", "https://10.0"), "STAGE003")


def test_dpo_label_smoothing_only_with_sigmoid_and_fix_removes_it() -> None:
    text = "stage: dpo\npref_loss: hinge\ndpo_label_smoothing: 0.1\n"
    (v,) = fired(text, "STAGE004")
    assert v.line == 3 and not v.fix.safe
    assert fix_text(text, select="STAGE004", unsafe=True) == "stage: dpo\npref_loss: hinge\n"
    assert not fired("stage: dpo\ndpo_label_smoothing: 0.1\n", "STAGE004")  # sigmoid is the default
    assert not fired("stage: dpo\npref_loss: hinge\ndpo_label_smoothing: 0.0\n", "STAGE004")
    assert not fired("stage: kto\npref_loss: hinge\ndpo_label_smoothing: 0.1\n", "STAGE004")


def test_sft_only_options_one_finding_per_key() -> None:
    text = "stage: rm\ntrain_on_prompt: true\nmask_history: true\nneat_packing: true\npredict_with_generate: false\n"
    vs = fired(text, "STAGE005")
    assert sorted(v.key for v in vs) == ["mask_history", "neat_packing", "train_on_prompt"]
    assert all("cannot be set as True except SFT." in v.message for v in vs)
    assert not fired(text.replace("stage: rm", "stage: sft"), "STAGE005")
    assert not fired(text, "STAGE005", command="infer")  # get_train_args only


def test_pt_neat_packing_hint_mentions_default_packing() -> None:
    (v,) = fired("stage: pt\nneat_packing: true\n", "STAGE005")
    assert "packs sequences by default" in v.hint


def test_sft_predict_needs_generate_and_safe_fix_adds_it() -> None:
    text = "stage: sft\ndo_predict: true\neval_dataset: e\n"
    (v,) = fired(text, "STAGE006")
    assert v.fix is not None and v.fix.safe
    fixed = fix_text(text, select="STAGE006")
    assert fixed == "stage: sft\ndo_predict: true\npredict_with_generate: true\neval_dataset: e\n"
    assert not fired(fixed, "STAGE006")
    # A fix that would trade this error for "predict_with_generate and compute_accuracy" is not offered.
    (v,) = fired(text + "compute_accuracy: true\n", "STAGE006")
    assert v.fix is None


def test_load_best_model_with_rm_and_ppo() -> None:
    for stage in ("rm", "ppo"):
        assert fired(f"stage: {stage}\nload_best_model_at_end: true\n", "STAGE007")
    assert not fired("stage: sft\nload_best_model_at_end: true\n", "STAGE007")


def test_ppo_needs_do_train_fix_only_when_missing() -> None:
    (v,) = fired("stage: ppo\nreward_model: r\n", "STAGE008")
    assert v.fix is not None and v.fix.safe
    assert fix_text("stage: ppo\nreward_model: r\n", select="STAGE008") == "stage: ppo\ndo_train: true\nreward_model: r\n"
    (v,) = fired("stage: ppo\ndo_train: false\ndo_eval: true\n", "STAGE008")
    assert v.fix is None and v.line == 2


def test_ppo_shift_attn_and_lora_reward_backends() -> None:
    assert fired("stage: ppo\nshift_attn: true\n", "STAGE009")
    vs = fired("stage: ppo\nuse_kt: true\nuse_unsloth: true\n", "STAGE010")
    assert {v.key for v in vs} == {"use_kt", "use_unsloth"}
    assert not fired("stage: ppo\nuse_unsloth: true\nreward_model_type: full\n", "STAGE010")


def test_ppo_report_to() -> None:
    (v,) = fired("stage: ppo\nreport_to: [wandb, mlflow]\n", "STAGE011")
    assert v.severity is Severity.ERROR and "`mlflow`" in v.message
    for ok in ("wandb", "[tensorboard, trackio]", "none"):
        assert not fired(f"stage: ppo\nreport_to: {ok}\n", "STAGE011"), ok
    # transformers 4: unset means every installed tracker, so it is a warning with an (unsafe) fix.
    (v,) = fired("stage: ppo\ndo_train: true\n", "STAGE011", transformers_major=4)
    assert v.severity is Severity.WARNING and not v.fix.safe
    (v,) = fired("stage: ppo\nreport_to: all\n", "STAGE011", transformers_major=4)
    assert v.severity is Severity.WARNING
    # transformers 5 defaults to "none".
    assert not fired("stage: ppo\ndo_train: true\n", "STAGE011", transformers_major=5)


def test_ppo_eval_data_and_resume() -> None:
    vs = fired("stage: ppo\neval_dataset: e\n", "STAGE012")
    assert [v.key for v in vs] == ["eval_dataset"]
    assert fired("stage: ppo\ndataset: d\nval_size: 100\n", "STAGE012")
    assert not fired("stage: ppo\ndataset: d\nval_size: 0.0\n", "STAGE012")
    assert fired("stage: ppo\nresume_from_checkpoint: out/checkpoint-10\n", "STAGE013")
    assert not fired("stage: ppo\nfinetuning_type: full\nresume_from_checkpoint: out/checkpoint-10\n", "STAGE013")


def test_predict_with_generate_under_zero3(tmp_path: Path) -> None:
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    (tmp_path / "z2.json").write_text('{"zero_optimization": {"stage": 2}}')
    text = "stage: sft\npredict_with_generate: true\ndeepspeed: {}\n"
    (v,) = fired(text.format("z3.json"), "STAGE014", path=tmp_path / "run.yaml")
    assert v.key == "predict_with_generate" and v.line == 2
    assert not fired(text.format("z2.json"), "STAGE014", path=tmp_path / "run.yaml")


def test_predict_with_generate_and_compute_accuracy() -> None:
    assert fired("predict_with_generate: true\ncompute_accuracy: true\n", "STAGE015")
    assert not fired("predict_with_generate: true\n", "STAGE015")


def test_stage_keys_ignored_points_at_each_key() -> None:
    text = "model_name_or_path: m\ndo_train: true\npref_beta: 0.1\nppo_epochs: 2\nkto_chosen_weight: 1.0\n"
    vs = fired(text, "STAGE016")
    assert {v.key: v.line for v in vs} == {"pref_beta": 3, "ppo_epochs": 4, "kto_chosen_weight": 5}
    assert "`stage` is unset" in vs[0].message
    assert [v.key for v in fired("stage: kto\n" + text, "STAGE016")] == ["ppo_epochs"]
    assert [v.key for v in fired("stage: dpo\npref_beta: 0.1\nkto_chosen_weight: 1.0\n", "STAGE016")] == [
        "kto_chosen_weight"
    ]


def test_dpo_reference_free_loss_ignores_ref_model() -> None:
    assert fired("stage: dpo\npref_loss: orpo\nref_model: m\n", "STAGE017")
    assert not fired("stage: dpo\npref_loss: sigmoid\nref_model: m\n", "STAGE017")


_CONTINUE_SFT = "model_name_or_path: base\nadapter_name_or_path: saves/sft\ndo_train: true\nfinetuning_type: lora\n"


@pytest.mark.parametrize("stage", ["dpo", "kto", "ppo"])
def test_reference_is_the_base_model_when_continuing_an_sft_adapter(stage: str) -> None:
    """LoRA with no ref_model: the reference is the policy with its adapter disabled, i.e. the base model."""
    text = _CONTINUE_SFT + f"stage: {stage}\n"
    (v,) = fired(text, "STAGE018")
    assert v.severity is Severity.WARNING and v.line == 2 and "adapter disabled" in v.message
    assert "base model" in v.message and "create_new_adapter" in v.hint
    fixed = fix_text(text, select="STAGE018", unsafe=True)
    assert "ref_model: base\nref_model_adapters: saves/sft\n" in fixed
    assert not fired(fixed, "STAGE018")


def test_reference_rule_quiet_where_the_reference_is_the_sft_model() -> None:
    text = _CONTINUE_SFT + "stage: dpo\n"
    assert not fired(text + "ref_model: sft-merged\n", "STAGE018")
    assert not fired(text + "create_new_adapter: true\n", "STAGE018")  # the SFT adapter is merged first
    assert not fired(text + "pref_loss: simpo\n", "STAGE018")  # reference-free
    assert not fired(text.replace("do_train: true\n", ""), "STAGE018")  # eval: the model itself is the reference
    assert not fired(text.replace("finetuning_type: lora", "finetuning_type: full"), "STAGE018")
    assert not fired(text.replace("adapter_name_or_path: saves/sft\n", ""), "STAGE018")
    assert not fired(_CONTINUE_SFT + "stage: sft\n", "STAGE018")


def test_reference_rule_when_the_adapter_cannot_be_merged(tmp_path: Path) -> None:
    """A quantized model (or ZeRO-3) resumes the last adapter even with create_new_adapter."""
    text = _CONTINUE_SFT + "stage: dpo\ncreate_new_adapter: true\n"
    (v,) = fired(text + "quantization_bit: 4\n", "STAGE018")
    assert "create_new_adapter" not in v.hint
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    assert fired(text + "deepspeed: z3.json\n", "STAGE018", path=tmp_path / "run.yaml")
    (v,) = fired(_CONTINUE_SFT.replace("saves/sft", "saves/a,saves/sft") + "stage: kto\n", "STAGE018")
    assert "`saves/sft`" in v.message and "`saves/a` merged" in v.message


# -- DSET --------------------------------------------------------------------------------------------------------
def test_val_size_needs_dataset_and_excludes_eval_dataset() -> None:
    assert fired("val_size: 0.1\n", "DSET001")
    assert not fired("val_size: 0.0\n", "DSET001")
    assert not fired("dataset: d\nval_size: 0.1\n", "DSET001")
    text = "dataset: d\neval_dataset: e\nval_size: 0.1\n"
    (v,) = fired(text, "DSET002")
    assert v.line == 3
    assert fix_text(text, select="DSET002", unsafe=True) == "dataset: d\neval_dataset: e\n"
    assert fix_text(text, select="DSET002") == text  # the fix changes meaning: not applied without --unsafe-fixes


def test_interleave_probs_rules() -> None:
    text = "dataset: a,b\ninterleave_probs: 0.5,0.5\n"
    (v,) = fired(text, "DSET003")
    assert "(the default)" in v.message
    fixed = fix_text(text, select="DSET003", unsafe=True)
    assert "mix_strategy: interleave_under" in fixed and not fired(fixed, "DSET003")
    ok = "mix_strategy: interleave_over\n"
    assert not fired(ok + text, "DSET004")
    assert fired(ok + "dataset: a,b,c\ninterleave_probs: 0.5,0.5\n", "DSET004")
    assert fired(ok + "dataset: [a, b]\neval_dataset: e\ninterleave_probs: [0.5, 0.5]\n", "DSET004")
    (v,) = fired(ok + "dataset: a,b\ninterleave_probs: 0.5,half\n", "DSET004")
    assert "not a number" in v.message
    (v,) = fired(ok + "dataset: a,b,c\ninterleave_probs: 0.3,0.3,0.3\n", "DSET004")
    assert "add up to 0.9" in v.message
    assert not fired(ok + "dataset: a,b,c\ninterleave_probs: 0.7,0.2,0.1\n", "DSET004")  # float rounding is fine
    assert not fired(ok + "dataset: a\ninterleave_probs: 0.5\n", "DSET004")  # one dataset is never interleaved


def test_streaming_rules() -> None:
    base = "dataset: d\nstreaming: true\n"
    assert fired(base + "max_steps: 10\nval_size: 0.1\n", "DSET005")
    assert not fired(base + "max_steps: 10\nval_size: 100\n", "DSET005")
    assert fired(base + "max_steps: 10\nmax_samples: 10\n", "DSET006")
    assert fired(base, "DSET007")
    assert not fired(base + "max_steps: 10\n", "DSET007")
    assert not fired("dataset: d\nval_size: 0.1\nmax_samples: 5\n", "DSET005")


def test_mask_history_train_on_prompt() -> None:
    assert fired("mask_history: true\ntrain_on_prompt: true\n", "DSET008")
    assert not fired("mask_history: true\ntrain_on_prompt: false\n", "DSET008")


def test_training_needs_a_dataset_only_when_training() -> None:
    assert fired("do_train: true\n", "DSET009")
    assert not fired("do_train: false\n", "DSET009")
    assert not fired("do_train: true\n", "DSET009", command="export")


def test_eval_needs_data_including_implicit_do_eval() -> None:
    for text in ("do_eval: true\n", "do_predict: true\n", "predict_with_generate: true\n", "eval_strategy: epoch\n"):
        assert fired("dataset: d\n" + text, "DSET010"), text
    for ok in ("val_size: 0.1\n", "eval_dataset: e\n"):
        assert not fired("dataset: d\ndo_eval: true\n" + ok, "DSET010"), ok
    assert not fired("dataset: d\neval_strategy: 'no'\n", "DSET010")
    (v,) = fired("dataset: d\neval_strategy: steps\n", "DSET010")
    assert v.key == "eval_strategy" and "turns on `do_eval`" in v.message
    fixed = fix_text("dataset: d\neval_strategy: steps\n", select="DSET010", unsafe=True)
    assert fixed == "dataset: d\nval_size: 0.1\neval_strategy: steps\n"
