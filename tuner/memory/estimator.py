"""Peak GPU memory per device for a training setup, as a breakdown of components.

The peak is ``resident + max(forward/backward peak, end of backward, optimizer step)``, inflated by the
allocator's overhead, plus what lives outside PyTorch's allocator (the CUDA context, NCCL):

* resident: weights (frozen 16-bit or quantized, trainable copies), fp32 master copies, optimizer states,
  ZeRO/DDP buffers. They exist for the whole run.
* forward/backward peak: saved activations plus the larger of the loss (logits, fp32 upcast, log-softmax and
  their gradients) and one layer's backward working set (with gradient checkpointing, the recomputed layer),
  plus ZeRO-3's gathered parameters, autocast's 16-bit copies of fp32 weights, and the gradients already
  there (all of them with gradient accumulation).
* end of backward: all gradients, and the first layer's working set.
* optimizer step: all gradients plus the optimizer's temporaries and DeepSpeed's fp32 gradient partition.

Where LLaMA-Factory and DeepSpeed keep which copy is in :func:`_regime`. Everything is plain arithmetic on
:class:`~tuner.memory.setup.TrainSetup`, so it is fast enough to call inside a lint rule or a search loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tuner.memory import constants as C
from tuner.memory.activations import (
    ActOptions,
    LayerAct,
    LayerDtypes,
    batch_tensor_bytes,
    checkpoint_bytes_per_token,
    head_saved_per_token,
    layer_activation,
    loss_bytes,
)
from tuner.memory.loading import lf_upcasts_trainable, loading_peak
from tuner.memory.model import ParamPlan, ParamStats, arch_facts, param_stats, plan_params
from tuner.memory.optimizers import optimizer_profile
from tuner.memory.setup import TrainSetup
from tuner.models.arch import NORM_OUTPUT_TAKES_WEIGHT_DTYPE

RESIDENT = "resident"
#: Component keys by kind of tensor, for the allocator slack (constants.SLACK_IN_USE).
_FROZEN_KEYS = ("weights_frozen", "weights_quantized", "quant_constants", "ref_model")
_TRAINABLE_KEYS = ("weights_trainable", "master_weights", "optimizer_states")
FORWARD_BACKWARD = "forward/backward"
END_OF_BACKWARD = "end of backward"
OPTIMIZER_STEP = "optimizer step"
LOADING = "loading"
OVERHEAD = "overhead"


@dataclass(frozen=True)
class Component:
    """One line of the breakdown: bytes per device (or per node for host RAM), and how it was obtained."""

    key: str
    label: str
    bytes: float
    source: str  # estimated | calibrated | measured
    detail: str
    phase: str  # resident | forward/backward | end of backward | optimizer step | overhead
    at_peak: bool = True

    @property
    def gib(self) -> float:
        return self.bytes / C.GIB

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gib"] = round(self.gib, 3)
        return d


@dataclass
class MemoryEstimate:
    """The estimate for one setup on one device kind."""

    setup: TrainSetup
    components: list[Component]
    host_components: list[Component]
    peak_bytes: float  # per device, PyTorch reserved + outside-PyTorch
    peak_phase: str
    phases: dict[str, float]  # allocated bytes of each phase's moment (resident included)
    host_ram_bytes: float  # per node
    device_bytes: int | None
    ceiling: float
    notes: list[str] = field(default_factory=list)
    hardware_name: str | None = None
    params: ParamStats | None = None  # LLaMA-Factory's trainable/all parameter counts

    @property
    def ceiling_bytes(self) -> float | None:
        return None if self.device_bytes is None else self.device_bytes * self.ceiling

    @property
    def headroom_bytes(self) -> float | None:
        cb = self.ceiling_bytes
        return None if cb is None else cb - self.peak_bytes

    @property
    def fits(self) -> bool | None:
        cb = self.ceiling_bytes
        return None if cb is None else self.peak_bytes <= cb

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / C.GIB

    @property
    def allocated_bytes(self) -> float:
        """``torch.cuda.max_memory_allocated()``: the tensors live at the peak, cuBLAS workspace included."""
        return self.peak_bytes - sum(c.bytes for c in self.at_peak() if c.key in ("allocator", "cuda_context", "nccl"))

    @property
    def reserved_bytes(self) -> float:
        """``torch.cuda.max_memory_reserved()`` on a GPU with room to spare: allocated + allocator slack + cache."""
        return self.allocated_bytes + self.bytes_of("allocator") + self.bytes_of("allocator_cache")

    @property
    def device_used_bytes(self) -> float:
        """What nvidia-smi shows for the process on a GPU with room to spare: reserved + CUDA context + NCCL."""
        return self.reserved_bytes + self.bytes_of("cuda_context") + self.bytes_of("nccl")

    def metric(self, name: str) -> float:
        """The prediction for a measured metric: ``allocated``, ``reserved`` or ``nvidia-smi``.

        ``reserved`` and ``nvidia-smi`` include the free segments the caching allocator keeps (``allocator_cache``).
        On a device of known size (``hardware`` given) the allocator gives that cache back rather than fail, so
        only what fits next to the in-use peak is counted: what such a device can show."""
        by = {"allocated": self.allocated_bytes, "reserved": self.reserved_bytes, "nvidia-smi": self.device_used_bytes}
        if name not in by:
            raise ValueError(f"metric must be one of {', '.join(by)}, got {name!r}")
        value = by[name]
        if name != "allocated" and self.device_bytes:
            cache = self.bytes_of("allocator_cache")
            value -= cache - min(cache, max(0.0, self.device_bytes - self.peak_bytes))
        return value

    def component(self, key: str) -> Component | None:
        return next((c for c in self.components if c.key == key), None)

    def bytes_of(self, key: str) -> float:
        """A component's bytes (0 when absent), whether or not it is at the peak."""
        c = self.component(key)
        return c.bytes if c else 0.0

    def at_peak(self) -> list[Component]:
        return [c for c in self.components if c.at_peak]

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        return {
            "hardware": self.hardware_name,
            "world_size": s.world_size,
            "peak_bytes": int(self.peak_bytes),
            "peak_gib": round(self.peak_gib, 3),
            "peak_phase": self.peak_phase,
            "params": None if self.params is None else self.params.to_dict(),
            "device_bytes": self.device_bytes,
            "ceiling": self.ceiling,
            "ceiling_bytes": None if self.ceiling_bytes is None else int(self.ceiling_bytes),
            "headroom_bytes": None if self.headroom_bytes is None else int(self.headroom_bytes),
            "fits": self.fits,
            "host_ram_bytes": int(self.host_ram_bytes),
            "allocated_bytes": int(self.allocated_bytes),
            "reserved_bytes": int(self.reserved_bytes),
            "device_used_bytes": int(self.device_used_bytes),
            "components": [c.to_dict() for c in self.components],
            "host_components": [c.to_dict() for c in self.host_components],
            "phases": {k: int(v) for k, v in self.phases.items()},
            "notes": list(self.notes),
        }


