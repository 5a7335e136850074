#!/usr/bin/env python
"""The memory estimator against published peak-memory measurements (no GPU needed).

    python benchmarks/estimator_published.py [--json FILE]

Each record is a measurement someone published with its configuration, converted to the equivalent
LLaMA-Factory setup (:class:`tuner.memory.TrainSetup`), and compared metric for metric: ``allocated``
(``torch.cuda.max_memory_allocated``), ``reserved`` (``max_memory_reserved``) or ``nvidia-smi`` (the process's
device memory on a GPU with room to spare: reserved + CUDA context), using
:meth:`tuner.memory.MemoryEstimate.metric`. Where the published run differs from LLaMA-Factory in a way the
estimator cannot express, the record names it and, when it is a fixed number of bytes, adds it
(``adjust_bytes``); what is left unmodelled is listed under ``caveat``.

Sources (files at the commits named, read from the public repositories). Two of them name their metric in their
code (ms-swift, fms-acceleration); the others are read as stated below:

* ``QwenLM/Qwen`` ``README.md`` "Profiling of Memory and Speed" (commit 2df8e8a): Qwen-7B on one A100-SXM4-80G,
  CUDA 11.8, PyTorch 2.0, FlashAttention-2, batch 1, inputs of 256-8192 tokens, the repository's ``finetune.py``
  (LoRA r=64, alpha 16, dropout 0.05 on ``c_attn, c_proj, w1, w2`` = every linear layer, gradient checkpointing,
  bf16, ``adamw_torch``). "LoRA (emb)" also trains ``wte`` and ``lm_head`` (PEFT ``modules_to_save``). Q-LoRA is
  ``finetune/finetune_qlora_single_gpu.sh``: the GPTQ Int4 checkpoint, ``--fp16`` and DeepSpeed ZeRO-2
  (``finetune/ds_config_zero2.json``: reduce and allgather buckets of 2e8, ``overlap_comm``), which ``finetune.py``
  forces on a single GPU ("This serves for single-gpu qlora"). PEFT's ``prepare_model_for_kbit_training`` leaves
  a GPTQ model's 16-bit parameters as they are (``is_gptq_quantized``: no fp32 upcast). The metric is given as
  "memory (GB)", unnamed: compared as nvidia-smi, in GiB.
* The LlamaFactory paper (Zheng et al., "LlamaFactory: Unified Efficient Fine-Tuning of 100+ Language Models",
  arXiv:2403.13372v4, ACL 2024 demo), Table 4 and section 5.1: LLaMA-Factory's own measurements. Gemma-2B,
  Llama2-7B and Llama2-13B trained with the pre-training objective on PubMed abstracts, "a token batch size of
  512" (converted as one sequence of 512 tokens), "the 8-bit AdamW optimizer in bfloat16 precision with activation
  checkpointing", freeze-tuning of the last 3 decoder layers, GaLore rank 128, LoRA/QLoRA rank 128 on all linear
  layers, one A100 40GB, flash attention everywhere and Unsloth for LoRA and QLoRA; "memory refers to the peak
  memory consumed during training" (GB, tool unnamed: compared as nvidia-smi in GiB, the rule the Qwen table
  follows, with every other reading alongside). "bfloat16 precision" is converted as ``pure_bf16``: the
  paper's section 4.1 keeps trainable parameters bf16 "in half precision training", and full-tuning Llama2-7B at
  38.72 GB on a 40 GB card leaves no room for fp32 weights. GaLore is converted as layerwise: its Llama2-7B figure
  (15.43 GB for 6.74B trained parameters) is below bf16 weights plus bf16 gradients (27 GB), which only the
  layerwise mode (each gradient freed in its hook) stays under. LLaMA-Factory v0.6 did not upcast trainable
  parameters under pure_bf16, and PEFT 0.7-0.11 gave LoRA adapters the base layer's dtype: the LoRA rows' adapters
  and their gradients are bf16 (the estimator's pure_bf16 regime follows PEFT >= 0.12, fp32); a 4-bit base leaves
  them fp32 in every PEFT release. Unsloth's LoRA kernels are not modelled (at 512 tokens the activations they
  change are a small part of the peak).
* ``unslothai/unsloth`` ``README.md`` "Context length benchmarks" (commit 6a4af87, January 2025): the longest
  context the Hugging Face + FA2 baseline fits for Llama 3.1 (8B) Instruct, 4-bit QLoRA r=32 on all linear layers,
  batch 1, sequences padded to the length, in each memory size; and Llama 3.3 (70B) on an 80 GB A100. A record is
  "this context uses the whole memory size" (GB = 10^9 B), compared as nvidia-smi. The README does not name the
  baseline's script; it is taken to be TRL's ``SFTTrainer`` with a LoRA ``peft_config`` and bf16, as in Unsloth's
  own notebooks (an assumption). TRL v0.13.0 (the release of that month, ``trl/trainer/sft_trainer.py``
  ``SFTTrainer.__init__``) runs PEFT's ``prepare_model_for_kbit_training`` on a 4-bit model (every non-4-bit weight
  to fp32), then ``peft_module_casting_to_bf16`` (``trl/trainer/utils.py``): norms stay fp32, embeddings and
  lm_head go back to bf16. That is LLaMA-Factory's ``upcast_layernorm`` on QLoRA, and it is converted so.
  The table's 8B figures lie exactly on one line (404.73 tokens per GB, 9.70 GB at no context; largest deviation
  0.44 tokens), so they were computed from a fit, not measured one by one; the column headers are GPU memory sizes
  (an "80 GB" A100 holds 80 GiB), and Unsloth's own code prints ``torch.cuda.max_memory_reserved() / 1024**3`` as
  "GB": compared as ``reserved`` in GiB. The script is not published: these rows do not meet "a known
  configuration" and are reported apart from the others.

* ``modelscope/ms-swift`` ``docs/source/LLM/Benchmark.md`` at cfcb672 (2023-12-14, the first round, in MiB):
  ``swift sft`` on one A100 80G (torch 2.1.1, flash-attn 2.3.4), Qwen-1.8B-Chat and Qwen-7B-Chat, LoRA (r8, alpha
  32, dropout 0.05 on Qwen's fused ``c_attn``, converted as q, k and v; swift's tuner wraps PEFT 0.7, whose adapters
  take the base layer's bf16) and full fine-tuning (bf16 weights, gradients and torch AdamW states, no fp32 master
  copy, under autocast: converted as pure_bf16 with the loss in fp32), flash attention, checkpointing (swift
  patches ``torch.utils.checkpoint`` to ``use_reentrant=False``), batch 1 unless stated, 1000 samples of cls-fudan-news-zh cut from the left
  to ``max_length`` (``truncation_left``). The metric is in the code: ``torch.cuda.max_memory_reserved() / 1024**2``
  after training (``scripts/benchmark/test_memory_time``). The dataset's samples average 3234 tokens, so up to 2048
  most steps are exactly ``max_length`` long; at 4096 and 8192 the lengths vary from step to step and the reserved
  high-water mark holds cached segments of earlier shapes (``benchmarks/variable_length.py``): those rows are
  reported apart. The later round (97e4d19, the GiB tables of the current docs) dropped ``truncation_left``: every
  length varies there, and it is not used.
* ``foundation-model-stack/fms-acceleration`` ``scripts/benchmarks/refs/a100_80gb.csv`` at 24bdadb (versions in
  ``refs/requirements.txt``: torch 2.4.1, transformers 4.48.1, peft 0.13.2, trl 0.13.0, bitsandbytes 0.43.3):
  Mistral-7B-v0.1 (vocabulary resized to 32001) on one A100-80GB, rows packed to exactly 4096 tokens, batch 4 and 8,
  flash attention 2, reentrant checkpointing, torch AdamW. Full fine-tuning and LoRA (r16 on q, k, v, o, dropout
  0.1) run bf16 weights without autocast (no bf16 flag; PEFT keeps the adapters fp32): pure_bf16. QLoRA (NF4, double
  quantization, bf16 autocast) in two set-ups: the ``accelerated-peft-bnb`` plugin upcasts nothing, the
  ``baseline-peft-bnb`` path (PEFT's ``prepare_model_for_kbit_training``, then TRL's ``peft_module_casting_to_bf16``)
  keeps the norms fp32: ``upcast_layernorm``. The metrics are in the code: the Trainer's memory metrics, which come
  to ``torch.cuda.max_memory_allocated()`` over ``train()``, in bytes, and nvidia-smi's ``memory.used`` polled once a
  second (MiB, its first reading subtracted), both compared. Rows with kernel plugins (foak, liger, padding-free,
  multipack, scattermoe, auto-gptq) are not used.

Where a source does not name its metric or unit, the record's primary reading is stated and the error is also
given over every reading the source allows (allocated, reserved or nvidia-smi; GB as 10^9 B or as GiB): the
figure's spread, which is wider than the 5% the estimator aims at. A run on a card of known size (``hardware``)
cannot show more than the card: the estimate's cache is capped there (:meth:`MemoryEstimate.metric`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GIB = 1024**3
GB = 10**9

QWEN_README = "QwenLM/Qwen README.md (2df8e8a) 'Profiling of Memory and Speed'"
UNSLOTH_README = "unslothai/unsloth README.md (6a4af87) 'Llama 3.1 (8B) max. context length', Hugging Face + FA2 column"
SWIFT_BENCHMARK = "modelscope/ms-swift docs/source/LLM/Benchmark.md (cfcb672, 2023-12-14)"
FMS_BENCHMARK = "foundation-model-stack/fms-acceleration scripts/benchmarks/refs/a100_80gb.csv (24bdadb)"
UNSLOTH_70B = "unslothai/unsloth README.md (6a4af87) 'Llama 3.3 (70B) max. context length', Hugging Face + FA2 column"


@dataclass(frozen=True)
class Record:
    name: str
    source: str
    metric: str  # allocated | reserved | nvidia-smi
    model: str  # catalog alias, or "qwen-7b" (built below)
    setup: dict[str, Any]
    measured_bytes: float
    adjust_bytes: float = 0.0
    adjust_note: str = ""
    caveat: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    hardware: str | None = None  # the card it was measured on (caps reserved/nvidia-smi at its size)
    published_setup: bool = True  # the run's script or settings are published (the "known configuration")
    #: trainable parameters the publisher's stack kept in bf16 where the LLaMA-Factory estimate has them fp32:
    #: "adapters" (LLaMA-Factory v0.6 + PEFT 0.7-0.11 under pure_bf16) or "modules_to_save" (Qwen's finetune.py)
    bf16_trainable: str = ""
    figure: tuple[float, str] | None = None  # the published number and its unit ("GB"), for the readings
    #: the metric is read from the code that printed the figure (no reading to choose); the issue's "known metric"
    metric_known: bool = False
    #: sequence lengths varied from step to step: a reserved or nvidia-smi figure then holds cached segments of
    #: earlier shapes, which one step at cutoff_len does not (benchmarks/variable_length.py); reported apart
    varying_lengths: bool = False


#: Readings of a figure published as "GB" with no named tool: every metric the estimator predicts, GB as 10^9 B or
#: as GiB. The record's primary reading is one of them.
READINGS = tuple((m, u) for m in ("allocated", "reserved", "nvidia-smi") for u in ("GiB", "GB"))


def _qwen1_7b() -> Any:
    """Qwen-7B (the first Qwen): the Qwen2 layout with q/k/v biases, MHA, untied head. config.json: hidden 4096,
    32 layers, 32 heads, intermediate_size 22016 (w1 and w2 are 11008 each), vocab 151936."""
    from tuner.models.arch import Architecture

    return Architecture(
        model_type="qwen2", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=11008, vocab_size=151936, attention_bias=True, max_position_embeddings=8192,
    )  # fmt: skip


def _qwen1_1_8b() -> Any:
    """Qwen-1_8B (the first Qwen): the Qwen-7B layout at hidden 2048, 24 layers, 16 heads; config.json
    intermediate_size 11008 (w1 and w2 are 5504 each), vocab 151936."""
    from tuner.models.arch import Architecture

    return Architecture(
        model_type="qwen2", hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
        intermediate_size=5504, vocab_size=151936, attention_bias=True, max_position_embeddings=8192,
    )  # fmt: skip


def _mistral_7b_32001() -> Any:
    """mistralai/Mistral-7B-v0.1 config.json (hidden 4096, 32 layers, 32 heads, 8 KV heads, SiLU MLP 14336,
    untied) with the vocabulary fms-hf-tuning resizes to 32001 when it adds a pad token."""
    from tuner.models.arch import Architecture

    return Architecture(model_type="mistral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, intermediate_size=14336, vocab_size=32001, max_position_embeddings=32768)  # fmt: skip


def _llama2_70b_32001() -> Any:
    """meta-llama/Llama-2-70b-hf config.json (hidden 8192, 80 layers, 64 heads, 8 KV heads, SiLU MLP 28672, untied)
    with the vocabulary fms-hf-tuning resizes to 32001 when it adds a pad token."""
    from tuner.models.arch import Architecture

    return Architecture(model_type="llama", hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                        num_key_value_heads=8, intermediate_size=28672, vocab_size=32001, max_position_embeddings=4096)  # fmt: skip


def _mixtral_8x7b_32001() -> Any:
    """mistralai/Mixtral-8x7B-Instruct-v0.1 config.json (the Mistral-7B layout with 8 experts of 14336, 2 per token)
    with the vocabulary fms-hf-tuning resizes to 32001 when it adds a pad token."""
    from tuner.models.arch import Architecture

    return Architecture(model_type="mixtral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, intermediate_size=14336, vocab_size=32001, max_position_embeddings=32768,
                        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=14336)  # fmt: skip


def _llama2(size: str) -> Any:
    """Llama-2-7b-hf / Llama-2-13b-hf config.json: MHA, SiLU MLP, vocab 32000, untied head."""
    from tuner.models.arch import Architecture

    h, n, heads, inter = {"7b": (4096, 32, 32, 11008), "13b": (5120, 40, 40, 13824)}[size]
    return Architecture(model_type="llama", hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                        num_key_value_heads=heads, intermediate_size=inter, vocab_size=32000, max_position_embeddings=4096)  # fmt: skip


def _gemma_2b() -> Any:
    """google/gemma-2b config.json: hidden 2048, 18 layers, 8 heads with one KV head of 256, GeGLU 16384, vocab
    256000, tied embeddings."""
    from tuner.models.arch import Architecture

    return Architecture(
        model_type="gemma", hidden_size=2048, num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1,
        head_dim=256, intermediate_size=16384, vocab_size=256000, tie_word_embeddings=True, max_position_embeddings=8192,
    )  # fmt: skip


ARCHS = {"qwen-7b": _qwen1_7b, "qwen-1.8b": _qwen1_1_8b, "mistral-7b-32001": _mistral_7b_32001,
         "llama-2-70b-32001": _llama2_70b_32001, "mixtral-8x7b-32001": _mixtral_8x7b_32001, "llama-2-7b": lambda: _llama2("7b"), "llama-2-13b": lambda: _llama2("13b"), "gemma-2b": _gemma_2b}

LF_PAPER = "LlamaFactory paper (arXiv:2403.13372v4) Table 4, section 5.1"
#: Table 4, memory (GB): model -> method -> figure. Full-tuning Llama2-13B ran out of memory (no figure).
LF_PAPER_MEMORY = {
    "gemma-2b": {"full": 17.06, "freeze": 8.10, "galore": 10.16, "lora": 7.91, "qlora": 5.21},
    "llama-2-7b": {"full": 38.72, "freeze": 15.69, "galore": 15.43, "lora": 16.32, "qlora": 7.52},
    "llama-2-13b": {"freeze": 29.02, "galore": 28.91, "lora": 30.09, "qlora": 12.61},
}
#: Section 5.1's setup, as a LLaMA-Factory config (see the module docstring for each conversion).
LF_PAPER_SETUP = {"stage": "pt", "precision": "pure_bf16", "optim": "adamw_8bit", "attention": "fa2", "batch_size": 1,
                  "cutoff_len": 512, "loss_shift": "model"}
LF_PAPER_METHOD = {
    "full": {"finetuning_type": "full"},
    "freeze": {"finetuning_type": "freeze", "freeze_trainable_layers": 3},
    "galore": {"finetuning_type": "full", "use_galore": True, "galore_rank": 128, "galore_layerwise": True},
    "lora": {"finetuning_type": "lora", "lora_rank": 128},
    "qlora": {"finetuning_type": "lora", "lora_rank": 128, "quantization_bit": 4},
}

#: Qwen-7B's own modeling code (modeling_qwen.py, QWenLMHeadModel.forward, on the Hugging Face Hub) runs
#: CrossEntropyLoss on the 16-bit logits; under autocast (the LoRA rows) that is fp32 anyway, under DeepSpeed's fp16
#: engine (the Q-LoRA rows) it is not.
QWEN_LORA = {"lora_rank": 64, "lora_dropout": 0.05, "attention": "fa2", "optim": "adamw_torch", "batch_size": 1,
             "gradient_accumulation_steps": 8,
             "loss_upcast": False}
QWEN_LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
#: Qwen-7B rows of the table, GiB at each length.
QWEN_7B = {
    "LoRA": (20.1, 20.4, 21.5, 23.8, 29.7, 36.6),
    "LoRA (emb)": (33.7, 34.1, 35.2, 35.1, 39.2, 48.5),
    "Q-LoRA": (11.5, 11.5, 12.3, 13.9, 16.9, 23.5),
}
#: finetune/finetune_qlora_single_gpu.sh: fp16 under DeepSpeed ZeRO-2 with finetune/ds_config_zero2.json's buckets.
QWEN_QLORA = {"quantization_bit": 4, "quantization_method": "gptq", "precision": "fp16", "zero_stage": 2}
QWEN_ZERO2_BUCKETS = {"reduce_bucket_size": 2e8, "allgather_bucket_size": 2e8, "overlap_comm": True, "contiguous_gradients": True}
#: Unsloth's table: GPU memory (GB) -> longest context of the HF + FA2 baseline.
UNSLOTH_8B = {12: 932, 16: 2551, 24: 5789, 40: 12264, 48: 15502, 80: 28454}
#: The HF + FA2 baseline as TRL's SFTTrainer sets it up (see the module docstring): fp32 norms on a 4-bit model.
UNSLOTH_QLORA = {"quantization_bit": 4, "lora_rank": 32, "attention": "fa2", "batch_size": 1, "optim": "adamw_torch",
                 "upcast_layernorm": True, "loss_shift": "logits"}  # transformers 4.47-4.48 (January 2025)
UNSLOTH_CAVEAT = ("the longest context that fits: the peak is at most the memory size; the baseline's script is "
                  "assumed (TRL SFTTrainer)")


#: ms-swift's first benchmark round (cfcb672), GPU memory in MiB (max_memory_reserved / 1024**2 after training):
#: LoRA and full fine-tuning at each max_length; Qwen-7B-Chat LoRA by batch size, checkpointing, rank and targets.
SWIFT_LENGTHS = (512, 1024, 2048, 4096, 8192)
SWIFT_MIB = {
    ("qwen-1.8b", "lora"): (4610, 5576, 7624, 17324, 36620),
    ("qwen-7b", "lora"): (15926, 17096, 19362, 29264, 48560),
    ("qwen-1.8b", "full"): (18010, 18072, 20286, 26436, 37530),
    ("qwen-7b", "full"): (75213, 75627, 76520, 78986, None),  # 8192: out of memory
}
#: at max_length 2048: Qwen-7B-Chat LoRA, one setting changed -> MiB
SWIFT_7B_VARIANTS = {
    "batch 2": ({"batch_size": 2, "gradient_accumulation_steps": 8}, 24842),
    "batch 4": ({"batch_size": 4, "gradient_accumulation_steps": 4}, 34842),
    "batch 8": ({"batch_size": 8, "gradient_accumulation_steps": 2}, 54844),
    "no checkpointing": ({"gradient_checkpointing": False}, 30316),
    "rank 2": ({"lora_rank": 2}, 19300),
    "rank 64": ({"lora_rank": 64}, 20728),
    "rank 8 all linear": ({"lora_target": ("all",)}, 19670),
}
#: swift sft defaults of that round (swift/llm/utils/argument.py): bf16 weights, LoRA r8 (alpha 32, dropout 0.05) on
#: Qwen's c_attn (q, k and v in the Qwen2 layout), flash attention, checkpointing, batch 1, gradient accumulation
#: ceil(16 / batch), torch AdamW (transformers 4.35-4.36: adamw_torch), the model's own loss (Qwen's code:
#: cross-entropy of the shifted logits, fp32 under autocast). Full fine-tuning keeps weights, gradients and AdamW
#: states bf16 (no fp32 master copy) under autocast: converted as pure_bf16 with the loss in fp32.
SWIFT_LORA = {"lora_rank": 8, "lora_dropout": 0.05, "lora_target": ("q_proj", "k_proj", "v_proj"), "attention": "fa2",
              "optim": "adamw_torch", "batch_size": 1, "gradient_accumulation_steps": 16, "loss_shift": "model",
              "loss_upcast": False}
SWIFT_FULL = {"finetuning_type": "full", "precision": "pure_bf16", "attention": "fa2", "optim": "adamw_torch",
              "batch_size": 1, "gradient_accumulation_steps": 16, "loss_shift": "labels", "loss_upcast": True}
SWIFT_CAVEAT = ("cls-fudan-news-zh, 1000 samples cut to max_length from the left (truncation_left): steps shorter "
                "than max_length where a sample is (about a third at 2048); swift's LoRA on the fused c_attn")
#: fms-acceleration's reference runs (refs/requirements.txt: torch 2.4.1, transformers 4.48.1, peft 0.13.2, trl 0.13.0,
#: bitsandbytes 0.43.3, flash-attn 2.7.3): Mistral-7B-v0.1 on one A100-80GB, alpaca-cleaned packed by TRL's
#: ConstantLengthDataset into rows of exactly 4096 tokens (labels = input ids), flash attention 2, reentrant
#: checkpointing, torch AdamW (transformers 4.48's default optim), max_grad_norm 1. Columns: the Trainer's memory
#: metrics (torch.cuda.max_memory_allocated over train(), bytes) and nvidia-smi memory.used polled each second
#: (MiB, its first reading subtracted: the process's CUDA context included).
FMS_BASE = {"cutoff_len": 4096, "attention": "fa2", "optim": "adamw_torch", "loss_shift": "logits"}
FMS_LORA = {"finetuning_type": "lora", "lora_rank": 16, "lora_dropout": 0.1,
            "lora_target": ("q_proj", "k_proj", "v_proj", "o_proj")}
FMS_ROWS = {
    # no bf16 flag: bf16 weights without autocast; PEFT 0.13 keeps the adapters fp32 (autocast_adapter_dtype)
    "full": ({"finetuning_type": "full", "precision": "pure_bf16"}, {4: (72434837504, 77256), 8: (72435230720, 72988)}),
    "lora": (dict(FMS_LORA, precision="pure_bf16"), {4: (26704571904, 29576), 8: (38742912512, 43232)}),
    # accelerated-peft-bnb: the plugin's own k-bit preparation upcasts nothing; bf16 autocast
    "qlora": (dict(FMS_LORA, quantization_bit=4), {4: (16373838336, 19912), 8: (28412178944, 34016)}),
    # baseline-peft-bnb: PEFT's prepare_model_for_kbit_training then TRL's peft_module_casting_to_bf16: norms fp32
    "qlora fp32 norms": (dict(FMS_LORA, quantization_bit=4, upcast_layernorm=True),
                         {4: (20669338112, 26056), 8: (37002646016, 46050)}),
}
#: The same CSV's Llama-2-70B QLoRA (accelerated-peft-bnb) at batch 4; batch 8, and the fp32-norm set-up at batch 4,
#: ran out of memory (their nvidia-smi readings 80,526 and 79,762 MiB), which the estimate also says (not recorded).
FMS_70B = {4: (68126381056, 72950)}
#: Mixtral-8x7B-Instruct QLoRA, both set-ups, batch 4 and 8 (the estimator's mixture-of-experts layer follows
#: transformers' per-expert loop; it has no trace row)
FMS_MIXTRAL = {
    "qlora": {4: (36731843072, 38064), 8: (48770183680, 50630)},
    "qlora fp32 norms": {4: (42794268160, 44924), 8: (60545920512, 63932)},
}


def records() -> list[Record]:
    from tuner.memory.setup import ZeroConfig

    out: list[Record] = []
    for method, values in QWEN_7B.items():
        for length, gib in zip(QWEN_LENGTHS, values, strict=True):
            setup = dict(QWEN_LORA, cutoff_len=length)
            adjust, note, caveat = 0.0, "", ""
            if method == "LoRA (emb)":
                setup["additional_target"] = ("embed_tokens", "lm_head")
            if method == "Q-LoRA":
                setup.update(QWEN_QLORA, zero=ZeroConfig(**QWEN_ZERO2_BUCKETS))
                caveat = "GPTQ (auto-gptq) kernels"
            out.append(Record(f"qwen-7b {method} {length}", QWEN_README, "nvidia-smi", "qwen-7b", setup, gib * GIB,
                              adjust, note, caveat, ("qwen", "qlora" if method == "Q-LoRA" else "lora"),
                              hardware="a100-80g", figure=(gib, "GB"),
                              bf16_trainable="modules_to_save" if method == "LoRA (emb)" else ""))  # fmt: skip
    for model, figures in LF_PAPER_MEMORY.items():
        for method, gb in figures.items():
            caveat = "Unsloth's LoRA kernels not modelled" if method in ("lora", "qlora") else ""
            out.append(Record(f"{model} {method} (LlamaFactory paper)", LF_PAPER, "nvidia-smi", model,
                              dict(LF_PAPER_SETUP, **LF_PAPER_METHOD[method]), gb * GIB, caveat=caveat,
                              tags=("lf-paper", method), hardware="a100-40g", bf16_trainable="adapters" if method == "lora" else "",
                              figure=(gb, "GB")))  # fmt: skip
    for (model, method), mibs in SWIFT_MIB.items():
        for length, mib in zip(SWIFT_LENGTHS, mibs, strict=True):
            if mib is None:
                continue
            setup = dict(SWIFT_LORA if method == "lora" else SWIFT_FULL, cutoff_len=length)
            out.append(Record(f"{model} {method} {length} (ms-swift)", SWIFT_BENCHMARK, "reserved", model, setup, mib * 2**20,
                              caveat=SWIFT_CAVEAT, tags=("swift", method), hardware="a100-80g", metric_known=True,
                              bf16_trainable="adapters" if method == "lora" else "", varying_lengths=length > 2048))  # fmt: skip
    for variant, (change, mib) in SWIFT_7B_VARIANTS.items():
        caveat = SWIFT_CAVEAT + ("; Qwen-7B's own layer code (converted to the Qwen2 layout) sets what a layer saves"
                                 if "checkpointing" in variant else "")
        out.append(Record(f"qwen-7b lora 2048 {variant} (ms-swift)", SWIFT_BENCHMARK, "reserved", "qwen-7b",
                          dict(SWIFT_LORA, cutoff_len=2048, **change), mib * 2**20, caveat=caveat, tags=("swift", "lora"),
                          hardware="a100-80g", metric_known=True, bf16_trainable="adapters"))  # fmt: skip
    for method, (setup, by_batch) in FMS_ROWS.items():
        for batch, (allocated, smi_mib) in by_batch.items():
            tags = ("fms", method.split()[0])
            full = dict(FMS_BASE, batch_size=batch, **setup)
            out.append(Record(f"mistral-7b {method} {batch} x 4096 (fms-acceleration)", FMS_BENCHMARK, "allocated",
                              "mistral-7b-32001", full, float(allocated), tags=tags, hardware="a100-80g", metric_known=True))  # fmt: skip
            out.append(Record(f"mistral-7b {method} {batch} x 4096 (fms-acceleration, nvidia-smi)", FMS_BENCHMARK, "nvidia-smi",
                              "mistral-7b-32001", full, smi_mib * 2**20, tags=(*tags, "fms-nvidia-smi"), hardware="a100-80g",
                              metric_known=True, caveat="polled once a second"))  # fmt: skip
    more = [("llama-2-70b", "qlora", FMS_70B)] + [("mixtral-8x7b", method, rows) for method, rows in FMS_MIXTRAL.items()]
    for model, method, by_batch in more:
        for batch, (allocated, smi_mib) in by_batch.items():
            full = dict(FMS_BASE, batch_size=batch, **FMS_ROWS[method][0])
            name = f"{model} {method} {batch} x 4096 (fms-acceleration"
            out.append(Record(name + ")", FMS_BENCHMARK, "allocated", f"{model}-32001", full, float(allocated),
                              tags=("fms", "qlora"), hardware="a100-80g", metric_known=True))  # fmt: skip
            out.append(Record(name + ", nvidia-smi)", FMS_BENCHMARK, "nvidia-smi", f"{model}-32001", full, smi_mib * 2**20,
                              tags=("fms", "qlora", "fms-nvidia-smi"), hardware="a100-80g", metric_known=True,
                              caveat="polled once a second"))  # fmt: skip
    for gb, tokens in UNSLOTH_8B.items():
        out.append(Record(f"llama-3.1-8b QLoRA {tokens} fits {gb} GB", UNSLOTH_README, "reserved", "llama-3.1-8b",
                          dict(UNSLOTH_QLORA, cutoff_len=tokens), gb * GIB, caveat=UNSLOTH_CAVEAT, tags=("unsloth", "qlora"),
                          published_setup=False, figure=(gb, "GB")))  # fmt: skip
    out.append(Record("llama-3.3-70b QLoRA 6916 fits 80 GB", UNSLOTH_70B, "reserved", "llama-3.3-70b",
                      dict(UNSLOTH_QLORA, cutoff_len=6916), 80 * GIB, caveat=UNSLOTH_CAVEAT, tags=("unsloth", "qlora"),
                      published_setup=False, figure=(80, "GB")))  # fmt: skip
    return out


def _estimate(rec: Record) -> Any:
    from tuner.memory import TrainSetup, estimate
    from tuner.models.resolve import resolve_model

    arch = ARCHS[rec.model]() if rec.model in ARCHS else resolve_model(rec.model).arch
    return estimate(TrainSetup(arch, **rec.setup), hardware=rec.hardware)


def _bf16_trainable(rec: Record, est: Any) -> float:
    """Bytes at the peak the publisher's bf16 copies of ``rec.bf16_trainable`` save against the estimate's fp32
    ones: half of their share of the weights and gradients and, for torch AdamW (states in the parameter's dtype),
    of the states and the step's temporaries; with a bf16 lm_head, no autocast copy of it either."""
    if not rec.bf16_trainable:
        return 0.0
    from tuner.memory.model import plan_params

    plan = plan_params(est.setup)
    share = (plan.adapter if rec.bf16_trainable == "adapters" else plan.modules_to_save) / plan.trainable
    keys = {"weights_trainable", "gradients", "gradients_partial"}
    if est.setup.optim.startswith("adamw_torch"):
        keys |= {"optimizer_states", "step_temporaries"}
    saved = 0.5 * share * sum(c.bytes for c in est.at_peak() if c.key in keys)
    if rec.bf16_trainable == "modules_to_save" and "lm_head" in est.setup.additional_target:
        saved += sum(c.bytes for c in est.at_peak() if c.key == "head_autocast_copy")
    return -saved


def predict(rec: Record, metric: str | None = None) -> float:
    est = _estimate(rec)
    return est.metric(metric or rec.metric) + rec.adjust_bytes + _bf16_trainable(rec, est)


def error_range(rec: Record) -> tuple[float, float] | None:
    """The error (%) over every reading of the figure the source allows (see READINGS), or None."""
    if rec.figure is None:
        return None
    value, _ = rec.figure
    est = _estimate(rec)
    extra = _bf16_trainable(rec, est) + rec.adjust_bytes
    errs = []
    for metric, unit in READINGS:
        measured = value * (GIB if unit == "GiB" else GB)
        errs.append(100 * (est.metric(metric) + extra - measured) / measured)
    return min(errs), max(errs)


def run() -> list[dict[str, Any]]:
    rows = []
    for rec in records():
        predicted = predict(rec)
        spread = error_range(rec)
        rows.append({
            "name": rec.name, "source": rec.source, "metric": rec.metric, "measured_gib": rec.measured_bytes / GIB,
            "predicted_gib": predicted / GIB, "error_pct": 100 * (predicted - rec.measured_bytes) / rec.measured_bytes,
            "error_range_pct": None if spread is None else list(spread), "published_setup": rec.published_setup,
            "adjust": rec.adjust_note, "caveat": rec.caveat, "tags": list(rec.tags),
            "metric_known": rec.metric_known, "varying_lengths": rec.varying_lengths,
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| record | metric | measured GiB | predicted GiB | error | over all readings | source |",
             "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        rng = r["error_range_pct"]
        spread = "" if rng is None else f"{rng[0]:+.1f}% .. {rng[1]:+.1f}%"
        lines.append(f"| {r['name']} | {r['metric']} | {r['measured_gib']:.2f} | {r['predicted_gib']:.2f} | "
                     f"{r['error_pct']:+.1f}% | {spread} | {r['source']} |")  # fmt: skip
    lines.append("")

    def summary(label: str, sub: list[dict[str, Any]]) -> str:
        errs = [abs(r["error_pct"]) for r in sub]
        return f"{label}: {len(errs)} records, median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}%"

    errs = [abs(r["error_pct"]) for r in rows]
    lines.append(f"{len(errs)} records: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}%")
    compared = [r for r in rows if r["published_setup"] and not r["varying_lengths"]]
    groups = [
        ("published configuration, one length per run (the comparison)", compared),
        ("  of which the metric is read from the code that printed it", [r for r in compared if r["metric_known"]]),
        ("  of which the metric is a stated reading (the source names no tool)", [r for r in compared if not r["metric_known"]]),
        ("lengths varying from step to step (reserved holds cached segments of earlier shapes)",
         [r for r in rows if r["varying_lengths"]]),
        ("script unpublished, figures from a fit", [r for r in rows if not r["published_setup"]]),
    ]
    for label, sub in groups:
        if sub:
            lines.append("  " + summary(label, sub))
    for tag in ("lora", "qlora", "full", "freeze", "galore"):
        sub = [r for r in compared if tag in r["tags"]]
        if sub:
            lines.append("  " + summary(f"comparison, {tag}", sub))
    for tag, label in (("qwen", "Qwen README"), ("lf-paper", "LlamaFactory paper"), ("swift", "ms-swift"),
                       ("fms", "fms-acceleration")):
        sub = [r for r in compared if tag in r["tags"]]
        if sub:
            lines.append("  " + summary(f"comparison, {label}", sub))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    rows = run()
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
