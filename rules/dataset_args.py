"""Dataset arguments: the wiring of training and evaluation data that LLaMA-Factory checks before loading anything.

``DataArguments.__post_init__`` (``hparams/data_args.py``) runs for every command; ``get_train_args``
(``hparams/parser.py``) adds the checks that need the training arguments. Both stop the run before a single
sample is read, so these rules only need the YAML.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from tuner.config.context import Context
from tuner.config.versions import v
from tuner.lint.fixes import remove_key, set_key
from tuner.lint.rule import Finding, Rule, Severity, lf_stops

from ._lf_common import eval_strategy_key, eval_strategy_on, lf_split, val_size


class ValSizeNeedsDataset(Rule):
    """``val_size`` without a ``dataset`` to split it from.

    ``val_size`` carves the evaluation set out of the training data. ``DataArguments.__post_init__`` raises
    "Cannot specify `val_size` if `dataset` is None." (``data_args.py``).

    Bad:

    ```yaml
    eval_dataset: alpaca_en_demo
    val_size: 0.1
    do_eval: true
    ```

    Good:

    ```yaml
    dataset: alpaca_en_demo
    val_size: 0.1
    do_eval: true
    ```
    """

    code = "DSET001"
    name = "val-size-needs-dataset"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if val_size(ctx) > 1e-6 and ctx.get("dataset") is None:
            yield Finding(
                key="val_size",
                message="`val_size` without `dataset`: " + lf_stops("Cannot specify `val_size` if `dataset` is None."),
                hint="set `dataset` to split the evaluation set from, or use `eval_dataset` alone",
            )


class ValSizeWithEvalDataset(Rule):
    """Both ``val_size`` and ``eval_dataset``.

    The evaluation set comes either from a split of ``dataset`` or from ``eval_dataset``, not both.
    ``DataArguments.__post_init__`` raises "Cannot specify `val_size` if `eval_dataset` is not None.".

    Bad:

    ```yaml
    dataset: alpaca_en_demo
    eval_dataset: identity
    val_size: 0.1
    ```

    Good:

    ```yaml
    dataset: alpaca_en_demo
    eval_dataset: identity
    ```
    """

    code = "DSET002"
    name = "val-size-with-eval-dataset"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if val_size(ctx) > 1e-6 and ctx.get("eval_dataset") is not None:
            yield Finding(
                key="val_size",
                also=("eval_dataset",),
                message="`val_size` together with `eval_dataset`: "
                + lf_stops("Cannot specify `val_size` if `eval_dataset` is not None."),
                hint="keep `eval_dataset` and remove `val_size`, or the other way round",
                fix=remove_key(ctx, "val_size", "remove `val_size` (evaluate on `eval_dataset`)", safe=False),
            )


class InterleaveProbsWithConcat(Rule):
    """``interleave_probs`` with ``mix_strategy: concat`` (the default).

    Sampling probabilities only mean something when datasets are interleaved. ``DataArguments.__post_init__``
    raises "`interleave_probs` is only valid for interleaved mixing.".

    Bad:

    ```yaml
    dataset: alpaca_en_demo,identity
    interleave_probs: 0.8,0.2
    ```

    Good:

    ```yaml
    dataset: alpaca_en_demo,identity
    mix_strategy: interleave_under
    interleave_probs: 0.8,0.2
    ```
    """

    code = "DSET003"
    name = "interleave-probs-with-concat"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("interleave_probs") is None or ctx.get("mix_strategy") != "concat":
            return
        yield Finding(
            key="interleave_probs",
            also=("mix_strategy",),
            message="`interleave_probs` with `mix_strategy: concat`"
            f"{'' if ctx.has('mix_strategy') else ' (the default)'}: "
            + lf_stops("`interleave_probs` is only valid for interleaved mixing."),
            hint="set `mix_strategy: interleave_under` (stop at the smallest dataset) or `interleave_over` "
            "(oversample until the largest is used up)",
            fix=set_key(ctx, "mix_strategy", "interleave_under", "set `mix_strategy: interleave_under`",
                        after="interleave_probs", safe=False),
        )


class InterleaveProbsShape(Rule):
    """``interleave_probs`` that do not match the datasets: wrong count, not numbers, or not summing to 1.

    LLaMA-Factory converts every entry with ``float()`` and requires one probability per dataset, for
    ``dataset`` and for ``eval_dataset`` alike: "The length of dataset and interleave probs should be identical."
    (``data_args.py``). The probabilities then go to ``datasets.interleave_datasets``,
    whose sampler (numpy) rejects probabilities that do not add up to 1 when the data is loaded.

    Bad:

    ```yaml
    dataset: alpaca_en_demo,identity,glaive_toolcall_en_demo
    mix_strategy: interleave_under
    interleave_probs: 0.8,0.2
    ```

    Good:

    ```yaml
    dataset: alpaca_en_demo,identity,glaive_toolcall_en_demo
    mix_strategy: interleave_under
    interleave_probs: 0.6,0.2,0.2
    ```
    """

    code = "DSET004"
    name = "interleave-probs-shape"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        raw = lf_split(ctx.get("interleave_probs"))
        if raw is None or ctx.get("mix_strategy") == "concat":
            return  # DSET003 reports concat
        probs: list[float] = []
        for item in raw:
            try:
                probs.append(float(item))
            except (TypeError, ValueError):
                yield Finding(
                    key="interleave_probs",
                    message=f"`interleave_probs` entry {item!r} is not a number: LLaMA-Factory stops at start-up "
                    f"(ValueError: could not convert string to float: {item!r})",
                    hint="write one probability per dataset, e.g. `interleave_probs: 0.7,0.3`",
                )
                return
        for key, label in (("dataset", "dataset"), ("eval_dataset", "eval dataset")):
            names = lf_split(ctx.get(key))
            if names is not None and len(names) != len(probs):
                yield Finding(
                    key="interleave_probs",
                    also=(key,),
                    message=f"`interleave_probs` has {len(probs)} entries but `{key}` names {len(names)}: "
                    + lf_stops(f"The length of {label} and interleave probs should be identical."),
                    hint=f"give exactly one probability per entry of `{key}`",
                )
                return
        names = lf_split(ctx.get("dataset")) or []
        total = math.fsum(probs)
        if len(names) > 1 and abs(total - 1.0) > 1e-8:  # numpy's tolerance; a single dataset is never interleaved
            yield Finding(
                key="interleave_probs",
                message=f"`interleave_probs` add up to {total:g}, not 1: `datasets.interleave_datasets` fails when "
                'the data is loaded ("probabilities do not sum to 1")',
                hint="scale the probabilities so that they add up to 1",
            )


class StreamingValSize(Rule):
    """``streaming: true`` with a fractional ``val_size``.

    A streamed dataset has no known length, so the evaluation split must be a number of samples.
    ``DataArguments.__post_init__`` raises "Streaming mode should have an integer val size.".

    Bad:

    ```yaml
    dataset: c4_demo
    streaming: true
    max_steps: 1000
    val_size: 0.05
    ```

    Good:

    ```yaml
    dataset: c4_demo
    streaming: true
    max_steps: 1000
    val_size: 500
    ```
    """

    code = "DSET005"
    name = "streaming-val-size"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        v = val_size(ctx)
        if ctx.flag("streaming") and 1e-6 < v < 1:
            yield Finding(
                key="val_size",
                also=("streaming",),
                message=f"`val_size: {v:g}` is a fraction but `streaming: true` needs a sample count: "
                + lf_stops("Streaming mode should have an integer val size."),
                hint="write the number of evaluation samples, e.g. `val_size: 1000`",
            )


class StreamingMaxSamples(Rule):
    """``streaming: true`` with ``max_samples``.

    ``DataArguments.__post_init__`` raises "`max_samples` is incompatible with `streaming`.". With streaming,
    ``max_steps`` bounds how much data is read.

    Bad:

    ```yaml
    dataset: c4_demo
    streaming: true
    max_steps: 1000
    max_samples: 100000
    ```

    Good:

    ```yaml
    dataset: c4_demo
    streaming: true
    max_steps: 1000
    ```
    """

    code = "DSET006"
    name = "streaming-max-samples"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.flag("streaming") and ctx.get("max_samples") is not None:
            yield Finding(
                key="max_samples",
                also=("streaming",),
                message="`max_samples` with `streaming: true`: " + lf_stops("`max_samples` is incompatible with `streaming`."),
                hint="remove `max_samples`; `max_steps` bounds how much a streaming run reads",
                fix=remove_key(ctx, "max_samples", "remove `max_samples`", safe=False),
            )


class StreamingNeedsMaxSteps(Rule):
    """``streaming: true`` without ``max_steps``.

    A streamed dataset has no length, so the trainer cannot derive the number of steps from epochs.
    ``get_train_args`` raises "Please specify `max_steps` in streaming mode." (``parser.py``).

    Bad:

    ```yaml
    dataset: c4_demo
    streaming: true
    num_train_epochs: 1.0
    ```

    Good:

    ```yaml
    dataset: c4_demo
    streaming: true
    max_steps: 10000
    ```
    """

    code = "DSET007"
    name = "streaming-needs-max-steps"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.flag("streaming") and ctx.get("max_steps") == -1:
            yield Finding(
                key="streaming",
                also=("max_steps",),
                message="`streaming: true` without `max_steps`: " + lf_stops("Please specify `max_steps` in streaming mode."),
                hint="set `max_steps` (`num_train_epochs` is not used with a streamed dataset)",
            )


class MaskHistoryTrainOnPrompt(Rule):
    """``mask_history`` together with ``train_on_prompt``.

    One masks earlier turns out of the loss, the other puts prompts into it; ``DataArguments.__post_init__``
    raises "`mask_history` is incompatible with `train_on_prompt`.".

    Bad:

    ```yaml
    stage: sft
    mask_history: true
    train_on_prompt: true
    ```

    Good:

    ```yaml
    stage: sft
    mask_history: true
    ```
    """

    code = "DSET008"
    name = "mask-history-train-on-prompt"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.flag("mask_history") and ctx.flag("train_on_prompt"):
            yield Finding(
                key="train_on_prompt",
                also=("mask_history",),
                message="`mask_history` with `train_on_prompt`: "
                + lf_stops("`mask_history` is incompatible with `train_on_prompt`."),
                hint="keep one: `mask_history` trains on the last turn only, `train_on_prompt` also on the prompts",
            )


class TrainNeedsDataset(Rule):
    """``do_train: true`` without ``dataset``.

    ``get_train_args`` raises "Please specify dataset for training.".

    Bad:

    ```yaml
    stage: sft
    do_train: true
    eval_dataset: alpaca_en_demo
    ```

    Good:

    ```yaml
    stage: sft
    do_train: true
    dataset: alpaca_en_demo
    ```
    """

    code = "DSET009"
    name = "train-needs-dataset"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_training and ctx.get("dataset") is None:
            yield Finding(
                key="dataset",
                also=("do_train",),
                message="`do_train: true` without `dataset`: " + lf_stops("Please specify dataset for training."),
                hint="set `dataset` to one or more names from `dataset_dir/dataset_info.json` (comma-separated)",
            )


class EvalNeedsData(Rule):
    """Evaluation or prediction without evaluation data.

    ``do_eval``, ``do_predict`` and ``predict_with_generate`` need ``eval_dataset`` or a ``val_size`` split.
    transformers also turns ``do_eval`` on by itself whenever ``eval_strategy`` is not ``no``. ``get_train_args``
    raises "Please make sure eval_dataset be provided or val_size >1e-6".

    Bad:

    ```yaml
    do_train: true
    dataset: alpaca_en_demo
    eval_strategy: steps
    eval_steps: 500
    ```

    Good:

    ```yaml
    do_train: true
    dataset: alpaca_en_demo
    val_size: 0.1
    eval_strategy: steps
    eval_steps: 500
    ```
    """

    code = "DSET010"
    name = "eval-needs-data"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.get("eval_dataset") is not None or val_size(ctx) >= 1e-6:
            return
        strategy_key = eval_strategy_key(ctx)
        strategy = ctx.get(strategy_key)
        reasons = [k for k in ("do_eval", "do_predict", "predict_with_generate") if ctx.flag(k)]
        if not reasons and eval_strategy_on(ctx):
            reasons = [strategy_key]
        if not reasons:
            return
        key = reasons[0]
        by_strategy = key == strategy_key
        if by_strategy and ctx.schema.accepted(key, ctx.kind.command, ctx.options.target) is None:
            return  # the target transformers refuses the old name itself: KEY002 says so, one problem one finding
        why = f"`{key}: {strategy}` turns on `do_eval`" if by_strategy else f"`{key}: true`"
        fix = None
        if by_strategy and not ctx.flag("do_eval") and ctx.get("dataset") is not None:
            fix = set_key(ctx, "val_size", "0.1", "evaluate on 10% of `dataset` (`val_size: 0.1`)",
                          after="dataset", safe=False)
        if ctx.lf >= v("0.9.4"):  # hparams/parser.py `get_train_args` checks it from v0.9.4 on
            stops = lf_stops("Please make sure eval_dataset be provided or val_size >1e-6")
        else:
            stops = 'the run fails at its first evaluation ("Trainer: evaluation requires an eval_dataset.")'
        yield Finding(
            key=key,
            also=("eval_dataset", "val_size"),
            message=f"{why} but there is no evaluation data: {stops}",
            hint="set `eval_dataset`, or `val_size` to split it from `dataset`"
            + (f", or `{strategy_key}: no`" if by_strategy else ""),
            fix=fix,
        )
