"""Parameter counts from an :class:`Architecture`: totals, per-layer parts, linear modules, and LoRA/DoRA sizes.

Counts follow ``model.num_parameters()`` in transformers: a tied ``lm_head`` shares the embedding matrix and
is counted once, which is also what LLaMA-Factory prints as "all params". Linear modules are named as in the
Hugging Face modeling code, because LoRA's ``target_modules`` match those names; the LoRA counts reproduce
what PEFT creates for LLaMA-Factory's ``lora_target`` (``all`` or a comma list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tuner.models.arch import Architecture

# Vision-language models LLaMA-Factory treats as composite (``model_utils/visual.py``): their target modules are
# matched as substrings of full module names, minus the frozen parts.
_COMPOSITE: dict[str, dict[str, tuple[str, ...]]] = {
    "qwen2_vl": {
        "projector": ("visual.merger",),
        "vision": ("visual.patch_embed", "visual.blocks"),
        "conflict": ("patch_embed",),
    },
    "qwen2_5_vl": {
        "projector": ("visual.merger",),
        "vision": ("visual.patch_embed", "visual.blocks"),
        "conflict": ("patch_embed",),
    },
    "gemma3": {"projector": ("multi_modal_projector",), "vision": ("vision_tower",), "conflict": ()},
}


@dataclass(frozen=True)
class Linear:
    """One linear module of a decoder layer (or of the vision tower), possibly repeated ``count`` times.

    ``path`` is the module's name below a decoder layer (``self_attn.q_proj``, ``mlp.experts.0.up_proj``), or below
    the model for the vision tower and the head; the last dot-part is what ``lora_target`` names.
    """

    path: str
    in_features: int
    out_features: int
    bias: bool = False
    count: int = 1  # how many modules of this shape (the experts of one layer, the blocks of a vision tower)
    part: str = "attention"  # attention, mlp, experts, shared_expert, router, vision, lm_head, embedding

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def weight_params(self) -> int:
        return self.count * self.in_features * self.out_features

    @property
    def bias_params(self) -> int:
        return self.count * self.out_features if self.bias else 0

    @property
    def params(self) -> int:
        return self.weight_params + self.bias_params


@dataclass(frozen=True)
class LayerCounts:
    """The parameters of one decoder layer, by part."""

    attention: int  # q/k/v/o weights
    attention_bias: int
    mlp: int  # the dense MLP (0 for a sparse layer)
    experts: int  # all routed experts of the layer
    shared_expert: int
    router: int
    norms: int  # the layer's RMSNorms, q/k norms included
    active_experts: int = 0  # the experts one token passes through

    @property
    def total(self) -> int:
        return self.attention + self.attention_bias + self.mlp + self.experts + self.shared_expert + self.router + self.norms

    @property
    def active(self) -> int:
        return self.total - self.experts + self.active_experts


@dataclass(frozen=True)
class ParamCounts:
    """Whole-model parameter counts, ``total`` as ``model.num_parameters()`` reports it."""

    embeddings: int
    lm_head: int  # 0 when tied to the embeddings
    layers: tuple[LayerCounts, ...]
    final_norm: int
    vision: int

    def _sum(self, attr: str) -> int:
        return sum(getattr(layer, attr) for layer in self.layers)

    @property
    def attention(self) -> int:
        return self._sum("attention")

    @property
    def attention_bias(self) -> int:
        return self._sum("attention_bias")

    @property
    def mlp(self) -> int:
        return self._sum("mlp")

    @property
    def experts(self) -> int:
        return self._sum("experts")

    @property
    def shared_expert(self) -> int:
        return self._sum("shared_expert")

    @property
    def router(self) -> int:
        return self._sum("router")

    @property
    def norms(self) -> int:
        return self._sum("norms") + self.final_norm

    @property
    def decoder(self) -> int:
        """Everything in the transformer blocks (what ``freeze`` tuning chooses layers from)."""
        return self._sum("total")

    @property
    def language_model(self) -> int:
        return self.embeddings + self.lm_head + self.decoder + self.final_norm

    @property
    def total(self) -> int:
        return self.language_model + self.vision

    @property
    def active(self) -> int:
        """Parameters one token uses: all of a dense model; for MoE only its top-k experts (embeddings included)."""
        return self.embeddings + self.lm_head + self._sum("active") + self.final_norm + self.vision


def _moe_layer(arch: Architecture, index: int) -> bool:
    return arch.is_moe and index not in set(arch.dense_layers)


def _expert_names(arch: Architecture) -> tuple[str, str, str, str]:
    """(block, gate, up, down) names of a sparse MLP: Mixtral's ``block_sparse_moe.w1/w3/w2``, else Qwen's."""
    if arch.model_type == "mixtral":
        return "block_sparse_moe", "w1", "w3", "w2"
    return "mlp", "gate_proj", "up_proj", "down_proj"


def layer_linears(arch: Architecture, index: int = 0, *, experts_are_linear: bool = True) -> list[Linear]:
    """The linear modules of decoder layer ``index``, as in the Hugging Face model.

    ``experts_are_linear=False`` describes transformers 5, which stores each layer's experts as fused 3-D
    parameters and its router as a plain parameter: they then hold weights but are no ``nn.Linear``.
    """
    h, d = arch.hidden_size, arch.head_size
    q_out, kv_out = arch.num_attention_heads * d, arch.num_key_value_heads * d
    qkv_bias = arch.attention_bias
    out: list[Linear] = [
        Linear("self_attn.q_proj", h, q_out, qkv_bias),
        Linear("self_attn.k_proj", h, kv_out, qkv_bias),
        Linear("self_attn.v_proj", h, kv_out, qkv_bias),
        Linear("self_attn.o_proj", q_out, h, arch.o_proj_bias),
    ]
    if not _moe_layer(arch, index):
        inter, mb = arch.intermediate_size, arch.mlp_bias
        out += [
            Linear("mlp.gate_proj", h, inter, mb, part="mlp"),
            Linear("mlp.up_proj", h, inter, mb, part="mlp"),
            Linear("mlp.down_proj", inter, h, mb, part="mlp"),
        ]
        return out
    if arch.shared_expert_intermediate_size:  # Qwen2-MoE: a plain MLP beside the experts, gated by a Linear(h, 1)
        s = arch.shared_expert_intermediate_size
        out += [
            Linear("mlp.shared_expert.gate_proj", h, s, part="shared_expert"),
            Linear("mlp.shared_expert.up_proj", h, s, part="shared_expert"),
            Linear("mlp.shared_expert.down_proj", s, h, part="shared_expert"),
            Linear("mlp.shared_expert_gate", h, 1, part="router"),
        ]
    if not experts_are_linear:
        return out
    block, gate, up, down = _expert_names(arch)
    e, inter = arch.num_experts, arch.moe_intermediate_size or arch.intermediate_size
    out += [
        Linear(f"{block}.gate", h, e, part="router"),
        Linear(f"{block}.experts.0.{gate}", h, inter, count=e, part="experts"),
        Linear(f"{block}.experts.0.{up}", h, inter, count=e, part="experts"),
        Linear(f"{block}.experts.0.{down}", inter, h, count=e, part="experts"),
    ]
    return out


def vision_linears(arch: Architecture) -> list[Linear]:
    """The vision tower's linear modules (blocks and projector), from ``Architecture.vision_linears``."""
    return [Linear(path, i, o, bias, count, part="vision") for path, i, o, bias, count in arch.vision_linears]


