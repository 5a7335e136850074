"""QLoRA for the trace: a stand-in for bitsandbytes' 4-bit linear layer that allocates what bitsandbytes allocates.

bitsandbytes needs its compiled kernels and is not installed where the trace runs, so its NF4 layer is replaced by
:class:`Linear4bitStandIn`, which holds and allocates tensors of the same sizes at the same moments, as read in
bitsandbytes 0.45-0.48:

* storage (``nn/modules.py`` ``Params4bit``, ``functional.py`` ``quantize_4bit``): the packed weight, ``uint8``
  with two 4-bit codes a byte (``n / 2`` bytes); per block of 64 values an absmax, which double quantization
  (``compress_statistics``, LLaMA-Factory's default) stores as ``uint8`` (``n / 64`` bytes) with a second-level
  fp32 absmax per 256 blocks, an fp32 offset and the 256-entry fp32 dynamic code (one per device, shared); the
  4-bit code itself (16 fp32 values) belongs to each layer's quant state. The bias stays a 16-bit parameter.
* forward (``autograd/_functions.py`` ``MatMul4Bit.forward``): the weight is dequantized to the compute dtype
  (``functional.py`` ``dequantize_4bit``: first the absmax, to fp32, then the ``out x in`` 16-bit weight), used by
  ``F.linear`` and dropped; the input ``A`` is kept on the autograd context whenever it needs a gradient.
* backward (``MatMul4Bit.backward``): the weight is dequantized again for ``grad_A = grad_output @ W``.
* dtypes (``nn/modules.py`` ``Linear4bit.forward`` and ``set_compute_type``): on its first call the layer takes an
  fp32 or bf16 input's dtype as its compute dtype; every call casts the input to the compute dtype and the output
  back to the input's dtype. With bf16 inputs (LLaMA-Factory's default) both casts are no-ops; with fp32 inputs
  (``upcast_layernorm``'s fp32 norm outputs) the layer computes, keeps and returns fp32.

PEFT wraps such a layer with its bitsandbytes LoRA layer (``peft/tuners/lora/bnb.py`` ``Linear4bit.forward``),
which differs from the plain one in two ways that matter for memory: the base output is cloned before the adapter
is added, and under autocast the input is not cast to the adapter's dtype. PEFT only picks that class when
bitsandbytes is importable, so :func:`quantize` swaps in a forward with those two behaviours.

The parameter count follows LLaMA-Factory's ``count_parameters``: a ``Params4bit`` counts ``2 x numel``
(:func:`packed_weights`).
"""

from __future__ import annotations

import types
from typing import Any

import torch

#: bitsandbytes' blocksizes: 64 values per absmax, 256 absmax values per second-level block (double quantization).
BLOCK = 64
BLOCK2 = 256


def _dequantize(layer: Linear4bitStandIn, dtype: torch.dtype) -> torch.Tensor:
    """``dequantize_4bit``: the nested absmax to fp32 first, then the 16-bit weight (values do not matter here)."""
    absmax = torch.zeros(layer.absmax.shape, dtype=torch.float32, device=layer.absmax.device)
    weight = torch.zeros((layer.out_features, layer.in_features), dtype=dtype, device=layer.absmax.device)
    del absmax
    return weight


class _MatMul4Bit(torch.autograd.Function):
    """``MatMul4Bit`` of bitsandbytes: dequantize, ``F.linear``, keep ``A`` on the context; dequantize again in
    backward for the input's gradient (the frozen weight has none)."""

    @staticmethod
    def forward(ctx: Any, A: torch.Tensor, layer: Linear4bitStandIn, bias: torch.Tensor | None) -> torch.Tensor:
        out = torch.nn.functional.linear(A, _dequantize(layer, A.dtype), bias)
        ctx.layer = layer
        ctx.dtype_A = A.dtype
        ctx.has_bias = bias is not None
        ctx.tensors = (A,) if ctx.needs_input_grad[0] else (None,)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grad_A = grad_bias = None
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        if ctx.needs_input_grad[0]:
            grad_A = torch.matmul(grad_output, _dequantize(ctx.layer, grad_output.dtype))
        ctx.tensors = None
        return grad_A, None, grad_bias


