"""Quantization: on-the-fly bitsandbytes/HQQ/EETQ loading, QLoRA constraints, and GPTQ export.

Mirrors ``_verify_model_args`` and ``get_train_args`` (``hparams/parser.py``) and
``configure_quantization`` (``model/model_utils/quantization.py``): the former stop the run before anything is
loaded, the latter as soon as the model's config has been read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuner.config.context import Context
from tuner.config.schema import type_problem
from tuner.config.versions import v
from tuner.lint.fixes import remove_key
from tuner.lint.rule import Finding, Need, Rule, Severity, lf_stops

from ._lf_common import adapters, env_enabled, int_value, sharded_by


def _bits(ctx: Context) -> int | None:
    return int_value(ctx, "quantization_bit")


def _quantized(ctx: Context) -> bool:
    return ctx.get("quantization_bit") is not None


class QuantizationNeedsAdapter(Rule):
    """``quantization_bit`` with ``finetuning_type: full`` or ``freeze``.

    Quantized weights cannot be trained directly; QLoRA trains a LoRA (or OFT) adapter on top of them.
    ``_verify_model_args`` (``parser.py``) raises "Quantization is only compatible with the LoRA or OFT method."
    for every command.

    Bad:

    ```yaml
    finetuning_type: full
    quantization_bit: 4
    ```

    Good:

    ```yaml
    finetuning_type: lora
    quantization_bit: 4
    ```
    """

    code = "QUANT001"
    name = "quantization-needs-adapter"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if _quantized(ctx) and ctx.finetuning_type not in ("lora", "oft"):
            yield Finding(
                key="quantization_bit",
                also=("finetuning_type",),
                message=f"`quantization_bit` with `finetuning_type: {ctx.finetuning_type}`: "
                + lf_stops("Quantization is only compatible with the LoRA or OFT method."),
                hint="use `finetuning_type: lora` (QLoRA), or remove `quantization_bit` to train unquantized",
            )


class QuantizedPissa(Rule):
    """``pissa_init`` on a quantized model.

    PiSSA rewrites the base weights from their SVD, which quantized weights do not allow in place.
    ``_verify_model_args`` raises "Please use scripts/pissa_init.py to initialize PiSSA for a quantized model.".

    Bad:

    ```yaml
    quantization_bit: 4
    pissa_init: true
    ```

    Good:

    ```yaml
    quantization_bit: 4
    adapter_name_or_path: saves/llama3-8b/pissa_init
    ```
    """

    code = "QUANT002"
    name = "quantized-pissa"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if _quantized(ctx) and ctx.flag("pissa_init"):
            yield Finding(
                key="pissa_init",
                also=("quantization_bit",),
                message="`pissa_init` with `quantization_bit`: "
                + lf_stops("Please use scripts/pissa_init.py to initialize PiSSA for a quantized model."),
                hint="run `python scripts/pissa_init.py` on the unquantized model, then train with "
                "`adapter_name_or_path` pointing at its adapter",
            )


class QuantizedResizeVocab(Rule):
    """``resize_vocab`` on a quantized model.

    Quantized embedding matrices cannot be resized. ``_verify_model_args`` raises "Cannot resize embedding layers
    of a quantized model.".

    Bad:

    ```yaml
    quantization_bit: 4
    resize_vocab: true
    ```

    Good:

    ```yaml
    quantization_bit: 4
    ```
    """

    code = "QUANT003"
    name = "quantized-resize-vocab"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if _quantized(ctx) and ctx.flag("resize_vocab"):
            yield Finding(
                key="resize_vocab",
                also=("quantization_bit",),
                message="`resize_vocab` with `quantization_bit`: "
                + lf_stops("Cannot resize embedding layers of a quantized model."),
                hint="add the new tokens in an unquantized run, or drop `resize_vocab`",
            )


class QuantizedNewAdapter(Rule):
    """``create_new_adapter`` over an existing adapter on a quantized model.

    ``_verify_model_args`` raises "Cannot create new adapter upon a quantized model.": the existing adapter would
    have to be merged into quantized weights first.

    Bad:

    ```yaml
    quantization_bit: 4
    adapter_name_or_path: saves/llama3-8b/lora/sft
    create_new_adapter: true
    ```

    Good:

    ```yaml
    quantization_bit: 4
    adapter_name_or_path: saves/llama3-8b/lora/sft
    ```
    """

    code = "QUANT004"
    name = "quantized-new-adapter"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if _quantized(ctx) and ctx.get("adapter_name_or_path") is not None and ctx.flag("create_new_adapter"):
            yield Finding(
                key="create_new_adapter",
                also=("quantization_bit", "adapter_name_or_path"),
                message="`create_new_adapter` over `adapter_name_or_path` with `quantization_bit`: "
                + lf_stops("Cannot create new adapter upon a quantized model."),
                hint="continue training the existing adapter (drop `create_new_adapter`), or merge it into the "
                "unquantized model first",
            )


class QuantizedSingleAdapter(Rule):
    """Several adapters on a quantized model.

    Stacked adapters are merged into the base weights, which quantized weights do not allow.
    ``_verify_model_args`` raises "Quantized model only accepts a single adapter. Merge them first.".

    Bad:

    ```yaml
    quantization_bit: 4
    adapter_name_or_path: saves/lora_a,saves/lora_b
    ```

    Good:

    ```yaml
    quantization_bit: 4
    adapter_name_or_path: saves/lora_a
    ```
    """

    code = "QUANT005"
    name = "quantized-single-adapter"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        names = adapters(ctx)
        if _quantized(ctx) and names is not None and len(names) != 1:
            yield Finding(
                key="adapter_name_or_path",
                also=("quantization_bit",),
                message=f"{len(names)} adapters with `quantization_bit`: "
                + lf_stops("Quantized model only accepts a single adapter. Merge them first."),
                hint="merge the adapters into the unquantized model with `llamafactory-cli export`, then train on "
                "the merged model",
            )


class FP8WithQuantization(Rule):
    """``fp8: true`` together with ``quantization_bit``.

    FP8 training casts the model's matmuls to FP8, which has no meaning for bitsandbytes weights.
    ``get_train_args`` raises "FP8 training is not compatible with quantization. Please disable one of them."
    (not under ``USE_MCA``/``USE_MEGATRON_BRIDGE``).

    Bad:

    ```yaml
    fp8: true
    quantization_bit: 4
    ```

    Good:

    ```yaml
    fp8: true
    ```
    """

    code = "QUANT006"
    name = "fp8-with-quantization"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or env_enabled(ctx, "USE_MCA") or env_enabled(ctx, "USE_MEGATRON_BRIDGE"):
            return
        if ctx.flag("fp8") and _quantized(ctx):
            yield Finding(
                key="fp8",
                also=("quantization_bit",),
                message="`fp8: true` with `quantization_bit`: "
                + lf_stops("FP8 training is not compatible with quantization. Please disable one of them."),
                hint="use FP8 for full-precision weights, or QLoRA without `fp8`",
            )


class DeviceMapAutoTraining(Rule):
    """``quantization_device_map: auto`` in a training run.

    ``auto`` spreads a quantized model over several devices for inference; the trainer needs the whole model on
    its own device. ``get_train_args`` raises "Cannot use device map for quantized models in training.".

    Bad:

    ```yaml
    do_train: true
    quantization_bit: 4
    quantization_device_map: auto
    ```

    Good:

    ```yaml
    do_train: true
    quantization_bit: 4
    ```
    """

    code = "QUANT007"
    name = "device-map-auto-training"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_training and ctx.get("quantization_device_map") == "auto":
            yield Finding(
                key="quantization_device_map",
                also=("do_train",),
                message="`quantization_device_map: auto` with `do_train: true`: "
                + lf_stops("Cannot use device map for quantized models in training."),
                hint="remove `quantization_device_map` (it is for inference); shard training with DeepSpeed or FSDP",
                fix=remove_key(ctx, "quantization_device_map", "remove `quantization_device_map`"),
            )


#: On-the-fly quantization methods and the bit widths each accepts (``configure_quantization``), keyed by a
#: canonical name; :func:`_on_the_fly` says how the target LLaMA-Factory version spells each one.
_BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 5, 6, 8), "eetq": (8,)}
_METHOD_ERRORS = {
    "bnb": "Bitsandbytes only accepts 4-bit or 8-bit quantization.",
    "hqq": "HQQ only accepts 1/2/3/4/5/6/8-bit quantization.",
    "eetq": "EETQ only accepts 8-bit quantization.",
}


def _bnb_spelling(ctx: Context) -> str:
    """How ``quantization_method`` names bitsandbytes: ``bitsandbytes`` up to LLaMA-Factory 0.9.2, ``bnb`` since
    0.9.3 (``QuantizationMethod.BNB`` in ``extras/constants.py``; before it ``BITS_AND_BYTES = "bitsandbytes"`` in
    ``model/model_utils/quantization.py``). ``configure_quantization`` compares the string to that one spelling, so
    the other one quantizes nothing."""
    return "bnb" if ctx.lf >= v("0.9.3") else "bitsandbytes"


def _method(ctx: Context) -> str | None:
    """``quantization_method`` as written, or the target version's default; None when it is not a string."""
    if not ctx.has("quantization_method"):
        return _bnb_spelling(ctx)
    value = ctx.get("quantization_method")
    return value if isinstance(value, str) else None


