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
from tuner.lint.rule import Finding, Rule, Severity, lf_stops

from tuner.config.versions import v

from ._lf_common import (
    eval_strategy_key,
    INTEGRATIONS_4,
    INTEGRATIONS_5,
    command,
    distributed,
    env_enabled,
    fsdp_enabled,
    int_value,
    keys_text,
    resolve_dir,
)


def _rejects(text: str) -> str:
    return f'transformers refuses the run at start-up: "{text}"'


def _strategy(ctx: Context, key: str) -> str | None:
    """A strategy's value; ``eval_strategy`` falls back to its old name ``evaluation_strategy``, which the
    transformers releases that accept it copy into ``eval_strategy`` in ``TrainingArguments.__post_init__``
    (where it is not accepted, KEY002 reports the name)."""
    v = ctx.get(eval_strategy_key(ctx) if key == "eval_strategy" else key)
    return v if isinstance(v, str) else None


def _steps(ctx: Context, key: str) -> float | None:
    return ctx.number(key)


class EvalStepsRequired(Rule):
    """A ``steps`` evaluation or logging strategy with no step interval.

    With ``eval_strategy: steps`` and no ``eval_steps``, transformers falls back to ``logging_steps``; if that is 0
    it raises "evaluation strategy steps requires either non-zero --eval_steps or --logging_steps".
    ``logging_strategy: steps`` with ``logging_steps: 0`` raises "logging strategy steps requires non-zero
    --logging_steps" (transformers v4.57.1 ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``).

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
        if not ctx.is_train_command:
            return
        logging_steps = _steps(ctx, "logging_steps")
        eval_steps = _steps(ctx, "eval_steps")
        if _strategy(ctx, "eval_strategy") == "steps" and not eval_steps and logging_steps is not None and logging_steps <= 0:
            yield Finding(
                key="eval_steps",
                also=("eval_strategy",),
                message=f"`eval_strategy: steps` without `eval_steps`, and `logging_steps` is {logging_steps:g}: "
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
    must be an integer if bigger than 1: 50.5" (transformers v4.57.1 ``src/transformers/training_args.py``
    ``TrainingArguments.__post_init__``). Only checked when the matching strategy is ``steps``.

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
        if not ctx.is_train_command:
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
    (transformers v4.57.1 ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``).
    ``eval_strategy`` defaults to ``no``, so turning on ``load_best_model_at_end`` alone is enough to fail.

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
        if not ctx.is_train_command or not ctx.flag("load_best_model_at_end"):
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
    requires an eval strategy" (transformers v4.57.1 ``src/transformers/training_args.py``
    ``TrainingArguments.__post_init__``).

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
        if not ctx.is_train_command:
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
    (transformers v4.57.1 ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``; the test is
    ``num_workers == 0``).

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
        if not ctx.is_train_command or ctx.get("dataloader_prefetch_factor") is None:
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
    shard_grad_op`." (transformers v4.57.1 ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``).

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
        if not ctx.is_train_command:
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

    transformers raises "`torch_empty_cache_steps` must be an integer bigger than 0" (transformers v4.57.1
    ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``). Leave it unset to never empty the
    CUDA cache.

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
        if ctx.is_train_command and v is not None and v <= 0:
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
        if not ctx.is_train_command:
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
    empty. Please set `overwrite_output_dir`." (LLaMA-Factory v0.9.3 ``src/llamafactory/hparams/parser.py``
    ``get_train_args``). Re-running a finished config is the usual way to hit it (hiyouga/LlamaFactory#6288,
    #4612). The directory is looked up from where the run is launched.

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
    ``resume_from_checkpoint`` to the last checkpoint it finds ("Resuming training from …"; LLaMA-Factory
    v0.9.3 ``src/llamafactory/hparams/parser.py``). A re-run then continues the old run with its old optimizer
    state and schedule; if that run had finished, training ends immediately (hiyouga/LlamaFactory#2776, #7085).
    With LoRA PPO the resume is refused outright ("`resume_from_checkpoint` will be supported in the future
    version.").

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
    (LLaMA-Factory v0.9.5 ``src/llamafactory/hparams/evaluation_args.py``).

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
    """``USE_MEGATRON_BRIDGE=1`` selects the Megatron Bridge parser (``USE_MCA=1`` takes precedence over it).

    The parser exists only after v0.9.5 (the 0.9.6 development head); earlier releases ignore the variable."""
    return (
        ctx.lf > v("0.9.5")
        and ctx.is_train_command
        and env_enabled(ctx, "USE_MEGATRON_BRIDGE")
        and not env_enabled(ctx, "USE_MCA")
    )


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
    exist (LLaMA-Factory ``src/llamafactory/hparams/megatron_bridge_args.py``, after v0.9.5). Checked only for a
    target after 0.9.5 and when the environment (``--env`` or the shell) sets ``USE_MEGATRON_BRIDGE``.

    Bad:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
    # env: USE_MEGATRON_BRIDGE=1
    finetuning_type: full
    sequence_parallel: true
    tensor_model_parallel_size: 1
    ```

    Good:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
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
                    message=f"`{key}: {v}`: " + lf_stops(f"`{key}` must be >= 1{when}."),
                    hint=f"use a positive `{key}`" + (", or remove it" if when else " (1 means no parallelism)"),
                )
        tp = int_value(ctx, "tensor_model_parallel_size")
        if ctx.flag("sequence_parallel") and tp is not None and tp <= 1:
            yield Finding(
                key="sequence_parallel",
                also=("tensor_model_parallel_size",),
                message="`sequence_parallel` without tensor parallelism: "
                + lf_stops("`sequence_parallel` requires `tensor_model_parallel_size` > 1."),
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
    (4)."; LLaMA-Factory ``src/llamafactory/hparams/parser.py``). Checked only with ``USE_MEGATRON_BRIDGE`` set;
    the world size only when the GPU count is known.

    Bad:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
    # env: USE_MEGATRON_BRIDGE=1
    stage: dpo
    finetuning_type: full
    ```

    Good:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
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
            yield Finding(key=key, message=f"{shown} with Megatron Bridge: " + lf_stops(text), hint=hint)
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
                message=f"TP × PP × EP × CP = {product} with {world} GPUs: " + lf_stops(text),
                hint=f"choose parallel sizes whose product divides {world}",
            )


# -- transformers' Trainer set-up: refusals that depend only on the arguments --------------------------------------
_T4_ARGS = "transformers v4.57.1 ``src/transformers/training_args.py``"
_T4_TRAINER = "transformers v4.57.1 ``src/transformers/trainer.py``"


def _deepspeed_on(ctx: Context) -> bool:
    """DeepSpeed from the YAML's ``deepspeed`` or from an Accelerate launch (``ACCELERATE_USE_DEEPSPEED``)."""
    return ctx.get("deepspeed") not in (None, "") or env_enabled(ctx, "ACCELERATE_USE_DEEPSPEED")


