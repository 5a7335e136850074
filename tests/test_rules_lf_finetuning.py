"""LLaMA-Factory start-up checks for fine-tuning methods (FT) and quantization (QUANT)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tuner.config.context import Context
from tuner.lint.rule import Severity
from tuner.lint.testing import fix_text, lint_result, lint_text


def fired(text: str, code: str, **options: Any) -> list[Any]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """A directory with z2.json and z3.json DeepSpeed configs; lint with ``path=ds / "run.yaml"``."""
    for stage in (2, 3):
        (tmp_path / f"z{stage}.json").write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    return tmp_path


def with_model(monkeypatch: pytest.MonkeyPatch, **arch: Any) -> None:
    stub = SimpleNamespace(arch=SimpleNamespace(**arch))
    monkeypatch.setattr(Context, "model", property(lambda self: stub))


# -- FT ----------------------------------------------------------------------------------------------------------
def test_ref_and_reward_quantization_bits() -> None:
    vs = fired("ref_model_quantization_bit: 3\nreward_model_quantization_bit: 16\n", "FT001")
    assert [v.line for v in vs] == [1, 2]
    assert not fired("ref_model_quantization_bit: 8\nreward_model_quantization_bit: 4\n", "FT001")
    assert not fired('ref_model_quantization_bit: "4"\n', "FT001")  # a type error: the KEY rules report it


def test_hyper_parallel_cp_size_fix() -> None:
    text = "finetuning_type: full\nhyper_parallel_cp_size: -2\n"
    assert fix_text(text, select="FT002") == "finetuning_type: full\nhyper_parallel_cp_size: 1\n"


def test_llama_pro_with_full() -> None:
    assert fired("finetuning_type: full\nuse_llama_pro: true\n", "FT003")
    assert not fired("finetuning_type: lora\nuse_llama_pro: true\n", "FT003")


def test_lora_default_with_galore_apollo_badam() -> None:
    (v,) = fired("use_badam: true\n", "FT004")
    assert "(the default)" in v.message and v.line == 1  # finetuning_type is not in the file: the BAdam line
    fixed = fix_text("stage: sft\nuse_apollo: true\n", select="FT004", unsafe=True)
    assert fixed == "stage: sft\nuse_apollo: true\nfinetuning_type: full\n"
    assert not fired(fixed, "FT004")
    assert not fired("finetuning_type: freeze\nuse_badam: true\n", "FT004")


def test_one_optimizer_method() -> None:
    (v,) = fired("finetuning_type: full\nuse_galore: true\nuse_apollo: true\nuse_badam: true\n", "FT005")
    assert "`use_galore`, `use_apollo`, `use_badam`" in v.message
    assert not fired("finetuning_type: full\nuse_galore: true\nuse_apollo: false\n", "FT005")


def test_pissa_stage() -> None:
    for text in ("stage: ppo\n", "stage: kto\n", "stage: dpo\n", "stage: dpo\npref_loss: ipo\n"):
        assert fired(text + "pissa_init: true\n", "FT006"), text
    for text in ("stage: sft\n", "stage: dpo\npref_loss: orpo\n", "stage: rm\n"):
        assert not fired(text + "pissa_init: true\n", "FT006"), text


def test_lora_only_options_each_reported_with_unsafe_removal() -> None:
    text = "finetuning_type: freeze\nloraplus_lr_ratio: 16.0\nuse_rslora: true\nuse_dora: true\npissa_init: true\n"
    vs = fired(text, "FT007")
    assert [v.key for v in vs] == ["loraplus_lr_ratio", "use_rslora", "use_dora", "pissa_init"]
    assert all(not v.fix.safe for v in vs)
    assert fix_text(text, select="FT007", unsafe=True) == "finetuning_type: freeze\n"
    assert not fired(text.replace("freeze", "lora"), "FT007")


def test_adapter_needs_lora_for_every_command() -> None:
    text = "finetuning_type: oft\nadapter_name_or_path: saves/a\n"
    for command in ("train", "chat", "export", "eval"):
        assert fired(text, "FT008", command=command), command
    assert not fired("adapter_name_or_path: saves/a\n", "FT008")


def test_single_adapter_backends(ds: Path) -> None:
    two = "adapter_name_or_path: a,b\n"
    (v,) = fired(two + "deepspeed: z3.json\n", "FT016", path=ds / "run.yaml")
    assert "Cannot use multiple adapters in DeepSpeed ZeRO-3." in v.message
    assert not fired(two + "deepspeed: z2.json\n", "FT016", path=ds / "run.yaml")
    assert fired(two + "use_kt: true\n", "FT016")
    assert not fired("adapter_name_or_path: a\nuse_unsloth: true\n", "FT016")


def test_layerwise_needs_a_known_distributed_run(ds: Path) -> None:
    text = "finetuning_type: full\nuse_apollo: true\napollo_layerwise: true\n"
    assert not fired(text, "FT009")  # GPU count unknown: not guessed
    assert not fired(text, "FT009", gpus=1)
    (v,) = fired(text, "FT009", gpus=8)
    assert "8 GPUs" in v.message and v.key == "apollo_layerwise"
    assert fired(text, "FT009", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert fired(text, "FT009", env={"FORCE_TORCHRUN": "1"})
    assert fired(text, "FT009", gpus=1, nodes=2)
    (v,) = fired(text + "deepspeed: z2.json\n", "FT009", path=ds / "run.yaml")
    assert "DeepSpeed" in v.message


def test_badam_distributed(ds: Path) -> None:
    text = "finetuning_type: full\nuse_badam: true\n"
    (v,) = fired(text + "badam_mode: ratio\n", "FT010", gpus=2)
    assert v.key == "badam_mode"
    (v,) = fired(text, "FT010", gpus=2)
    assert "ZeRO-3" in v.message
    assert not fired(text + "deepspeed: z3.json\n", "FT010", path=ds / "run.yaml")
    assert fired(text + "deepspeed: z2.json\n", "FT010", path=ds / "run.yaml")
    assert not fired(text + "badam_mode: ratio\n", "FT010", gpus=1)


def test_galore_apollo_deepspeed(ds: Path) -> None:
    assert fired("finetuning_type: full\nuse_apollo: true\ndeepspeed: z2.json\n", "FT011", path=ds / "run.yaml")
    assert not fired("finetuning_type: full\nuse_badam: true\ndeepspeed: z3.json\n", "FT011", path=ds / "run.yaml")


def test_galore_apollo_optim() -> None:
    for optim in ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "adamw_bnb_8bit"):
        assert not fired(f"use_galore: true\noptim: {optim}\n", "FT012"), optim
    (v,) = fired("use_galore: true\noptim: sgd\n", "FT012")
    assert v.severity is Severity.ERROR and v.key == "optim"
    (v,) = fired("use_apollo: true\noptim: adafactor\n", "FT012")
    assert "`adamw_torch`" in v.hint
    (v,) = fired("use_galore: true\n", "FT012")
    assert v.severity is Severity.WARNING and v.fix.safe
    assert fix_text("use_galore: true\nbf16: true\n", select="FT012") == "use_galore: true\noptim: adamw_torch\nbf16: true\n"


def test_layerwise_grad_accum() -> None:
    text = "use_galore: true\ngalore_layerwise: true\ngradient_accumulation_steps: 4\n"
    (v,) = fired(text, "FT013")
    assert v.line == 3
    assert not fired("use_galore: true\ngalore_layerwise: false\ngradient_accumulation_steps: 4\n", "FT013")
    assert not fired("use_galore: true\ngalore_layerwise: true\n", "FT013")  # GA defaults to 1


def test_freeze_modules() -> None:
    base = "do_train: true\nfinetuning_type: freeze\n"
    (v,) = fired(base + "freeze_trainable_modules: mlp,embed_tokens\n", "FT014")
    assert "freeze_extra_modules" in v.hint
    assert not fired(base + "freeze_trainable_modules: mlp,self_attn\n", "FT014")
    assert not fired(base + "freeze_trainable_modules: all\n", "FT014")
    (v,) = fired(base + "freeze_extra_modules: mlp\n", "FT014")
    assert v.key == "freeze_extra_modules"
    assert not fired(base + "freeze_extra_modules: embed_tokens,lm_head\n", "FT014")
    (v,) = fired(base + "freeze_trainable_layers: 0\n", "FT014")
    assert "nothing is trainable" in v.message
    assert not fired(base + "freeze_trainable_layers: 0\nfreeze_extra_modules: embed_tokens\n", "FT014")
    assert not fired(base + "freeze_trainable_layers: -4\n", "FT014")
    assert fired("do_train: true\nfinetuning_type: lora\nuse_llama_pro: true\nfreeze_trainable_layers: 0\n", "FT014")
    assert not fired("finetuning_type: freeze\nfreeze_trainable_modules: q_proj\n", "FT014")  # not training


def test_llama_pro_layers_needs_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "model_name_or_path: m\ndo_train: true\nfinetuning_type: freeze\nuse_llama_pro: true\nfreeze_trainable_layers: 5\n"
    with_model(monkeypatch, num_hidden_layers=28)
    (v,) = fired(text, "FT015")
    assert "28 layers" in v.message and "4 or 7" in v.hint
    assert not fired(text.replace(": 5", ": 7"), "FT015")


def test_llama_pro_layers_is_skipped_without_a_model(tmp_path: Path) -> None:
    text = "model_name_or_path: ./no-such-model\ndo_train: true\nfinetuning_type: freeze\nuse_llama_pro: true\n"
    result = lint_result(text, path=tmp_path / "run.yaml", select=["FT015"])
    assert "FT015" in result.skipped and not result.violations


@pytest.mark.parametrize("layers", [28, 40, -28, -100])
def test_freeze_layers_selecting_every_layer(monkeypatch: pytest.MonkeyPatch, layers: int) -> None:
    """Positive N trains the last N layers, negative the first N; |N| >= the layer count trains them all."""
    text = f"model_name_or_path: m\ndo_train: true\nfinetuning_type: freeze\nfreeze_trainable_layers: {layers}\n"
    with_model(monkeypatch, num_hidden_layers=28)
    (v,) = fired(text, "FT018")
    assert v.severity is Severity.WARNING and v.line == 4 and "has 28" in v.message and "every decoder layer" in v.message
    assert ("last" if layers > 0 else "first") in v.message


@pytest.mark.parametrize(
    "extra",
    ["freeze_trainable_layers: 27\n", "freeze_trainable_layers: -27\n", "freeze_trainable_layers: 0\n", "",
     "freeze_trainable_layers: 28\nuse_llama_pro: true\n",  # LLaMA Pro reads N as a group count (FT015)
     "freeze_trainable_layers: .inf\n", "freeze_trainable_layers: [28]\n"],  # odd values: the key schema's finding
)  # fmt: skip
def test_freeze_layers_below_the_layer_count(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    with_model(monkeypatch, num_hidden_layers=28)
    assert not fired("model_name_or_path: m\ndo_train: true\nfinetuning_type: freeze\n" + extra, "FT018")
    assert not fired("model_name_or_path: m\nfinetuning_type: freeze\nfreeze_trainable_layers: 28\n", "FT018")


def test_freeze_layers_is_skipped_without_a_model(tmp_path: Path) -> None:
    text = "model_name_or_path: ./no-such-model\ndo_train: true\nfinetuning_type: freeze\nfreeze_trainable_layers: 99\n"
    result = lint_result(text, path=tmp_path / "run.yaml", select=["FT018"])
    assert "FT018" in result.skipped and not result.violations


# -- QUANT -------------------------------------------------------------------------------------------------------
def test_verify_model_args_quantization_checks() -> None:
    assert fired("quantization_bit: 4\nfinetuning_type: freeze\n", "QUANT001")
    assert not fired("quantization_bit: 4\nfinetuning_type: oft\n", "QUANT001")
    assert fired("quantization_bit: 4\npissa_init: true\n", "QUANT002")
    assert fired("quantization_bit: 8\nresize_vocab: true\n", "QUANT003")
    assert fired("quantization_bit: 4\nadapter_name_or_path: a\ncreate_new_adapter: true\n", "QUANT004")
    assert not fired("quantization_bit: 4\ncreate_new_adapter: true\n", "QUANT004")
    (v,) = fired("quantization_bit: 4\nadapter_name_or_path: [a, b, c]\n", "QUANT005")
    assert v.message.startswith("3 adapters")
    assert not fired("quantization_bit: 4\nadapter_name_or_path: a\n", "QUANT005")
    assert not fired("adapter_name_or_path: a,b\n", "QUANT005")


def test_fp8_with_quantization_not_under_mca() -> None:
    text = "fp8: true\nquantization_bit: 4\n"
    assert fired(text, "QUANT006")
    assert not fired(text, "QUANT006", env={"USE_MCA": "1"})


def test_device_map_auto_only_refused_when_training() -> None:
    text = "quantization_bit: 4\nquantization_device_map: auto\n"
    assert fired("do_train: true\n" + text, "QUANT007")
    assert not fired(text, "QUANT007")
    assert fix_text("do_train: true\n" + text, select="QUANT007") == "do_train: true\nquantization_bit: 4\n"


def test_quantization_bits_per_method() -> None:
    assert fired("quantization_bit: 3\n", "QUANT008")
    assert not fired("quantization_bit: 3\nquantization_method: hqq\n", "QUANT008")
    (v,) = fired("quantization_bit: 4\nquantization_method: eetq\n", "QUANT008")
    assert "EETQ only accepts 8-bit quantization." in v.message and "`quantization_method: bnb`" in v.hint
    assert not fired("quantization_bit: 7\nquantization_method: gptq\n", "QUANT008")  # QUANT010's case


def test_sharded_quantization(ds: Path, tmp_path: Path) -> None:
    p = ds / "run.yaml"
    assert fired("quantization_bit: 8\ndeepspeed: z3.json\n", "QUANT009", path=p)
    assert not fired("quantization_bit: 8\ndeepspeed: z2.json\n", "QUANT009", path=p)
    assert fired("quantization_bit: 8\nfsdp: full_shard auto_wrap\n", "QUANT009")
    assert fired("quantization_bit: 8\n", "QUANT009", env={"ACCELERATE_USE_FSDP": "true"})
    (v,) = fired("quantization_bit: 4\nquantization_method: hqq\ndeepspeed: z3.json\n", "QUANT009", path=p)
    assert v.key == "quantization_method"
    assert fired("quantization_bit: 8\nquantization_device_map: auto\n", "QUANT009", command="infer")
    assert not fired("do_train: true\nquantization_bit: 8\nquantization_device_map: auto\n", "QUANT009")


def test_quantization_method_without_on_the_fly_support() -> None:
    (v,) = fired("quantization_bit: 4\nquantization_method: awq\n", "QUANT010")
    assert v.severity is Severity.WARNING
    assert not fired("quantization_method: awq\n", "QUANT010")
    assert not fired("quantization_bit: 4\nquantization_method: hqq\n", "QUANT010")


def test_one_finding_for_a_quantization_method_outside_the_choices() -> None:
    """One finding per value: KEY003 checks only the choices upstream converts (not quantization_method), so an
    unknown method is QUANT010's; the other release's bitsandbytes spelling is KEY003's."""
    text = "quantization_bit: 4\nquantization_method: bitsandbytes4\n"
    found = [(v.code, v.line) for v in lint_text(text, select=["KEY003", "QUANT010"])]
    assert found == [("QUANT010", 2)]
    text = "quantization_bit: 4\nquantization_method: bitsandbytes\n"
    found = [(v.code, v.line) for v in lint_text(text, select=["KEY003", "QUANT010"])]
    assert found == [("KEY003", 2)]
    found = [(v.code, v.line) for v in lint_text("quantization_bit: 4\nquantization_method: gptq\n", select=["KEY003", "QUANT010"])]
    assert found == [("QUANT010", 2)]


