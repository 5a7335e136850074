"""What the search tests share: a tiny architecture, the search space over it, and the memory model the fake
trials report (200 MiB + 100 MiB per sequence with checkpointing, 300 MiB without; the rank adds a little)."""

from __future__ import annotations

from tuner.models.arch import Architecture
from tuner.search.space import SearchSpace, micro_batch_choices
from tuner.trial.spec import TrialSpec

MIB = 1024**2
CEILING = 1000 * MIB
TINY = Architecture(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, intermediate_size=128, vocab_size=512)  # fmt: skip


def make_space(global_batch: int = 16, ranks: tuple[int, ...] = (8, 16, 32)) -> SearchSpace:
    t = TrialSpec(arch=TINY, cutoff_len=64, device="cpu", memory_limit_bytes=CEILING)
    return SearchSpace(template=t, global_batch=global_batch, micro_batches=micro_batch_choices(global_batch, 1), ranks=ranks)


def peak_of(spec: TrialSpec) -> int:
    """The fake trials' peak: 200 MiB + 100 per sequence with checkpointing, 300 without; rank adds a little."""
    per_seq = 100 if spec.gradient_checkpointing else 300
    return (200 + per_seq * spec.per_device_train_batch_size + spec.lora_rank) * MIB