def lm_head_linear(arch: Architecture) -> Linear:
    return Linear("lm_head", arch.hidden_size, arch.vocab_size, part="lm_head")


def linear_modules(arch: Architecture, *, experts_are_linear: bool = True) -> list[Linear]:
    """Every linear module of the model with its count summed over layers: the decoder, vision tower and head."""
    merged: dict[str, Linear] = {}
    for i in range(arch.num_hidden_layers):
        for lin in layer_linears(arch, i, experts_are_linear=experts_are_linear):
            key = f"layers.{lin.path}"
            prev = merged.get(key)
            if prev is None:
                merged[key] = Linear(key, lin.in_features, lin.out_features, lin.bias, lin.count, lin.part)
            else:
                merged[key] = Linear(key, lin.in_features, lin.out_features, lin.bias, prev.count + lin.count, lin.part)
    return [*merged.values(), *vision_linears(arch), lm_head_linear(arch)]


def _layer_counts(arch: Architecture, index: int) -> LayerCounts:
    lins = layer_linears(arch, index)
    by_part: dict[str, int] = {}
    attention = attention_bias = 0
    for lin in lins:
        if lin.part == "attention":
            attention += lin.weight_params
            attention_bias += lin.bias_params
        else:
            by_part[lin.part] = by_part.get(lin.part, 0) + lin.params
    norms = (2 + arch.extra_norms_per_layer) * arch.hidden_size + (2 * arch.head_size if arch.qk_norm else 0)
    experts = by_part.get("experts", 0)
    active = experts // arch.num_experts * arch.num_experts_per_tok if experts else 0
    return LayerCounts(
        attention=attention,
        attention_bias=attention_bias,
        mlp=by_part.get("mlp", 0),
        experts=experts,
        shared_expert=by_part.get("shared_expert", 0),
        router=by_part.get("router", 0),
        norms=norms,
        active_experts=active,
    )


