"""The set-up before the first step: LLaMA-Factory's fp32 upcast, and DeepSpeed's cast back, counted on real tensors.

The real sequence runs on a tiny model with real CPU tensors under the live-storage counter: the 16-bit weights as
loaded, LLaMA-Factory's in-place upcast of every trainable parameter (``init_adapter``), then DeepSpeed's
``module.bfloat16()``. The peak must equal :func:`tuner.memory.loading.loading_peak` up to the 512-byte block
rounding of each tensor. And the estimate must make that moment the peak where it is one (full fine-tuning under
ZeRO-2 with the optimizer offloaded) and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.memory import TrainSetup, estimate
from tuner.memory.loading import lf_upcasts_trainable, loading_peak
from tuner.memory.model import plan_params
from tuner.models.arch import Architecture
from tuner.models.resolve import resolve_model
from trace_fixtures import LLAMA_TIED, QWEN2



def _real_setup_peak(setup: TrainSetup, deepspeed_cast: bool) -> tuple[int, int]:
    """(peak live bytes, number of parameter tensors) of loading in bf16, LLaMA-Factory's upcast, DeepSpeed's cast."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tuner.memory.trace import LiveStorages
    from tuner.trial.build import _from_config, hf_config

    config, notes = hf_config(setup.arch, attn_implementation="sdpa")
    model = _from_config(config, torch.bfloat16, "sdpa", notes)  # as from_pretrained(torch_dtype=bf16) leaves it
    params = list(model.parameters())
    live = LiveStorages()
    live.track_all(params)
    with live:
        # LLaMA-Factory v0.9.5 model/adapter.py, _setup_full_tuning with cast_trainable_params_to_fp32
        for p in model.parameters():
            p.data = p.data.to(torch.float32)
        if deepspeed_cast:  # DeepSpeed runtime/engine.py, _configure_distributed_model
            model.bfloat16()
    return live.peak, len(params)


@pytest.mark.parametrize("arch", [QWEN2, LLAMA_TIED], ids=["untied-head", "tied"])
@pytest.mark.parametrize("zero", [None, 2], ids=["no-deepspeed", "zero2"])
def test_loading_peak_equals_the_real_upcast_and_cast_back(arch: Architecture, zero: int | None) -> None:
    setup = TrainSetup(arch, finetuning_type="full", precision="bf16", zero_stage=zero)
    plan = plan_params(setup)
    load = loading_peak(setup, plan)
    assert load is not None and lf_upcasts_trainable(precision="bf16", badam=False, zero_stage=zero, quantized=False)
    real, tensors = _real_setup_peak(setup, deepspeed_cast=zero is not None)
    # Without DeepSpeed the tied model's last upcast is the final norm, not the largest tensor: the estimate is the
    # bound (largest tensor in flight); everywhere else it is the moment itself.
    if arch is LLAMA_TIED and zero is None:
        assert real <= load.bytes + tensors * 512
        assert real >= load.weights
    else:
        assert abs(real - load.bytes) <= tensors * 512, (real, load.bytes)
    # The in-flight tensor matters at this scale: without it the estimate would be off by more than the rounding.
    assert load.transient > tensors * 512


def test_full_zero2_offload_peaks_while_loading_and_says_why() -> None:
    arch = resolve_model("qwen2.5-7b").arch
    s = TrainSetup(arch, finetuning_type="full", precision="bf16", zero_stage=2, world_size=8, offload_optimizer="cpu",
                   cutoff_len=2048)  # fmt: skip
    est = estimate(s)
    assert est.peak_phase == "loading"
    assert est.peak_bytes == pytest.approx(sum(c.bytes for c in est.at_peak()))
    weights = est.component("loading_weights")
    assert weights is not None and weights.bytes == pytest.approx(plan_params(s).trainable * 4, rel=0.01)
    assert est.allocated_bytes == pytest.approx(est.phases["loading"])
    note = next(n for n in est.notes if n.startswith("the set-up before the first step is the peak"))
    assert "fp32" in note and "DeepSpeed" in note
    # pure_bf16 (no upcast) and ZeRO-3 (partitioned while loading) have no such moment
    assert estimate(s.with_(precision="pure_bf16")).peak_phase != "loading"
    assert estimate(s.with_(zero_stage=3)).peak_phase != "loading"


@pytest.mark.parametrize("model", ["qwen2.5-0.5b", "qwen2.5-7b", "llama-3.1-8b", "qwen2.5-32b"])
@pytest.mark.parametrize("kw", [
    dict(finetuning_type="lora"),
    dict(finetuning_type="lora", quantization_bit=4),
    dict(finetuning_type="full"),
    dict(finetuning_type="freeze"),
    dict(finetuning_type="full", zero_stage=2, world_size=2),
    dict(finetuning_type="lora", zero_stage=2, world_size=8),
], ids=["lora", "qlora", "full", "freeze", "full-z2x2", "lora-z2x8"])  # fmt: skip
def test_the_set_up_is_below_the_training_step_where_training_keeps_what_it_loads(model: str, kw: dict) -> None:
    est = estimate(TrainSetup(resolve_model(model).arch, precision="bf16", cutoff_len=512, **kw))
    assert est.peak_phase != "loading"
    assert 0 < est.phases["loading"] < est.allocated_bytes


def _estimate_cli(*args: str) -> object:
    from click.testing import CliRunner

    from tuner.cli.tune import cli

    return CliRunner().invoke(cli, ["estimate", *args], catch_exceptions=False)


def test_cli_json_and_table_show_the_loading_peak(tmp_path: Path) -> None:
    ds = tmp_path / "ds_z2_offload.json"
    ds.write_text(json.dumps({"bf16": {"enabled": "auto"}, "zero_optimization": {
        "stage": 2, "offload_optimizer": {"device": "cpu"}}}))  # fmt: skip
    cfg = tmp_path / "full.yaml"
    cfg.write_text(
        "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: full\n"
        f"deepspeed: {ds}\ndataset: alpaca_en_demo\ntemplate: qwen\ncutoff_len: 1024\nbf16: true\n"
        "per_device_train_batch_size: 1\noutput_dir: out\n"
    )
    r = _estimate_cli(str(cfg), "--gpus", "8", "--model", "qwen2.5-7b", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["peak_phase"] == "loading"
    assert any(c["key"] == "loading_weights" and c["at_peak"] for c in data["components"])
    r = _estimate_cli(str(cfg), "--gpus", "8", "--model", "qwen2.5-7b", "--hw", "rtx-4090")
    assert r.exit_code == 0, r.output
    assert "weights while loading" in r.output and "does not fit" in r.output
    assert "the training step itself needs" in " ".join(r.output.split())
