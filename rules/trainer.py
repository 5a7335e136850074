"""Trainer arguments: the ``TrainingArguments.__post_init__`` checks of transformers, and the output directory.

transformers validates strategies, step counts, the scheduler, the dataloader and FSDP options when
LLaMA-Factory builds its ``TrainingArguments`` (``transformers/training_args.py``, 4.57 and 5.x). The output
directory checks are LLaMA-Factory's own (``get_train_args`` in ``hparams/parser.py``) and look at the file
system the way the launched process will: relative to the directory the run starts in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.config.context import Context
from tuner.lint.fixes import remove_key, set_key
from tuner.lint.rule import Finding, Rule, Severity

from ._lf_common import (
    INTEGRATIONS_4,
    INTEGRATIONS_5,
    command,
    env_enabled,
    int_value,
    is_train_command,
    keys_text,
    resolve_dir,
)


def _rejects(text: str) -> str:
    return f'transformers refuses the run at start-up: "{text}"'


def _strategy(ctx: Context, key: str) -> str | None:
    v = ctx.get(key)
    return v if isinstance(v, str) else None


def _steps(ctx: Context, key: str) -> float | None:
    return ctx.number(key)


class EvalStepsRequired(Rule):
    """A ``steps`` evaluation or logging strategy with no step interval.

    With ``eval_strategy: steps`` and no ``eval_steps``, transformers falls back to ``logging_steps``; if that is 0
    it raises "evaluation strategy steps requires either non-zero --eval_steps or --logging_steps".
    ``logging_strategy: steps`` with ``logging_steps: 0`` raises "logging strategy steps requires non-zero
    --logging_steps" (``TrainingArguments.__post_init__``; llamafactory_checks.md #131).

    Bad:

    ```yaml
    eval_strategy: steps
    logging_steps: 0
    logging_strategy: "no"
    ```

    Good:

    ```yaml
    eval_strategy: steps
    eval_steps: 200
    logging_strategy: "no"
    ```
    """

    code = "TRAIN001"
    name = "eval-steps-required"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx):
            return
        logging_steps = _steps(ctx, "logging_steps")
        eval_steps = _steps(ctx, "eval_steps")
        if _strategy(ctx, "eval_strategy") == "steps" and not eval_steps and logging_steps is not None and logging_steps <= 0:
            yield Finding(
                key="eval_steps",
                also=("eval_strategy",),
                message="`eval_strategy: steps` without `eval_steps`, and `logging_steps` is 0: "
                + _rejects("evaluation strategy steps requires either non-zero --eval_steps or --logging_steps"),
                hint="set `eval_steps` (an integer, or a fraction of the total steps below 1)",
                fix=set_key(ctx, "eval_steps", "500", "set `eval_steps: 500`", after="eval_strategy", safe=False),
            )
        if _strategy(ctx, "logging_strategy") == "steps" and logging_steps == 0:
            yield Finding(
                key="logging_steps",
                also=("logging_strategy",),
                message="`logging_steps: 0` with `logging_strategy: steps`: "
                + _rejects("logging strategy steps requires non-zero --logging_steps"),
                hint='set `logging_steps` (e.g. 10), or `logging_strategy: "no"` to turn logging off',
            )


class StepsMustBeIntegers(Rule):
    """``logging_steps``, ``eval_steps`` or ``save_steps`` above 1 that is not a whole number.

    Values below 1 are fractions of the total steps; above 1 they must be whole. transformers raises "--save_steps
    must be an integer if bigger than 1: 50.5" (``TrainingArguments.__post_init__``; llamafactory_checks.md #132).
    Only checked when the matching strategy is ``steps``.

    Bad:

    ```yaml
    save_strategy: steps
    save_steps: 250.5
    ```

    Good:

    ```yaml
    save_strategy: steps
    save_steps: 250
    ```
    """

    code = "TRAIN002"
    name = "steps-must-be-integers"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx):
            return
        for key, strategy in (("logging_steps", "logging_strategy"), ("eval_steps", "eval_strategy"), ("save_steps", "save_strategy")):
            v = _steps(ctx, key)
            if _strategy(ctx, strategy) != "steps" or v is None or v <= 1 or float(v).is_integer():
                continue
            yield Finding(
                key=key,
                message=f"`{key}: {v:g}` is above 1 but not a whole number: "
                + _rejects(f"--{key} must be an integer if bigger than 1: {v:g}"),
                hint="use a whole number of steps, or a fraction below 1 of the total steps",
            )


def _effective_eval_steps(ctx: Context) -> float | None:
    v = _steps(ctx, "eval_steps")
    return v if v else _steps(ctx, "logging_steps")


class LoadBestModelStrategies(Rule):
    """``load_best_model_at_end`` whose evaluation and save schedules do not line up.

    The best checkpoint can only be reloaded if a checkpoint is saved at every evaluation. transformers requires
    ``eval_strategy`` to equal ``save_strategy`` (unless ``save_strategy: best``) and, for ``steps``, ``save_steps``
    to be a multiple of ``eval_steps``: "--load_best_model_at_end requires the save and eval strategy to match"
    (``TrainingArguments.__post_init__``; llamafactory_checks.md #133). ``eval_strategy`` defaults to ``no``, so
    turning on ``load_best_model_at_end`` alone is enough to fail.

    Bad:

    ```yaml
    load_best_model_at_end: true
    save_steps: 500
    ```

    Good:

    ```yaml
    load_best_model_at_end: true
    eval_strategy: steps
    eval_steps: 250
    save_steps: 500
    ```
    """

    code = "TRAIN003"
    name = "load-best-model-strategies"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx) or not ctx.flag("load_best_model_at_end"):
            return
        ev, sv = _strategy(ctx, "eval_strategy"), _strategy(ctx, "save_strategy")
        if ev is None or sv is None or sv == "best":
            return
        if ev != sv:
            yield Finding(
                key="eval_strategy" if ctx.has("eval_strategy") else "load_best_model_at_end",
                also=("save_strategy", "load_best_model_at_end"),
                message=f"`load_best_model_at_end` with `eval_strategy: {ev}` and `save_strategy: {sv}`: "
                + _rejects("--load_best_model_at_end requires the save and eval strategy to match"),
                hint=f"set `eval_strategy: {sv}`" + (" and `eval_steps`" if sv == "steps" else "")
                + ", or `save_strategy: best`",
            )
            return
        if ev != "steps":
            return
        es, ss = _effective_eval_steps(ctx), _steps(ctx, "save_steps")
        if not es or not ss:
            return  # TRAIN001 reports a missing interval
        if (es < 1) != (ss < 1):
            problem = "mixes a fraction and an absolute number of steps"
        elif round(ss * 1_000_000) % round(es * 1_000_000) != 0:
            problem = "is not a multiple of"
        else:
            return
        source = "" if ctx.get("eval_steps") else " (from `logging_steps`, since `eval_steps` is unset)"
        yield Finding(
            key="save_steps" if ctx.has("save_steps") else "load_best_model_at_end",
            also=("eval_steps", "load_best_model_at_end"),
            message=f"`load_best_model_at_end` with `save_steps: {ss:g}`, which {problem} `eval_steps: {es:g}`{source}: "
            + _rejects("--load_best_model_at_end requires the saving steps to be a multiple of the evaluation steps"),
            hint="make `save_steps` a multiple of `eval_steps` (e.g. the same value)",
        )


class SchedulerNeedsEval(Rule):
    """``lr_scheduler_type: reduce_lr_on_plateau`` (or ``greedy`` in transformers 5) without evaluation.

    These schedulers react to the evaluation loss. transformers raises "lr_scheduler_type reduce_lr_on_plateau
    requires an eval strategy" (``TrainingArguments.__post_init__``; llamafactory_checks.md #134).

    Bad:

    ```yaml
    lr_scheduler_type: reduce_lr_on_plateau
    ```

    Good:

    ```yaml
    lr_scheduler_type: reduce_lr_on_plateau
    eval_strategy: epoch
    val_size: 0.05
    ```
    """

    code = "TRAIN004"
    name = "scheduler-needs-eval"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx):
            return
        sched = ctx.get("lr_scheduler_type")
        needs_eval = {"reduce_lr_on_plateau"} | ({"greedy"} if ctx.options.transformers_major >= 5 else set())
        if isinstance(sched, str) and sched in needs_eval and _strategy(ctx, "eval_strategy") == "no":
            yield Finding(
                key="lr_scheduler_type",
                also=("eval_strategy",),
                message=f"`lr_scheduler_type: {sched}` without an evaluation strategy: "
                + _rejects(f"lr_scheduler_type {sched} requires an eval strategy"),
                hint="set `eval_strategy: steps|epoch` with evaluation data, or use another scheduler (e.g. `cosine`)",
            )


class PrefetchNeedsWorkers(Rule):
    """``dataloader_prefetch_factor`` with ``dataloader_num_workers: 0``.

    Prefetching happens in worker processes. transformers raises "--dataloader_prefetch_factor can only be set
    when data is loaded in a different process, i.e. when --dataloader_num_workers > 1."
    (``TrainingArguments.__post_init__``; the test is ``num_workers == 0``; llamafactory_checks.md #138).

    Bad:

    ```yaml
    dataloader_num_workers: 0
    dataloader_prefetch_factor: 2
    ```

    Good:

    ```yaml
    dataloader_num_workers: 4
    dataloader_prefetch_factor: 2
    ```
    """

    code = "TRAIN005"
    name = "prefetch-needs-workers"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx) or ctx.get("dataloader_prefetch_factor") is None:
            return
        if int_value(ctx, "dataloader_num_workers") == 0:
            yield Finding(
                key="dataloader_prefetch_factor",
                also=("dataloader_num_workers",),
                message="`dataloader_prefetch_factor` with `dataloader_num_workers: 0`"
                f"{'' if ctx.has('dataloader_num_workers') else ' (the default)'}: "
                + _rejects("--dataloader_prefetch_factor can only be set when data is loaded in a different process"),
                hint="set `dataloader_num_workers` (e.g. 4), or remove `dataloader_prefetch_factor`",
                # Without workers there is nothing to prefetch: removing it changes nothing the run could do.
                fix=remove_key(ctx, "dataloader_prefetch_factor", "remove `dataloader_prefetch_factor`"),
            )


def _fsdp_options(value: Any) -> list[str]:
    if value is True:
        return ["full_shard"]
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


class FSDPOptions(Rule):
    """``fsdp: offload`` on its own, or ``full_shard`` together with ``shard_grad_op``.

    ``offload`` modifies a sharding strategy and ``full_shard``/``shard_grad_op`` exclude each other. transformers
    raises "`--fsdp offload` can't work on its own." / "`--fsdp full_shard` is not compatible with `--fsdp
    shard_grad_op`." (``TrainingArguments.__post_init__``; llamafactory_checks.md #139).

    Bad:

    ```yaml
    fsdp: offload
    ```

    Good:

    ```yaml
    fsdp: full_shard offload auto_wrap
    ```
    """

    code = "TRAIN006"
    name = "fsdp-options"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx):
            return
        opts = _fsdp_options(ctx.get("fsdp"))
        if opts == ["offload"]:
            yield Finding(
                key="fsdp",
                message="`fsdp: offload` on its own: " + _rejects("`--fsdp offload` can't work on its own."),
                hint='combine it with a sharding strategy: `fsdp: "full_shard offload auto_wrap"`',
                fix=set_key(ctx, "fsdp", "full_shard offload auto_wrap", "set `fsdp: full_shard offload auto_wrap`", safe=False),
            )
        elif "full_shard" in opts and "shard_grad_op" in opts:
            yield Finding(
                key="fsdp",
                message="`fsdp` names both `full_shard` and `shard_grad_op`: "
                + _rejects("`--fsdp full_shard` is not compatible with `--fsdp shard_grad_op`."),
                hint="keep `full_shard` (ZeRO-3-like) or `shard_grad_op` (ZeRO-2-like)",
            )


class EmptyCacheSteps(Rule):
    """``torch_empty_cache_steps`` that is zero or negative.

    transformers raises "`torch_empty_cache_steps` must be an integer bigger than 0" (``TrainingArguments.
    __post_init__``; llamafactory_checks.md #140). Leave it unset to never empty the CUDA cache.

    Bad:

    ```yaml
    torch_empty_cache_steps: 0
    ```

    Good:

    ```yaml
    torch_empty_cache_steps: 50
    ```
    """

    code = "TRAIN007"
    name = "empty-cache-steps"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        v = int_value(ctx, "torch_empty_cache_steps")
        if is_train_command(ctx) and v is not None and v <= 0:
            yield Finding(
                key="torch_empty_cache_steps",
                message=f"`torch_empty_cache_steps: {v}`: "
                + _rejects(f"`torch_empty_cache_steps` must be an integer bigger than 0, got {v}."),
                hint="remove it (never empty the cache) or use a positive number of steps",
                # 0 and unset both mean "never" to the user; unset is the spelling transformers accepts.
                fix=remove_key(ctx, "torch_empty_cache_steps", "remove `torch_empty_cache_steps`"),
            )


class ReportToUnknown(Rule):
    """``report_to`` naming a tracker transformers does not know, or a comma-separated string.

    transformers looks each name up when the trainer is created and raises "X is not supported, only azure_ml,
    comet_ml, mlflow, … are supported." (``integrations/integration_utils.py``). A string is one name: ``wandb,
    tensorboard`` is looked up as a single tracker, so several trackers must be a YAML list. ``all`` and ``none``
    only work on their own.

    Bad:

    ```yaml
    report_to: wandb,tensorboard
    ```

    Good:

    ```yaml
    report_to: [wandb, tensorboard]
    ```
    """

    code = "TRAIN008"
    name = "report-to-unknown"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not is_train_command(ctx):
            return
        v = ctx.get("report_to")
        known = INTEGRATIONS_5 if ctx.options.transformers_major >= 5 else INTEGRATIONS_4
        if isinstance(v, str):
            if v in ("all", "none") or v in known:
                return
            parts = [p.strip() for p in re.split(r"[,\s]+", v) if p.strip()]
            if len(parts) > 1 and all(p in known for p in parts):
                yield Finding(
                    key="report_to",
                    message=f"`report_to: {v}` is one string, so transformers looks up a tracker named {v!r} and "
                    f'refuses it when the trainer starts ("{v} is not supported")',
                    hint="write several trackers as a YAML list: `report_to: [" + ", ".join(parts) + "]`",
                    fix=set_key(ctx, "report_to", "[" + ", ".join(parts) + "]", "write `report_to` as a list"),
                )
                return
            items = [v]
        elif isinstance(v, list):
            items = [str(i) for i in v]
            if items in (["all"], ["none"]):
                return
        else:
            return
        bad = [i for i in items if i not in known]
        if bad:
            import difflib

            close = [m for b in bad for m in difflib.get_close_matches(b.lower(), known, n=1, cutoff=0.6)]
            yield Finding(
                key="report_to",
                message=f"`report_to` names {keys_text(bad)}, which transformers does not know: it refuses the run "
                f'when the trainer starts ("{bad[0]} is not supported")',
                hint=(f"did you mean {keys_text(close)}? " if close else "")
                + f"known trackers: {', '.join(known)}; `all` or `none` alone",
            )


#: Files whose presence in ``output_dir`` makes LLaMA-Factory refuse to overwrite it (``CHECKPOINT_NAMES``).
_MODEL_FILES = (
    "adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model.bin.index.json",
)  # fmt: skip
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _last_checkpoint(folder: Path) -> Path | None:
    """transformers' ``get_last_checkpoint``: the ``checkpoint-N`` directory with the largest N."""
    try:
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    except OSError:
        return None
    return max(found, key=lambda t: t[0])[1] if found else None


def _output_dir_state(ctx: Context) -> tuple[Path, Path | None, list[str]] | None:
    """(the output dir, its last checkpoint, model files in it) when LLaMA-Factory will inspect it, else None."""
    if not ctx.is_training or ctx.get("resume_from_checkpoint") not in (None, "") or ctx.flag("overwrite_output_dir"):
        return None
    if ctx.stage in ("rm", "ppo") and ctx.finetuning_type in ("full", "freeze"):
        return None  # LLaMA-Factory does not resume these stages, so it does not look
    value = ctx.get("output_dir") or "trainer_output"
    if not isinstance(value, str):
        return None
    folder = resolve_dir(ctx, value)
    if not folder.is_dir():
        return None
    files = [name for name in _MODEL_FILES if (folder / name).is_file()]
    return folder, _last_checkpoint(folder), files


class OutputDirNotEmpty(Rule):
    """``output_dir`` already holds a trained model (and no checkpoints) while ``overwrite_output_dir`` is off.

    LLaMA-Factory refuses to write a new model over an old one: "Output directory already exists and is not
    empty. Please set `overwrite_output_dir`." (``get_train_args`` in ``parser.py``; llamafactory_checks.md
    #118). Re-running a finished config is the usual way to hit it (hiyouga/LlamaFactory#6288, #4612). The
    directory is looked up from where the run is launched.

    Bad:

    ```yaml
    # saves/llama3-8b/lora/sft/model.safetensors.index.json: {"weight_map": {}}
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    ```

    Good:

    ```yaml
    # saves/llama3-8b/lora/sft/model.safetensors.index.json: {"weight_map": {}}
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    overwrite_output_dir: true
    ```
    """

    code = "TRAIN009"
    name = "output-dir-not-empty"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        state = _output_dir_state(ctx)
        if state is None:
            return
        folder, last, files = state
        if last is not None or not files:
            return
        yield Finding(
            key="output_dir",
            also=("do_train",),
            message=f"`output_dir` ({folder}) already holds a trained model ({', '.join(files)}): "
            'LLaMA-Factory stops at start-up with "Output directory already exists and is not empty. Please set '
            '`overwrite_output_dir`."',
            hint="choose a new `output_dir`, or set `overwrite_output_dir: true` to replace the old model",
            fix=set_key(ctx, "overwrite_output_dir", "true", "set `overwrite_output_dir: true`", after="output_dir", safe=False),
        )


def _checkpoint_progress(checkpoint: Path) -> tuple[int, int] | None:
    """(global_step, max_steps) from the checkpoint's ``trainer_state.json``, when it can be read."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step, total = state.get("global_step"), state.get("max_steps")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(step, int) and isinstance(total, int):
        return step, total
    return None


class OutputDirAutoResume(Rule):
    """``output_dir`` has a ``checkpoint-N`` directory, so LLaMA-Factory silently resumes from it.

    Without ``overwrite_output_dir`` or ``resume_from_checkpoint``, ``get_train_args`` sets
    ``resume_from_checkpoint`` to the last checkpoint it finds ("Resuming training from …";
    llamafactory_checks.md #119). A re-run then continues the old run with its old optimizer state and schedule;
    if that run had finished, training ends immediately (hiyouga/LlamaFactory#2776, #7085). With LoRA PPO the
    resume is refused outright ("`resume_from_checkpoint` will be supported in the future version.").

    Bad:

    ```yaml
    # saves/llama3-8b/lora/sft/checkpoint-500/trainer_state.json: {"global_step": 500, "max_steps": 500}
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    ```

    Good:

    ```yaml
    # saves/llama3-8b/lora/sft/checkpoint-500/trainer_state.json: {"global_step": 500, "max_steps": 500}
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    resume_from_checkpoint: saves/llama3-8b/lora/sft/checkpoint-500
    ```
    """

    code = "TRAIN010"
    name = "output-dir-auto-resume"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        state = _output_dir_state(ctx)
        if state is None or state[1] is None:
            return
        _, last, _ = state
        assert last is not None
        progress = _checkpoint_progress(last)
        done = ""
        if progress and progress[1] > 0 and progress[0] >= progress[1]:
            done = f"; that run had finished (step {progress[0]} of {progress[1]}), so training ends immediately"
        elif progress:
            done = f" at step {progress[0]} of {progress[1]}"
        ppo = ctx.stage == "ppo"
        yield Finding(
            key="output_dir",
            also=("do_train",),
            severity=Severity.ERROR if ppo else None,
            message=f"`output_dir` has `{last.name}`: LLaMA-Factory resumes from it automatically{done}"
            + ('; PPO cannot resume ("`resume_from_checkpoint` will be supported in the future version.")' if ppo else ""),
            hint="to start afresh, pick a new `output_dir` or set `overwrite_output_dir: true`; to resume on "
            "purpose, say so with `resume_from_checkpoint`",
            fix=set_key(ctx, "overwrite_output_dir", "true", "set `overwrite_output_dir: true`", after="output_dir", safe=False),
        )


class EvalSaveDirExists(Rule):
    """``llamafactory-cli eval`` with a ``save_dir`` that already exists.

    ``EvaluationArguments.__post_init__`` raises "`save_dir` already exists, use another one."
    (``evaluation_args.py``; llamafactory_checks.md #58).

    Bad:

    ```yaml
    # cfglint --command eval
    # saves/eval/mmlu/results.json: {}
    task: mmlu_test
    save_dir: saves/eval/mmlu
    ```

    Good:

    ```yaml
    # cfglint --command eval
    # saves/eval/mmlu/results.json: {}
    task: mmlu_test
    save_dir: saves/eval/mmlu-run2
    ```
    """

    code = "TRAIN011"
    name = "eval-save-dir-exists"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        value = ctx.get("save_dir")
        if command(ctx) != "eval" or not isinstance(value, str) or not value:
            return
        path = resolve_dir(ctx, value)
        if path.exists():
            yield Finding(
                key="save_dir",
                message=f"`save_dir` ({path}) already exists: "
                'LLaMA-Factory stops at start-up with "`save_dir` already exists, use another one."',
                hint="choose a new `save_dir`, or delete the old results",
            )


def _megatron_bridge(ctx: Context) -> bool:
    """``USE_MEGATRON_BRIDGE=1`` selects the Megatron Bridge parser (``USE_MCA=1`` takes precedence over it)."""
    return is_train_command(ctx) and env_enabled(ctx, "USE_MEGATRON_BRIDGE") and not env_enabled(ctx, "USE_MCA")


_MB_SIZES = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size",
             "context_parallel_size")  # fmt: skip
_MB_CHOICES = {
    "recompute_granularity": ("full", "selective"),
    "recompute_method": ("uniform", "block"),
    "moe_token_dispatcher_type": ("allgather", "alltoall", "flex"),
}


class MegatronBridgeArgs(Rule):
    """Megatron Bridge arguments that ``MegatronBridgeArguments`` rejects.

    With ``USE_MEGATRON_BRIDGE=1`` the parallel sizes must be at least 1, ``sequence_parallel`` needs tensor
    parallelism, the recompute and MoE dispatcher settings have fixed choices, and an ``extra_config`` file must
    exist (``hparams/megatron_bridge_args.py``; llamafactory_checks.md #59-63). Checked only when the environment
    (``--env`` or the shell) sets ``USE_MEGATRON_BRIDGE``.

    Bad:

    ```yaml
    # env: USE_MEGATRON_BRIDGE=1
    finetuning_type: full
    sequence_parallel: true
    tensor_model_parallel_size: 1
    ```

    Good:

    ```yaml
    # env: USE_MEGATRON_BRIDGE=1
    finetuning_type: full
    sequence_parallel: true
    tensor_model_parallel_size: 2
    ```
    """

    code = "TRAIN012"
    name = "megatron-bridge-args"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _megatron_bridge(ctx):
            return
        for key in (*_MB_SIZES, "virtual_pipeline_model_parallel_size", "recompute_num_layers"):
            v = int_value(ctx, key)
            if v is not None and v < 1:
                when = " when set" if key in ("virtual_pipeline_model_parallel_size", "recompute_num_layers") else ""
                yield Finding(
                    key=key,
                    message=f"`{key}: {v}`: " + _stops_lf(f"`{key}` must be >= 1{when}."),
                    hint=f"use a positive `{key}`" + (", or remove it" if when else " (1 means no parallelism)"),
                )
        tp = int_value(ctx, "tensor_model_parallel_size")
        if ctx.flag("sequence_parallel") and tp is not None and tp <= 1:
            yield Finding(
                key="sequence_parallel",
                also=("tensor_model_parallel_size",),
                message="`sequence_parallel` without tensor parallelism: "
                + _stops_lf("`sequence_parallel` requires `tensor_model_parallel_size` > 1."),
                hint="set `tensor_model_parallel_size` to 2 or more, or turn `sequence_parallel` off",
            )
        for key, choices in _MB_CHOICES.items():
            v = ctx.get(key)
            if v is not None and v not in choices:
                yield Finding(
                    key=key,
                    message=f"`{key}: {v}` is not one of {', '.join(choices)}: LLaMA-Factory stops at start-up",
                    hint=f"use one of: {', '.join(f'`{c}`' for c in choices)}",
                )
        extra = ctx.get("extra_config")
        if isinstance(extra, str) and extra.strip() and not extra.strip().startswith("{"):
            path = resolve_dir(ctx, extra.strip())
            if not path.is_file():
                yield Finding(
                    key="extra_config",
                    message=f"`extra_config: {extra}` not found (looked for {path}): LLaMA-Factory stops with "
                    f'"`extra_config` file not found: {extra}"',
                    hint="fix the path (relative to where the run starts), or give the overrides as a JSON string",
                )


class MegatronBridgeCompat(Rule):
    """Settings Megatron Bridge training cannot run with, or parallel sizes that do not fit the GPUs.

    ``get_train_args`` (``parser.py``) refuses Megatron Bridge together with MCA or HyperParallel, stages other
    than ``pt``/``sft``, fine-tuning other than ``full``/``lora``, ``quantization_bit`` and ``deepspeed``; and
    TP × PP × CP × EP must divide the world size ("Total Megatron Bridge parallel size (8) exceeds `world_size`
    (4)."; llamafactory_checks.md #69-70). Checked only with ``USE_MEGATRON_BRIDGE`` set; the world size only
    when the GPU count is known.

    Bad:

    ```yaml
    # env: USE_MEGATRON_BRIDGE=1
    stage: dpo
    finetuning_type: full
    ```

    Good:

    ```yaml
    # env: USE_MEGATRON_BRIDGE=1
    stage: sft
    finetuning_type: full
    ```
    """

    code = "TRAIN013"
    name = "megatron-bridge-compat"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not _megatron_bridge(ctx):
            return
        problems: list[tuple[str, str, str]] = []  # (key, LLaMA-Factory's message, hint)
        for key in ("use_mca", "use_hyper_parallel"):
            if ctx.flag(key):
                problems.append((key, "Megatron Bridge cannot be used together with MCA or HyperParallel.",
                                 f"remove `{key}`, or unset USE_MEGATRON_BRIDGE"))
        if ctx.stage not in ("pt", "sft"):
            problems.append(("stage", "Megatron Bridge only supports the `pt` and `sft` stages.",
                             "use `stage: pt` or `sft`, or train without Megatron Bridge"))
        if ctx.finetuning_type not in ("full", "lora"):
            problems.append(("finetuning_type", "Megatron Bridge only supports `full` and `lora` finetuning.",
                             "use `finetuning_type: full` or `lora`"))
        if ctx.get("quantization_bit") is not None:
            problems.append(("quantization_bit", "Quantized models are not supported with Megatron Bridge.",
                             "remove `quantization_bit`"))
        if ctx.get("deepspeed") is not None:
            problems.append(("deepspeed", "Megatron Bridge is incompatible with DeepSpeed.",
                             "remove `deepspeed`: Megatron Bridge does its own parallelism"))
        for key, text, hint in problems:
            value = ctx.get(key)
            shown = f"`{key}: {value}`" if isinstance(value, str) else f"`{key}`"
            yield Finding(key=key, message=f"{shown} with Megatron Bridge: " + _stops_lf(text), hint=hint)
        if ctx.gpus is None:
            return
        sizes = [int_value(ctx, k) for k in _MB_SIZES]
        if any(s is None or s < 1 for s in sizes):
            return  # TRAIN012 reports bad sizes
        product = sizes[0] * sizes[1] * sizes[2] * sizes[3]  # type: ignore[operator]
        world = ctx.world_size
        if product > world or world % product:
            text = (f"Total Megatron Bridge parallel size ({product}) exceeds `world_size` ({world})." if product > world
                    else f"Total Megatron Bridge parallel size ({product}) must divide `world_size` ({world}).")
            yield Finding(
                key=next((k for k in _MB_SIZES if ctx.has(k)), "tensor_model_parallel_size"),
                also=_MB_SIZES,
                message=f"TP × PP × EP × CP = {product} with {world} GPUs: " + _stops_lf(text),
                hint=f"choose parallel sizes whose product divides {world}",
            )


def _stops_lf(text: str) -> str:
    return f'LLaMA-Factory stops at start-up with "{text}"'
