#!/usr/bin/env python
"""Measure the memory estimator against real training steps on this machine's GPU.

    python benchmarks/estimator_accuracy.py --out DIR [--only NAME ...] [--steps 3] [--list]

For each configuration of the matrix below, a fresh subprocess builds a random-weight model of the catalog
architecture directly on the GPU (no download), sets it up the way LLaMA-Factory does (LoRA through PEFT with
fp32 adapters, QLoRA with bitsandbytes NF4 + double quantization, freeze = the last 2 layers, full = every
parameter upcast to fp32; LLaMA-Factory's gradient checkpointing, which checkpoints only layers that have
trainable parameters, reentrant), and runs a few optimizer steps the way the HF Trainer does (bf16
autocast around forward and loss, foreach AdamW, ``zero_grad(set_to_none=True)``) on a worst-case padded
batch: one sequence ``cutoff_len`` long, the others one token shorter. It records

* ``torch.cuda.max_memory_reserved()`` and ``max_memory_allocated()`` over the steps, and
* what NVML sees for the process (context, cuBLAS workspaces, NCCL: everything outside PyTorch's allocator),

and compares ``peak reserved + outside-PyTorch`` with :func:`tuner.memory.estimate`. It writes
``DIR/results.json`` and ``DIR/results.md`` (a table with the error in percent) and prints the table.
Without CUDA it says so, writes ``{"skipped": ...}`` and exits 0. torch, transformers, peft and
bitsandbytes are imported only in the measuring subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GIB = 1024**3

#: The matrix: 0.5B-8B, full/freeze/LoRA/QLoRA, checkpointing on and off, batch 1-8, cutoff 512-4096. Sized so
#: that every row fits an 80 GB GPU; on a smaller one the rows that do not fit are recorded as OOM and
#: compared with the estimator's verdict. ``requires`` names an optional package the row needs.
MATRIX: list[dict[str, Any]] = [
    {"name": "q0.5b-full-gc", "model": "qwen2.5-0.5b", "method": "full", "gc": True, "batch": 4, "cutoff": 1024},
    {"name": "q0.5b-full-nogc", "model": "qwen2.5-0.5b", "method": "full", "gc": False, "batch": 2, "cutoff": 512},
    {"name": "q0.5b-lora-eager", "model": "qwen2.5-0.5b", "method": "lora", "rank": 8, "gc": False, "batch": 2, "cutoff": 1024, "attention": "eager"},
    {"name": "l1b-full-gc", "model": "llama-3.2-1b", "method": "full", "gc": True, "batch": 2, "cutoff": 2048},
    {"name": "q1.5b-lora-gc-b8", "model": "qwen2.5-1.5b", "method": "lora", "rank": 8, "gc": True, "batch": 8, "cutoff": 2048},
    {"name": "q1.5b-lora-nogc", "model": "qwen2.5-1.5b", "method": "lora", "rank": 16, "gc": False, "batch": 2, "cutoff": 1024},
    {"name": "q1.5b-freeze-gc", "model": "qwen2.5-1.5b", "method": "freeze", "gc": True, "batch": 4, "cutoff": 2048},
    {"name": "qw3-1.7b-full-gc", "model": "qwen3-1.7b", "method": "full", "gc": True, "batch": 1, "cutoff": 4096},
    {"name": "q3b-freeze-nogc", "model": "qwen2.5-3b", "method": "freeze", "gc": False, "batch": 1, "cutoff": 2048},
    {"name": "l3b-lora-gc", "model": "llama-3.2-3b", "method": "lora", "rank": 8, "gc": True, "batch": 4, "cutoff": 4096},
    {"name": "l3b-qlora-gc", "model": "llama-3.2-3b", "method": "qlora", "rank": 16, "gc": True, "batch": 2, "cutoff": 4096},
    {"name": "qw3-4b-lora-nogc", "model": "qwen3-4b", "method": "lora", "rank": 8, "gc": False, "batch": 1, "cutoff": 2048},
    {"name": "q7b-lora-gc", "model": "qwen2.5-7b", "method": "lora", "rank": 8, "gc": True, "batch": 2, "cutoff": 4096},
    {"name": "q7b-qlora-gc", "model": "qwen2.5-7b", "method": "qlora", "rank": 8, "gc": True, "batch": 4, "cutoff": 2048},
    {"name": "l8b-qlora-gc", "model": "llama-3.1-8b", "method": "qlora", "rank": 32, "gc": True, "batch": 1, "cutoff": 4096},
    {"name": "l8b-lora-gc-b8", "model": "llama-3.1-8b", "method": "lora", "rank": 16, "gc": True, "batch": 8, "cutoff": 512},
    {"name": "q1.5b-lora-fa2", "model": "qwen2.5-1.5b", "method": "lora", "rank": 8, "gc": False, "batch": 4, "cutoff": 2048,
     "attention": "fa2", "requires": "flash_attn"},
]


# -- the prediction (no torch needed) -----------------------------------------------------------------------


def setup_for(cfg: dict[str, Any]) -> Any:
    from tuner.memory import TrainSetup
    from tuner.models.resolve import resolve_model

    method = cfg["method"]
    return TrainSetup(
        arch=resolve_model(cfg["model"]).arch,
        finetuning_type="lora" if method in ("lora", "qlora") else method,
        lora_rank=int(cfg.get("rank", 8)),
        quantization_bit=4 if method == "qlora" else None,
        freeze_trainable_layers=2,
        batch_size=int(cfg["batch"]),
        cutoff_len=int(cfg["cutoff"]),
        gradient_checkpointing=bool(cfg["gc"]),
        attention=cfg.get("attention", "sdpa"),
        optim="adamw_torch",
        precision="bf16",
    )


def predict(cfg: dict[str, Any]) -> dict[str, Any]:
    from tuner.memory import estimate

    est = estimate(setup_for(cfg))
    # The GPU has room to spare: max_memory_reserved keeps the allocator's cache, which the fit peak leaves out.
    return {
        "predicted_total": est.device_used_bytes,
        "predicted_fit_peak": est.peak_bytes,
        "predicted_reserved": est.reserved_bytes,
        "predicted_allocated": est.allocated_bytes,
        "predicted_phase": est.peak_phase,
        "predicted_components": {c.key: c.bytes for c in est.components if c.at_peak},
    }


# -- the measurement (in a subprocess, with torch) ----------------------------------------------------------


def _physical_index() -> int:
    vis = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(vis) if vis.isdigit() else 0


def _nvml_used() -> int | None:
    """Memory in use on the device as NVML sees it (None without pynvml)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(_physical_index())
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # noqa: BLE001 - no NVML, no driver, no permission: measure without it
        return None