def _from_json_text(value: Any) -> Any:
    """What ``TrainingArguments.__post_init__`` makes of strings inside a dict given as JSON text: ``"true"``
    and ``"false"`` become booleans, digit strings numbers (transformers' ``_convert_str_dict``)."""
    if isinstance(value, dict):
        return {k: _from_json_text(v) for k, v in value.items()}
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value.isdigit():
            return int(value)
        if value.replace(".", "", 1).isdigit():
            return float(value)
    return value


def _dict_arg(ctx: Context, key: str) -> dict[str, Any] | None:
    """A dict-valued training argument as transformers reads it: a mapping, or JSON text starting with ``{``.

    None when unset, when it names a file (transformers reads that on the cluster) or when the JSON is broken
    (TRAIN027 reports that).
    """
    value = ctx.get(key)
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return None
        return _from_json_text(loaded) if isinstance(loaded, dict) else None
    return None


def _fsdp_config(ctx: Context) -> dict[str, Any]:
    """``fsdp_config`` with the ``fsdp_`` prefixes dropped, as ``TrainingArguments`` keeps it; {} when unknown."""
    cfg = _dict_arg(ctx, "fsdp_config") or {}
    return {(k[5:] if isinstance(k, str) and k.startswith("fsdp_") else k): v for k, v in cfg.items()}


def _metric_for_best_model(ctx: Context) -> str | None:
    """``metric_for_best_model`` after ``__post_init__``: ``loss`` when unset and the best model is reloaded at the
    end or the scheduler reacts to evaluation (``reduce_lr_on_plateau``; ``greedy`` too in transformers 5)."""
    metric = ctx.get("metric_for_best_model")
    if metric is not None:
        return str(metric)
    plateau = {"reduce_lr_on_plateau"} | ({"greedy"} if ctx.transformers >= v("5.0") else set())
    if ctx.flag("load_best_model_at_end") or ctx.get("lr_scheduler_type") in plateau:
        return "loss"
    return None


def _sharded_wrapper(ctx: Context) -> str | None:
    """The name transformers gives the wrapper in its messages: ``DeepSpeed`` first, then ``FSDP``."""
    if _deepspeed_on(ctx):
        return "DeepSpeed"
    if fsdp_enabled(ctx):
        return "FSDP"
    return None


class SaveOnlyModelLoadBest(Rule):
    """``save_only_model`` with ``load_best_model_at_end`` under DeepSpeed or FSDP.

    Reloading the best checkpoint under DeepSpeed or FSDP needs the wrapper's own state, which
    ``save_only_model`` leaves out of every checkpoint. transformers refuses the combination when the trainer is
    created: "DeepSpeed can't be used with `save_only_model` along with `load_best_model_at_end`." (the same with
    FSDP; transformers v4.57.1 and v5.x ``src/transformers/trainer.py`` ``create_accelerator_and_postprocess``).
    For the same reason ``save_only_model`` is refused when FSDP saves sharded state dicts
    (``FSDP_STATE_DICT_TYPE=SHARDED_STATE_DICT`` in the launch environment): "save_only_model option is not
    compatible with FSDP state dict type 'SHARDED_STATE_DICT'".

    Bad:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    deepspeed: ds_z3.json
    save_only_model: true
    load_best_model_at_end: true
    eval_strategy: steps
    val_size: 0.1
    ```

    Good:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    deepspeed: ds_z3.json
    load_best_model_at_end: true
    eval_strategy: steps
    val_size: 0.1
    ```
    """

    code = "TRAIN014"
    name = "save-only-model-load-best"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.flag("save_only_model"):
            return
        if fsdp_enabled(ctx) and "SHARDED_STATE_DICT" in str(ctx.options.env.get("FSDP_STATE_DICT_TYPE", "")).upper():
            yield Finding(
                key="save_only_model",
                message="`save_only_model` with FSDP saving sharded state dicts (FSDP_STATE_DICT_TYPE="
                f"{ctx.options.env.get('FSDP_STATE_DICT_TYPE')}): "
                + _rejects("save_only_model option is not compatible with FSDP state dict type 'SHARDED_STATE_DICT'"),
                hint="remove `save_only_model`, or save full state dicts (FSDP_STATE_DICT_TYPE=FULL_STATE_DICT)",
            )
        if not ctx.flag("load_best_model_at_end"):
            return
        if ctx.stage in ("rm", "ppo"):
            return  # LLaMA-Factory refuses load_best_model_at_end for these stages first (STAGE007)
        wrapper = _sharded_wrapper(ctx)
        if wrapper is None:
            return
        where = "`deepspeed`" if wrapper == "DeepSpeed" and ctx.has("deepspeed") else (
            "`fsdp`" if wrapper == "FSDP" and ctx.fsdp else "the launch environment")
        yield Finding(
            key="save_only_model",
            also=("load_best_model_at_end",),
            message=f"`save_only_model` with `load_best_model_at_end` under {wrapper} (from {where}): "
            + _rejects(f"{wrapper} can't be used with `save_only_model` along with `load_best_model_at_end`."),
            hint="remove `save_only_model` (checkpoints then keep the optimizer state the reload needs), or turn "
            "`load_best_model_at_end` off",
            # Unsafe: checkpoints grow by the optimizer state.
            fix=remove_key(ctx, "save_only_model", "remove `save_only_model`", safe=False),
        )


