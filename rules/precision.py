"""Precision: fp16/bf16/pure_bf16/tf32 against each other, the GPU and the checkpoint's dtype.

Mixed precision is where LLaMA-Factory's example configs (all ``bf16: true``) meet older GPUs, and where an fp16
run of a model trained in bf16 quietly produces ``loss 0`` or ``grad_norm: nan``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuner.config.context import Context
from tuner.models.arch import NORM_OUTPUT_TAKES_WEIGHT_DTYPE
from tuner.lint.fixes import remove_key, rename_key, set_key
from tuner.lint.rule import Finding, Fix, Need, Rule, Severity

#: Keys that ask for bf16 arithmetic, and the fp16 key each maps to on a GPU without bf16.
_BF16_KEYS = {"bf16": "fp16", "bf16_full_eval": "fp16_full_eval", "pure_bf16": None}


def _lacks_bf16(hw: Any) -> bool:
    cc = getattr(hw, "compute_capability", None)
    return not getattr(hw, "bf16", True) or (cc is not None and tuple(cc) < (8, 0))


def _lacks_tf32(hw: Any) -> bool:
    """transformers tests ``torch.version.cuda`` and compute capability >= 8.0: no TF32 on ROCm or pre-Ampere."""
    cc = getattr(hw, "compute_capability", None)
    return cc is None or tuple(cc) < (8, 0)


def _hw_name(hw: Any) -> str:
    display = getattr(hw, "display", None) or getattr(hw, "name", "this GPU")
    cc = getattr(hw, "compute_capability", None)
    return f"{display} (compute capability {cc[0]}.{cc[1]})" if cc else str(display)


def _model_dtype(ctx: Context) -> str | None:
    """The checkpoint's ``torch_dtype`` when the model can be resolved, else None (never raises)."""
    info = ctx.model
    arch = getattr(info, "arch", None)
    dtype = getattr(arch, "torch_dtype", None)
    return str(dtype) if dtype else None


class FP16AndBF16(Rule):
    """``fp16`` and ``bf16`` are both on (or ``fp16_full_eval`` and ``bf16_full_eval``).

    transformers refuses the run at start-up: ``At most one of fp16 and bf16 can be True, but not both``
    (``TrainingArguments.__post_init__``). Keep ``bf16`` on Ampere or newer GPUs and
    ``fp16`` on older ones (V100, T4). With ``--hw`` the linter offers to remove the one the GPU cannot use.

    Bad:

    ```yaml
    stage: sft
    fp16: true
    bf16: true
    ```

    Good:

    ```yaml
    stage: sft
    bf16: true
    ```
    """

    code = "PREC001"
    name = "fp16-and-bf16"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        hw = ctx.hardware
        for fp16, bf16, what in (("fp16", "bf16", "training"), ("fp16_full_eval", "bf16_full_eval", "full eval")):
            if not (ctx.flag(fp16) and ctx.flag(bf16)):
                continue
            fix = None
            if hw is not None:
                drop = bf16 if _lacks_bf16(hw) else fp16
                fix = remove_key(ctx, drop, f"remove `{drop}` ({_hw_name(hw)})", safe=False)
            yield Finding(
                key=bf16,
                also=(fp16,),
                message=f"`{fp16}` and `{bf16}` are both true: transformers refuses the run "
                f'("At most one of fp16 and bf16 can be True" for {what})',
                hint=f"keep `{bf16}` on Ampere or newer GPUs (A100, H100, RTX 30xx/40xx), `{fp16}` on V100/T4",
                fix=fix,
            )