def _nvml_process_used() -> int | None:
    """This process's memory as NVML lists it (None in PID namespaces where it is not listed)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(_physical_index())
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory:
                return int(p.usedGpuMemory)
    except Exception:  # noqa: BLE001 - as above
        return None
    return None


def _hf_config(arch: Any) -> Any:
    from transformers import AutoConfig

    fields: dict[str, Any] = {
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_hidden_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_key_value_heads,
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": max(arch.max_position_embeddings, 8192),
        "tie_word_embeddings": arch.tie_word_embeddings,
        "rms_norm_eps": 1e-6,
        "use_cache": False,
    }
    if arch.head_dim:
        fields["head_dim"] = arch.head_dim
    if arch.model_type == "llama":
        fields["attention_bias"] = arch.attention_bias
        fields["mlp_bias"] = arch.mlp_bias
    if arch.model_type not in ("llama", "qwen2", "qwen3"):
        raise ValueError(f"the benchmark builds llama, qwen2 and qwen3 models, not {arch.model_type}")
    return AutoConfig.for_model(arch.model_type, **fields)


def _quantize_decoder_linears(model: Any) -> None:
    """Replace every decoder nn.Linear with a bitsandbytes NF4 Linear4bit (double quant, bf16 compute), as
    ``from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))`` would load it."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in list(layer.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is not torch.nn.Linear:
                    continue
                q = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=child.bias is not None,
                    compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4", device="meta",
                )  # fmt: skip
                q.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
                ).to("cuda")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, child_name, q)
                del child
    try:
        model.is_loaded_in_4bit = True  # PEFT then dispatches its bnb LoRA layer
    except AttributeError:
        pass
    torch.cuda.empty_cache()


def _lf_gradient_checkpointing(model: Any) -> None:
    """LLaMA-Factory's ``get_custom_gradient_checkpointing_func``: reentrant checkpoints, only for layers that
    have trainable parameters, with the hidden states marked as requiring grad."""
    from functools import partial

    import torch
    from torch.utils.checkpoint import checkpoint

    def owner(func: Any) -> Any:
        """The layer a checkpointed call belongs to: a bound method, or (transformers 5) ``partial(forward, self)``."""
        if isinstance(func, partial):
            bound = getattr(func.func, "__self__", None)
            if bound is not None:
                return bound
            return next((a for a in func.args if isinstance(a, torch.nn.Module)), None)
        return getattr(func, "__self__", None)

    def custom(func: Any, *args: Any, **kwargs: Any) -> Any:
        module = owner(func)
        if module is None or any(p.requires_grad for p in module.parameters()):
            for arg in args:
                if torch.is_tensor(arg) and torch.is_floating_point(arg):
                    arg.requires_grad_(True)
                    break
            return checkpoint(func, *args, use_reentrant=True, **kwargs)
        return func(*args, **kwargs)

    try:
        model._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=custom)
    except TypeError:  # an older transformers without the functional form
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()