class SaveStrategyBest(Rule):
    """``save_strategy: best`` without a metric to judge by, or without evaluation.

    ``best`` saves a checkpoint after an evaluation that improves ``metric_for_best_model``. Without that metric
    (it defaults to ``loss`` only with ``load_best_model_at_end`` or a plateau scheduler) transformers refuses the
    trainer: "`args.metric_for_best_model` must be provided when using 'best' save_strategy or if
    `args.load_best_model_at_end` is set to `True`." (transformers v4.57.1 ``src/transformers/trainer.py``
    ``Trainer.__init__``; ``Trainer._validate_args`` in 5.x). With ``eval_strategy: no`` nothing is ever evaluated,
    so no checkpoint is ever written (``Trainer._maybe_log_save_evaluate``).

    Bad:

    ```yaml
    save_strategy: best
    eval_strategy: steps
    eval_steps: 200
    val_size: 0.1
    ```

    Good:

    ```yaml
    save_strategy: best
    metric_for_best_model: eval_loss
    eval_strategy: steps
    eval_steps: 200
    val_size: 0.1
    ```
    """

    code = "TRAIN015"
    name = "save-strategy-best"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.get("save_strategy") != "best":
            return
        if _metric_for_best_model(ctx) is None:
            yield Finding(
                key="save_strategy",
                also=("metric_for_best_model",),
                message="`save_strategy: best` without `metric_for_best_model`: "
                + _rejects("`args.metric_for_best_model` must be provided when using 'best' save_strategy or if "
                           "`args.load_best_model_at_end` is set to `True`."),
                hint="set `metric_for_best_model` (e.g. `eval_loss`)",
                fix=set_key(ctx, "metric_for_best_model", "eval_loss", "set `metric_for_best_model: eval_loss`",
                            after="save_strategy", safe=False),
            )
        if _strategy(ctx, "eval_strategy") == "no" and ctx.is_training:
            yield Finding(
                key="save_strategy",
                also=("eval_strategy",),
                severity=Severity.WARNING,
                message="`save_strategy: best` with `eval_strategy: no`"
                + ("" if ctx.has("eval_strategy") else " (the default)")
                + ": checkpoints are saved only after an evaluation that improves the metric, so none is ever saved",
                hint="set `eval_strategy: steps` (with `eval_steps` and evaluation data), or use `save_strategy: steps`",
            )


class AutoFindBatchSizeZero3(Rule):
    """``auto_find_batch_size`` under DeepSpeed ZeRO-3.

    transformers cannot rebuild a ZeRO-3 engine with a smaller batch, and refuses at start-up:
    "`auto_find_batch_size` isn't supported yet with DeepSpeed Zero-3. Please consider using Zero-2, Zero-1, or
    FSDP" (transformers v4.57.1 and v5.x ``src/transformers/trainer.py`` ``create_accelerator_and_postprocess``).

    Bad:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    deepspeed: ds_z3.json
    auto_find_batch_size: true
    ```

    Good:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    deepspeed: ds_z3.json
    per_device_train_batch_size: 2
    ```
    """

    code = "TRAIN016"
    name = "auto-find-batch-size-zero3"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.flag("auto_find_batch_size") and ctx.zero3:
            yield Finding(
                key="auto_find_batch_size",
                also=("deepspeed",),
                message="`auto_find_batch_size` with DeepSpeed ZeRO-3: "
                + _rejects("`auto_find_batch_size` isn't supported yet with DeepSpeed Zero-3."),
                hint="remove `auto_find_batch_size` and set `per_device_train_batch_size`, or use ZeRO-2",
                # The run cannot start with it; without it, it runs with the stated batch size.
                fix=remove_key(ctx, "auto_find_batch_size", "remove `auto_find_batch_size`"),
            )


class FSDPLaunch(Rule):
    """``fsdp`` together with ``deepspeed``, or ``fsdp`` in a run that is not distributed.

    transformers wraps the model in one of them, and FSDP needs a process group: "Using --fsdp xxx together with
    --deepspeed is not possible, deactivate one of those flags." and "Using fsdp only works in distributed
    training." (transformers v4.57.1 and v5.x ``src/transformers/trainer.py`` ``Trainer.__init__``). A run is
    distributed when ``llamafactory-cli`` launches it with torchrun: on more than one GPU, or with
    ``FORCE_TORCHRUN=1``; the second check needs the GPU count (``--gpus``).

    Bad:

    ```yaml
    # ds_z3.json: {"zero_optimization": {"stage": 3}}
    deepspeed: ds_z3.json
    fsdp: full_shard auto_wrap
    ```

    Good:

    ```yaml
    fsdp: full_shard auto_wrap
    ```
    """

    code = "TRAIN017"
    name = "fsdp-launch"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.fsdp:
            return
        if ctx.get("deepspeed") not in (None, ""):
            yield Finding(
                key="fsdp",
                also=("deepspeed",),
                message="`fsdp` together with `deepspeed`: "
                + _rejects("Using --fsdp xxx together with --deepspeed is not possible, deactivate one of those flags."),
                hint="keep one sharding backend: remove `fsdp` or `deepspeed`",
            )
        elif distributed(ctx) is False and not _fsdp_config(ctx).get("xla"):
            yield Finding(
                key="fsdp",
                message=f"`fsdp` on {ctx.world_size} GPU without torchrun: "
                + _rejects("Using fsdp only works in distributed training."),
                hint="run on several GPUs, or set FORCE_TORCHRUN=1 so that llamafactory-cli launches torchrun",
            )


