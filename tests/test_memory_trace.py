"""The trace oracle: live-storage counting, and fake tensors giving the same bytes as the same step on real ones.

A tiny model runs two LLaMA-Factory training steps twice, once on FakeTensors and once on real CPU tensors, under
the same counting mode; the peaks must be equal to the byte. That is what makes the fake run of a 32B model (no
weights, no GPU) trustworthy: every path it takes is the real program's. Each case runs in about a second.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tuner.memory import TrainSetup
from tuner.memory.model import param_stats
from tuner.memory.trace import BLOCK, LiveStorages, TraceUnsupported, allocator_size, trace_step
from tuner.models.arch import Architecture
from trace_fixtures import LLAMA_TIED, QWEN2



def test_allocator_rounding() -> None:
    assert [allocator_size(n) for n in (0, 1, 511, 512, 513, 4096)] == [0, 512, 512, 512, 1024, 4096]


def test_live_storages_count_each_storage_once_until_freed() -> None:
    live = LiveStorages()
    with live:
        a = torch.empty(1000, dtype=torch.float32)  # 4000 B -> 4096
        view = a[10:20]  # a view: no new storage
        b = a + 1
        assert live.current == 2 * 4096
        del a, b
        assert live.current == 4096  # the view keeps a's storage alive
        del view
        assert live.current == 0
        c = torch.empty(3, dtype=torch.float32)
        del c
    assert live.peak == 2 * 4096 and live.current == 0
    assert BLOCK == 512


CASES = {
    "lora-gc-foreach": (QWEN2, dict(finetuning_type="lora", lora_rank=4)),
    "lora-nogc-eager": (QWEN2, dict(finetuning_type="lora", lora_rank=4, gradient_checkpointing=False, attention="eager")),
    "lora-padded-batch": (QWEN2, dict(finetuning_type="lora", lora_rank=4, batch_size=3, lora_target=("q_proj", "v_proj"))),
    "full-fused": (QWEN2, dict(finetuning_type="full", optim="adamw_torch_fused")),
    "full-nogc-tied": (LLAMA_TIED, dict(finetuning_type="full", gradient_checkpointing=False)),
    "freeze-1-layer": (LLAMA_TIED, dict(finetuning_type="freeze", freeze_trainable_layers=1, batch_size=2)),
    "qlora-gc": (QWEN2, dict(finetuning_type="lora", lora_rank=4, quantization_bit=4)),
    "qlora-nogc-padded": (LLAMA_TIED, dict(finetuning_type="lora", lora_rank=4, quantization_bit=4, gradient_checkpointing=False, batch_size=2)),
    "lora-additional-target-tied": (LLAMA_TIED, dict(finetuning_type="lora", lora_rank=4, additional_target=("embed_tokens", "lm_head"))),
    "lora-pure-bf16-16bit-loss": (QWEN2, dict(finetuning_type="lora", lora_rank=4, precision="pure_bf16", loss_upcast=False)),
    "qlora-upcast-layernorm": (QWEN2, dict(finetuning_type="lora", lora_rank=4, quantization_bit=4, upcast_layernorm=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fake_run_equals_the_real_run_to_the_byte(name: str) -> None:
    arch, kw = CASES[name]
    setup = TrainSetup(arch, cutoff_len=48, **kw)
    fake = trace_step(setup, fake=True)
    real = trace_step(setup, fake=False)
    assert fake.peak_bytes == real.peak_bytes
    assert fake.phase_peaks == real.phase_peaks
    assert fake.ops == real.ops
    assert fake.peak_bytes > fake.model_bytes > 0
    # the allocator replay sees the same events
    assert (fake.allocator_allocated, fake.allocator_reserved) == (real.allocator_allocated, real.allocator_reserved)
    assert fake.peak_bytes <= fake.allocator_allocated <= fake.allocator_in_use <= fake.allocator_reserved
    # the traced model is the one LLaMA-Factory counts: the estimator's parameter counts match it
    stats = param_stats(setup)
    assert (fake.trainable_params, fake.all_params) == (stats.trainable, stats.all)


def test_steps_of_varying_length_need_more_than_the_longest_step_and_a_roomy_device_caches_more_still() -> None:
    # A dataset without packing: each micro-batch as long as its longest sequence. A new longest batch finds only
    # smaller cached blocks; a roomy device keeps them all, a full one gives back what it can.
    setup = TrainSetup(QWEN2, finetuning_type="lora", lora_rank=4, cutoff_len=8192)  # logits over 10 MiB
    lengths = [3000, 6000, 2000, 8192]
    fixed = trace_step(setup, steps=2, need=True)
    varying = trace_step(setup, lengths=lengths, need=True)
    real = trace_step(setup, lengths=lengths, need=True, fake=False)
    assert varying.lengths == lengths and fixed.lengths == [8192, 8192]
    assert (real.peak_bytes, real.allocator_reserved, real.allocator_need) == (
        varying.peak_bytes, varying.allocator_reserved, varying.allocator_need)
    assert varying.peak_bytes == fixed.peak_bytes  # the longest step sets the allocated peak either way
    assert fixed.allocator_in_use <= fixed.allocator_need <= fixed.allocator_reserved
    assert varying.allocator_need > fixed.allocator_need  # 92 MiB against 82 MiB here
    assert varying.allocator_reserved > fixed.allocator_reserved
    assert varying.allocator_allocated <= varying.allocator_need <= varying.allocator_reserved
    with pytest.raises(ValueError, match="cutoff_len"):
        trace_step(setup, lengths=[9000])


def test_fused_adamw_peaks_in_the_second_backward_and_foreach_in_the_step() -> None:
    base = TrainSetup(QWEN2, finetuning_type="full", cutoff_len=48)
    foreach = trace_step(base)
    fused = trace_step(base.with_(optim="adamw_torch_fused"))
    assert foreach.peak_phase == "optimizer 1"
    assert fused.peak_phase == "backward 2"
    assert fused.peak_bytes < foreach.peak_bytes


def test_qlora_stand_in_stores_and_counts_as_bitsandbytes() -> None:
    """NF4 with double quantization: n/2 packed bytes, n/64 uint8 absmax, an fp32 absmax per 256 blocks; LLaMA-Factory
    counts a Params4bit as 2 x numel, so the parameter count is the unquantized model's plus the adapters."""
    from tuner.memory.trace.qlora import Linear4bitStandIn

    layer = Linear4bitStandIn(128, 64, bias=False, bias_dtype=torch.bfloat16)
    n = 128 * 64
    assert layer.weight.numel() * layer.weight.element_size() == n // 2 and layer.weight.dtype == torch.uint8
    assert layer.absmax.numel() == n // 64 and layer.absmax2.numel() == 1
    setup = TrainSetup(QWEN2, finetuning_type="lora", lora_rank=4, quantization_bit=4, cutoff_len=48)
    stats = param_stats(setup)
    traced = trace_step(setup)
    assert (traced.trainable_params, traced.all_params) == (stats.trainable, stats.all)
    assert stats.all == param_stats(setup.with_(quantization_bit=None)).all


