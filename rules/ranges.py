"""Numeric values outside the range where LLaMA-Factory, transformers, peft or torch work as intended.

The table of ranges is data (``tuner/config/ranges.py``): each band of bad values says what happens there and
where upstream it happens. This module decides when a band applies (the ``when`` names) and reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tuner.config.context import Context
from tuner.config.ranges import BANDS, Band
from tuner.lint.fixes import set_key
from tuner.lint.rule import Finding, Rule, Severity

from ._lf_common import command, eval_strategy_on

#: Commands that generate text with the GeneratingArguments (``llamafactory-cli chat``, ``api``, ...).
_CHAT_COMMANDS = frozenset({"infer", "chat", "api", "webchat"})
#: Optimizers built from torch's or bitsandbytes' AdamW with ``adam_beta1/2`` and ``adam_epsilon``.
_ADAMW = frozenset({
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adamw_apex_fused",
    "adamw_torch_4bit", "adamw_torch_8bit", "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit",
})  # fmt: skip
#: LLaMA-Factory options that build their own optimizer instead of transformers' ``optim``.
_CUSTOM_OPTIMIZERS = ("use_galore", "use_apollo", "use_adam_mini", "use_muon")


def _number(ctx: Context, key: str) -> float | None:
    return ctx.number(key)


def _evaluates(ctx: Context) -> bool:
    return ctx.is_train_command and (ctx.flag("do_eval") or ctx.flag("do_predict") or eval_strategy_on(ctx))


def _strategy_is(key: str, value: str) -> Callable[[Context], bool]:
    return lambda ctx: ctx.is_training and ctx.get(key) == value


def _epochs(ctx: Context) -> bool:
    max_steps = _number(ctx, "max_steps")
    return ctx.is_training and not ctx.flag("streaming") and (max_steps is None or max_steps < 0)


def _adam(ctx: Context) -> bool:
    if not ctx.is_training or any(ctx.flag(k) for k in _CUSTOM_OPTIMIZERS):
        return False
    return not ctx.has("optim") or ctx.get("optim") in _ADAMW  # unset: adamw_torch(_fused)


def _has_split(ctx: Context) -> bool:
    """``val_size`` is read: there is a ``dataset`` and no ``eval_dataset`` (DSET001/DSET002 otherwise)."""
    return ctx.is_train_command and ctx.get("dataset") is not None and ctx.get("eval_dataset") is None


def _split(ctx: Context) -> bool:
    """``val_size`` goes to datasets' ``train_test_split`` (a streamed dataset is split with take/skip)."""
    return _has_split(ctx) and not ctx.flag("streaming")


def _val_size_unused(ctx: Context) -> bool:
    # When evaluation is asked for, DSET010 reports the missing evaluation data instead.
    return _has_split(ctx) and not _evaluates(ctx) and not ctx.flag("predict_with_generate")


def _generates(ctx: Context) -> bool:
    return command(ctx) in _CHAT_COMMANDS or (ctx.is_train_command and ctx.flag("predict_with_generate"))


def _huggingface_backend(ctx: Context) -> bool:
    """SFT prediction always generates with transformers; chat uses ``infer_backend``."""
    return ctx.is_train_command or ctx.get("infer_backend") in (None, "huggingface")


def _stage_in(*stages: str) -> Callable[[Context], bool]:
    return lambda ctx: ctx.is_training and ctx.stage in stages


WHEN: dict[str, Callable[[Context], bool]] = {
    "train": lambda ctx: ctx.is_training,
    "train_command": lambda ctx: ctx.is_train_command,
    "evaluates": _evaluates,
    "epochs": _epochs,
    "logging_steps": _strategy_is("logging_strategy", "steps"),
    "eval_steps": _strategy_is("eval_strategy", "steps"),
    "save_steps": _strategy_is("save_strategy", "steps"),
    "saves": lambda ctx: ctx.is_training and ctx.get("save_strategy") != "no",
    "workers": lambda ctx: ctx.is_train_command and (_number(ctx, "dataloader_num_workers") or 0) > 0,
    "adam": _adam,
    "seeded": lambda ctx: command(ctx) in ("train", "eval"),
    "profiler": lambda ctx: ctx.is_training and ctx.flag("enable_torch_profiler"),
    "packing": lambda ctx: ctx.is_train_command and ctx.packing,
    "has_split": _has_split,
    "split": _split,
    "val_size_unused": _val_size_unused,
    "not_streaming": lambda ctx: ctx.is_train_command and not ctx.flag("streaming"),
    "loraplus": lambda ctx: ctx.is_training and ctx.finetuning_type == "lora" and ctx.get("loraplus_lr_ratio") is not None,
    "preference": _stage_in("dpo", "kto"),
    "dpo": _stage_in("dpo"),
    "dpo_sigmoid": lambda ctx: ctx.is_training and ctx.stage == "dpo" and ctx.get("pref_loss") == "sigmoid",
    "kto": _stage_in("kto"),
    "ppo": _stage_in("ppo"),
    "galore": lambda ctx: ctx.is_training and ctx.flag("use_galore"),
    "apollo": lambda ctx: ctx.is_training and ctx.flag("use_apollo"),
    "badam_layer": lambda ctx: ctx.is_training and ctx.flag("use_badam") and ctx.get("badam_mode") == "layer",
    "badam_ratio": lambda ctx: ctx.is_training and ctx.flag("use_badam") and ctx.get("badam_mode") == "ratio",
    "generates": _generates,
    "generates_hf": lambda ctx: _generates(ctx) and _huggingface_backend(ctx),
    "samples": lambda ctx: _generates(ctx) and ctx.flag("do_sample"),
    "samples_hf": lambda ctx: _generates(ctx) and ctx.flag("do_sample") and _huggingface_backend(ctx),
    "predict_samples": lambda ctx: ctx.is_train_command and ctx.flag("predict_with_generate") and ctx.flag("do_sample"),
    "vllm": lambda ctx: command(ctx) in _CHAT_COMMANDS and ctx.get("infer_backend") == "vllm",
    "eval_command": lambda ctx: command(ctx) == "eval",
    "export": lambda ctx: command(ctx) == "export",
}


