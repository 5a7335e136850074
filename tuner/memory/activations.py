"""Activation memory: what autograd keeps per token in each decoder layer, the head, and the loss.

The counts follow what the Hugging Face modeling code, PEFT and torch autograd actually save, tensor by
tensor, for a Llama-style layer (RMSNorm, GQA attention, gated MLP, optional MoE):

* HF ``RMSNorm`` upcasts its input to fp32 and saves that copy (4 B/elt); when its weight trains it also
  saves the normalised 16-bit tensor. Liger's RMSNorm saves only its input.
* A frozen linear saves nothing (its backward needs only the weight); a trainable one saves its input. Under
  autocast an fp32 input is cast per call, so q/k/v each keep their own 16-bit copy.
* PEFT LoRA casts the input to the adapter dtype (fp32 after LLaMA-Factory's upcast) and ``lora_A`` under
  autocast saves its own 16-bit copy: one copy of ``d_in`` per adapted module, plus ``rank`` for ``lora_B``.
  Dropout adds a one-byte mask per module; DoRA saves the base and LoRA outputs for the magnitude gradient.
* FlashAttention and SDPA save q, k, v, the output and the log-sum-exp. SDPA with a padding mask takes the
  memory-efficient path and HF expands k/v to all heads first (``repeat_kv``). Eager attention also keeps the
  fp32 softmax and its 16-bit copy: the ``a·s²`` term.
* The gated MLP saves the gate output, the activation output and the up output (Liger's SwiGLU: two).

Gradient checkpointing (LLaMA-Factory's default, reentrant) keeps only each trainable layer's input and
recomputes one layer at a time in backward. Frozen layers before the first trainable one save nothing;
frozen layers after it run outside checkpointing (LLaMA-Factory only checkpoints layers that have trainable
parameters) and keep their activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.memory import constants as C
from tuner.memory.model import LayerPlan
from tuner.models.arch import Architecture
from tuner.models.params import Linear


@dataclass(frozen=True)
class LayerDtypes:
    """Byte widths of one layer's tensors for a given precision regime."""

    autocast: bool
    residual: int  # the residual stream entering the layer
    norm_weight: int
    trainable_weight: int  # weights that train (fp32 after LLaMA-Factory's upcast, 16-bit under DeepSpeed)
    frozen_weight: int
    adapter: int  # LoRA/OFT adapter weights

    def matmul_out(self, plan: LayerPlan) -> int:
        """Bytes of a linear's output: 2 under autocast, else the weight's own dtype."""
        if self.autocast:
            return 2
        return self.trainable_weight if plan.trainable_linears else self.frozen_weight


@dataclass(frozen=True)
class ActOptions:
    attention: str  # sdpa | fa2 | fa3 | eager
    kv_expanded: bool  # SDPA with a padding mask: k/v expanded to all heads
    liger: bool
    lora_dropout: bool
    dora: bool
    oft: bool
    #: bitsandbytes 4-bit base layers (QLoRA): ``MatMul4Bit`` keeps its input, and PEFT's bitsandbytes LoRA layer
    #: feeds the adapter the uncast input under autocast
    bnb4: bool = False
    #: ``upcast_layernorm`` with bitsandbytes 4-bit layers under autocast: the fp32 norm outputs make the 4-bit layers
    #: that read them compute in fp32 and return fp32 (``Linear4bit.set_compute_type``/``forward``), so q/k/v and the
    #: whole MLP run in fp32, and the MLP's fp32 output turns the residual stream fp32 from the first layer on
    bnb_fp32: bool = False


@dataclass(frozen=True)
class LayerAct:
    """Activation bytes of one layer: ``per_token + per_token_s * seq_len`` per token."""

    per_token: float
    per_token_s: float  # the s² term (eager attention), per token per unit of sequence length
    transient_per_token: float  # backward working set beyond what is saved
    transient_per_token_s: float
    fixed_transient: float  # per-module temporaries independent of tokens (DoRA's weight norm)

    def saved(self, tokens: int, seq: int) -> float:
        return tokens * (self.per_token + self.per_token_s * seq)

    def transient(self, tokens: int, seq: int) -> float:
        return tokens * (self.transient_per_token + self.transient_per_token_s * seq) + self.fixed_transient


