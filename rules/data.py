"""Dataset-aware rules: what the data itself says about ``cutoff_len``, packing and the loss mask.

DATA002 only reads ``dataset_dir/dataset_info.json`` (cheap, always on). The others need the dataset's token
statistics (``ctx.dataset``): the files read like LLaMA-Factory reads them, formatted with the chat template and
tokenized with the model's own tokenizer (``--tokenizer``, the model directory, or the HF cache offline). Without
a tokenizer they are skipped with the reason.

Lengths are the full tokenized sample (template markup included, before truncation); percentiles are numpy's.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.data.info import (
    FILE_TYPES,
    DatasetInfoError,
    file_type,
    find_dataset_dir,
    is_online,
    load_dataset_info,
    local_files,
    resolve,
    shown,
    split_names,
)
from tuner.config.context import Context
from tuner.lint.fixes import remove_key, set_key
from tuner.lint.rule import Finding, Need, Rule, Severity, SkipRule

#: ``cutoff_len`` suggestions are rounded up to this. LLaMA-Factory's collator pads batches to a multiple of 8
#: and attention kernels work in 64- or 128-token tiles, so any multiple of 64 costs nothing extra over the
#: exact percentile; rounding to 128 would add up to 127 unused tokens to the memory budget for no speed gain.
ROUND_TO = 64
ROUND_WHY = (
    f"rounded up to a multiple of {ROUND_TO}: batches are padded to a multiple of 8 and attention kernels tile by "
    f"64-128 tokens, so {ROUND_TO} is free while 128 would budget up to 127 unused tokens"
)


def _round_up(value: float, multiple: int = ROUND_TO) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "0%"


def _n(x: float) -> str:
    return f"{round(x):,}"


def _stats(ctx: Context) -> Any:
    return ctx.dataset


def _data_key(ctx: Context) -> str:
    return "dataset" if ctx.has("dataset") else "eval_dataset"


def _cutoff_key(ctx: Context) -> tuple[str, tuple[str, ...]]:
    return "cutoff_len", (_data_key(ctx),)


def _max_positions(ctx: Context) -> int | None:
    """The model's context length when the model is known (never required: DATA rules need only the data)."""
    try:
        model = ctx.model
    except Exception:  # noqa: BLE001 - the model resolver is optional here
        return None
    arch = getattr(model, "arch", model)
    v = getattr(arch, "max_position_embeddings", None)
    return v if isinstance(v, int) and v > 0 else None


def _supervised_like(ctx: Context, stats: Any) -> bool:
    """``cutoff_len`` truncates samples (sft/rm/dpo/kto/ppo, and pt without packing)."""
    return stats.kind != "pretrain" or not ctx.packing


class DataFileProblems(Rule):
    """A dataset file is empty, unreadable, or has rows LLaMA-Factory cannot use.

    LLaMA-Factory reads the files named in ``dataset_info.json`` with ``datasets``: a file that does not parse
    stops the run, a column the entry names (or defaults to, like ``input``) that no row has stops it with
    ``KeyError``, a non-string field stops it while formatting, and conversations with roles out of order, an odd
    number of messages or no response are dropped one by one with a warning. Each defect is reported with how
    many rows have it and where the first ones are (``file:line``), so it can be fixed before a GPU is booked.

    Bad:

    ```yaml
    # data/dataset_info.json: {"my_sft": {"file_name": "my_sft.json"}}
    # my_sft.json has rows without "input" and one line that is not valid JSON
    dataset: my_sft
    template: qwen
    ```

    Good:

    ```yaml
    # data/dataset_info.json: {"my_sft": {"file_name": "my_sft.json",
    #   "columns": {"prompt": "instruction", "response": "output"}}}
    dataset: my_sft
    template: qwen
    ```
    """

    code = "DATA001"
    name = "dataset-file-problems"
    severity = Severity.ERROR
    needs = frozenset({Need.DATASET})

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        seen: set[tuple[str, str, str]] = set()
        for rep in stats.reports:
            for p in rep.problems:
                if (rep.name, p.kind, p.message) in seen:  # a dataset used for training and evaluation
                    continue
                seen.add((rep.name, p.kind, p.message))
                count = ""
                if p.kind in ("malformed-row", "dropped-row") and p.total:
                    count = f"{p.count:,} of {p.total:,} rows {'has' if p.count == 1 else 'have'} "
                yield Finding(
                    key=rep.key if ctx.has(rep.key) else _data_key(ctx),
                    message=f"dataset `{rep.name}`: {count}{p.summary()}",
                    hint=p.hint or ("fix these rows or remove them" if count else None),
                )


