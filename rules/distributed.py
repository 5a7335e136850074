"""DeepSpeed: the JSON a config names, how it agrees with the YAML, and how the run must be launched.

Findings about JSON keys carry ``in_deepspeed=True`` so the report points into the JSON file (or at the
``deepspeed:`` key when the YAML gives the config inline). What transformers fills from ``"auto"`` and which
hard-coded values it compares follow ``transformers/integrations/deepspeed.py`` (``HfTrainerDeepSpeedConfig``)
and accelerate's ``DeepSpeedPlugin``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuner.config.deepspeed import DeepSpeedConfig
from tuner.config.context import Context
from tuner.lint.rule import Edit, Finding, Fix, Need, Rule, Severity, SkipRule, is_number

#: ``"auto"`` values transformers' Trainer fills from TrainingArguments or the model's hidden size.
FILLED_BY_TRAINER = frozenset({
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping",
    "optimizer.params.lr", "optimizer.params.betas", "optimizer.params.eps", "optimizer.params.weight_decay",
    "scheduler.params.warmup_min_lr", "scheduler.params.warmup_max_lr", "scheduler.params.total_num_steps",
    "scheduler.params.warmup_num_steps", "fp16.enabled", "bf16.enabled", "zero_optimization.reduce_bucket_size",
    "zero_optimization.stage3_prefetch_bucket_size", "zero_optimization.stage3_param_persistence_threshold",
})  # fmt: skip
#: Filled only by transformers 4.x (the apex path was removed in 5.x).
FILLED_BY_TRAINER_4 = frozenset({"amp.enabled", "amp.opt_level"})
#: ``"auto"`` values accelerate fills from its environment defaults, whatever the YAML says (reported elsewhere).
FILLED_BY_ACCELERATE = {
    "zero_optimization.stage": "2 (ACCELERATE_DEEPSPEED_ZERO_STAGE, default 2)",
    "zero_optimization.offload_optimizer.device": "`none` (ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE)",
    "zero_optimization.offload_param.device": "`none` (ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE)",
    "zero_optimization.offload_optimizer.nvme_path": "`none`",
    "zero_optimization.offload_param.nvme_path": "`none`",
    "zero_optimization.stage3_gather_16bit_weights_on_model_save": "false (ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL)",
}

_OFFLOAD_DEVICES = ("none", "cpu", "nvme")
#: Checkpoint ``quant_method`` values LLaMA-Factory dequantizes on load, so ZeRO-3/FSDP still work.
_DEQUANTIZED_METHODS = {"mxfp4", "fp8"}


def _ds(ctx: Context) -> DeepSpeedConfig | None:
    return ctx.deepspeed if ctx.options.command == "train" else None


def _ds_name(ds: DeepSpeedConfig) -> str:
    return ds.path.name if ds.path is not None else "the inline DeepSpeed config"


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def _json_fix(ds: DeepSpeedConfig, key: str, text: str, description: str, *, safe: bool = False) -> Fix | None:
    """Replace a JSON value's text; the runner attaches the JSON file's path. None for inline configs."""
    if ds.doc is None or (entry := ds.doc.entry(key)) is None:
        return None
    return Fix(description, (Edit(entry.value_span.start.offset, entry.value_span.end.offset, text),), safe)


def _env_enabled(ctx: Context, name: str) -> bool:
    """LLaMA-Factory's ``is_env_enabled``: true, y or 1, any case."""
    return ctx.options.env.get(name, "0").strip().lower() in ("true", "y", "1")