def _norm(width: int, x_b: int, trainable: bool, w_b: int, liger: bool) -> tuple[float, int]:
    """(saved bytes per token, output bytes) of one RMSNorm: its input (HF: upcast to fp32), the fp32
    reciprocal RMS, and the normalised tensor when the weight trains."""
    if liger:
        return x_b * width + 4, x_b
    return 4 * width + 4 + (x_b * width if trainable else 0), max(x_b, w_b)


def _group(
    x_b: int,
    d_in: int,
    members: list[Linear],
    plan: LayerPlan,
    dt: LayerDtypes,
    opts: ActOptions,
    x_saved: bool = False,
) -> tuple[float, bool]:
    """Saved bytes per token of the linears that read one input tensor; and whether the input itself is kept."""
    total = 0.0
    shares_x = x_saved
    for lin in members:
        if lin.path in plan.trainable_linears:
            if dt.autocast and x_b != 2:
                total += 2 * d_in  # autocast casts the fp32 input for this call, and the matmul keeps the copy
            else:
                shares_x = True
        if opts.bnb4 and lin.path not in plan.trainable_linears:
            shares_x = True  # bitsandbytes' MatMul4Bit keeps its input on the autograd context
        if lin.path in plan.adapters:
            rank = plan.adapters[lin.path]
            a_b = dt.adapter
            cast = a_b != x_b
            if opts.lora_dropout:
                total += d_in  # the dropout mask (bool)
            if opts.bnb4 and dt.autocast and not opts.lora_dropout and x_b == 2:
                shares_x = True  # PEFT's bitsandbytes LoRA layer: no cast under autocast, lora_A keeps x itself
            elif opts.bnb4 and dt.autocast and not opts.lora_dropout:
                total += 2 * d_in  # no PEFT cast, but autocast's 16-bit copy of the fp32 input for lora_A
            elif dt.autocast and a_b != 2:
                total += 2 * d_in  # lora_A's autocast copy of the (cast, dropped) input
            elif cast or opts.lora_dropout:
                total += a_b * d_in  # its own cast or dropped tensor
            else:
                shares_x = True
            out_b = 2 if dt.autocast else a_b
            total += rank * out_b  # lora_A's output, kept for lora_B's weight gradient
            if opts.dora:
                total += (dt.matmul_out(plan) + out_b) * lin.out_features
    if shares_x and not x_saved:
        total += x_b * d_in
    return total, shares_x