class DatasetInfo(Rule):
    """A dataset name, file or format that LLaMA-Factory cannot resolve through ``dataset_info.json``.

    ``dataset``/``eval_dataset`` are names looked up in ``dataset_dir/dataset_info.json`` (``dataset_dir``
    defaults to ``data``, relative to where training is launched). LLaMA-Factory stops with "Cannot open
    data/dataset_info.json" when the file is missing, "Undefined dataset X in dataset_info.json" for an unknown
    name, "File X not found" for a missing data file, "Allowed file types: ..." for other extensions, and "The
    dataset is not applicable in the current training stage" when a ``ranking`` (preference) dataset is used
    outside ``rm``/``dpo`` or a plain one inside them. This rule reads only dataset_info.json and checks that the
    files exist; it needs no tokenizer. Where dataset_info.json is depends on the directory the run is launched
    from, so a missing one is reported only when you say where that is (``--data-root`` or ``--dataset-dir``);
    otherwise the rule is skipped with that reason.

    Bad:

    ```yaml
    # cfglint --data-root .
    dataset: my_sft
    dataset_dir: data
    ```

    Good:

    ```yaml
    dataset: my-org/my-sft-data  # a Hub dataset, not read by cfglint
    dataset_dir: ONLINE
    ```
    """

    code = "DATA002"
    name = "dataset-info"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        names = split_names(ctx.get("dataset"))
        eval_names = split_names(ctx.get("eval_dataset"))
        if not names and not eval_names:
            return
        raw_dir = ctx.options.dataset_dir or ctx.get("dataset_dir") or "data"
        if is_online(raw_dir):
            return
        dir_key = "dataset_dir" if ctx.has("dataset_dir") else _data_key(ctx)
        cwd = ctx.options.cwd or Path.cwd()
        directory, looked = find_dataset_dir(str(raw_dir), cwd=cwd, config_dir=ctx.path.parent)
        if directory is None:
            if not (ctx.options.dataset_dir or ctx.options.launch_dir_stated):
                # LLaMA-Factory opens `dataset_dir` relative to the directory it is launched from (usually its own
                # checkout), which a pre-commit run cannot know: say so instead of guessing.
                raise SkipRule(
                    f"no dataset_info.json in `{raw_dir}` from here; LLaMA-Factory opens it relative to the directory "
                    "the run is launched from: pass --data-root (that directory) or --dataset-dir to check the datasets"
                )
            yield Finding(
                key=dir_key,
                also=("dataset",),
                severity=Severity.WARNING,
                message=f"no dataset_info.json in `{raw_dir}` (looked in {', '.join(dict.fromkeys(str(shown(p, cwd)) for p in looked))}): "
                f'LLaMA-Factory stops with "Cannot open {raw_dir}/dataset_info.json" unless it is launched from a '
                "directory that has it",
                hint="set `dataset_dir` to the folder with dataset_info.json (or pass --dataset-dir)",
            )
            return
        try:
            info = load_dataset_info(directory)
        except DatasetInfoError as exc:
            yield Finding(key=dir_key, message=f"{exc}: LLaMA-Factory cannot load any dataset",
                          hint="fix dataset_info.json")  # fmt: skip
            return
        data_stage = "rm" if ctx.stage in ("rm", "dpo") else ctx.stage
        for key, group in (("dataset", names), ("eval_dataset", eval_names)):
            for name in group:
                yield from self._check_name(ctx, info, key, name, data_stage)

    def _check_name(self, ctx: Context, info: Any, key: str, name: str, data_stage: str) -> Iterator[Finding]:
        if name not in info.entries:
            close = difflib.get_close_matches(name, [str(k) for k in info.entries], n=3)
            yield Finding(
                key=key,
                message=f'dataset `{name}` is not in {shown(info.path, ctx.options.cwd)}: LLaMA-Factory stops with "Undefined dataset '
                f'{name} in dataset_info.json."',
                hint=f"did you mean {', '.join(f'`{c}`' for c in close)}?" if close else f"add an entry for `{name}`",
            )
            return
        try:
            attr = resolve(name, info)
        except DatasetInfoError as exc:
            yield Finding(key=key, message=f"dataset `{name}`: {exc}", hint="give the entry a `file_name`")
            return
        if attr.formatting not in ("alpaca", "sharegpt", "openai"):
            yield Finding(key=key, message=f"dataset `{name}` has `formatting: {attr.formatting}`: LLaMA-Factory "
                          "accepts alpaca, sharegpt or openai", hint="fix `formatting` in dataset_info.json")  # fmt: skip
        if (data_stage == "rm") != attr.ranking:
            need = "a `ranking: true` (preference) dataset" if data_stage == "rm" else "a dataset without `ranking`"
            yield Finding(
                key=key,
                message=f"dataset `{name}` is {'' if attr.ranking else 'not '}a ranking dataset but `stage: {ctx.stage}` "
                f'needs {need}: LLaMA-Factory stops with "The dataset is not applicable in the current training stage."',
                hint="use a matching dataset or stage",
            )
        if not attr.is_local:
            return
        real = info.dir / attr.dataset_name
        path = shown(real, ctx.options.cwd)
        if not real.exists():
            yield Finding(key=key, message=f'dataset `{name}`: {path} does not exist: LLaMA-Factory stops with "File '
                          f'{path} not found."', hint=f"check `file_name` of `{name}` in {shown(info.path, ctx.options.cwd)}")  # fmt: skip
            return
        files = local_files(attr, info)
        types = {file_type(f) for f in files}
        if not files:
            yield Finding(key=key, message=f"dataset `{name}`: folder {path} is empty")
        elif None in types:
            odd = next(f for f in files if file_type(f) is None)
            yield Finding(key=key, message=f"dataset `{name}`: {odd.name} is not a dataset file: LLaMA-Factory stops "
                          f"with \"Allowed file types: {','.join(FILE_TYPES)}.\"",
                          hint="rename or convert it (extensions are case-sensitive)")  # fmt: skip
        elif len(types) > 1:
            yield Finding(key=key, message=f'dataset `{name}`: {path} mixes file types: LLaMA-Factory stops with "File '
                          'types should be identical."')  # fmt: skip