def test_unsupported_setups_are_refused() -> None:
    with pytest.raises(TraceUnsupported, match="DeepSpeed"):
        trace_step(TrainSetup(QWEN2, zero_stage=2))
    with pytest.raises(TraceUnsupported, match="quantization"):
        trace_step(TrainSetup(QWEN2, quantization_bit=8))
    with pytest.raises(TraceUnsupported, match="ZeRO-3 partitions"):
        trace_step(TrainSetup(QWEN2, zero_stage=3), deepspeed_module=True)


# -- the estimator against the trace ------------------------------------------------------------------------------

MID = Architecture(
    model_type="qwen2", hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
    intermediate_size=768, vocab_size=8192, attention_bias=True, tie_word_embeddings=True,
)  # fmt: skip
LLAMA = Architecture(
    model_type="llama", hidden_size=256, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
    intermediate_size=640, vocab_size=6000,
)  # fmt: skip

ESTIMATOR_CASES = {
    "lora-gc": (MID, dict(finetuning_type="lora", lora_rank=8)),
    "lora-nogc-eager": (LLAMA, dict(finetuning_type="lora", lora_rank=8, gradient_checkpointing=False, attention="eager")),
    "full-foreach": (MID, dict(finetuning_type="full")),
    "full-fused-tied": (MID, dict(finetuning_type="full", optim="adamw_torch_fused")),
    # the loss dominates: lm_head's 16-bit copy of the trained tied embedding is still saved at the loss's backward
    "full-fused-tied-long": (MID, dict(finetuning_type="full", optim="adamw_torch_fused", batch_size=4)),
    "full-fused-untied-nogc": (LLAMA, dict(finetuning_type="full", optim="adamw_torch_fused", gradient_checkpointing=False)),
    "freeze-padded": (LLAMA, dict(finetuning_type="freeze", freeze_trainable_layers=1, batch_size=2)),
    "qlora-gc": (MID, dict(finetuning_type="lora", lora_rank=8, quantization_bit=4)),
    "qlora-nogc": (LLAMA, dict(finetuning_type="lora", lora_rank=8, quantization_bit=4, gradient_checkpointing=False)),
    # no autocast: PEFT keeps the adapters fp32 (autocast_adapter_dtype) though LLaMA-Factory does not upcast
    "lora-pure-bf16": (MID, dict(finetuning_type="lora", lora_rank=8, precision="pure_bf16")),
    "full-pure-bf16": (LLAMA, dict(finetuning_type="full", precision="pure_bf16")),
    # transformers 4.46-4.48 without autocast: the forward's loss (16-bit logits, their fp32 upcast, its shifted copy,
    # the log-softmax) outweighs the loss's backward, with no autocast copies to point at that moment
    "lora-pure-bf16-shift-b4": (LLAMA, dict(finetuning_type="lora", lora_rank=8, precision="pure_bf16", batch_size=4, loss_shift="logits")),
    "full-pure-bf16-shift-b4": (LLAMA, dict(finetuning_type="full", precision="pure_bf16", batch_size=4, loss_shift="logits")),
    # remote modeling code that runs the cross-entropy on its 16-bit logits (Qwen-7B's modeling_qwen.py)
    "lora-pure-bf16-16bit-loss": (LLAMA, dict(finetuning_type="lora", lora_rank=8, precision="pure_bf16", loss_upcast=False)),
    "qlora-pure-bf16-16bit-loss": (MID, dict(finetuning_type="lora", lora_rank=8, quantization_bit=4, precision="pure_bf16", loss_upcast=False)),
    "lora-autocast-16bit-loss": (MID, dict(finetuning_type="lora", lora_rank=8, loss_upcast=False)),
    # additional_target: PEFT's modules_to_save copies (separate parameters even on a tied model; only lm_head's
    # copy is a matmul weight; under pure_bf16 the copies stay bf16 while PEFT keeps the adapters fp32)
    "lora-target-embed-head-tied": (MID, dict(finetuning_type="lora", lora_rank=8, additional_target=("embed_tokens", "lm_head"),
                                              optim="adamw_torch_fused")),
    "lora-target-embed-tied-nogc": (MID, dict(finetuning_type="lora", lora_rank=8, additional_target=("embed_tokens",),
                                              gradient_checkpointing=False)),
    "lora-target-pure-bf16": (LLAMA, dict(finetuning_type="lora", lora_rank=8, additional_target=("embed_tokens", "lm_head"),
                                          precision="pure_bf16")),
    # transformers 4.46-4.48 copy the shifted fp32 logits (batch > 1 only); 4.45 and older return fp32 logits
    "lora-shift-logits-batch4": (MID, dict(finetuning_type="lora", lora_rank=8, batch_size=4, loss_shift="logits")),
    "lora-shift-logits-batch1": (LLAMA, dict(finetuning_type="lora", lora_rank=8, loss_shift="logits")),
    "full-shift-model-batch4": (LLAMA, dict(finetuning_type="full", batch_size=4, loss_shift="model")),
    "lora-shift-model-batch1": (MID, dict(finetuning_type="lora", lora_rank=8, loss_shift="model")),
    # upcast_layernorm: fp32 norm outputs; bitsandbytes then computes in fp32 and the residual stream turns fp32
    "lora-upcast-layernorm": (LLAMA, dict(finetuning_type="lora", lora_rank=8, upcast_layernorm=True)),
    "qlora-upcast-layernorm": (MID, dict(finetuning_type="lora", lora_rank=8, quantization_bit=4, upcast_layernorm=True)),
    "qlora-upcast-layernorm-nogc": (LLAMA, dict(finetuning_type="lora", lora_rank=8, quantization_bit=4, upcast_layernorm=True,
                                                gradient_checkpointing=False)),
}