def build(cfg: dict[str, Any], device: str = "cuda") -> tuple[Any, Any, int]:
    """The model of ``cfg`` set up as LLaMA-Factory would train it, its optimizer, and the trainable count."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuner.models.resolve import resolve_model

    arch = resolve_model(cfg["model"]).arch if isinstance(cfg["model"], str) else cfg["model"]
    attention = {"sdpa": "sdpa", "eager": "eager", "fa2": "flash_attention_2"}[cfg.get("attention", "sdpa")]
    hf_cfg = _hf_config(arch)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16, attn_implementation=attention)
        except TypeError:  # transformers 4.x
            model = AutoModelForCausalLM.from_config(hf_cfg, torch_dtype=torch.bfloat16, attn_implementation=attention)
    model.config.use_cache = False
    method = cfg["method"]
    L = arch.num_hidden_layers
    if method == "qlora":
        _quantize_decoder_linears(model)
    for p in model.parameters():
        p.requires_grad_(method == "full")
    if method == "freeze":
        for name, p in model.named_parameters():
            if f".layers.{L - 1}." in name or f".layers.{L - 2}." in name:
                p.requires_grad_(True)
    if cfg["gc"]:
        _lf_gradient_checkpointing(model)
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        rank = int(cfg.get("rank", 8))
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"))
    for p in model.parameters():  # LLaMA-Factory: cast_trainable_params_to_fp32
        if p.requires_grad:
            p.data = p.data.to(torch.float32)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    return model, optimizer, trainable


def batch(cfg: dict[str, Any], vocab_size: int, device: str = "cuda") -> dict[str, Any]:
    """A worst-case padded batch: one sequence ``cutoff`` long, the others one token shorter."""
    import torch

    b, s = int(cfg["batch"]), int(cfg["cutoff"])
    gen = torch.Generator(device=device).manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (b, s), device=device, generator=gen)
    attention_mask = torch.ones_like(input_ids)
    if b > 1:
        attention_mask[1:, -1] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": input_ids.masked_fill(attention_mask == 0, -100)}


def train_steps(model: Any, optimizer: Any, inputs: dict[str, Any], steps: int, device_type: str = "cuda") -> None:
    """What the HF Trainer does per step with bf16 and no accumulation."""
    import torch

    for _ in range(steps):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = model(**inputs)
            loss = out.loss
        del out  # the Trainer keeps only the loss from compute_loss
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        del loss


def measure(cfg: dict[str, Any], steps: int) -> dict[str, Any]:
    """Build, set up and train one configuration on the GPU; return peak memory figures. Runs in its own process."""
    baseline = _nvml_used()
    import gc

    import torch
    import transformers

    from tuner.models.resolve import resolve_model

    torch.cuda.init()
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    after_init = _nvml_used()
    context = None if baseline is None or after_init is None else after_init - baseline - torch.cuda.memory_reserved()

    model, optimizer, trainable = build(cfg)
    inputs = batch(cfg, resolve_model(cfg["model"]).arch.vocab_size)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    status = "ok"
    error = None
    t0 = time.time()
    try:
        train_steps(model, optimizer, inputs, steps)
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as exc:
        status, error = "oom", str(exc).splitlines()[0]
    seconds = time.time() - t0
    reserved_now = torch.cuda.memory_reserved()
    used_now = _nvml_used()
    process_used = _nvml_process_used()
    if process_used is None and used_now is not None and baseline is not None:
        process_used = used_now - baseline
    if process_used is None:
        free, total = torch.cuda.mem_get_info()
        process_used = total - free
    outside = max(0, process_used - reserved_now)
    import peft

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    try:
        import bitsandbytes

        versions["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    return {
        "status": status,
        "error": error,
        "trainable_params": trainable,
        "max_reserved": torch.cuda.max_memory_reserved(),
        "max_allocated": torch.cuda.max_memory_allocated(),
        "outside_pytorch": outside,
        "measured_total": torch.cuda.max_memory_reserved() + outside,
        "cuda_context": context,
        "seconds": round(seconds, 2),
        "device": torch.cuda.get_device_name(0),
        "device_total": torch.cuda.get_device_properties(0).total_memory,
        "versions": versions,
    }


# -- the driver ---------------------------------------------------------------------------------------------


def _cuda_available() -> str | None:
    """None when a CUDA device is usable, else why not (checked in a subprocess: torch stays out of here)."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run Python to probe CUDA: {exc}"
    if r.returncode == 3:
        return "torch sees no CUDA device"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["torch is not installed"])[-1]
        return f"torch is not usable: {last}"
    return None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_one_in_subprocess(cfg: dict[str, Any], steps: int, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg), "--steps", str(steps)]
    env = dict(os.environ)
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "")  # the estimator's default: no expandable segments
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result in {timeout} s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "crash", "error": tail[:300]}