class Linear4bitStandIn(torch.nn.Linear):
    """An NF4 linear layer with double quantization, as bitsandbytes stores and runs it (see the module docstring).

    A subclass of ``nn.Linear`` so that LLaMA-Factory's ``lora_target: all`` (class names containing "Linear") and
    PEFT's dispatch find it; its ``weight`` is the packed ``uint8`` tensor."""

    # The buffers registered in __init__ (nn.Module's __getattr__ types them as ``Tensor | Module``).
    absmax: torch.Tensor
    absmax2: torch.Tensor
    offset: torch.Tensor
    code: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool, bias_dtype: torch.dtype) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, out_features
        n = in_features * out_features
        blocks = -(-n // BLOCK)
        meta = torch.device("meta")
        self.weight = torch.nn.Parameter(torch.empty((-(-n // 2), 1), dtype=torch.uint8, device=meta), requires_grad=False)
        self.bias = torch.nn.Parameter(torch.empty(out_features, dtype=bias_dtype, device=meta), requires_grad=False) if bias else None  # type: ignore[assignment]  # nn.Linear types bias as Parameter, yet a bias-less Linear holds None
        self.register_buffer("absmax", torch.empty(blocks, dtype=torch.uint8, device=meta), persistent=False)
        self.register_buffer("absmax2", torch.empty(-(-blocks // BLOCK2), dtype=torch.float32, device=meta), persistent=False)
        self.register_buffer("offset", torch.empty((), dtype=torch.float32, device=meta), persistent=False)
        self.register_buffer("code", torch.empty(16, dtype=torch.float32, device=meta), persistent=False)
        self.compute_dtype: torch.dtype | None = bias_dtype
        self.compute_type_is_set = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compute_type_is_set:
            if x.dtype in (torch.float32, torch.bfloat16):
                self.compute_dtype = x.dtype
            self.compute_type_is_set = True
        inp_dtype = x.dtype
        if self.compute_dtype is not None:
            x = x.to(self.compute_dtype)
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return _MatMul4Bit.apply(x, self, bias).to(inp_dtype)


def _lora_4bit_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The forward of PEFT's bitsandbytes LoRA layer, vanilla LoRA only: the base output cloned, and the input cast
    to the adapter's dtype only outside autocast."""
    result = self.base_layer(x, *args, **kwargs).clone()
    for name in self.active_adapters:
        if name not in self.lora_A:
            continue
        lora_A, lora_B = self.lora_A[name], self.lora_B[name]
        # PEFT asks ``torch.is_autocast_enabled()``, which means CUDA autocast; the trace emulates the CUDA run under
        # CPU autocast, so the question is asked of the input's device.
        convert = not torch.is_autocast_enabled(x.device.type)
        inp = x.to(lora_A.weight.dtype) if convert and x.dtype != lora_A.weight.dtype else x
        out = lora_B(lora_A(self.lora_dropout[name](inp))) * self.scaling[name]
        result = result + (out.to(result.dtype) if convert else out)
    return result


def quantize(model: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Swap every linear layer but ``lm_head`` for a stand-in (on meta), as ``BitsAndBytesConfig(load_in_4bit=True)``
    loading does (transformers keeps the output layer unquantized). Returns how many were swapped."""
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or name.split(".")[-1] == "lm_head":
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Linear4bitStandIn(module.in_features, module.out_features, module.bias is not None, compute_dtype))
        count += 1
    return count


def patch_lora_layers(model: torch.nn.Module) -> int:
    """Give PEFT's LoRA layers around a stand-in the bitsandbytes LoRA forward (see :func:`_lora_4bit_forward`)."""
    count = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, Linear4bitStandIn) and hasattr(module, "lora_A"):
            module.forward = types.MethodType(_lora_4bit_forward, module)
            count += 1
    return count


def packed_weights(model: torch.nn.Module) -> set[int]:
    """ids of the packed 4-bit weights (LLaMA-Factory counts each as ``2 x numel`` parameters)."""
    return {id(m.weight) for m in model.modules() if isinstance(m, Linear4bitStandIn)}
