"""LoRA hyper-parameters: rank, alpha, dropout, targets, and the learning rate for the tuning method.

These rules fire only for ``finetuning_type: lora`` (the LoRA-only flags on other methods are KEY/LF checks).
The learning-rate ranges are heuristics from LLaMA-Factory's examples and issue threads, not hard limits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.config.context import Context, StageUnknown
from tuner.lint.fixes import insert_key, remove_key, replace_value
from tuner.lint.rule import Finding, Rule, Severity, is_number

from ._lf_common import adapters, adapters_mergeable, lf_split, resolve_dir

#: Attention projections under the names the common architectures use; a target made only of these is narrow.
_ATTENTION_MODULES = {
    "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "wqkv", "wq", "wk", "wv", "wo",
    "query", "key", "value", "self_attn",
}  # fmt: skip

#: Stages whose usual learning rates are an order of magnitude lower (DPO/KTO examples use 5e-6).
_PREFERENCE_STAGES = {"dpo", "kto", "ppo"}
_METHOD_NAMES = {"lora": "LoRA", "oft": "OFT"}


def _intended(v: object) -> float | None:
    """A number as the user meant it: ``"16"`` is 16 here (KEY003 reports the quoting separately)."""
    try:
        if is_number(v):
            return float(v)
        if isinstance(v, str):
            return float(v.strip())
    except (ValueError, OverflowError):  # an integer past float's range is no rank or alpha anyone meant
        return None
    return None


def _lora_training(ctx: Context) -> bool:
    """LoRA hyper-parameters matter when ``llamafactory-cli train`` builds a new adapter."""
    return (ctx.options.command or "train") == "train" and ctx.finetuning_type == "lora"


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.0e}".replace("e-0", "e-")


class LoraAlphaRatio(Rule):
    """``lora_alpha`` far from twice ``lora_rank``.

    The LoRA update is scaled by ``lora_alpha / lora_rank`` (``lora_alpha / sqrt(lora_rank)`` with
    ``use_rslora``; peft ``tuners/lora/layer.py`` ``LoraLayer.update_layer``). LLaMA-Factory sets
    ``lora_alpha = 2 * lora_rank`` when it is unset (scaling 2), and published recipes stay between 0.25 (the
    QLoRA paper's r=64, alpha=16) and 4. A scaling below 0.25 or above 8 is a warning: the update is scaled by an
    order of magnitude, like a much smaller or larger learning rate (a loss that barely moves, or divergence).
    Users often raise the rank and forget alpha (hiyouga/LlamaFactory#2465, #1504, #1181). Between 0.25 and 1,
    or 4 and 8, it is info.

    Bad:

    ```yaml
    finetuning_type: lora
    lora_rank: 128
    lora_alpha: 16
    ```

    Good:

    ```yaml
    finetuning_type: lora
    lora_rank: 128
    lora_alpha: 256
    ```
    """

    code = "LORA001"
    name = "lora-alpha-ratio"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _lora_training(ctx) or not ctx.has("lora_alpha"):
            return
        rank_f, alpha_f = _intended(ctx.get("lora_rank")), _intended(ctx.get("lora_alpha"))
        if rank_f is None or alpha_f is None or rank_f <= 0 or alpha_f <= 0 or not rank_f.is_integer():
            return  # LORA002 reports non-positive values; KEY003 reports wrong types
        rank, alpha = int(rank_f), alpha_f
        rslora = ctx.flag("use_rslora")
        scaling = alpha / math.sqrt(rank) if rslora else alpha / rank
        if 1.0 <= scaling <= 4.0:
            return
        formula = (
            f"lora_alpha/sqrt(lora_rank) = {alpha:g}/sqrt({rank})"
            if rslora
            else f"lora_alpha/lora_rank = {alpha:g}/{rank}"
        )
        direction = "up" if scaling > 4 else "down"
        # Published recipes reach a scaling of 0.25 (QLoRA: r=64, alpha=16) and LLaMA-Factory's default is 2; a
        # factor beyond 0.25 or 8 is an order of magnitude from the default, the "raised the rank, forgot
        # alpha" mistake. Between those bounds it is a choice worth knowing about, not a problem.
        far = scaling < _SCALING_LOW or scaling > _SCALING_HIGH
        default = 2 * math.sqrt(rank) if rslora else 2 * rank
        suggested = f"{default:g}" if float(default).is_integer() else str(round(default))
        yield Finding(
            key="lora_alpha",
            also=("lora_rank",),
            severity=Severity.WARNING if far else Severity.INFO,
            message=f"`lora_alpha: {alpha:g}` with `lora_rank: {rank}`: the LoRA update is scaled by {formula} = "
            f"{scaling:.3g} (LLaMA-Factory's default alpha gives 2; recipes use 0.25-4), which scales the "
            f"effective learning rate {direction}" + ("" if far else " (a deliberate choice in some recipes)"),
            hint=f"use `lora_alpha: {suggested}` for a scaling of 2, or remove `lora_alpha`"
            + (" (LLaMA-Factory's default, 2 × rank)" if not rslora else ""),
            fix=replace_value(ctx, "lora_alpha", suggested, f"set `lora_alpha: {suggested}`", safe=False),
        )


#: Below or above these LoRA scalings (alpha/r, or alpha/sqrt(r) with rsLoRA) LORA001 warns; see its check.
_SCALING_LOW, _SCALING_HIGH = 0.25, 8.0


class LoraNonPositive(Rule):
    """``lora_rank`` or ``lora_alpha`` is zero or negative.

    LLaMA-Factory accepts ``lora_rank: 0`` and fails later when peft builds the adapter ("`r` should be a positive
    integer"), after the model has been loaded. ``lora_alpha: 0`` is replaced by ``2 * lora_rank``, so it is harmless
    but misleading; a negative alpha flips the update's sign.

    Bad:

    ```yaml
    finetuning_type: lora
    lora_rank: 0
    ```

    Good:

    ```yaml
    finetuning_type: lora
    lora_rank: 8
    ```
    """

    code = "LORA002"
    name = "lora-nonpositive"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _lora_training(ctx):
            return
        rank = ctx.get("lora_rank")
        if is_number(rank) and rank <= 0:
            yield Finding(
                key="lora_rank",
                message=f"`lora_rank: {rank}`: a LoRA adapter needs a positive rank; peft fails after the model loads "
                '("`r` should be a positive integer value")',
                hint="use a rank such as 8, 16 or 64",
            )
        alpha = ctx.get("lora_alpha")
        if is_number(alpha) and alpha < 0:
            yield Finding(
                key="lora_alpha",
                message=f"`lora_alpha: {alpha}` is negative: it flips the sign of the LoRA update",
                hint="remove `lora_alpha` (LLaMA-Factory then uses 2 × `lora_rank`) or set a positive value",
            )
        elif is_number(alpha) and alpha == 0 and ctx.lora_rank:
            yield Finding(
                key="lora_alpha",
                severity=Severity.INFO,
                message=f"`lora_alpha: 0` means the default: LLaMA-Factory uses 2 × `lora_rank` = {2 * ctx.lora_rank}",
                hint="remove `lora_alpha` to say so",
            )


class LearningRateRange(Rule):
    """A learning rate far outside the usual range for the fine-tuning method (a heuristic).

    LoRA usually trains at 5e-5…5e-4 (LLaMA-Factory's LoRA examples use 1e-4); above ~1e-3 it diverges
    (hiyouga/LlamaFactory#4225), a warning; below ~1e-5 the loss barely moves, which only wastes the run and is
    sometimes chosen on purpose, so that is info. Full and freeze tuning
    change the pretrained weights directly and usually use 1e-5…5e-5; above 1e-4 they tend to forget what the
    model knew or diverge; pre-training (``stage: pt``, ``train_from_scratch``) usually runs at 1e-4…1e-3 and is
    not checked for them. Preference stages (DPO, KTO, PPO) use lower rates still and are not checked. This is a
    rule of thumb: a deliberate choice can be suppressed with ``# cfglint: disable=LORA003``.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    finetuning_type: full
    learning_rate: 2.0e-4
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    finetuning_type: full
    learning_rate: 1.0e-5
    ```
    """

    code = "LORA003"
    name = "learning-rate-range"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training:
            return
        lr = ctx.number("learning_rate")
        if not is_number(lr):
            return  # unset, or inf/nan: the key schema and the numeric-range rules report those
        where = "learning_rate" if ctx.has("learning_rate") else None
        if lr <= 0:
            yield Finding(
                key=where,
                also=("do_train",),
                severity=Severity.ERROR if lr < 0 else Severity.WARNING,
                message=f"`learning_rate: {lr:g}`: "
                + ("the optimizer refuses a negative learning rate" if lr < 0 else "nothing is trained"),
                hint="use e.g. 1.0e-4 for LoRA, 1.0e-5 for full fine-tuning",
            )
            return
        if ctx.stage in _PREFERENCE_STAGES:
            return
        method = ctx.finetuning_type
        if method in ("lora", "oft"):
            if 1e-5 <= lr <= 1e-3:
                return
            low = lr < 1e-5
            yield Finding(
                key=where,
                also=("finetuning_type", "do_train"),
                # Too low only wastes the run (the loss barely moves), and some recipes do it on purpose;
                # too high diverges.
                severity=Severity.INFO if low else Severity.WARNING,
                message=f"`learning_rate: {_fmt(lr)}` is {'far below' if low else 'far above'} the usual range for "
                f"{_METHOD_NAMES[method]} (about 5e-5…5e-4; heuristic): "
                + (
                    "the adapter will barely move from its zero initialisation"
                    if low
                    else "training is likely to diverge"
                ),
                hint="LLaMA-Factory's LoRA examples use `learning_rate: 1.0e-4`",
            )
        elif method in ("full", "freeze"):
            if lr <= 5e-5 or ctx.stage == "pt" or ctx.flag("train_from_scratch"):
                return  # pre-training (continued or from scratch) runs at 1e-4...1e-3: the range is for fine-tuning
            strong = lr > 1e-4
            yield Finding(
                key=where,
                also=("finetuning_type", "do_train"),
                severity=Severity.WARNING if strong else Severity.INFO,
                message=f"`learning_rate: {_fmt(lr)}` is high for {method} fine-tuning (usually 1e-5…5e-5; heuristic): "
                + (
                    "updating every weight this fast tends to diverge or erase what the model knew"
                    if strong
                    else "watch the loss for spikes"
                ),
                hint="LLaMA-Factory's full fine-tuning examples use `learning_rate: 1.0e-5`",
            )


class NarrowLoraTarget(Rule):
    """``lora_target`` covers only attention projections (for example ``q_proj,v_proj``).

    Older recipes adapt only the query and value projections. LLaMA-Factory's default, ``lora_target: all``, adapts
    every linear layer including the MLP, which learns noticeably better for the same rank at a small memory cost
    (the configs in hiyouga/LlamaFactory#5593 and #747). This is a note, not an error.

    Bad:

    ```yaml
    finetuning_type: lora
    lora_target: q_proj,v_proj
    ```

    Good:

    ```yaml
    finetuning_type: lora
    lora_target: all
    ```
    """

    code = "LORA004"
    name = "narrow-lora-target"
    severity = Severity.INFO
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _lora_training(ctx) or not ctx.has("lora_target"):
            return
        targets = [t.lower() for t in ctx.as_list("lora_target")]
        if not targets or "all" in targets or not all(t in _ATTENTION_MODULES for t in targets):
            return
        yield Finding(
            key="lora_target",
            message=f"`lora_target: {','.join(ctx.as_list('lora_target'))}` adapts only attention projections: "
            "the MLP layers, most of the model, stay frozen",
            hint="use `lora_target: all` (LLaMA-Factory's default) unless you are matching an existing recipe",
            fix=replace_value(ctx, "lora_target", "all", "set `lora_target: all`", safe=False),
        )


class LoraDropoutRange(Rule):
    """``lora_dropout`` outside [0, 1).

    ``lora_dropout`` is a probability. peft's ``LoraLayer.update_layer`` builds ``nn.Dropout(p=lora_dropout)`` only
    for values above 0: torch refuses values above 1 there ("dropout probability has to be between 0 and 1"),
    negative values silently mean no dropout, and 1.0 zeroes the adapter's input so it never learns. Usual values
    are 0 to 0.1.

    Bad:

    ```yaml
    finetuning_type: lora
    lora_dropout: 5
    ```

    Good:

    ```yaml
    finetuning_type: lora
    lora_dropout: 0.05
    ```
    """

    code = "LORA005"
    name = "lora-dropout-range"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _lora_training(ctx):
            return
        p = ctx.get("lora_dropout")
        if not is_number(p) or 0 <= p < 1:
            return
        if p > 1:
            yield Finding(
                key="lora_dropout",
                message=f"`lora_dropout: {p:g}` is not a probability: torch refuses it when the adapter is built",
                hint="use a value in [0, 1), typically 0 to 0.1" + (f" (did you mean {p / 100:g}?)" if p < 100 else ""),
            )
        elif p == 1:
            yield Finding(
                key="lora_dropout",
                severity=Severity.WARNING,
                message="`lora_dropout: 1` drops every input of the adapter: LoRA learns nothing",
                hint="use a value in [0, 1), typically 0 to 0.1",
            )
        else:
            yield Finding(
                key="lora_dropout",
                severity=Severity.WARNING,
                message=f"`lora_dropout: {p:g}` is negative: peft silently applies no dropout",
                hint="use 0 for no dropout, or a value such as 0.05",
                fix=remove_key(ctx, "lora_dropout", "remove `lora_dropout` (default 0)", safe=True),
            )


#: Settings ``_setup_lora_tuning`` reads only when it creates a new adapter, and the field of peft's
#: ``adapter_config.json`` that holds the resumed adapter's own value (None: not compared).
_NEW_ADAPTER_ONLY = {
    "lora_rank": "r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "lora_target": "target_modules",
    "use_rslora": "use_rslora",
    "use_dora": "use_dora",
    "pissa_init": None,
}


class LoraSettingsIgnoredOnResume(Rule):
    """LoRA settings in a run that resumes an adapter: they are ignored.

    With ``adapter_name_or_path``, training resumes the last adapter unless ``create_new_adapter: true`` (and the
    adapters can be merged: not with ``quantization_bit``, DeepSpeed ZeRO-3, Unsloth or KTransformers).
    ``_setup_lora_tuning`` (LLaMA-Factory v0.8.0-v0.9.5 ``src/llamafactory/model/adapter.py``) then loads it with
    ``PeftModel.from_pretrained``, which keeps the rank, alpha, dropout and target modules saved in its
    ``adapter_config.json``; it builds a ``LoraConfig`` from ``lora_rank``, ``lora_alpha``, ``lora_dropout``,
    ``lora_target``, ``use_rslora``, ``use_dora`` and ``pissa_init`` only when nothing is resumed. A stage-2 config
    that raises ``lora_rank`` for DPO on top of an SFT adapter changes nothing.

    When the adapter's ``adapter_config.json`` can be read (an absolute path, or a relative one with
    ``--data-root``), only settings that differ from it are reported, as a warning. Otherwise the linter cannot
    tell whether they differ: info.

    Bad:

    ```yaml
    # cfglint --data-root .
    # saves/sft/adapter_config.json: {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    stage: dpo
    do_train: true
    finetuning_type: lora
    adapter_name_or_path: saves/sft
    lora_rank: 64
    lora_alpha: 128
    ```

    Good:

    ```yaml
    # cfglint --data-root .
    # saves/sft/adapter_config.json: {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    stage: dpo
    do_train: true
    finetuning_type: lora
    adapter_name_or_path: saves/sft
    create_new_adapter: true
    lora_rank: 64
    lora_alpha: 128
    ```
    """

    code = "LORA006"
    name = "lora-settings-ignored-on-resume"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type != "lora":
            return
        names = adapters(ctx)
        if not names or not names[-1]:
            return
        written = [k for k in _NEW_ADAPTER_ONLY if ctx.has(k) and ctx.data.get(k) is not None]
        if not written:
            return
        if ctx.flag("create_new_adapter") and adapters_mergeable(ctx):
            return  # the adapters are merged and a new one is built from these settings
        resumed = names[-1]
        saved = _adapter_config(ctx, resumed)
        if saved is not None:
            written = [k for k in written if _differs(ctx.get(k), saved, _NEW_ADAPTER_ONLY[k])]
            if not written:
                return
        shown = ", ".join(f"`{k}: {_yaml_text(ctx.get(k))}`" for k in written)
        kept = ""
        if saved is not None:
            kept = " (it keeps " + ", ".join(
                f"{_NEW_ADAPTER_ONLY[k]}={_yaml_text(saved.get(_NEW_ADAPTER_ONLY[k] or ''))}"
                for k in written
                if _NEW_ADAPTER_ONLY[k] in saved
            ) + ")"
        yield Finding(
            key=written[0],
            also=("adapter_name_or_path", *written[1:]),
            severity=Severity.WARNING if saved is not None else Severity.INFO,
            message=f"{shown} {'is' if len(written) == 1 else 'are'} ignored: LLaMA-Factory resumes the adapter "
            f"`{resumed}` with the settings it was trained with{kept}; `_setup_lora_tuning` builds a new LoRA "
            "from these only when nothing is resumed",
            hint="remove them, or set `create_new_adapter: true` to merge the adapter and train a new one with "
            "these settings (not with `quantization_bit`, DeepSpeed ZeRO-3 or Unsloth)",
            fix=insert_key(ctx, "create_new_adapter", "true", "add `create_new_adapter: true`",
                           after="adapter_name_or_path", safe=False)
            if adapters_mergeable_known(ctx)
            else None,
        )


def adapters_mergeable_known(ctx: Context) -> bool:
    """Whether adapters can be merged, False when that is not known (the ZeRO stage unknown)."""
    try:
        return adapters_mergeable(ctx)
    except StageUnknown:  # the DeepSpeed config was not read
        return False


def _adapter_config(ctx: Context, adapter: str) -> dict[str, Any] | None:
    """The resumed adapter's ``adapter_config.json`` where the linter can see it: an absolute path, or a relative
    one once the launch directory is stated. None otherwise (a hub id, a path on another machine)."""
    path = Path(adapter).expanduser()
    if not path.is_absolute():
        if not ctx.options.launch_dir_stated:
            return None
        path = resolve_dir(ctx, adapter)
    try:
        data = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _differs(value: Any, saved: dict[str, Any], field: str | None) -> bool:
    """Whether a written setting differs from the resumed adapter's (unknown counts as differing only when the
    adapter's config has no such field and the setting changes something)."""
    if field is None or field not in saved:
        return bool(value)
    old = saved[field]
    if field == "target_modules":
        wanted = lf_split(value)
        if wanted is None or wanted == ["all"]:
            return False  # `all` expands to the model's linear layers: not comparable without the model
        return sorted(wanted) != sorted(old if isinstance(old, list) else lf_split(old) or [])
    if isinstance(old, bool) or isinstance(value, bool):
        return bool(value) != bool(old)
    if is_number(value) and is_number(old):
        return float(value) != float(old)
    return value != old


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