def count_params(arch: Architecture) -> ParamCounts:
    """Parameter counts of a decoder-only model (plus its vision tower, from ``arch.vision_params``)."""
    embeddings = arch.vocab_size * arch.hidden_size
    return ParamCounts(
        embeddings=embeddings,
        lm_head=0 if arch.tie_word_embeddings else embeddings,
        layers=tuple(_layer_counts(arch, i) for i in range(arch.num_hidden_layers)),
        final_norm=arch.hidden_size,
        vision=arch.vision_params,
    )


def total_params(arch: Architecture) -> int:
    return count_params(arch).total


# -- LoRA ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraCounts:
    """What PEFT adds for one LoRA config: the adapted modules and their trainable parameters."""

    rank: int
    targets: tuple[str, ...]  # the names asked for (``all`` expanded as LLaMA-Factory expands it)
    modules: tuple[Linear, ...]  # adapted modules; ``count`` summed over layers
    unmatched: tuple[str, ...]  # names that match no module: PEFT raises "Target modules ... not found"
    dora: bool = False
    embedding_params: int = 0  # LoRA on ``embed_tokens`` (an Embedding: A is rank x vocab, B is hidden x rank)
    # transformers 5 MoE: LoRA on fused expert/router parameters, as (parameter, rank) with ``count`` summed
    parameters: tuple[tuple[Linear, int], ...] = ()
    problems: tuple[str, ...] = ()  # target combinations PEFT refuses (it raises ValueError)
    by_name: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def module_count(self) -> int:
        return sum(m.count for m in self.modules) + (1 if self.embedding_params else 0)

    @property
    def lora_params(self) -> int:
        """The A and B matrices: ``rank * (in + out)`` per adapted module or expert."""
        modules = sum(m.count * self.rank * (m.in_features + m.out_features) for m in self.modules)
        params = sum(p.count * r * (p.in_features + p.out_features) for p, r in self.parameters)
        return modules + params + self.embedding_params

    @property
    def dora_params(self) -> int:
        """DoRA's magnitude vectors: one value per output feature of each adapted module."""
        return sum(m.count * m.out_features for m in self.modules) if self.dora else 0

    @property
    def trainable(self) -> int:
        return self.lora_params + self.dora_params


def parse_lora_target(lora_target: str | Sequence[str] | None) -> list[str]:
    """Split ``lora_target`` the way LLaMA-Factory does: commas, stripped, ``None`` means ``all``."""
    if lora_target is None:
        return ["all"]
    items: Iterable[str] = lora_target.split(",") if isinstance(lora_target, str) else (str(x) for x in lora_target)
    names = [n.strip() for n in items if n.strip()]
    return names or ["all"]


def is_composite(arch: Architecture) -> bool:
    return arch.model_type in _COMPOSITE and bool(arch.vision_params or arch.vision_linears)