class CutoffBelowP90(Rule):
    """``cutoff_len`` is below the 90th percentile of the tokenized sample lengths.

    The usual rule of thumb is ``cutoff_len`` ≈ p90 of the lengths LLaMA-Factory builds (prompt, response and
    template markup). Below it, more than one sample in ten is truncated: LLaMA-Factory shortens prompt and
    response with ``infer_seqlen``, and in multi-turn data drops the last turns outright, so answers are cut off
    mid-sentence and the model learns to stop early. The fix sets ``cutoff_len`` to p90 rounded up to a multiple of
    64 (batches are padded to a multiple of 8 and attention kernels tile by 64-128 tokens, so 64 costs nothing over
    the exact percentile; 128 would budget up to 127 unused tokens). A longer ``cutoff_len`` raises the worst-case
    activation memory: check it with ``cfgtune estimate``.

    Bad:

    ```yaml
    dataset: my_sft  # p90 of the tokenized samples: 1,410 tokens
    cutoff_len: 512
    ```

    Good:

    ```yaml
    dataset: my_sft
    cutoff_len: 1472
    ```
    """

    code = "DATA003"
    name = "cutoff-below-p90"
    severity = Severity.WARNING
    needs = frozenset({Need.DATASET})
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        train = stats.train
        if train.count == 0 or not _supervised_like(ctx, stats):
            return
        cutoff = stats.effective_cutoff
        p90 = train.p(90)
        if cutoff >= p90:
            return
        tr = stats.truncation()
        extra = 1 if stats.request.packing_explicit else 0  # packing: LLaMA-Factory truncates at cutoff_len - 1
        suggested = _round_up(p90 + extra)
        max_pos = _max_positions(ctx)
        fix = None
        cap_note = ""
        if max_pos is not None and suggested > max_pos and not ctx.get("rope_scaling"):
            cap_note = f"; p90 exceeds the model's {max_pos:,}-token context, so raising it needs `rope_scaling`"
        else:
            fix = set_key(ctx, "cutoff_len", str(suggested), f"set `cutoff_len: {suggested}` (p90 rounded up)",
                          after="template" if ctx.has("template") else None)  # fmt: skip
        lost = f", {tr.response_lost:,} lose their whole last response" if tr.response_lost else ""
        turns = f", {tr.turns_lost:,} lose whole turns" if tr.turns_lost else ""
        key, also = _cutoff_key(ctx)
        yield Finding(
            key=key,
            also=also,
            message=f"`cutoff_len: {stats.cutoff_len}` is below the 90th percentile of sample lengths ({_n(p90)} "
            f"tokens, template `{stats.template.name}`): {tr.truncated:,} of {tr.samples:,} samples "
            f"({_pct(tr.truncated, tr.samples)}) are truncated{lost}{turns}{cap_note}",
            hint=f"set `cutoff_len: {suggested}` (p90 {ROUND_WHY}); it raises activation memory, so check "
            "`cfgtune estimate`",
            fix=fix,
        )


