"""One LLaMA-Factory training step, run for real or on fake tensors, with its live memory counted.

The model is the transformers implementation of the architecture, built with its parameters on ``meta`` and set up
by the trial builder the way LLaMA-Factory sets it up (``tuner.trial.build``: checkpointing of trainable layers only,
reentrant; full/freeze/LoRA through PEFT; trainable parameters upcast to fp32). Only then are the parameters given
storage: empty ``FakeTensor``s on the ``cpu`` device (``fake=True``), or real CPU tensors. Buffers (the RoPE
frequencies) are computed for real at construction and copied to fakes.

Each step is what the HF Trainer does with ``bf16: true`` (transformers ``Trainer.training_step`` and accelerate's
``Accelerator.prepare_model``): the forward with labels under bf16 autocast, its floating outputs converted to
fp32 (accelerate's ``convert_outputs_to_fp32``), the loss kept and the outputs dropped, ``backward``,
``clip_grad_norm_(max_norm=1.0)``, ``optimizer.step()``, ``model.zero_grad()``. Two steps by default: the second
runs with the optimizer states in place, where fused AdamW peaks.

Fake tensors differ from real ones in three ways that change the path the code takes, and each is pinned here
so that the fake run is the same program as the real one:

* transformers treats a FakeTensor as "tracing" (``is_tracing``) and then never skips the causal mask, and it
  looks at the data of the attention mask and position ids to decide whether it can (``fast_all``,
  ``find_packed_sequence_indices``). Here the batch is known: not packed, padded or not (``padded``), and the
  tracing check ignores fakeness (:func:`_known_batch`).
* ``clip_grad_norm_`` and AdamW pick their foreach or fused paths only for plain tensors; both get
  ``foreach``/``fused`` explicitly, as they pick them on CUDA.
* AdamW reads its step count with ``.item()`` (non-capturable path); for a fake step the value is taken as 1,
  which changes numbers, never shapes (:func:`_fake_step_values`).

``TrainSetup.loss_upcast=False`` swaps transformers' ``ForCausalLMLoss`` (fp32 upcast of the logits) for the loss a
model's own remote code computes on its 16-bit logits (:func:`loss_on_16bit_logits`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuner.memory.setup import TrainSetup
from tuner.memory.trace import qlora
from tuner.memory.trace.allocator import CachingAllocator, min_capacity
from tuner.memory.trace.live import LiveStorages

SUPPORTED_OPTIM = ("adamw_torch", "adamw_torch_fused")
ATTENTION = {"sdpa": "sdpa", "eager": "eager"}


class TraceUnsupported(ValueError):
    """The setup uses something the trace does not build (DeepSpeed, QLoRA, FlashAttention, Liger, ...)."""


@dataclass
class TraceResult:
    """What one traced run counted: the allocated peak and where it happened."""

    peak_bytes: int
    peak_phase: str
    phase_peaks: dict[str, int]
    model_bytes: int  # parameters and buffers before the first step
    trainable_params: int
    all_params: int
    ops: int
    seconds: float
    fake: bool
    notes: list[str] = field(default_factory=list)
    at_peak: dict[str, int] = field(default_factory=dict)  # live bytes at the peak by creator (``snapshot``)
    #: the caching allocator replayed on the same events (:mod:`tuner.memory.trace.allocator`), loading included
    allocator_allocated: int = 0  # max_memory_allocated (unsplit block remainders counted, as CUDA counts them)
    allocator_reserved: int = 0  # max_memory_reserved on a device with room to spare
    allocator_in_use: int = 0  # the most reserved memory an out-of-memory retry could not release
    #: the smallest device capacity (outside the CUDA context) the run fits in, give-backs included (``need=True``)
    allocator_need: int = 0
    lengths: list[int] = field(default_factory=list)  # tokens per sequence of each step

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes, "peak_phase": self.peak_phase, "phase_peaks": dict(self.phase_peaks),
            "model_bytes": self.model_bytes, "trainable_params": self.trainable_params, "all_params": self.all_params,
            "ops": self.ops, "seconds": round(self.seconds, 2), "fake": self.fake, "notes": list(self.notes),
            "allocator_allocated": self.allocator_allocated, "allocator_reserved": self.allocator_reserved,
            "allocator_in_use": self.allocator_in_use, "allocator_need": self.allocator_need, "lengths": list(self.lengths),
        }  # fmt: skip


# -- what the trace can build ------------------------------------------------------------------------------------


def check_supported(setup: TrainSetup) -> None:
    """Raise :class:`TraceUnsupported` for what the trace does not model."""
    why = []
    if setup.zero_stage is not None:
        why.append("DeepSpeed")
    if setup.world_size != 1:
        why.append("more than one rank")
    if setup.quantization_bit is not None and (setup.quantization_bit != 4 or setup.quantization_method != "bnb"
                                               or not setup.double_quantization or setup.finetuning_type != "lora"):
        why.append("quantization other than bitsandbytes 4-bit with double quantization (QLoRA)")
    if setup.finetuning_type not in ("lora", "full", "freeze"):
        why.append(f"finetuning_type {setup.finetuning_type}")
    if setup.attention not in ATTENTION:
        why.append(f"attention {setup.attention}")
    if setup.liger:
        why.append("Liger kernels")
    if setup.optim not in SUPPORTED_OPTIM:
        why.append(f"optim {setup.optim}")
    if setup.precision not in ("bf16", "fp32", "pure_bf16"):
        why.append(f"precision {setup.precision}")
    if setup.use_badam or setup.use_galore or setup.use_apollo or setup.use_adam_mini:
        why.append("block-wise or low-rank optimizers")
    if setup.unsloth_gc or setup.use_dora or setup.upcast_lmhead_output:
        why.append("unsloth checkpointing, DoRA or upcast_lmhead_output")
    if setup.additional_target and setup.finetuning_type != "lora":
        why.append("additional_target without LoRA")
    if setup.stage not in ("pt", "sft"):
        why.append(f"stage {setup.stage}")
    if setup.finetuning_type == "freeze" and (
        tuple(setup.freeze_trainable_modules) != ("all",) or setup.freeze_extra_modules
    ):
        why.append("freeze tuning of chosen modules")
    if setup.gradient_accumulation_steps != 1:
        why.append("gradient accumulation")
    if why:
        raise TraceUnsupported("the trace does not build: " + ", ".join(why))


def _spec(setup: TrainSetup) -> Any:
    from tuner.trial.spec import TrialSpec

    return TrialSpec(
        arch=setup.arch,
        finetuning_type=setup.finetuning_type,
        lora_rank=setup.lora_rank,
        lora_target=",".join(setup.lora_target),
        lora_dropout=setup.lora_dropout,
        additional_target=",".join(setup.additional_target),
        freeze_trainable_layers=setup.freeze_trainable_layers,
        quantization_bit=setup.quantization_bit,
        upcast_layernorm=setup.upcast_layernorm,
        per_device_train_batch_size=setup.batch_size,
        cutoff_len=setup.cutoff_len,
        gradient_checkpointing=setup.gradient_checkpointing,
        attn_implementation=ATTENTION[setup.attention],
        precision=setup.precision,
        optim=setup.optim,
        device="cpu",
    )


def loss_on_16bit_logits(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int, **_: Any) -> torch.Tensor:
    """The causal-LM loss of remote modeling code that does not upcast (Qwen-7B's ``modeling_qwen.py``,
    ``QWenLMHeadModel.forward``): the logits shifted into a contiguous copy, then ``CrossEntropyLoss`` on them in
    their own dtype."""
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = labels[..., 1:].contiguous()
    return torch.nn.functional.cross_entropy(shift_logits.view(-1, vocab_size), shift_labels.view(-1))


def loss_on_shifted_fp32_logits(
    logits: torch.Tensor, labels: torch.Tensor, vocab_size: int, num_items_in_batch: Any = None, ignore_index: int = -100,
    **_: Any,
) -> torch.Tensor:
    """The causal-LM loss of transformers 4.46-4.48 (``src/transformers/loss/loss_utils.py``, ``ForCausalLMLoss``):
    the logits upcast to fp32 and the shifted slice copied into a contiguous fp32 tensor before the cross-entropy.
    4.49 pads and shifts the labels instead (huggingface/transformers#35646). Under ``loss_shift="model"`` the
    logits arrive fp32 already (the model's forward upcast them, 4.45 and older) and the upcast is a no-op."""
    logits = logits.float()
    shift_logits = logits[..., :-1, :].contiguous().view(-1, vocab_size)
    shift_labels = labels[..., 1:].contiguous().view(-1).to(shift_logits.device)
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=ignore_index)
    total = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=ignore_index, reduction="sum")
    return total / num_items_in_batch


