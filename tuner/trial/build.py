"""Build the model a trial trains: an :class:`Architecture` with random weights, prepared as LLaMA-Factory prepares it.

Memory and speed do not depend on the weights' values, so no checkpoint is read. Parameters are created on the
meta device, then materialised once, directly on the target device in the compute dtype, and filled with a seeded
``normal_``: the default initialisers (kaiming on every matrix, on the CPU) would make a 32B trial spend minutes
before its first step.

The method is applied the way LLaMA-Factory applies it (``model/adapter.py``, ``model/model_utils/checkpointing.py``,
``model/patcher.py``), read as follows:

* The model is loaded in the compute dtype (``bf16``/``pure_bf16`` -> bfloat16, ``fp16`` -> float16, else fp32).
* Trainable parameters are then upcast to fp32 unless ``pure_bf16``, or under ZeRO-3 without quantization (where
  DeepSpeed already keeps fp32 master weights). So ``full`` trains fp32 weights under bf16 autocast (what the
  Trainer's ``bf16: true`` does), ``freeze`` upcasts its last N layers, and LoRA upcasts only the adapters.
* ``lora_target: all`` is every module whose class name contains ``Linear`` except ``lm_head`` (and a frozen vision
  tower); alpha defaults to 2 x rank.
* Gradient checkpointing uses LLaMA-Factory's wrapper: only layers that hold trainable parameters are checkpointed,
  the hidden states are marked as requiring grad, ``use_reentrant=True`` (``use_reentrant_gc`` defaults to true).
* MoE models train with ``output_router_logits`` on (LLaMA-Factory's ``configure_moe``).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import TYPE_CHECKING, Any

from tuner.models.arch import Architecture
from tuner.trial.spec import TrialSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The model types whose Hugging Face config class the trial builds directly; anything else is built as llama.
SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "qwen3_moe", "mistral", "mixtral", "gemma2", "gemma3_text")
#: Multimodal types whose language model is one of the above: the trial builds the text model only.
TEXT_MODEL_OF = {"gemma3": "gemma3_text", "qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2"}
MOE_TYPES = ("qwen3_moe", "mixtral", "qwen2_moe")
#: LLaMA-Factory's ``use_reentrant_gc`` default.
USE_REENTRANT_GC = True
INIT_STD = 0.02


class TrialSetupError(Exception):
    """The trial cannot run as asked on this machine (a missing package, an unsupported combination).

    It is the user's configuration, not a crash: the trial is recorded with status ``error`` and this message.
    """


@dataclass
class BuiltModel:
    model: Any  # the (possibly PEFT-wrapped) torch module
    trainable_params: int
    total_params: int
    notes: list[str] = field(default_factory=list)
    lora_targets: list[str] = field(default_factory=list)


def compute_dtype_name(precision: str) -> str:
    return {"bf16": "bfloat16", "pure_bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")


def casts_trainable_to_fp32(spec: TrialSpec) -> bool:
    """LLaMA-Factory's ``cast_trainable_params_to_fp32`` (``init_adapter``) for a trial (trials run no BAdam)."""
    from tuner.memory.loading import lf_upcasts_trainable

    return lf_upcasts_trainable(precision=spec.precision, badam=False, zero_stage=spec.zero_stage,
                                quantized=spec.quantization_bit is not None)


# -- config -----------------------------------------------------------------------------------------------------


