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

Sources (files at the commits named, read from the public repositories):

* ``QwenLM/Qwen`` ``README.md`` "Profiling of Memory and Speed" (commit 2df8e8a): Qwen-7B on one A100-SXM4-80G,
  CUDA 11.8, PyTorch 2.0, FlashAttention-2, batch 1, inputs of 256-8192 tokens, the repository's ``finetune.py``
  (LoRA r=64, alpha 16, dropout 0.05 on ``c_attn, c_proj, w1, w2`` = every linear layer, gradient checkpointing,
  bf16, ``adamw_torch``). "LoRA (emb)" also trains ``wte`` and ``lm_head`` (PEFT ``modules_to_save``). Q-LoRA is
  ``finetune/finetune_qlora_single_gpu.sh``: the GPTQ Int4 checkpoint, ``--fp16`` and DeepSpeed ZeRO-2
  (``finetune/ds_config_zero2.json``: reduce and allgather buckets of 2e8, ``overlap_comm``), which ``finetune.py``
  forces on a single GPU ("This serves for single-gpu qlora"). PEFT's ``prepare_model_for_kbit_training`` leaves
  a GPTQ model's 16-bit parameters as they are (``is_gptq_quantized``: no fp32 upcast). The metric is given as
  "memory (GB)", unnamed: compared as nvidia-smi, in GiB.
* ``unslothai/unsloth`` ``README.md`` "Context length benchmarks" (commit 6a4af87, January 2025): the longest
  context the Hugging Face + FA2 baseline fits for Llama 3.1 (8B) Instruct, 4-bit QLoRA r=32 on all linear layers,
  batch 1, sequences padded to the length, in each memory size; and Llama 3.3 (70B) on an 80 GB A100. A record is
  "this context uses the whole memory size" (GB = 10^9 B), compared as nvidia-smi. The README does not name the
  baseline's script; it is taken to be TRL's ``SFTTrainer`` with a LoRA ``peft_config`` and bf16, as in Unsloth's
  own notebooks (an assumption). TRL v0.13.0 (the release of that month, ``trl/trainer/sft_trainer.py``
  ``SFTTrainer.__init__``) runs PEFT's ``prepare_model_for_kbit_training`` on a 4-bit model (every non-4-bit weight
  to fp32), then ``peft_module_casting_to_bf16`` (``trl/trainer/utils.py``): norms stay fp32, embeddings and
  lm_head go back to bf16. That is LLaMA-Factory's ``upcast_layernorm`` on QLoRA, and it is converted so.
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


def _qwen1_7b() -> Any:
    """Qwen-7B (the first Qwen): the Qwen2 layout with q/k/v biases, MHA, untied head. config.json: hidden 4096,
    32 layers, 32 heads, intermediate_size 22016 (w1 and w2 are 11008 each), vocab 151936."""
    from tuner.models.arch import Architecture

    return Architecture(
        model_type="qwen2", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=11008, vocab_size=151936, attention_bias=True, max_position_embeddings=8192,
    )  # fmt: skip


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
#: PEFT modules_to_save copies of wte and lm_head (LoRA (emb)).
QWEN_EMB_COPIES = 2 * 151936 * 4096
#: finetune/finetune_qlora_single_gpu.sh: fp16 under DeepSpeed ZeRO-2 with finetune/ds_config_zero2.json's buckets.
QWEN_QLORA = {"quantization_bit": 4, "quantization_method": "gptq", "precision": "fp16", "zero_stage": 2}
QWEN_ZERO2_BUCKETS = {"reduce_bucket_size": 2e8, "allgather_bucket_size": 2e8}
#: Unsloth's table: GPU memory (GB) -> longest context of the HF + FA2 baseline.
UNSLOTH_8B = {12: 932, 16: 2551, 24: 5789, 40: 12264, 48: 15502, 80: 28454}
#: The HF + FA2 baseline as TRL's SFTTrainer sets it up (see the module docstring): fp32 norms on a 4-bit model.
UNSLOTH_QLORA = {"quantization_bit": 4, "lora_rank": 32, "attention": "fa2", "batch_size": 1, "optim": "adamw_torch",
                 "upcast_layernorm": True}