class ZeroStage(Rule):
    """``zero_optimization`` is missing, or its ``stage`` is not 0, 1, 2 or 3.

    accelerate refuses a DeepSpeed config without ``zero_optimization`` ("Please specify the ZeRO optimization
    config in the DeepSpeed config"), and DeepSpeed refuses a stage outside 0–3. A quoted stage (``"3"``) is not
    recognised as ZeRO-3 by transformers and LLaMA-Factory, so ZeRO-3 model loading and the ZeRO-3 checks are
    skipped. ``"stage": "auto"`` is filled by accelerate from ``ACCELERATE_DEEPSPEED_ZERO_STAGE``, which defaults
    to 2, not from anything in the YAML.

    Bad:

    ```yaml
    # ds_config.json: {"zero_optimization": {"stage": 4}}
    stage: sft
    deepspeed: ds_config.json
    ```

    Good:

    ```yaml
    # ds_config.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    deepspeed: ds_config.json
    ```
    """

    code = "DS001"
    name = "invalid-zero-stage"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None:
            return
        name = _ds_name(ds)
        zero = ds.data.get("zero_optimization")
        if not isinstance(zero, dict):
            if zero is None:
                yield Finding(
                    key=None,
                    in_deepspeed=True,
                    message=f"{name} has no `zero_optimization` section: accelerate refuses it "
                    '("Please specify the ZeRO optimization config in the DeepSpeed config")',
                    hint='add `"zero_optimization": {"stage": 0}` (or 1, 2, 3)',
                )
            return
        if "stage" not in zero:
            return  # DeepSpeed's default, stage 0
        stage = zero["stage"]
        key = "zero_optimization.stage"
        if stage == "auto":
            yield Finding(
                key=key,
                in_deepspeed=True,
                severity=Severity.WARNING,
                message='`"stage": "auto"` is not taken from the YAML: accelerate fills it from '
                "ACCELERATE_DEEPSPEED_ZERO_STAGE, which defaults to 2",
                hint="write the stage you want as a number (0, 1, 2 or 3)",
            )
            return
        if isinstance(stage, str) and stage.strip() in ("0", "1", "2", "3"):
            yield Finding(
                key=key,
                in_deepspeed=True,
                severity=Severity.WARNING,
                message=f'`"stage": "{stage}"` is a string: transformers and LLaMA-Factory compare the stage with '
                "the number 3, so ZeRO-3 loading and checks are skipped",
                hint=f'write it as a number: `"stage": {stage.strip()}`',
                fix=_json_fix(ds, key, stage.strip(), "write the ZeRO stage as a number", safe=True),
            )
            return
        if isinstance(stage, bool) or not (isinstance(stage, int) and 0 <= stage <= 3):
            yield Finding(
                key=key,
                in_deepspeed=True,
                message=f"`zero_optimization.stage` is {stage!r}: DeepSpeed accepts only 0, 1, 2 or 3",
                hint="use 2 (shard optimizer states and gradients) or 3 (also shard the parameters)",
            )


class OffloadWithoutStage(Rule):
    """Offload settings that the ZeRO stage ignores.

    ``offload_param`` only works with ZeRO-3, and ``offload_optimizer`` needs ZeRO-1 or higher; otherwise DeepSpeed
    ignores them and the run uses far more GPU memory than the config suggests. A partial optimizer offload
    (``"ratio"`` below 1) is refused outside ZeRO-3 ("Partial offloading only supported for ZeRO Stage 3").

    Bad:

    ```yaml
    # ds_z2_offload.json: {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}
    stage: sft
    deepspeed: ds_z2_offload.json
    ```

    Good:

    ```yaml
    # ds_z3_offload.json: {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}}
    stage: sft
    deepspeed: ds_z3_offload.json
    ```
    """

    code = "DS002"
    name = "offload-without-stage"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None:
            return
        stage = ds.stage
        if stage not in (0, 1, 2, 3):
            return  # DS001
        if stage < 3 and ds.offload_param in ("cpu", "nvme"):
            yield Finding(
                key="zero_optimization.offload_param.device",
                also=("zero_optimization.offload_param",),
                in_deepspeed=True,
                message=f"`offload_param` to {ds.offload_param} with ZeRO-{stage}: parameter offload needs ZeRO-3, "
                "so DeepSpeed ignores it and the parameters stay on the GPU",
                hint='use `"stage": 3`, or remove `offload_param` (optimizer offload works with ZeRO-1/2)',
            )
        if stage == 0 and ds.offload_optimizer in ("cpu", "nvme"):
            yield Finding(
                key="zero_optimization.offload_optimizer.device",
                also=("zero_optimization.offload_optimizer",),
                in_deepspeed=True,
                message=f"`offload_optimizer` to {ds.offload_optimizer} with ZeRO-0: DeepSpeed ignores it and keeps "
                "the optimizer states on the GPU",
                hint='use `"stage": 2` (or 1/3) for optimizer offload',
            )
        ratio = _get(ds.data, "zero_optimization.offload_optimizer.ratio")
        if stage < 3 and is_number(ratio) and ratio < 1:
            yield Finding(
                key="zero_optimization.offload_optimizer.ratio",
                in_deepspeed=True,
                severity=Severity.ERROR,
                message=f"`offload_optimizer.ratio: {ratio}` with ZeRO-{stage}: DeepSpeed refuses partial offload "
                '("Partial offloading only supported for ZeRO Stage 3")',
                hint="remove `ratio` (full offload) or use ZeRO-3",
            )


