"""What to change when a setup does not fit: candidate edits in order of cost, each with its predicted peak.

The order is what a user gives up least by: a shorter ``cutoff_len`` (when the data allows it), a smaller
per-device batch with more accumulation (same global batch, a little slower), bf16, gradient checkpointing,
Liger's fused kernels, ZeRO-3, CPU offload (slow), and last QLoRA (changes the model's numerics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.memory.constants import LIGER_MODEL_TYPES
from tuner.memory.estimator import MemoryEstimate, estimate
from tuner.memory.fit import max_batch_that_fits, max_cutoff_that_fits
from tuner.memory.setup import TrainSetup, ZeroConfig

#: LLaMA-Factory's shipped DeepSpeed configs (``examples/deepspeed/``), relative to its repository root.
DS_Z3 = "examples/deepspeed/ds_z3_config.json"
DS_Z3_OFFLOAD = "examples/deepspeed/ds_z3_offload_config.json"
#: What those files set: HF "auto" buckets, overlap_comm off.
LF_Z3 = ZeroConfig(reduce_bucket_size="auto", stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                   stage3_max_live_parameters=1e9, sub_group_size=1e9, overlap_comm=False)
LF_Z2 = ZeroConfig(reduce_bucket_size=5e8, allgather_bucket_size=5e8, overlap_comm=False)


@dataclass
class Change:
    """One candidate edit: YAML keys to set, how it changes a setup, and its estimate."""

    label: str
    edits: dict[str, Any]
    apply: Callable[[TrainSetup], TrainSetup]
    setup: TrainSetup
    estimate: MemoryEstimate | None = None
    needs_file: bool = False  # the edit names a DeepSpeed JSON the user must have
    structural: bool = True  # False for cutoff/batch, which are sized to fit

    @property
    def fits(self) -> bool:
        return bool(self.estimate and self.estimate.fits)

    def describe(self) -> str:
        peak = f" (peak {self.estimate.peak_gib:.1f} GiB)" if self.estimate else ""
        return f"{self.label}{peak}"


def _with(**changes: Any) -> Callable[[TrainSetup], TrainSetup]:
    def apply(s: TrainSetup) -> TrainSetup:
        return s.with_(**changes)

    return apply


def _zero3(s: TrainSetup, offload: bool) -> TrainSetup:
    return s.with_(zero_stage=3, zero=LF_Z3, offload_optimizer="cpu" if offload else None, offload_param="cpu" if offload else None)


def _structural(s: TrainSetup, hardware: Any) -> list[tuple[str, dict[str, Any], Callable[[TrainSetup], TrainSetup], bool]]:
    out: list[tuple[str, dict[str, Any], Callable[[TrainSetup], TrainSetup], bool]] = []
    if s.precision == "fp32":
        key = "bf16" if getattr(hardware, "bf16", True) else "fp16"
        out.append((f"{key}: true", {key: True}, _with(precision=key), False))
    if not s.gradient_checkpointing:
        out.append(("gradient checkpointing on (disable_gradient_checkpointing: false)", {"disable_gradient_checkpointing": False},
                    _with(gradient_checkpointing=True), False))
    if not s.liger and s.arch.model_type in LIGER_MODEL_TYPES:
        out.append(("enable_liger_kernel: true", {"enable_liger_kernel": True}, _with(liger=True), False))
    if s.world_size > 1 and s.zero_stage != 3:
        out.append((f"ZeRO-3 (deepspeed: {DS_Z3})", {"deepspeed": DS_Z3}, _with(zero_stage=3, zero=LF_Z3, offload_optimizer=None, offload_param=None), True))
    if not (s.zero_stage == 3 and s.offload_optimizer and s.offload_param):
        out.append((f"ZeRO-3 with CPU offload (deepspeed: {DS_Z3_OFFLOAD}; needs host RAM)", {"deepspeed": DS_Z3_OFFLOAD},
                    _with(zero_stage=3, zero=LF_Z3, offload_optimizer="cpu", offload_param="cpu"), True))
    if s.quantization_bit is None and not s.arch.quantization_config:
        if s.finetuning_type in ("lora", "oft"):
            out.append(("QLoRA (quantization_bit: 4)", {"quantization_bit": 4}, _with(quantization_bit=4), False))
        else:
            out.append(("QLoRA (finetuning_type: lora, quantization_bit: 4)", {"finetuning_type": "lora", "quantization_bit": 4},
                        _with(finetuning_type="lora", quantization_bit=4, use_badam=False, use_galore=False, use_apollo=False), False))
    return out


def _sized(s: TrainSetup, hardware: Any, ceiling: float) -> list[Change]:
    """Shorter cutoff_len and smaller batch (more accumulation), each sized to the largest that fits."""
    out: list[Change] = []
    floor = 64 if s.cutoff_len >= 128 else 1
    cut = max_cutoff_that_fits(s, hardware, ceiling=ceiling, limit=max(1, s.cutoff_len - 1), multiple=floor)
    if 1 <= cut < s.cutoff_len:
        out.append(Change(f"cutoff_len: {s.cutoff_len} -> {cut}", {"cutoff_len": cut}, _with(cutoff_len=cut),
                          s.with_(cutoff_len=cut), structural=False))
    if s.batch_size > 1:
        fit = max_batch_that_fits(s, hardware, ceiling=ceiling, limit=s.batch_size - 1)
        total = s.batch_size * s.gradient_accumulation_steps
        # the largest batch that fits and divides the per-device global batch, so nothing else changes
        b = next((d for d in range(fit, 0, -1) if total % d == 0), 0)
        if b >= 1:
            ga = total // b
            out.append(Change(
                f"per_device_train_batch_size: {s.batch_size} -> {b} with gradient_accumulation_steps: "
                f"{s.gradient_accumulation_steps} -> {ga} (same global batch)",
                {"per_device_train_batch_size": b, "gradient_accumulation_steps": ga},
                _with(batch_size=b, gradient_accumulation_steps=ga),
                s.with_(batch_size=b, gradient_accumulation_steps=ga),
                structural=False,
            ))
    return out


def candidate_changes(setup: TrainSetup, hardware: Any, ceiling: float = 0.90) -> list[Change]:
    """Every applicable single change, in order of cost, each estimated."""
    out = _sized(setup, hardware, ceiling)
    for label, edits, fn, needs_file in _structural(setup, hardware):
        out.append(Change(label, edits, fn, fn(setup), needs_file=needs_file))
    for c in out:
        c.estimate = estimate(c.setup, hardware, ceiling=ceiling)
    return out


def cheapest_changes(setup: TrainSetup, hardware: Any, ceiling: float = 0.90) -> tuple[list[Change], Change | None]:
    """The single changes that fit, cheapest first; when none does, a combination as the second value:
    the structural changes in order until it fits, then a smaller batch and cutoff if still needed."""
    candidates = candidate_changes(setup, hardware, ceiling)
    fitting = [c for c in candidates if c.fits]
    if fitting:
        return fitting, None
    s = setup
    labels: list[str] = []
    edits: dict[str, Any] = {}
    needs_file = False
    est = estimate(s, hardware, ceiling=ceiling)
    for c in candidates:
        if not c.structural:
            continue
        s = c.apply(s)
        labels.append(c.label)
        edits.update(c.edits)
        needs_file = needs_file or c.needs_file
        est = estimate(s, hardware, ceiling=ceiling)
        if est.fits:
            break
    if not est.fits:
        for c in _sized(s, hardware, ceiling):
            s = c.apply(s)
            labels.append(c.label)
            edits.update(c.edits)
            est = estimate(s, hardware, ceiling=ceiling)
            if est.fits:
                break
    if not labels:
        return [], None
    return [], Change("; ".join(labels), edits, _with(), s, est, needs_file)


def zero_options(setup: TrainSetup) -> list[tuple[str, TrainSetup]]:
    """DeepSpeed choices from cheapest to most sharded: none, ZeRO-1, ZeRO-2, ZeRO-3, ZeRO-3 + offload."""
    s = setup.with_(offload_optimizer=None, offload_param=None)
    return [
        ("no DeepSpeed", s.with_(zero_stage=None, zero=ZeroConfig())),
        ("ZeRO-1", s.with_(zero_stage=1, zero=LF_Z2)),
        ("ZeRO-2", s.with_(zero_stage=2, zero=LF_Z2)),
        ("ZeRO-3", _zero3(setup, False)),
        ("ZeRO-3 + CPU offload", _zero3(setup, True)),
    ]
