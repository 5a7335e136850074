"""The memory estimator's components against hand-computed numbers, and published anchors.

The tiny architecture below is small enough to count by hand:
h=64, 2 layers, 4 heads (head_dim 16), 2 KV heads, intermediate 128, vocab 1000, untied.
Per layer: q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64 = 36,864 weights + 2 norms (128).
Total: 2 x 64,000 (embeddings, lm_head) + 2 x 36,992 + 64 (final norm) = 202,048.
"""

from __future__ import annotations

import pytest

from tuner.hardware.profiles import get_profile
from tuner.memory import TrainSetup, estimate, max_batch_that_fits, max_cutoff_that_fits
from tuner.memory.advice import LF_Z3
from tuner.models.arch import Architecture
from tuner.models.resolve import resolve_model

TINY = Architecture(
    model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=128, vocab_size=1000,
)  # fmt: skip
TOTAL = 202_048
LINEAR = 2 * 36_864
LORA_R4 = 2 * 4 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + (64 + 128) + (64 + 128) + (128 + 64))


def comp(setup: TrainSetup, key: str, **kw: object) -> float:
    return estimate(setup, **kw).bytes_of(key)  # type: ignore[arg-type]


def test_lora_bf16_weights_adapters_and_adam_states() -> None:
    s = TrainSetup(TINY, lora_rank=4)
    est = estimate(s)
    assert est.bytes_of("weights_frozen") == TOTAL * 2  # every original weight frozen, bf16
    assert LORA_R4 == 8_192
    assert est.bytes_of("weights_trainable") == LORA_R4 * 4  # LLaMA-Factory upcasts adapters to fp32
    assert est.bytes_of("optimizer_states") == LORA_R4 * 8  # AdamW m and v in fp32
    assert est.bytes_of("master_weights") == 0  # the fp32 parameter is the master: no extra copy
    assert est.fits is None and est.ceiling_bytes is None  # no hardware given


def test_qlora_nf4_with_and_without_double_quant() -> None:
    s = TrainSetup(TINY, lora_rank=4, quantization_bit=4)
    est = estimate(s)
    assert est.bytes_of("weights_quantized") == pytest.approx(LINEAR * 0.5)
    assert est.bytes_of("quant_constants") == pytest.approx(LINEAR * (1 / 64 + 4 / (64 * 256)))  # 1,170 B
    assert est.bytes_of("weights_frozen") == (TOTAL - LINEAR) * 2  # embeddings, lm_head, norms stay bf16
    no_dq = estimate(s.with_(double_quantization=False))
    assert no_dq.bytes_of("quant_constants") == pytest.approx(LINEAR * 4 / 64)  # fp32 absmax per 64 values
    int8 = estimate(s.with_(quantization_bit=8))
    assert int8.bytes_of("weights_quantized") == LINEAR and int8.bytes_of("quant_constants") == 0


def test_full_finetuning_zero3_shards_everything_by_n() -> None:
    s = TrainSetup(TINY, finetuning_type="full", zero_stage=3, world_size=4)
    est = estimate(s)
    assert est.bytes_of("weights_trainable") == TOTAL * 2 / 4  # bf16 partitions
    assert est.bytes_of("master_weights") == TOTAL * 4 / 4  # fp32 master partitions
    assert est.bytes_of("optimizer_states") == TOTAL * 8 / 4
    assert est.bytes_of("gradients") == TOTAL * 2 / 4
    assert est.bytes_of("weights_frozen") == 0


def test_full_finetuning_without_deepspeed_is_16_bytes_per_param_plus_foreach_temp() -> None:
    est = estimate(TrainSetup(TINY, finetuning_type="full", gradient_checkpointing=True))
    assert est.bytes_of("weights_trainable") == TOTAL * 4  # upcast to fp32, no separate master
    assert est.bytes_of("gradients") == TOTAL * 4
    assert est.bytes_of("optimizer_states") == TOTAL * 8
    assert est.bytes_of("step_temporaries") == TOTAL * 4  # foreach AdamW's sqrt(v)
    fused = estimate(TrainSetup(TINY, finetuning_type="full", optim="adamw_torch_fused"))
    assert fused.bytes_of("step_temporaries") == 0
    eight = estimate(TrainSetup(TINY, finetuning_type="full", optim="adamw_8bit"))
    assert eight.bytes_of("optimizer_states") == pytest.approx(TOTAL * 2 * (1 + 4 / 256))