class CutoffFarAboveP99(Rule):
    """``cutoff_len`` is far above the 99th percentile of the tokenized sample lengths.

    Without packing, LLaMA-Factory pads each batch only to its longest sample, so the surplus is not used by any
    step; but memory is planned for ``cutoff_len`` (the estimator, ``cfgtune auto`` and people sizing the batch
    assume a full-length worst case), so the headroom is wasted on sequences the data does not have. When every
    sample fits, lowering ``cutoff_len`` to the longest sample rounded up to 64 changes nothing in training. With
    ``--hw`` and a known model the message says how much memory the estimate frees.

    Bad:

    ```yaml
    dataset: my_sft  # p99 of the tokenized samples: 900 tokens, the longest 1,100
    cutoff_len: 8192
    ```

    Good:

    ```yaml
    dataset: my_sft
    cutoff_len: 1152
    ```
    """

    code = "DATA004"
    name = "cutoff-far-above-p99"
    severity = Severity.INFO
    needs = frozenset({Need.DATASET})
    fixable = "safe"

    #: "far above": at least this many times the p99 (rounded up to 64).
    FACTOR = 2.0

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        train = stats.train
        if train.count == 0 or ctx.packing or not _supervised_like(ctx, stats):
            return  # with packing every row is filled to cutoff_len: the length is used
        cutoff = stats.cutoff_len
        p99 = train.p(99)
        longest = int(train.total.max())
        if cutoff < self.FACTOR * _round_up(p99):
            return
        to_longest = _round_up(longest)
        suggested = to_longest if to_longest < cutoff else _round_up(p99)
        safe = suggested >= longest and not (ctx.flag("predict_with_generate") and not ctx.has("generation_max_length"))
        saved = self._memory_saved(ctx, suggested)
        mem = f"; the estimated peak memory drops by {saved:.1f} GiB per GPU at {suggested}" if saved else ""
        tail = "every sample still fits" if suggested >= longest else f"{_pct(stats.truncation(suggested).truncated, train.count)} of samples would be truncated"
        key, also = _cutoff_key(ctx)
        yield Finding(
            key=key,
            also=also,
            message=f"`cutoff_len: {cutoff}` is {cutoff / max(p99, 1):.1f}x the 99th percentile of sample lengths "
            f"({_n(p99)} tokens) and the longest sample has {longest:,}: memory planned for the rest is never "
            f"used{mem}",
            hint=f"set `cutoff_len: {suggested}` ({tail}; {ROUND_WHY})",
            fix=set_key(ctx, "cutoff_len", str(suggested), f"set `cutoff_len: {suggested}`", safe=safe),
        )

    @staticmethod
    def _memory_saved(ctx: Context, cutoff: int) -> float | None:
        """GiB the estimator frees at ``cutoff`` when hardware and model are known; None otherwise."""
        if ctx.options.hw is None:
            return None
        try:
            current = ctx.estimate
            if current is None:
                return None
            from tuner.memory.estimator import estimate
            from tuner.memory.from_config import setup_from_context

            setup = dataclasses.replace(setup_from_context(ctx), cutoff_len=cutoff)
            lower = estimate(setup, ctx.hardware)
            saved = (current.peak_bytes - lower.peak_bytes) / 2**30
        except Exception:  # noqa: BLE001 - the estimate is an extra; the finding stands without it
            return None
        return saved if saved >= 0.05 else None