def _on_the_fly(ctx: Context, method: str | None) -> str | None:
    """The canonical name (``bnb``, ``hqq``, ``eetq``) of a method ``configure_quantization`` quantizes with at the
    target version, else None."""
    if method == _bnb_spelling(ctx):
        return "bnb"
    return method if method in ("hqq", "eetq") else None


def _schema_reports(ctx: Context, key: str) -> bool:
    """Whether the key schema's type and choice check (KEY003) already reports this key's value."""
    spec = ctx.schema.accepted(key, ctx.kind.command, ctx.options.target)
    if spec is None or not ctx.has(key):
        return False
    return type_problem(spec, ctx.get(key), ctx.options.target) is not None


class QuantizationBits(Rule):
    """A ``quantization_bit`` that the ``quantization_method`` cannot produce.

    bitsandbytes (the default method) quantizes to 4 or 8 bits, HQQ to 1-6 or 8, EETQ to 8 only.
    ``configure_quantization`` raises e.g. "Bitsandbytes only accepts 4-bit or 8-bit quantization." when the
    model is loaded (``model/model_utils/quantization.py``). For 2- or 3-bit
    QLoRA use ``quantization_method: hqq``.

    Bad:

    ```yaml
    finetuning_type: lora
    quantization_bit: 2
    ```

    Good:

    ```yaml
    finetuning_type: lora
    quantization_bit: 2
    quantization_method: hqq
    ```
    """

    code = "QUANT008"
    name = "quantization-bits"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        bits = _bits(ctx)
        method = _method(ctx)
        canonical = _on_the_fly(ctx, method)
        if bits is None or canonical is None or bits in _BITS[canonical]:
            return
        others = [m for m, ok in _BITS.items() if bits in ok]
        other = (_bnb_spelling(ctx) if others[0] == "bnb" else others[0]) if others else None
        yield Finding(
            key="quantization_bit",
            also=("quantization_method",),
            message=f"`quantization_bit: {bits}` with `quantization_method: {method}`"
            f"{'' if ctx.has('quantization_method') else ' (the default)'}: LLaMA-Factory stops when it loads the "
            f'model with "{_METHOD_ERRORS[canonical]}"',
            hint=f"use `quantization_bit` {' or '.join(str(b) for b in _BITS[canonical])}"
            + (f", or `quantization_method: {other}` for {bits}-bit" if other else ""),
        )