def test_pure_bf16_keeps_trainable_params_and_states_in_half() -> None:
    est = estimate(TrainSetup(TINY, finetuning_type="full", precision="pure_bf16"))
    assert est.bytes_of("weights_trainable") == TOTAL * 2
    assert est.bytes_of("optimizer_states") == TOTAL * 4  # torch AdamW states follow the param dtype
    assert est.bytes_of("autocast_copies") == 0


def test_logits_and_loss_hf_path() -> None:
    est = estimate(TrainSetup(TINY, batch_size=2, cutoff_len=64))
    # tokens x vocab x 12 B: the saved fp32 log-softmax, the NLL gradient and the log-softmax gradient, live together
    # in the loss's backward (counted by the trace oracle; was a calibrated 16 B that held allocator slack)
    assert est.bytes_of("logits") == 2 * 64 * 1000 * 12


def test_checkpointed_activations_are_layer_inputs_head_and_batch() -> None:
    # 64 tokens; per token: 2 layers x 64 x 2 B checkpoints + final norm (fp32 copy 4h = 256, fp32 rsqrt 4)
    # + batch tensors (4 int64 = 32 B, RoPE cos/sin 2 x 16 x 2 B = 64 B)
    est = estimate(TrainSetup(TINY, batch_size=1, cutoff_len=64))
    assert est.bytes_of("activations") == 64 * (2 * 64 * 2 + 260 + 96)


def test_lora_layer_activations_without_checkpointing_by_hand() -> None:
    # One LoRA layer under bf16 autocast with fp32 adapters, SDPA, batch 1, bytes per token (checked tensor by
    # tensor against torch.autograd.graph.saved_tensors_hooks on transformers 5 + PEFT 0.21, on CPU):
    #   input RMSNorm: fp32 copy 4h + fp32 rsqrt           260
    #   q/k/v: each lora_A keeps a bf16 copy (2 x 64) + r x 2 = 3 x 136   408
    #   SDPA: q 2x64, k/v 2x32 each, out 2x64, lse 4 x 4 heads            400
    #   o_proj LoRA: 2 x 64 + 8 (o_proj's input is SDPA's saved output)   136
    #   post-attention RMSNorm                              260
    #   gate/up LoRA: 2 x (2 x 64 + 8)                      272
    #   SiLU input, SiLU output, up output: 3 x 2 x 128     768
    #   down LoRA: 2 x 128 + 8                              264
    per_layer = 260 + 408 + 400 + 136 + 260 + 272 + 768 + 264
    assert per_layer == 2768
    # Layer 0's input norm keeps nothing: the frozen embedding's output needs no gradient without checkpointing.
    est = estimate(TrainSetup(TINY, lora_rank=4, batch_size=1, cutoff_len=64, gradient_checkpointing=False))
    assert est.bytes_of("activations") == 64 * (2 * per_layer - 260 + 260 + 96)


def test_eager_attention_adds_the_s_squared_terms() -> None:
    base = TrainSetup(TINY, lora_rank=4, batch_size=1, cutoff_len=64, gradient_checkpointing=False)
    sdpa = estimate(base).bytes_of("activations")
    eager = estimate(base.with_(attention="eager")).bytes_of("activations")
    # per token per layer: eager keeps q, repeated k and v (3 x 2 x 64 = 384) and the fp32 softmax + its bf16
    # copy (6 x 4 heads x 64) instead of SDPA's 400; plus one 1 x 64 x 64 bf16 additive mask for the batch.
    expected = 64 * 2 * ((384 + 6 * 4 * 64) - 400) + 64 * 64 * 2
    assert eager - sdpa == expected


def test_lora_dropout_and_dora_are_reported_separately() -> None:
    base = TrainSetup(TINY, lora_rank=4, batch_size=1, cutoff_len=64, gradient_checkpointing=False)
    dropout = estimate(base.with_(lora_dropout=0.1))
    # one bool mask of d_in per adapted module: q/k/v/gate/up read 64, o reads 64, down reads 128
    assert dropout.bytes_of("adapter_activations") == 64 * 2 * (6 * 64 + 128)
    dora = estimate(base.with_(use_dora=True))
    assert dora.bytes_of("adapter_activations") > 0
    assert dora.bytes_of("weights_trainable") > estimate(base).bytes_of("weights_trainable")  # magnitude vectors