class FSDPConfigConflicts(Rule):
    """``fsdp_config`` settings that transformers refuses together.

    With ``fsdp`` on, transformers raises "`min_num_params` and `transformer_layer_cls_to_wrap` are mutually
    exclusive." (two auto-wrap policies), "`sync_module_states` must be `"True"` if `cpu_ram_efficient_loading` is
    `"True"`" (the other ranks would keep random weights) (transformers v4.57.1 ``training_args.py``
    ``TrainingArguments.__post_init__``; ``_process_fsdp_args`` in 5.x), and "The activation_checkpointing in FSDP
    config and the gradient_checkpointing in training arg can't be set to True simultaneously." (``trainer.py``
    ``create_accelerator_and_postprocess``). Only an inline ``fsdp_config`` (a mapping or JSON text) is read; a
    file name is read on the cluster.

    Bad:

    ```yaml
    fsdp: full_shard auto_wrap
    fsdp_config:
      min_num_params: 100000000
      transformer_layer_cls_to_wrap: LlamaDecoderLayer
    ```

    Good:

    ```yaml
    fsdp: full_shard auto_wrap
    fsdp_config:
      transformer_layer_cls_to_wrap: LlamaDecoderLayer
    ```
    """

    code = "TRAIN018"
    name = "fsdp-config-conflicts"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        cfg = _fsdp_config(ctx)
        where = "fsdp_config" if ctx.has("fsdp_config") else None
        if ctx.fsdp:
            min_params = [p for p in (cfg.get("min_num_params"), ctx.get("fsdp_min_num_params") if ctx.transformers < v("5.0") else None)
                          if isinstance(p, (int, float)) and not isinstance(p, bool)]
            wrap = cfg.get("transformer_layer_cls_to_wrap")
            if wrap is None and ctx.transformers < v("5.0"):
                wrap = ctx.get("fsdp_transformer_layer_cls_to_wrap")
            if min_params and max(min_params) > 0 and wrap is not None:
                yield Finding(
                    key=where or "fsdp_min_num_params",
                    also=("fsdp_transformer_layer_cls_to_wrap", "fsdp"),
                    message="FSDP auto-wraps by parameter count (`min_num_params`) and by layer class "
                    "(`transformer_layer_cls_to_wrap`) at once: "
                    + _rejects("`min_num_params` and `transformer_layer_cls_to_wrap` are mutually exclusive."),
                    hint="keep `transformer_layer_cls_to_wrap` (wrap each decoder layer) and drop `min_num_params`",
                )
            sync = str(cfg.get("sync_module_states", "true")).lower()
            low_ram = str(cfg.get("cpu_ram_efficient_loading", "false")).lower()
            if sync == "false" and low_ram == "true":
                yield Finding(
                    key="fsdp_config",
                    message="`fsdp_config` loads the weights on one rank only (`cpu_ram_efficient_loading`) without "
                    "broadcasting them (`sync_module_states: false`): "
                    + _rejects('`sync_module_states` must be `"True"` if `cpu_ram_efficient_loading` is `"True"`'),
                    hint="set `sync_module_states: true` in `fsdp_config`",
                )
        if (fsdp_enabled(ctx) and not ctx.flag("use_kt") and cfg.get("activation_checkpointing") is True
                and ctx.flag("gradient_checkpointing")):
            yield Finding(
                key="gradient_checkpointing",
                also=("fsdp_config",),
                message="`gradient_checkpointing: true` with FSDP's `activation_checkpointing` in `fsdp_config`: "
                + _rejects("The activation_checkpointing in FSDP config and the gradient_checkpointing in training "
                           "arg can't be set to True simultaneously."),
                hint="remove `gradient_checkpointing` and let FSDP checkpoint activations",
            )


_GC_KWARGS_READ = v("5.9")  # from 5.9 on `gradient_checkpointing` is an alias of `activation_checkpointing`


class GradientCheckpointingOverride(Rule):
    """transformers' ``gradient_checkpointing`` arguments in a LLaMA-Factory config.

    LLaMA-Factory turns gradient checkpointing on itself (unless ``disable_gradient_checkpointing``), with
    ``use_reentrant_gc`` (``model/model_utils/checkpointing.py`` ``prepare_model_for_training``). transformers'
    own ``gradient_checkpointing: true`` makes the trainer call ``gradient_checkpointing_enable`` again when
    training starts, with ``gradient_checkpointing_kwargs`` (transformers v4.57.1 ``trainer.py``
    ``_inner_training_loop``): it checkpoints even with ``disable_gradient_checkpointing: true``, and with no
    kwargs LLaMA-Factory's method falls back to ``use_reentrant: True``, overriding ``use_reentrant_gc: false``.
    Without ``gradient_checkpointing: true``, ``gradient_checkpointing_kwargs`` is never read.

    Bad:

    ```yaml
    do_train: true
    gradient_checkpointing_kwargs:
      use_reentrant: false
    ```

    Good:

    ```yaml
    do_train: true
    use_reentrant_gc: false
    ```
    """

    code = "TRAIN019"
    name = "gradient-checkpointing-override"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.flag("use_kt") or ctx.transformers >= _GC_KWARGS_READ:
            return  # KTransformers: MODEL007
        gc = ctx.flag("gradient_checkpointing")
        kwargs = ctx.get("gradient_checkpointing_kwargs")
        if not gc:
            if kwargs is not None:
                yield Finding(
                    key="gradient_checkpointing_kwargs",
                    message="`gradient_checkpointing_kwargs` is never read: transformers uses it only with "
                    "`gradient_checkpointing: true`, and LLaMA-Factory checkpoints with `use_reentrant_gc`",
                    hint="use `use_reentrant_gc: false` for non-reentrant checkpointing",
                )
            return
        if ctx.flag("disable_gradient_checkpointing"):
            yield Finding(
                key="disable_gradient_checkpointing",
                also=("gradient_checkpointing",),
                message="`disable_gradient_checkpointing: true` has no effect with `gradient_checkpointing: true`: "
                "the trainer turns gradient checkpointing on when training starts",
                hint="remove `gradient_checkpointing` to train without checkpointing",
            )
        elif kwargs is None and ctx.has("use_reentrant_gc") and ctx.get("use_reentrant_gc") is False:
            yield Finding(
                key="use_reentrant_gc",
                also=("gradient_checkpointing",),
                message="`use_reentrant_gc: false` is overridden: with `gradient_checkpointing: true` the trainer "
                "enables checkpointing again when training starts, without kwargs, so LLaMA-Factory's method uses "
                "`use_reentrant: True`",
                hint="remove `gradient_checkpointing` (LLaMA-Factory already checkpoints)",
            )


#: ``AcceleratorConfig`` fields (transformers v4.57.1 and v5.8.0 ``src/transformers/trainer_pt_utils.py``).
_ACCELERATOR_CONFIG_FIELDS = ("split_batches", "dispatch_batches", "even_batches", "use_seedable_sampler",
                              "non_blocking", "gradient_accumulation_kwargs", "use_configured_state")


