"""MEM001-MEM004: what a user sees from `cfglint` with a GPU and a model known."""

from __future__ import annotations

import re
from pathlib import Path

from tuner.lint.registry import load_registry
from tuner.lint.testing import fix_text, lint_example, lint_result, lint_text

REGISTRY = load_registry(plugins=False)

OOM = """\
model_name_or_path: meta-llama/Llama-3.1-8B-Instruct
stage: sft
do_train: true
finetuning_type: lora
per_device_train_batch_size: 16
gradient_accumulation_steps: 1
cutoff_len: 4096
bf16: true
"""


def test_examples_say_what_they_need_and_behave(tmp_path: Path) -> None:
    """The docstring examples carry their lint options (`# cfglint --hw ...`), as `cfglint explain` shows them."""
    for code in ("MEM001", "MEM002", "MEM003", "MEM004"):
        cls = REGISTRY.get(code)
        assert cls is not None and cls.needs
        for i, text in enumerate(cls.bad_examples()):
            assert text.startswith("# cfglint --hw ")
            assert code in [v.code for v in lint_example(text, code, tmp_path / f"{code}-bad{i}")], text
        for i, text in enumerate(cls.good_examples()):
            assert code not in [v.code for v in lint_example(text, code, tmp_path / f"{code}-good{i}")], text


def test_rules_are_skipped_without_hardware() -> None:
    result = lint_result(OOM, select=["MEM001", "MEM002", "MEM003", "MEM004"])
    assert not result.violations
    assert set(result.skipped) == {"MEM001", "MEM002", "MEM003", "MEM004"}
    assert "--hw" in result.skipped["MEM001"]


def test_oom_lists_cheapest_changes_in_order_with_peaks() -> None:
    (v,) = lint_text(OOM, select=["MEM001"], hw="h100")
    assert v.severity.value == "error"
    assert re.search(r"predicted peak [\d.]+ GiB per GPU is over 90% of the NVIDIA H100", v.message)
    hint = v.hint or ""
    assert hint.startswith("changes that fit, cheapest first: cutoff_len: 4096 -> ")
    order = [hint.find(s) for s in ("cutoff_len:", "per_device_train_batch_size: 16 -> ", "enable_liger_kernel")]
    assert all(i >= 0 for i in order) and order == sorted(order)
    assert "gradient_accumulation_steps: 1 -> " in hint and "(same global batch)" in hint
    assert len(re.findall(r"\(peak [\d.]+ GiB\)", hint)) >= 3
    assert v.key == "cutoff_len" and v.line == 7


def test_oom_fix_applies_the_first_change_and_then_fits() -> None:
    fixed = fix_text(OOM, select=["MEM001"], unsafe=True, hw="h100")
    assert fixed != OOM and re.search(r"^cutoff_len: \d+$", fixed, re.MULTILINE)
    assert not lint_text(fixed, select=["MEM001"], hw="h100")
    assert fix_text(OOM, select=["MEM001"], unsafe=False, hw="h100") == OOM  # the fix is unsafe


def test_oom_without_a_single_fitting_change_suggests_a_combination() -> None:
    # Full tuning of an 8B model with 8 x 8192-token sequences on one 24 GB card: the weights rule out a shorter
    # cutoff or batch alone, and the 8 x 8192 x 128K logits rule out offload or QLoRA alone.
    text = OOM.replace("finetuning_type: lora", "finetuning_type: full").replace(
        "per_device_train_batch_size: 16", "per_device_train_batch_size: 8").replace("cutoff_len: 4096", "cutoff_len: 8192")
    (v,) = lint_text(text, select=["MEM001"], hw="rtx-4090-24g")
    assert v.fix is None
    assert (v.hint or "").startswith("no single change fits; together: enable_liger_kernel: true; ZeRO-3 with CPU offload")
    assert re.search(r"\(peak [\d.]+ GiB\)$", v.hint or "")


def test_oom_while_loading_says_so_and_suggests_zero3(tmp_path: Path) -> None:
    """Full fine-tuning under ZeRO-2 with the optimizer offloaded: the training step fits a 24 GB card, but each GPU
    first holds the fp32 copy LLaMA-Factory upcasts before DeepSpeed casts it back (tuner.memory.loading)."""
    ds = tmp_path / "ds_z2_offload.json"
    ds.write_text('{"bf16": {"enabled": "auto"}, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}')
    text = (OOM.replace("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
            .replace("finetuning_type: lora", f"finetuning_type: full\ndeepspeed: {ds}")
            .replace("per_device_train_batch_size: 16", "per_device_train_batch_size: 1").replace("cutoff_len: 4096", "cutoff_len: 1024"))
    (v,) = lint_text(text, select=["MEM001"], hw="rtx-4090-24g", gpus=8)
    assert "before the first step, while the model is loaded" in v.message and "weights while loading" in v.message
    assert (v.hint or "").startswith("changes that fit, cheapest first: ZeRO-3")
    assert "cutoff_len" not in (v.hint or "")  # a shorter sequence does not shrink the set-up


def test_no_finding_when_it_fits() -> None:
    text = OOM.replace("per_device_train_batch_size: 16", "per_device_train_batch_size: 1").replace("cutoff_len: 4096", "cutoff_len: 1024")
    assert not lint_text(text, select=["MEM001", "MEM002", "MEM003"], hw="h100")


def test_zero_stage_too_low_names_the_lowest_that_fits() -> None:
    text = """\
model_name_or_path: Qwen/Qwen2.5-14B-Instruct
stage: sft
do_train: true
finetuning_type: full
per_device_train_batch_size: 1
cutoff_len: 1024
bf16: true
deepspeed:
  zero_optimization: {stage: 1}
"""
    (v,) = lint_text(text, select=["MEM002"], hw="h100", gpus=8)
    assert v.severity.value == "warning"
    assert v.message.startswith("ZeRO-1 is too low") and re.search(r"; ZeRO-2 fits at [\d.]+ GiB", v.message)
    assert v.hint == "use ZeRO-2"


def test_zero3_with_lora_gets_no_zero12_note() -> None:
    text = OOM.replace("per_device_train_batch_size: 16", "per_device_train_batch_size: 1") + "deepspeed:\n  zero_optimization: {stage: 3}\n"
    assert not lint_text(text, select=["MEM003"], hw="h100", gpus=8)


def test_zero2_lora_note_gives_numbers() -> None:
    text = OOM.replace("per_device_train_batch_size: 16", "per_device_train_batch_size: 1") + "deepspeed:\n  zero_optimization: {stage: 2}\n"
    (v,) = lint_text(text, select=["MEM003"], hw="h100", gpus=8)
    assert v.severity.value == "info"
    assert re.search(r"ZeRO-2 with LoRA (saves only|costs) [\d.]+ GiB", v.message)
    assert re.search(r"the 1[45]\.\d GiB of frozen weights stay on every GPU", v.message)
    assert "ZeRO-3" in (v.hint or "")


def test_offload_host_ram_needs_a_value_and_scales_with_gpus_per_node() -> None:
    cls = REGISTRY.get("MEM004")
    assert cls is not None
    bad = cls.bad_examples()[0]
    assert not lint_text(bad, select=["MEM004"], hw="h100", gpus=1)  # host RAM unknown: silent
    (v,) = lint_text(bad, select=["MEM004"], hw="h100", gpus=1, host_ram_gib=512)
    assert "GiB of host RAM per node" in v.message and "the host has 512 GiB" in v.message
    lora = bad.replace("finetuning_type: full", "finetuning_type: lora")
    assert not lint_text(lora, select=["MEM004"], hw="h100", gpus=8, host_ram_gib=512)