def layer_activation(
    arch: Architecture, linears: tuple[Linear, ...], plan: LayerPlan, dt: LayerDtypes, opts: ActOptions, input_needs_grad: bool = True
) -> LayerAct:
    """Per-token activation bytes of one decoder layer (see the module docstring for what is counted).

    ``input_needs_grad=False`` is the first layer with trainable parameters when nothing before it trains
    and it is not checkpointed: its input norm then keeps only what its own weight's gradient needs.
    """
    h, hd = arch.hidden_size, arch.head_size
    a, kv = arch.num_attention_heads, arch.num_key_value_heads
    hq, hkv = a * hd, kv * hd
    mm = dt.matmul_out(plan)
    mm_in = 4 if opts.bnb_fp32 else mm  # outputs of the 4-bit layers that read fp32 norm outputs (q/k/v, the MLP)
    by_name = {lin.path.rsplit(".", 1)[-1]: lin for lin in linears if lin.part == "attention"}
    saved = 0.0
    s_coef = 0.0

    # input norm, q/k/v
    n1, n1_out = _norm(h, dt.residual, plan.norms_trainable, dt.norm_weight, opts.liger)
    if not input_needs_grad and not opts.liger:
        n1 = dt.residual * h if plan.norms_trainable else 0.0
    saved += n1
    qkv = [by_name[n] for n in ("q_proj", "k_proj", "v_proj") if n in by_name]
    g, _ = _group(n1_out, h, qkv, plan, dt, opts)
    saved += g
    if arch.qk_norm:
        saved += _norm(hq, mm_in, plan.norms_trainable, dt.norm_weight, opts.liger)[0]
        saved += _norm(hkv, mm_in, plan.norms_trainable, dt.norm_weight, opts.liger)[0]

    # attention core
    lse = 4 * a
    if opts.attention in ("fa2", "fa3"):
        saved += mm * (2 * hq + 2 * hkv) + lse
        out_saved = True  # o_proj reads a view of the kernel's saved output
        attn_bwd = mm * (2 * hq + 2 * hkv)
        s_tr = 0.0
    elif opts.attention == "sdpa":
        kvw = hq if opts.kv_expanded else hkv
        saved += mm * (2 * hq + 2 * kvw) + lse
        out_saved = True  # the kernels write (b, s, h, d): transpose(1, 2).contiguous() is the saved output
        attn_bwd = mm * (2 * hq + 2 * kvw)
        s_tr = 0.0
    else:  # eager: q, repeated k/v, fp32 softmax + its 16-bit copy (a·s² per sequence)
        saved += mm * 3 * hq
        s_coef += a * (4 + (mm if mm != 4 else 0))
        out_saved = False
        attn_bwd = mm * 3 * hq
        s_tr = a * (8 + mm)  # softmax backward: fp32 gradient + 16-bit gradients of the scores
    o = [by_name["o_proj"]] if "o_proj" in by_name else []
    saved += _group(mm, hq, o, plan, dt, opts, x_saved=out_saved)[0]

    # post-attention norm and MLP
    res2 = max(dt.residual, mm)
    n2, n2_out = _norm(h, res2, plan.norms_trainable, dt.norm_weight, opts.liger)
    saved += n2
    act_mult = 2 if opts.liger else 3
    mlp = [lin for lin in linears if lin.part == "mlp"]
    experts = [lin for lin in linears if lin.part == "experts"]
    shared = [lin for lin in linears if lin.part == "shared_expert"]
    router = [lin for lin in linears if lin.part == "router"]
    if arch.extra_norms_per_layer:
        saved += arch.extra_norms_per_layer * _norm(h, mm, plan.norms_trainable, dt.norm_weight, opts.liger)[0]
    if mlp:
        inter = next((lin.out_features for lin in mlp if lin.path.endswith(("gate_proj", "up_proj", "w1", "w3"))), arch.intermediate_size)
        gate_up = [lin for lin in mlp if not lin.path.endswith(("down_proj", "w2"))]
        down = [lin for lin in mlp if lin.path.endswith(("down_proj", "w2"))]
        saved += _group(n2_out, h, gate_up, plan, dt, opts)[0]
        saved += act_mult * mm_in * inter
        saved += _group(mm_in, inter, down, plan, dt, opts)[0]
        mlp_bwd = float(3 * mm_in * inter)
    else:
        k = max(1, arch.num_experts_per_tok)
        g, _ = _group(n2_out, h, router + [lin for lin in shared if not lin.path.endswith("down_proj")], plan, dt, opts)
        saved += g + 4 * arch.num_experts + mm * arch.num_experts  # router softmax (fp32) and weights
        mlp_bwd = 0.0
        if experts:
            inter = experts[0].out_features if not experts[0].path.endswith(("down_proj", "w2")) else experts[0].in_features
            e_gate_up = [lin for lin in experts if not lin.path.endswith(("down_proj", "w2"))]
            e_down = [lin for lin in experts if lin.path.endswith(("down_proj", "w2"))]
            per_assign = _group(n2_out, h, e_gate_up, plan, dt, opts)[0]  # the gathered token copy per expert
            per_assign += act_mult * mm * inter + _group(mm, inter, e_down, plan, dt, opts)[0]
            per_assign += mm * h  # expert output, kept by the routing-weight multiply
            saved += k * per_assign
            mlp_bwd = k * (3 * mm * inter + mm * h)
        if shared:
            s_inter = next((lin.out_features for lin in shared if lin.path.endswith("gate_proj")), 0)
            s_down = [lin for lin in shared if lin.path.endswith("down_proj")]
            saved += act_mult * mm * s_inter + _group(mm, s_inter, s_down, plan, dt, opts)[0] + mm * h
            mlp_bwd += 3 * mm * s_inter
    transient = max(attn_bwd, mlp_bwd) + 2 * res2 * h

    fixed = 0.0
    if opts.dora and plan.adapters:
        biggest = max((lin.in_features * lin.out_features for lin in linears if lin.path in plan.adapters), default=0)
        fixed = biggest * (mm + 2 * dt.adapter)  # dequantised/cloned weight, B@A, and their sum for the norm
    return LayerAct(saved, s_coef, transient, s_tr, fixed)