class ShardedQuantization(Rule):
    """On-the-fly quantization that cannot be sharded: 8-bit bitsandbytes, HQQ or EETQ under ZeRO-3 or FSDP.

    With DeepSpeed ZeRO-3 or FSDP (and with ``quantization_device_map: auto``) the model is not placed on one
    device, which only 4-bit bitsandbytes supports (FSDP-QLoRA). ``configure_quantization`` raises "Only 4-bit
    quantized model can use fsdp+qlora or auto device map." / "HQQ quantization is incompatible with DeepSpeed
    ZeRO-3 or FSDP." / "EETQ quantization is incompatible with DeepSpeed ZeRO-3 or FSDP.".

    Bad:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    quantization_bit: 8
    deepspeed: ds_z3_config.json
    ```

    Good:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    quantization_bit: 4
    deepspeed: ds_z3_config.json
    ```
    """

    code = "QUANT009"
    name = "sharded-quantization"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        bits = _bits(ctx)
        if bits is None:
            return
        method = _on_the_fly(ctx, _method(ctx))
        sharded = sharded_by(ctx) if ctx.is_train_command else None
        device_map = ctx.get("quantization_device_map") == "auto" and not ctx.is_training  # training: QUANT007
        where = sharded or ("`quantization_device_map: auto`" if device_map else None)
        if where is None:
            return
        key_also = ("deepspeed", "fsdp") if sharded else ("quantization_device_map",)
        if method == "bnb" and bits != 4 and bits in _BITS["bnb"]:
            yield Finding(
                key="quantization_bit",
                also=key_also,
                message=f"{bits}-bit bitsandbytes with {where}: LLaMA-Factory stops when it loads the model with "
                '"Only 4-bit quantized model can use fsdp+qlora or auto device map."',
                hint="use `quantization_bit: 4`" + (f", or drop {where}" if sharded else ""),
            )
        elif method in ("hqq", "eetq") and sharded:
            name = method.upper()
            yield Finding(
                key="quantization_method",
                also=("quantization_bit", *key_also),
                message=f"`quantization_method: {method}` with {sharded}: LLaMA-Factory stops when it loads the model "
                f'with "{name} quantization is incompatible with DeepSpeed ZeRO-3 or FSDP."',
                hint=f"use 4-bit bitsandbytes (`quantization_method: {_bnb_spelling(ctx)}`, `quantization_bit: 4`) for "
                "sharded QLoRA, "
                "or ZeRO-2 / a single GPU",
            )


