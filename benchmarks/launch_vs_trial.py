#!/usr/bin/env python3
"""Does a tuned config peak in real training where its trial said it would? `cfgtune auto`, then `cfgtune launch`.

For each architecture (default: Qwen2.5-0.5B and Qwen2.5-1.5B, LoRA SFT, bf16) this builds a local random-weight
model of the catalog architecture and a small BPE tokenizer (nothing is downloaded), a synthetic alpaca dataset
whose samples are longer than ``cutoff_len`` (so every batch is full length, the worst case a trial measures),
and a base config. Then:

1. ``cfgtune auto --gpus 1`` tunes it with short trials under the 90% ceiling and writes ``tuned.yaml``;
2. ``cfgtune launch tuned.yaml`` trains it with LLaMA-Factory for ``--steps`` optimizer steps while NVML is
   sampled;
3. the launch record (``cfgtune-launch.json``) gives the observed peak, the chosen trial's measured peak and
   the estimate, and the table reports both errors. The target is agreement within 5% between the trial and
   the real run.

    python benchmarks/launch_vs_trial.py --out bench/launch                # needs CUDA and LLaMA-Factory
    python benchmarks/launch_vs_trial.py --out /tmp/l --device cpu --models tiny --steps 2   # a CPU smoke run

Writes OUT/results.json and OUT/results.md; with ``--record``, also appends the table to benchmarks/RESULTS.md.
Without CUDA (and no ``--device cpu``) or without ``llamafactory-cli`` it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GIB = 1024**3
TARGET = 0.05
#: A CPU smoke-run architecture (the catalog's are too big for a CPU).
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512}  # fmt: skip
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]  # fmt: skip


def build_model(spec: str, path: Path, device: str) -> str:
    """Save a random-weight model of the architecture and a small tokenizer at ``path``; return a description."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    from tuner.data.testing import tiny_tokenizer

    if spec == "tiny":
        config = AutoConfig.for_model(**TINY)
        described = "tiny llama (CPU smoke run)"
    else:
        from tuner.models.resolve import resolve_model
        from tuner.trial.build import hf_config

        info = resolve_model(spec)
        config, _ = hf_config(info.arch)
        described = info.describe()
    # The model keeps its real vocabulary size (the logits' memory is real); the tokenizer only uses the first ids.
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20
    tiny_tokenizer(path, vocab_size=min(2000, config.vocab_size - 8), corpus=corpus, bos_token="<s>",
                   eos_token="</s>", pad_token="<|endoftext|>")  # fmt: skip
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    config.bos_token_id, config.eos_token_id = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    config.pad_token_id = tok.token_to_id("<|endoftext|>")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.save_pretrained(path)
    return described


def write_dataset(data: Path, cutoff: int, n: int = 512) -> None:
    """Samples longer than ``cutoff`` tokens (one word is at least one token), so every batch is full."""
    from tuner.data.testing import write_dataset_dir

    rows = [
        {"instruction": f"Continue sequence {i}.", "input": "",
         "output": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(cutoff + 32))}
        for i in range(n)
    ]  # fmt: skip
    write_dataset_dir(data, {"synthetic": {"file_name": "synthetic.json"}}, {"synthetic.json": rows})


BASE = """\
model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: synthetic
dataset_dir: {data}
template: default
cutoff_len: {cutoff}
overwrite_cache: true
preprocessing_num_workers: 4
output_dir: {output}
logging_steps: 5
save_strategy: "no"
overwrite_output_dir: true
report_to: none
per_device_train_batch_size: 1
gradient_accumulation_steps: {global_batch}
learning_rate: 1.0e-4
max_steps: {steps}
{precision}
"""