def test_a_16bit_loss_saves_6_bytes_per_logit_without_autocast_and_nothing_under_it() -> None:
    """The remote-code loss on 16-bit logits keeps half of what transformers' fp32 upcast keeps (12 B per token per
    vocabulary entry at the loss's backward); under autocast cross_entropy runs in fp32 either way."""
    tokens, vocab = 256, LLAMA.vocab_size
    pure = dict(finetuning_type="lora", lora_rank=8, precision="pure_bf16", cutoff_len=tokens)
    upcast = trace_step(TrainSetup(LLAMA, **pure)).peak_bytes
    in_16bit = trace_step(TrainSetup(LLAMA, loss_upcast=False, **pure)).peak_bytes
    assert (upcast - in_16bit) / (tokens * vocab) == pytest.approx(6.0, abs=0.05)
    auto = dict(finetuning_type="lora", lora_rank=8, cutoff_len=tokens)
    assert trace_step(TrainSetup(LLAMA, **auto)).peak_bytes == pytest.approx(
        trace_step(TrainSetup(LLAMA, loss_upcast=False, **auto)).peak_bytes, rel=0.005)  # label handling: a few KiB


def test_transformers_4_46_to_4_48_copy_the_shifted_fp32_logits_when_the_batch_has_more_than_one_row() -> None:
    """ForCausalLMLoss of 4.46-4.48 copies the shifted fp32 logits: 4 B more per token per vocabulary entry at the
    end of the forward, which then outweighs the loss's backward (12 B). A batch of one is already contiguous."""
    tokens, vocab = 256, LLAMA.vocab_size
    kw = dict(finetuning_type="lora", lora_rank=8, cutoff_len=tokens)
    for batch, extra in ((1, 0.0), (4, 4.0)):
        labels = trace_step(TrainSetup(LLAMA, batch_size=batch, **kw))
        logits = trace_step(TrainSetup(LLAMA, batch_size=batch, loss_shift="logits", **kw))
        forward = logits.phase_peaks["forward 1"] - labels.phase_peaks["forward 1"]
        assert forward / (batch * tokens * vocab) == pytest.approx(extra, abs=0.05)  # the copy is (T-1)/T of the logits
        assert logits.peak_phase.startswith("forward" if extra else "backward")