class AcceleratorGradAccumSteps(Rule):
    """An inline ``accelerator_config`` that transformers refuses: unknown fields, or ``num_steps`` twice.

    transformers builds ``AcceleratorConfig(**accelerator_config)`` in ``TrainingArguments.__post_init__``, so a
    field it does not have is a ``TypeError`` ("got an unexpected keyword argument"). With
    ``gradient_accumulation_kwargs.num_steps`` and ``gradient_accumulation_steps`` above 1 it cannot tell which is
    meant and refuses: "The `AcceleratorConfig`'s `num_steps` is set but `gradient_accumulation_steps` is greater
    than 1 in the passed `TrainingArguments`" (transformers v4.57.1 and v5.x ``src/transformers/trainer.py``
    ``create_accelerator_and_postprocess``). With ``gradient_accumulation_steps: 1`` ``num_steps`` replaces it.

    Bad:

    ```yaml
    gradient_accumulation_steps: 8
    accelerator_config:
      gradient_accumulation_kwargs:
        num_steps: 8
    ```

    Good:

    ```yaml
    gradient_accumulation_steps: 8
    ```
    """

    code = "TRAIN020"
    name = "accelerator-config"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        config = _dict_arg(ctx, "accelerator_config") or {}
        unknown = [str(k) for k in config if k not in _ACCELERATOR_CONFIG_FIELDS]
        if unknown:
            yield Finding(
                key="accelerator_config",
                message=f"`accelerator_config` has {keys_text(unknown)}, which `AcceleratorConfig` does not have: "
                f"transformers stops when it builds the training arguments (\"__init__() got an unexpected keyword "
                f"argument '{unknown[0]}'\")",
                hint=f"known fields: {', '.join(f'`{f}`' for f in _ACCELERATOR_CONFIG_FIELDS)}",
            )
        kwargs = config.get("gradient_accumulation_kwargs")
        ga = ctx.number("gradient_accumulation_steps")
        if isinstance(kwargs, dict) and "num_steps" in kwargs and ga is not None and ga > 1:
            yield Finding(
                key="accelerator_config",
                also=("gradient_accumulation_steps",),
                message=f"`accelerator_config` sets `num_steps` and `gradient_accumulation_steps` is {ga:g}: "
                + _rejects("The `AcceleratorConfig`'s `num_steps` is set but `gradient_accumulation_steps` is greater "
                           "than 1 in the passed `TrainingArguments`"),
                hint="set the accumulation once, with `gradient_accumulation_steps`",
            )


class EarlyStoppingNeedsEval(Rule):
    """``early_stopping_steps`` without evaluation or without a metric.

    LLaMA-Factory adds transformers' ``EarlyStoppingCallback`` (``train/tuner.py``), which asserts when training
    starts: "EarlyStoppingCallback requires IntervalStrategy of steps or epoch" and "EarlyStoppingCallback requires
    metric_for_best_model to be defined" (transformers v4.57.1 and v5.x ``src/transformers/trainer_callback.py``
    ``EarlyStoppingCallback.on_train_begin``). ``metric_for_best_model`` defaults to ``loss`` only with
    ``load_best_model_at_end`` or a plateau scheduler.

    Bad:

    ```yaml
    do_train: true
    early_stopping_steps: 3
    ```

    Good:

    ```yaml
    do_train: true
    early_stopping_steps: 3
    eval_strategy: steps
    eval_steps: 200
    val_size: 0.1
    metric_for_best_model: eval_loss
    ```
    """

    code = "TRAIN021"
    name = "early-stopping-needs-eval"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.get("early_stopping_steps") is None:
            return
        if _strategy(ctx, "eval_strategy") == "no":
            yield Finding(
                key="early_stopping_steps",
                also=("eval_strategy",),
                message="`early_stopping_steps` without evaluation (`eval_strategy: no`): the early-stopping callback "
                'stops the run when training starts ("EarlyStoppingCallback requires IntervalStrategy of steps or '
                'epoch")',
                hint="set `eval_strategy: steps` (with `eval_steps` and evaluation data), or remove `early_stopping_steps`",
            )
        if _metric_for_best_model(ctx) is None:
            yield Finding(
                key="early_stopping_steps",
                also=("metric_for_best_model",),
                message="`early_stopping_steps` without `metric_for_best_model`: the early-stopping callback stops "
                'the run when training starts ("EarlyStoppingCallback requires metric_for_best_model to be defined")',
                hint="set `metric_for_best_model: eval_loss` (or `load_best_model_at_end: true`)",
            )


#: Keyword arguments each scheduler accepts from ``lr_scheduler_kwargs`` (transformers ``optimization.py``: the
#: schedule function's parameters, less those ``get_scheduler`` passes itself). None: the kwargs are passed on
#: unchecked (torch's ``ReduceLROnPlateau``); an empty tuple with ``_IGNORES_KWARGS``: they are never passed.
_SCHEDULER_KWARGS: dict[str, tuple[str, ...] | None] = {
    "linear": ("last_epoch",),
    "cosine": ("num_cycles", "last_epoch"),
    "cosine_with_restarts": ("num_cycles", "last_epoch"),
    "polynomial": ("lr_end", "power", "last_epoch"),
    "inverse_sqrt": ("timescale", "last_epoch"),
    "cosine_with_min_lr": ("num_cycles", "last_epoch", "min_lr", "min_lr_rate"),
    "cosine_warmup_with_min_lr": ("num_cycles", "last_epoch", "min_lr", "min_lr_rate", "warmup_lr_rate"),
    "warmup_stable_decay": ("num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio",
                            "num_cycles", "last_epoch"),
    "reduce_lr_on_plateau": None,
    "greedy": None,
}
_SCHEDULER_FUNCTIONS = {
    "linear": "get_linear_schedule_with_warmup",
    "cosine": "get_cosine_schedule_with_warmup",
    "cosine_with_restarts": "get_cosine_with_hard_restarts_schedule_with_warmup",
    "polynomial": "get_polynomial_decay_schedule_with_warmup",
    "inverse_sqrt": "get_inverse_sqrt_schedule",
    "cosine_with_min_lr": "get_cosine_with_min_lr_schedule_with_warmup",
    "cosine_warmup_with_min_lr": "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
    "warmup_stable_decay": "get_wsd_schedule",
}
_WSD_SHAPES = ("linear", "cosine", "1-sqrt")


def _ignores_kwargs(ctx: Context, scheduler: str) -> bool:
    """``get_scheduler`` returns these schedules before it looks at ``scheduler_specific_kwargs``."""
    return scheduler in ("constant", "constant_with_warmup") or (
        scheduler == "inverse_sqrt" and ctx.transformers < v("5.0"))