def _upcast_head_output(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """transformers 4.45 and older: ``logits = logits.float()`` in the model's forward, fp32 logits returned."""
    return output.float()


def build_on_meta(setup: TrainSetup) -> tuple[Any, list[str]]:
    """The model with meta parameters (real buffers), set up for training as LLaMA-Factory does."""
    from tuner.trial.build import _from_config, _parameters_on_meta, apply_method, compute_dtype_name, hf_config

    check_supported(setup)
    spec = _spec(setup)
    config, notes = hf_config(setup.arch, attn_implementation=spec.attn_implementation)
    dtype = getattr(torch, compute_dtype_name(setup.precision))
    with torch.device("cpu"), _parameters_on_meta():
        model = _from_config(config, dtype, spec.attn_implementation, notes)
    model.config.use_cache = False
    if setup.quantization_bit == 4:
        n = qlora.quantize(model, dtype)
        notes.append(f"{n} linear layers as bitsandbytes NF4 stand-ins (tuner.memory.trace.qlora)")
    model, _ = apply_method(model, spec)  # with upcast_layernorm, as LLaMA-Factory's patcher does it
    if setup.quantization_bit == 4:
        qlora.patch_lora_layers(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not setup.loss_upcast:
        base.loss_function = loss_on_16bit_logits
        notes.append("loss: cross-entropy on the 16-bit logits (remote code without upcast)")
    elif setup.loss_shift in ("logits", "model"):
        base.loss_function = loss_on_shifted_fp32_logits
        if setup.loss_shift == "model":
            base.get_output_embeddings().register_forward_hook(_upcast_head_output)
        notes.append(f"loss: transformers {'4.46-4.48' if setup.loss_shift == 'logits' else '4.45 and older'}: "
                     "shifted fp32 logits copied before the cross-entropy")
    return model, notes


def materialise(model: torch.nn.Module, fake_mode: Any | None, seed: int = 0) -> None:
    """Give every meta parameter storage: an empty FakeTensor under ``fake_mode``, else a real CPU tensor with
    small random values. Tied parameters stay one tensor; buffers become fakes under ``fake_mode``."""
    gen = torch.Generator().manual_seed(seed)
    done: dict[int, torch.nn.Parameter] = {}
    keep: list[Any] = []  # ids must stay unique while ``done`` is in use
    with torch.no_grad():
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is None:
                    continue
                if id(p) in done:
                    module._parameters[name] = done[id(p)]
                    continue
                keep.append(p)
                if fake_mode is not None:
                    with fake_mode:
                        data = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                else:
                    data = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                    if not data.is_floating_point():
                        data.zero_()
                    elif data.ndim >= 2:
                        data.normal_(0.0, 0.02, generator=gen)
                    else:
                        data.fill_(0.0 if name.endswith("bias") else 1.0)
                new = torch.nn.Parameter(data, requires_grad=p.requires_grad)
                done[id(p)] = new
                module._parameters[name] = new
            for name, b in list(module._buffers.items()):
                if b is None:
                    continue
                if b.device.type == "meta":  # the quantization stand-in's state: created empty, like parameters
                    if fake_mode is not None:
                        with fake_mode:
                            module._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device="cpu")
                    else:
                        module._buffers[name] = torch.zeros(b.shape, dtype=b.dtype, device="cpu")
                elif fake_mode is not None:
                    module._buffers[name] = fake_mode.from_tensor(b)


def _load_order(model: torch.nn.Module, *, upcast: bool, allocator: CachingAllocator) -> list[tuple[torch.Tensor, int]]:
    """Replay how the parameters came to be on the device, for the allocator: the checkpoint loaded in its 16-bit
    dtype (module order), then PEFT's adapters, then LLaMA-Factory's ``cast_trainable_params_to_fp32`` upcasting
    each trainable parameter in turn (``param.data = param.data.to(torch.float32)``: the fp32 copy is allocated
    before the 16-bit block is freed, and that block stays cached). Returns each parameter with its block."""
    params = list(dict.fromkeys(model.parameters()))  # tied parameters once, in module order
    names = {id(p): n for n, p in model.named_parameters()}
    loaded = {id(p): upcast and p.requires_grad and p.dtype == torch.float32 for p in params}
    order = [p for p in params if "lora_" not in names.get(id(p), "")] + [p for p in params if "lora_" in names.get(id(p), "")]
    handles: dict[int, int] = {}
    for p in order:
        nbytes = p.numel() * (2 if loaded[id(p)] else p.element_size())
        handles[id(p)] = allocator.malloc(nbytes)
    for p in params:
        if loaded[id(p)]:
            new = allocator.malloc(p.numel() * p.element_size())
            allocator.free(handles[id(p)])
            handles[id(p)] = new
    return [(p, handles[id(p)]) for p in params]


# -- pinning the data-dependent decisions -------------------------------------------------------------------------


@contextlib.contextmanager
def _known_batch(padded: bool) -> Iterator[None]:
    """transformers' mask decisions from what the batch is (unpacked, ``padded`` or not), not from its data."""
    from transformers import masking_utils as mu

    saved = {name: getattr(mu, name) for name in ("is_tracing", "fast_all", "find_packed_sequence_indices")}
    original_is_tracing = saved["is_tracing"]
    mu.is_tracing = lambda tensor=None: original_is_tracing(None)
    mu.fast_all = lambda tensor: not padded
    mu.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(mu, name, value)


@contextlib.contextmanager
def _fake_step_values() -> Iterator[None]:
    """AdamW's non-capturable path reads its step count with ``.item()``; a fake count reads as 1."""
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.optim import adam, optimizer

    original = optimizer._get_value

    def get_value(x: Any) -> Any:
        return 1.0 if isinstance(x, FakeTensor) else original(x)

    adam._get_value = get_value
    try:
        yield
    finally:
        adam._get_value = original


# -- the step ---------------------------------------------------------------------------------------------------


def make_batch(setup: TrainSetup, vocab_size: int, padded: bool, fake_mode: Any | None) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and labels of one micro-batch (int64, as LLaMA-Factory's collator makes them).

    Padded: every sequence but the first is one token shorter (the worst case of a padded batch)."""
    b, s = setup.batch_size, setup.cutoff_len
    ctx = fake_mode if fake_mode is not None else contextlib.nullcontext()
    with ctx:
        if fake_mode is not None:
            ids = torch.empty((b, s), dtype=torch.int64)
            mask = torch.empty((b, s), dtype=torch.int64)
            labels = torch.empty((b, s), dtype=torch.int64)
        else:
            gen = torch.Generator().manual_seed(1)
            ids = torch.randint(0, vocab_size, (b, s), generator=gen)
            mask = torch.ones((b, s), dtype=torch.int64)
            if padded and b > 1:
                mask[1:, -1] = 0
            labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _to_fp32(value: Any) -> Any:
    """accelerate's ``convert_to_fp32`` on a model output: 16-bit floating tensors become fp32 copies."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, dict):
        return type(value)(**{k: _to_fp32(v) for k, v in value.items()}) if hasattr(value, "to_tuple") else {
            k: _to_fp32(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_fp32(v) for v in value)
    return value


def _forward(model: Any, inputs: dict[str, torch.Tensor], autocast: bool) -> Any:
    """The Trainer's ``compute_loss``: the accelerate-wrapped forward, then only the loss is kept."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs = model(**inputs)
    outputs = _to_fp32(outputs) if autocast else outputs
    return outputs["loss"]


def trace_step(
    setup: TrainSetup,
    *,
    fake: bool = True,
    steps: int = 2,
    padded: bool | None = None,
    max_grad_norm: float = 1.0,
    snapshot: bool = False,
    deepspeed_module: bool = False,
    lengths: Sequence[int] | None = None,
    need: bool = False,
) -> TraceResult:
    """Run ``steps`` training steps of ``setup`` and count live memory (see the module docstring).

    ``padded`` defaults to what the estimator assumes: a batch of more than one sequence is padded.
    ``snapshot`` records which op created each tensor live at the peak (slower; for finding where bytes go).
    ``deepspeed_module`` runs the model as DeepSpeed's engine does under ``bf16``: every floating parameter cast
    to bf16 (``DeepSpeedEngine._configure_distributed_model``: ``module.bfloat16()``), no autocast and no fp32 copy
    of the outputs (accelerate leaves mixed precision to DeepSpeed). Only the model's side is traced: ZeRO's fp32
    master copy, states and buckets are not, and torch AdamW stands in for its optimizer (``setup.zero_stage`` is
    ignored here).
    ``lengths``: one step per entry, each micro-batch of sequences that many tokens long (at most ``cutoff_len``),
    as a dataset of varying lengths feeds them; ``steps`` is then ignored. ``need`` also finds the smallest device
    capacity the run fits in (:func:`tuner.memory.trace.allocator.min_capacity`): with varying lengths it can exceed
    what one step of the longest batch needs, and it stays well under a roomy device's reserved memory.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    t0 = time.time()
    step_lengths = [setup.cutoff_len] * steps if lengths is None else [int(n) for n in lengths]
    if not step_lengths or not all(0 < n <= setup.cutoff_len for n in step_lengths):
        raise ValueError(f"step lengths must be between 1 and cutoff_len ({setup.cutoff_len}): {step_lengths}")
    padded = setup.batch_size > 1 if padded is None else padded
    if deepspeed_module:
        if setup.precision != "bf16" or setup.zero_stage == 3:
            raise TraceUnsupported("the DeepSpeed module trace runs ZeRO-0/1/2 under bf16 only (ZeRO-3 partitions the module)")
        setup = setup.with_(zero_stage=None)
    model, notes = build_on_meta(setup)
    if deepspeed_module:
        for param in model.parameters():
            if param.dtype == torch.float32:
                param.data = param.data.to(torch.bfloat16)
        notes.append("DeepSpeed's 16-bit module: every floating parameter bf16, no autocast")
    fake_mode = FakeTensorMode(allow_non_fake_inputs=False) if fake else None
    materialise(model, fake_mode)
    from tuner.trial.build import count_parameters

    trainable_params, all_params = count_parameters(model)
    all_params += sum(p.numel() for p in model.parameters() if id(p) in qlora.packed_weights(model))  # Params4bit: 2 x numel
    params = [p for p in model.parameters() if p.requires_grad]
    fused = setup.optim == "adamw_torch_fused"
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, foreach=not fused, fused=fused)
    allocator = CachingAllocator(events=[] if need else None)
    live = LiveStorages(snapshot=snapshot, allocator=allocator)
    live.label = "parameters"
    for p, handle in _load_order(model, upcast=setup.precision != "pure_bf16", allocator=allocator):
        live.track(p, handle)
    live.label = "buffers"
    live.track_all(model.buffers())
    inputs = make_batch(setup.with_(cutoff_len=step_lengths[0]), setup.arch.vocab_size, padded, fake_mode)
    live.label = "batch"
    live.track_all(inputs.values())
    model_bytes = live.current
    autocast = setup.precision in ("bf16", "fp16") and not deepspeed_module
    modes = contextlib.ExitStack()
    with modes:
        modes.enter_context(_known_batch(padded))
        if fake_mode is not None:
            modes.enter_context(_fake_step_values())
            modes.enter_context(fake_mode)
        modes.enter_context(live)
        for i, length in enumerate(step_lengths, start=1):
            if inputs["input_ids"].shape[1] != length:  # the collator's next batch; the previous one is freed
                inputs = make_batch(setup.with_(cutoff_len=length), setup.arch.vocab_size, padded, fake_mode)
                live.track_all(inputs.values())
            live.set_phase(f"forward {i}")
            loss = _forward(model, inputs, autocast)
            live.set_phase(f"backward {i}")
            loss.backward()
            live.set_phase(f"clip {i}")
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
            live.set_phase(f"optimizer {i}")
            optimizer.step()
            live.set_phase(f"zero_grad {i}")
            model.zero_grad(set_to_none=True)
            del loss
    return TraceResult(
        peak_bytes=live.peak, peak_phase=live.peak_phase, phase_peaks=dict(live.phase_peaks), model_bytes=model_bytes,
        trainable_params=trainable_params, all_params=all_params, ops=live.ops, seconds=time.time() - t0, fake=fake,
        notes=notes, at_peak=dict(live.at_peak), allocator_allocated=allocator.max_allocated,
        allocator_reserved=allocator.max_reserved, allocator_in_use=allocator.max_in_use_segments,
        allocator_need=min_capacity(allocator.events) if allocator.events is not None else 0, lengths=step_lengths,
    )  # fmt: skip