class OffloadDevice(Rule):
    """An offload ``device`` other than ``none``, ``cpu`` or ``nvme``, or ``nvme`` without ``nvme_path``.

    DeepSpeed validates ``offload_optimizer.device`` and ``offload_param.device`` against ``none``/``cpu``/``nvme``
    and refuses anything else (``gpu``, ``cuda``, ``CPU``). NVMe offload needs ``nvme_path``, the directory on the
    NVMe drive it swaps to. ``"auto"`` is filled by accelerate from its environment (default ``none``: no
    offload), not from anything in the YAML.

    Bad:

    ```yaml
    # ds_z3_offload.json: {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "gpu"}}}
    stage: sft
    deepspeed: ds_z3_offload.json
    ```

    Good:

    ```yaml
    # ds_z3_offload.json: {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}
    stage: sft
    deepspeed: ds_z3_offload.json
    ```
    """

    code = "DS003"
    name = "offload-device"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None:
            return
        for which in ("offload_optimizer", "offload_param"):
            section = ds.zero.get(which)
            if not isinstance(section, dict) or "device" not in section:
                continue
            key = f"zero_optimization.{which}.device"
            device = section["device"]
            if device == "auto":
                yield Finding(
                    key=key,
                    in_deepspeed=True,
                    severity=Severity.WARNING,
                    message=f'`{which}.device: "auto"` becomes `none` (no offload) unless the accelerate environment '
                    "sets it; nothing in the YAML fills it",
                    hint='write the device you want: "cpu", "nvme" or "none"',
                )
                continue
            if device is None:
                continue
            if not isinstance(device, str) or device not in _OFFLOAD_DEVICES:
                lowered = device.strip().lower() if isinstance(device, str) else None
                fix = None
                if lowered in _OFFLOAD_DEVICES:
                    fix = _json_fix(ds, key, f'"{lowered}"', f'write the device as "{lowered}"', safe=True)
                yield Finding(
                    key=key,
                    in_deepspeed=True,
                    message=f'`{which}.device` is {device!r}: DeepSpeed accepts only "none", "cpu" or "nvme"',
                    hint='offload to host memory with "cpu"; the GPU is where states live without offload ("none")',
                    fix=fix,
                )
                continue
            if device == "nvme" and not section.get("nvme_path"):
                yield Finding(
                    key=key,
                    in_deepspeed=True,
                    message=f'`{which}.device: "nvme"` without `nvme_path`: DeepSpeed has nowhere to swap to',
                    hint=f'add `"nvme_path": "/local_nvme"` to `{which}` (a directory on a fast local NVMe drive)',
                )