# -- precision regime ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Regime:
    """Which dtype every copy has, as LLaMA-Factory + transformers (+ DeepSpeed) set it up."""

    autocast: bool
    load_b: int  # frozen weights
    trainable_b: int  # the module's copy of trainable weights
    adapter_b: int
    master_b: int  # a separate fp32 master copy (0: none)
    grad_b: int
    state_pb: int  # dtype of what the optimizer updates
    residual_full: int  # residual stream when the embedding trains
    why: str
    #: bytes per trainable parameter of the weights, gradients and what the optimizer updates, averaged where they
    #: differ by parameter (0: the dtypes above hold for all of them)
    mixed_b: float = 0.0


def _regime(s: TrainSetup, plan: ParamPlan) -> _Regime:
    quant = plan.quantized > 0
    half = s.precision in ("bf16", "fp16", "pure_bf16")
    upcast = lf_upcasts_trainable(precision=s.precision, badam=s.use_badam, zero_stage=s.zero_stage, quantized=quant)
    if s.deepspeed and half:
        # The engine casts the whole module to bf16/fp16 (stage 3: bf16 partitions); ZeRO keeps fp32 masters.
        return _Regime(False, 2, 2, 2, 4, 2, 4, 2, "DeepSpeed mixed precision: 16-bit module, fp32 master in the optimizer")
    if s.deepspeed and s.zero_stage == 3 and not quant:
        return _Regime(False, 4, 4, 4, 4, 4, 4, 4, "DeepSpeed ZeRO-3 without bf16/fp16: fp32 everywhere (a separate fp32 master partition)")
    ds_master = 4 if (s.deepspeed and (s.zero_stage or 0) >= 1) else 0
    if s.use_badam:
        return _Regime(half and s.precision != "pure_bf16", 2, 2, 4, 4, 2, 4, 2, "BAdam: 16-bit weights, fp32 copy and states of the active block")
    if s.precision == "pure_bf16" and s.finetuning_type == "lora" and s.additional_target and plan.trainable:
        # PEFT's autocast_adapter_dtype (see the next branch) upcasts only the adapters: _cast_adapter_dtype casts
        # the parameters of its tuner layers, not the modules_to_save copies, which stay bf16 with bf16 gradients
        # and states. Counted by the trace.
        mixed = (4 * plan.adapter + 2 * (plan.trainable - plan.adapter)) / plan.trainable
        return _Regime(False, 2, 2, 4, 0, 2, 2, 2, "pure bf16: bf16 weights and additional_target copies; PEFT keeps the LoRA "
                       "adapters in fp32 (autocast_adapter_dtype)", mixed_b=mixed)  # fmt: skip
    if s.precision == "pure_bf16" and s.finetuning_type == "lora" and not s.additional_target:
        # LLaMA-Factory does not upcast under pure_bf16, but PEFT does: get_peft_model's autocast_adapter_dtype
        # (default True since peft 0.12) makes bf16/fp16 adapter weights fp32, so their gradients and AdamW states
        # are fp32 too (LLaMA-Factory v0.9.5 src/llamafactory/model/adapter.py, _setup_lora_tuning; peft
        # tuners_utils.py, BaseTuner._cast_adapter_dtype). With additional_target see the branch above.
        return _Regime(False, 2, 4, 4, 0, 4, 4, 2, "pure bf16: bf16 weights; PEFT keeps the LoRA adapters in fp32 (autocast_adapter_dtype)")
    tb = 4 if upcast else 2
    autocast = s.precision in ("bf16", "fp16")
    why = (
        "mixed precision (autocast): 16-bit frozen weights, trainable weights upcast to fp32"
        if autocast and upcast
        else "pure bf16: weights, gradients and states in bf16"
        if s.precision == "pure_bf16"
        else "no bf16/fp16 flag: 16-bit frozen weights (LLaMA-Factory infers the load dtype), fp32 trainable, no autocast"
    )
    return _Regime(autocast, 2, tb, 4, ds_master, tb, max(tb, 4 if ds_master else tb), tb, why)