class TrainOnPromptLongPrompts(Rule):
    """``train_on_prompt: true`` on data whose prompts dwarf the responses.

    With ``train_on_prompt`` the prompt tokens carry loss too. When prompts are much longer than responses (long
    documents to summarise or classify, few-word answers), most of the loss is the model copying prompts: the
    answers it is meant to learn become a small share of the gradient and the loss curve looks good while the
    task does not improve. LLaMA-Factory's default (``train_on_prompt: false``) masks the prompt.

    Bad:

    ```yaml
    dataset: summaries  # median prompt 900 tokens, median response 40
    train_on_prompt: true
    ```

    Good:

    ```yaml
    dataset: summaries
    train_on_prompt: false
    ```
    """

    code = "DATA005"
    name = "train-on-prompt-long-prompts"
    severity = Severity.WARNING
    needs = frozenset({Need.DATASET})
    fixable = "unsafe"

    #: Report when at least this share of the trained tokens are prompt tokens.
    SHARE = 0.75

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        if not ctx.flag("train_on_prompt") or stats.kind != "supervised" or stats.train.count == 0:
            return
        tr = stats.truncation()
        if tr.label_tokens == 0:
            return
        share = tr.prompt_label_tokens / tr.label_tokens
        if share < self.SHARE:
            return
        train = stats.train
        yield Finding(
            key="train_on_prompt",
            message=f"with `train_on_prompt`, {share:.0%} of the trained tokens are prompt tokens (median prompt "
            f"{_n(train.p(50, 'prompt'))} tokens, median response {_n(train.p(50, 'response'))}): the loss is "
            "dominated by reproducing prompts, not by the answers",
            hint="remove `train_on_prompt` (LLaMA-Factory then trains on the responses only)",
            fix=remove_key(ctx, "train_on_prompt", "remove `train_on_prompt`", safe=False),
        )


class MaskHistoryMultiTurn(Rule):
    """``mask_history`` and multi-turn data disagree.

    LLaMA-Factory fills ``cutoff_len`` turn by turn from the first one, so when a multi-turn conversation is too
    long its *last* turns are dropped, and those are usually the ones that matter. ``mask_history: true`` fills
    from the last turn instead (and trains only on it). Conversely ``mask_history`` does nothing when no sample
    has more than one turn.

    Bad:

    ```yaml
    dataset: chats  # multi-turn; 8% of conversations lose their last turns at 2048
    cutoff_len: 2048
    ```

    Good:

    ```yaml
    dataset: chats
    cutoff_len: 4096
    ```
    """

    code = "DATA006"
    name = "mask-history-multi-turn"
    severity = Severity.WARNING
    needs = frozenset({Need.DATASET})
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        train = stats.train
        if stats.kind != "supervised" or train.count == 0:
            return
        multi = train.multi_turn
        if ctx.flag("mask_history"):
            if multi == 0:
                yield Finding(
                    key="mask_history",
                    severity=Severity.INFO,
                    message=f"`mask_history: true` has no effect: all {train.count:,} samples are single-turn",
                    hint="remove `mask_history`",
                    fix=remove_key(ctx, "mask_history", "remove `mask_history` (no effect on single-turn data)"),
                )
            return
        if multi == 0:
            return
        tr = stats.truncation()
        if tr.turns_lost == 0:
            return
        suggest = "" if ctx.flag("train_on_prompt") else (
            ", or set `mask_history: true` to keep the last turn (and train on it only)")
        key, also = _cutoff_key(ctx)
        yield Finding(
            key=key,
            also=also,
            message=f"{tr.turns_lost:,} of {multi:,} multi-turn samples lose their last turns at `cutoff_len: "
            f"{stats.cutoff_len}`: LLaMA-Factory keeps turns from the first one, so the final answers are dropped",
            hint=f"raise `cutoff_len` (p99 is {_n(train.p(99))} tokens){suggest}",
        )