class UnfillableAuto(Rule):
    """An ``"auto"`` value that neither transformers nor accelerate can fill.

    The Trainer fills ``"auto"`` only for the keys it knows: batch sizes, gradient accumulation and clipping,
    optimizer ``lr``/``betas``/``eps``/``weight_decay``, scheduler warmup/total steps, ``fp16``/``bf16`` ``enabled``,
    and the hidden-size-based ZeRO bucket sizes (``transformers/integrations/deepspeed.py``). Any other ``"auto"``
    stops the run when accelerate prepares the model: "`X` not found in kwargs. Please specify `X` without `auto`".

    Bad:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3, "stage3_max_live_parameters": "auto"}}
    stage: sft
    deepspeed: ds_z3.json
    ```

    Good:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3, "stage3_max_live_parameters": 1000000000}}
    stage: sft
    deepspeed: ds_z3.json
    ```
    """

    code = "DS004"
    name = "unfillable-auto"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None:
            return
        fillable = FILLED_BY_TRAINER | (FILLED_BY_TRAINER_4 if ctx.options.transformers_major < 5 else frozenset())
        for key, value in _leaves(ds.data):
            if value != "auto" or key in fillable or key in FILLED_BY_ACCELERATE:
                continue
            yield Finding(
                key=key,
                in_deepspeed=True,
                message=f'`{key}: "auto"`: transformers does not fill this key, so accelerate stops the run '
                f'("`{key}` not found in kwargs. Please specify `{key}` without `auto`")',
                hint="write a concrete value (DeepSpeed's default applies if you remove the key)",
            )