class QuantizationMethodUnused(Rule):
    """``quantization_bit`` with a ``quantization_method`` that does not quantize on the fly.

    Only bitsandbytes, HQQ and EETQ quantize a model while loading it (``configure_quantization`` in
    ``model/model_utils/quantization.py``, LLaMA-Factory v0.8.3-v0.9.5). ``gptq``, ``awq``, ``aqlm``, ``quanto``,
    ``mxfp4`` and ``fp8`` are accepted values with no branch there: pre-quantized checkpoints are recognised from
    their own ``config.json`` whatever this key says. So unless ``model_name_or_path`` already is such a
    checkpoint, the model loads in full precision, with all of QLoRA's restrictions still applied and none of its
    memory savings. bitsandbytes is spelled ``bnb`` since v0.9.3 and ``bitsandbytes`` before. A value that is not
    one of the key's choices at all is the key schema's finding (KEY003), not this one.

    Bad:

    ```yaml
    quantization_bit: 4
    quantization_method: gptq
    ```

    Good:

    ```yaml
    quantization_bit: 4
    quantization_method: bnb
    ```
    """

    code = "QUANT010"
    name = "quantization-method-unused"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        method = _method(ctx)
        if not _quantized(ctx) or method is None or _on_the_fly(ctx, method) is not None:
            return
        if method in ("bitsandbytes", "bnb") or _schema_reports(ctx, "quantization_method"):
            return  # the other release's bitsandbytes spelling, or a value outside the choices: KEY003 reports it
        bnb = _bnb_spelling(ctx)
        yield Finding(
            key="quantization_method",
            also=("quantization_bit",),
            message=f"`quantization_method: {method}` does not quantize on the fly: with `quantization_bit` LLaMA-Factory "
            f"loads the model unquantized unless `model_name_or_path` already is a {method.upper()} checkpoint "
            f"(`configure_quantization` quantizes with `{bnb}`, `hqq` or `eetq` only)",
            hint=f"use `quantization_method: {bnb}` (4/8-bit), `hqq` or `eetq` to quantize while loading; for a "
            "pre-quantized checkpoint, drop `quantization_method` and `quantization_bit`",
        )


class ExportQuantizationBits(Rule):
    """``export_quantization_bit`` other than 2, 3, 4 or 8.

    Export quantization uses GPTQ (GPTQModel), which supports these widths only; ``configure_quantization``
    raises "AutoGPTQ only accepts 2/3/4/8-bit quantization." when the model is loaded.

    Bad:

    ```yaml
    export_dir: saves/llama3-8b-gptq
    export_quantization_bit: 6
    export_quantization_dataset: data/c4_demo.jsonl
    ```

    Good:

    ```yaml
    export_dir: saves/llama3-8b-gptq
    export_quantization_bit: 4
    export_quantization_dataset: data/c4_demo.jsonl
    ```
    """

    code = "QUANT011"
    name = "export-quantization-bits"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        bits = int_value(ctx, "export_quantization_bit")
        if bits is not None and bits not in (2, 3, 4, 8):
            yield Finding(
                key="export_quantization_bit",
                message=f"`export_quantization_bit: {bits}`: LLaMA-Factory stops when it loads the model with "
                '"AutoGPTQ only accepts 2/3/4/8-bit quantization."',
                hint="use 2, 3, 4 or 8 (4 is the usual choice)",
            )


def _ptq_method(ctx: Context) -> str | None:
    """The ``quant_method`` of a pre-quantized checkpoint, when the model's config.json says so."""
    info = ctx.model
    arch = getattr(info, "arch", None) or info
    qc: Any = getattr(arch, "quantization_config", None)
    if not isinstance(qc, dict) or not qc:
        return None
    return str(qc.get("quant_method", "") or "unknown").lower()