class PackingRowFill(Rule):
    """``packing`` with samples much shorter, or not shorter, than ``cutoff_len``.

    Packing fills each ``cutoff_len`` row with as many samples as fit. With short samples one row holds many of
    them, so a step of ``per_device_train_batch_size`` rows sees many times more samples than the batch size
    says, the number of steps per epoch shrinks by the same factor, and learning rate, warmup and save/eval step
    counts tuned without packing no longer fit (and without ``neat_packing`` each sample attends to the unrelated
    ones before it). With samples about as long as ``cutoff_len``, a row holds one sample and packing gains
    nothing (a common "packing has no effect" report).

    Bad:

    ```yaml
    dataset: short_qa  # median sample 90 tokens: ~22 samples per 2048-token row
    packing: true
    cutoff_len: 2048
    ```

    Good:

    ```yaml
    dataset: short_qa
    neat_packing: true
    cutoff_len: 2048
    ```
    """

    code = "DATA007"
    name = "packing-row-fill"
    severity = Severity.INFO
    needs = frozenset({Need.DATASET})

    #: Report when a packed row holds at least this many samples (or at most 1.5).
    MANY = 8.0

    def check(self, ctx: Context) -> Iterator[Finding]:
        stats = _stats(ctx)
        train = stats.train
        if stats.kind != "supervised" or not ctx.packing or train.count == 0:
            return
        cutoff = stats.effective_cutoff
        tr = stats.truncation()
        rows = max(1, -(-tr.tokens_after // max(1, cutoff)))  # at least this many rows (greedy packing needs more)
        per_row = train.count / rows
        key = "neat_packing" if ctx.has("neat_packing") else "packing"
        if per_row >= self.MANY:
            steps_note = ""
            batch = ctx.get("per_device_train_batch_size")
            if isinstance(batch, int) and not isinstance(batch, bool):
                steps_note = f" (`per_device_train_batch_size: {batch}` = ~{int(batch * per_row):,} samples per device step)"
            neat = "" if ctx.flag("neat_packing") else "; without `neat_packing` they also attend to each other"
            yield Finding(
                key=key,
                also=("packing", "cutoff_len"),
                message=f"packing puts ~{per_row:.0f} samples in each {cutoff}-token row (median sample "
                f"{_n(train.p(50))} tokens){steps_note}: an epoch has ~{per_row:.0f}x fewer steps than unpacked, "
                f"so learning rate, warmup and save/eval steps tuned per sample do not carry over{neat}",
                hint="re-check `learning_rate`, `warmup_*`, `save_steps`/`eval_steps` for packed rows, or lower "
                "`cutoff_len`",
            )
        elif per_row <= 1.5:
            yield Finding(
                key=key,
                also=("packing", "cutoff_len"),
                message=f"packing gains little: the median sample has {_n(train.p(50))} of {cutoff} tokens, so "
                f"a packed row holds ~{per_row:.1f} samples",
                hint="drop `packing`, or raise `cutoff_len` if the model's context allows",
            )
