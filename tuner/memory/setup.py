"""What the memory estimator needs to know about one training run: :class:`TrainSetup`.

A setup is the memory-relevant part of a LLaMA-Factory config (plus its DeepSpeed JSON and the launch
size), with LLaMA-Factory's defaults, so that ``TrainSetup(arch)`` alone describes the run
``llamafactory-cli train`` would start with a minimal config. Values are normalised and checked here, once,
so the estimator itself never has to guess what a string means.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tuner.models.arch import Architecture

FINETUNING_TYPES = ("lora", "freeze", "full", "oft")
PRECISIONS = ("bf16", "fp16", "fp32", "pure_bf16")
ATTENTIONS = ("sdpa", "fa2", "fa3", "eager")
STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")

#: DeepSpeed's own defaults (``deepspeed/runtime/zero/config.py``), in elements.
DS_DEFAULT_REDUCE_BUCKET = 500_000_000
DS_DEFAULT_ALLGATHER_BUCKET = 500_000_000
DS_DEFAULT_PREFETCH_BUCKET = 50_000_000
DS_DEFAULT_MAX_LIVE_PARAMETERS = 1_000_000_000
DS_DEFAULT_PERSISTENCE_THRESHOLD = 100_000
DS_DEFAULT_SUB_GROUP_SIZE = 1_000_000_000


@dataclass(frozen=True)
class ZeroConfig:
    """The DeepSpeed ``zero_optimization`` knobs that cost GPU memory. ``None`` means "auto" or unset.

    HF's ``"auto"`` fills ``reduce_bucket_size = h²``, ``stage3_prefetch_bucket_size = 0.9·h²`` and
    ``stage3_param_persistence_threshold = 10·h`` (transformers ``integrations/deepspeed.py``); an absent key
    takes DeepSpeed's default. :meth:`resolved` applies both rules for a given hidden size.
    """

    reduce_bucket_size: float | str | None = None
    allgather_bucket_size: float | str | None = None
    stage3_prefetch_bucket_size: float | str | None = None
    stage3_max_live_parameters: float | str | None = None
    stage3_param_persistence_threshold: float | str | None = None
    sub_group_size: float | str | None = None
    overlap_comm: bool | None = None
    contiguous_gradients: bool = True

    @classmethod
    def from_dict(cls, zero: dict[str, Any]) -> ZeroConfig:
        def num(key: str) -> float | str | None:
            v = zero.get(key)
            if v is None:
                return None
            if isinstance(v, str):
                if v.strip().lower() == "auto":
                    return "auto"
                try:
                    return float(v)
                except ValueError:
                    return None
            if isinstance(v, bool):
                return None
            return float(v) if isinstance(v, (int, float)) else None

        overlap = zero.get("overlap_comm")
        contiguous = zero.get("contiguous_gradients", True)
        return cls(
            reduce_bucket_size=num("reduce_bucket_size"),
            allgather_bucket_size=num("allgather_bucket_size"),
            stage3_prefetch_bucket_size=num("stage3_prefetch_bucket_size"),
            stage3_max_live_parameters=num("stage3_max_live_parameters"),
            stage3_param_persistence_threshold=num("stage3_param_persistence_threshold"),
            sub_group_size=num("sub_group_size"),
            overlap_comm=overlap if isinstance(overlap, bool) else None,
            contiguous_gradients=contiguous if isinstance(contiguous, bool) else True,
        )

    def resolved(self, hidden_size: int, stage: int) -> dict[str, float]:
        """Element counts (and flags as 0/1) after HF's "auto" rules and DeepSpeed's defaults."""
        h2 = float(hidden_size) ** 2

        def pick(v: float | str | None, auto: float, default: float) -> float:
            if v == "auto":
                return auto
            if v is None:
                return default
            return float(v)

        # DeepSpeed turns overlap_comm on by default for stage 3 and off for 1/2.
        overlap = self.overlap_comm if self.overlap_comm is not None else (stage == 3)
        return {
            "reduce_bucket_size": pick(self.reduce_bucket_size, h2, DS_DEFAULT_REDUCE_BUCKET),
            "allgather_bucket_size": pick(self.allgather_bucket_size, DS_DEFAULT_ALLGATHER_BUCKET, DS_DEFAULT_ALLGATHER_BUCKET),
            "stage3_prefetch_bucket_size": pick(self.stage3_prefetch_bucket_size, 0.9 * h2, DS_DEFAULT_PREFETCH_BUCKET),
            "stage3_max_live_parameters": pick(self.stage3_max_live_parameters, DS_DEFAULT_MAX_LIVE_PARAMETERS, DS_DEFAULT_MAX_LIVE_PARAMETERS),
            "stage3_param_persistence_threshold": pick(
                self.stage3_param_persistence_threshold, 10.0 * hidden_size, DS_DEFAULT_PERSISTENCE_THRESHOLD
            ),
            "sub_group_size": pick(self.sub_group_size, DS_DEFAULT_SUB_GROUP_SIZE, DS_DEFAULT_SUB_GROUP_SIZE),
            "overlap_comm": 1.0 if overlap else 0.0,
            "contiguous_gradients": 1.0 if self.contiguous_gradients else 0.0,
        }


@dataclass(frozen=True)
class TrainSetup:
    """The memory-relevant facts of one training run, with LLaMA-Factory's defaults.

    ``batch_size`` is ``per_device_train_batch_size`` and ``cutoff_len`` the padded sequence length: the
    estimate is for the worst micro-batch, every sequence ``cutoff_len`` tokens long. ``zero_stage`` is None
    without DeepSpeed (plain DDP or one GPU) and 0..3 with it. ``world_size`` is the number of data-parallel
    ranks (GPUs over all nodes) and ``gpus_per_node`` how many of them share one host's RAM.
    """

    arch: Architecture
    finetuning_type: str = "lora"
    stage: str = "sft"
    # LoRA / DoRA / PiSSA / OFT
    lora_rank: int = 8
    lora_target: tuple[str, ...] = ("all",)
    lora_dropout: float = 0.0
    use_dora: bool = False
    pissa_init: bool = False
    additional_target: tuple[str, ...] = ()
    oft_block_size: int = 32
    # freeze tuning
    freeze_trainable_layers: int = 2
    freeze_trainable_modules: tuple[str, ...] = ("all",)
    freeze_extra_modules: tuple[str, ...] = ()
    freeze_vision_tower: bool = True
    # quantization (bitsandbytes unless ``quantization_method`` says otherwise)
    quantization_bit: int | None = None
    quantization_method: str = "bnb"
    quantization_type: str = "nf4"
    double_quantization: bool = True
    # batch
    batch_size: int = 1
    cutoff_len: int = 2048
    gradient_accumulation_steps: int = 1
    # each micro-batch padded to its longest sequence (no packing): step lengths vary. Changes no figure (the estimate
    # is one step of cutoff_len tokens); it adds the note on what varying lengths do to the caching allocator.
    varying_lengths: bool = False
    # compute
    gradient_checkpointing: bool = True
    unsloth_gc: bool = False
    attention: str = "sdpa"
    liger: bool = False
    optim: str = "adamw_torch"
    precision: str = "bf16"
    upcast_lmhead_output: bool = False
    upcast_layernorm: bool = False  # norm weights in fp32: their outputs, and what reads them, become fp32
    # False: the model's own (remote) code computes the loss on the 16-bit logits where transformers' ForCausalLMLoss
    # upcasts them to fp32 (Qwen-7B's modeling_qwen.py); matters only without autocast
    loss_upcast: bool = True
    # How the causal-LM loss shifts logits against labels, by transformers release (src/transformers/loss/loss_utils.py,
    # ForCausalLMLoss): "labels" (4.49+: the labels are padded and shifted, the logits are not copied,
    # huggingface/transformers#35646), "logits" (4.46-4.48: the fp32 upcast is shifted into a contiguous fp32 copy),
    # "model" (4.45 and older: the model's forward upcasts and shifts itself and returns fp32 logits)
    loss_shift: str = "labels"
    expandable_segments: bool = False
    # distributed
    zero_stage: int | None = None
    offload_optimizer: str | None = None  # "cpu" / "nvme"
    offload_param: str | None = None
    zero: ZeroConfig = field(default_factory=ZeroConfig)
    world_size: int = 1
    gpus_per_node: int | None = None
    # block-wise and low-rank optimizers
    use_galore: bool = False
    galore_rank: int = 16
    galore_target: tuple[str, ...] = ("all",)
    galore_layerwise: bool = False
    use_apollo: bool = False
    apollo_rank: int = 16
    apollo_layerwise: bool = False
    use_badam: bool = False
    badam_mode: str = "layer"
    badam_update_ratio: float = 0.05
    use_adam_mini: bool = False
    # RLHF stages: whether a separate frozen reference model is loaded (DPO/KTO with full or freeze tuning)
    use_ref_model: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(self.arch).__name__}")
        checks: list[tuple[bool, str]] = [
            (self.finetuning_type in FINETUNING_TYPES, f"finetuning_type must be one of {', '.join(FINETUNING_TYPES)}, got {self.finetuning_type!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.attention in ATTENTIONS, f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}"),
            (self.stage in STAGES, f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}"),
            (_pos_int(self.batch_size), f"batch_size must be a positive integer, got {self.batch_size!r}"),
            (_pos_int(self.cutoff_len), f"cutoff_len must be a positive integer, got {self.cutoff_len!r}"),
            (_pos_int(self.gradient_accumulation_steps), f"gradient_accumulation_steps must be a positive integer, got {self.gradient_accumulation_steps!r}"),
            (_pos_int(self.world_size), f"world_size must be a positive integer, got {self.world_size!r}"),
            (_pos_int(self.lora_rank), f"lora_rank must be a positive integer, got {self.lora_rank!r}"),
            (self.zero_stage is None or self.zero_stage in (0, 1, 2, 3), f"zero_stage must be 0-3 or None, got {self.zero_stage!r}"),
            (self.loss_shift in ("labels", "logits", "model"), f"loss_shift must be labels, logits or model, got {self.loss_shift!r}"),
            (self.quantization_bit in (None, 2, 3, 4, 5, 6, 8), f"quantization_bit must be 2-8 or None, got {self.quantization_bit!r}"),
            (self.gpus_per_node is None or _pos_int(self.gpus_per_node), f"gpus_per_node must be a positive integer, got {self.gpus_per_node!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    # -- conveniences ----------------------------------------------------------------------------------------
    @property
    def architecture(self) -> Architecture:
        return self.arch

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on one device."""
        return self.batch_size * self.cutoff_len * self.sequences_per_sample

    @property
    def sequences_per_sample(self) -> int:
        """Pairwise stages (DPO, KTO, reward models) run chosen and rejected sequences in one forward."""
        return 2 if self.stage in ("dpo", "kto", "rm") else 1

    @property
    def deepspeed(self) -> bool:
        return self.zero_stage is not None

    @property
    def ranks_per_node(self) -> int:
        return min(self.gpus_per_node or self.world_size, self.world_size)

    def with_(self, **changes: Any) -> TrainSetup:
        """A copy with some fields changed (``dataclasses.replace`` with validation)."""
        return replace(self, **changes)


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def parse_optim(value: Any) -> str:
    """An ``optim`` value as the run will use it. The schema's default text names two optimizers; the one
    transformers picks on older torch (``adamw_torch``, foreach) is also the one with the larger step peak."""
    if not isinstance(value, str) or not value.strip():
        return "adamw_torch"
    v = value.strip().lower()
    if " " in v:  # "adamw_torch (adamw_torch_fused when torch>=2.8)": the documented default
        return "adamw_torch"
    return v