class PTQModelTraining(Rule):
    """Training a pre-quantized checkpoint (GPTQ, AWQ, AQLM, …) with full/freeze tuning, PiSSA or DoRA.

    A checkpoint whose ``config.json`` has a ``quantization_config`` is loaded quantized. ``init_adapter``
    (``model/adapter.py``) then raises "Quantized models can only be used for the LoRA or OFT tuning." /
    "Cannot initialize PiSSA adapter on quantized models.", and DoRA "is not
    compatible with PTQ-quantized models." (#160). ``mxfp4`` and ``fp8`` checkpoints are dequantized on load and
    are exempt. Needs the model's config.

    Bad:

    ```yaml
    # the model's config.json: {"quantization_config": {"quant_method": "gptq", "bits": 4}}
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4
    do_train: true
    finetuning_type: full
    ```

    Good:

    ```yaml
    # the model's config.json: {"quantization_config": {"quant_method": "gptq", "bits": 4}}
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4
    do_train: true
    finetuning_type: lora
    ```
    """

    code = "QUANT012"
    name = "ptq-model-training"
    severity = Severity.ERROR
    needs = frozenset({Need.MODEL})

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training:
            return
        method = _ptq_method(ctx)
        if method is None or method in ("mxfp4", "fp8"):
            return
        name = method.upper()
        if ctx.finetuning_type not in ("lora", "oft"):
            yield Finding(
                key="finetuning_type",
                also=("model_name_or_path",),
                message=f"`finetuning_type: {ctx.finetuning_type}` on a {name}-quantized checkpoint: LLaMA-Factory "
                'stops after loading it with "Quantized models can only be used for the LoRA or OFT tuning."',
                hint="train a LoRA adapter on it, or fully fine-tune the unquantized model",
            )
        elif ctx.flag("pissa_init"):
            yield Finding(
                key="pissa_init",
                also=("model_name_or_path",),
                message=f"`pissa_init` on a {name}-quantized checkpoint: LLaMA-Factory stops after loading it with "
                '"Cannot initialize PiSSA adapter on quantized models."',
                hint="initialise PiSSA on the unquantized model",
            )
        elif (
            ctx.finetuning_type == "lora"
            and ctx.flag("use_dora")
            and (ctx.get("adapter_name_or_path") is None or ctx.flag("create_new_adapter"))
        ):
            yield Finding(
                key="use_dora",
                also=("model_name_or_path",),
                message=f"`use_dora` on a {name}-quantized checkpoint: LLaMA-Factory stops after loading it with "
                '"DoRA is not compatible with PTQ-quantized models."',
                hint="drop `use_dora`, or train DoRA on the unquantized model",
            )


class DoraQuantized(Rule):
    """``use_dora`` with on-the-fly quantization (``quantization_bit``).

    ``_setup_lora_tuning`` (``model/adapter.py``) refuses DoRA on a quantized model whose
    ``model.quantization_method`` is not ``QuantizationMethod.BNB``. Since LLaMA-Factory v0.9.3 that constant is its
    own ``"bnb"``, while transformers marks a bitsandbytes model with ``"bitsandbytes"``, so the test also rejects
    bitsandbytes QLoRA (hiyouga/LlamaFactory#7765): "DoRA is not compatible with PTQ-quantized models." once the
    model is loaded. Up to v0.9.2 the constant was ``"bitsandbytes"`` and bitsandbytes DoRA ran. HQQ and EETQ are
    rejected by the same test in every version. PEFT itself supports DoRA on bitsandbytes layers, so the message is
    surprising.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: lora
    quantization_bit: 4
    use_dora: true
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: lora
    quantization_bit: 4
    ```
    """

    code = "QUANT013"
    name = "dora-quantized"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type != "lora" or not ctx.flag("use_dora") or not _quantized(ctx):
            return
        if ctx.get("adapter_name_or_path") is not None and not ctx.flag("create_new_adapter"):
            return  # resuming an adapter: no new DoRA layers are created, so no check
        method = _method(ctx)
        canonical = _on_the_fly(ctx, method)
        if canonical is None:
            return  # QUANT010: the model is not quantized on the fly
        if canonical == "bnb" and ctx.lf < v("0.9.3"):
            return  # up to v0.9.2 the test compares against `bitsandbytes`, transformers' own name: DoRA QLoRA runs
        yield Finding(
            key="use_dora",
            also=("quantization_bit",),
            message=f"`use_dora` with `quantization_bit` ({method}): LLaMA-Factory stops after loading the model with "
            '"DoRA is not compatible with PTQ-quantized models." (for bitsandbytes because its check compares '
            "against `bnb` while transformers reports `bitsandbytes`)",
            hint="drop `use_dora` for QLoRA, or train DoRA without `quantization_bit`",
            # bitsandbytes is refused only from v0.9.3 on: the finding holds for the release the file is meant for.
            depends_on_version="llamafactory" if canonical == "bnb" else None,
        )