def checkpoint_bytes_per_token(arch: Architecture, residual_b: int) -> float:
    """What a checkpointed layer keeps: its input hidden states."""
    return residual_b * arch.hidden_size


def head_saved_per_token(arch: Architecture, residual_b: int, norm_trainable: bool, lm_head_trainable: bool, autocast: bool, liger: bool) -> float:
    """Final norm and the lm_head input (when the head trains and the loss is not Liger's fused one)."""
    h = arch.hidden_size
    n, out_b = _norm(h, residual_b, norm_trainable, 4 if norm_trainable and residual_b == 4 else residual_b, liger)
    head = 0.0
    if lm_head_trainable and not liger:
        head = 2 * h if (autocast and out_b != 2) else out_b * h
    return n + head


def loss_bytes(arch: Architecture, tokens: int, *, fused: bool, logits_b: int, hidden_b: int, head_trainable: bool, head_weight_b: int, stage: str,
               loss_in_16bit: bool = False, shift: str = "labels", batch: int = 1) -> tuple[float, float, str]:
    """Bytes of logits and loss for ``tokens`` positions at the loss's backward peak and at the end of the
    forward, and how they were counted. ``loss_in_16bit``: the model's own code runs the cross-entropy on its
    16-bit logits and no autocast lifts it to fp32 (see ``LOSS_BYTES_PER_VOCAB_TOKEN_16BIT``). ``shift``: how the
    target transformers release shifts logits against labels (``TrainSetup.loss_shift``); a shifted slice of a
    ``batch`` of one is contiguous already, so only ``batch`` > 1 pays for the copy."""
    V, h = arch.vocab_size, arch.hidden_size
    if fused:
        # Liger FusedLinearCrossEntropy: logits exist one chunk at a time; chunk = next_pow2(ceil(BT / ceil(V/H))).
        chunk = min(tokens, 2 ** math.ceil(math.log2(max(1, math.ceil(tokens / max(1, math.ceil(V / h)))))))
        b = tokens * h * hidden_b + 2 * chunk * V * logits_b + 8 * tokens
        if head_trainable:
            b += V * h * head_weight_b
        return b, b, f"Liger fused linear+CE: {chunk}-token chunks of {V:,} logits, grad_input kept"
    if stage == "rm":
        per = 6.0  # the value-head model still computes 16-bit logits and upcasts them; no vocab loss
        return tokens * V * per, tokens * V * per, f"{tokens:,} tokens x {V:,} vocab x {per:g} B (value head; logits upcast)"
    if loss_in_16bit and logits_b == 2:
        per = C.LOSS_BYTES_PER_VOCAB_TOKEN_16BIT
        return tokens * V * per, tokens * V * C.LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN_16BIT, (
            f"{tokens:,} tokens x {V:,} vocab x {per:g} B (the model's own 16-bit cross-entropy: log-softmax, its gradient "
            "and the NLL gradient)")
    per = C.LOSS_BYTES_PER_VOCAB_TOKEN
    fwd = C.LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN if logits_b == 2 else C.LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN_FP32_LOGITS
    how = "fp32 log-softmax, its gradient and the NLL gradient"
    if shift == "model":  # the forward returns fp32 logits: no 16-bit logits, no accelerate copy
        fwd = C.LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN_FP32_LOGITS + (C.LOSS_SHIFT_COPY_BYTES_PER_VOCAB_TOKEN if batch > 1 else 0)
    elif shift == "logits" and batch > 1:
        fwd += C.LOSS_SHIFT_COPY_BYTES_PER_VOCAB_TOKEN
        how += "; at the end of the forward also the shifted fp32 copy (transformers 4.46-4.48)"
    return tokens * V * per, tokens * V * fwd, f"{tokens:,} tokens x {V:,} vocab x {per:g} B ({how})"


def batch_tensor_bytes(arch: Architecture, batch: int, seq: int, attention: str, mm: int, rope_b: int = 2) -> float:
    """input_ids/labels/attention_mask/position_ids (int64), RoPE cos/sin (in the hidden states' dtype),
    and the 4-D mask SDPA/eager build."""
    tokens = batch * seq
    b = tokens * (4 * 8 + 2 * arch.head_size * rope_b)
    if attention == "eager":
        b += batch * seq * seq * mm
    elif attention == "sdpa" and batch > 1:
        b += batch * seq * seq * mm  # padding mask, kept by the memory-efficient kernel
    return b