def config_kwargs(arch: Architecture) -> tuple[str, dict[str, Any], list[str]]:
    """(model_type, config kwargs, notes) for an architecture, falling back to llama for an unknown type."""
    notes: list[str] = []
    model_type = arch.model_type
    if model_type in TEXT_MODEL_OF:
        model_type = TEXT_MODEL_OF[model_type]
        notes.append(f"{arch.model_type}: built its {model_type} language model only")
    if model_type not in SUPPORTED_TYPES:
        notes.append(f"model_type {arch.model_type!r} is not built directly: a llama model of the same shapes stands in")
        model_type = "llama"
    kw: dict[str, Any] = {
        "vocab_size": arch.vocab_size,
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_hidden_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_key_value_heads,
        "max_position_embeddings": arch.max_position_embeddings,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "head_dim": arch.head_size,
        "use_cache": False,
    }
    if model_type == "llama":
        # Llama has one flag for q/k/v/o biases; an unknown type with only q/k/v biases gets them on o too.
        kw["attention_bias"] = arch.attention_bias or arch.o_proj_bias
        kw["mlp_bias"] = arch.mlp_bias
        if arch.attention_bias != arch.o_proj_bias:
            notes.append("llama stand-in: attention biases on q/k/v/o alike")
    elif model_type in ("qwen3", "qwen3_moe"):
        kw["attention_bias"] = arch.attention_bias
    elif model_type in ("gemma2", "gemma3_text"):
        kw["query_pre_attn_scalar"] = arch.head_size
    if model_type == "qwen3_moe":
        kw.update(
            num_experts=arch.num_experts,
            num_experts_per_tok=arch.num_experts_per_tok,
            moe_intermediate_size=arch.moe_intermediate_size or arch.intermediate_size,
            mlp_only_layers=list(arch.dense_layers),
            decoder_sparse_step=1,
        )
    elif model_type == "mixtral":
        kw.update(num_local_experts=arch.num_experts, num_experts_per_tok=arch.num_experts_per_tok)
    if model_type in MOE_TYPES and arch.is_moe:
        kw["output_router_logits"] = True
    if arch.is_moe and model_type not in MOE_TYPES:
        notes.append(f"{arch.model_type}: experts are not built by the {model_type} stand-in (a dense MLP is)")
    return model_type, kw, notes


def hf_config(arch: Architecture, *, attn_implementation: str = "sdpa") -> tuple[Any, list[str]]:
    """A transformers config for the architecture (imports transformers)."""
    from transformers import AutoConfig

    model_type, kw, notes = config_kwargs(arch)
    config = AutoConfig.for_model(model_type, **kw)
    config._attn_implementation = attn_implementation
    return config, notes


# -- construction -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Register every new parameter on the meta device; buffers (RoPE frequencies, embedding scales) stay real.

    Construction runs with the CPU as default device, where ``torch.empty`` only reserves address space, so no
    parameter is ever touched before :func:`_materialise` creates it on the target device.
    """
    import torch

    original = torch.nn.Module.register_parameter

    def register(self: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        original(self, name, param)
        p = self._parameters.get(name)
        if p is not None and p.device.type != "meta" and type(p) is torch.nn.Parameter:
            self._parameters[name] = torch.nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


def _fill_(tensor: torch.Tensor, name: str, generator: torch.Generator) -> None:
    """Cheap random init: matrices ~ N(0, 0.02), norm weights 1, biases 0. Values never change memory or speed."""
    if tensor.ndim >= 2:
        tensor.normal_(0.0, INIT_STD, generator=generator)
    elif name == "bias" or name.endswith("_bias"):
        tensor.zero_()
    else:
        tensor.fill_(1.0)


def _materialise(model: torch.nn.Module, device: torch.device, seed: int) -> None:
    """Give every meta parameter storage on ``device`` (tied parameters stay tied), and move buffers there."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    done: dict[int, torch.nn.Parameter] = {}
    keep_alive: list[torch.nn.Parameter] = []  # ids must not be reused while the map is live
    with torch.no_grad():
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is None:
                    continue
                if id(p) in done:
                    module._parameters[name] = done[id(p)]
                    continue
                keep_alive.append(p)
                if p.device.type == "meta":
                    data = torch.empty(p.shape, dtype=p.dtype, device=device)
                    _fill_(data, name, generator)
                    new = torch.nn.Parameter(data, requires_grad=p.requires_grad)
                else:
                    new = p
                done[id(p)] = new
                module._parameters[name] = new
            for name, b in list(module._buffers.items()):
                if b is not None and b.device != device:
                    module._buffers[name] = b.to(device)