UNSLOTH_CAVEAT = ("the longest context that fits: the peak is at most the memory size; the baseline's script is "
                  "assumed (TRL SFTTrainer)")


def records() -> list[Record]:
    from tuner.memory.setup import ZeroConfig

    out: list[Record] = []
    for method, values in QWEN_7B.items():
        for length, gib in zip(QWEN_LENGTHS, values, strict=True):
            setup = dict(QWEN_LORA, cutoff_len=length)
            adjust, note, caveat = 0.0, "", ""
            if method == "LoRA (emb)":
                setup["additional_target"] = ("embed_tokens", "lm_head")
                adjust = -QWEN_EMB_COPIES * 8
                note = ("finetune.py trains the wte/lm_head copies in bf16 (weight, gradient, AdamW m and v: 8 B/param) "
                        "where LLaMA-Factory upcasts them to fp32 (16 B/param)")
            if method == "Q-LoRA":
                setup.update(QWEN_QLORA, zero=ZeroConfig(**QWEN_ZERO2_BUCKETS))
                caveat = "GPTQ (auto-gptq) kernels"
            out.append(Record(f"qwen-7b {method} {length}", QWEN_README, "nvidia-smi", "qwen-7b", setup, gib * GIB,
                              adjust, note, caveat, ("qwen", "qlora" if method == "Q-LoRA" else "lora")))  # fmt: skip
    for gb, tokens in UNSLOTH_8B.items():
        out.append(Record(f"llama-3.1-8b QLoRA {tokens} fits {gb} GB", UNSLOTH_README, "nvidia-smi", "llama-3.1-8b",
                          dict(UNSLOTH_QLORA, cutoff_len=tokens), gb * GB, caveat=UNSLOTH_CAVEAT, tags=("unsloth", "qlora")))  # fmt: skip
    out.append(Record("llama-3.3-70b QLoRA 6916 fits 80 GB", UNSLOTH_70B, "nvidia-smi", "llama-3.3-70b",
                      dict(UNSLOTH_QLORA, cutoff_len=6916), 80 * GB, caveat=UNSLOTH_CAVEAT, tags=("unsloth", "qlora")))  # fmt: skip
    return out


def predict(rec: Record) -> float:
    from tuner.memory import TrainSetup, estimate
    from tuner.models.resolve import resolve_model

    arch = _qwen1_7b() if rec.model == "qwen-7b" else resolve_model(rec.model).arch
    est = estimate(TrainSetup(arch, **rec.setup))
    return est.metric(rec.metric) + rec.adjust_bytes


def run() -> list[dict[str, Any]]:
    rows = []
    for rec in records():
        predicted = predict(rec)
        rows.append({
            "name": rec.name, "source": rec.source, "metric": rec.metric, "measured_gib": rec.measured_bytes / GIB,
            "predicted_gib": predicted / GIB, "error_pct": 100 * (predicted - rec.measured_bytes) / rec.measured_bytes,
            "adjust": rec.adjust_note, "caveat": rec.caveat, "tags": list(rec.tags),
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| record | metric | measured GiB | predicted GiB | error | source |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['metric']} | {r['measured_gib']:.2f} | {r['predicted_gib']:.2f} | "
                     f"{r['error_pct']:+.1f}% | {r['source']} |")  # fmt: skip
    errs = [abs(r["error_pct"]) for r in rows]
    lines.append("")
    lines.append(f"{len(errs)} records: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}%")
    for tag in ("lora", "qlora"):
        sub = [abs(r["error_pct"]) for r in rows if tag in r["tags"]]
        if sub:
            lines.append(f"  {tag}: {len(sub)} records, median |error| {statistics.median(sub):.1f}%, worst {max(sub):.1f}%")
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