@pytest.mark.parametrize("name", sorted(ESTIMATOR_CASES))
def test_estimator_tensors_match_the_trace(name: str) -> None:
    """The estimator's tensor part (its peak without CUDA context, allocator slack and cuBLAS workspace) against the
    trace of the same setup: within 1%, as on the 0.5B-32B setups of benchmarks/estimator_vs_trace.py."""
    from tuner.memory import estimate

    arch, kw = ESTIMATOR_CASES[name]
    setup = TrainSetup(arch, cutoff_len=256, **kw)
    est = estimate(setup)
    tensors = est.allocated_bytes - est.bytes_of("cublas")
    traced = trace_step(setup).peak_bytes
    assert tensors == pytest.approx(traced, rel=0.01)


@pytest.mark.parametrize("kw", [
    dict(finetuning_type="lora", lora_rank=8),
    dict(finetuning_type="lora", lora_rank=8, gradient_checkpointing=False, loss_upcast=False),
    dict(finetuning_type="lora", lora_rank=8, quantization_bit=4),
], ids=["lora", "lora-nogc-16bit-loss", "qlora"])  # fmt: skip
def test_deepspeed_activation_part_matches_the_trace_of_its_16bit_module(kw: dict) -> None:
    """Under DeepSpeed the engine runs a bf16 module without autocast; what the forward/backward adds to the
    resident bytes is the model's side, traced the same way (ZeRO's own buffers are reasoned from its code)."""
    from tuner.memory import estimate

    setup = TrainSetup(LLAMA, cutoff_len=256, zero_stage=2, **kw)
    fake = trace_step(setup, deepspeed_module=True)
    real = trace_step(setup, deepspeed_module=True, fake=False)
    assert fake.peak_bytes == real.peak_bytes and fake.peak_phase.startswith("backward")
    traced = fake.peak_bytes - fake.model_bytes - fake.trainable_params * 2 * 2  # minus the stand-in's bf16 m and v
    est = estimate(setup)
    added = sum(c.bytes for c in est.components if c.at_peak and c.phase == "forward/backward")
    assert added == pytest.approx(traced, rel=0.01)


@pytest.mark.parametrize("fake", [True, False], ids=["fake", "real"])
def test_upcast_layernorm_under_pure_bf16_fails_as_the_real_step_does(fake: bool) -> None:
    """fp32 norm outputs meet bf16 weights without autocast: the real matrix product refuses the mix, and the fake
    run refuses it too (FakeTensor's meta kernels do not check; tuner.memory.trace.live does). With autocast it runs."""
    setup = TrainSetup(LLAMA, cutoff_len=64, finetuning_type="lora", lora_rank=8, precision="pure_bf16", upcast_layernorm=True)
    with pytest.raises(RuntimeError, match="same dtype"):
        trace_step(setup, fake=fake)
    assert trace_step(setup.with_(precision="bf16"), fake=fake).peak_bytes > 0
