"""Build tiny datasets and tokenizers for tests and benchmarks: nothing is downloaded.

``tiny_tokenizer`` trains a byte-level BPE on a few sentences with the ``tokenizers`` library and writes a
``tokenizer.json`` and ``tokenizer_config.json`` like a model directory has, with the ChatML special tokens, so
templates such as ``qwen`` find their markup as single tokens. transformers loads the directory as a generic fast
tokenizer, so a random-weight model saved beside it trains with LLaMA-Factory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Explain gradient checkpointing in one paragraph.",
    "LoRA adapters train a small number of parameters.",
    "Summarise the following text for a busy reader.",
    "Write a haiku about GPUs running out of memory.",
    "Translate the sentence into French, please.",
    "What is the capital of France? Paris is the capital.",
    "Sequence packing puts several short samples into one row.",
]

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]


def tiny_tokenizer(
    directory: Path,
    *,
    vocab_size: int = 400,
    corpus: Iterable[str] | None = None,
    bos_token: str | None = None,
    eos_token: str | None = "<|endoftext|>",
    pad_token: str | None = None,
    chat_template: str | None = None,
    pre_tokenizer: str = "bytelevel",
) -> Path:
    """Train and save a small BPE tokenizer in ``directory``; returns the directory."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    if pre_tokenizer == "qwen":  # the Qwen2/Llama-3 style split, then bytes
        pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")  # fmt: skip
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) if corpus is not None else SENTENCES * 4, trainer=trainer)
    tok.save(str(directory / "tokenizer.json"))
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos_token,
                              "eos_token": eos_token, "model_max_length": 4096}  # fmt: skip
    if pad_token:
        config["pad_token"] = pad_token
    if chat_template:
        config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def write_dataset_dir(directory: Path, entries: dict[str, Any], files: dict[str, Any]) -> Path:
    """Write ``dataset_info.json`` and data files: a list of rows becomes a JSON array (``.json``) or JSON Lines
    (``.jsonl``); a string is written as is."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dataset_info.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")
        else:
            path.write_text(json.dumps(content, ensure_ascii=False, indent=1), encoding="utf-8")
    return directory
