"""Tiny architectures the trace and set-up tests share: an untied Qwen2 with attention biases and grouped KV heads,
and a tied Llama. Small enough that a real CPU step takes about a second."""

from __future__ import annotations

from tuner.models.arch import Architecture

QWEN2 = Architecture(
    model_type="qwen2", hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=256, vocab_size=512, attention_bias=True,
)  # fmt: skip
LLAMA_TIED = Architecture(
    model_type="llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
    intermediate_size=320, vocab_size=600, tie_word_embeddings=True,
)  # fmt: skip