class SchedulerKwargs(Rule):
    """``lr_scheduler_kwargs`` that the chosen ``lr_scheduler_type`` refuses, needs, or ignores.

    The kwargs go to the schedule function when the trainer creates the scheduler, before the first step
    (transformers v4.57.1 and v5.x ``src/transformers/optimization.py`` ``get_scheduler``): a name the function
    does not take is a ``TypeError`` ("got an unexpected keyword argument 'min_lr'", a common slip with
    ``cosine``); ``cosine_with_min_lr`` needs exactly one of ``min_lr`` and ``min_lr_rate`` ("One of min_lr or
    min_lr_rate should be set through the `lr_scheduler_kwargs`"); ``polynomial`` needs ``lr_end`` (default
    1e-7) below ``learning_rate``; ``warmup_stable_decay`` needs ``num_decay_steps`` unless LLaMA-Factory (0.9.3
    on, ``create_custom_scheduler``) fills it in. ``constant``, ``constant_with_warmup`` (and ``inverse_sqrt`` in
    transformers 4) never read the kwargs.

    Bad:

    ```yaml
    do_train: true
    lr_scheduler_type: cosine
    lr_scheduler_kwargs:
      min_lr: 1.0e-6
    ```

    Good:

    ```yaml
    do_train: true
    lr_scheduler_type: cosine_with_min_lr
    lr_scheduler_kwargs:
      min_lr: 1.0e-6
    ```
    """

    code = "TRAIN022"
    name = "scheduler-kwargs"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training:
            return
        scheduler = ctx.get("lr_scheduler_type")
        if not isinstance(scheduler, str):
            return
        if ctx.deepspeed is not None and "scheduler" in ctx.deepspeed.data:
            return  # DeepSpeed builds its own scheduler from the JSON
        raw = ctx.get("lr_scheduler_kwargs")
        kwargs = _dict_arg(ctx, "lr_scheduler_kwargs")
        if kwargs is None:
            if raw is not None:
                return  # JSON that does not parse, or not a mapping: TRAIN027
            kwargs = {}
        where = "lr_scheduler_kwargs" if ctx.has("lr_scheduler_kwargs") else "lr_scheduler_type"
        if _ignores_kwargs(ctx, scheduler):
            if kwargs:
                yield Finding(
                    key=where,
                    also=("lr_scheduler_type",),
                    severity=Severity.WARNING,
                    message=f"`lr_scheduler_kwargs` is ignored: transformers builds the `{scheduler}` schedule "
                    "without them",
                    hint="remove `lr_scheduler_kwargs`, or pick a scheduler that reads them",
                )
            return
        accepted = _SCHEDULER_KWARGS.get(scheduler)
        if accepted is None:
            return
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            func = _SCHEDULER_FUNCTIONS[scheduler]
            hint = f"`{scheduler}` takes: {', '.join(f'`{a}`' for a in accepted)}"
            fix = None
            if scheduler == "cosine" and set(unknown) <= {"min_lr", "min_lr_rate"} and len(kwargs) == 1:
                hint = "use `lr_scheduler_type: cosine_with_min_lr` for a floor under the cosine"
                fix = set_key(ctx, "lr_scheduler_type", "cosine_with_min_lr", "set `lr_scheduler_type: cosine_with_min_lr`",
                              after=where, safe=False)
            yield Finding(
                key=where,
                also=("lr_scheduler_type",),
                message=f"`lr_scheduler_kwargs` has {keys_text(unknown)}, which `{scheduler}` does not take: the "
                f"trainer stops when it creates the scheduler (\"{func}() got an unexpected keyword argument "
                f"'{unknown[0]}'\")",
                hint=hint,
                fix=fix,
            )
            return
        if scheduler in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
            given = [k for k in ("min_lr", "min_lr_rate") if kwargs.get(k) is not None]
            if len(given) != 1:
                text = ("Only one of min_lr or min_lr_rate should be set" if given
                        else "One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`")
                yield Finding(
                    key=where,
                    also=("lr_scheduler_type",),
                    message=f"`lr_scheduler_type: {scheduler}` with "
                    + ("both `min_lr` and `min_lr_rate`" if given else "neither `min_lr` nor `min_lr_rate`")
                    + f": the trainer stops when it creates the scheduler (\"{text}\")",
                    hint="set one of them in `lr_scheduler_kwargs`, e.g. `min_lr_rate: 0.1`",
                )
        elif scheduler == "polynomial":
            lr, lr_end = ctx.number("learning_rate"), kwargs.get("lr_end", 1e-7)
            if lr is not None and lr > 0 and isinstance(lr_end, (int, float)) and not lr > lr_end:
                yield Finding(
                    key="learning_rate" if ctx.has("learning_rate") else where,
                    also=("lr_scheduler_type", "lr_scheduler_kwargs"),
                    message=f"`lr_scheduler_type: polynomial` decays to `lr_end` ({lr_end:g}), which is not below "
                    f"`learning_rate` ({lr:g}): the trainer stops when it creates the scheduler "
                    f"(\"lr_end ({lr_end:g}) must be smaller than initial lr ({lr:g})\")",
                    hint="set a smaller `lr_end` in `lr_scheduler_kwargs`",
                )
        elif scheduler == "warmup_stable_decay":
            if "num_decay_steps" not in kwargs and ctx.lf < v("0.9.3"):
                yield Finding(
                    key=where,
                    also=("lr_scheduler_type",),
                    message=f"`lr_scheduler_type: warmup_stable_decay` without `num_decay_steps`: LLaMA-Factory "
                    f"{ctx.lf} does not fill it in, so the trainer stops when it creates the scheduler "
                    "(\"get_wsd_schedule() missing 1 required positional argument: 'num_decay_steps'\")",
                    hint="set `num_decay_steps` in `lr_scheduler_kwargs`",
                )
            for shape in ("warmup_type", "decay_type"):
                value = kwargs.get(shape)
                if value is not None and value not in _WSD_SHAPES:
                    yield Finding(
                        key=where,
                        also=("lr_scheduler_type",),
                        message=f"`{shape}: {value}` in `lr_scheduler_kwargs`: the trainer stops when it creates the "
                        f"scheduler (\"Unknown {shape.split('_')[0]} type: {value}, expected 'linear', 'cosine' or "
                        "'1-sqrt'\")",
                        hint=f"use one of: {', '.join(f'`{s}`' for s in _WSD_SHAPES)}",
                    )