def test_zero2_buckets_and_lora_frozen_weights_not_sharded() -> None:
    s = TrainSetup(TINY, lora_rank=4, zero_stage=2, world_size=8)
    est = estimate(s)
    assert est.bytes_of("weights_frozen") == TOTAL * 2  # ZeRO-2 does not shard weights
    assert est.bytes_of("zero_buckets") == 5e8 * 2  # DeepSpeed's default reduce_bucket_size, bf16
    assert est.bytes_of("master_weights") == LORA_R4 * 4 / 8


def test_offload_moves_states_to_host() -> None:
    s = TrainSetup(TINY, finetuning_type="full", zero_stage=3, world_size=2, gpus_per_node=2,
                   offload_optimizer="cpu", offload_param="cpu", zero=LF_Z3)
    est = estimate(s)
    assert est.bytes_of("optimizer_states") == 0 and est.bytes_of("master_weights") == 0
    host = {c.key: c.bytes for c in est.host_components}
    # (4 master + 8 Adam + 4 fp32 grads) x params, over 2 ranks, x 2 ranks on the node, x 1.5 pinned buffers
    assert host["offload_optimizer"] == pytest.approx(16 * TOTAL * 1.5)
    assert est.host_ram_bytes > host["offload_optimizer"]


def test_components_at_peak_add_up_and_headroom() -> None:
    hw = get_profile("h100")
    est = estimate(TrainSetup(resolve_model("qwen2.5-7b").arch, batch_size=2, cutoff_len=2048), hw)
    assert est.peak_bytes == pytest.approx(sum(c.bytes for c in est.at_peak()))
    assert est.ceiling_bytes == pytest.approx(hw.memory_bytes * 0.9)
    assert est.headroom_bytes == pytest.approx(est.ceiling_bytes - est.peak_bytes)
    assert est.fits is True
    assert {c.source for c in est.components} <= {"estimated", "calibrated"}
    assert est.component("cuda_context") is not None and 500 * 2**20 <= est.bytes_of("cuda_context") <= 600 * 2**20


def test_fit_helpers_are_consistent_with_estimate() -> None:
    hw = get_profile("a100-80g")
    s = TrainSetup(resolve_model("llama-3.1-8b").arch, batch_size=1, cutoff_len=4096)
    b = max_batch_that_fits(s, hw)
    assert b >= 1
    assert estimate(s.with_(batch_size=b), hw).fits and not estimate(s.with_(batch_size=b + 1), hw).fits
    c = max_cutoff_that_fits(s, hw)
    assert estimate(s.with_(cutoff_len=c), hw).fits and not estimate(s.with_(cutoff_len=c + 1), hw).fits
    big = TrainSetup(resolve_model("qwen2.5-72b").arch, finetuning_type="full")
    assert max_batch_that_fits(big, hw) == 0 and max_cutoff_that_fits(big, hw) == 0
    with pytest.raises(ValueError):
        max_batch_that_fits(s, None)


def test_invalid_setup_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="finetuning_type"):
        TrainSetup(TINY, finetuning_type="qlora")
    with pytest.raises(ValueError, match="batch_size"):
        TrainSetup(TINY, batch_size=0)
    with pytest.raises(ValueError, match="ceiling"):
        estimate(TrainSetup(TINY), ceiling=1.5)


# -- anchors -------------------------------------------------------------------------------------------------


def _longest_context_on_a_roomy_gpu(s: TrainSetup, memory_bytes: float) -> int:
    """The longest cutoff_len whose predicted device use (reserved + context, as a GPU with room to spare shows it)
    stays under ``memory_bytes``."""
    lo, hi = 1, 1 << 18
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate(s.with_(cutoff_len=mid)).device_used_bytes <= memory_bytes else (lo, mid)
    return lo


