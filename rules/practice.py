"""Good practice: settings that LLaMA-Factory accepts but that rarely do what the user meant.

Loss on prompts, packing that mixes conversations, checkpoints that never happen, warmup on the wrong scale
for the installed transformers, remote code, and configs that do nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from tuner.config.context import Context
from tuner.lint.fixes import insert_key, remove_key, rename_key, replace_value
from tuner.lint.rule import Finding, Rule, Severity, is_number

from ._lf_common import eval_strategy_on

#: A run this many optimizer steps long is "long" enough to want an evaluation split.
LONG_RUN_STEPS = 1000
LONG_RUN_EPOCHS = 5


def _evaluates(ctx: Context) -> bool:
    return (
        ctx.flag("do_eval")
        or eval_strategy_on(ctx)
        or ctx.get("eval_dataset") not in (None, "", [])
        or (is_number(ctx.get("val_size")) and ctx.get("val_size") > 1e-6)
    )


def _dataset_samples(ctx: Context) -> int | None:
    """Training examples when dataset-aware linting was asked for (``--tokenizer``); never required.

    Reading the dataset is the slow part of linting, so these rules only use what that mode computes.
    """
    if not ctx.options.tokenizer:
        return None
    try:
        stats = ctx.dataset
    except ImportError:  # the dataset statistics module is optional on the lint path
        return None
    for attr in ("num_samples", "num_examples", "samples", "count"):
        n = getattr(stats, attr, None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None


def total_steps(ctx: Context) -> tuple[int, str] | None:
    """Optimizer steps of the run, at most (unknown GPU count counts as one), and how it was derived."""
    max_steps = ctx.get("max_steps")
    if is_number(max_steps) and max_steps > 0:
        return int(max_steps), f"`max_steps: {int(max_steps)}`"
    if ctx.packing:
        return None  # the packed sequence count is not the example count
    n = _dataset_samples(ctx)
    bs, ga, epochs = (
        ctx.get("per_device_train_batch_size"),
        ctx.get("gradient_accumulation_steps"),
        ctx.get("num_train_epochs"),
    )
    if n is None or not all(is_number(v) and v > 0 for v in (bs, ga, epochs)):
        return None
    max_samples = ctx.get("max_samples")
    if is_number(max_samples) and max_samples > 0:
        n = min(n, int(max_samples))
    val_size = ctx.get("val_size")
    if is_number(val_size) and val_size > 0 and ctx.get("eval_dataset") in (None, "", []):
        n -= math.ceil(n * val_size) if val_size < 1 else int(val_size)  # datasets' train_test_split
        if n <= 0:
            return None
    world = ctx.gpus * max(1, ctx.options.nodes) if ctx.gpus else 1
    per_epoch = max(1, math.ceil(n / (bs * world)) // int(ga))
    gpus = f" on {world} GPU{'s' if world > 1 else ''}" if ctx.gpus else " on 1 GPU (at most)"
    return math.ceil(per_epoch * epochs), f"{n} examples × {epochs:g} epochs at batch {bs}×{ga}{gpus}"


class TrainOnPromptSFT(Rule):
    """``train_on_prompt: true`` in SFT: the loss includes the prompts.

    SFT normally masks the prompt (system, user turns, tools) and computes the loss on the answers only. With
    ``train_on_prompt`` the model also learns to reproduce the prompts, which spends capacity on the questions and
    often makes it continue the user's turn. It is occasionally wanted (continued pre-training on chat data), but
    usually a copied flag (LLaMA-Factory: "Whether or not to disable the mask on the prompt", ``data_args.py``;
    every SFT example leaves it off). Use ``mask_history`` for the opposite: loss on the last turn only.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    train_on_prompt: true
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    ```
    """

    code = "PRAC001"
    name = "train-on-prompt"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.stage != "sft" or not ctx.flag("train_on_prompt") or ctx.flag("mask_history"):
            return  # other stages and mask_history are LLaMA-Factory errors (STAGE005, DSET008)
        yield Finding(
            key="train_on_prompt",
            message="`train_on_prompt: true`: SFT computes the loss on the prompts as well as the answers, so the "
            "model also learns to write the user's side",
            hint="remove it unless you want the prompts learned (loss on the answers only is the SFT default)",
            fix=remove_key(ctx, "train_on_prompt", "remove `train_on_prompt`", safe=False),
        )


class NoEvalLongRun(Rule):
    """A long training run with no evaluation at all.

    Without ``val_size``/``eval_dataset`` and an ``eval_strategy``, a run of thousands of steps reports only the
    training loss: overfitting, or a learning rate that is too high, shows up only after the run. A small held-out
    split (``val_size: 0.05``) evaluated every few hundred steps costs little; LLaMA-Factory's examples ship that
    ``### eval`` block commented out. (Asking for evaluation without data is an error: DSET010.) This is a note.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    dataset: alpaca_en_demo
    max_steps: 5000
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    dataset: alpaca_en_demo
    max_steps: 5000
    val_size: 0.05
    eval_strategy: steps
    eval_steps: 500
    ```
    """

    code = "PRAC002"
    name = "no-eval-long-run"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.is_training or _evaluates(ctx):
            return
        steps = total_steps(ctx)
        epochs = ctx.get("num_train_epochs")
        if steps is not None and steps[0] >= LONG_RUN_STEPS:
            length = f"{steps[0]} steps ({steps[1]})"
            key = "max_steps" if ctx.has("max_steps") else "num_train_epochs"
        elif steps is None and ctx.has("num_train_epochs") and is_number(epochs) and epochs >= LONG_RUN_EPOCHS:
            length = f"{epochs:g} epochs"
            key = "num_train_epochs"
        else:
            return
        yield Finding(
            key=key,
            also=("do_train",),
            message=f"a long run ({length}) with no evaluation: only the training loss will show how it goes",
            hint="hold out a split and evaluate it: `val_size: 0.05`, `eval_strategy: steps`, `eval_steps: 500`",
        )


class SaveStepsBeyondTotal(Rule):
    """``save_steps`` larger than the whole run: no checkpoint is written before the end.

    With ``save_strategy: steps`` (the default) a checkpoint is written every ``save_steps`` optimizer steps. When
    that is more than the run's total steps (from ``max_steps``, or from the dataset size with dataset-aware
    linting), there is nothing to resume from if the run fails, and only the final model is saved. Resuming from
    the last ``checkpoint-*`` is how LLaMA-Factory recovers an interrupted run. Skipping intermediate checkpoints
    is a legitimate choice (a smoke test, a throughput benchmark, a short continued pre-training), so this is
    info: it says what is given up.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    max_steps: 3000
    save_steps: 5000
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    max_steps: 3000
    save_steps: 500
    ```
    """

    code = "PRAC003"
    name = "save-steps-beyond-total"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.get("save_strategy") not in ("steps", None):
            return
        save_steps = ctx.get("save_steps")
        if not is_number(save_steps) or save_steps < 1:
            return  # below 1 is a ratio of the total steps
        steps = total_steps(ctx)
        if steps is None or save_steps <= steps[0]:
            return
        shown = f"{save_steps:g}"
        yield Finding(
            key="save_steps" if ctx.has("save_steps") else ("max_steps" if ctx.has("max_steps") else None),
            also=("max_steps", "do_train"),
            message=f"`save_steps: {shown}` but the run has only {steps[0]} steps ({steps[1]}): no checkpoint is "
            "written before the end, so a failed run cannot resume",
            hint=f"use `save_steps` below {steps[0]} (e.g. {max(1, steps[0] // 5)}), or a ratio such as `save_steps: 0.2`",
        )


class WarmupScale(Rule):
    """Warmup given on the scale the installed transformers does not use.

    transformers 4 takes ``warmup_steps`` as an integer number of steps and ``warmup_ratio`` as a fraction in
    [0, 1]: ``warmup_steps: 0.1`` stops the run ("warmup_steps must be of type int and must be 0 or a positive
    integer", hiyouga/LlamaFactory#4005), ``warmup_ratio: 1.5`` too ("warmup_ratio must
    lie in range [0,1]", #135), and when both are set ``warmup_steps`` wins. transformers 5 reads a
    ``warmup_steps`` below 1 as a ratio, deprecates ``warmup_ratio`` and copies it over ``warmup_steps``, so a
    ratio of 5 becomes 5 steps. Lint with ``--transformers 5`` for a transformers 5 install.

    Bad:

    ```yaml
    # cfglint --transformers 4
    stage: sft
    warmup_steps: 0.1
    ```

    Good:

    ```yaml
    # cfglint --transformers 4
    stage: sft
    warmup_ratio: 0.1
    ```
    """

    code = "PRAC004"
    name = "warmup-scale"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        major = ctx.options.transformers_major
        steps = ctx.get("warmup_steps") if ctx.has("warmup_steps") else None
        ratio = ctx.get("warmup_ratio") if ctx.has("warmup_ratio") else None
        steps = steps if is_number(steps) else None
        ratio = ratio if is_number(ratio) else None
        if steps is not None and steps < 0:
            yield Finding(
                key="warmup_steps",
                message=f"`warmup_steps: {steps:g}` is negative: transformers stops the run",
                hint="use 0 for no warmup",
            )
        if major < 5:
            yield from self._v4(ctx, steps, ratio)
        else:
            yield from self._v5(ctx, steps, ratio)

    def _v4(self, ctx: Context, steps: float | None, ratio: float | None) -> Iterator[Finding]:
        if steps is not None and isinstance(steps, float) and 0 < steps < 1:
            fix = None
            if ratio is None:
                fix = rename_key(
                    ctx, "warmup_steps", "warmup_ratio", "rename `warmup_steps` to `warmup_ratio`", safe=True
                )
            yield Finding(
                key="warmup_steps",
                message=f"`warmup_steps: {steps:g}` with transformers 4: warmup_steps must be an integer number of "
                'steps, so the run stops ("warmup_steps must be of type int"); a fraction belongs in `warmup_ratio`',
                hint=f"use `warmup_ratio: {steps:g}`" + ("" if ratio is None else " (and remove the other warmup key)"),
                fix=fix,
            )
            return
        if ratio is not None and not 0 <= ratio <= 1:
            yield Finding(
                key="warmup_ratio",
                message=f"`warmup_ratio: {ratio:g}` is not a fraction: transformers stops the run "
                '("warmup_ratio must lie in range [0,1]")',
                hint="use a fraction such as 0.03–0.1, or `warmup_steps` for a number of steps",
            )
            return
        if steps is not None and steps > 0 and ratio is not None and ratio > 0:
            yield Finding(
                key="warmup_ratio",
                also=("warmup_steps",),
                severity=Severity.WARNING,
                message=f"both `warmup_steps: {steps:g}` and `warmup_ratio: {ratio:g}`: with transformers 4 "
                "warmup_steps wins and warmup_ratio is ignored",
                hint="keep one of them",
                fix=remove_key(ctx, "warmup_ratio", "remove the ignored `warmup_ratio`", safe=True),
            )

    def _v5(self, ctx: Context, steps: float | None, ratio: float | None) -> Iterator[Finding]:
        if ratio is None:
            return
        if ratio < 0:
            yield Finding(
                key="warmup_ratio",
                message=f"`warmup_ratio: {ratio:g}` is negative: transformers 5 copies it into warmup_steps and stops the run",
                hint="use a fraction such as 0.1 in `warmup_steps`",
            )
        elif ratio >= 1:
            yield Finding(
                key="warmup_ratio",
                severity=Severity.WARNING,
                message=f"`warmup_ratio: {ratio:g}` with transformers 5: it is copied into warmup_steps, where values "
                f"of 1 or more are step counts, so warmup lasts {int(ratio)} step(s), not a fraction of the run",
                hint="use a fraction below 1, as `warmup_steps: 0.1`",
            )
        elif steps is not None and steps > 0:
            yield Finding(
                key="warmup_ratio",
                also=("warmup_steps",),
                severity=Severity.WARNING,
                message=f"both `warmup_steps: {steps:g}` and `warmup_ratio: {ratio:g}`: transformers 5 copies "
                "warmup_ratio over warmup_steps, so warmup_steps is ignored",
                hint=f"keep one: `warmup_steps: {ratio:g}` means the same fraction in transformers 5",
            )
        else:
            yield Finding(
                key="warmup_ratio",
                severity=Severity.INFO,
                message='`warmup_ratio` is deprecated in transformers 5 ("Use `warmup_steps` instead"): '
                "a warmup_steps value below 1 is a ratio",
                hint=f"write `warmup_steps: {ratio:g}` if the config only has to run on transformers 5",
                # unsafe: the renamed config no longer runs on transformers 4, which LLaMA-Factory also supports
                fix=rename_key(
                    ctx, "warmup_ratio", "warmup_steps", "rename `warmup_ratio` to `warmup_steps`", safe=False
                ),
            )


class PackingCrossContamination(Rule):
    """``packing: true`` for SFT without ``neat_packing``.

    Packing concatenates several conversations into one ``cutoff_len`` sequence to avoid padding. With plain
    ``packing`` they share one causal attention mask, so every answer can attend to the unrelated conversations
    packed before it. ``neat_packing: true`` packs the same way but keeps the conversations apart (block-diagonal
    attention; it implies ``packing``; LLaMA-Factory: "Enable sequence packing without cross-attention"). Each
    example is still truncated to ``cutoff_len`` before packing (one token less when ``packing`` is set
    explicitly), so the packer's "dropped lengthy example" branch never runs. Pre-training (``stage: pt``) packs
    by design and is not flagged.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    packing: true
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    neat_packing: true
    ```
    """

    code = "PRAC005"
    name = "packing-cross-contamination"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.stage != "sft" or ctx.get("packing") is not True or ctx.flag("neat_packing"):
            return
        fix = (
            replace_value(ctx, "neat_packing", "true", "set `neat_packing: true`", safe=False)
            if ctx.has("neat_packing")
            else rename_key(ctx, "packing", "neat_packing", "use `neat_packing: true` instead", safe=False)
        )
        yield Finding(
            key="packing",
            message="`packing: true` for SFT: packed conversations share one attention mask, so each answer can attend "
            "to unrelated conversations in the same sequence",
            hint="use `neat_packing: true` (block-diagonal attention, implies packing), or remove `packing`",
            fix=fix,
        )


class TrustRemoteCode(Rule):
    """``trust_remote_code: true`` runs Python code from the model repository.

    Models with custom architectures ship ``modeling_*.py`` files that transformers imports and runs when this is
    on, with the permissions of the training job. That is needed for some models (older ChatGLM, InternLM, MiniCPM)
    but should point at a repository and revision you trust; most current architectures are built into
    transformers and do not need it (transformers documents ``trust_remote_code`` as "only for repositories you
    trust and in which you have read the code"). This is a security note, not an error.

    Bad:

    ```yaml
    model_name_or_path: someone/custom-model
    trust_remote_code: true
    ```

    Good:

    ```yaml
    model_name_or_path: someone/custom-model
    trust_remote_code: false
    ```
    """

    code = "PRAC006"
    name = "trust-remote-code"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("trust_remote_code") is not True:
            return
        pinned = ctx.get("model_revision") not in (None, "main")
        yield Finding(
            key="trust_remote_code",
            message="`trust_remote_code: true` runs Python code from the model repository with this job's permissions",
            hint="keep it only for models that need it, from a source you trust"
            + ("" if pinned else ", and pin `model_revision` to a commit"),
        )


class NothingToRun(Rule):
    """A training config that runs nothing: no ``do_train``, ``do_eval`` or ``do_predict``.

    ``do_train`` defaults to false in transformers. ``llamafactory-cli train`` with none of the three loads the
    model and the dataset, then exits without training, evaluating or predicting, and without an error
    (``train/sft/workflow.py`` runs each phase only ``if training_args.do_*``). The LLaMA-Factory examples all set
    ``do_train: true``. A run with ``tokenized_path`` is exempt: it tokenizes the dataset and saves it there
    (``data/loader.py`` ``get_dataset``), which is what a preprocessing-only config is for.

    Bad:

    ```yaml
    stage: sft
    finetuning_type: lora
    dataset: alpaca_en_demo
    ```

    Good:

    ```yaml
    stage: sft
    do_train: false
    dataset: alpaca_en_demo
    tokenized_path: cache/alpaca_tokenized
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    finetuning_type: lora
    dataset: alpaca_en_demo
    ```
    """

    code = "PRAC007"
    name = "nothing-to-run"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        if any(ctx.flag(k) for k in ("do_train", "do_eval", "do_predict", "predict_with_generate")):
            return
        tokenized = ctx.get("tokenized_path")
        if isinstance(tokenized, str) and tokenized.strip():
            return  # tokenisation only: data/loader.py `get_dataset` saves the tokenized dataset there, the run's result
        if eval_strategy_on(ctx):
            return  # transformers turns do_eval on
        after = "stage" if ctx.has("stage") else None
        yield Finding(
            key="do_train" if ctx.has("do_train") else ("stage" if ctx.has("stage") else None),
            also=("model_name_or_path",),
            message="none of `do_train`, `do_eval`, `do_predict` is true: `llamafactory-cli train` loads the model "
            "and exits without doing anything",
            hint="set `do_train: true` (or `do_eval`/`do_predict` for an evaluation-only run)",
            fix=replace_value(ctx, "do_train", "true", "set `do_train: true`", safe=False)
            or insert_key(ctx, "do_train", "true", "add `do_train: true`", after=after, safe=False),
        )
