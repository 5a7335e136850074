"""The resolved configuration: one reading of what LLaMA-Factory will run with, shared by lint, estimate and tuner."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.config.context import Context, LintOptions
from tuner.config.loader import parse_config
from tuner.config.resolved import attention_kernel, default_optim, resolve
from tuner.config.versions import TargetVersions, Version
from tuner.search.setup import base_attention


@pytest.mark.parametrize(
    ("flash_attn", "model_type", "fa2", "kernel"),
    [
        (None, "llama", True, "sdpa"),  # auto: transformers' default
        ("auto", "qwen2", False, "sdpa"),
        ("disabled", "llama", True, "eager"),
        ("sdpa", "llama", True, "sdpa"),
        ("fa2", "llama", True, "fa2"),
        ("fa2", "llama", False, "sdpa"),  # flash-attn missing: LLaMA-Factory warns and keeps the default
        ("auto", "gemma2", True, "fa2"),  # Gemma 2 needs soft-capping: FA2 when installed...
        ("auto", "gemma2", False, "eager"),  # ...else eager, never SDPA
        ("sdpa", "gemma2", True, "sdpa"),  # stated SDPA is kept (LLaMA-Factory only warns)
        ("auto", "gpt_oss", True, "fa3"),
    ],
)
def test_attention_kernel(flash_attn: str | None, model_type: str, fa2: bool, kernel: str) -> None:
    assert attention_kernel(flash_attn, model_type, fa2_available=fa2) == kernel


def test_tuner_and_estimator_agree_on_the_attention_kernel() -> None:
    # The tuner's trial used SDPA for Gemma 2 under `auto` while the estimator assumed FA2: one function now.
    assert base_attention({}, "cuda", "gemma2") == "flash_attention_2"
    assert base_attention({}, "cpu", "gemma2") == "eager"
    assert base_attention({"flash_attn": "fa2"}, "cpu", "llama") == "sdpa"
    assert base_attention({"flash_attn": "disabled"}, "cuda", "llama") == "eager"


def test_default_optimizer_follows_the_target_transformers() -> None:
    old = TargetVersions(transformers=Version.parse("4.51.3"))
    new = TargetVersions(transformers=Version.parse("4.57.1"))
    assert default_optim(old) == "adamw_torch"
    assert default_optim(new) == "adamw_torch_fused"
    r = resolve({"optim": "adamw_8bit"}, kind="train", target=new)
    assert (r.optim, r.optim_stated) == ("adamw_8bit", True)
    r = resolve({"use_badam": True}, kind="train", target=new)
    assert r.custom_optimizer == "badam" and not r.optim_stated


@pytest.mark.parametrize("release, shift", [
    ("4.45.2", "model"), ("4.46.0", "logits"), ("4.48.3", "logits"), ("4.49.0", "labels"), ("5.6.0", "labels"),
])  # fmt: skip
def test_the_loss_shift_follows_the_target_transformers(release: str, shift: str) -> None:
    r = resolve({}, kind="train", target=TargetVersions(transformers=Version.parse(release)))
    assert r.loss_shift == shift


def test_gradient_checkpointing_and_reentrancy() -> None:
    t = TargetVersions()
    r = resolve({}, kind="train", target=t)
    assert r.gradient_checkpointing and r.gradient_checkpointing_reentrant
    r = resolve({"disable_gradient_checkpointing": True}, kind="train", target=t)
    assert not r.gradient_checkpointing
    r = resolve({"use_reentrant_gc": False}, kind="train", target=t)
    assert not r.gradient_checkpointing_reentrant
    # FSDP2 turns reentrancy off (LLaMA-Factory `prepare_model_for_training`)
    r = resolve({"fsdp": "full_shard"}, kind="train", target=t, env={"FSDP_VERSION": "2"})
    assert not r.gradient_checkpointing_reentrant


def test_context_resolves_deepspeed_and_world_size(tmp_path: Path) -> None:
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}')
    doc = parse_config("stage: sft\ndo_train: true\ndeepspeed: z3.json\nbf16: true\n", tmp_path / "run.yaml")
    r = Context(doc, LintOptions(cwd=tmp_path, env={}, gpus=4, nodes=2)).resolved
    assert (r.zero_stage, r.offload_optimizer, r.precision) == (3, "cpu", "bf16")
    assert (r.world_size, r.multi_process) == (8, True)
    r = Context(doc, LintOptions(cwd=tmp_path, env={})).resolved
    assert r.world_size is None and r.multi_process is None  # no --gpus: unknown, not 1
