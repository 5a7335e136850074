"""A model's architecture: the ``config.json`` facts that decide parameter counts, memory and speed.

Weights never matter for memory or throughput, so an :class:`Architecture` is all the estimator and the
trial runner need; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


#: model_type values whose RMSNorm returns ``self.weight * hidden_states.to(input_dtype)`` (transformers 5.24,
#: ``models/<type>/modeling_<type>.py``): with an fp32 weight (LLaMA-Factory's ``upcast_layernorm``) the output is
#: fp32. Gemma's norms (``output.type_as(x)``) and OLMo-2's (``(...).to(input_dtype)``) give the input's dtype back.
NORM_OUTPUT_TAKES_WEIGHT_DTYPE = frozenset({
    "llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral", "mixtral", "phi3", "deepseek_v2", "deepseek_v3",
    "glm4", "granite",
})  # fmt: skip


@dataclass(frozen=True)
class Architecture:
    """Decoder-only transformer numbers, named as in Hugging Face ``config.json``."""

    model_type: str  # llama, qwen2, qwen3, qwen3_moe, mistral, gemma2, gemma3_text, qwen2_vl, ...
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    attention_bias: bool = False  # bias on q/k/v projections (Qwen2)
    o_proj_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # per-head RMSNorm on q and k (Qwen3, Gemma3)
    extra_norms_per_layer: int = 0  # Gemma2/3 pre/post feed-forward norms beyond the usual two
    torch_dtype: str = "bfloat16"  # the checkpoint's dtype
    # Mixture of experts (0 = dense)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    # Vision-language models: parameters of the vision tower and projector, counted separately
    vision_params: int = 0
    quantization_config: dict[str, Any] | None = None
    architectures: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # MoE models: layers that keep a dense MLP of ``intermediate_size`` (Qwen's ``mlp_only_layers``,
    # or the gaps left by ``decoder_sparse_step``); empty means every layer is sparse.
    dense_layers: tuple[int, ...] = ()
    # The vision tower's linear layers, as (module path, in_features, out_features, bias, count), so that LoRA
    # with ``freeze_vision_tower: false`` can be counted; the path is as in the HF model, e.g. "visual.blocks.0.attn.qkv".
    vision_linears: tuple[tuple[str, int, int, bool, int], ...] = ()

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0