_LOW_RANK_OPTIMS = ("galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "apollo_adamw",
                    "apollo_adamw_layerwise")  # fmt: skip


class LowRankOptimArgs(Rule):
    """transformers' own GaLore/APOLLO optimizer (``optim: galore_*``/``apollo_*``) set up so that it refuses.

    These optimizers project the gradients of the modules named in ``optim_target_modules``; without it
    transformers raises "You need to define `optim_target_modules` to use galore_adamw optimizers". The layer-wise
    variants step each parameter as soon as its gradient exists: "Layerwise galore_adamw_layerwise does not support
    gradient accumulation!", and under torchrun "Layer-wise … does not support DDP at this time" (transformers
    v4.57.1 ``src/transformers/trainer.py`` ``get_optimizer_cls_and_kwargs``). LLaMA-Factory's own GaLore/APOLLO
    (``use_galore``, ``use_apollo``) is checked by the FT rules.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: full
    optim: galore_adamw
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: full
    optim: galore_adamw
    optim_target_modules: [attn, mlp]
    ```
    """

    code = "TRAIN023"
    name = "low-rank-optim-args"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        optim = ctx.get("optim")
        if not ctx.is_training or optim not in _LOW_RANK_OPTIMS or ctx.flag("use_galore") or ctx.flag("use_apollo"):
            return
        if ctx.get("optim_target_modules") is None:
            yield Finding(
                key="optim",
                also=("optim_target_modules",),
                message=f"`optim: {optim}` without `optim_target_modules`: the trainer stops when it creates the "
                f'optimizer ("You need to define `optim_target_modules` to use {optim} optimizers")',
                hint="set `optim_target_modules` (module name patterns such as `[attn, mlp]`, or `all-linear`)",
            )
        if not optim.endswith("layerwise"):
            return
        ga = ctx.number("gradient_accumulation_steps")
        if ga is not None and ga != 1:
            yield Finding(
                key="gradient_accumulation_steps",
                also=("optim",),
                message=f"`optim: {optim}` with `gradient_accumulation_steps: {ga:g}`: the trainer stops when it "
                f'creates the optimizer ("Layerwise {optim} does not support gradient accumulation!")',
                hint="set `gradient_accumulation_steps: 1`, or use the optimizer without `_layerwise`",
            )
        if distributed(ctx) and optim.startswith("galore"):
            yield Finding(
                key="optim",
                message=f"`optim: {optim}` in a distributed run: the trainer stops when it creates the optimizer "
                f'("Layer-wise {optim} does not support DDP at this time")',
                hint="use the optimizer without `_layerwise`, or train on one GPU",
            )


class GroupByLengthStreaming(Rule):
    """Length grouping with ``streaming: true``.

    A streamed dataset has no length to sort by. transformers 4 refuses it: "the `--group_by_length` option is only
    available for `Dataset`, not `IterableDataset`" (transformers v4.57.1 ``src/transformers/trainer.py``
    ``Trainer.__init__``); transformers 5 (``train_sampling_strategy: group_by_length``) only logs that the option
    is ignored (``Trainer._validate_args``).

    Bad:

    ```yaml
    # cfglint --transformers 4
    do_train: true
    streaming: true
    max_steps: 1000
    group_by_length: true
    ```

    Good:

    ```yaml
    # cfglint --transformers 4
    do_train: true
    streaming: true
    max_steps: 1000
    ```
    """

    code = "TRAIN024"
    name = "group-by-length-streaming"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or not ctx.flag("streaming"):
            return
        if ctx.transformers < v("5.0"):
            if ctx.flag("group_by_length"):
                yield Finding(
                    key="group_by_length",
                    also=("streaming",),
                    message="`group_by_length` with `streaming: true`: "
                    + _rejects("the `--group_by_length` option is only available for `Dataset`, not `IterableDataset`"),
                    hint="remove `group_by_length`: a streamed dataset cannot be sorted by length",
                    fix=remove_key(ctx, "group_by_length", "remove `group_by_length`"),
                )
        elif ctx.get("train_sampling_strategy") == "group_by_length":
            yield Finding(
                key="train_sampling_strategy",
                also=("streaming",),
                severity=Severity.WARNING,
                message="`train_sampling_strategy: group_by_length` with `streaming: true` is ignored: a streamed "
                "dataset cannot be sampled by length",
                hint="remove `train_sampling_strategy`",
                fix=remove_key(ctx, "train_sampling_strategy", "remove `train_sampling_strategy`"),
            )


class ApexBF16(Rule):
    """``bf16`` with ``half_precision_backend: apex`` (transformers 4).

    Apex AMP has no bfloat16 mode: " `--half_precision_backend apex`: GPU bf16 is not supported by apex." (transformers
    v4.57.1 ``src/transformers/training_args.py`` ``TrainingArguments.__post_init__``). transformers 5 has no
    ``half_precision_backend`` argument.

    Bad:

    ```yaml
    # cfglint --transformers 4
    bf16: true
    half_precision_backend: apex
    ```

    Good:

    ```yaml
    # cfglint --transformers 4
    bf16: true
    ```
    """

    code = "TRAIN025"
    name = "apex-bf16"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.transformers >= v("5.0"):
            return
        if ctx.flag("bf16") and ctx.get("half_precision_backend") == "apex":
            yield Finding(
                key="half_precision_backend",
                also=("bf16",),
                message="`half_precision_backend: apex` with `bf16`: "
                + _rejects(" `--half_precision_backend apex`: GPU bf16 is not supported by apex."),
                hint="remove `half_precision_backend` (the default uses PyTorch AMP, which supports bf16)",
                fix=remove_key(ctx, "half_precision_backend", "remove `half_precision_backend`"),
            )