# -- the estimate ----------------------------------------------------------------------------------------------


def _fmt(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _gib(b: float) -> str:
    return f"{b / C.GIB:.2f} GiB"


def _hardware(hardware: Any) -> tuple[int | None, str | None]:
    if hardware is None:
        return None, None
    if isinstance(hardware, str):
        from tuner.hardware.profiles import get_profile

        hardware = get_profile(hardware)
    mem = getattr(hardware, "memory_bytes", None)
    if mem is None and getattr(hardware, "memory_gib", None) is not None:
        mem = int(hardware.memory_gib * C.GIB)
    return (int(mem) if mem else None), getattr(hardware, "name", None)


def estimate(setup: TrainSetup, hardware: Any = None, gpus: int | None = None, ceiling: float = 0.90) -> MemoryEstimate:
    """Predict the peak memory per device of ``setup`` (on ``hardware``, a profile or its name, if given).

    ``gpus`` overrides ``setup.world_size`` (the data-parallel ranks DeepSpeed shards over).
    """
    if gpus is not None and gpus != setup.world_size:
        setup = setup.with_(world_size=max(1, int(gpus)))
    if not 0 < ceiling <= 1:
        raise ValueError(f"ceiling must be a fraction in (0, 1], got {ceiling}")
    device_bytes, hw_name = _hardware(hardware)
    s = setup
    arch = s.arch
    facts = arch_facts(arch)
    plan = plan_params(s)
    rg = _regime(s, plan)
    notes: list[str] = list(plan.notes)
    N = s.world_size
    stage = s.zero_stage
    ds = stage is not None
    z = s.zero.resolved(arch.hidden_size, stage or 0)
    off_opt = ds and bool(s.offload_optimizer) and (stage or 0) >= 1
    off_param = ds and stage == 3 and bool(s.offload_param)
    shard_w = N if stage == 3 else 1
    shard_states = N if ds and (stage or 0) >= 1 else 1
    md = 2 if rg.load_b == 2 else 4  # dtype of DeepSpeed's module copy
    comps: list[Component] = []
    host: list[Component] = []
    E, K = C.ESTIMATED, C.CALIBRATED

    def add(key: str, label: str, b: float, detail: str, phase: str, source: str = E) -> None:
        if b > 0:
            comps.append(Component(key, label, float(b), source, detail, phase))

    # -- weights ---------------------------------------------------------------------------------------------
    frozen_b: float = plan.frozen_16bit * rg.load_b
    quant_codes: float = plan.quantized * (plan.quant_bytes_per_param - plan.quant_constant_bytes_per_param)
    quant_consts = plan.quantized * plan.quant_constant_bytes_per_param
    train_b: float = plan.trainable * (rg.mixed_b or rg.trainable_b)
    if off_param:
        host.append(Component("offload_params", "offloaded parameters (pinned)", (frozen_b + quant_codes + train_b) * s.ranks_per_node / N * C.HOST_BUFFER_FACTOR, E,
                              f"16-bit partitions of {_fmt(plan.total)} params x {s.ranks_per_node} ranks/node / {N} x {C.HOST_BUFFER_FACTOR}", RESIDENT))
        frozen_b = quant_codes = train_b = 0.0
    sh = f" / {N} GPUs (ZeRO-3)" if shard_w > 1 else ""
    add("weights_frozen", "frozen weights", frozen_b / shard_w,
        f"{_fmt(plan.frozen_16bit)} params x {rg.load_b} B{sh}", RESIDENT)
    if plan.quantized:
        add("weights_quantized", f"quantized weights ({plan.quant_label})", quant_codes / shard_w,
            f"{_fmt(plan.quantized)} linear params x {plan.quant_bytes_per_param - plan.quant_constant_bytes_per_param:.3g} B{sh}", RESIDENT)
        add("quant_constants", "quantization constants", quant_consts,
            f"{_fmt(plan.quantized)} params x {plan.quant_constant_bytes_per_param:.4f} B (absmax{' + double quant' if s.double_quantization and s.quantization_bit == 4 else ''}; not sharded)", RESIDENT)
    what = {"lora": f"LoRA r={s.lora_rank}{' + DoRA magnitudes' if s.use_dora else ''}", "oft": f"OFT block {s.oft_block_size}",
            "full": "all language-model params", "freeze": f"{s.freeze_trainable_layers} trainable layers"}[s.finetuning_type]
    if s.use_badam:
        what = "BAdam active block"
    add("weights_trainable", "trainable weights", train_b / shard_w,
        f"{what}: {_fmt(plan.trainable)} params x {rg.mixed_b or rg.trainable_b:.3g} B{sh}", RESIDENT)
    if s.use_ref_model and s.finetuning_type in ("full", "freeze") and s.stage in ("dpo", "kto"):
        add("ref_model", "reference model", facts.total * 2 / shard_w, f"frozen copy of {_fmt(facts.total)} params x 2 B{sh}", RESIDENT)

    # -- optimizer states and master copies --------------------------------------------------------------------
    prof, known = optimizer_profile(s.optim)
    if not known:
        notes.append(prof.note)
    low_rank = s.use_galore or s.use_apollo or s.optim.startswith(("galore_", "apollo_"))
    layerwise = (s.use_galore and s.galore_layerwise) or (s.use_apollo and s.apollo_layerwise) or s.optim.endswith("_layerwise")
    state_params = plan.state_params
    master = state_params * rg.master_b if rg.master_b else 0.0
    state_b = rg.mixed_b or rg.state_pb
    states = prof.states(state_b) * state_params
    state_detail = f"{_fmt(state_params)} params x {prof.states(state_b):.3g} B ({prof.note or prof.name})"
    if low_rank and plan.galore_matrices:
        r = s.galore_rank if (s.use_galore or s.optim.startswith("galore_")) else s.apollo_rank
        g_params = sum(m * n * c for m, n, c in plan.galore_matrices)
        g_states = sum(c * (max(m, n) * r) for m, n, c in plan.galore_matrices)
        proj = 0 if s.use_apollo else sum(c * min(m, n) * r for m, n, c in plan.galore_matrices)
        states = prof.states(rg.state_pb) * (state_params - g_params + g_states) + proj * rg.state_pb
        kind = "GaLore" if not s.use_apollo else "APOLLO"
        state_detail = f"{kind} rank {r}: states on {_fmt(g_states)} projected values + {_fmt(state_params - g_params)} other params" + (
            f", projectors {_fmt(proj)}" if proj else "")
    if off_opt:
        per_node = (master + states + 4 * state_params) * s.ranks_per_node / N * C.HOST_BUFFER_FACTOR
        host.append(Component("offload_optimizer", "offloaded optimizer (fp32 master, states, grads)", per_node, E,
                              f"({_gib(master + states + 4 * state_params)} / {N} ranks) x {s.ranks_per_node} ranks/node x {C.HOST_BUFFER_FACTOR} pinned buffers", RESIDENT))
        master = states = 0.0
    ssh = f" / {N} GPUs (ZeRO-{stage})" if shard_states > 1 else ""
    add("master_weights", "fp32 master weights", master / shard_states, f"{_fmt(state_params)} params x 4 B{ssh}", RESIDENT)
    add("optimizer_states", "optimizer states", states / shard_states, state_detail + ssh, RESIDENT)

    # -- gradients ---------------------------------------------------------------------------------------------
    grads_full: float
    grad_detail: str
    if not prof.stores_grads or layerwise:
        grads_full = plan.largest_trainable_tensor * rg.grad_b
        grad_detail = "updated per parameter inside backward: one tensor's gradient at a time"
    elif s.use_badam:
        grads_full = plan.trainable * (2 + 4)
        grad_detail = f"active block {_fmt(plan.trainable)} params x (2 B + 4 B fp32 copy)"
    elif not ds:
        grads_full = plan.trainable * (rg.mixed_b or rg.grad_b)
        grad_detail = f"{_fmt(plan.trainable)} params x {rg.mixed_b or rg.grad_b:.3g} B"
    elif stage == 0:
        grads_full = plan.trainable * (md + (4 if md == 2 else 0))
        grad_detail = f"{_fmt(plan.trainable)} params x ({md} B + fp32 accumulation)" if md == 2 else f"{_fmt(plan.trainable)} params x 4 B"
    elif stage == 1:
        grads_full = plan.trainable * md
        grad_detail = f"{_fmt(plan.trainable)} params x {md} B (ZeRO-1 does not partition gradients)"
    else:
        grads_full = 0.0 if off_opt else plan.trainable * md / N
        grad_detail = "moved to host as they are reduced (offload)" if off_opt else f"{_fmt(plan.trainable)} params x {md} B / {N} GPUs (ZeRO-{stage})"

    # -- ZeRO / DDP buffers ------------------------------------------------------------------------------------
    if ds and stage in (1, 2) and z["contiguous_gradients"]:
        nbuf = C.ZERO12_OVERLAP_BUFFERS if z["overlap_comm"] else 1
        add("zero_buckets", "ZeRO reduce bucket", z["reduce_bucket_size"] * md * nbuf,
            f"reduce_bucket_size {_fmt(z['reduce_bucket_size'])} x {md} B x {nbuf} buffer(s)", RESIDENT)
    if ds and stage == 3:
        add("zero_buckets", "ZeRO-3 reduce bucket", z["reduce_bucket_size"] * md,
            f"reduce_bucket_size {_fmt(z['reduce_bucket_size'])} x {md} B", RESIDENT)
        persist = facts.counts.norms + sum(lin.bias_params for i in range(arch.num_hidden_layers) for lin in facts.linears(i))
        add("zero_persistent", "ZeRO-3 persistent small params", persist * md,
            f"{_fmt(persist)} params below stage3_param_persistence_threshold {_fmt(z['stage3_param_persistence_threshold'])}, unpartitioned", RESIDENT)
    if not ds and N > 1 and prof.stores_grads and not layerwise:
        add("ddp_buckets", "DDP gradient buckets", plan.trainable * rg.grad_b,
            f"a flat copy of {_fmt(plan.trainable)} gradients x {rg.grad_b} B (gradient_as_bucket_view off)", RESIDENT)
    add("cublas", "cuBLAS workspace", C.CUBLAS_WORKSPACE_BYTES, "allocated through the caching allocator on the first GEMM", RESIDENT)

    # -- activations ---------------------------------------------------------------------------------------------
    tokens = s.tokens
    seq = s.cutoff_len
    attention = s.attention
    kv_expanded = attention == "sdpa" and (s.batch_size > 1 or s.sequences_per_sample > 1) and arch.num_key_value_heads < arch.num_attention_heads
    liger = s.liger and arch.model_type in C.LIGER_MODEL_TYPES
    if s.liger and not liger:
        notes.append(f"Liger has no kernels for model type {arch.model_type!r} in LLaMA-Factory: estimated without it")
    bnb4 = bool(plan.quantized) and s.quantization_method == "bnb" and s.quantization_bit == 4
    bnb_fp32 = bnb4 and s.upcast_layernorm and rg.autocast and not liger
    opts = ActOptions(attention, kv_expanded, liger, s.lora_dropout > 0 and s.finetuning_type == "lora", s.use_dora and s.finetuning_type == "lora", s.finetuning_type == "oft", bnb4, bnb_fp32)
    base_opts = ActOptions(attention, kv_expanded, liger, False, False, opts.oft, bnb4, bnb_fp32)
    embed_out = rg.residual_full if plan.embed_trainable else (2 if rg.load_b == 2 else 4)
    residual = embed_out
    first = plan.first_trainable_layer
    gc = s.gradient_checkpointing
    saved_total = 0.0
    base_total = 0.0
    ckpt_total = 0.0
    work_last = 0.0
    work_first = 0.0
    frozen_saved = 0.0
    cache: dict[tuple[object, ...], tuple[LayerAct, LayerAct]] = {}
    for i in range(arch.num_hidden_layers):
        lp = plan.layers[i]
        if first is None or i < first:
            continue  # no input needs a gradient yet: nothing saved
        trainable_layer = lp.has_trainable
        # the first layer's fp32 MLP output makes the residual stream fp32 for every later layer
        residual = 4 if (bnb_fp32 and i > 0) else embed_out
        # upcast_layernorm's fp32 norms; DeepSpeed's engine casts the whole module back to 16-bit
        norm_w = rg.trainable_b if (lp.norms_trainable and not ds) else (4 if (s.upcast_layernorm and not ds) or rg.load_b != 2 else 2)
        dt = LayerDtypes(rg.autocast, residual, norm_w, rg.trainable_b, rg.load_b, rg.adapter_b)
        # Without checkpointing, the first trainable layer's input needs no gradient when nothing before trains.
        needs_grad = not (i == first and not plan.embed_trainable and not (trainable_layer and gc))
        key = (facts.layer_kinds[i], lp.trainable_linears, tuple(sorted(lp.adapters.items())), lp.norms_trainable, norm_w, needs_grad, residual)
        if key not in cache:
            cache[key] = (
                layer_activation(arch, facts.linears(i), lp, dt, opts, needs_grad),
                layer_activation(arch, facts.linears(i), lp, dt, base_opts, needs_grad),
            )
        act, base_act = cache[key]
        full_saved = act.saved(tokens, seq)
        work = act.transient(tokens, seq)
        if trainable_layer and gc:
            ckpt_total += 0.0 if s.unsloth_gc else checkpoint_bytes_per_token(arch, residual) * tokens
            work = full_saved + work  # recomputed in backward, one layer at a time
        else:
            saved_total += full_saved
            base_total += base_act.saved(tokens, seq)
            if not trainable_layer:
                frozen_saved += full_saved
        work_last = work
        if work_first == 0.0:
            # the first layer backward visits is the last one done: its saved activations are still there
            # (checkpointed: recomputed), next to nearly all the gradients
            work_first = work if (trainable_layer and gc) else full_saved + work
    if gc and s.unsloth_gc and first is not None:
        n_ck = sum(1 for lp in plan.layers if lp.has_trainable)
        host.append(Component("unsloth_gc", "offloaded checkpoints (use_unsloth_gc)", checkpoint_bytes_per_token(arch, residual) * tokens * n_ck * s.ranks_per_node, E,
                              f"{n_ck} layers x {tokens:,} tokens x {residual * arch.hidden_size} B x {s.ranks_per_node} ranks/node", FORWARD_BACKWARD))
    head = head_saved_per_token(arch, residual, plan.final_norm_trainable, plan.lm_head_trainable, rg.autocast, liger) * tokens if first is not None else 0.0
    mm = 2 if (rg.autocast or rg.load_b == 2) else 4
    batch_b = batch_tensor_bytes(arch, s.batch_size * s.sequences_per_sample, seq, attention, mm, rope_b=embed_out)
    fused = liger and s.stage in ("pt", "sft")
    logits_b = 4 if (s.upcast_lmhead_output or mm == 4) else 2
    loss, loss_fwd, loss_detail = loss_bytes(arch, tokens, fused=fused, logits_b=logits_b, hidden_b=mm, head_trainable=plan.lm_head_trainable,
                                   head_weight_b=rg.trainable_b, stage=s.stage, loss_in_16bit=not (s.loss_upcast or rg.autocast),
                                   shift=s.loss_shift, batch=s.batch_size)

    # QLoRA dequantisation and ZeRO-3 gathers are transients of the layer working set / of the head.
    dequant = 0.0
    if plan.quantized and s.quantization_method == "bnb":
        dequant = 2 * facts.largest_linear * 2  # the 16-bit weight bnb rebuilds, in forward and again in backward
    gathered = 0.0
    gather_detail = ""
    if ds and stage == 3:
        biggest = max(facts.counts.embeddings * md, facts.largest_linear * (plan.quant_bytes_per_param or md))
        live = min(z["stage3_max_live_parameters"] * md, biggest + z["stage3_prefetch_bucket_size"] * md)
        gathered = live + (facts.counts.embeddings * md if (plan.embed_trainable or plan.lm_head_trainable) else 0.0)
        gather_detail = (f"largest gathered module {_gib(biggest)} + prefetch {_fmt(z['stage3_prefetch_bucket_size'])} x {md} B"
                         f" (capped by max_live_parameters {_fmt(z['stage3_max_live_parameters'])})"
                         + (", + its full 16-bit gradient" if (plan.embed_trainable or plan.lm_head_trainable) else ""))
    autocast_copies = plan.trainable_matmul * 2 if (rg.autocast and rg.trainable_b == 4 and not ds) else 0.0

    work_last += dequant
    work_first += dequant
    act_base = saved_total + ckpt_total + head + batch_b
    # The dynamic part of the forward/backward peak. Without checkpointing autograd keeps autocast's 16-bit
    # weight copies until each layer's backward; with it they live only until the forward's autocast exits,
    # which is before the loss backward (the larger loss moment) but after the forward's own loss peak.
    # lm_head is never checkpointed: its 16-bit copy (of a trainable head, or of a trained embedding it is tied to)
    # is saved by its matmul until lm_head's backward, past the loss's backward.
    # PEFT's modules_to_save copies (additional_target) are separate parameters even where the model ties its head:
    # a trained embedding copy leaves lm_head on the frozen original
    tied = facts.counts.lm_head == 0 and not plan.modules_to_save
    head_w = facts.counts.lm_head or facts.counts.embeddings
    head_trains = plan.lm_head_trainable or (tied and plan.embed_trainable)
    head_copy = head_w * 2 if (autocast_copies and head_trains) else 0.0
    copies_in_graph = autocast_copies if not gc else head_copy
    candidates = {
        "loss": loss + copies_in_graph,
        "layer": work_last + copies_in_graph,
        # the end of the forward: with autocast copies (freed before the loss backward under checkpointing), or
        # where the forward's loss holds more than its backward (the shifted fp32 copy, transformers 4.46-4.48)
        "forward": loss_fwd + autocast_copies,
    }
    winner = max(candidates, key=lambda k: candidates[k])
    dynamic = candidates[winner]
    loss_wins = winner != "layer"
    # gradients already present at the activation peak
    if s.gradient_accumulation_steps > 1 and prof.stores_grads and not layerwise:
        g_at_a = grads_full
        g_at_a_detail = f"all gradients: kept across {s.gradient_accumulation_steps} accumulation steps"
    elif loss_wins:
        g_at_a = 0.0
        g_at_a_detail = ""
    else:
        frac = 0.0
        if plan.trainable:
            last_layer = max((lp.trainable_params for lp in plan.layers if lp.has_trainable), default=0)
            frac = min(1.0, (last_layer + (facts.counts.lm_head if plan.lm_head_trainable else 0)) / plan.trainable)
        g_at_a = grads_full * frac
        g_at_a_detail = "gradients of the head and last layer"
    fb = act_base + dynamic + gathered + g_at_a
    # End of backward: the first layer's backward next to nearly all gradients, or, when the embedding trains, its
    # gradient. Untied, embedding_dense_backward's output becomes the last gradient (autograd steals it). Tied to
    # lm_head, the engine sums it with lm_head's contribution, which waits in the input buffer from the start of
    # backward; that sum is out of place (the first contribution is a view of its mm's output, torch's
    # ``InputBuffer::accumulate`` adds in place only into a tensor owning its storage alone): two more copies.
    embed_grad = facts.counts.embeddings * rg.grad_b if (plan.embed_trainable and grads_full and not ds and not layerwise
                                                         and prof.stores_grads and not s.use_badam) else 0.0
    eob_layer = work_first - (0.0 if tied else embed_grad)
    eob_embed = facts.counts.embeddings * (embed_out + rg.grad_b) if (embed_grad and tied) else 0.0
    eob_work, eob_detail = (eob_layer, "the first layer's backward, the last one backward visits") if eob_layer >= eob_embed else (
        eob_embed, "the tied embedding's gradient and its sum with lm_head's, next to all other gradients")
    eob = grads_full + eob_work + batch_b + gathered
    step_tmp = 0.0
    step_detail: list[str] = []
    if not off_opt:
        t: float = prof.temp(state_b) * state_params / shard_states
        if t:
            step_tmp += t
            step_detail.append(f"foreach temporaries {_gib(t)}")
        if ds and stage in (1, 2):
            t = 4 * plan.trainable / N
            step_tmp += t
            step_detail.append(f"fp32 gradient partition {_gib(t)}")
        elif ds and stage == 3:
            t = 4 * min(plan.trainable / N, z["sub_group_size"])
            step_tmp += t
            step_detail.append(f"fp32 gradients of one sub-group {_gib(t)}")
    if low_rank and plan.galore_matrices:
        m, n, _ = max(plan.galore_matrices, key=lambda g: g[0] * g[1])
        t = 4 * (m * n + m * min(m, n) + min(m, n) * n)
        step_tmp += t
        step_detail.append(f"SVD of the largest projected weight {_gib(t)}")
    step = grads_full + step_tmp

    phases = {FORWARD_BACKWARD: fb, END_OF_BACKWARD: eob, OPTIMIZER_STEP: step}
    peak_phase = max(phases, key=lambda k: phases[k])

    # Components of the dynamic phases, each marked whether it is part of the peak.
    def dyn(key: str, label: str, b: float, detail: str, phase: str, source: str = E) -> None:
        if b > 0:
            comps.append(Component(key, label, float(b), source, detail, phase, at_peak=(phase == peak_phase)))

    gc_note = "" if not gc else (" (gradient checkpointing: layer inputs; checkpoints offloaded to host)" if s.unsloth_gc else " (gradient checkpointing: layer inputs)")
    lora_extra = saved_total - base_total
    dyn("activations", "activations", saved_total - lora_extra + ckpt_total + head + batch_b,
        f"{tokens:,} tokens{gc_note}: saved {_gib(saved_total - lora_extra)}, checkpoints {_gib(ckpt_total)}, head {_gib(head)}, batch {_gib(batch_b)}"
        + (f"; frozen layers after a trainable one keep {_gib(frozen_saved)}" if frozen_saved else ""), FORWARD_BACKWARD)
    if lora_extra > 0:
        label = "DoRA/dropout activations" if opts.dora and opts.lora_dropout else "DoRA activations" if opts.dora else "LoRA dropout masks"
        dyn("adapter_activations", label, lora_extra, "what lora_dropout > 0 or DoRA add to the saved activations", FORWARD_BACKWARD)
    layer_detail = ("recomputed layer + its backward temporaries" if gc else "backward temporaries") + (
        f" + dequantised weights {_gib(dequant)}" if dequant else "")
    loss_src = E
    if winner == "forward":
        dyn("logits", "logits and loss (forward)", loss_fwd, loss_detail + "; at the end of the forward", FORWARD_BACKWARD, source=loss_src)
    elif winner == "loss":
        dyn("logits", "logits and loss", loss, loss_detail, FORWARD_BACKWARD, source=loss_src)
    else:
        dyn("layer_backward", "one layer's backward working set", work_last, layer_detail, FORWARD_BACKWARD)
    if winner != "layer":
        comps.append(Component("layer_backward", "one layer's backward working set", work_last, E, layer_detail, FORWARD_BACKWARD, at_peak=False))
    if winner != "loss" and winner != "forward":
        comps.append(Component("logits", "logits and loss", loss, loss_src, loss_detail, FORWARD_BACKWARD, at_peak=False))
    dyn("zero3_gathered", "ZeRO-3 gathered parameters", gathered, gather_detail, FORWARD_BACKWARD)
    copies_now = autocast_copies if (winner == "forward" or not gc) else 0.0
    if copies_now:
        dyn("autocast_copies", "autocast 16-bit weight copies", copies_now,
            f"{_fmt(plan.trainable_matmul)} fp32 matmul weights x 2 B, cached by autocast during forward", FORWARD_BACKWARD)
    elif autocast_copies:
        comps.append(Component("autocast_copies", "autocast 16-bit weight copies", autocast_copies, E,
                               "freed when the forward's autocast exits (gradient checkpointing)", FORWARD_BACKWARD, at_peak=False))
        dyn("head_autocast_copy", "lm_head's 16-bit weight copy", head_copy,
            f"{_fmt(head_w)} params x 2 B, saved by lm_head's matmul until its backward (lm_head is not checkpointed)", FORWARD_BACKWARD)
    dyn("gradients_partial", "gradients (during backward)", g_at_a, g_at_a_detail, FORWARD_BACKWARD)
    dyn("gradients", "gradients", grads_full, grad_detail, END_OF_BACKWARD if peak_phase != OPTIMIZER_STEP else OPTIMIZER_STEP)
    if peak_phase == END_OF_BACKWARD:
        dyn("first_layer_backward", "backward working set at its end", eob_work + batch_b, eob_detail, END_OF_BACKWARD)
    dyn("step_temporaries", "optimizer-step temporaries", step_tmp, "; ".join(step_detail), OPTIMIZER_STEP)
    if peak_phase == END_OF_BACKWARD:
        dyn("zero3_gathered_eob", "ZeRO-3 gathered parameters", gathered, gather_detail, END_OF_BACKWARD)

    resident = sum(c.bytes for c in comps if c.phase == RESIDENT)
    # Allocator slack, counted once (constants.SLACK_*): per kind of tensor live at the peak.
    # Under DeepSpeed the module's weights are allocated once like frozen ones, and the fp32 masters and states live
    # in flat partitions (a segment each): neither pins activation segments the way per-parameter states do.
    frozen_keys = _FROZEN_KEYS + (("weights_trainable",) if ds else ())
    frozen_res = sum(c.bytes for c in comps if c.key in frozen_keys)
    train_res = 0.0 if ds else sum(c.bytes for c in comps if c.key in _TRAINABLE_KEYS)
    flat = sum(c.bytes for c in comps if c.key in ("master_weights", "optimizer_states")) if ds else 0.0
    other = max(0.0, resident - C.CUBLAS_WORKSPACE_BYTES + phases[peak_phase] - frozen_res - train_res - flat)
    if s.expandable_segments:
        in_use, cached = C.SLACK_EXPANDABLE * (phases[peak_phase]), 0.0
        slack_detail = f"{C.SLACK_EXPANDABLE:.0%} of the {_gib(phases[peak_phase])} allocated during the {peak_phase} (expandable_segments)"
    else:
        a, b, c_ = C.SLACK_IN_USE
        in_use = a * frozen_res + b * train_res + c_ * other
        ca, cb, cc = C.SLACK_CACHED
        cached = ca * frozen_res + cb * train_res + cc * other
        slack_detail = (f"segments held by live blocks: {a:.1%} of {_gib(frozen_res)} frozen weights + {b:.1%} of "
                        f"{_gib(train_res)} trainable weights and states + {c_:.1%} of {_gib(other)} other tensors at the "
                        f"{peak_phase} (caching-allocator replay)")
    comps.append(Component("allocator", "allocator slack", in_use, K, slack_detail, OVERHEAD))
    if cached:
        comps.append(Component("allocator_cache", "allocator cache (a roomy GPU keeps it)", cached, K,
                               "free segments kept cached when nothing forces their release: counted in max_memory_reserved "
                               "and nvidia-smi, given back before an out-of-memory error", OVERHEAD, at_peak=False))
    comps.append(Component("cuda_context", "CUDA context", C.CUDA_CONTEXT_BYTES, E,
                           "driver context, kernels, cuBLAS/cuDNN handles outside PyTorch (~500-600 MiB on H100, torch 2.x)", OVERHEAD))
    if N > 1:
        nccl = C.NCCL_BASE_BYTES + C.NCCL_PER_PEER_BYTES * min(N - 1, 16)
        comps.append(Component("nccl", "NCCL buffers", nccl, E, f"communicator buffers for {N} ranks", OVERHEAD))
    peak = sum(c.bytes for c in comps if c.at_peak)

    # -- loading: the set-up before the first step (tuner.memory.loading) --------------------------------------
    load = loading_peak(s, plan)
    if load is not None:
        phases[LOADING] = load.bytes
        load_slack = C.SLACK_IN_USE[0] * load.bytes  # weights are allocated once, a segment each
        train_peak = peak
        if load.bytes + load_slack + C.CUDA_CONTEXT_BYTES > peak:
            # The set-up is the peak: the training step's components stay listed, not at the peak.
            for i, c in enumerate(comps):
                if c.key in ("allocator", "allocator_cache"):
                    c = replace(c, key=c.key + "_training", label=c.label + " (training step)")
                comps[i] = replace(c, at_peak=c.key == "cuda_context")
            comps.append(Component("loading_weights", "weights while loading", load.weights, E, load.detail, LOADING))
            if load.transient:
                comps.append(Component("loading_transient", "tensor in flight while loading", load.transient, E,
                                       "one parameter's old and new copies coexist while it is cast or quantized", LOADING))
            comps.append(Component("allocator", "allocator slack", load_slack, K,
                                   f"{C.SLACK_IN_USE[0]:.1%} of the weights (allocated once, a segment each)", OVERHEAD))
            peak_phase = LOADING
            peak = sum(c.bytes for c in comps if c.at_peak)
            note = f"the set-up before the first step is the peak, {_gib(peak)}: "
            if load.upcast:
                where = " until DeepSpeed casts the module to 16-bit when training starts" if s.zero_stage is not None else ""
                note += (f"every GPU holds the trainable parameters in fp32 (LLaMA-Factory's upcast){where}; the training "
                         f"step itself needs {_gib(train_peak)} (pure_bf16 or ZeRO-3 avoid the fp32 copy)")
            else:
                note += "the model as it is loaded and prepared"
            notes.append(note)

    # -- host RAM per node -------------------------------------------------------------------------------------
    host.insert(0, Component("host_process", "training processes", C.HOST_PROCESS_BYTES * s.ranks_per_node, E,
                             f"{s.ranks_per_node} rank(s) x {_gib(C.HOST_PROCESS_BYTES)} (Python, CUDA libraries, data loader)", RESIDENT))
    host_total = sum(c.bytes for c in host)

    if s.stage == "ppo":
        notes.append("PPO's reward and value models and generation are not modeled: the estimate covers the policy's training step")
    if arch.vision_params:
        notes.append("vision-tower activations (image tokens) are not modeled; weights are")
    if s.varying_lengths and s.stage != "ppo":
        need_lo, need_hi = C.VARYING_NEED_EXTRA
        notes.append(f"batches vary in length (no packing): the figures are one step of {s.cutoff_len}-token rows. PyTorch's "
                     f"caching allocator keeps the blocks of earlier, shorter steps; in replays of it on the traced steps "
                     f"(benchmarks/variable_length.py) a run needed from {-need_lo:.0%} less (no batch as long as "
                     f"cutoff_len) to {need_hi:.0%} more than that step, and a GPU with room to spare reserved up to "
                     f"{C.VARYING_RESERVED_EXTRA_MAX:.0%} more (nvidia-smi shows it; it is given back before an "
                     "out-of-memory error)")
    if s.pissa_init:
        notes.append("PiSSA: the SVD at initialisation runs before training and is not the training peak; training is as LoRA")
    if s.stage in ("dpo", "kto") and s.finetuning_type in ("full", "freeze") and not s.use_ref_model:
        notes.append("no separate reference model counted (set use_ref_model for DPO/KTO full or freeze tuning)")
    if s.upcast_layernorm and s.precision == "pure_bf16" and not ds and arch.model_type in NORM_OUTPUT_TAKES_WEIGHT_DTYPE:
        notes.append("upcast_layernorm under pure_bf16 (no autocast): the fp32 norm outputs meet bf16 weights and the "
                     "first forward fails (cfglint PREC007); this estimate is for a run that does not start")
    if bnb_fp32:
        without = estimate(s.with_(upcast_layernorm=False), hardware, ceiling=ceiling).peak_bytes
        notes.append(f"upcast_layernorm on 4-bit layers: bitsandbytes computes q/k/v and the MLP in fp32 on the fp32 norm "
                     f"outputs and the residual stream turns fp32, {_gib(peak - without)} more at the peak than without it")
    notes.insert(0, rg.why)
    return MemoryEstimate(
        setup=s,
        components=comps,
        host_components=host,
        peak_bytes=peak,
        peak_phase=peak_phase,
        phases={RESIDENT: resident, **phases},
        host_ram_bytes=host_total,
        device_bytes=device_bytes,
        ceiling=ceiling,
        notes=notes,
        hardware_name=hw_name,
        params=param_stats(s),
    )