def test_bitsandbytes_spelling_follows_the_target_version() -> None:
    """`bitsandbytes` up to LLaMA-Factory 0.9.2, `bnb` from 0.9.3: the default and the bit check follow."""
    (v,) = fired("quantization_bit: 2\n", "QUANT008", llamafactory="0.9.2")
    assert "`quantization_method: bitsandbytes` (the default)" in v.message
    assert fired("quantization_bit: 2\nquantization_method: bitsandbytes\n", "QUANT008", llamafactory="0.8.3")
    assert not fired("quantization_bit: 2\nquantization_method: bitsandbytes\n", "QUANT008")  # not bnb at 0.9.5
    (v,) = fired("quantization_bit: 4\nquantization_method: eetq\n", "QUANT008", llamafactory="0.9.0")
    assert "`quantization_method: bitsandbytes`" in v.hint


def test_quantization_rules_survive_odd_values() -> None:
    text = "do_train: true\nquantization_bit: 4\nquantization_method: [bnb]\nuse_dora: true\n"
    for code in ("QUANT008", "QUANT009", "QUANT010", "QUANT013"):
        assert not fired(text, code)


def test_export_quantization_bits() -> None:
    assert fired("export_quantization_bit: 5\n", "QUANT011")
    assert not fired("export_quantization_bit: 3\n", "QUANT011")