class BF16Unsupported(Rule):
    """``bf16``, ``bf16_full_eval``, ``pure_bf16`` or ``tf32`` on a GPU without bf16/TF32 (before Ampere).

    V100, T4 and RTX 20xx have no bf16 or TF32 units. transformers refuses ``tf32: true`` there ("--tf32 requires
    Ampere or a newer GPU arch"), and ``bf16: true`` with "Your setup doesn't support bf16/gpu. You need Ampere+
    GPU"; LLaMA-Factory refuses ``pure_bf16`` ("This device does not support
    `pure_bf16`", #86). Recent PyTorch releases report bf16 as supported through emulation, in which case the run
    starts but is several times slower. Every LLaMA-Factory example ships ``bf16: true``, so this is often the
    first error on a V100 or a Colab T4 (hiyouga/LlamaFactory#9025, #462). The fix switches
    to ``fp16``; models trained in bf16 can overflow in fp16 (PREC005).

    Bad:

    ```yaml
    # cfglint --hw v100-sxm2-32g
    stage: sft
    bf16: true
    ```

    Good:

    ```yaml
    # cfglint --hw v100-sxm2-32g
    stage: sft
    fp16: true
    ```
    """

    code = "PREC002"
    name = "bf16-unsupported-hardware"
    severity = Severity.ERROR
    needs = frozenset({Need.HARDWARE})
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        hw = ctx.hardware
        gpu = _hw_name(hw)
        if _lacks_bf16(hw):
            bf16_native = None
            for key, fp16_key in _BF16_KEYS.items():
                if not ctx.flag(key):
                    continue
                if bf16_native is None:
                    bf16_native = _model_dtype(ctx) == "bfloat16"
                fix = None
                hint = "use `fp16: true` (and `fp16_full_eval` for eval) on this GPU"
                if fp16_key is not None:
                    fix = (
                        remove_key(ctx, key, f"remove `{key}` (`{fp16_key}` is already on)", safe=False)
                        if ctx.flag(fp16_key)
                        else rename_key(ctx, key, fp16_key, f"switch `{key}` to `{fp16_key}`", safe=False)
                    )
                    hint = f"use `{fp16_key}: true` on this GPU"
                else:
                    hint = "remove `pure_bf16` and use `fp16: true` (fp16 mixed precision keeps fp32 master weights: more memory)"
                if bf16_native:
                    hint += (
                        "; this model is stored in bfloat16, and fp16 often overflows for it (loss 0 or grad_norm nan): "
                        "if it does, train in fp32 (no fp16/bf16) or with a lower learning rate"
                    )
                yield Finding(
                    key=key,
                    message=f"`{key}: true` on {gpu}, which has no bf16 support: "
                    + (
                        'LLaMA-Factory refuses the run ("This device does not support `pure_bf16`")'
                        if key == "pure_bf16"
                        else 'transformers refuses the run ("Your setup doesn\'t support bf16/gpu"), '
                        "or with recent PyTorch emulates bf16 several times slower"
                    ),
                    hint=hint,
                    fix=fix,
                )
        if ctx.flag("tf32") and _lacks_tf32(hw):
            yield Finding(
                key="tf32",
                message=f"`tf32: true` on {gpu}: transformers refuses the run "
                '("--tf32 requires Ampere or a newer GPU arch, cuda>=11")',
                hint="remove `tf32` (TF32 needs an NVIDIA GPU of compute capability 8.0 or newer)",
                fix=remove_key(ctx, "tf32", "remove `tf32`", safe=False),
            )


class PureBF16ZeRO3(Rule):
    """``pure_bf16`` under DeepSpeed ZeRO-3.

    LLaMA-Factory refuses the combination at start-up: "`pure_bf16` is incompatible with DeepSpeed ZeRO-3"
    (``get_train_args``). ZeRO-3 already shards the fp32 master weights and optimizer
    states across GPUs; use ``bf16: true`` for mixed precision with it.

    Bad:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    finetuning_type: full
    pure_bf16: true
    deepspeed: ds_z3_config.json
    ```

    Good:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    finetuning_type: full
    bf16: true
    deepspeed: ds_z3_config.json
    ```
    """

    code = "PREC003"
    name = "pure-bf16-zero3"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not (ctx.is_train_command and ctx.flag("pure_bf16") and ctx.zero3):
            return
        if ctx.flag("bf16"):
            fix = remove_key(ctx, "pure_bf16", "remove `pure_bf16` (`bf16` is on)", safe=False)
        else:
            fix = rename_key(ctx, "pure_bf16", "bf16", "use `bf16` instead of `pure_bf16`", safe=False)
        yield Finding(
            key="pure_bf16",
            also=("deepspeed",),
            message="`pure_bf16` with DeepSpeed ZeRO-3: LLaMA-Factory refuses the run "
            '("`pure_bf16` is incompatible with DeepSpeed ZeRO-3")',
            hint="use `bf16: true` (mixed precision) with ZeRO-3, or a ZeRO-2/ZeRO-0 DeepSpeed config with `pure_bf16`",
            fix=fix,
        )