@pytest.mark.parametrize(
    ("memory_gb", "measured_tokens"),
    [(12, 932), (16, 2_551), (24, 5_789), (40, 12_264), (48, 15_502), (80, 28_454)],
)
def test_unsloth_hf_fa2_max_context_llama31_8b_qlora(memory_gb: int, measured_tokens: int) -> None:
    """Unsloth's benchmark table (unsloth README, Llama 3.1 context-length table): Llama-3.1-8B, QLoRA r=32 on all
    linears, batch 1, HF + FA2 with gradient checkpointing: the longest context that fits in each memory size. That
    baseline runs PEFT's ``prepare_model_for_kbit_training``, which upcasts the embeddings and lm_head to fp32
    (2 x 525M params x 2 extra bytes = 2.1 GB) where LLaMA-Factory keeps them in bf16; we give that back.

    This used to pass within 10% because the loss term was calibrated to this very table (16 B per token per
    vocabulary entry). The trace oracle counts 12 B live; the rest was allocator slack, now counted once from the
    caching-allocator replay. With both, the estimate allows contexts 13-16% longer than this third-party baseline
    (a 2024 HF/TRL script on older transformers, metric unstated: compared as device use on a roomy GPU). Band 20%."""

    s = TrainSetup(resolve_model("llama-3.1-8b").arch, quantization_bit=4, lora_rank=32, attention="fa2", batch_size=1)
    predicted = _longest_context_on_a_roomy_gpu(s, memory_gb * 10**9 - 2_100_000_000)
    assert predicted == pytest.approx(measured_tokens, rel=0.20)


def test_unsloth_slope_per_token() -> None:
    """Same table: (80 GB - 40 GB) / (28,454 - 12,264) tokens = 2.47 MB per token, dominated by the loss. The
    estimate's device use grows 2.18 MB per token (12 B x 128,256 vocabulary of loss tensors, checkpoints, and the
    allocator's cached blocks): 12% less than measured (see above). Band 15%."""
    s = TrainSetup(resolve_model("llama-3.1-8b").arch, quantization_bit=4, lora_rank=32, attention="fa2")
    slope = (estimate(s.with_(cutoff_len=20_000)).device_used_bytes - estimate(s.with_(cutoff_len=10_000)).device_used_bytes) / 10_000
    assert slope == pytest.approx(2.47e6, rel=0.15)


@pytest.mark.parametrize(
    ("model", "kwargs", "measured_total_gb"),
    [
        ("deepseek-r1-distill-qwen-1.5b", {"finetuning_type": "full"}, 77.03),
        ("deepseek-r1-distill-qwen-1.5b", {"finetuning_type": "freeze"}, 38.92),
        ("deepseek-r1-distill-qwen-1.5b", {"quantization_bit": 4}, 32.97),
        ("deepseek-r1-distill-qwen-32b", {"finetuning_type": "freeze"}, 133.75),
        ("deepseek-r1-distill-qwen-32b", {"quantization_bit": 4}, 75.42),
    ],
)
def test_user_report_8x_rtx4090_48g_zero3(model: str, kwargs: dict[str, object], measured_total_gb: float) -> None:
    """Sanity anchor from a user report: 8 x RTX 4090 48G, bf16, ZeRO-3 (LLaMA-Factory's ds_z3_config.json),
    totals summed over the 8 GPUs. The report does not give batch or length; we assume batch 1 and
    cutoff_len 1024 (LLaMA-Factory pads to the longest sequence of a batch, so real batches are often
    shorter than cutoff_len). A generous band: 0.7x-1.4x."""
    s = TrainSetup(resolve_model(model).arch, zero_stage=3, zero=LF_Z3, world_size=8, batch_size=1, cutoff_len=1024, **kwargs)  # type: ignore[arg-type]
    total_gb = estimate(s, get_profile("rtx-4090-48g")).peak_bytes * 8 / 1e9
    assert 0.7 * measured_total_gb <= total_gb <= 1.4 * measured_total_gb


def test_lf_readme_table_underestimates_full_bf16() -> None:
    """LLaMA-Factory's README says 18x GB for full bf16 (x = billions of params) without activations; the
    model states alone are 16 B/param here, and the foreach AdamW step adds 4 more."""
    arch = resolve_model("qwen2.5-7b").arch
    est = estimate(TrainSetup(arch, finetuning_type="full", batch_size=1, cutoff_len=1024))
    assert est.peak_bytes > 18 * 7.6e9