def test_ptq_checkpoint_training(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "model_name_or_path: m\ndo_train: true\n"
    with_model(monkeypatch, quantization_config={"quant_method": "awq", "bits": 4})
    assert fired(text + "finetuning_type: freeze\n", "QUANT012")
    assert fired(text + "pissa_init: true\n", "QUANT012")
    assert fired(text + "use_dora: true\n", "QUANT012")
    assert not fired(text + "use_dora: true\nadapter_name_or_path: a\n", "QUANT012")  # resumed, not created
    assert not fired(text + "finetuning_type: lora\n", "QUANT012")
    with_model(monkeypatch, quantization_config={"quant_method": "mxfp4"})
    assert not fired(text + "finetuning_type: full\n", "QUANT012")  # dequantized on load
    with_model(monkeypatch, quantization_config=None)
    assert not fired(text + "finetuning_type: full\n", "QUANT012")


def test_dora_with_on_the_fly_quantization() -> None:
    text = "do_train: true\nquantization_bit: 4\nuse_dora: true\n"
    (v,) = fired(text, "QUANT013")
    assert "`bnb`" in v.message and "`bitsandbytes`" in v.message
    assert not fired(text + "adapter_name_or_path: a\n", "QUANT013")
    assert fired(text + "adapter_name_or_path: a\ncreate_new_adapter: true\n", "QUANT013")
    assert not fired(text.replace("do_train: true\n", ""), "QUANT013")
    # Up to v0.9.2 the constant was `bitsandbytes`, transformers' own name: bitsandbytes DoRA ran; HQQ never did.
    assert not fired(text, "QUANT013", llamafactory="0.9.2")
    assert fired(text + "quantization_method: hqq\n", "QUANT013", llamafactory="0.9.2")


def test_pissa_under_zero3(ds: Path) -> None:
    (v,) = fired("pissa_init: true\ndeepspeed: z3.json\n", "FT017", path=ds / "run.yaml")
    assert v.line == 1
    assert not fired("pissa_init: true\ndeepspeed: z2.json\n", "FT017", path=ds / "run.yaml")
