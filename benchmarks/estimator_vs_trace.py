#!/usr/bin/env python
"""The memory estimator's tensor part against the trace oracle, on the CPU (no GPU, no weights).

    python benchmarks/estimator_vs_trace.py [--only NAME ...] [--group G ...] [--json FILE] [--explain NAME] [--list]

For each setup of the matrix below, :func:`tuner.memory.trace.trace_step` runs two LLaMA-Factory training
steps of the real transformers model (catalog architecture), PEFT and torch AdamW on fake tensors and counts the
live storages at the CUDA caching allocator's block size (the peak of live tensors, up to what kernels allocate
inside one op). The estimator's *tensor part* is its peak minus what it adds outside live tensors (CUDA context,
NCCL, allocator slack, the cuBLAS workspace). The table gives both and the error ``(estimate - trace) / trace``, and
the caching allocator replayed on the same allocations: ``max_memory_allocated`` (which also counts the unsplit rest
of blocks handed out whole), the most reserved memory held by live blocks, and ``max_memory_reserved`` on a GPU with
room to spare (what the estimator's allocator slack is fitted to).

Groups: ``small`` (0.5B-1.5B, seconds each), ``mid`` (3B-8B, up to a minute each), ``large`` (32B, minutes),
``sweep`` (0.5B LoRA and full over batch x length). ``--explain NAME`` prints, for one setup, the live bytes at
the trace's peak by the op that created them, next to the estimator's components.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GIB = 1024**3
MIB = 1024**2

#: What the estimator adds on top of live tensors (not traced).
OVERHEAD_KEYS = ("cuda_context", "nccl", "allocator", "allocator_cache", "cublas")


def _row(name: str, model: str, method: str, group: str, **kw: Any) -> dict[str, Any]:
    row = {"name": name, "model": model, "method": method, "group": group, "gc": True, "optim": "adamw_torch",
           "attention": "sdpa", "batch": 1, "cutoff": 1024, "rank": 16, "precision": "bf16", "loss_upcast": True,
           "upcast_layernorm": False, "zero_stage": None, "loss_shift": "labels", "additional_target": ()}  # fmt: skip
    row.update(kw)
    return row


MATRIX: list[dict[str, Any]] = [
    # 0.5B-1.5B: every method, checkpointing on/off, foreach/fused, sdpa/eager, padded batches
    _row("q0.5b-lora", "qwen2.5-0.5b", "lora", "small"),
    _row("q0.5b-lora-nogc", "qwen2.5-0.5b", "lora", "small", gc=False),
    _row("q0.5b-lora-eager", "qwen2.5-0.5b", "lora", "small", attention="eager", cutoff=512, batch=2),
    _row("q0.5b-full", "qwen2.5-0.5b", "full", "small"),
    _row("q0.5b-full-fused", "qwen2.5-0.5b", "full", "small", optim="adamw_torch_fused"),
    _row("q0.5b-full-nogc", "qwen2.5-0.5b", "full", "small", gc=False, cutoff=512),
    _row("q0.5b-freeze", "qwen2.5-0.5b", "freeze", "small"),
    _row("q1.5b-full", "qwen2.5-1.5b", "full", "small"),
    _row("q1.5b-full-fused", "qwen2.5-1.5b", "full", "small", optim="adamw_torch_fused"),
    _row("q1.5b-freeze-nogc", "qwen2.5-1.5b", "freeze", "small", gc=False, batch=2, cutoff=512),
    _row("q1.5b-lora-b4", "qwen2.5-1.5b", "lora", "small", batch=4, cutoff=512),
    _row("l1b-lora-fused-nogc", "llama-3.2-1b", "lora", "small", gc=False, optim="adamw_torch_fused", cutoff=2048),
    # 3B-8B
    _row("l3b-lora-b2", "llama-3.2-3b", "lora", "mid", batch=2, cutoff=2048),
    _row("qw3-4b-lora-nogc", "qwen3-4b", "lora", "mid", gc=False, cutoff=512),
    _row("q7b-lora", "qwen2.5-7b", "lora", "mid"),
    _row("l8b-lora", "llama-3.1-8b", "lora", "mid"),
    _row("l8b-lora-eager-nogc", "llama-3.1-8b", "lora", "mid", gc=False, attention="eager", cutoff=512),
    _row("q7b-freeze-fused", "qwen2.5-7b", "freeze", "mid", optim="adamw_torch_fused"),
    # QLoRA (bitsandbytes NF4 stand-in, tuner.memory.trace.qlora)
    _row("q0.5b-qlora-b4", "qwen2.5-0.5b", "qlora", "small", batch=4, cutoff=512),
    _row("q1.5b-qlora-nogc", "qwen2.5-1.5b", "qlora", "small", gc=False),
    _row("q7b-qlora", "qwen2.5-7b", "qlora", "mid"),
    _row("l8b-qlora-nogc", "llama-3.1-8b", "qlora", "mid", gc=False, cutoff=512, rank=32),
    # 32B
    _row("q32b-lora", "qwen2.5-32b", "lora", "large"),
    _row("q32b-qlora", "qwen2.5-32b", "qlora", "large"),
    # no autocast (pure bf16, as under DeepSpeed's 16-bit engine), with transformers' loss and with a remote-code
    # loss on the 16-bit logits (Qwen-7B's modeling_qwen.py)
    _row("q0.5b-lora-pure", "qwen2.5-0.5b", "lora", "loss", precision="pure_bf16"),
    _row("q0.5b-lora-pure-loss16", "qwen2.5-0.5b", "lora", "loss", precision="pure_bf16", loss_upcast=False),
    _row("q0.5b-lora-loss16", "qwen2.5-0.5b", "lora", "loss", loss_upcast=False),
    _row("q1.5b-qlora-pure-loss16", "qwen2.5-1.5b", "qlora", "loss", precision="pure_bf16", loss_upcast=False, cutoff=2048),
    _row("q0.5b-full-pure-loss16", "qwen2.5-0.5b", "full", "loss", precision="pure_bf16", loss_upcast=False),
    # the loss by transformers release: 4.46-4.48 copy the shifted fp32 logits, 4.45 and older return fp32 logits
    _row("q0.5b-lora-shift-logits-b4", "qwen2.5-0.5b", "lora", "loss", loss_shift="logits", batch=4, cutoff=512),
    _row("l3b-lora-shift-logits-b1", "llama-3.2-3b", "lora", "loss", loss_shift="logits", cutoff=2048),
    _row("q1.5b-lora-shift-model-b2", "qwen2.5-1.5b", "lora", "loss", loss_shift="model", batch=2, cutoff=1024),
    # without autocast the forward's shifted copy has no autocast copies to point at its moment (found on a
    # published run: fms-acceleration's pure-bf16 Mistral-7B LoRA, benchmarks/estimator_published.py)
    _row("q0.5b-lora-pure-shift-logits-b2", "qwen2.5-0.5b", "lora", "loss", precision="pure_bf16", loss_shift="logits", batch=2),
    _row("q0.5b-full-pure-shift-logits-b2", "qwen2.5-0.5b", "full", "loss", precision="pure_bf16", loss_shift="logits", batch=2),
    # additional_target: PEFT modules_to_save copies of the embedding and head
    _row("q0.5b-lora-target-embed-head", "qwen2.5-0.5b", "lora", "target", additional_target=("embed_tokens", "lm_head")),
    _row("q0.5b-lora-target-embed-nogc", "qwen2.5-0.5b", "lora", "target", additional_target=("embed_tokens",), gc=False, cutoff=512),
    _row("l3b-lora-target-pure", "llama-3.2-3b", "lora", "target", additional_target=("embed_tokens", "lm_head"), precision="pure_bf16"),
    # upcast_layernorm: fp32 norm weights; with 4-bit layers the stream turns fp32
    _row("q0.5b-lora-uln", "qwen2.5-0.5b", "lora", "upcast", upcast_layernorm=True),
    _row("q1.5b-qlora-uln", "qwen2.5-1.5b", "qlora", "upcast", upcast_layernorm=True, cutoff=2048),
    _row("q1.5b-qlora-uln-nogc", "qwen2.5-1.5b", "qlora", "upcast", upcast_layernorm=True, gc=False),
    _row("qw3-4b-qlora-uln-b2", "qwen3-4b", "qlora", "upcast", upcast_layernorm=True, batch=2, cutoff=1024),
    _row("l8b-qlora-uln", "llama-3.1-8b", "qlora", "upcast", upcast_layernorm=True, rank=32, cutoff=4096),
    # DeepSpeed ZeRO-2 under bf16: the model side only (16-bit module, no autocast); the comparison is the
    # activation part, what the forward/backward adds to the resident bytes (ZeRO's own buffers are not traced)
    _row("q1.5b-lora-ds2", "qwen2.5-1.5b", "lora", "ds", zero_stage=2, cutoff=2048),
    _row("q1.5b-lora-ds2-nogc", "qwen2.5-1.5b", "lora", "ds", zero_stage=2, gc=False),
    _row("q0.5b-qlora-ds2-b2", "qwen2.5-0.5b", "qlora", "ds", zero_stage=2, batch=2),
    _row("l8b-lora-ds2-loss16", "llama-3.1-8b", "lora", "ds", zero_stage=2, loss_upcast=False, cutoff=4096),
    _row("l3b-lora-ds2-eager-nogc", "llama-3.2-3b", "lora", "ds", zero_stage=2, gc=False, attention="eager", cutoff=512),
    _row("q0.5b-freeze-ds2", "qwen2.5-0.5b", "freeze", "ds", zero_stage=2),
    # batch x length sweep
    *[
        _row(f"sweep-{m}-b{b}x{s}", "qwen2.5-0.5b", m, "sweep", batch=b, cutoff=s, optim="adamw_torch_fused")
        for m in ("lora", "full")
        for b in (1, 4)
        for s in (256, 2048)
    ],
]


def setup_for(row: dict[str, Any]) -> Any:
    from tuner.memory import TrainSetup
    from tuner.models.resolve import resolve_model

    return TrainSetup(
        arch=resolve_model(row["model"]).arch,
        finetuning_type="lora" if row["method"] == "qlora" else row["method"],
        quantization_bit=4 if row["method"] == "qlora" else None,
        lora_rank=int(row["rank"]),
        freeze_trainable_layers=2,
        batch_size=int(row["batch"]),
        cutoff_len=int(row["cutoff"]),
        gradient_checkpointing=bool(row["gc"]),
        attention=row["attention"],
        optim=row["optim"],
        precision=row["precision"],
        loss_upcast=bool(row["loss_upcast"]),
        loss_shift=str(row["loss_shift"]),
        additional_target=tuple(row["additional_target"]),
        upcast_layernorm=bool(row["upcast_layernorm"]),
        zero_stage=row["zero_stage"],
    )


def tensor_part(est: Any) -> float:
    """The estimator's peak minus what is not a live tensor."""
    return est.peak_bytes - sum(c.bytes for c in est.components if c.at_peak and c.key in OVERHEAD_KEYS)