def _quantize_linears(model: torch.nn.Module, spec: TrialSpec, device: torch.device, dtype: torch.dtype) -> int:
    """Swap the decoder's linear layers for bitsandbytes ones holding random quantized weights, as
    ``BitsAndBytesConfig`` loading would (``lm_head`` stays in the compute dtype, as transformers keeps it).

    Each layer's full-precision weight exists only while it is quantized, so a 4-bit 70B builds on one GPU.
    """
    import torch

    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise TrialSetupError(
            f"quantization_bit {spec.quantization_bit} needs bitsandbytes, which is not importable here ({exc})"
        ) from exc
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed + 1)
    count = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        has_bias = module.bias is not None
        weight = torch.empty(module.out_features, module.in_features, dtype=dtype, device=device)
        weight.normal_(0.0, INIT_STD, generator=generator)
        if spec.quantization_bit == 4:
            quant_storage = dtype if spec.zero_stage == 3 else torch.uint8
            new = bnb.nn.Linear4bit(
                module.in_features, module.out_features, bias=has_bias, compute_dtype=dtype,
                compress_statistics=True, quant_type="nf4", quant_storage=quant_storage, device="meta",
            )
            kwargs: dict[str, Any] = {"requires_grad": False, "compress_statistics": True, "quant_type": "nf4",
                                      "quant_storage": quant_storage}
            if "module" in inspect.signature(bnb.nn.Params4bit.__new__).parameters:
                kwargs["module"] = new
            new.weight = bnb.nn.Params4bit(weight.cpu() if device.type != "cuda" else weight, **kwargs).to(device)
        else:
            new = bnb.nn.Linear8bitLt(
                module.in_features, module.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0,
                device="meta",
            )
            new.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False).to(device)
        if has_bias:
            new.bias = torch.nn.Parameter(torch.zeros(module.out_features, dtype=dtype, device=device),
                                          requires_grad=False)
        del weight
        setattr(parent, child, new)
        count += 1
    # What PEFT reads to wrap bitsandbytes layers with its bnb LoRA layers, as after a quantized from_pretrained.
    setattr(model, "is_loaded_in_4bit", spec.quantization_bit == 4)  # noqa: B010
    setattr(model, "is_loaded_in_8bit", spec.quantization_bit == 8)  # noqa: B010
    setattr(model, "quantization_method", "bitsandbytes")  # noqa: B010
    return count


def _add_vision_standin(model: torch.nn.Module, numel: int, dtype: torch.dtype, device: torch.device) -> None:
    """The frozen vision tower's weights, as one frozen tensor: their memory counts, images never flow."""
    import torch

    model.vision_tower_standin = torch.nn.Parameter(torch.zeros(numel, dtype=dtype, device=device), requires_grad=False)


def _apply_liger(model_type: str) -> None:
    """LLaMA-Factory's ``apply_liger_kernel``: patch the modeling module before the model is created."""
    try:
        import liger_kernel.transformers as liger
    except ImportError as exc:
        raise TrialSetupError(f"liger not installed: liger_kernel is not importable ({exc})") from exc
    fn = getattr(liger, f"apply_liger_kernel_to_{model_type}", None)
    if fn is None:
        raise TrialSetupError(f"liger_kernel has no kernels for model_type {model_type!r}")
    fn()


def _from_config(config: Any, dtype: torch.dtype, attn: str, notes: list[str]) -> Any:
    """``from_config``; a model without SDPA support gets eager attention, as LLaMA-Factory's ``auto`` gives Gemma 2."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    except ValueError as exc:
        if attn != "sdpa" or "scaled_dot_product_attention" not in str(exc):
            raise
    notes.append(f"{config.model_type} does not support sdpa attention: eager attention used")
    return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")


def _z3_moe_leaves(model: Any, notes: list[str]) -> None:
    """LLaMA-Factory's ``add_z3_leaf_module``: ZeRO-3 gathers a sparse MoE block whole, or ranks whose tokens
    route to different experts wait on each other's gathers forever."""
    from deepspeed.utils import set_z3_leaf_modules

    classes = sorted({type(m) for m in model.modules() if type(m).__name__.endswith(("SparseMoeBlock", "MoeBlock"))},
                     key=lambda c: c.__name__)
    if classes:
        set_z3_leaf_modules(model, classes)
        notes.append("ZeRO-3 leaf modules: " + ", ".join(c.__name__ for c in classes))