def test_allocator_slack_is_counted_once_and_metrics_nest() -> None:
    """Live tensors, then the allocator's slack (segments held by live blocks: in the peak), then the cache a roomy
    GPU keeps (not in the peak), then the CUDA context: allocated < reserved < nvidia-smi."""
    est = estimate(TrainSetup(resolve_model("qwen2.5-7b").arch, lora_rank=16, cutoff_len=1024))
    slack, cache = est.component("allocator"), est.component("allocator_cache")
    assert slack is not None and slack.at_peak and cache is not None and not cache.at_peak
    assert est.peak_bytes == pytest.approx(est.allocated_bytes + slack.bytes + est.bytes_of("cuda_context"))
    assert est.allocated_bytes < est.reserved_bytes < est.device_used_bytes
    assert est.reserved_bytes == pytest.approx(est.allocated_bytes + slack.bytes + cache.bytes)
    assert est.metric("nvidia-smi") == est.device_used_bytes
    with pytest.raises(ValueError, match="metric"):
        est.metric("rss")
    # the loss is a count of live tensors now; no calibrated constant hides slack in it
    assert est.component("logits").source == "estimated"  # type: ignore[union-attr]


def test_on_a_device_of_known_size_the_cache_is_given_back_before_the_metrics_exceed_it() -> None:
    """A run whose in-use peak fits a 40 GiB card but whose roomy-GPU cache would not: nvidia-smi there can show at
    most the card; reserved at most the card less the context; allocated is untouched; a roomy card shows it all."""
    s = TrainSetup(resolve_model("qwen2.5-7b").arch, lora_rank=16, batch_size=8, cutoff_len=2048)
    roomy = estimate(s)
    cache = roomy.bytes_of("allocator_cache")
    assert cache > 1 * 1024**3
    card = 0.5 * (roomy.peak_bytes + roomy.device_used_bytes)  # between the in-use peak and the roomy figure
    tight = estimate(s, hardware=type("Card", (), {"memory_bytes": card, "name": "card"})())
    assert tight.metric("nvidia-smi") == pytest.approx(card)
    assert tight.metric("reserved") == pytest.approx(card - tight.bytes_of("cuda_context"))
    assert tight.metric("allocated") == roomy.metric("allocated")
    big = estimate(s, hardware="h200")
    assert big.metric("nvidia-smi") == pytest.approx(roomy.metric("nvidia-smi"))


def test_fused_adamw_peaks_at_the_end_of_backward_with_the_tied_embedding_gradient() -> None:
    """Full fine-tuning with fused AdamW (no step temporaries): the peak is the second step's backward, when the
    tied embedding's gradient is summed with lm_head's (two more V x h fp32 tensors, counted by the trace)."""
    arch = resolve_model("qwen2.5-0.5b").arch
    est = estimate(TrainSetup(arch, finetuning_type="full", optim="adamw_torch_fused", cutoff_len=1024))
    assert est.peak_phase == "end of backward"
    work = est.component("first_layer_backward")
    assert work is not None and "tied embedding" in work.detail
    assert work.bytes >= 2 * arch.vocab_size * arch.hidden_size * 4


def test_upcast_layernorm_is_undone_by_deepspeed_and_flagged_under_pure_bf16() -> None:
    """DeepSpeed's engine casts the whole module (fp32 norms included) to 16-bit, so the option changes nothing
    there; under pure_bf16 (no autocast) the run fails at its first forward, and the estimate says so."""
    arch = resolve_model("qwen2.5-0.5b").arch
    for kw in ({"zero_stage": 2}, {"zero_stage": 2, "quantization_bit": 4}):
        on = estimate(TrainSetup(arch, cutoff_len=1024, upcast_layernorm=True, **kw))
        off = estimate(TrainSetup(arch, cutoff_len=1024, **kw))
        assert on.peak_bytes == off.peak_bytes
    pure = estimate(TrainSetup(arch, cutoff_len=1024, upcast_layernorm=True, precision="pure_bf16"))
    assert any("first forward fails (cfglint PREC007)" in n for n in pure.notes)
    assert not any("PREC007" in n for n in estimate(TrainSetup(arch, cutoff_len=1024, upcast_layernorm=True)).notes)