def activation_part(est: Any) -> float:
    """Under DeepSpeed: what the estimator's forward/backward peak adds to the resident bytes."""
    return sum(c.bytes for c in est.components if c.at_peak and c.phase == "forward/backward")


def traced_activation_part(tr: Any, trainable_params: int) -> float:
    """The trace's peak minus the model, the batch and the stand-in optimizer's bf16 AdamW states (m and v), for a
    peak inside a forward or backward (where ZeRO's optimizer has not run yet in the step)."""
    return tr.peak_bytes - tr.model_bytes - trainable_params * 2 * 2


def run_row(row: dict[str, Any], snapshot: bool = False) -> dict[str, Any]:
    from tuner.memory import estimate
    from tuner.memory.trace import trace_step

    setup = setup_for(row)
    est = estimate(setup)
    t0 = time.time()
    ds = row["zero_stage"] is not None
    tr = trace_step(setup, snapshot=snapshot, deepspeed_module=ds)
    traced = traced_activation_part(tr, tr.trainable_params) if ds else tr.peak_bytes
    estimated = activation_part(est) if ds else tensor_part(est)
    out = dict(row)
    out.update(
        trace_bytes=traced, trace_phase=tr.peak_phase, estimate_bytes=estimated, estimate_phase=est.peak_phase,
        sim_allocated=tr.allocator_allocated, sim_reserved=tr.allocator_reserved, sim_in_use=tr.allocator_in_use,
        estimate_slack=est.bytes_of("allocator"),
        error_pct=100.0 * (estimated - traced) / traced, seconds=round(time.time() - t0, 1),
        trace=tr, estimate=est,
    )  # fmt: skip
    return out


