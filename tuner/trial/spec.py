"""What one tuning trial runs and what it measured. Both cross a process boundary as JSON.

A trial runs in its own process (``python -m tuner.trial.worker``, or torchrun for several GPUs) so that an
OOM, a crash or a hang cannot take the study down, and the GPU memory is freed when the process is gone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tuner.models.arch import Architecture
from tuner.trial.stats import Measurement

#: Trial outcomes. Only "ok" is feasible; everything else is recorded with its reason and the study goes on.
STATUSES = ("ok", "oom", "over_budget", "crash", "timeout", "error")


@dataclass
class TrialSpec:
    arch: Architecture
    model_name: str = "model"
    finetuning_type: str = "lora"  # lora | freeze | full
    lora_rank: int = 16
    lora_alpha: int | None = None  # None: 2 x rank, as LLaMA-Factory defaults it
    lora_target: str = "all"
    lora_dropout: float = 0.0
    use_dora: bool = False
    additional_target: str = ""  # comma-separated modules trained in full next to LoRA (PEFT modules_to_save)
    freeze_trainable_layers: int = 2
    quantization_bit: int | None = None  # 4/8: QLoRA via bitsandbytes where available
    upcast_layernorm: bool = False  # LLaMA-Factory's upcast_layernorm: norm weights in fp32
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    cutoff_len: int = 2048
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    liger: bool = False
    precision: str = "bf16"  # bf16 | fp16 | fp32 | pure_bf16
    optim: str = "adamw_torch"
    zero_stage: int | None = None  # None: no DeepSpeed
    offload_optimizer: bool = False
    offload_param: bool = False
    world_size: int = 1
    device: str = "cuda"  # cuda | cpu
    warmup_steps: int = 1  # leading steps always skipped; slower ones after them are detected and skipped too
    measure_steps: int = 5  # measured steps at least (fewer give no usable spread)
    target_rel_ci: float = 0.02  # measure until the 95% interval of tokens/s is within this fraction of the median
    measure_time_s: float = 30.0  # ... or until the steps have taken this long (after the minimum)
    max_steps: int = 200  # ... or this many steps
    memory_limit_bytes: int | None = None  # the ceiling the trial is judged against
    seed: int = 0

    @property
    def additional_target_names(self) -> tuple[str, ...]:
        """``additional_target`` as module names (it is stored comma-separated, as LLaMA-Factory takes it)."""
        return tuple(n.strip() for n in self.additional_target.split(",") if n.strip())

    @property
    def effective_lora_alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha else 2 * self.lora_rank

    @property
    def tokens_per_micro_step(self) -> int:
        """Worst case: every sequence is a full ``cutoff_len`` long, on every rank."""
        return self.per_device_train_batch_size * self.cutoff_len * self.world_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch"] = asdict(self.arch)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialSpec:
        d = dict(d)
        arch = dict(d.pop("arch"))
        arch["architectures"] = tuple(arch.get("architectures", ()))
        names = {f.name for f in fields(cls)}
        return cls(arch=Architecture(**arch), **{k: v for k, v in d.items() if k in names})

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, path: Path) -> TrialSpec:
        return cls.from_dict(json.loads(path.read_text()))


@dataclass
class TrialResult:
    status: str  # one of STATUSES
    reason: str = ""
    #: The figure feasibility is judged on: on CUDA the larger of torch's peak reserved memory and the
    #: NVML-observed process total (CUDA context and non-PyTorch allocations count); on CPU the peak RSS.
    peak_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    nvml_bytes: int | None = None
    peak_rss_bytes: int | None = None
    micro_step_s: float | None = None  # median forward+backward time of one micro-batch
    optimizer_step_s: float | None = None  # median optimizer.step() + zero_grad time
    trainable_params: int | None = None
    total_params: int | None = None
    device_name: str = ""
    wall_s: float = 0.0
    #: tokens/s per optimizer step after the warm-up: median, interval, samples (a :class:`Measurement` as a dict)
    throughput: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.status == "ok"

    def measurement(self, spec: TrialSpec) -> Measurement | None:
        """Tokens/s with its interval; a result without per-step samples (an older study's) is taken as exact."""
        if self.throughput:
            try:
                return Measurement.from_dict(self.throughput)
            except (KeyError, TypeError, ValueError):
                pass
        tps = self.tokens_per_s(spec)
        return Measurement.exactly(tps) if tps else None

    def step_time(self, grad_accum: int) -> float | None:
        """Seconds per optimizer step at a gradient accumulation: GA micro-steps and one optimizer step."""
        if self.micro_step_s is None or self.optimizer_step_s is None:
            return None
        return grad_accum * self.micro_step_s + self.optimizer_step_s

    def tokens_per_s(self, spec: TrialSpec, grad_accum: int | None = None) -> float | None:
        """Throughput over all ranks at a gradient accumulation (default: the spec's)."""
        ga = grad_accum or spec.gradient_accumulation_steps
        t = self.step_time(ga)
        if not t:
            return None
        return spec.tokens_per_micro_step * ga / t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, path: Path) -> TrialResult:
        return cls.from_dict(json.loads(path.read_text()))
