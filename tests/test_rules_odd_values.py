"""Rules never crash on odd values: a list where a string is expected, inf/nan, ints far past any real setting.

The key schema (KEY003) reports wrong types; every other rule must read such a value as "not what I check" and
stay silent, not raise. A crash becomes an "internal error in rule X" line and the rule's findings are lost.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.lint.registry import load_registry
from tuner.lint.testing import lint_result

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("stage", "template", "precision", "finetuning", "distributed", "quantization", "lora", "model_args",
           "dataset_args", "rewrites", "practice")  # fmt: skip
CODES = [c.code for c in load_registry(plugins=False).sorted() if c.__module__.rsplit(".", 1)[-1] in MODULES]

#: Every key these rules read by name.
_SOURCE = "".join((ROOT / "rules" / f"{m}.py").read_text() for m in (*MODULES, "_lf_common"))
KEYS = sorted(
    set(re.findall(r'(?:get|flag|number|has|as_list|int_value|set_and_positive)\((?:ctx, )?"([a-z_0-9]+)"', _SOURCE))
)

BASE = (
    "model_name_or_path: meta-llama/Meta-Llama-3-8B\nstage: {stage}\ndo_train: true\nfinetuning_type: {ft}\n"
    "template: llama3\ndataset: a\nadapter_name_or_path: x\nquantization_bit: 4\n"
)
#: The last is the largest integer magnitude a float still holds (301 digits); past 308 digits the loader stops the
#: file with an input error of its own (see tests/test_hardening.py), so rules never see one.
ODD = ("[a, b]", ".inf", ".nan", "-1" + "0" * 300)


def test_the_sweep_covers_the_rules_and_keys() -> None:
    assert len(CODES) > 100 and len(KEYS) > 80
    assert {"quantization_method", "freeze_trainable_layers", "val_size", "learning_rate", "max_steps"} <= set(KEYS)


@pytest.mark.parametrize(("stage", "ft"), [("sft", "lora"), ("dpo", "freeze")])
def test_no_rule_crashes_on_odd_values(stage: str, ft: str) -> None:
    base = BASE.format(stage=stage, ft=ft)
    errors: list[str] = []
    for key in KEYS:
        if key == "deepspeed":
            continue  # an unreadable `deepspeed:` value is an input error of the config loader, not a rule's
        kept = "".join(line + "\n" for line in base.splitlines() if not line.startswith(f"{key}:"))
        for odd in ODD:
            result = lint_result(kept + f"{key}: {odd}\n", select=CODES, gpus=2)
            errors += [f"{key}: {odd[:12]} -> {e}" for e in result.rule_errors]
    assert errors == []


def test_model_lookup_of_an_impossible_path_is_a_skip() -> None:
    """A name too long for the file system is "model unknown", not an OSError out of the linter."""
    result = lint_result("model_name_or_path: " + "m" * 400 + "\ndo_train: true\nfinetuning_type: freeze\n", select=["FT018"])
    assert result.violations == [] and "model unknown" in result.skipped["FT018"]