def _fmt_gib(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = ("| config | model | method | GC | attention | batch x len | predicted GiB | measured GiB | reserved GiB "
            "| allocated GiB | outside PyTorch GiB | error % | status |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        err = "-" if r.get("error_pct") is None else f"{r['error_pct']:+.1f}"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['method']}{' r' + str(r['rank']) if r.get('rank') else ''} | "
            f"{'on' if r['gc'] else 'off'} | {r.get('attention', 'sdpa')} | {r['batch']} x {r['cutoff']} | "
            f"{_fmt_gib(r.get('predicted_total'))} | {_fmt_gib(r.get('measured_total'))} | {_fmt_gib(r.get('max_reserved'))} | "
            f"{_fmt_gib(r.get('max_allocated'))} | {_fmt_gib(r.get('outside_pytorch'))} | {err} | {r['status']} |"
        )
    lines.append("")
    if summary.get("n"):
        lines.append(
            f"{summary['n']} configurations measured: mean |error| {summary['mean_abs_error_pct']:.1f} %, "
            f"max |error| {summary['max_abs_error_pct']:.1f} %, within 10 %: {summary['within_10pct']}/{summary['n']}. "
            "Error = (predicted - measured) / measured; measured = max_memory_reserved + what NVML sees outside PyTorch."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="directory for results.json and results.md")
    ap.add_argument("--only", action="append", default=[], help="run only this configuration (repeatable)")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per configuration (>= 2: states exist from step 2)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    ap.add_argument("--list", action="store_true", help="print the matrix and the predictions, then exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:  # the measuring subprocess
        cfg = json.loads(args.one)
        try:
            result = measure(cfg, max(1, args.steps))
        except Exception as exc:  # noqa: BLE001 - report, do not hide: the driver records it as a crash with this line
            result = {"status": "crash", "error": f"{type(exc).__name__}: {exc}"[:300]}
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    matrix = [c for c in MATRIX if not args.only or c["name"] in args.only]
    unknown = set(args.only) - {c["name"] for c in MATRIX}
    if unknown:
        print(f"estimator_accuracy: unknown configuration(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.list:
        for c in matrix:
            p = predict(c)
            print(f"{c['name']:22s} {c['model']:14s} {c['method']:7s} predicted {p['predicted_total'] / GIB:7.2f} GiB ({p['predicted_phase']})")
        return 0
    if args.out is None:
        ap.error("--out DIR is required")
    args.out.mkdir(parents=True, exist_ok=True)

    why_not = _cuda_available()
    if why_not:
        print(f"estimator_accuracy: skipped: {why_not}")
        (args.out / "results.json").write_text(json.dumps({"skipped": why_not}, indent=2) + "\n")
        return 0

    rows: list[dict[str, Any]] = []
    for cfg in matrix:
        row = dict(cfg)
        if cfg.get("requires") and not _has(cfg["requires"]):
            row.update(status="skipped", error=f"needs {cfg['requires']}")
            rows.append(row)
            print(f"{cfg['name']}: skipped (needs {cfg['requires']})", flush=True)
            continue
        row.update(predict(cfg))
        row.update(run_one_in_subprocess(cfg, args.steps, args.timeout))
        if row.get("status") == "ok" and row.get("measured_total"):
            row["error_pct"] = 100.0 * (row["predicted_total"] - row["measured_total"]) / row["measured_total"]
        elif row.get("status") == "oom":
            row["predicted_fits_device"] = row["predicted_total"] <= row.get("device_total", 0)
        rows.append(row)
        err = f"{row['error_pct']:+.1f} %" if row.get("error_pct") is not None else row.get("error") or ""
        print(f"{cfg['name']}: {row['status']} predicted {_fmt_gib(row.get('predicted_total'))} GiB, "
              f"measured {_fmt_gib(row.get('measured_total'))} GiB {err}", flush=True)

    errors = [abs(r["error_pct"]) for r in rows if r.get("error_pct") is not None]
    summary = {
        "n": len(errors),
        "mean_abs_error_pct": sum(errors) / len(errors) if errors else None,
        "max_abs_error_pct": max(errors) if errors else None,
        "within_10pct": sum(1 for e in errors if e <= 10),
        "ooms": [r["name"] for r in rows if r.get("status") == "oom"],
        "failed": [r["name"] for r in rows if r.get("status") in ("crash", "timeout")],
    }
    env = next((r.get("versions") for r in rows if r.get("versions")), {})
    device = next((r.get("device") for r in rows if r.get("device")), None)
    payload = {"device": device, "versions": env, "python": platform.python_version(), "steps": args.steps,
               "summary": summary, "results": rows}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md = f"# Estimator accuracy on {device}\n\n" + markdown(rows, summary)
    (args.out / "results.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