def _written(ctx: Context, key: str) -> str:
    """The value as the user wrote it (``1.0`` stays ``1.0``), else its Python spelling."""
    entry = ctx.doc.entry(key)
    if entry is not None:
        text = ctx.doc.text[entry.value_span.start.offset : entry.value_span.end.offset].strip()
        if text and "\n" not in text:
            return text
    return repr(ctx.data.get(key))


def band_for(ctx: Context, key: str) -> Band | None:
    """The first band of ``key`` that the written value falls in and whose condition holds."""
    if not ctx.has(key):
        return None  # defaults are in range
    value = ctx.data.get(key)
    for band in BANDS:
        if band.key == key and band.contains(value) and WHEN[band.when](ctx):
            return band
    return None


class NumericRange(Rule):
    """A numeric value where LLaMA-Factory, transformers, peft or torch fail or silently misbehave.

    Each range comes from the code that reads the value, at a release tag, and is listed with its reason and
    source in ``tuner/config/ranges.py``: ``gradient_accumulation_steps: 0`` divides by zero when transformers
    counts the steps of an epoch, ``cutoff_len: 0`` leaves no token to train on, ``per_device_train_batch_size:
    0`` is refused by torch's batch sampler, a negative ``max_grad_norm`` silently turns clipping off,
    ``pref_beta: 0`` learns no preference, and so on. A range is checked only where the value is read (``ppo_epochs``
    only for PPO, ``adam_beta2`` only for AdamW optimizers, ``temperature`` only when sampling). Values of the wrong
    type are the KEY rules' business; keys whose ranges other rules check (``learning_rate``, ``lora_rank``,
    ``lora_dropout``, warmup) are left to them.

    Bad:

    ```yaml
    do_train: true
    gradient_accumulation_steps: 0
    cutoff_len: 0
    ```

    Good:

    ```yaml
    do_train: true
    gradient_accumulation_steps: 8
    cutoff_len: 2048
    ```
    """

    code = "RANGE001"
    name = "numeric-range"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        seen: set[str] = set()
        for band in BANDS:
            if band.key in seen:
                continue
            found = band_for(ctx, band.key)
            if found is None:
                continue
            seen.add(band.key)
            yield Finding(
                key=found.key,
                severity=Severity(found.severity),
                message=f"`{found.key}: {_written(ctx, found.key)}`: {found.effect} ({found.source})",
                hint=f"use {found.expect}",
            )


class OFTRankOrBlockSize(Rule):
    """OFT with both ``oft_rank`` and ``oft_block_size`` set, or neither.

    peft sizes the orthogonal blocks from one of the two (rank × block size = the layer's width) and refuses
    anything else when it builds the adapter: "You can only specify either r (8) or oft_block_size (32), but not
    both simultaneously" / "Either `r` or `oft_block_size` must be non-zero" (peft v0.14–v0.20
    ``src/peft/tuners/oft/config.py`` ``OFTConfig.__post_init__``; LLaMA-Factory v0.9.4+ passes ``oft_rank`` as
    ``r``). ``oft_block_size`` defaults to 32, so setting ``oft_rank`` alone fails.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: oft
    oft_rank: 8
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: oft
    oft_rank: 8
    oft_block_size: 0
    ```
    """

    code = "RANGE002"
    name = "oft-rank-or-block-size"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type != "oft" or ctx.get("adapter_name_or_path") is not None:
            return  # a loaded adapter brings its own config
        rank, block = _number(ctx, "oft_rank"), _number(ctx, "oft_block_size")
        if rank is None or block is None:
            return
        if rank == 0 and block == 0:
            yield Finding(
                key="oft_block_size" if ctx.has("oft_block_size") else "oft_rank",
                also=("oft_rank", "finetuning_type"),
                message="`oft_rank` and `oft_block_size` are both 0: peft refuses the adapter (\"Either `r` or "
                "`oft_block_size` must be non-zero\")",
                hint="set `oft_block_size` (e.g. 32) or `oft_rank`",
            )
        elif rank != 0 and block != 0:
            yield Finding(
                key="oft_rank" if ctx.has("oft_rank") else "oft_block_size",
                also=("oft_block_size", "finetuning_type"),
                message=f"`oft_rank: {rank:g}` with `oft_block_size: {block:g}`"
                + ("" if ctx.has("oft_block_size") else " (the default)")
                + f": peft refuses the adapter (\"You can only specify either r ({rank:g}) or oft_block_size "
                f"({block:g}), but not both simultaneously\")",
                hint="set `oft_block_size: 0` to size the blocks from `oft_rank`, or remove `oft_rank`",
                fix=set_key(ctx, "oft_block_size", "0", "set `oft_block_size: 0`", after="oft_rank", safe=False),
            )