class NoMixedPrecision(Rule):
    """Training without mixed precision: neither ``bf16``, ``fp16`` nor ``pure_bf16`` is on.

    LLaMA-Factory only logs "We recommend enable mixed precision training" (``hparams/parser.py``
    ``get_train_args``). It still loads the weights in half precision: ``patch_config`` (``model/patcher.py``)
    takes ``infer_optim_dtype`` of the checkpoint's dtype, bf16 for a bf16 checkpoint on a GPU with bf16 and fp16
    otherwise. The trainable parameters are then upcast to fp32 (``init_adapter``) and train without autocast:
    with full fine-tuning the whole model computes in fp32, slower and with about twice the activation memory on
    tensor-core GPUs. It is sometimes deliberate; otherwise turn on ``bf16`` (Ampere or newer) or ``fp16``. With
    ``--hw`` the linter offers the right one. A CPU run (``use_cpu: true``) is not flagged, nor a file that
    writes ``bf16: false`` (or ``fp16: false``): that states the choice; the forgotten setting is the one that
    is not written at all.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    finetuning_type: lora
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    finetuning_type: lora
    bf16: true
    ```
    """

    code = "PREC004"
    name = "no-mixed-precision"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or any(ctx.flag(k) for k in ("bf16", "fp16", "pure_bf16", "use_cpu")):
            return
        if ctx.has("bf16") or ctx.has("fp16") or ctx.has("pure_bf16"):
            return  # written and off: fp32 on purpose (a CPU or MPS run, a debugging run, an old GPU)
        hw = ctx.hardware
        fix: Fix | None = None
        if hw is not None:
            key = "fp16" if _lacks_bf16(hw) else "bf16"
            fix = set_key(ctx, key, "true", f"set `{key}: true` ({_hw_name(hw)})", safe=False)
        yield Finding(
            key="do_train",
            message="no mixed precision: neither `bf16` nor `fp16` is on, so the trainable parameters are upcast to "
            "fp32 and train without autocast (LLaMA-Factory still loads the model in half precision; it logs "
            '"We recommend enable mixed precision training")',
            hint="set `bf16: true` on Ampere or newer GPUs, `fp16: true` on V100/T4; keep it off only on purpose",
            fix=fix,
        )


class FP16OnBF16Model(Rule):
    """``fp16`` on a model whose checkpoint is stored in bfloat16.

    Models trained in bf16 (Qwen2 and later, Llama 3, GLM-4, Gemma, Baichuan2, …) have activations beyond fp16's
    range; fine-tuning them in fp16 gives ``train_loss: 0.0`` or ``grad_norm: nan`` (hiyouga/LlamaFactory#4278, #950,
    #7263; QwenLM/Qwen3#670: "finetune it in bf16 or fp32"). Use ``bf16`` on
    Ampere or newer GPUs. On a GPU without bf16 LLaMA-Factory loads the model in fp16 even without ``fp16``
    (``infer_optim_dtype``); only the trained parameters are upcast to fp32, so full fine-tuning without ``fp16``
    avoids most of the overflow and LoRA does not.

    Bad:

    ```yaml
    # the model's config.json: {"torch_dtype": "bfloat16"}
    stage: sft
    fp16: true
    ```

    Good:

    ```yaml
    # the model's config.json: {"torch_dtype": "bfloat16"}
    stage: sft
    bf16: true
    ```
    """

    code = "PREC005"
    name = "fp16-on-bf16-model"
    severity = Severity.WARNING
    needs = frozenset({Need.MODEL})
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        keys = [k for k in ("fp16", "fp16_full_eval") if ctx.flag(k)]
        if not ctx.is_train_command or not keys or _model_dtype(ctx) != "bfloat16":
            return
        hw = ctx.hardware
        bf16_ok = hw is not None and not _lacks_bf16(hw)
        for key in keys:
            bf16_key = key.replace("fp16", "bf16")
            fix = None
            if bf16_ok and not ctx.flag(bf16_key):
                fix = rename_key(ctx, key, bf16_key, f"switch `{key}` to `{bf16_key}` ({_hw_name(hw)})", safe=False)
            elif bf16_ok:
                fix = remove_key(ctx, key, f"remove `{key}`", safe=False)
            if hw is None:
                hint = (
                    f"use `{bf16_key}: true` on Ampere or newer GPUs; on V100/T4 full fine-tuning without `{key}` "
                    "trains fp32 copies of the weights, or lower the learning rate"
                )
            elif bf16_ok:
                hint = f"use `{bf16_key}: true`: {_hw_name(hw)} supports bf16"
            else:
                hint = (
                    f"{_hw_name(hw)} has no bf16, and LLaMA-Factory loads the model in fp16 even without `{key}`: "
                    "without it full fine-tuning trains fp32 copies of the weights (LoRA keeps the fp16 base); "
                    "otherwise lower the learning rate and watch for NaNs"
                )
            yield Finding(
                key=key,
                message=f"`{key}: true` but the model is stored in bfloat16: fp16 often overflows for such models "
                "(train_loss 0.0 or grad_norm nan)",
                hint=hint,
                fix=fix,
            )


