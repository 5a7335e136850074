"""Memory: predicted out-of-memory, ZeRO stage choice, ZeRO with LoRA, and host RAM for offload.

These rules need the GPU (``--hw``, ``--gpus``) and the model's architecture; they read the shared estimate
(``ctx.estimate``, :mod:`tuner.memory`), which is for the worst micro-batch: every sequence ``cutoff_len``
tokens long, at ``per_device_train_batch_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuner.config.context import Context
from tuner.lint.fixes import combine, set_key, yaml_scalar
from tuner.lint.rule import SkipRule, Finding, Fix, Need, Rule, Severity

GIB = 1024**3
_NEEDS = frozenset({Need.HARDWARE, Need.MODEL})
_LOCATE = ("per_device_train_batch_size", "cutoff_len", "model_name_or_path")


def _g(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.1f} GiB"


def _hw_name(ctx: Context) -> str:
    hw = ctx.hardware
    return str(getattr(hw, "display", None) or getattr(hw, "name", "the GPU"))


def _estimate(ctx: Context, setup: Any) -> Any:
    from tuner.memory.estimator import estimate

    return estimate(setup, ctx.hardware, ceiling=ctx.estimate.ceiling if ctx.estimate is not None else 0.90)


def _top(est: Any, n: int = 3) -> str:
    parts = sorted((c for c in est.at_peak() if c.phase != "overhead"), key=lambda c: -c.bytes)[:n]
    return ", ".join(f"{c.label} {_g(c.bytes)}" for c in parts)


def _edit_fix(ctx: Context, edits: dict[str, Any], description: str) -> Fix | None:
    return combine(description, [set_key(ctx, k, yaml_scalar(v), description, safe=False) for k, v in edits.items()], safe=False)


class PredictedOOM(Rule):
    """The predicted peak GPU memory per device is over the ceiling: the run will run out of memory.

    The estimate adds up weights, trainable copies, optimizer states, gradients, activations and the loss
    for the worst micro-batch (every sequence ``cutoff_len`` tokens long), on the GPU given with ``--hw``,
    against 90% of its memory (the rest is for the allocator's spikes and other processes). The message
    lists the changes that would fit, cheapest first, each with its predicted peak: a shorter
    ``cutoff_len``, a smaller batch with more gradient accumulation (same global batch), bf16, gradient
    checkpointing, Liger kernels, ZeRO-3, CPU offload, QLoRA.

    Bad:

    ```yaml
    # cfglint --hw h100
    model_name_or_path: meta-llama/Llama-3.1-8B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 16
    cutoff_len: 4096
    bf16: true
    ```

    Good:

    ```yaml
    # cfglint --hw h100
    model_name_or_path: meta-llama/Llama-3.1-8B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 4
    gradient_accumulation_steps: 4
    cutoff_len: 4096
    bf16: true
    ```
    """

    code = "MEM001"
    name = "predicted-oom"
    severity = Severity.ERROR
    needs = _NEEDS
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training:
            return
        est = ctx.estimate
        if est is None or est.fits is not False:
            return
        from tuner.memory.advice import cheapest_changes

        setup = est.setup
        fitting, combined = cheapest_changes(setup, ctx.hardware, est.ceiling)
        when = ""
        if est.peak_phase == "loading":
            # tuner.memory.loading: LLaMA-Factory's fp32 upcast of the trainable parameters, which DeepSpeed
            # ZeRO-0/1/2 undoes only when training starts
            when = " before the first step, while the model is loaded and its trainable parameters are upcast to fp32"
        message = (
            f"predicted peak {_g(est.peak_bytes)} per GPU{when} is over {est.ceiling:.0%} of the {_hw_name(ctx)} "
            f"({_g(est.ceiling_bytes)} of {_g(est.device_bytes)}): {_top(est)}"
        )
        fix: Fix | None = None
        key = "per_device_train_batch_size"
        if fitting:
            hint = "changes that fit, cheapest first: " + "; ".join(c.describe() for c in fitting)
            first = fitting[0]
            key = next(iter(first.edits))
            if not first.needs_file:
                fix = _edit_fix(ctx, first.edits, f"set {', '.join(f'{k}: {yaml_scalar(v)}' for k, v in first.edits.items())}")
        elif combined is not None and combined.fits:
            hint = f"no single change fits; together: {combined.describe()}"
        else:
            peak = f" (peak {combined.estimate.peak_gib:.1f} GiB)" if combined and combined.estimate else ""
            hint = f"even all of ZeRO-3, offload, QLoRA and the smallest batch and cutoff do not fit{peak}: use more GPUs or a smaller model"
        yield Finding(key=key, message=message, hint=hint, fix=fix, also=_LOCATE)


class ZeroStageMismatch(Rule):
    """The DeepSpeed ZeRO stage is too low for the model to fit, or higher than it needs.

    ZeRO-1 shards the optimizer states over the GPUs, ZeRO-2 also the gradients, ZeRO-3 also the weights;
    CPU offload moves states (and weights) to host RAM. Each step up saves GPU memory and costs
    communication: ZeRO-3 gathers every layer's weights in every forward and backward, offload copies
    states over PCIe every step and is several times slower. Use the lowest stage that fits.

    Bad:

    ```yaml
    # cfglint --hw h100
    model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 1
    cutoff_len: 1024
    bf16: true
    deepspeed:
      zero_optimization:
        stage: 3
        offload_optimizer: {device: cpu}
        offload_param: {device: cpu}
    ```

    Good:

    ```yaml
    # cfglint --hw h100
    model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 1
    cutoff_len: 1024
    bf16: true
    ```
    """

    code = "MEM002"
    name = "zero-stage-mismatch"
    severity = Severity.WARNING
    needs = _NEEDS
    fixable = "none"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.estimate is None:
            return
        from tuner.memory.advice import zero_options

        est = ctx.estimate
        setup = est.setup
        options = [(label, _estimate(ctx, s)) for label, s in zero_options(setup)]
        rank = {"no DeepSpeed": 0, "ZeRO-1": 1, "ZeRO-2": 2, "ZeRO-3": 3, "ZeRO-3 + CPU offload": 4}
        if setup.zero_stage is None:
            current = 0
        elif setup.offload_optimizer or setup.offload_param:
            current = 4
        else:
            current = max(0, min(3, setup.zero_stage))
        cur_label = ("no DeepSpeed" if setup.zero_stage is None else f"ZeRO-{setup.zero_stage}") + (
            " + offload" if current == 4 else "")
        key = "deepspeed" if ctx.has("deepspeed") else "model_name_or_path"
        if est.fits is False:
            higher = [(lbl, e) for lbl, e in options if rank[lbl] > current and e.fits]
            if higher:
                lbl, e = higher[0]
                yield Finding(
                    key=key,
                    message=f"{cur_label} is too low for this model on {setup.world_size} x {_hw_name(ctx)}: predicted peak "
                    f"{_g(est.peak_bytes)} per GPU is over the {_g(est.ceiling_bytes)} ceiling; {lbl} fits at {_g(e.peak_bytes)}",
                    hint=f"use {lbl}" + ("" if setup.world_size > 1 or rank[lbl] == 4 else " (ZeRO shards over GPUs: with one GPU only offload helps)"),
                    also=_LOCATE,
                )
            return
        if current >= 3 and est.fits:
            lower = [(lbl, e) for lbl, e in options if rank[lbl] < current and e.fits and (e.headroom_bytes or 0) > 0.05 * (e.device_bytes or 0)]
            if lower:
                lbl, e = lower[0]
                cost = "CPU offload copies states over PCIe every step" if current == 4 else "ZeRO-3 gathers every layer's weights in each forward and backward"
                yield Finding(
                    key=key,
                    message=f"{cur_label} is more than this run needs: {lbl} fits at {_g(e.peak_bytes)} per GPU "
                    f"(headroom {_g(e.headroom_bytes)}); {cost}",
                    hint="drop `deepspeed` (plain data parallel) for a faster run" if lbl == "no DeepSpeed" else f"use {lbl} for a faster run",
                    severity=Severity.INFO,
                    also=_LOCATE,
                )


class ZeroWithLora(Rule):
    """ZeRO-1/2 with LoRA saves almost no memory: the frozen base weights are not sharded.

    ZeRO-1 and ZeRO-2 shard only optimizer states and gradients, and with LoRA those belong to the adapters,
    a fraction of a percent of the model. The frozen weights, usually most of the memory, stay replicated on
    every GPU; the ZeRO reduce bucket can even cost more than the sharding saves. Use ZeRO-3 to shard the
    frozen weights, or plain data parallel without DeepSpeed.

    Bad:

    ```yaml
    # cfglint --hw h100 --gpus 8
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 1
    cutoff_len: 2048
    bf16: true
    deepspeed:
      zero_optimization: {stage: 2}
    ```

    Good:

    ```yaml
    # cfglint --hw h100 --gpus 8
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 1
    cutoff_len: 2048
    bf16: true
    deepspeed:
      zero_optimization: {stage: 3}
    ```
    """

    code = "MEM003"
    name = "zero12-with-lora"
    severity = Severity.INFO
    needs = _NEEDS
    fixable = "none"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.estimate is None:
            return
        est = ctx.estimate
        s = est.setup
        if s.finetuning_type not in ("lora", "oft") or s.zero_stage not in (1, 2):
            return
        from tuner.memory.advice import zero_options

        opts = dict(zero_options(s))
        ddp = _estimate(ctx, opts["no DeepSpeed"])
        z3 = _estimate(ctx, opts["ZeRO-3"])
        saved = ddp.peak_bytes - est.peak_bytes
        if saved > max(GIB, 0.05 * est.peak_bytes):
            return
        frozen = est.bytes_of("weights_frozen") + est.bytes_of("weights_quantized")
        effect = f"saves only {_g(saved)}" if saved >= 0 else f"costs {_g(-saved)} more (its reduce bucket)"
        yield Finding(
            key="deepspeed",
            message=f"ZeRO-{s.zero_stage} with {'LoRA' if s.finetuning_type == 'lora' else 'OFT'} {effect} per GPU: it shards only the adapters' "
            f"states; the {_g(frozen)} of frozen weights stay on every GPU",
            hint=f"use ZeRO-3 to shard the frozen weights (predicted peak {_g(z3.peak_bytes)} on {s.world_size} GPUs), "
            f"or drop `deepspeed` for plain data parallel ({_g(ddp.peak_bytes)})",
            also=_LOCATE,
        )


class OffloadHostRam(Rule):
    """CPU offload needs more host RAM than the machine has: the host runs out of memory.

    With ``offload_optimizer`` DeepSpeed keeps the fp32 master weights, the optimizer states and fp32
    gradients in pinned host memory (16 B per trainable parameter for AdamW, shared by the GPUs of a node,
    plus pinned staging buffers); ``offload_param`` adds the 16-bit weights. When that exceeds the RAM the
    kernel's OOM killer ends the run (``exitcode -9``), often only after the model has loaded. The check
    needs the host's RAM per node (``--host-ram GIB``, or ``host-ram-gib`` in the settings); without it the
    rule stays silent.

    Bad:

    ```yaml
    # cfglint --hw h100 --gpus 1 --host-ram 256
    model_name_or_path: Qwen/Qwen2.5-72B-Instruct
    stage: sft
    do_train: true
    finetuning_type: full
    per_device_train_batch_size: 1
    cutoff_len: 2048
    bf16: true
    deepspeed:
      zero_optimization:
        stage: 3
        offload_optimizer: {device: cpu}
        offload_param: {device: cpu}
    ```

    Good:

    ```yaml
    # cfglint --hw h100 --gpus 1 --host-ram 256
    model_name_or_path: Qwen/Qwen2.5-72B-Instruct
    stage: sft
    do_train: true
    finetuning_type: lora
    per_device_train_batch_size: 1
    cutoff_len: 2048
    bf16: true
    deepspeed:
      zero_optimization:
        stage: 3
        offload_optimizer: {device: cpu}
        offload_param: {device: cpu}
    ```
    """

    code = "MEM004"
    name = "offload-exceeds-host-ram"
    severity = Severity.ERROR
    needs = _NEEDS
    fixable = "none"

    #: Leave this much of the host's RAM to the OS, page cache and data loading.
    HOST_CEILING = 0.90

    def check(self, ctx: Context) -> Iterator[Finding]:
        ram = ctx.options.host_ram_gib
        if not ctx.is_training or ctx.estimate is None:
            return
        if ram is None:
            s0 = ctx.estimate.setup
            if s0.offload_optimizer or s0.offload_param:
                raise SkipRule("host RAM unknown: pass --host-ram GIB to check the offload's host-RAM need")
            return
        est = ctx.estimate
        s = est.setup
        if not (s.offload_optimizer or s.offload_param or s.unsloth_gc):
            return
        limit = ram * GIB * self.HOST_CEILING
        if est.host_ram_bytes <= limit:
            return
        parts = ", ".join(f"{c.label} {_g(c.bytes)}" for c in sorted(est.host_components, key=lambda c: -c.bytes))
        hint = "add nodes (offloaded states are split over all ranks), offload only the optimizer, or use LoRA"
        if s.offload_param:
            no_param = _estimate(ctx, s.with_(offload_param=None))
            if no_param.host_ram_bytes <= limit:
                hint = f"keep offload_optimizer but drop offload_param (host {_g(no_param.host_ram_bytes)}, GPU peak {_g(no_param.peak_bytes)})"
        yield Finding(
            key="deepspeed",
            message=f"offload needs about {_g(est.host_ram_bytes)} of host RAM per node ({s.ranks_per_node} rank(s)): {parts}; "
            f"the host has {ram:g} GiB ({self.HOST_CEILING:.0%} usable: {_g(limit)})",
            hint=hint,
            also=_LOCATE,
        )
