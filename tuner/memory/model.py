"""Which parameters a run trains, freezes and quantizes, layer by layer, as LLaMA-Factory sets them up.

Counts come from ``tuner.models.params`` (shapes as in the Hugging Face modeling code). What is trainable
follows ``model/adapter.py``: full tuning trains the language model (the vision tower stays frozen while
``freeze_vision_tower``), freeze tuning trains the last ``freeze_trainable_layers`` layers (the first ones
when negative), LoRA/OFT add adapters to the target linears, BAdam trains one block at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from tuner.memory import constants as C
from tuner.memory.setup import TrainSetup
from tuner.models.arch import Architecture
from tuner.models.params import (
    Linear,
    ParamCounts,
    count_params,
    layer_linears,
    lora_counts,
)

_ATTN_MODULES = {"self_attn", "attn", "attention", "self_attention"}
_MLP_MODULES = {"mlp", "block_sparse_moe", "feed_forward", "moe"}


def arch_key(arch: Architecture) -> tuple[object, ...]:
    """A hashable identity of the shape-relevant fields (``quantization_config`` is a dict, so the
    dataclass itself cannot be a cache key)."""
    return (
        arch.model_type, arch.hidden_size, arch.num_hidden_layers, arch.num_attention_heads,
        arch.num_key_value_heads, arch.intermediate_size, arch.vocab_size, arch.tie_word_embeddings,
        arch.head_dim, arch.attention_bias, arch.o_proj_bias, arch.mlp_bias, arch.qk_norm,
        arch.extra_norms_per_layer, arch.num_experts, arch.num_experts_per_tok, arch.moe_intermediate_size,
        arch.shared_expert_intermediate_size, arch.vision_params, tuple(getattr(arch, "dense_layers", ()) or ()),
        tuple(getattr(arch, "vision_linears", ()) or ()),
    )  # fmt: skip


@dataclass(frozen=True)
class ArchFacts:
    """Shape facts of a model that do not depend on the run."""

    counts: ParamCounts
    layer_kinds: tuple[int, ...]  # per layer: index into ``kinds``
    kinds: tuple[tuple[Linear, ...], ...]  # distinct linear layouts (dense, sparse)
    layer_params: tuple[int, ...]  # per layer total
    layer_norm_params: int
    largest_linear: int  # params of the largest single linear weight in a decoder layer (one expert counts once)

    @property
    def total(self) -> int:
        return self.counts.total

    def linears(self, index: int) -> tuple[Linear, ...]:
        return self.kinds[self.layer_kinds[index]]


_FACTS: dict[tuple[object, ...], ArchFacts] = {}


def arch_facts(arch: Architecture) -> ArchFacts:
    key = arch_key(arch)
    facts = _FACTS.get(key)
    if facts is None:
        counts = count_params(arch)
        kinds: list[tuple[Linear, ...]] = []
        layer_kinds: list[int] = []
        for i in range(arch.num_hidden_layers):
            lins = tuple(layer_linears(arch, i))
            if lins not in kinds:
                kinds.append(lins)
            layer_kinds.append(kinds.index(lins))
        largest = max((lin.in_features * lin.out_features for k in kinds for lin in k), default=0)
        facts = ArchFacts(
            counts=counts,
            layer_kinds=tuple(layer_kinds),
            kinds=tuple(kinds),
            layer_params=tuple(layer.total for layer in counts.layers),
            layer_norm_params=counts.layers[0].norms if counts.layers else 0,
            largest_linear=largest,
        )
        if len(_FACTS) > 256:
            _FACTS.clear()
        _FACTS[key] = facts
    return facts


@lru_cache(maxsize=512)
def _lora_targets(key: tuple[object, ...], rank: int, target: tuple[str, ...], dora: bool, fvt: bool) -> tuple[tuple[str, ...], int, int]:
    arch = _ARCH_BY_KEY[key]
    lc = lora_counts(arch, rank, list(target), dora=dora, freeze_vision_tower=fvt)
    return tuple(lc.targets), lc.trainable, lc.embedding_params


_ARCH_BY_KEY: dict[tuple[object, ...], Architecture] = {}


def _matches(lin: Linear, targets: tuple[str, ...], *, loose: bool = False) -> bool:
    """PEFT's rule (the name, or a dotted suffix); ``loose`` is LLaMA-Factory's GaLore/APOLLO substring rule."""
    if loose:
        return any(t in lin.path for t in targets)
    return any(t == lin.name or t == lin.path or lin.path.endswith("." + t) for t in targets)


@dataclass
class LayerPlan:
    """How one decoder layer takes part in training."""

    index: int
    trainable_linears: frozenset[str] = frozenset()  # paths whose weights are trained
    adapters: dict[str, int] = field(default_factory=dict)  # path -> LoRA rank (0 for OFT)
    norms_trainable: bool = False
    trainable_params: int = 0

    @property
    def has_trainable(self) -> bool:
        return bool(self.trainable_linears or self.adapters or self.norms_trainable or self.trainable_params)


@dataclass
class ParamPlan:
    """The trainable/frozen/quantized split of a run, per device before any sharding."""

    total: int
    trainable: int  # parameters with requires_grad (at a time, for BAdam)
    trainable_matmul: int  # of which are matmul weights (get an autocast 16-bit copy in mixed precision)
    adapter: int  # LoRA/DoRA/OFT parameters (included in trainable)
    modules_to_save: int  # full trainable copies of ``additional_target`` modules (included in trainable)
    frozen_16bit: int  # frozen parameters kept in the load dtype
    quantized: int  # frozen linear weights stored quantized
    quant_bytes_per_param: float  # storage of one quantized parameter, constants included
    quant_constant_bytes_per_param: float  # the constants part, for the breakdown
    quant_label: str
    layers: list[LayerPlan]
    embed_trainable: bool
    lm_head_trainable: bool
    final_norm_trainable: bool
    largest_trainable_tensor: int
    galore_matrices: list[tuple[int, int, int]]  # (rows, cols, count) of GaLore/APOLLO-projected weights
    state_params: int  # parameters the optimizer keeps states for (BAdam ratio: a fraction)
    notes: list[str] = field(default_factory=list)

    @property
    def first_trainable_layer(self) -> int | None:
        return next((lp.index for lp in self.layers if lp.has_trainable), None)


def _quantization(setup: TrainSetup) -> tuple[float, float, str] | None:
    """(bytes/param incl. constants, constant bytes/param, label) of quantized linears, or None."""
    qc = setup.arch.quantization_config or {}
    method = str(qc.get("quant_method", "")).lower() if isinstance(qc, dict) else ""
    if method and method not in ("fp8", "mxfp4", "bitsandbytes"):
        bits = qc.get("bits") or qc.get("w_bit") or 4
        try:
            b = float(bits)
        except (TypeError, ValueError):
            b = 4.0
        if method == "aqlm":
            return 0.3, 0.05, "AQLM checkpoint (~2.4 bit)"
        return b / 8 + C.GROUP_CONSTANTS_128, C.GROUP_CONSTANTS_128, f"{method.upper()} {b:g}-bit checkpoint"
    bit = setup.quantization_bit
    if bit is None or setup.finetuning_type not in ("lora", "oft"):
        return None
    m = setup.quantization_method
    if m == "bnb":
        if bit == 8:
            return C.INT8_BYTES, 0.0, "bitsandbytes LLM.int8"
        const = C.NF4_CONSTANTS_DQ if setup.double_quantization else C.NF4_CONSTANTS
        dq = " + double quant" if setup.double_quantization else ""
        return C.NF4_BYTES + const, const, f"bitsandbytes {setup.quantization_type.upper()}{dq}"
    if m in ("hqq", "eetq", "quanto"):
        const = C.GROUP_CONSTANTS_64 if m != "eetq" else 0.0
        return bit / 8 + const, const, f"{m.upper()} {bit}-bit"
    return bit / 8 + C.GROUP_CONSTANTS_128, C.GROUP_CONSTANTS_128, f"{m} {bit}-bit"


def _freeze_layers(setup: TrainSetup) -> list[int]:
    n, layers = setup.freeze_trainable_layers, setup.arch.num_hidden_layers
    if n > 0:
        return list(range(max(0, layers - n), layers))
    return list(range(min(-n, layers)))


_PLANS: dict[tuple[object, ...], ParamPlan] = {}


def _plan_key(s: TrainSetup) -> tuple[object, ...]:
    qc = s.arch.quantization_config
    return (
        arch_key(s.arch), repr(sorted(qc.items())) if isinstance(qc, dict) else None, s.finetuning_type, s.lora_rank,
        tuple(s.lora_target), s.use_dora, tuple(s.additional_target), s.oft_block_size, s.freeze_trainable_layers,
        tuple(s.freeze_trainable_modules), tuple(s.freeze_extra_modules), s.freeze_vision_tower, s.quantization_bit,
        s.quantization_method, s.quantization_type, s.double_quantization, s.use_badam, s.badam_mode,
        s.badam_update_ratio, s.use_galore, s.use_apollo, tuple(s.galore_target),
    )  # fmt: skip


def plan_params(setup: TrainSetup) -> ParamPlan:
    """Split the model's parameters the way LLaMA-Factory's ``init_adapter`` does for this setup (cached:
    batch size and length do not change it, and the fit helpers call the estimator many times)."""
    key = _plan_key(setup)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 512:
            _PLANS.clear()
        plan = _PLANS[key] = _plan_params(setup)
    return plan


def _plan_params(setup: TrainSetup) -> ParamPlan:
    arch = setup.arch
    facts = arch_facts(arch)
    counts = facts.counts
    notes: list[str] = []
    L = arch.num_hidden_layers
    layers = [LayerPlan(i) for i in range(L)]
    q = _quantization(setup)
    quant_bpp, quant_const, quant_label = q if q else (0.0, 0.0, "")
    linear_weights = sum(lin.weight_params for i in range(L) for lin in facts.linears(i))
    vision = counts.vision
    embed, head, fnorm = counts.embeddings, counts.lm_head, counts.final_norm

    trainable = adapter = mts = matmul = head_mts = 0
    embed_t = head_t = fnorm_t = False
    largest_t = 0
    galore: list[tuple[int, int, int]] = []
    ft = setup.finetuning_type

    if ft == "full" and not setup.use_badam:
        trainable = counts.language_model + (0 if setup.freeze_vision_tower else vision)
        embed_t, head_t, fnorm_t = True, head > 0, True
        for lp in layers:
            lp.trainable_linears = frozenset(lin.path for lin in facts.linears(lp.index))
            lp.norms_trainable = True
            lp.trainable_params = facts.layer_params[lp.index]
        matmul = linear_weights + (head if head else embed)
        largest_t = max(embed, facts.largest_linear)
    elif ft == "freeze" and not setup.use_badam:
        modules = [m.strip() for m in setup.freeze_trainable_modules if m.strip()] or ["all"]
        for i in _freeze_layers(setup):
            lp = layers[i]
            lins = facts.linears(i)
            chosen: set[str] = set()
            norms = False
            for m in modules:
                if m == "all":
                    chosen.update(lin.path for lin in lins)
                    norms = True
                elif m in _ATTN_MODULES:
                    chosen.update(lin.path for lin in lins if lin.part == "attention")
                elif m in _MLP_MODULES:
                    chosen.update(lin.path for lin in lins if lin.part != "attention")
                elif "norm" in m:
                    norms = True
                else:
                    chosen.update(lin.path for lin in lins if m in lin.path.split("."))
            lp.trainable_linears = frozenset(chosen)
            lp.norms_trainable = norms
            lin_p = sum(lin.params for lin in lins if lin.path in chosen)
            lp.trainable_params = lin_p + (facts.layer_norm_params if norms else 0)
            trainable += lp.trainable_params
            matmul += sum(lin.weight_params for lin in lins if lin.path in chosen)
            largest_t = max([largest_t] + [lin.in_features * lin.out_features for lin in lins if lin.path in chosen])
        for extra in setup.freeze_extra_modules:
            if extra in ("embed_tokens", "wte", "word_embeddings"):
                embed_t = True
                trainable += embed
                largest_t = max(largest_t, embed)
                if not head:
                    matmul += embed
            elif extra in ("lm_head", "output", "output_layer") and head:
                head_t = True
                trainable += head
                matmul += head
                largest_t = max(largest_t, head)
            elif extra in ("norm", "final_layernorm", "ln_f"):
                fnorm_t = True
                trainable += fnorm
    elif setup.use_badam:
        # BAdam: everything stays 16-bit; one decoder layer (mode "layer") or a fraction of each (mode "ratio")
        # is trainable at a time. The worst case for activations is the first block: every later layer then
        # runs with inputs that need gradients and, being frozen, outside gradient checkpointing.
        if setup.badam_mode == "ratio":
            trainable = counts.decoder
            for lp in layers:
                lp.trainable_linears = frozenset(lin.path for lin in facts.linears(lp.index))
                lp.trainable_params = facts.layer_params[lp.index]
            matmul = linear_weights
            largest_t = facts.largest_linear
            notes.append(f"BAdam ratio mode: optimizer states for {setup.badam_update_ratio:.0%} of the decoder")
        else:
            biggest = max(range(L), key=lambda i: facts.layer_params[i]) if L else 0
            first = layers[0] if L else None
            if first is not None:
                first.trainable_linears = frozenset(lin.path for lin in facts.linears(0))
                first.norms_trainable = True
                first.trainable_params = facts.layer_params[0]
            trainable = facts.layer_params[biggest] if L else 0
            matmul = sum(lin.weight_params for lin in facts.linears(biggest)) if L else 0
            largest_t = facts.largest_linear
            notes.append("BAdam: one layer trains at a time; activations are for the first block, the worst case")
    else:  # lora / oft
        _ARCH_BY_KEY[arch_key(arch)] = arch
        targets, lora_trainable, embed_lora = _lora_targets(
            arch_key(arch), setup.lora_rank, tuple(setup.lora_target), setup.use_dora, setup.freeze_vision_tower
        )
        rank = setup.lora_rank if ft == "lora" else 0
        oft_params = 0
        for lp in layers:
            for lin in facts.linears(lp.index):
                if _matches(lin, targets):
                    lp.adapters[lin.path] = rank
                    if ft == "oft":
                        oft_params += lin.count * lin.in_features * max(1, setup.oft_block_size - 1) // 2
        adapter = lora_trainable if ft == "lora" else oft_params
        if ft == "oft" and embed_lora:
            notes.append("OFT on embeddings is not modeled")
        trainable = adapter
        matmul = adapter
        largest_t = max(
            (r * max(lin.in_features, lin.out_features) for lp in layers for lin in facts.linears(lp.index) if (r := lp.adapters.get(lin.path))),
            default=0,
        )
        for name in setup.additional_target:
            if name in ("embed_tokens", "wte", "word_embeddings"):
                mts += embed
                embed_t = True
            elif name in ("lm_head", "output", "output_layer"):
                mts += head or embed
                head_mts += head or embed
                head_t = True
            elif name in ("norm",):
                mts += fnorm
                fnorm_t = True
        if mts:
            trainable += mts
            matmul += head_mts  # only lm_head's copy is a matmul weight (autocast casts it; an embedding lookup not)
            largest_t = max(largest_t, embed if embed_t or head_t else 0)
            notes.append("additional_target keeps a trainable copy next to the frozen original (PEFT modules_to_save)")

    if setup.use_galore or setup.use_apollo:
        targets_g = tuple(setup.galore_target)
        for i in range(L):
            for lin in facts.linears(i):
                wanted = "all" in targets_g or _matches(lin, targets_g, loose=True)
                if wanted and lin.path in layers[i].trainable_linears:
                    galore.append((lin.out_features, lin.in_features, lin.count))

    # What stays frozen, and in which form.
    frozen_total = counts.total - (trainable - adapter - mts)  # adapters and modules_to_save copies are extra
    quantized = 0
    if q:
        quantized = linear_weights
        frozen_16 = frozen_total - quantized
    else:
        frozen_16 = frozen_total
    state_params = trainable
    if setup.use_badam and setup.badam_mode == "ratio":
        state_params = int(trainable * setup.badam_update_ratio)

    return ParamPlan(
        total=counts.total + adapter + mts,
        trainable=trainable,
        trainable_matmul=matmul,
        adapter=adapter,
        modules_to_save=mts,
        frozen_16bit=max(0, frozen_16),
        quantized=quantized,
        quant_bytes_per_param=quant_bpp,
        quant_constant_bytes_per_param=quant_const,
        quant_label=quant_label,
        layers=layers,
        embed_trainable=embed_t,
        lm_head_trainable=head_t,
        final_norm_trainable=fnorm_t,
        largest_trainable_tensor=largest_t,
        galore_matrices=galore,
        state_params=state_params,
        notes=notes,
    )


@dataclass(frozen=True)
class ParamStats:
    """The parameter counts LLaMA-Factory logs after loading a model for training.

    They follow LLaMA-Factory v0.9.5 ``src/llamafactory/extras/misc.py`` ``count_parameters`` (called from
    ``model/loader.py`` ``load_model``): every tensor of ``model.parameters()`` once (a tied ``lm_head`` is the
    embedding's tensor), LoRA/OFT adapters and PEFT's ``modules_to_save`` copies included, ZeRO-3 partitions at
    their full size (``ds_numel``) and bitsandbytes 4-bit weights at their unpacked size. Users compare these
    numbers with their training log first, so they are exact, not rounded.
    """

    trainable: int
    all: int

    @property
    def percent(self) -> float:
        return 100 * self.trainable / self.all if self.all else 0.0

    def line(self) -> str:
        """The line as LLaMA-Factory logs it."""
        return f"trainable params: {self.trainable:,} || all params: {self.all:,} || trainable%: {self.percent:.4f}"

    def to_dict(self) -> dict[str, float]:
        return {"trainable": self.trainable, "all": self.all, "trainable_percent": round(self.percent, 4)}


def param_stats(setup: TrainSetup) -> ParamStats:
    """LLaMA-Factory's ``trainable params`` / ``all params`` for ``setup`` (see :class:`ParamStats`).

    BAdam freezes blocks inside its optimizer, after the model is loaded: at the time LLaMA-Factory counts,
    the model is set up as plain full (or freeze) tuning, so the counts are those of that setup.
    """
    plan = plan_params(setup.with_(use_badam=False) if setup.use_badam else setup)
    return ParamStats(trainable=plan.trainable, all=plan.total)