def _lm_prefix(arch: Architecture) -> str:
    return "model.language_model.layers.0." if is_composite(arch) else "model.layers.0."


def _vision_prefix(arch: Architecture) -> str:
    return "model."


def find_all_linear_modules(
    arch: Architecture, *, freeze_vision_tower: bool = True, experts_are_linear: bool = True
) -> list[str]:
    """The short names LLaMA-Factory's ``lora_target: all`` expands to (``model_utils/misc.py``).

    Every linear module except ``lm_head``, a VLM's projector, and its vision tower while it is frozen.
    """
    forbidden = {"lm_head"}
    comp = _COMPOSITE.get(arch.model_type) if is_composite(arch) else None
    if comp:
        forbidden.update(comp["projector"])
        if freeze_vision_tower:
            forbidden.update(comp["vision"])
    names: list[str] = []
    candidates = [(_lm_prefix(arch) + lin.path, lin) for lin in layer_linears(arch, 0, experts_are_linear=experts_are_linear)]
    if arch.dense_layers and arch.is_moe:  # a dense layer contributes its MLP names
        dense = arch.dense_layers[0]
        candidates += [(_lm_prefix(arch) + lin.path, lin) for lin in layer_linears(arch, dense, experts_are_linear=experts_are_linear)]
    candidates += [(_vision_prefix(arch) + lin.path, lin) for lin in vision_linears(arch)]
    for full, lin in candidates:
        if any(f in full for f in forbidden):
            continue
        if lin.name not in names:
            names.append(lin.name)
    return names