def cfgtune(args: list[str], cwd: Path, log: Path, timeout: float) -> int:
    env = {**os.environ, "CFGTUNE_HOME": str(cwd / "home"), "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "tuner.cli.tune", *args], cwd=cwd, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)  # fmt: skip
    return proc.returncode


def run_one(spec: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    work = out / spec.replace("/", "_")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model, data, output = work / "model", work / "data", work / "saves"
    row: dict[str, Any] = {"model": spec}
    t0 = time.monotonic()
    row["describe"] = build_model(spec, model, args.device)
    write_dataset(data, args.cutoff)
    precision = "use_cpu: true" if args.device == "cpu" else "bf16: true"
    (work / "base.yaml").write_text(BASE.format(model=model, data=data, cutoff=args.cutoff, output=output,
                                                global_batch=args.global_batch, steps=args.steps, precision=precision))  # fmt: skip
    auto = ["auto", "--model", str(model), "--config", "base.yaml", "--dataset-dir", str(data), "--cutoff-len",
            str(args.cutoff), "--global-batch", str(args.global_batch), "--n-trials", str(args.n_trials),
            "--ranks", args.ranks, "--output-dir", "tuned"]  # fmt: skip
    auto += (
        ["--device", "cpu", "--memory-budget", "4GiB"]
        if args.device == "cpu"
        else ["--gpus", "1"]
    )
    t1 = time.monotonic()
    row["auto_exit"] = cfgtune(auto, work, work / "auto.log", args.timeout)
    row["auto_s"] = round(time.monotonic() - t1, 1)
    tuned = work / "tuned" / "tuned.yaml"
    if row["auto_exit"] != 0 or not tuned.exists():
        row["error"] = (
            f"cfgtune auto exited {row['auto_exit']}; see {work / 'auto.log'}"
        )
        return row
    t2 = time.monotonic()
    row["launch_exit"] = cfgtune(
        ["launch", str(tuned)], work, work / "launch.log", args.timeout
    )
    row["launch_s"] = round(time.monotonic() - t2, 1)
    record_path = output / "cfgtune-launch.json"
    if not record_path.exists():
        row["error"] = f"no launch record; see {work / 'launch.log'}"
        return row
    rec = json.loads(record_path.read_text())
    s = rec.get("settings") or {}
    row.update(
        chosen=f"{s.get('per_device_train_batch_size')}×{s.get('gradient_accumulation_steps')}, rank {s.get('lora_rank')}, "
        f"ckpt {'on' if s.get('gradient_checkpointing') else 'off'}" + (", Liger" if s.get("liger") else ""),
        trial=rec.get("trial"), method=(rec.get("measured") or {}).get("method"), oom=rec.get("oom"),
        observed_bytes=rec.get("observed_peak_bytes"), trial_bytes=rec.get("trial_peak_bytes"),
        estimate_bytes=rec.get("estimate_bytes"), total_s=round(time.monotonic() - t0, 1),
    )  # fmt: skip
    obs = row["observed_bytes"]
    for key in ("trial", "estimate"):
        ref = row.get(f"{key}_bytes")
        row[f"{key}_error"] = (ref - obs) / obs if ref and obs else None
    return row


def _gib(v: int | None) -> str:
    return "-" if not v else f"{v / GIB:.2f} GiB"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1%}"


def table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| model | chosen | real run peak | trial peak | trial error | estimate | estimate error | OOM |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['chosen']} | {_gib(r['observed_bytes'])} | {_gib(r['trial_bytes'])} | "
                     f"{_pct(r['trial_error'])} | {_gib(r['estimate_bytes'])} | {_pct(r['estimate_error'])} | "
                     f"{'yes' if r['oom'] else 'no'} |")  # fmt: skip
    errs = [abs(r["trial_error"]) for r in rows if r.get("trial_error") is not None]
    if errs:
        worst = max(errs)
        lines += [
            "",
            f"Worst trial-vs-run error {worst:.1%} (target ≤ {TARGET:.0%}: {'met' if worst <= TARGET else 'missed'}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--models",
        default="qwen2.5-0.5b,qwen2.5-1.5b",
        help="catalog names, or `tiny` (CPU)",
    )
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--cutoff", type=int, default=1024)
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--ranks", default="8,16,32")
    ap.add_argument("--n-trials", type=int, default=8)
    ap.add_argument(
        "--steps", type=int, default=30, help="optimizer steps of the real run"
    )
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument(
        "--record",
        action="store_true",
        help="append the table to benchmarks/RESULTS.md",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if shutil.which("llamafactory-cli") is None:
        print(
            "launch_vs_trial: llamafactory-cli is not installed here; nothing measured"
        )
        (args.out / "results.json").write_text(
            json.dumps({"skipped": "no llamafactory-cli"})
        )
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(
                "launch_vs_trial: no CUDA device; nothing measured (use --device cpu for a smoke run)"
            )
            (args.out / "results.json").write_text(json.dumps({"skipped": "no CUDA"}))
            return 0
        where = torch.cuda.get_device_name(0)
    else:
        where = f"CPU ({os.cpu_count()} cores)"
    rows = [
        run_one(m.strip(), args, args.out) for m in args.models.split(",") if m.strip()
    ]
    header = (f"### cfgtune launch against its trial ({time.strftime('%Y-%m-%d')}, {where}, {platform.python_version()})\n\n"
              f"`python benchmarks/launch_vs_trial.py --out OUT --models {args.models} --cutoff {args.cutoff} "
              f"--global-batch {args.global_batch} --steps {args.steps}`; LoRA SFT, random weights, every batch "
              f"{args.cutoff} tokens long. Error = (prediction − real peak) / real peak.")  # fmt: skip
    md = table(rows, header)
    (args.out / "results.json").write_text(
        json.dumps({"device": where, "rows": rows}, indent=2)
    )
    (args.out / "results.md").write_text(md)
    print(md)
    if args.record:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