def describe(row: dict[str, Any]) -> str:
    what = row["method"] + (f" r{row['rank']}" if row["method"] in ("lora", "qlora") else "")
    gc = "GC" if row["gc"] else "no GC"
    optim = "fused" if row["optim"].endswith("fused") else "foreach"
    extra = "".join((f", {row['precision']}" if row["precision"] != "bf16" else "",
                     f", ZeRO-{row['zero_stage']} (activation part)" if row["zero_stage"] is not None else "",
                     ", 16-bit loss" if not row["loss_upcast"] else "", ", upcast_layernorm" if row["upcast_layernorm"] else "",
                     f", loss shift {row['loss_shift']}" if row["loss_shift"] != "labels" else "",
                     f", additional_target {'+'.join(row['additional_target'])}" if row["additional_target"] else ""))
    return f"{what}, {gc}, {optim}, {row['attention']}, {row['batch']} x {row['cutoff']}{extra}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| setup | model | what | trace GiB | trace peak | estimator tensors GiB | estimator peak | error "
             "| allocator replay: allocated / in use / reserved GiB |",
             "|---|---|---|---:|---|---:|---|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['model']} | {describe(r)} | {r['trace_bytes'] / GIB:.3f} | {r['trace_phase']} | "
            f"{r['estimate_bytes'] / GIB:.3f} | {r['estimate_phase']} | {r['error_pct']:+.2f}% | "
            f"{r['sim_allocated'] / GIB:.3f} / {r['sim_in_use'] / GIB:.3f} / {r['sim_reserved'] / GIB:.3f} |"
        )
    errs = [abs(r["error_pct"]) for r in rows]
    if errs:
        lines.append("")
        lines.append(f"{len(errs)} setups: max |error| {max(errs):.2f}%, mean |error| {sum(errs) / len(errs):.2f}%, "
                     f"within 1%: {sum(1 for e in errs if e <= 1.0)}/{len(errs)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def explain(row: dict[str, Any]) -> str:
    r = run_row(row, snapshot=True)
    tr, est = r["trace"], r["estimate"]
    out = [f"{row['name']}: trace {tr.peak_bytes / MIB:.1f} MiB at {tr.peak_phase}; estimator tensors "
           f"{r['estimate_bytes'] / MIB:.1f} MiB at {est.peak_phase} ({r['error_pct']:+.2f}%)", "", "live at the trace's peak (MiB, by creator):"]  # fmt: skip
    for label, b in sorted(tr.at_peak.items(), key=lambda kv: -kv[1]):
        if b >= MIB / 10:
            out.append(f"  {b / MIB:10.2f}  {label}")
    out.append("")
    out.append("estimator components (MiB, * at its peak):")
    for c in est.components:
        out.append(f"  {c.bytes / MIB:10.2f} {'*' if c.at_peak else ' '} {c.key:22s} {c.phase:17s} {c.detail}")
    out.append("")
    out.append("trace phase peaks (MiB): " + ", ".join(f"{k} {v / MIB:.1f}" for k, v in tr.phase_peaks.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run only this setup (repeatable)")
    ap.add_argument("--group", action="append", default=[], help="run only this group: small, mid, large, sweep, loss, target, upcast, ds")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--explain", metavar="NAME", help="print where the bytes are for one setup")
    ap.add_argument("--list", action="store_true", help="print the matrix and exit")
    args = ap.parse_args(argv)

    by_name = {r["name"]: r for r in MATRIX}
    unknown = set(args.only) - set(by_name) | ({args.explain} - set(by_name) if args.explain else set())
    if unknown:
        print(f"estimator_vs_trace: unknown setup(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.explain:
        print(explain(by_name[args.explain]))
        return 0
    rows = [r for r in MATRIX if (not args.only or r["name"] in args.only) and (not args.group or r["group"] in args.group)]
    if args.list:
        for r in rows:
            print(f"{r['name']:24s} {r['group']:6s} {r['model']:14s} {describe(r)}")
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    done: list[dict[str, Any]] = []
    for row in rows:
        r = run_row(row)
        done.append(r)
        print(f"{r['name']}: trace {r['trace_bytes'] / GIB:.3f} GiB ({r['trace_phase']}), estimator "
              f"{r['estimate_bytes'] / GIB:.3f} GiB ({r['estimate_phase']}), {r['error_pct']:+.2f}%; allocator replay "
              f"{r['sim_allocated'] / GIB:.3f} / {r['sim_in_use'] / GIB:.3f} / {r['sim_reserved'] / GIB:.3f}, estimator "
              f"slack {r['estimate_slack'] / GIB:.3f} [{r['seconds']} s]", flush=True)  # fmt: skip
    print()
    print(markdown(done))
    if args.json:
        keep = [{k: v for k, v in r.items() if k not in ("trace", "estimate")} for r in done]
        args.json.write_text(json.dumps(keep, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