#: model_type values whose activations overflow float16: vLLM refuses float16 for them ("Numerical instability.
#: Please use bfloat16 or float32 instead.", ``vllm/config/model.py`` ``_FLOAT16_NOT_SUPPORTED_MODELS``).
_FP16_UNSTABLE = frozenset({"gemma2", "gemma3", "gemma3_text", "glm4", "plamo2"})


def _stored_dtype(arch: Any) -> str | None:
    """The dtype ``config.json`` states, or None when it states none (the resolver then assumes float32)."""
    extra = getattr(arch, "extra", None)
    defaulted = extra.get("defaulted", ()) if isinstance(extra, dict) else ()
    dtype = getattr(arch, "torch_dtype", None)
    return None if "torch_dtype" in defaulted or not dtype else str(dtype)


class FP16OnFP16UnstableFamily(Rule):
    """fp16 for a bf16-native family (Gemma 2, Gemma 3, GLM-4) whose checkpoint is not stored in bfloat16.

    Gemma 2 was trained in bfloat16 ("The native weights of this model were exported in bfloat16", its model card),
    but its checkpoints store float32 (``config.json``: ``torch_dtype: float32``), so PREC005 cannot see it from the
    dtype. Its activations overflow float16; vLLM refuses float16 for ``gemma2``, ``gemma3``, ``gemma3_text`` and
    ``glm4`` ("Numerical instability", ``vllm/config/model.py`` ``_FLOAT16_NOT_SUPPORTED_MODELS``). LLaMA-Factory
    loads the model in the compute dtype: ``fp16: true`` sets it to float16 (``hparams/parser.py``
    ``get_train_args``), and with no precision key ``patch_config`` takes ``infer_optim_dtype`` of the stored dtype,
    which is float16 for anything but a bfloat16 checkpoint (``extras/misc.py``, v0.8.3-v0.9.5). Either way the
    frozen weights compute in float16: expect ``loss 0.0`` or NaN gradients. Use ``bf16: true``. Needs the model.

    Bad:

    ```yaml
    # the model's config.json: {"model_type": "gemma2", "torch_dtype": "float32"}
    stage: sft
    do_train: true
    fp16: true
    ```

    Good:

    ```yaml
    # the model's config.json: {"model_type": "gemma2", "torch_dtype": "float32"}
    stage: sft
    do_train: true
    bf16: true
    ```
    """

    code = "PREC006"
    name = "fp16-unstable-family"
    severity = Severity.WARNING
    needs = frozenset({Need.MODEL})
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or any(ctx.flag(k) for k in ("bf16", "pure_bf16", "use_cpu")):
            return
        arch = getattr(ctx.model, "arch", None)
        model_type = str(getattr(arch, "model_type", "") or "")
        if model_type not in _FP16_UNSTABLE:
            return
        stored = _stored_dtype(arch)
        if stored == "bfloat16":
            return  # PREC005 reports fp16 on a bf16 checkpoint; without a key LLaMA-Factory picks bf16 where it can
        stated = f"stored in {stored}" if stored else "with no stored dtype"
        hw = ctx.hardware
        no_bf16 = hw is not None and _lacks_bf16(hw)
        hint = (
            f"{_hw_name(hw)} has no bf16: this family needs a GPU with bf16 (Ampere or newer) to fine-tune safely"
            if no_bf16
            else "use `bf16: true` (Ampere or newer GPUs)"
        )
        if ctx.flag("fp16"):
            fix = None if no_bf16 else rename_key(ctx, "fp16", "bf16", "switch `fp16` to `bf16`", safe=False)
            yield Finding(
                key="fp16",
                also=("model_name_or_path",),
                message=f"`fp16: true` on a `{model_type}` model ({stated}): LLaMA-Factory loads and runs it in "
                "float16, which this bf16-trained family overflows (vLLM refuses float16 for it: \"Numerical "
                'instability"); expect loss 0.0 or NaN gradients',
                hint=hint,
                fix=fix,
            )
            return
        if not ctx.is_training or ctx.zero3:
            return  # ZeRO-3 without QLoRA does not cast the weights at load time
        yield Finding(
            key=None,
            also=("model_name_or_path", "do_train"),
            message=f"no `bf16` for a `{model_type}` model ({stated}): LLaMA-Factory then loads it in float16 "
            "(`infer_optim_dtype` picks bf16 only for bf16 checkpoints), which this bf16-trained family overflows; "
            "expect loss 0.0 or NaN gradients",
            hint=hint,
            fix=None if no_bf16 else set_key(ctx, "bf16", "true", "set `bf16: true`", safe=False),
        )


