"""Numeric ranges (RANGE001) and peft's OFT sizing (RANGE002)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tuner.config.schema import load_schema
from tuner.config.ranges import BANDS, NOT_RANGED, Band
from tuner.lint.rule import Severity
from tuner.lint.testing import fix_text, lint_text
from tuner.rules.ranges import WHEN


def fired(text: str, code: str = "RANGE001", **options: Any) -> list[Any]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


def _numeric_keys() -> set[str]:
    """Every settable int or float key of any supported release (LLaMA-Factory 0.8.0 to 0.9.5 and its head)."""
    return {
        name
        for name, spec in load_schema().keys.items()
        if any(d.kind in ("int", "float") and d.settable for d in spec.declarations)
    }


# -- the table -------------------------------------------------------------------------------------------------------
def test_every_numeric_key_has_a_recorded_decision() -> None:
    banded = {b.key for b in BANDS}
    assert not banded & set(NOT_RANGED), "a key is either banded or explained, not both"
    missing = _numeric_keys() - banded - set(NOT_RANGED)
    assert not missing, f"numeric keys without a range decision: {sorted(missing)}"
    unknown = (banded | set(NOT_RANGED)) - set(load_schema().keys)
    assert not unknown, f"not keys of the schema: {sorted(unknown)}"
    assert len(BANDS) >= 50


@pytest.mark.parametrize("band", BANDS, ids=lambda b: f"{b.key}-{b.when}")
def test_band_is_documented(band: Band) -> None:
    assert band.when in WHEN
    assert band.severity in ("error", "warning")
    assert band.effect and band.expect and not band.expect.startswith("use ")
    # an upstream file and a release (or the library whose code it is)
    assert "`" in band.source and any(w in band.source for w in ("v0.", "v4.", "v5.", "torch", "datasets", "vLLM", "TRL"))


def test_bands_of_a_key_do_not_overlap() -> None:
    probes = [-(2.0**40), -1, -0.5, 0, 1e-7, 0.3, 0.5, 0.9999, 1, 1.0, 1.5, 2, 3, 2.0**32, math.inf, -math.inf]
    for key in {b.key for b in BANDS}:
        bands = [b for b in BANDS if b.key == key]
        for value in probes:
            hits = [b for b in bands if b.contains(value)]
            same_when = {b.when for b in hits}
            assert len(hits) == len(same_when) <= 2, (key, value, hits)


def test_band_matching_ignores_non_numbers() -> None:
    band = Band("x", effect="e", expect="x", source="`s` v0.9", when="train", high=1, high_closed=False)
    assert band.contains(0) and band.contains(-math.inf)
    assert not band.contains(True) and not band.contains(False)  # a bool is not a count
    assert not band.contains(math.nan)
    assert not band.contains("0")  # type: ignore[arg-type]
    floats = Band("x", effect="e", expect="x", source="`s`", when="train", low=1, high=1, only_float=True)
    assert floats.contains(1.0) and not floats.contains(1)
    frac = Band("x", effect="e", expect="x", source="`s`", when="train", low=1, low_closed=False, only_fractional=True)
    assert frac.contains(1.5) and not frac.contains(2) and not frac.contains(math.inf)


# -- every band fires where its condition holds, and not for a working value ------------------------------------------
_TRAIN: dict[str, Any] = {"do_train": True}
#: A config (and lint options) in which each condition holds.
_CONTEXT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "train": (_TRAIN, {}),
    "train_command": (_TRAIN, {}),
    "evaluates": ({**_TRAIN, "do_eval": True}, {}),
    "epochs": (_TRAIN, {}),
    "logging_steps": (_TRAIN, {}),
    "eval_steps": ({**_TRAIN, "eval_strategy": "steps", "eval_steps": 100}, {}),
    "save_steps": (_TRAIN, {}),
    "saves": (_TRAIN, {}),
    "workers": ({**_TRAIN, "dataloader_num_workers": 2}, {}),
    "adam": (_TRAIN, {}),
    "seeded": (_TRAIN, {}),
    "profiler": ({**_TRAIN, "enable_torch_profiler": True}, {}),
    "packing": ({**_TRAIN, "stage": "pt"}, {}),
    "has_split": ({**_TRAIN, "dataset": "alpaca_en_demo"}, {}),
    "split": ({**_TRAIN, "dataset": "alpaca_en_demo"}, {}),
    "val_size_unused": ({**_TRAIN, "dataset": "alpaca_en_demo"}, {}),
    "not_streaming": (_TRAIN, {}),
    "loraplus": ({**_TRAIN, "finetuning_type": "lora", "loraplus_lr_ratio": 16}, {}),
    "preference": ({**_TRAIN, "stage": "dpo"}, {}),
    "dpo": ({**_TRAIN, "stage": "dpo"}, {}),
    "dpo_sigmoid": ({**_TRAIN, "stage": "dpo"}, {}),
    "kto": ({**_TRAIN, "stage": "kto"}, {}),
    "ppo": ({**_TRAIN, "stage": "ppo"}, {}),
    "galore": ({**_TRAIN, "use_galore": True}, {}),
    "apollo": ({**_TRAIN, "use_apollo": True}, {}),
    "badam_layer": ({**_TRAIN, "use_badam": True}, {}),
    "badam_ratio": ({**_TRAIN, "use_badam": True, "badam_mode": "ratio"}, {}),
    "generates": ({"template": "llama3"}, {"command": "chat"}),
    "generates_hf": ({"template": "llama3"}, {"command": "chat"}),
    "samples": ({"template": "llama3"}, {"command": "chat"}),
    "samples_hf": ({"template": "llama3"}, {"command": "chat"}),
    "predict_samples": ({"do_predict": True, "predict_with_generate": True}, {}),
    "vllm": ({"infer_backend": "vllm"}, {"command": "chat"}),
    "eval_command": ({"task": "mmlu_test"}, {"command": "eval"}),
    "export": ({"export_dir": "out"}, {"command": "export"}),
}
#: Values that work, for keys whose default is unset.
_GOOD = {
    "early_stopping_steps": 3, "dataloader_prefetch_factor": 2, "eval_accumulation_steps": 4, "neftune_noise_alpha": 5,
    "max_samples": 100, "preprocessing_num_workers": 4, "save_total_limit": 2, "loraplus_lr_ratio": 16,
}  # fmt: skip


def _yaml(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text if "e" not in text else f"{value:.12f}".rstrip("0")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _config(context: dict[str, Any], **values: Any) -> str:
    return "".join(f"{k}: {_yaml(v)}\n" for k, v in {**context, **values}.items())


def _inside(band: Band) -> float:
    """A value in the band."""
    if band.only_fractional:
        return band.low + 0.5
    if math.isfinite(band.low) and math.isfinite(band.high):
        value = band.low if band.low_closed else (band.low + band.high) / 2
    elif math.isfinite(band.high):
        value = band.high if band.high_closed else band.high - 1
    else:
        value = band.low if band.low_closed else band.low + 1
    return float(value) if band.only_float else (int(value) if float(value).is_integer() else value)


@pytest.mark.parametrize("band", BANDS, ids=lambda b: f"{b.key}-{b.when}")
def test_every_band_fires_in_its_context(band: Band) -> None:
    context, options = _CONTEXT[band.when]
    value = _inside(band)
    assert band.contains(value)
    vs = fired(_config(context, **{band.key: value}), **options)
    assert [v.key for v in vs] == [band.key], _config(context, **{band.key: value})
    assert vs[0].severity is Severity(band.severity)
    assert band.effect in vs[0].message and band.source in vs[0].message and vs[0].hint == f"use {band.expect}"
    good = _GOOD.get(band.key, load_schema().keys[band.key].default)
    assert not fired(_config(context, **{band.key: good}), **options), good


# -- conditions ---------------------------------------------------------------------------------------------------------
def test_the_issue_examples() -> None:
    vs = fired("do_train: true\ngradient_accumulation_steps: 0\ncutoff_len: 0\n")
    assert [v.key for v in vs] == ["gradient_accumulation_steps", "cutoff_len"]
    assert "ZeroDivisionError" in vs[0].message and "no token is left" in vs[1].message
    assert all(v.severity is Severity.ERROR for v in vs)


def test_values_are_shown_as_written() -> None:
    (v,) = fired("do_train: true\ndataset: a\nval_size: 1.0\n")
    assert v.message.startswith("`val_size: 1.0`:") and "test_size=1.0" in v.message
    assert not fired("do_train: true\ndataset: a\nval_size: 1\n")  # an int: one validation sample
    (v,) = fired("do_train: true\ndataset: a\nval_size: 2.5\n")
    assert v.severity is Severity.WARNING and "cuts off the fraction" in v.message
    assert not fired("do_train: true\ndataset: a\nval_size: 2000\n")
    assert not fired("do_train: true\nval_size: 2.5\n")  # no dataset to split: DSET001


def test_ranges_apply_only_where_the_value_is_read() -> None:
    assert not fired("ppo_epochs: 0\ndo_train: true\nstage: sft\n")
    assert fired("ppo_epochs: 0\ndo_train: true\nstage: ppo\n")
    assert not fired("gradient_accumulation_steps: 0\n")  # no do_train: nothing is trained
    assert not fired("per_device_eval_batch_size: 0\ndo_train: true\n")  # no evaluation
    assert fired("per_device_eval_batch_size: 0\ndo_train: true\neval_strategy: epoch\n")
    assert not fired("num_train_epochs: 0\ndo_train: true\nmax_steps: 100\n")  # max_steps wins
    assert not fired("adam_beta2: 1.0\ndo_train: true\noptim: sgd\n")
    assert fired("adam_beta2: 1.0\ndo_train: true\noptim: adamw_torch\n")
    assert not fired("adam_beta2: 1.0\ndo_train: true\nuse_galore: true\n")
    assert not fired("eval_steps: -5\ndo_train: true\n")  # eval_strategy no: never read
    assert not fired("save_steps: 0\ndo_train: true\nsave_strategy: epoch\n")
    assert not fired("cutoff_len: 1\ndo_train: true\n") and fired("cutoff_len: 1\ndo_train: true\npacking: true\n")
    assert not fired("dpo_label_smoothing: 0.7\ndo_train: true\nstage: dpo\npref_loss: ipo\n")  # STAGE004's case
    assert not fired("temperature: 0\n", command="chat")  # LLaMA-Factory turns sampling off
    assert fired("temperature: 0\ndo_predict: true\npredict_with_generate: true\n")
    assert not fired("temperature: 0\ndo_predict: true\npredict_with_generate: true\ndo_sample: false\n")
    assert not fired("top_k: -1\ninfer_backend: vllm\n", command="chat")  # vLLM's 'off'
    assert fired("top_k: -1\n", command="chat")
    assert not fired("seed: -1\n", command="chat")


def test_negative_val_size_is_left_to_dset010_when_evaluation_is_asked_for() -> None:
    (v,) = fired("do_train: true\ndataset: a\nval_size: -0.1\n")
    assert v.severity is Severity.WARNING and "no evaluation set" in v.message
    text = "do_train: true\ndataset: a\nval_size: -0.1\neval_strategy: steps\n"
    assert not fired(text)
    assert [v.code for v in lint_text(text, select=["RANGE001", "DSET010"])] == ["DSET010"]


def test_other_rules_keep_their_keys() -> None:
    text = "do_train: true\nlearning_rate: -1.0e-4\nlora_rank: 0\nlora_dropout: 1.5\nwarmup_ratio: 2.0\n"
    assert not fired(text)


@pytest.mark.parametrize("value", ["true", "'0'", ".nan", "[1, 2]", "null"])
def test_non_numbers_are_not_ranged(value: str) -> None:
    assert not fired(f"do_train: true\ngradient_accumulation_steps: {value}\ncutoff_len: {value}\n")


def test_infinities_are_reported_without_crashing() -> None:
    (v,) = fired("do_train: true\nmax_grad_norm: -.inf\n")
    assert v.message.startswith("`max_grad_norm: -.inf`")
    assert [v.key for v in fired("do_train: true\nseed: .inf\n")] == ["seed"]


# -- RANGE002 -----------------------------------------------------------------------------------------------------------
def test_oft_needs_exactly_one_of_rank_and_block_size() -> None:
    text = "do_train: true\nfinetuning_type: oft\noft_rank: 8\n"
    (v,) = fired(text, "RANGE002")
    assert v.key == "oft_rank" and "(the default)" in v.message and "but not both simultaneously" in v.message
    assert fix_text(text, select="RANGE002", unsafe=True) == text + "oft_block_size: 0\n"
    assert not fired(text + "oft_block_size: 0\n", "RANGE002")
    (v,) = fired("do_train: true\nfinetuning_type: oft\noft_block_size: 0\n", "RANGE002")
    assert "must be non-zero" in v.message
    assert not fired("do_train: true\nfinetuning_type: oft\n", "RANGE002")  # block size 32, rank 0
    assert not fired("do_train: true\nfinetuning_type: lora\noft_rank: 8\n", "RANGE002")
    assert not fired(text + "adapter_name_or_path: saves/oft\n", "RANGE002")