class ResumeFromCheckpointTrue(Rule):
    """``resume_from_checkpoint: true``.

    ``true`` asks transformers for the last ``checkpoint-N`` in ``output_dir`` and stops the run when there is none:
    "No valid checkpoint found in output directory (…)" (transformers v4.57.1 ``src/transformers/trainer.py``
    ``Trainer.train``). LLaMA-Factory already resumes from that checkpoint by itself when
    ``resume_from_checkpoint`` is unset and ``overwrite_output_dir`` is off (LLaMA-Factory v0.8.3–v0.9.5
    ``src/llamafactory/hparams/parser.py`` ``get_train_args``), so ``true`` adds nothing but the failure on a fresh
    ``output_dir``. With ``overwrite_output_dir: true`` it is the only way to resume, and it still fails on a fresh
    ``output_dir``. Whether the directory on the cluster has a checkpoint is not known here; TRAIN009/TRAIN010 look
    at it when it is reachable from the launch directory.

    Bad:

    ```yaml
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    resume_from_checkpoint: true
    ```

    Good:

    ```yaml
    do_train: true
    output_dir: saves/llama3-8b/lora/sft
    ```
    """

    code = "TRAIN026"
    name = "resume-from-checkpoint-true"
    severity = Severity.WARNING
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.get("resume_from_checkpoint") is not True:
            return
        if ctx.stage in ("rm", "ppo"):
            return  # LLaMA-Factory drops or refuses resuming for these stages: LF015, LF016, STAGE013
        failure = 'transformers stops with "No valid checkpoint found in output directory"'
        if ctx.flag("overwrite_output_dir"):
            yield Finding(
                key="resume_from_checkpoint",
                also=("overwrite_output_dir",),
                message="`resume_from_checkpoint: true` resumes from the last `checkpoint-N` in `output_dir`; if "
                f"`output_dir` has none (a first run), {failure}",
                hint="for a first run remove `resume_from_checkpoint`; to resume, name the checkpoint directory",
            )
            return
        yield Finding(
            key="resume_from_checkpoint",
            message="`resume_from_checkpoint: true` is not needed: LLaMA-Factory resumes from the last "
            "`checkpoint-N` in `output_dir` by itself; with `true`, a fresh `output_dir` fails instead of starting "
            f"a new run ({failure})",
            hint="remove `resume_from_checkpoint`",
            # Equivalent whenever a checkpoint exists; a fresh run starts instead of failing.
            fix=remove_key(ctx, "resume_from_checkpoint", "remove `resume_from_checkpoint: true`"),
        )


_DICT_ARGS = ("accelerator_config", "fsdp_config", "gradient_checkpointing_kwargs", "lr_scheduler_kwargs")


class DictArgumentText(Rule):
    """A dict-valued training argument written as text that transformers cannot use.

    ``accelerator_config``, ``fsdp_config``, ``gradient_checkpointing_kwargs`` and ``lr_scheduler_kwargs`` may be
    given as JSON text: ``TrainingArguments.__post_init__`` parses every string that starts with ``{`` (transformers
    v4.57.1 and v5.x ``src/transformers/training_args.py``), so broken JSON stops the run at start-up. Other text
    is a file name for the first two; ``gradient_checkpointing_kwargs`` and ``lr_scheduler_kwargs`` are unpacked
    as keyword arguments (``**kwargs``), which a string cannot be ("argument after ** must be a mapping").

    Bad:

    ```yaml
    do_train: true
    lr_scheduler_type: cosine_with_min_lr
    lr_scheduler_kwargs: '{min_lr_rate: 0.1}'
    ```

    Good:

    ```yaml
    do_train: true
    lr_scheduler_type: cosine_with_min_lr
    lr_scheduler_kwargs: '{"min_lr_rate": 0.1}'
    ```
    """

    code = "TRAIN027"
    name = "dict-argument-text"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        for key in _DICT_ARGS:
            value = ctx.get(key)
            if not isinstance(value, str):
                continue
            if value.startswith("{"):
                try:
                    json.loads(value)
                except ValueError as exc:  # a JSONDecodeError, or an integer past Python's int-string limit
                    why = f"{exc.msg}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
                    yield Finding(
                        key=key,
                        message=f"`{key}` starts with `{{` but is not valid JSON ({why}): "
                        "transformers parses it when the training arguments are built and stops the run",
                        hint="quote the keys and strings with double quotes, or write the mapping as YAML",
                    )
                continue
            if key in ("accelerator_config", "fsdp_config") or not value.strip():
                continue
            if key == "gradient_checkpointing_kwargs" and not (ctx.is_training and ctx.flag("gradient_checkpointing")):
                continue  # never read (TRAIN019)
            if key == "lr_scheduler_kwargs" and (not ctx.is_training or _ignores_kwargs(ctx, str(ctx.get("lr_scheduler_type")))):
                continue
            yield Finding(
                key=key,
                message=f"`{key}: {value}` is text, not a mapping: transformers unpacks it as keyword arguments "
                'and stops ("argument after ** must be a mapping, not str")',
                hint=f"write `{key}` as a YAML mapping (`key: value` lines under it) or as JSON text starting with `{{`",
            )


class OptimArgsFormat(Rule):
    """``optim_args`` that is not a comma-separated list of ``key=value`` pairs.

    transformers splits ``optim_args`` on commas and each item on ``=`` when it creates the optimizer, for every
    ``optim`` (transformers v4.57.1 ``src/transformers/trainer.py`` ``get_optimizer_cls_and_kwargs``;
    ``trainer_optimizer.py`` ``_parse_optim_args`` in 5.x): an item without exactly one ``=`` stops the run with
    "ValueError: not enough values to unpack" (or "too many"). LLaMA-Factory's GaLore, APOLLO, LoRA+ and BAdam
    optimizers go through the same parsing; Adam-mini and Muon do not.

    Bad:

    ```yaml
    do_train: true
    optim_args: "use_kahan_summation: true"
    ```

    Good:

    ```yaml
    do_train: true
    optim_args: use_kahan_summation=true,momentum_dtype=float32
    ```
    """

    code = "TRAIN028"
    name = "optim-args-format"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        value = ctx.get("optim_args")
        if not ctx.is_training or not isinstance(value, str) or not value or ctx.flag("use_adam_mini") or ctx.flag("use_muon"):
            return
        bad = [item for item in value.replace(" ", "").split(",") if item.count("=") != 1]
        if bad:
            few = bad[0].count("=") == 0
            yield Finding(
                key="optim_args",
                message=f"`optim_args` item {bad[0]!r} is not `key=value`: the trainer stops when it creates the "
                f"optimizer (\"ValueError: {'not enough' if few else 'too many'} values to unpack (expected 2)\")",
                hint="write `optim_args` as `key=value` pairs separated by commas, without a trailing comma",
            )