def create_model(spec: TrialSpec, device: torch.device, *, zero3: bool = False) -> tuple[Any, list[str]]:
    """The bare causal LM with random weights on ``device`` in the compute dtype (quantized if asked)."""
    import torch

    if spec.quantization_bit is not None and device.type != "cuda":
        raise TrialSetupError(f"quantization_bit {spec.quantization_bit} (QLoRA) needs bitsandbytes on a CUDA device")
    if spec.quantization_bit not in (None, 4, 8):
        raise TrialSetupError(f"quantization_bit {spec.quantization_bit}: the trial runner builds 4- and 8-bit only")
    if spec.quantization_bit is not None and zero3:
        raise TrialSetupError("QLoRA under ZeRO-3 is not built by the trial runner: try ZeRO-2 or one GPU")
    if spec.liger and device.type != "cuda":
        raise TrialSetupError("Liger kernels are Triton kernels and need a CUDA device")
    if spec.attn_implementation == "flash_attention_2" and device.type != "cuda":
        raise TrialSetupError("attn_implementation flash_attention_2 needs a CUDA device")

    config, notes = hf_config(spec.arch, attn_implementation=spec.attn_implementation)
    dtype = getattr(torch, compute_dtype_name(spec.precision))
    if spec.liger:
        _apply_liger(config.model_type)
    try:
        if zero3:
            # transformers partitions the parameters as they are created (deepspeed.zero.Init) and initialises
            # them layer by layer; the HfDeepSpeedConfig that enables this is held by the caller.
            model = _from_config(config, dtype, spec.attn_implementation, notes)
            if spec.arch.is_moe:
                _z3_moe_leaves(model, notes)
        else:
            with torch.device("cpu"), _parameters_on_meta():
                model = _from_config(config, dtype, spec.attn_implementation, notes)
            if spec.quantization_bit is not None:
                n = _quantize_linears(model, spec, device, dtype)
                notes.append(f"{n} linear layers quantized to {spec.quantization_bit}-bit (random weights)")
            _materialise(model, device, spec.seed)
            if spec.arch.vision_params:
                _add_vision_standin(model, spec.arch.vision_params, dtype, device)
                notes.append(f"vision tower not built: a frozen tensor of its {spec.arch.vision_params} parameters "
                             "stands in for its weights' memory")
    except ImportError as exc:  # e.g. flash_attn missing for flash_attention_2
        raise TrialSetupError(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        if "attn_implementation" in str(exc) or "attention" in str(exc).lower():
            raise TrialSetupError(str(exc).splitlines()[0]) from exc
        raise
    model.config.use_cache = False
    return model, notes


# -- method -------------------------------------------------------------------------------------------------------


def find_all_linear_modules(model: Any, freeze_vision_tower: bool = True) -> list[str]:
    """LLaMA-Factory's ``find_all_linear_modules``: short names of every ``*Linear*`` module but the head."""
    forbidden = {"lm_head"}
    if freeze_vision_tower:
        forbidden.update({"vision_tower", "visual"})
    names: list[str] = []
    for name, module in model.named_modules():
        if any(f in name for f in forbidden):
            continue
        cls = module.__class__.__name__
        if "Linear" in cls and "Embedding" not in cls:
            short = name.split(".")[-1]
            if short not in names:
                names.append(short)
    return names


def parse_lora_target(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    return names or ["all"]


def _gc_module(func: Callable[..., Any]) -> Any:
    """The module a checkpointed call belongs to, for transformers 4 (bound ``__call__``) and 5 (``forward, self``)."""
    if isinstance(func, partial):
        owner = getattr(func.func, "__self__", None)
        if owner is not None:
            return owner
        if func.args:
            return func.args[0]
    return getattr(func, "__self__", None)


def enable_gradient_checkpointing(model: Any) -> None:
    """LLaMA-Factory's ``_gradient_checkpointing_enable`` with its custom function (trainable layers only)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise TrialSetupError(f"{type(model).__name__} does not support gradient checkpointing")
    base = partial(checkpoint, use_reentrant=USE_REENTRANT_GC)

    @wraps(base)
    def custom(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        module = _gc_module(func)
        has_grad = module is None or any(p.requires_grad for p in module.parameters())
        if not has_grad:
            return func(*args, **kwargs)
        for arg in args:
            if torch.is_tensor(arg) and torch.is_floating_point(arg):
                arg.requires_grad_(True)
                break  # the hidden states come first
        return base(func, *args, **kwargs)

    model._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=custom)
    model.config.use_cache = False


def _setup_freeze(model: Any, spec: TrialSpec, cast: bool) -> None:
    """LLaMA-Factory's ``_setup_freeze_tuning`` with ``freeze_trainable_modules: all`` and no extra modules."""
    import torch

    n_layers = spec.arch.num_hidden_layers
    k = spec.freeze_trainable_layers
    ids = range(max(0, n_layers - k), n_layers) if k > 0 else range(min(-k, n_layers))
    trainable = [f".{i:d}." for i in ids]
    for name, param in model.named_parameters():
        if any(t in name for t in trainable) and not re.search(r"vision_tower|visual\.", name):
            if cast:
                param.data = param.data.to(torch.float32)
        else:
            param.requires_grad_(False)


def _setup_full(model: Any, cast: bool) -> None:
    import torch

    for name, param in model.named_parameters():
        if re.search(r"vision_tower|visual\.", name):
            param.requires_grad_(False)
        elif cast:
            param.data = param.data.to(torch.float32)


def _setup_lora(model: Any, spec: TrialSpec, cast: bool) -> tuple[Any, list[str]]:
    import torch

    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise TrialSetupError(f"LoRA needs peft, which is not importable here ({exc})") from exc
    targets = parse_lora_target(spec.lora_target)
    if targets == ["all"]:
        targets = find_all_linear_modules(model)
    # additional_target: LLaMA-Factory passes it as PEFT's modules_to_save (v0.9.5 model/adapter.py,
    # _setup_lora_tuning): a trainable copy of each module next to the frozen original
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=spec.lora_rank,
        target_modules=targets,
        lora_alpha=spec.effective_lora_alpha,
        lora_dropout=spec.lora_dropout,
        use_dora=spec.use_dora,
        modules_to_save=list(spec.additional_target_names) or None,
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:
        if "not found" in str(exc) or "Target modules" in str(exc):
            raise TrialSetupError(f"lora_target {spec.lora_target!r}: {str(exc).splitlines()[0]}") from exc
        raise
    if cast:
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.float32)
    return model, targets


#: LLaMA-Factory's LAYERNORM_NAMES (src/llamafactory/extras/constants.py, v0.9.5).
LAYERNORM_NAMES = ("norm", "ln")


def upcast_layernorm(model: Any) -> int:
    """LLaMA-Factory's ``upcast_layernorm`` (``prepare_model_for_training`` in model_utils/checkpointing.py, run by
    ``patch_model`` before the adapter is set up): every 1-D parameter whose name contains "norm" or "ln" to fp32.
    Returns how many were cast."""
    import torch

    count = 0
    for name, param in model.named_parameters():
        if param.ndim == 1 and any(n in name for n in LAYERNORM_NAMES):
            param.data = param.data.to(torch.float32)
            count += 1
    return count


def apply_method(model: Any, spec: TrialSpec) -> tuple[Any, list[str]]:
    """Gradient checkpointing, then the fine-tuning method, in LLaMA-Factory's order (patcher, then adapter)."""
    if spec.quantization_bit is not None and spec.finetuning_type != "lora":
        raise TrialSetupError("Quantized models can only be used for the LoRA tuning.")
    if spec.precision == "pure_bf16" and spec.zero_stage == 3:
        raise TrialSetupError("`pure_bf16` is incompatible with DeepSpeed ZeRO-3.")
    model.train()
    if spec.upcast_layernorm:
        upcast_layernorm(model)
    if spec.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    cast = casts_trainable_to_fp32(spec)
    targets: list[str] = []
    if spec.finetuning_type == "full":
        _setup_full(model, cast)
    elif spec.finetuning_type == "freeze":
        _setup_freeze(model, spec, cast)
    elif spec.finetuning_type == "lora":
        model, targets = _setup_lora(model, spec, cast)
        if spec.gradient_checkpointing:
            # PEFT + checkpointing: the frozen embedding output must carry grad into the first checkpointed layer.
            model.enable_input_require_grads()
    else:
        raise TrialSetupError(f"finetuning_type {spec.finetuning_type!r}: the trial runner builds lora, freeze and full")
    return model, targets


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) as LLaMA-Factory's ``count_parameters`` counts them (4-bit weights hold 2 values a byte)."""
    trainable = total = 0
    for param in model.parameters():
        n = param.ds_numel if hasattr(param, "ds_numel") else param.numel()
        if param.__class__.__name__ == "Params4bit":
            storage = getattr(param, "quant_storage", None)
            n = n * 2 * (storage.itemsize if storage is not None and hasattr(storage, "itemsize") else 1)
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def build(spec: TrialSpec, device: torch.device, *, zero3: bool = False) -> BuiltModel:
    """Create the model, then prepare it for training as LLaMA-Factory would."""
    model, notes = create_model(spec, device, zero3=zero3)
    model, targets = apply_method(model, spec)
    trainable, total = count_parameters(model)
    return BuiltModel(model=model, trainable_params=trainable, total_params=total, notes=notes, lora_targets=targets)