# PEFT's v4 -> v5 remapping of MoE targets (``peft/utils/transformers_weight_conversion.py``): the v4 names of the
# expert projections and the router now name 3-D parameters; gate and up projections are fused (rank doubled).
# Only the model types PEFT converts are listed (checked against PEFT 0.21 with transformers 5.23; Qwen2-MoE is
# not converted there, so its experts are simply out of LoRA's reach).
_MOE_V5_TARGETS: dict[str, dict[str, str]] = {
    "qwen3_moe": {"gate": "router", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "down_proj": "down_proj"},
    "mixtral": {"gate": "router", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
}


def _moe_parameter_targets(
    arch: Architecture, targets: list[str], rank: int
) -> tuple[list[str], list[tuple[Linear, int]], list[str]]:
    """Split targets into module names and fused expert parameters, the way PEFT converts them for transformers 5.

    Returns (module targets left, [(parameter, rank)] per sparse layer, problems). A converted name stops matching
    ``nn.Linear`` modules too, so the dense layers' MLPs of a partly sparse model lose their LoRA.
    """
    mapping = _MOE_V5_TARGETS.get(arch.model_type)
    if not mapping or not arch.is_moe:
        return targets, [], []
    left: list[str] = []
    wanted: dict[str, set[str]] = {}
    for t in targets:
        old = next((o for o in mapping if t == o or t.endswith("." + o)), None)
        if old is None:
            left.append(t)
        else:
            wanted.setdefault(mapping[old], set()).add(old)
    h, e = arch.hidden_size, arch.num_experts
    inter = arch.moe_intermediate_size or arch.intermediate_size
    sparse = sum(1 for i in range(arch.num_hidden_layers) if _moe_layer(arch, i))
    params: list[tuple[Linear, int]] = []
    problems: list[str] = []
    fused = sorted(o for o, n in mapping.items() if n == "gate_up_proj")
    if "gate_up_proj" in wanted:
        if len(wanted["gate_up_proj"]) < len(fused):
            have = ", ".join(sorted(wanted["gate_up_proj"]))
            miss = ", ".join(sorted(set(fused) - wanted["gate_up_proj"]))
            problems.append(f"PEFT cannot target {have} without {miss}: transformers 5 fuses them into gate_up_proj")
        else:
            params.append((Linear("mlp.experts.gate_up_proj", h, 2 * inter, count=e * sparse, part="experts"), 2 * rank))
    if "down_proj" in wanted:
        params.append((Linear("mlp.experts.down_proj", inter, h, count=e * sparse, part="experts"), rank))
    if "router" in wanted:
        params.append((Linear("mlp.gate.weight", h, e, count=sparse, part="router"), rank))
    return left, params, problems


def lora_counts(
    arch: Architecture,
    rank: int,
    lora_target: str | Sequence[str] | None = "all",
    *,
    dora: bool = False,
    freeze_vision_tower: bool = True,
    freeze_multi_modal_projector: bool = True,
    experts_are_linear: bool = True,
) -> LoraCounts:
    """The trainable parameters of LoRA (or DoRA) with LLaMA-Factory's ``lora_target`` semantics.

    Plain models match PEFT's way (a module whose name is the target or ends with ``.target``); vision-language
    models match LLaMA-Factory's ``patch_target_modules`` way (the target is a substring of the module's full
    name, minus the frozen tower, the frozen projector and the conflicting patch embedding).

    ``experts_are_linear=False`` is transformers 5: ``all`` no longer reaches MoE experts or the router (they are
    not ``nn.Linear``), and expert names given explicitly are remapped by PEFT to the fused parameters.
    """
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    targets = parse_lora_target(lora_target)
    if targets == ["all"]:
        targets = find_all_linear_modules(
            arch, freeze_vision_tower=freeze_vision_tower, experts_are_linear=experts_are_linear
        )
    module_targets, param_targets, problems = (
        (targets, [], []) if experts_are_linear else _moe_parameter_targets(arch, targets, rank)
    )
    comp = _COMPOSITE.get(arch.model_type) if is_composite(arch) else None
    forbidden: set[str] = set()
    if comp:
        forbidden.update(comp["conflict"])
        if freeze_vision_tower:
            forbidden.update(comp["vision"])
        if freeze_multi_modal_projector:
            forbidden.update(comp["projector"])

    def matches(full: str, target: str) -> bool:
        if comp:
            return target in full and not any(f in full for f in forbidden)
        return full == target or full.endswith("." + target)

    chosen: dict[str, Linear] = {}
    hit: set[str] = set()
    by_name: dict[str, int] = {}

    def consider(full: str, lin: Linear) -> None:
        for t in module_targets:
            if matches(full, t):
                hit.add(t)
                prev = chosen.get(full)
                chosen[full] = lin if prev is None else Linear(
                    lin.path, lin.in_features, lin.out_features, lin.bias, prev.count + lin.count, lin.part
                )
                by_name[lin.name] = by_name.get(lin.name, 0) + lin.count * rank * (lin.in_features + lin.out_features)
                return

    prefix = _lm_prefix(arch)
    for i in range(arch.num_hidden_layers):
        for lin in layer_linears(arch, i, experts_are_linear=experts_are_linear):
            consider(prefix + lin.path, lin)
    for lin in vision_linears(arch):
        consider(_vision_prefix(arch) + lin.path, lin)
    consider("lm_head", lm_head_linear(arch))
    embedding_params = 0
    embed_name = "model.language_model.embed_tokens" if comp else "model.embed_tokens"
    if any(matches(embed_name, t) for t in module_targets):
        hit.update(t for t in module_targets if matches(embed_name, t))
        embedding_params = rank * (arch.vocab_size + arch.hidden_size)
        by_name["embed_tokens"] = embedding_params
    for p, r in param_targets:
        by_name[p.name if p.name != "weight" else "gate"] = p.count * r * (p.in_features + p.out_features)
    return LoraCounts(
        rank=rank,
        targets=tuple(targets),
        modules=tuple(chosen.values()),
        unmatched=tuple(t for t in module_targets if t not in hit),
        dora=dora,
        embedding_params=embedding_params,
        parameters=tuple(param_targets),
        problems=tuple(problems),
        by_name=by_name,
    )


def lora_trainable_params(
    arch: Architecture, rank: int, lora_target: str | Sequence[str] | None = "all", *, dora: bool = False, **kwargs: bool
) -> int:
    """Shortcut for ``lora_counts(...).trainable``: the figure LLaMA-Factory prints as "trainable params"."""
    return lora_counts(arch, rank, lora_target, dora=dora, **kwargs).trainable