class PureBf16UpcastLayernorm(Rule):
    """``pure_bf16`` with ``upcast_layernorm`` and no autocast: the first forward fails.

    ``upcast_layernorm`` makes every norm weight fp32 (``prepare_model_for_training`` in
    ``model_utils/checkpointing.py``, v0.9.5). For the Llama-style norms of transformers (``weight *
    hidden_states.to(input_dtype)``: Llama, Qwen2/3, Mistral, Mixtral, Phi-3, DeepSeek-V2/V3, GLM-4, Granite) the
    norm's output is then fp32, and the next linear layer multiplies it with its bf16 weight. With ``bf16: true``
    autocast casts both to bf16; ``pure_bf16`` alone turns autocast off (LLaMA-Factory loads the model in bf16 and
    leaves ``bf16`` as written, ``hparams/parser.py``), and the matrix product refuses the mix: "expected mat1 and
    mat2 to have the same dtype". Running the real training step (tuner.memory.trace, real CPU tensors) fails so for
    LoRA, QLoRA, freeze and full tuning, and runs with ``bf16: true``. Gemma's and OLMo-2's norms cast back to the
    input dtype and are not reported; neither is a DeepSpeed run (its ``bf16`` section decides the module's dtype).
    Needs the model.

    Bad:

    ```yaml
    # the model's config.json: {"model_type": "qwen2"}
    stage: sft
    do_train: true
    finetuning_type: lora
    pure_bf16: true
    upcast_layernorm: true
    ```

    Good:

    ```yaml
    # the model's config.json: {"model_type": "qwen2"}
    stage: sft
    do_train: true
    finetuning_type: lora
    pure_bf16: true
    ```
    """

    code = "PREC007"
    name = "pure-bf16-upcast-layernorm"
    severity = Severity.ERROR
    needs = frozenset({Need.MODEL})
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not (ctx.is_training and ctx.flag("pure_bf16") and ctx.flag("upcast_layernorm")):
            return
        if any(ctx.flag(k) for k in ("bf16", "fp16", "enable_liger_kernel", "use_unsloth")) or ctx.get("deepspeed"):
            return  # autocast on, other norm kernels, or DeepSpeed's bf16 section decides the module dtype
        if ctx.get("quantization_bit") is not None and str(ctx.get("quantization_method") or "bnb").lower() != "bnb":
            return  # only bitsandbytes' layers were traced
        arch = getattr(ctx.model, "arch", None)
        model_type = str(getattr(arch, "model_type", "") or "")
        if model_type not in NORM_OUTPUT_TAKES_WEIGHT_DTYPE:
            return
        yield Finding(
            key="upcast_layernorm",
            also=("pure_bf16",),
            message=f"`upcast_layernorm` under `pure_bf16` without autocast: the fp32 norm outputs of this `{model_type}` "
            "model meet bf16 weights and the first forward fails (\"expected mat1 and mat2 to have the same dtype\")",
            hint="drop `upcast_layernorm` (pure bf16 keeps the norms in bf16), or train with `bf16: true` instead of "
            "`pure_bf16`",
            fix=remove_key(ctx, "upcast_layernorm", "remove `upcast_layernorm`", safe=False),
        )
