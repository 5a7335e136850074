#!/usr/bin/env python
"""What a run of varying sequence lengths needs, against one step of the longest batch (no GPU needed).

    python benchmarks/variable_length.py [--seeds 5] [--steps 12] [--json FILE]

Without packing, LLaMA-Factory pads each micro-batch to its longest sequence, so every step has a different length.
The estimator predicts one step of ``cutoff_len`` tokens. This benchmark replays PyTorch's caching allocator
(:mod:`tuner.memory.trace.allocator`, default configuration) on the allocations of the traced training step
(:func:`tuner.memory.trace.trace_step`) over a run of varying lengths and reports, for each setup:

* ``need``: the smallest device capacity the run fits in, the allocator's give-backs included
  (:func:`tuner.memory.trace.allocator.min_capacity`): a new longest batch cannot use the smaller blocks earlier
  steps left cached, and segments that a long-lived tensor (an optimizer state, a gradient) pins cannot be given back;
* ``reserved``: ``max_memory_reserved()`` on a GPU with room to spare, which never gives anything back: what
  nvidia-smi shows, less the CUDA context.

Lengths are drawn per seed from a long-tailed distribution (log-normal, median about 665 tokens) cut at
``cutoff_len``, like the prompt + response lengths of instruction data; each seed is one shuffle of one dataset.
The fixed-length run (two steps of ``cutoff_len``) is the estimator's case. The spread over seeds is the point:
the order in which lengths arrive decides how much the cache grows.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GIB = 1024**3

#: name -> (model, cutoff_len, TrainSetup keywords)
SETUPS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "qwen2.5-0.5b lora": ("qwen2.5-0.5b", 2048, {"finetuning_type": "lora", "lora_rank": 8}),
    "qwen2.5-0.5b full": ("qwen2.5-0.5b", 2048, {"finetuning_type": "full"}),
    "llama-3.2-1b lora": ("llama-3.2-1b", 2048, {"finetuning_type": "lora", "lora_rank": 8}),
}


def lengths_for(seed: int, steps: int, cutoff: int) -> list[int]:
    rng = random.Random(seed)
    return [min(cutoff, max(32, int(rng.lognormvariate(6.5, 0.9)))) for _ in range(steps)]


def run_setup(name: str, seeds: int, steps: int) -> dict[str, Any]:
    from tuner.memory import TrainSetup, estimate
    from tuner.memory.trace import trace_step
    from tuner.models.resolve import resolve_model

    model, cutoff, kw = SETUPS[name]
    setup = TrainSetup(resolve_model(model).arch, cutoff_len=cutoff, attention="sdpa", optim="adamw_torch", **kw)
    fixed = trace_step(setup, steps=2, need=True)
    runs = []
    for seed in range(1, seeds + 1):
        lengths = lengths_for(seed, steps, cutoff)
        tr = trace_step(setup, lengths=lengths, need=True)
        runs.append({"seed": seed, "lengths": lengths, "allocated": tr.allocator_allocated, "need": tr.allocator_need,
                     "reserved": tr.allocator_reserved})  # fmt: skip
    est = estimate(setup)
    return {
        "name": name, "model": model, "cutoff_len": cutoff, "setup": kw,
        "fixed": {"allocated": fixed.allocator_allocated, "need": fixed.allocator_need, "reserved": fixed.allocator_reserved},
        "runs": runs,
        "estimate": {"need": est.allocated_bytes + est.bytes_of("allocator"), "reserved": est.metric("reserved")},
    }  # fmt: skip


def _pct(x: float, base: float) -> str:
    return f"{100 * (x - base) / base:+.1f}%"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| setup | fixed length: need / reserved GiB | varying: need GiB, median (range) | vs fixed | "
             "varying: reserved GiB, median (range) | vs fixed | estimator: need / reserved GiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        f = r["fixed"]
        need = [x["need"] for x in r["runs"]]
        res = [x["reserved"] for x in r["runs"]]
        lines.append(
            f"| {r['name']}, {r['cutoff_len']} tokens, {len(need)} seeds | {f['need'] / GIB:.3f} / {f['reserved'] / GIB:.3f} | "
            f"{statistics.median(need) / GIB:.3f} ({min(need) / GIB:.3f} .. {max(need) / GIB:.3f}) | "
            f"{_pct(statistics.median(need), f['need'])} ({_pct(min(need), f['need'])} .. {_pct(max(need), f['need'])}) | "
            f"{statistics.median(res) / GIB:.3f} ({min(res) / GIB:.3f} .. {max(res) / GIB:.3f}) | "
            f"{_pct(statistics.median(res), f['reserved'])} ({_pct(min(res), f['reserved'])} .. {_pct(max(res), f['reserved'])}) | "
            f"{r['estimate']['need'] / GIB:.3f} / {r['estimate']['reserved'] / GIB:.3f} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="shuffles per setup (default 5)")
    ap.add_argument("--steps", type=int, default=12, help="steps per run (default 12)")
    ap.add_argument("--only", action="append", choices=sorted(SETUPS), help="run only this setup (repeatable)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    rows = []
    for name in args.only or list(SETUPS):
        t0 = time.time()
        rows.append(run_setup(name, args.seeds, args.steps))
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