class DeepSpeedMismatch(Rule):
    """A hard-coded DeepSpeed value that disagrees with the YAML.

    transformers fills ``"auto"`` values from the training arguments and compares every hard-coded one with them;
    any difference stops the run when DeepSpeed starts: "Please correct the following DeepSpeed config values that
    mismatch TrainingArguments values … The easiest method is to set these DeepSpeed config values to 'auto'."
    Compared: ``train_micro_batch_size_per_gpu`` (``per_device_train_batch_size``), ``gradient_accumulation_steps``,
    ``train_batch_size`` (micro batch × accumulation × GPUs, checked with ``--gpus``), ``gradient_clipping``
    (``max_grad_norm``), the optimizer's ``lr``/``betas``/``eps``/``weight_decay``, the scheduler's
    ``warmup_max_lr``, and ``fp16``/``bf16`` ``enabled`` (the YAML's ``fp16``/``bf16``). The fix writes ``"auto"``.

    Bad:

    ```yaml
    # ds_z2.json: {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2}}
    stage: sft
    per_device_train_batch_size: 2
    deepspeed: ds_z2.json
    ```

    Good:

    ```yaml
    # ds_z2.json: {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 2}}
    stage: sft
    per_device_train_batch_size: 2
    deepspeed: ds_z2.json
    ```
    """

    code = "DS005"
    name = "deepspeed-yaml-mismatch"
    severity = Severity.ERROR
    fixable = "unsafe"

    def _pairs(self, ctx: Context) -> Iterator[tuple[str, Any, str]]:
        """(JSON key, the value transformers computes from the YAML, where that comes from)."""
        bs, ga = ctx.get("per_device_train_batch_size"), ctx.get("gradient_accumulation_steps")
        if not ctx.flag("auto_find_batch_size"):
            yield "train_micro_batch_size_per_gpu", bs, "per_device_train_batch_size"
            if ctx.gpus is not None and is_number(bs) and is_number(ga):
                world = ctx.gpus * max(1, ctx.options.nodes)
                yield (
                    "train_batch_size",
                    bs * ga * world,
                    (f"per_device_train_batch_size × gradient_accumulation_steps × {world} GPUs"),
                )
        yield "gradient_accumulation_steps", ga, "gradient_accumulation_steps"
        yield "gradient_clipping", ctx.get("max_grad_norm"), "max_grad_norm"
        lr = ctx.get("learning_rate")
        yield "optimizer.params.lr", lr, "learning_rate"
        yield "optimizer.params.betas", [ctx.get("adam_beta1"), ctx.get("adam_beta2")], "adam_beta1, adam_beta2"
        yield "optimizer.params.eps", ctx.get("adam_epsilon"), "adam_epsilon"
        yield "optimizer.params.weight_decay", ctx.get("weight_decay"), "weight_decay"
        yield "scheduler.params.warmup_max_lr", lr, "learning_rate"
        yield "fp16.enabled", ctx.flag("fp16") or ctx.flag("fp16_full_eval"), "fp16/fp16_full_eval"
        yield "bf16.enabled", ctx.flag("bf16") or ctx.flag("bf16_full_eval"), "bf16/bf16_full_eval"

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None:
            return
        for key, expected, source in self._pairs(ctx):
            actual = _get(ds.data, key)
            if actual is None or actual == "auto":
                continue
            values = expected if isinstance(expected, list) else [expected]
            if any(v is None or isinstance(v, str) for v in values):
                continue  # unset or mistyped in the YAML: KEY rules report it
            if actual == expected:
                continue
            shown = f"{expected}" if not isinstance(expected, bool) else str(expected).lower()
            yield Finding(
                key=key,
                in_deepspeed=True,
                message=f"`{key}: {_json_text(actual)}` in {_ds_name(ds)} but the YAML gives {source} = {shown}: "
                'transformers stops ("Please correct the following DeepSpeed config values that mismatch '
                'TrainingArguments values")',
                hint=f'set `{key}` to "auto" in the JSON so it follows the YAML, or make the two agree',
                fix=_json_fix(ds, key, '"auto"', f'set `{key}` to "auto"', safe=False),
            )


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class DeepSpeedNeedsTorchrun(Rule):
    """``deepspeed`` on a single GPU without ``FORCE_TORCHRUN=1``.

    ``llamafactory-cli train`` launches torchrun only when it sees more than one GPU or ``FORCE_TORCHRUN=1``
    (LLaMA-Factory v0.9.3 ``src/llamafactory/cli.py`` ``main``, v0.9.5 ``src/llamafactory/launcher.py``
    ``launch``). On one GPU the run starts as a plain process and LLaMA-Factory stops: "Please use
    `FORCE_TORCHRUN=1` to launch DeepSpeed training." (``hparams/parser.py`` ``get_train_args``, v0.8.3-v0.9.5;
    hiyouga/LlamaFactory#6268). Launch with ``FORCE_TORCHRUN=1 llamafactory-cli train …``, or drop ``deepspeed``
    on a single GPU.

    The finding depends on the number of GPUs the run sees, which the YAML does not say: the rule reads it from
    ``--gpus`` (or ``CUDA_VISIBLE_DEVICES``) and is skipped when it is unknown. It stays silent for several
    GPUs, several nodes (``--nnodes``), ``FORCE_TORCHRUN``/``USE_MCA``/``USE_MEGATRON_BRIDGE`` (torchrun forced)
    and ``USE_RAY`` (Ray starts the distributed workers itself).

    Bad:

    ```yaml
    # cfglint --gpus 1
    # ds_z2.json: {"zero_optimization": {"stage": 2}}
    stage: sft
    do_train: true
    deepspeed: ds_z2.json
    ```

    Good:

    ```yaml
    # cfglint --gpus 4
    # ds_z2.json: {"zero_optimization": {"stage": 2}}
    stage: sft
    do_train: true
    deepspeed: ds_z2.json
    ```
    """

    code = "DS006"
    name = "deepspeed-needs-torchrun"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if _ds(ctx) is None or ctx.options.nodes > 1:
            return
        if any(_env_enabled(ctx, v) for v in ("FORCE_TORCHRUN", "USE_MCA", "USE_MEGATRON_BRIDGE", "USE_RAY")):
            return
        gpus = ctx.gpus
        if gpus is None:
            raise SkipRule("GPU count unknown: pass --gpus N to check how llamafactory-cli launches DeepSpeed")
        if gpus > 1:
            return
        yield Finding(
            key="deepspeed",
            message="`deepspeed` on 1 GPU: llamafactory-cli does not use torchrun there, and LLaMA-Factory stops "
            '("Please use `FORCE_TORCHRUN=1` to launch DeepSpeed training.")',
            hint="launch with `FORCE_TORCHRUN=1 llamafactory-cli train …` (or remove `deepspeed` on a single GPU)",
        )


