"""Training stages: what LLaMA-Factory allows, requires or ignores for ``pt``/``sft``/``rm``/``ppo``/``dpo``/``kto``.

Each rule mirrors a check of ``get_train_args`` (``hparams/parser.py``), of ``FinetuningArguments.__post_init__``
(``hparams/finetuning_args.py``) or of the PPO trainer, so a config that would stop at start-up is caught before
a GPU is allocated and a model is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator

from tuner.config.context import Context
from tuner.lint.fixes import insert_key, remove_key, set_key, yaml_scalar
from tuner.lint.rule import Edit, Finding, Fix, Rule, Severity, lf_stops

from ._lf_common import STAGE_ONLY_KEYS, adapters, adapters_mergeable, keys_text, report_to, val_size

_PPO_LOGGERS = ("wandb", "tensorboard", "trackio", "none")


class PPONeedsRewardModel(Rule):
    """``stage: ppo`` without ``reward_model``.

    PPO scores every generated response with a reward model; without one there is nothing to optimise.
    ``FinetuningArguments.__post_init__`` (``finetuning_args.py``) raises "`reward_model` is necessary for PPO
    training." for every command.

    Bad:

    ```yaml
    stage: ppo
    do_train: true
    finetuning_type: lora
    ```

    Good:

    ```yaml
    stage: ppo
    do_train: true
    finetuning_type: lora
    reward_model: saves/llama3-8b/lora/reward
    ```
    """

    code = "STAGE001"
    name = "ppo-needs-reward-model"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.stage == "ppo" and ctx.get("reward_model") in (None, ""):
            yield Finding(
                key="reward_model",
                also=("stage",),
                message="`stage: ppo` needs `reward_model`: " + lf_stops("`reward_model` is necessary for PPO training."),
                hint="train a reward model with `stage: rm` first and set `reward_model` to its output directory",
            )


class PPORewardModelType(Rule):
    """Freeze or full PPO with a LoRA reward model (``reward_model_type: lora``, the default).

    A LoRA reward model is loaded as a second adapter on the policy model, which only exists when the policy
    itself is trained with LoRA. ``finetuning_args.py`` raises "`reward_model_type` cannot be lora for
    Freeze/Full PPO training.".

    Bad:

    ```yaml
    stage: ppo
    finetuning_type: full
    reward_model: saves/llama3-8b/lora/reward
    ```

    Good:

    ```yaml
    stage: ppo
    finetuning_type: full
    reward_model: saves/llama3-8b/full/reward
    reward_model_type: full
    ```
    """

    code = "STAGE002"
    name = "ppo-reward-model-type"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.stage != "ppo" or ctx.get("reward_model_type") != "lora" or ctx.finetuning_type == "lora":
            return
        yield Finding(
            key="reward_model_type",
            also=("finetuning_type", "stage"),
            message=f"`finetuning_type: {ctx.finetuning_type}` PPO with `reward_model_type: lora`"
            f"{'' if ctx.has('reward_model_type') else ' (the default)'}: "
            + lf_stops("`reward_model_type` cannot be lora for Freeze/Full PPO training."),
            hint="merge the reward model and set `reward_model_type: full` (or `api` for a reward server), "
            "or train the policy with `finetuning_type: lora`",
        )


class PPORewardApiUrl(Rule):
    """``reward_model_type: api`` with a ``reward_model`` that is not an ``http(s)://`` URL.

    With ``api`` the reward model is a server that LLaMA-Factory posts responses to; ``create_reward_model``
    (``train/trainer_utils.py``) asserts ``reward_model.startswith("http")`` ("Please provide full url.") once the
    policy model has been loaded.

    Bad:

    ```yaml
    stage: ppo
    reward_model_type: api
    reward_model: localhost:8000/v1/score
    ```

    Good:

    ```yaml
    stage: ppo
    reward_model_type: api
    reward_model: http://localhost:8000/v1/score
    ```
    """

    code = "STAGE003"
    name = "ppo-reward-api-url"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        rm = ctx.get("reward_model")
        if ctx.stage != "ppo" or ctx.get("reward_model_type") != "api" or not isinstance(rm, str) or not rm:
            return
        if not rm.startswith("http"):
            yield Finding(
                key="reward_model",
                message=f"`reward_model: {rm}` is not a URL but `reward_model_type: api` posts to a reward server: "
                'LLaMA-Factory fails after loading the model with "Please provide full url."',
                hint="write the full URL, e.g. `http://host:port/...`, or use `reward_model_type: full|lora` for a "
                "local reward model",
            )


class DPOLabelSmoothing(Rule):
    """``dpo_label_smoothing`` with a ``pref_loss`` other than ``sigmoid``.

    Label smoothing (conservative DPO) is defined for the sigmoid loss only. ``finetuning_args.py`` raises
    "`dpo_label_smoothing` is only valid for sigmoid loss function.".

    Bad:

    ```yaml
    stage: dpo
    pref_loss: ipo
    dpo_label_smoothing: 0.1
    ```

    Good:

    ```yaml
    stage: dpo
    pref_loss: sigmoid
    dpo_label_smoothing: 0.1
    ```
    """

    code = "STAGE004"
    name = "dpo-label-smoothing-loss"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        smoothing = ctx.number("dpo_label_smoothing", 0.0) or 0.0
        loss = ctx.get("pref_loss")
        if ctx.stage != "dpo" or loss == "sigmoid" or smoothing <= 1e-6:
            return
        yield Finding(
            key="dpo_label_smoothing",
            also=("pref_loss",),
            message=f"`dpo_label_smoothing: {smoothing:g}` with `pref_loss: {loss}`: "
            + lf_stops("`dpo_label_smoothing` is only valid for sigmoid loss function."),
            hint="remove `dpo_label_smoothing`, or use `pref_loss: sigmoid`",
            fix=remove_key(ctx, "dpo_label_smoothing", "remove `dpo_label_smoothing`", safe=False),
        )


class SFTOnlyOptions(Rule):
    """``predict_with_generate``, ``neat_packing``, ``train_on_prompt`` or ``mask_history`` outside ``stage: sft``.

    These options shape supervised examples (prompt masking, packing with attention masks) or generate
    predictions, which only the SFT workflow does. ``get_train_args`` (``parser.py``) raises "`X` cannot be set as
    True except SFT.". For ``stage: pt``, packing is already on by default.

    Bad:

    ```yaml
    stage: dpo
    do_train: true
    train_on_prompt: true
    ```

    Good:

    ```yaml
    stage: dpo
    do_train: true
    ```
    """

    code = "STAGE005"
    name = "sft-only-options"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage == "sft":
            return
        for key in ("predict_with_generate", "neat_packing", "train_on_prompt", "mask_history"):
            if not ctx.flag(key):
                continue
            text = "`train_on_prompt` or `mask_history`" if key in ("train_on_prompt", "mask_history") else f"`{key}`"
            hint = f"remove `{key}`"
            if key == "neat_packing" and ctx.stage == "pt":
                hint += "; `stage: pt` packs sequences by default (`packing` unset means true)"
            yield Finding(
                key=key,
                also=("stage",),
                message=f"`{key}: true` with `stage: {ctx.stage}`: " + lf_stops(f"{text} cannot be set as True except SFT."),
                hint=hint,
                fix=remove_key(ctx, key, f"remove `{key}`", safe=False),
            )


class SFTPredictNeedsGenerate(Rule):
    """SFT with ``do_predict: true`` but without ``predict_with_generate``.

    Predictions are written by generating text; ``get_train_args`` raises "Please enable `predict_with_generate`
    to save model predictions.".

    Bad:

    ```yaml
    stage: sft
    do_predict: true
    eval_dataset: alpaca_en_demo
    ```

    Good:

    ```yaml
    stage: sft
    do_predict: true
    predict_with_generate: true
    eval_dataset: alpaca_en_demo
    ```
    """

    code = "STAGE006"
    name = "sft-predict-needs-generate"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "sft" or not ctx.flag("do_predict"):
            return
        if ctx.flag("predict_with_generate"):
            return
        fix = None
        if not ctx.zero3 and not ctx.flag("compute_accuracy"):  # otherwise the fix trades one error for another
            fix = set_key(ctx, "predict_with_generate", "true", "set `predict_with_generate: true`", after="do_predict")
        yield Finding(
            key="do_predict",
            also=("predict_with_generate",),
            message="`do_predict: true` without `predict_with_generate: true`: "
            + lf_stops("Please enable `predict_with_generate` to save model predictions."),
            hint="set `predict_with_generate: true`",
            fix=fix,
        )


class LoadBestModelRmPpo(Rule):
    """``load_best_model_at_end`` with ``stage: rm`` or ``stage: ppo``.

    The RM and PPO trainers save value heads next to the model, which the "best checkpoint" reload does not
    restore. ``get_train_args`` raises "RM and PPO stages do not support `load_best_model_at_end`.".

    Bad:

    ```yaml
    stage: rm
    do_train: true
    load_best_model_at_end: true
    ```

    Good:

    ```yaml
    stage: rm
    do_train: true
    ```
    """

    code = "STAGE007"
    name = "rm-ppo-load-best-model"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.stage in ("rm", "ppo") and ctx.flag("load_best_model_at_end"):
            yield Finding(
                key="load_best_model_at_end",
                also=("stage",),
                message=f"`load_best_model_at_end` with `stage: {ctx.stage}`: "
                + lf_stops("RM and PPO stages do not support `load_best_model_at_end`."),
                hint="remove `load_best_model_at_end` and pick the checkpoint from the evaluation logs",
                fix=remove_key(ctx, "load_best_model_at_end", "remove `load_best_model_at_end`", safe=False),
            )


class PPONeedsDoTrain(Rule):
    """``stage: ppo`` without ``do_train: true``.

    The PPO workflow only trains; ``get_train_args`` raises "PPO training does not support evaluation, use the SFT
    stage to evaluate models.".

    Bad:

    ```yaml
    stage: ppo
    reward_model: saves/llama3-8b/lora/reward
    ```

    Good:

    ```yaml
    stage: ppo
    do_train: true
    reward_model: saves/llama3-8b/lora/reward
    ```
    """

    code = "STAGE008"
    name = "ppo-needs-do-train"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "ppo" or ctx.flag("do_train"):
            return
        # Adding a forgotten `do_train` is what the user meant; flipping an explicit `false` is not ours to decide.
        fix = None
        if not ctx.has("do_train"):
            fix = set_key(ctx, "do_train", "true", "add `do_train: true`", after="stage")
        yield Finding(
            key="do_train",
            also=("stage",),
            message="`stage: ppo` without `do_train: true`: "
            + lf_stops("PPO training does not support evaluation, use the SFT stage to evaluate models."),
            hint="set `do_train: true`; evaluate the PPO model with `stage: sft` and `do_eval`/`do_predict`",
            fix=fix,
        )


class PPOShiftAttn(Rule):
    """``shift_attn`` (S²-Attn) with ``stage: ppo``.

    PPO generates with the policy model, which shifted short attention does not support. ``get_train_args``
    raises "PPO training is incompatible with S^2-Attn.".

    Bad:

    ```yaml
    stage: ppo
    shift_attn: true
    ```

    Good:

    ```yaml
    stage: ppo
    shift_attn: false
    ```
    """

    code = "STAGE009"
    name = "ppo-shift-attn"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.stage == "ppo" and ctx.flag("shift_attn"):
            yield Finding(
                key="shift_attn",
                also=("stage",),
                message="`shift_attn: true` with `stage: ppo`: " + lf_stops("PPO training is incompatible with S^2-Attn."),
                hint="remove `shift_attn`",
                fix=remove_key(ctx, "shift_attn", "remove `shift_attn`", safe=False),
            )


class PPOLoraRewardBackend(Rule):
    """PPO with a LoRA reward model on KTransformers (``use_kt``) or Unsloth (``use_unsloth``).

    A LoRA reward model is attached as a second adapter, which neither backend supports. ``get_train_args``
    raises "KTransformers does not support lora reward model." / "Unsloth does not support lora reward model.".

    Bad:

    ```yaml
    stage: ppo
    use_unsloth: true
    reward_model: saves/llama3-8b/lora/reward
    ```

    Good:

    ```yaml
    stage: ppo
    use_unsloth: true
    reward_model: saves/llama3-8b/full/reward
    reward_model_type: full
    ```
    """

    code = "STAGE010"
    name = "ppo-lora-reward-backend"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "ppo" or ctx.get("reward_model_type") != "lora":
            return
        for key, backend in (("use_kt", "KTransformers"), ("use_unsloth", "Unsloth")):
            if ctx.flag(key):
                yield Finding(
                    key=key,
                    also=("reward_model_type", "stage"),
                    message=f"`{key}: true` with a LoRA reward model (`reward_model_type: lora`): "
                    + lf_stops(f"{backend} does not support lora reward model."),
                    hint="merge the reward model and use `reward_model_type: full`, or turn off "
                    f"`{key}` for PPO",
                )


class PPOReportTo(Rule):
    """PPO logging to a tracker other than wandb, TensorBoard or Trackio.

    The PPO trainer drives its own loop and only knows those loggers. ``get_train_args`` raises "PPO only accepts
    wandb, tensorboard, or trackio logger.". In transformers 4 an unset ``report_to``
    means every tracker installed in the environment (#142), so a PPO run fails as soon as, say, mlflow or swanlab
    is installed; that case is a warning, since the linter cannot see the environment.

    Bad:

    ```yaml
    stage: ppo
    do_train: true
    report_to: mlflow
    ```

    Bad (a warning with transformers 4, where unset means every installed tracker):

    ```yaml
    # cfglint --transformers 4
    stage: ppo
    do_train: true
    ```

    Good:

    ```yaml
    stage: ppo
    do_train: true
    report_to: wandb
    ```
    """

    code = "STAGE011"
    name = "ppo-report-to"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "ppo":
            return
        loggers, everything = report_to(ctx)
        bad = [name for name in loggers if name not in _PPO_LOGGERS and "," not in name]  # TRAIN008: "a,b" strings
        if bad:
            yield Finding(
                key="report_to",
                message=f"`report_to` names {keys_text(bad)} with `stage: ppo`: "
                + lf_stops("PPO only accepts wandb, tensorboard, or trackio logger."),
                hint="use only `wandb`, `tensorboard` or `trackio` (or `none`)",
            )
        elif everything:
            written = ctx.has("report_to")
            yield Finding(
                key="report_to",
                also=("stage",),
                severity=Severity.WARNING,
                message=("`report_to: all`" if written else "`report_to` is unset, which transformers 4 reads as `all`")
                + ": every tracker installed in the environment; with `stage: ppo` LLaMA-Factory stops "
                '("PPO only accepts wandb, tensorboard, or trackio logger.") if any other is installed '
                "(mlflow, swanlab, comet_ml, clearml, ...)",
                hint="name the tracker explicitly, e.g. `report_to: wandb`, or `report_to: none`",
                fix=set_key(ctx, "report_to", "none", "set `report_to: none`", safe=False),
            )


class PPOEvalData(Rule):
    """PPO with an evaluation set (``eval_dataset`` or ``val_size``).

    The PPO trainer has no evaluation loop: ``CustomPPOTrainer`` raises "PPOTrainer does not support eval dataset
    yet." (``train/ppo/trainer.py``) after the policy, reference and reward models
    have been loaded.

    Bad:

    ```yaml
    stage: ppo
    dataset: alpaca_en_demo
    val_size: 0.1
    ```

    Good:

    ```yaml
    stage: ppo
    dataset: alpaca_en_demo
    ```
    """

    code = "STAGE012"
    name = "ppo-eval-data"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "ppo":
            return
        for key in ("eval_dataset", "val_size"):
            if (key == "eval_dataset" and ctx.get(key) is not None) or (key == "val_size" and val_size(ctx) > 1e-6):
                yield Finding(
                    key=key,
                    also=("stage",),
                    message=f"`{key}` with `stage: ppo`: LLaMA-Factory fails after loading the models with "
                    '"PPOTrainer does not support eval dataset yet."',
                    hint=f"remove `{key}`; evaluate the PPO model afterwards with `stage: sft`",
                    fix=remove_key(ctx, key, f"remove `{key}`", safe=False),
                )


class PPOResume(Rule):
    """LoRA PPO with ``resume_from_checkpoint``.

    ``CustomPPOTrainer.ppo_train`` raises "`resume_from_checkpoint` will be supported in the future version."
    (``train/ppo/trainer.py``). For freeze/full PPO LLaMA-Factory drops the
    setting instead (LF rule).

    Bad:

    ```yaml
    stage: ppo
    finetuning_type: lora
    resume_from_checkpoint: saves/ppo/checkpoint-500
    ```

    Good:

    ```yaml
    stage: ppo
    finetuning_type: lora
    ```
    """

    code = "STAGE013"
    name = "ppo-resume"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "ppo" or ctx.finetuning_type not in ("lora", "oft"):
            return
        if ctx.get("resume_from_checkpoint") not in (None, ""):
            yield Finding(
                key="resume_from_checkpoint",
                message="`resume_from_checkpoint` with PPO: LLaMA-Factory fails when training starts with "
                '"`resume_from_checkpoint` will be supported in the future version."',
                hint="remove it; to continue from a PPO adapter, start a new run with it in `adapter_name_or_path`",
            )


class PredictWithGenerateZero3(Rule):
    """``predict_with_generate`` under DeepSpeed ZeRO-3.

    Generation with parameters sharded by ZeRO-3 is not supported by the SFT trainer; ``get_train_args`` raises
    "`predict_with_generate` is incompatible with DeepSpeed ZeRO-3.".

    Bad:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    do_predict: true
    predict_with_generate: true
    deepspeed: ds_z3_config.json
    ```

    Good:

    ```yaml
    # ds_z2_config.json: {"zero_optimization": {"stage": 2}}
    stage: sft
    do_predict: true
    predict_with_generate: true
    deepspeed: ds_z2_config.json
    ```
    """

    code = "STAGE014"
    name = "predict-with-generate-zero3"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.flag("predict_with_generate") and ctx.zero3:
            yield Finding(
                key="predict_with_generate",
                also=("deepspeed",),
                message="`predict_with_generate` under DeepSpeed ZeRO-3: "
                + lf_stops("`predict_with_generate` is incompatible with DeepSpeed ZeRO-3."),
                hint="predict in a separate run without DeepSpeed (or with ZeRO-2), or use `scripts/vllm_infer.py`",
            )


class PredictWithGenerateAccuracy(Rule):
    """``predict_with_generate`` together with ``compute_accuracy``.

    Accuracy is computed from logits, which generation does not return. ``get_train_args`` raises "Cannot use
    `predict_with_generate` and `compute_accuracy` together.".

    Bad:

    ```yaml
    stage: sft
    predict_with_generate: true
    compute_accuracy: true
    ```

    Good:

    ```yaml
    stage: sft
    predict_with_generate: true
    ```
    """

    code = "STAGE015"
    name = "predict-with-generate-accuracy"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.flag("predict_with_generate") and ctx.flag("compute_accuracy"):
            yield Finding(
                key="compute_accuracy",
                also=("predict_with_generate",),
                message="`predict_with_generate` with `compute_accuracy`: "
                + lf_stops("Cannot use `predict_with_generate` and `compute_accuracy` together."),
                hint="use `compute_accuracy` for evaluation runs and `predict_with_generate` for prediction runs",
            )




class StageKeysIgnored(Rule):
    """Preference or PPO settings in a config whose ``stage`` never reads them.

    ``pref_beta``, ``pref_loss``, ``kto_*``, ``ppo_*`` and ``reward_model*`` are read only by the DPO, KTO or PPO
    workflows. Anywhere else LLaMA-Factory accepts and ignores them, so a DPO config that forgot ``stage: dpo``
    silently runs SFT on the chosen responses. Most often the ``stage`` line is missing (it defaults to ``sft``).

    Bad:

    ```yaml
    do_train: true
    pref_beta: 0.1
    pref_loss: sigmoid
    ```

    Good:

    ```yaml
    stage: dpo
    do_train: true
    pref_beta: 0.1
    pref_loss: sigmoid
    ```
    """

    code = "STAGE016"
    name = "stage-keys-ignored"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        stage = ctx.stage
        for key, stages in STAGE_ONLY_KEYS.items():
            if not ctx.has(key) or ctx.data.get(key) is None or stage in stages:
                continue  # unset, or `null` (what a file listing the defaults writes): no intent is lost
            where = " or ".join(f"`stage: {s}`" for s in stages)
            implicit = "" if ctx.has("stage") else " (`stage` is unset, so it is `sft`)"
            yield Finding(
                key=key,
                message=f"`{key}` is only read with {where}; with `stage: {stage}`{implicit} LLaMA-Factory ignores it",
                hint=f"set the stage you meant ({where}), or remove `{key}`",
            )


class DPORefModelIgnored(Rule):
    """``ref_model`` with ``pref_loss: orpo`` or ``simpo``.

    ORPO and SimPO are reference-free: ``FinetuningArguments`` sets ``use_ref_model = False`` for them
    (``finetuning_args.py``) and the DPO workflow never loads ``ref_model``, so the setting (and its adapters and
    quantization) is silently ignored.

    Bad:

    ```yaml
    stage: dpo
    pref_loss: simpo
    ref_model: meta-llama/Meta-Llama-3-8B-Instruct
    ```

    Good:

    ```yaml
    stage: dpo
    pref_loss: simpo
    ```
    """

    code = "STAGE017"
    name = "dpo-ref-model-ignored"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        loss = ctx.get("pref_loss")
        if ctx.stage != "dpo" or loss not in ("orpo", "simpo"):
            return
        for key in ("ref_model", "ref_model_adapters", "ref_model_quantization_bit"):
            if ctx.get(key) is not None:
                yield Finding(
                    key=key,
                    also=("pref_loss",),
                    message=f"`{key}` with `pref_loss: {loss}`: {loss.upper()} uses no reference model, "
                    "so LLaMA-Factory ignores it",
                    hint=f"remove `{key}`, or use a reference-based loss (`sigmoid`, `ipo`, `hinge`)",
                )


def _reference_free(ctx: Context) -> bool:
    """ORPO and SimPO train without a reference model (``FinetuningArguments.use_ref_model``)."""
    loss = ctx.get("pref_loss")
    return ctx.stage == "dpo" and isinstance(loss, str) and loss in ("orpo", "simpo")


class ReferenceIsBaseModel(Rule):
    """DPO, KTO or PPO continuing a LoRA adapter (``adapter_name_or_path``) without ``ref_model``.

    With ``finetuning_type: lora`` and no ``ref_model``, ``create_ref_model`` returns no reference model
    (LLaMA-Factory v0.8.3-v0.9.5 ``src/llamafactory/train/trainer_utils.py`` ``create_ref_model``), and the
    trainers compute the reference log-probabilities with the policy's adapter disabled
    (``CustomDPOTrainer.compute_reference_log_probs`` and ``CustomKTOTrainer.compute_reference_log_probs``,
    ``unwrap_model(model).disable_adapter()``; TRL's ``PPOTrainer`` the same through ``optional_peft_ctx``). The
    adapter being trained is the last one of ``adapter_name_or_path`` (``_setup_lora_tuning`` in
    ``model/adapter.py`` resumes it), so the reference is the base model, not the SFT model the adapter made: the
    KL term and DPO's implicit reward are measured against the base model, and the run starts far from its own
    reference.

    Give the reference explicitly: ``ref_model`` set to the base model with ``ref_model_adapters`` set to the SFT
    adapter, or to the SFT model merged with ``llamafactory-cli export``. ``create_new_adapter: true`` also works
    where the adapter can be merged (not with ``quantization_bit``, DeepSpeed ZeRO-3 or Unsloth): the SFT adapter is
    merged into the weights and a new adapter is trained, so disabling it gives the SFT model. ORPO and SimPO use no
    reference and are not flagged.

    Bad:

    ```yaml
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    adapter_name_or_path: saves/llama3-8b/lora/sft
    stage: dpo
    do_train: true
    finetuning_type: lora
    ```

    Good:

    ```yaml
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    adapter_name_or_path: saves/llama3-8b/lora/sft
    ref_model: meta-llama/Meta-Llama-3-8B-Instruct
    ref_model_adapters: saves/llama3-8b/lora/sft
    stage: dpo
    do_train: true
    finetuning_type: lora
    ```
    """

    code = "STAGE018"
    name = "reference-is-base-model"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.stage not in ("dpo", "kto", "ppo") or _reference_free(ctx) or not ctx.is_training:
            return
        if ctx.finetuning_type != "lora" or ctx.get("ref_model") not in (None, ""):
            return
        names = adapters(ctx)
        if not names or not names[-1]:
            return
        mergeable = adapters_mergeable(ctx)
        if mergeable and ctx.flag("create_new_adapter"):
            return  # every adapter is merged into the weights: disabling the new one gives the SFT model
        last = names[-1]
        merged = f" with {keys_text(names[:-1])} merged" if len(names) > 1 else ""
        effect = {
            "dpo": "DPO's implicit reward and its KL regularisation are measured against the base model",
            "kto": "KTO's implicit reward and its KL term are measured against the base model",
            "ppo": "PPO's KL penalty pulls the policy toward the base model",
        }[ctx.stage]
        hint = "set `ref_model` to the base model with `ref_model_adapters` set to the SFT adapter, or to the SFT model merged with `llamafactory-cli export`"
        if mergeable:
            hint += "; or set `create_new_adapter: true` to merge the adapter and train a new one on top"
        yield Finding(
            key="adapter_name_or_path",
            also=("stage",),
            message=f"`stage: {ctx.stage}` trains the LoRA adapter `{last}` without `ref_model`: LLaMA-Factory's "
            f"reference is then the policy with that adapter disabled, i.e. the base model{merged}, not the SFT "
            f"model, so {effect}",
            hint=hint,
            fix=_reference_fix(ctx),
        )


def _reference_fix(ctx: Context) -> Fix | None:
    """Add ``ref_model: <model_name_or_path>`` and ``ref_model_adapters: <adapter_name_or_path>`` after the adapters."""
    model = ctx.get("model_name_or_path")
    raw = ctx.get("adapter_name_or_path")
    if not isinstance(model, str) or not model.strip() or not isinstance(raw, str) or not raw.strip():
        return None
    first = insert_key(ctx, "ref_model", yaml_scalar(model), "", after="adapter_name_or_path", safe=False)
    (edit,) = first.edits
    if ctx.doc.flow_end is not None:  # JSON syntax: two flow entries at the same point, the second after a comma
        (second,) = insert_key(ctx, "ref_model_adapters", yaml_scalar(raw), "", safe=False).edits
        tail = second.content if second.content.lstrip(" ").startswith(",") else f", {second.content}"
        return Fix(
            "add `ref_model` (the base model) and `ref_model_adapters` (the SFT adapter)",
            (Edit(edit.start, edit.end, edit.content + tail),),
            safe=False,
        )
    newline = "\r\n" if edit.content.endswith("\r\n") else "\n"
    body = edit.content.lstrip("\r\n")
    indent = body[: len(body) - len(body.lstrip(" "))]
    content = f"{edit.content}{indent}ref_model_adapters: {yaml_scalar(raw)}{newline}"
    return Fix(
        "add `ref_model` (the base model) and `ref_model_adapters` (the SFT adapter)",
        (Edit(edit.start, edit.end, content),),
        safe=False,
    )
