"""The PREC/LORA/TMPL/DS/PRAC rule families: every docstring example behaves, and the PRAC rules in detail.

Docstring examples may carry what they need as YAML comments, which this harness reads:

* ``# cfglint --hw NAME --gpus N --transformers 5``: lint options, as on the command line;
* ``# NAME.json: {...}``: a DeepSpeed JSON written next to the config;
* ``# the model's config.json: {...}``: a model directory whose config.json has these fields (a small Llama
  architecture otherwise), passed as ``--model``;
* ``# env: NAME=VALUE``: the environment of the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tuner.lint.registry import load_registry
from tuner.lint.rule import Rule, Severity, Violation
from tuner.lint.testing import fix_text, lint_example, lint_text, make_model_dir

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("PREC", "LORA", "TMPL", "DS0", "PRAC")
MODULES = {
    "tuner.rules.precision",
    "tuner.rules.lora",
    "tuner.rules.template",
    "tuner.rules.distributed",
    "tuner.rules.practice",
}

REGISTRY = load_registry(plugins=False)
OUR_RULES = [cls for code, cls in sorted(REGISTRY.rules.items()) if REGISTRY.origins[code] in MODULES]

def make_model(tmp_path: Path, **fields: Any) -> Path:
    return make_model_dir(tmp_path, **fields)


def test_all_five_families_are_registered() -> None:
    codes = {cls.code for cls in OUR_RULES}
    for family in FAMILIES:
        assert any(c.startswith(family) for c in codes), family
    assert len(OUR_RULES) >= 30


@pytest.mark.parametrize("cls", OUR_RULES, ids=lambda c: c.code)
def test_docstring_examples(cls: type[Rule], tmp_path: Path) -> None:
    """Each Bad example fires the rule and each Good example does not, with the options its comments give."""
    assert cls.__doc__ and cls.bad_examples() and cls.good_examples()
    for i, text in enumerate(cls.bad_examples()):
        found = lint_example(text, cls.code, tmp_path / f"bad{i}")
        assert any(v.code == cls.code for v in found), f"{cls.code} did not fire on:\n{text}"
    for i, text in enumerate(cls.good_examples()):
        found = lint_example(text, cls.code, tmp_path / f"good{i}")
        assert not any(v.code == cls.code for v in found), f"{cls.code} fired on its good example:\n{text}\n{found}"


def codes(text: str, select: str, **options: Any) -> list[str]:
    return [v.code for v in lint_text(text, select=[select], **options)]


def one(text: str, select: str, **options: Any) -> Violation:
    found = [v for v in lint_text(text, select=[select], **options) if v.code == select]
    assert len(found) == 1, found
    return found[0]


# -- PRAC001 train_on_prompt ---------------------------------------------------------------------------------


def test_train_on_prompt_warns_for_sft_and_fix_removes_it() -> None:
    text = "stage: sft\ndo_train: true\ntrain_on_prompt: true  # copied\nlearning_rate: 1.0e-4\n"
    v = one(text, "PRAC001")
    assert v.severity is Severity.WARNING and v.line == 3 and "prompts" in v.message
    assert fix_text(text, select=["PRAC001"]) == text  # the fix changes meaning: not applied without unsafe
    assert fix_text(text, select=["PRAC001"], unsafe=True) == "stage: sft\ndo_train: true\nlearning_rate: 1.0e-4\n"


def test_train_on_prompt_left_to_stage_rules_outside_sft() -> None:
    assert codes("stage: dpo\ndo_train: true\ntrain_on_prompt: true\n", "PRAC001") == []
    assert codes("stage: sft\ndo_train: true\ntrain_on_prompt: false\n", "PRAC001") == []


# -- PRAC002 no eval on a long run -----------------------------------------------------------------------------


def test_long_run_without_eval_is_a_note() -> None:
    v = one("stage: sft\ndo_train: true\nmax_steps: 3000\n", "PRAC002")
    assert v.severity is Severity.INFO and "3000 steps" in v.message


@pytest.mark.parametrize(
    "extra",
    ["max_steps: 200\n", "max_steps: 3000\nval_size: 0.05\n", "max_steps: 3000\neval_strategy: epoch\n",
     "max_steps: 3000\neval_dataset: my_eval\n", "num_train_epochs: 3\n"],
)  # fmt: skip
def test_short_runs_and_runs_with_eval_are_fine(extra: str) -> None:
    assert codes("stage: sft\ndo_train: true\n" + extra, "PRAC002") == []


# -- PRAC003 save_steps --------------------------------------------------------------------------------------


def test_save_steps_beyond_max_steps() -> None:
    v = one("stage: sft\ndo_train: true\nmax_steps: 300\nsave_steps: 500\n", "PRAC003")
    assert "only 300 steps" in v.message and v.line == 4
    # the default save_steps (500) counts too
    assert codes("stage: sft\ndo_train: true\nmax_steps: 300\n", "PRAC003") == ["PRAC003"]


@pytest.mark.parametrize(
    "extra",
    ["max_steps: 300\nsave_steps: 100\n", "max_steps: 300\nsave_steps: 0.2\n", "max_steps: 300\nsave_strategy: epoch\n",
     "num_train_epochs: 3\nsave_steps: 100000\n"],
)  # fmt: skip
def test_save_steps_not_flagged_when_fine_or_unknown(extra: str) -> None:
    assert codes("stage: sft\ndo_train: true\n" + extra, "PRAC003") == []


# -- PRAC004 warmup ------------------------------------------------------------------------------------------


def test_fractional_warmup_steps_on_transformers_4_is_renamed_to_ratio() -> None:
    text = "stage: sft\nwarmup_steps: 0.1  # ten percent\n"
    v = one(text, "PRAC004", transformers_major=4)
    assert v.severity is Severity.ERROR and "must be of type int" in v.message
    assert fix_text(text, select=["PRAC004"], transformers_major=4) == "stage: sft\nwarmup_ratio: 0.1  # ten percent\n"


def test_fractional_warmup_steps_is_a_ratio_on_transformers_5() -> None:
    assert codes("stage: sft\nwarmup_steps: 0.1\n", "PRAC004", transformers_major=5) == []


def test_warmup_ratio_out_of_range_and_both_keys() -> None:
    assert one("stage: sft\nwarmup_ratio: 1.5\n", "PRAC004", transformers_major=4).severity is Severity.ERROR
    both = "stage: sft\nwarmup_steps: 20\nwarmup_ratio: 0.1\n"
    v4 = one(both, "PRAC004", transformers_major=4)
    assert v4.severity is Severity.WARNING and "warmup_ratio is ignored" in v4.message
    v5 = one(both, "PRAC004", transformers_major=5)
    assert "warmup_steps is ignored" in v5.message


def test_warmup_ratio_deprecated_on_transformers_5() -> None:
    text = "stage: sft\nwarmup_ratio: 0.05\n"
    v = one(text, "PRAC004", transformers_major=5)
    assert v.severity is Severity.INFO
    assert fix_text(text, select=["PRAC004"], transformers_major=5) == text  # transformers 4 would refuse the rename
    assert fix_text(text, select=["PRAC004"], transformers_major=5, unsafe=True) == "stage: sft\nwarmup_steps: 0.05\n"
    big = one("stage: sft\nwarmup_ratio: 5\n", "PRAC004", transformers_major=5)
    assert big.severity is Severity.WARNING and "5 step" in big.message
    assert codes("stage: sft\nwarmup_ratio: 0.1\n", "PRAC004", transformers_major=4) == []


def test_negative_warmup_steps() -> None:
    assert one("stage: sft\nwarmup_steps: -5\n", "PRAC004").severity is Severity.ERROR


# -- PRAC005 packing -----------------------------------------------------------------------------------------


def test_sft_packing_suggests_neat_packing() -> None:
    text = "stage: sft\ndo_train: true\npacking: true\n"
    assert one(text, "PRAC005").severity is Severity.WARNING
    assert fix_text(text, select=["PRAC005"], unsafe=True) == "stage: sft\ndo_train: true\nneat_packing: true\n"


@pytest.mark.parametrize(
    "text",
    ["stage: pt\npacking: true\n", "stage: sft\npacking: true\nneat_packing: true\n", "stage: sft\nneat_packing: true\n",
     "stage: sft\npacking: false\n", "stage: sft\n"],
)  # fmt: skip
def test_packing_fine(text: str) -> None:
    assert codes(text, "PRAC005") == []


# -- PRAC006 / PRAC007 ---------------------------------------------------------------------------------------


def test_trust_remote_code_note_mentions_revision_pinning() -> None:
    v = one("model_name_or_path: org/custom\ntrust_remote_code: true\n", "PRAC006")
    assert v.severity is Severity.INFO and "model_revision" in (v.hint or "")
    pinned = one("model_name_or_path: org/custom\ntrust_remote_code: true\nmodel_revision: 3f2a1b\n", "PRAC006")
    assert "model_revision" not in (pinned.hint or "")
    assert codes("model_name_or_path: org/custom\ntrust_remote_code: false\n", "PRAC006") == []


def test_config_that_runs_nothing() -> None:
    text = "stage: sft\nfinetuning_type: lora\n"
    assert one(text, "PRAC007").severity is Severity.WARNING
    assert fix_text(text, select=["PRAC007"], unsafe=True) == "stage: sft\ndo_train: true\nfinetuning_type: lora\n"
    for ok in ("do_train: true", "do_eval: true", "do_predict: true", "eval_strategy: steps"):
        assert codes(f"stage: sft\n{ok}\n", "PRAC007") == [], ok
    assert codes("stage: sft\nfinetuning_type: lora\n", "PRAC007", command="export") == []


# -- the template table and its generator -------------------------------------------------------------------


def test_template_table_facts() -> None:
    from tuner.config._templates_data import HUB_TEMPLATES, TEMPLATES

    assert TEMPLATES["qwen3"][0] and not TEMPLATES["qwen3_nothink"][0]  # reasoning flag
    assert TEMPLATES["glm4"][1] and not TEMPLATES["llama3"][1]  # efficient_eos
    assert TEMPLATES["qwen2_vl"][2] == "qwen2_vl" and TEMPLATES["qwen"][2] == "base"
    assert HUB_TEMPLATES["meta-llama/Meta-Llama-3-8B-Instruct"] == ("llama3", True, False)
    assert HUB_TEMPLATES["meta-llama/Meta-Llama-3-8B"][1] is False  # base checkpoint
    assert HUB_TEMPLATES["Qwen/Qwen3-4B-Instruct-2507"][0] == "qwen3_nothink"


def test_template_table_is_not_loaded_by_other_rules() -> None:
    """The lint path stays fast: the 40 KB template table loads only when a TMPL rule looks at a template."""
    tables = "print(*(f'tuner.config.{m}' in sys.modules for m in ('_templates_data', '_template_history')))\n"
    code = (
        "import sys\n"
        "from tuner.lint.testing import lint_text\n"
        "lint_text('stage: sft\\nbf16: true\\ntemplate: llama3\\n', select=['PREC', 'LORA', 'PRAC', 'DS0'])\n"
        + tables
        + "lint_text('stage: sft\\ntemplate: llama3\\n', select=['TMPL001'])\n"  # only the release history
        + tables
        + "lint_text('model_name_or_path: Qwen/Qwen2.5-7B-Instruct\\nstage: sft\\ntemplate: llama3\\n', select=['TMPL005'])\n"
        + tables
    )
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False", "False", "True", "True", "True"]
