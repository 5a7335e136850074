"""DS rules: the DeepSpeed JSON a config names, checked against DeepSpeed, transformers and the YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tuner.cli.lint import cli
from tuner.config.context import LintOptions
from tuner.lint.rule import Severity, Violation
from tuner.lint.runner import lint_file
from tuner.lint.testing import lint_text, rules_for

LF_Z3 = {  # LLaMA-Factory's examples/deepspeed/ds_z3_config.json
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto", "zero_allow_untested_optimizer": True,
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "overlap_comm": False, "contiguous_gradients": True, "sub_group_size": 1e9,
                          "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                          "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                          "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True},
}  # fmt: skip

TRAIN = "stage: sft\ndo_train: true\nfinetuning_type: lora\nbf16: true\nlearning_rate: 1.0e-4\n"


def write(tmp_path: Path, ds: dict[str, Any], yaml_extra: str = "", name: str = "ds.json") -> Path:
    (tmp_path / name).write_text(json.dumps(ds, indent=2) + "\n")
    p = tmp_path / "run.yaml"
    p.write_text(TRAIN + yaml_extra + f"deepspeed: {name}\n")
    return p


def found(path: Path, code: str, **options: Any) -> list[Violation]:
    options.setdefault("cwd", path.parent)
    return [v for v in lint_text(path.read_text(), path=path, select=[code], **options) if v.code == code]


def test_llamafactory_z3_example_is_clean(tmp_path: Path) -> None:
    p = write(tmp_path, LF_Z3)
    assert [v.code for v in lint_text(p.read_text(), path=p, select=["DS0"], cwd=tmp_path, gpus=8)] == []


# -- DS001 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [4, -1, "three", True])
def test_invalid_stage(tmp_path: Path, stage: Any) -> None:
    [v] = found(write(tmp_path, {"zero_optimization": {"stage": stage}}), "DS001")
    assert v.severity is Severity.ERROR and v.path.name == "ds.json" and v.line == 3


def test_missing_zero_section_and_auto_and_quoted_stage(tmp_path: Path) -> None:
    [missing] = found(write(tmp_path, {"bf16": {"enabled": "auto"}}), "DS001")
    assert "Please specify the ZeRO optimization config" in missing.message
    [auto] = found(write(tmp_path, {"zero_optimization": {"stage": "auto"}}), "DS001")
    assert auto.severity is Severity.WARNING and "defaults to 2" in auto.message
    p = write(tmp_path, {"zero_optimization": {"stage": "3"}})
    [quoted] = found(p, "DS001")
    assert quoted.fix is not None and quoted.fix.safe
    result = lint_file(p, rules_for(["DS001"]), LintOptions(cwd=tmp_path, env={}), fix=True)
    assert json.loads((tmp_path / "ds.json").read_text())["zero_optimization"]["stage"] == 3
    assert result.violations == []


# -- DS002 / DS003 ----------------------------------------------------------------------------------------


def test_offload_param_needs_zero3(tmp_path: Path) -> None:
    p = write(tmp_path, {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}})
    [v] = found(p, "DS002")
    assert v.severity is Severity.WARNING and "ZeRO-3" in v.message and v.path.name == "ds.json"
    z3 = write(
        tmp_path,
        {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}, "offload_optimizer": {"device": "cpu"}}},
    )
    assert found(z3, "DS002") == []


def test_offload_optimizer_with_zero0_and_partial_ratio(tmp_path: Path) -> None:
    [v] = found(write(tmp_path, {"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}}), "DS002")
    assert "ZeRO-0" in v.message
    [r] = found(
        write(tmp_path, {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}}),
        "DS002",
    )
    assert r.severity is Severity.ERROR and "Partial offloading" in r.message


def test_offload_device_values(tmp_path: Path) -> None:
    [gpu] = found(write(tmp_path, {"zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}}}), "DS003")
    assert gpu.severity is Severity.ERROR and gpu.fix is None
    p = write(tmp_path, {"zero_optimization": {"stage": 3, "offload_param": {"device": "CPU"}}})
    [upper] = found(p, "DS003")
    assert upper.fix is not None and upper.fix.safe
    lint_file(p, rules_for(["DS003"]), LintOptions(cwd=tmp_path, env={}), fix=True)
    assert json.loads((tmp_path / "ds.json").read_text())["zero_optimization"]["offload_param"]["device"] == "cpu"
    [nvme] = found(write(tmp_path, {"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}}), "DS003")
    assert "nvme_path" in nvme.message
    ok = {
        "zero_optimization": {
            "stage": 3,
            "offload_param": {"device": "nvme", "nvme_path": "/nvme"},
            "offload_optimizer": {"device": "none"},
        }
    }
    assert found(write(tmp_path, ok), "DS003") == []
    [auto] = found(
        write(tmp_path, {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "auto"}}}), "DS003"
    )
    assert auto.severity is Severity.WARNING


# -- DS004 ------------------------------------------------------------------------------------------------


def test_auto_values_transformers_cannot_fill(tmp_path: Path) -> None:
    ds = dict(LF_Z3)
    ds["zero_optimization"] = {**LF_Z3["zero_optimization"], "sub_group_size": "auto"}  # type: ignore[dict-item]
    ds["scheduler"] = {"type": "WarmupLR", "params": {"warmup_num_steps": "auto", "warmup_type": "auto"}}
    vs = found(write(tmp_path, ds), "DS004")
    assert sorted(v.key or "" for v in vs) == ["scheduler.params.warmup_type", "zero_optimization.sub_group_size"]
    assert all("not found in kwargs" in v.message for v in vs)


def test_amp_auto_is_filled_only_by_transformers_4(tmp_path: Path) -> None:
    p = write(tmp_path, {"amp": {"enabled": "auto"}, "zero_optimization": {"stage": 0}})
    assert found(p, "DS004", transformers_major=4) == []
    assert len(found(p, "DS004", transformers_major=5)) == 1


# -- DS005 ------------------------------------------------------------------------------------------------


def test_hard_coded_values_that_mismatch_the_yaml(tmp_path: Path) -> None:
    ds = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 8,
        "gradient_clipping": 1.0,
        "fp16": {"enabled": True},
        "bf16": {"enabled": True},
        "optimizer": {"type": "AdamW", "params": {"lr": 2e-5, "betas": [0.9, 0.999], "weight_decay": 0.0}},
        "zero_optimization": {"stage": 2},
    }
    p = write(tmp_path, ds, "per_device_train_batch_size: 2\ngradient_accumulation_steps: 8\n")
    vs = found(p, "DS005")
    assert sorted(v.key or "" for v in vs) == ["fp16.enabled", "optimizer.params.lr", "train_micro_batch_size_per_gpu"]
    assert all(v.path.name == "ds.json" and "mismatch TrainingArguments" in v.message for v in vs)
    # the unsafe fix writes "auto" into the JSON and the mismatches are gone
    result = lint_file(p, rules_for(["DS005"]), LintOptions(cwd=tmp_path, env={}), fix=True, unsafe_fixes=True)
    fixed = json.loads((tmp_path / "ds.json").read_text())
    assert fixed["train_micro_batch_size_per_gpu"] == "auto" and fixed["fp16"]["enabled"] == "auto"
    assert fixed["optimizer"]["params"]["lr"] == "auto" and fixed["gradient_accumulation_steps"] == 8
    assert result.violations == []


def test_train_batch_size_is_checked_when_the_gpu_count_is_known(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        {"train_batch_size": 32, "zero_optimization": {"stage": 2}},
        "per_device_train_batch_size: 2\ngradient_accumulation_steps: 4\n",
    )
    assert found(p, "DS005") == []  # unknown GPU count
    assert found(p, "DS005", gpus=4) == []  # 2 x 4 x 4 = 32
    [v] = found(p, "DS005", gpus=2)
    assert "16" in v.message


def test_inline_deepspeed_mapping_points_at_the_yaml_key(tmp_path: Path) -> None:
    text = TRAIN + "deepspeed:\n  train_micro_batch_size_per_gpu: 16\n  zero_optimization:\n    stage: 2\n"
    [v] = [x for x in lint_text(text, path=tmp_path / "run.yaml", select=["DS005"], cwd=tmp_path) if x.code == "DS005"]
    assert v.path.name == "run.yaml" and v.line == 6 and v.fix is None


# -- DS006 ------------------------------------------------------------------------------------------------


def test_deepspeed_on_one_gpu_needs_force_torchrun(tmp_path: Path) -> None:
    p = write(tmp_path, LF_Z3)
    [one] = found(p, "DS006", gpus=1)
    assert one.severity is Severity.WARNING and "FORCE_TORCHRUN=1" in one.message and one.path.name == "run.yaml"
    assert found(p, "DS006", gpus=1, env={"FORCE_TORCHRUN": "1"}) == []
    assert found(p, "DS006", env={"FORCE_TORCHRUN": "true"}) == []
    assert found(p, "DS006", gpus=8) == []
    assert found(p, "DS006", env={"CUDA_VISIBLE_DEVICES": "0,1"}) == []
    assert found(p, "DS006", env={"CUDA_VISIBLE_DEVICES": "3"})


def test_deepspeed_torchrun_rule_skips_when_the_gpu_count_is_unknown(tmp_path: Path) -> None:
    """Without --gpus the launch cannot be judged: the rule is listed as skipped, not guessed (nor reported)."""
    p = write(tmp_path, LF_Z3)
    result = lint_file(p, rules_for(["DS006"]), LintOptions(env={}, cwd=tmp_path))
    assert [v.code for v in result.violations] == []
    assert "--gpus" in result.skipped["DS006"]


def test_deepspeed_torchrun_rule_is_silent_on_multi_node_and_ray_launches(tmp_path: Path) -> None:
    p = write(tmp_path, LF_Z3)
    assert found(p, "DS006", gpus=1, nodes=2) == []
    assert found(p, "DS006", gpus=1, env={"USE_RAY": "1"}) == []
    assert found(p, "DS006", gpus=1, env={"USE_MCA": "1"}) == []


# -- DS007 ------------------------------------------------------------------------------------------------


def _model(tmp_path: Path, quant: dict[str, Any] | None) -> str:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    cfg: dict[str, Any] = {
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 32000,
        "torch_dtype": "float16",
    }
    if quant:
        cfg["quantization_config"] = quant
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.mark.parametrize("method", ["gptq", "awq", "aqlm", "bitsandbytes"])
def test_zero3_with_prequantized_checkpoint(tmp_path: Path, method: str) -> None:
    p = write(tmp_path, LF_Z3)
    [v] = found(p, "DS007", model=_model(tmp_path, {"quant_method": method, "bits": 4}))
    assert v.severity is Severity.ERROR and "PTQ-quantized" in v.message and v.key == "deepspeed"


def test_fsdp_too_and_dequantized_methods_pass(tmp_path: Path) -> None:
    gptq = _model(tmp_path, {"quant_method": "gptq", "bits": 4})
    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text(TRAIN + "fsdp: full_shard auto_wrap\n")
    [v] = found(fsdp, "DS007", model=gptq)
    assert "FSDP" in v.message
    plain = tmp_path / "plain.yaml"
    plain.write_text(TRAIN)
    assert found(plain, "DS007", model=gptq) == []
    assert found(plain, "DS007", model=gptq, env={"ACCELERATE_USE_FSDP": "true"})  # an accelerate FSDP launch
    p = write(tmp_path, LF_Z3)
    for method in ("mxfp4", "fp8"):
        assert found(p, "DS007", model=_model(tmp_path, {"quant_method": method})) == [], method
    assert found(p, "DS007", model=_model(tmp_path, None)) == []
    z2 = write(tmp_path, {"zero_optimization": {"stage": 2}}, name="z2.json")
    assert found(z2, "DS007", model=gptq) == []


# -- DS008 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, False, "auto"])
def test_zero3_without_16bit_save(tmp_path: Path, value: Any) -> None:
    zero: dict[str, Any] = {"stage": 3}
    if value is not None:
        zero["stage3_gather_16bit_weights_on_model_save"] = value
    [v] = found(write(tmp_path, {"zero_optimization": zero}), "DS008")
    assert v.severity is Severity.WARNING and "zero_to_fp32" in v.message
    assert (v.fix is not None) == (value is not None)


def test_16bit_save_not_needed_below_zero3_or_without_training(tmp_path: Path) -> None:
    assert found(write(tmp_path, {"zero_optimization": {"stage": 2}}), "DS008") == []
    p = tmp_path / "predict.yaml"
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    p.write_text("stage: sft\ndo_predict: true\ndeepspeed: z3.json\n")
    assert found(p, "DS008") == []


def test_cli_points_into_the_json_file(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2}},
        "per_device_train_batch_size: 2\n",
    )
    result = CliRunner().invoke(cli, ["check", "--select", "DS005", "--format", "concise", str(p)])
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'ds.json'}:2:3: error: DS005" in result.output
