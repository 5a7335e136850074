#!/usr/bin/env python3
"""Build the small tokenizer shipped in ``examples/tokenizer/`` from the bundled example data, offline.

``cfgtune data`` and the dataset rules (DATA001, DATA003, DATA004) count tokens with a model's own fast tokenizer
(``tokenizer.json``); the examples name Qwen2.5-7B-Instruct, whose tokenizer is a download. This one is a
byte-level BPE (the kind Qwen, Llama 3 and GPT-2 use) trained with the ``tokenizers`` library on
``examples/data/alpaca_demo.json`` alone, with a 2,000-token vocabulary and the ChatML special tokens the
``qwen`` template writes (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``). Counts are the right order of
magnitude for English text (a real 150k vocabulary gives somewhat fewer tokens), which is what the example is
for: seeing the command work, not measuring Qwen.

    python scripts/build_example_tokenizer.py            # rewrite examples/tokenizer/
    python scripts/build_example_tokenizer.py --out DIR  # elsewhere
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "alpaca_demo.json"
OUT = ROOT / "examples" / "tokenizer"
VOCAB = 2000
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

#: ChatML, as Qwen2.5's tokenizer_config.json writes it (without tools): used when a config names no template.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def texts() -> list[str]:
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    return [str(r.get(k) or "") for r in rows for k in ("instruction", "input", "output") if r.get(k)]


def build(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts(), trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    build(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({size} bytes, vocabulary {VOCAB})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