class ShardedPrequantized(Rule):
    """DeepSpeed ZeRO-3 or FSDP with a pre-quantized checkpoint (GPTQ, AWQ, AQLM, bitsandbytes, …).

    A checkpoint whose ``config.json`` has a ``quantization_config`` stores packed integer weights that ZeRO-3 and
    FSDP cannot shard. LLaMA-Factory stops while loading: "DeepSpeed ZeRO-3 or FSDP is incompatible with
    PTQ-quantized models." (``model_utils/quantization.py``,
    hiyouga/LlamaFactory#6898, deepspeedai/DeepSpeed#7096). MXFP4 and FP8 checkpoints are dequantized on load
    and allowed. Train the original checkpoint with ``quantization_bit: 4`` (QLoRA), or use ZeRO-2.

    Bad:

    ```yaml
    # the model's config.json: {"quantization_config": {"quant_method": "gptq", "bits": 4}}
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    finetuning_type: lora
    deepspeed: ds_z3.json
    ```

    Good:

    ```yaml
    # the model's config.json: {"quantization_config": {"quant_method": "gptq", "bits": 4}}
    # ds_z2.json: {"zero_optimization": {"stage": 2}}
    stage: sft
    finetuning_type: lora
    deepspeed: ds_z2.json
    ```
    """

    code = "DS007"
    name = "sharded-prequantized-model"
    severity = Severity.ERROR
    needs = frozenset({Need.MODEL})

    def check(self, ctx: Context) -> Iterator[Finding]:
        fsdp = ctx.fsdp or _env_enabled(ctx, "ACCELERATE_USE_FSDP")
        zero3 = _ds(ctx) is not None and ctx.zero3
        if not (zero3 or fsdp):
            return
        quant = getattr(getattr(ctx.model, "arch", None), "quantization_config", None)
        if not isinstance(quant, dict):
            return
        method = str(quant.get("quant_method", "") or "").lower()
        if method in _DEQUANTIZED_METHODS:
            return
        what = "DeepSpeed ZeRO-3" if zero3 else "FSDP"
        label = f"{method.upper()}-quantized" if method else "pre-quantized"
        yield Finding(
            key="deepspeed" if zero3 else ("fsdp" if ctx.has("fsdp") else "model_name_or_path"),
            also=("model_name_or_path",),
            message=f"{what} with a {label} checkpoint: LLaMA-Factory stops while loading the model "
            '("DeepSpeed ZeRO-3 or FSDP is incompatible with PTQ-quantized models.")',
            hint="train the original (unquantized) checkpoint with `quantization_bit: 4`, "
            "or use a ZeRO-2 DeepSpeed config / no DeepSpeed for this checkpoint",
        )


class Zero3No16BitSave(Rule):
    """ZeRO-3 training without ``stage3_gather_16bit_weights_on_model_save: true``.

    Under ZeRO-3 every GPU holds only a shard of each weight. Unless ``stage3_gather_16bit_weights_on_model_save``
    is true, the Trainer cannot gather them when it saves: it logs "stage3_gather_16bit_weights_on_model_save=false.
    Saving the full checkpoint instead, use zero_to_fp32.py to recover weights" and ``output_dir`` holds DeepSpeed
    shards instead of model (or adapter) weights that ``llamafactory-cli export`` and ``from_pretrained`` can load.
    ``"auto"`` means false here. LLaMA-Factory's ``ds_z3_config.json`` sets it to true.

    Bad:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    do_train: true
    deepspeed: ds_z3.json
    ```

    Good:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": true}}
    stage: sft
    do_train: true
    deepspeed: ds_z3.json
    ```
    """

    code = "DS008"
    name = "zero3-no-16bit-save"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = _ds(ctx)
        if ds is None or not ctx.zero3 or not ctx.is_training:
            return
        key = "zero_optimization.stage3_gather_16bit_weights_on_model_save"
        value = _get(ds.data, key)
        if value is True:
            return
        state = "is missing" if value is None else f"is {_json_text(value)}"
        if value == "auto":
            state = 'is "auto", which accelerate fills with false'
        yield Finding(
            key=key if value is not None else "zero_optimization.stage",
            in_deepspeed=True,
            message=f"ZeRO-3 training, but `stage3_gather_16bit_weights_on_model_save` {state}: the final save writes "
            "DeepSpeed shards, not model weights (recover them with zero_to_fp32.py)",
            hint='set `"stage3_gather_16bit_weights_on_model_save": true` in `zero_optimization`',
            fix=_json_fix(ds, key, "true", "set `stage3_gather_16bit_weights_on_model_save: true`", safe=False),
        )
