"""Numeric arguments whose values make LLaMA-Factory, transformers, peft or torch fail or silently misbehave.

Each :class:`Band` is one set of bad values of one key, with what happens there and the upstream code that
does it. RANGE001 (``rules/ranges.py``) reports a value inside a band when the band's condition (``when``, a
name the rule evaluates: ``train``, ``ppo``, ``samples``, ...) holds. Keys whose ranges are checked by other
rules, and keys where no value fails, are listed in :data:`NOT_RANGED` with the reason, so that every numeric
key of the schema has a recorded decision (tests/test_rules_ranges.py checks that).

Only numbers are looked at: wrong types are the KEY rules' business. Bands never match ``nan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf

# Upstream files, at the tags read.
_TF_TRAINER = "transformers v4.57.1 and v5.8.0 `src/transformers/trainer.py`"
_TF_CALLBACK = "transformers v4.57.1 and v5.8.0 `src/transformers/trainer_callback.py`"
_TF_UTILS = "transformers v4.57.1 `src/transformers/trainer_utils.py`"
_TF_PT_UTILS = "transformers v4.57.1 `src/transformers/trainer_pt_utils.py`"
_TF_GENERATION = "transformers v4.57.1 `src/transformers/generation/logits_process.py`"
_TORCH_DATA = "torch `torch/utils/data/dataloader.py` `DataLoader.__init__`"
_TORCH_ADAMW = "torch `torch/optim/adamw.py` `AdamW.__init__`"
_LF = "LLaMA-Factory v0.9.5"


@dataclass(frozen=True)
class Band:
    """Bad values of ``key``: the interval ``low``..``high`` (ends included when ``*_closed``).

    ``only_fractional`` narrows the band to values that are not whole numbers; ``only_float`` to values written as
    floats (YAML ``1.0``, not ``1``), for the places where Python's type decides what happens.
    """

    key: str
    effect: str  # what LLaMA-Factory, transformers, peft or torch do with such a value
    expect: str  # the values that work, in words (the hint)
    source: str  # upstream file and function, with the release tag
    when: str  # the condition under which the key is read this way (see rules/ranges.py)
    low: float = -INF
    high: float = INF
    low_closed: bool = True
    high_closed: bool = True
    only_fractional: bool = False
    only_float: bool = False
    severity: str = "error"  # error: the run fails or trains nothing useful; warning: it runs, differently

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.only_float and not isinstance(value, float):
            return False
        if self.only_fractional and (not math.isfinite(value) or float(value).is_integer()):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below


def _below(key: str, bound: float, **kw: object) -> Band:
    """Values under ``bound`` (``bound`` itself is fine)."""
    return Band(key, high=bound, high_closed=False, **kw)  # type: ignore[arg-type]


def _at_most(key: str, bound: float, **kw: object) -> Band:
    return Band(key, high=bound, **kw)  # type: ignore[arg-type]


def _exactly(key: str, value: float, **kw: object) -> Band:
    return Band(key, low=value, high=value, **kw)  # type: ignore[arg-type]


def _above(key: str, bound: float, **kw: object) -> Band:
    return Band(key, low=bound, low_closed=False, **kw)  # type: ignore[arg-type]


def _at_least(key: str, bound: float, **kw: object) -> Band:
    return Band(key, low=bound, **kw)  # type: ignore[arg-type]


BANDS: tuple[Band, ...] = (
    # -- batches and steps (transformers) ----------------------------------------------------------------------
    _below(
        "per_device_train_batch_size", 1, when="train", expect="1 or more",
        effect='torch refuses the training batch sampler ("batch_size should be a positive integer value")',
        source=f"{_TF_TRAINER} `Trainer.get_train_dataloader`; torch `torch/utils/data/sampler.py` `BatchSampler`",
    ),
    _below(
        "per_device_eval_batch_size", 1, when="evaluates", expect="1 or more",
        effect='torch refuses the evaluation batch sampler ("batch_size should be a positive integer value")',
        source=f"{_TF_TRAINER} `Trainer.get_eval_dataloader`; torch `torch/utils/data/sampler.py` `BatchSampler`",
    ),
    _below(
        "gradient_accumulation_steps", 1, when="train", expect="1 or more",
        effect="transformers divides the batches of an epoch by it: 0 is a ZeroDivisionError, and a negative "
        "count plans a negative number of updates per epoch, so no optimizer step is ever taken",
        source=f"{_TF_TRAINER} `Trainer.set_initial_training_values`, `Trainer._inner_training_loop`",
    ),
    _exactly(
        "max_steps", 0, when="train", expect="a positive number of steps, or -1 (unset) to train for `num_train_epochs`",
        effect="0 is not 'unset' (-1 is): transformers plans a run of 0 optimizer steps and stops after the "
        "first one",
        source=f"{_TF_TRAINER} `Trainer.set_initial_training_values` (epochs are used only when max_steps < 0)",
    ),
    _at_most(
        "num_train_epochs", 0, when="epochs", expect="a positive number of epochs (fractions work)",
        effect="with `max_steps` unset, transformers plans ceil(epochs × updates per epoch) steps: 0 epochs stop "
        "after one optimizer step, a negative count trains no step at all",
        source=f"{_TF_TRAINER} `Trainer.set_initial_training_values`, `Trainer._inner_training_loop`",
    ),
    _below(
        "logging_steps", 0, when="logging_steps", severity="warning",
        expect="a positive interval (below 1: a fraction of the run)",
        effect="transformers logs when the step is a multiple of the interval; a negative interval (values below "
        "1 are scaled by the run length) is never reached, so nothing is logged",
        source=f"{_TF_CALLBACK} `TrainerState.compute_steps`, `DefaultFlowCallback.on_step_end`",
    ),
    _below(
        "eval_steps", 0, when="eval_steps", severity="warning",
        expect="a positive interval (below 1: a fraction of the run), or unset to follow `logging_steps`",
        effect="transformers evaluates when the step is a multiple of the interval; a negative interval is never "
        "reached, so the run never evaluates",
        source=f"{_TF_CALLBACK} `TrainerState.compute_steps`, `DefaultFlowCallback.on_step_end`",
    ),
    _at_most(
        "save_steps", 0, when="save_steps", severity="warning",
        expect="a positive interval (below 1: a fraction of the run)",
        effect="transformers saves only when the interval is positive, so no checkpoint is written before the end",
        source=f"{_TF_CALLBACK} `DefaultFlowCallback.on_step_end` (`state.save_steps > 0`)",
    ),
    _exactly(
        "eval_accumulation_steps", 0, when="evaluates", expect="a positive number of steps, or unset",
        effect="transformers takes the step number modulo it during evaluation: ZeroDivisionError",
        source=f"{_TF_TRAINER} `Trainer.evaluation_loop`",
    ),
    _at_most(
        "save_total_limit", 0, when="saves", severity="warning",
        expect="a positive number of checkpoints to keep, or unset to keep all",
        effect="transformers deletes old checkpoints only for a positive limit: every checkpoint is kept",
        source=f"{_TF_TRAINER} `Trainer._rotate_checkpoints`",
    ),
    # -- data loading (torch) ----------------------------------------------------------------------------------
    _below(
        "dataloader_num_workers", 0, when="train_command", expect="0 (load in the main process) or more",
        effect='torch refuses it ("num_workers option should be non-negative")',
        source=_TORCH_DATA,
    ),
    _below(
        "dataloader_prefetch_factor", 0, when="workers", expect="a positive number of batches per worker",
        effect='torch refuses it ("prefetch_factor option should be non-negative")',
        source=_TORCH_DATA,
    ),
    # -- optimizer (torch AdamW, the default; bitsandbytes checks the same) -------------------------------------
    _below(
        "weight_decay", 0, when="train", severity="warning", expect="0 or more (0.01–0.1 is usual)",
        effect="transformers puts it into the optimizer's parameter groups, which torch does not check: AdamW "
        "multiplies the weights by (1 - lr × weight_decay) each step, so a negative value makes them grow",
        source=f"{_TF_TRAINER} `Trainer.create_optimizer` (`optimizer_grouped_parameters`); {_TORCH_ADAMW}",
    ),
    *(
        band(
            key, bound, when="adam", expect=f"a value in [0, 1), usually {usual}",
            effect=f'torch\'s AdamW refuses it ("Invalid beta parameter at index {index}")',
            source=f"{_TORCH_ADAMW}; transformers `Trainer.get_optimizer_cls_and_kwargs` passes it as `betas[{index}]`",
        )
        for key, index, usual in (("adam_beta1", 0, 0.9), ("adam_beta2", 1, 0.999))
        for band, bound in ((_below, 0), (_at_least, 1))
    ),
    _below(
        "adam_epsilon", 0, when="adam", expect="a small positive number, usually 1e-8",
        effect='torch\'s AdamW refuses it ("Invalid epsilon value")',
        source=_TORCH_ADAMW,
    ),
    _below(
        "max_grad_norm", 0, when="train", severity="warning", expect="a positive norm, or 0 to turn clipping off",
        effect="transformers clips only when it is positive: a negative norm silently turns clipping off",
        source=f"{_TF_TRAINER} `Trainer._inner_training_loop` (`args.max_grad_norm > 0`)",
    ),
    _below(
        "label_smoothing_factor", 0, when="train", severity="warning", expect="a value in [0, 1), usually 0 or 0.1",
        effect="transformers mixes the label loss with a uniform-distribution loss weighted by it; a negative "
        "weight rewards confident predictions instead of smoothing them",
        source=f"{_TF_PT_UTILS} `LabelSmoother.__call__`",
    ),
    _at_least(
        "label_smoothing_factor", 1, when="train", expect="a value in [0, 1), usually 0 or 0.1",
        effect="transformers weights the label loss by (1 - factor): at 1 or more the labels stop counting or "
        "count against the answer",
        source=f"{_TF_PT_UTILS} `LabelSmoother.__call__`",
    ),
    _below(
        "neftune_noise_alpha", 0, when="train", expect="a positive noise scale (e.g. 5), or unset",
        effect="transformers draws the embedding noise from uniform(-alpha/√d, alpha/√d); torch refuses a range "
        'whose start is above its end ("uniform_ expects to return a [from, to) range")',
        source=f"{_TF_UTILS} `neftune_post_forward_hook`",
    ),
    # -- seeds ---------------------------------------------------------------------------------------------------
    Band(
        "seed", low=-INF, high=0, high_closed=False, when="seeded", expect="an integer in [0, 2**32 - 1]",
        effect='transformers\' set_seed seeds numpy, which refuses it ("Seed must be between 0 and 2**32 - 1")',
        source=f"{_LF} `src/llamafactory/hparams/parser.py` `get_train_args`/`get_eval_args` → transformers "
        "`set_seed`",
    ),
    _above(
        "seed", 2**32 - 1, when="seeded", expect="an integer in [0, 2**32 - 1]",
        effect='transformers\' set_seed seeds numpy, which refuses it ("Seed must be between 0 and 2**32 - 1")',
        source=f"{_LF} `src/llamafactory/hparams/parser.py` `get_train_args`/`get_eval_args` → transformers "
        "`set_seed`",
    ),
    # -- profiler (LLaMA-Factory's TorchProfilerCallback) ----------------------------------------------------------
    _below(
        "profiler_active_steps", 1, when="profiler", expect="1 or more",
        effect='torch.profiler.schedule asserts "Invalid profiler schedule arguments" when training starts',
        source=f"{_LF} `src/llamafactory/train/callbacks.py` `TorchProfilerCallback.on_train_begin`; torch "
        "`torch/profiler/profiler.py` `schedule`",
    ),
    *(
        _below(
            key, 0, when="profiler", expect="0 or more",
            effect='torch.profiler.schedule asserts "Invalid profiler schedule arguments" when training starts',
            source=f"{_LF} `src/llamafactory/train/callbacks.py` `TorchProfilerCallback.on_train_begin`; torch "
            "`torch/profiler/profiler.py` `schedule`",
        )
        for key in ("profiler_wait_steps", "profiler_warmup_steps", "profiler_repeat")
    ),
    # -- data (LLaMA-Factory) ----------------------------------------------------------------------------------------
    _below(
        "cutoff_len", 1, when="train_command", expect="a positive number of tokens, e.g. 2048",
        effect="LLaMA-Factory cuts every sample to `cutoff_len` tokens, so no token is left to train on "
        "(packed pre-training divides by it)",
        source=f"{_LF} `src/llamafactory/data/processor/` (`infer_seqlen`, `PretrainDatasetProcessor`)",
    ),
    Band(
        "cutoff_len", low=1, high=2, high_closed=False, when="packing", expect="2 or more tokens with packing",
        effect="with packing LLaMA-Factory subtracts 1 from `cutoff_len`, which leaves 0 tokens per sequence",
        source=f"{_LF} `src/llamafactory/hparams/data_args.py` `DataArguments.__post_init__`",
    ),
    _below(
        "val_size", 0, when="val_size_unused", severity="warning",
        expect="a fraction in (0, 1), a number of samples above 1, or 0 for no split",
        effect="LLaMA-Factory splits only when `val_size` > 1e-6: no evaluation set is made",
        source=f"{_LF} `src/llamafactory/data/data_utils.py` `split_dataset`",
    ),
    _exactly(
        "val_size", 1, only_float=True, when="split",
        expect="a fraction below 1 (e.g. 0.1), or a whole number of samples (e.g. 100)",
        effect="LLaMA-Factory passes a float of 1 or below to datasets as a fraction, and datasets refuses 1.0 "
        '("test_size=1.0 should be either positive and smaller than the number of samples … or a float in the '
        '(0, 1) range")',
        source=f"{_LF} `src/llamafactory/data/data_utils.py` `split_dataset`; datasets `Dataset.train_test_split`",
    ),
    _above(
        "val_size", 1, only_fractional=True, when="has_split", severity="warning",
        expect="a fraction below 1, or a whole number of samples",
        effect="LLaMA-Factory reads values above 1 as a number of samples and cuts off the fraction (int())",
        source=f"{_LF} `src/llamafactory/data/data_utils.py` `split_dataset`",
    ),
    _below(
        "max_samples", 1, when="not_streaming", expect="a positive number of samples per dataset, or unset",
        effect="LLaMA-Factory keeps the first `max_samples` rows of each dataset: none are left, and it fails when "
        "it reads the first example",
        source=f"{_LF} `src/llamafactory/data/loader.py` `_load_single_dataset`, `_get_preprocessed_dataset`",
    ),
    _at_most(
        "preprocessing_batch_size", 0, when="train_command", severity="warning", expect="a positive batch size",
        effect="datasets' `map` treats a batch size of 0 or less as 'the whole dataset in one batch', which "
        "tokenizes everything at once in memory",
        source=f"{_LF} `src/llamafactory/data/loader.py` `_get_preprocessed_dataset`; datasets `Dataset.map`",
    ),
    _below(
        "preprocessing_num_workers", 0, when="not_streaming", expect="a positive number of processes, or unset",
        effect='datasets refuses a negative process count ("num_proc must be >= 0")',
        source=f"{_LF} `src/llamafactory/data/loader.py`; datasets `Dataset.map`",
    ),
    # -- LoRA+ ------------------------------------------------------------------------------------------------------
    _at_most(
        "loraplus_lr_ratio", 0, when="loraplus", expect="a positive ratio (the LoRA+ paper uses 16)",
        effect="LLaMA-Factory trains lora_B at learning_rate × ratio: 0 leaves lora_B at its zero initialisation, "
        "so the adapter changes nothing, and a negative ratio climbs the loss",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_loraplus_optimizer`",
    ),
    _below(
        "loraplus_lr_embedding", 0, when="loraplus", severity="warning", expect="a positive learning rate",
        effect="LLaMA-Factory uses it as the learning rate of LoRA embedding parameters: a negative rate climbs the loss",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_loraplus_optimizer`",
    ),
    # -- preference training ------------------------------------------------------------------------------------------
    _at_most(
        "pref_beta", 0, when="preference", expect="a positive beta, usually 0.1",
        effect="LLaMA-Factory scales the preference margin by beta (and SimPO divides by it): 0 learns no "
        "preference or fails, a negative beta learns to prefer the rejected answers",
        source=f"{_LF} `src/llamafactory/train/dpo/trainer.py`, `train/kto/trainer.py` (`self.beta`)",
    ),
    _below(
        "pref_ftx", 0, when="preference", severity="warning", expect="0 or a positive weight",
        effect="LLaMA-Factory adds the SFT loss of the chosen answers only when the weight is above 1e-6: a "
        "negative weight is silently ignored",
        source=f"{_LF} `src/llamafactory/train/dpo/trainer.py`, `train/kto/trainer.py` (`ftx_gamma > 1e-6`)",
    ),
    _below(
        "pref_bco_weight", 0, when="dpo", severity="warning", expect="0 or a positive weight",
        effect="LLaMA-Factory adds the BCO loss only when the weight is above 1e-6: a negative weight is silently "
        "ignored",
        source=f"{_LF} `src/llamafactory/train/dpo/trainer.py` `compute_preference_loss` (`bco_gemma > 1e-6`)",
    ),
    _below(
        "dpo_label_smoothing", 0, when="dpo_sigmoid", severity="warning", expect="a value in [0, 0.5)",
        effect="the robust DPO loss weights the flipped preference by it: a negative weight is not a probability "
        "(LLaMA-Factory's help: 'should be between 0 and 0.5')",
        source=f"{_LF} `src/llamafactory/hparams/finetuning_args.py` (`dpo_label_smoothing` help); TRL `DPOTrainer.dpo_loss`",
    ),
    _at_least(
        "dpo_label_smoothing", 0.5, when="dpo_sigmoid", expect="a value in [0, 0.5)",
        effect="the robust DPO loss weights the flipped preference by it: at 0.5 both directions weigh the same "
        "and no preference is learned, above it the rejected answers win",
        source=f"{_LF} `src/llamafactory/hparams/finetuning_args.py` (`dpo_label_smoothing` help); TRL `DPOTrainer.dpo_loss`",
    ),
    *(
        _below(
            key, 0, when="kto", severity="warning", expect="a positive weight, usually 1",
            effect="LLaMA-Factory's KTO loss multiplies the loss of these examples by it: a negative weight "
            "trains them the wrong way",
            source=f"{_LF} `src/llamafactory/train/kto/trainer.py` (`desirable_weight`, `undesirable_weight`)",
        )
        for key in ("kto_chosen_weight", "kto_rejected_weight")
    ),
    _below(
        "ppo_buffer_size", 1, when="ppo", expect="1 or more",
        effect="LLaMA-Factory's PPO batch is backward batch × ppo_buffer_size: 0 divides by zero when it counts "
        "the training steps, and TRL cannot form a batch",
        source=f"{_LF} `src/llamafactory/train/ppo/trainer.py` `CustomPPOTrainer.__init__`",
    ),
    _below(
        "ppo_epochs", 1, when="ppo", expect="1 or more",
        effect="TRL runs ppo_epochs optimisation passes over each batch: none, so the policy never changes",
        source=f"{_LF} `src/llamafactory/train/ppo/trainer.py` (`PPOConfig(ppo_epochs=…)`); TRL `PPOTrainer.step`",
    ),
    # -- GaLore, APOLLO, BAdam ---------------------------------------------------------------------------------------
    _exactly(
        "galore_update_interval", 0, when="galore", expect="a positive number of steps, e.g. 200",
        effect="GaLore recomputes its projection when the step is a multiple of it: ZeroDivisionError at the "
        "second optimizer step",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_galore_optimizer` (`update_proj_gap`); "
        "galore_torch `GaLoreProjector.project`",
    ),
    _exactly(
        "apollo_update_interval", 0, when="apollo", expect="a positive number of steps, e.g. 200",
        effect="APOLLO recomputes its projection when the step is a multiple of it: ZeroDivisionError at the "
        "second optimizer step",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_apollo_optimizer` (`update_proj_gap`)",
    ),
    _exactly(
        "badam_switch_interval", 0, when="badam_layer", expect="a positive number of steps, e.g. 50",
        effect="BAdam switches blocks when the step is a multiple of it: ZeroDivisionError at the first optimizer "
        "step",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_badam_optimizer`; badam `BlockOptimizer.step`",
    ),
    _at_most(
        "badam_update_ratio", 1e-6, when="badam_ratio", expect="a fraction above 0, e.g. 0.05",
        effect="LLaMA-Factory asserts `badam_update_ratio > 1e-6` when it creates the ratio-based BAdam optimizer",
        source=f"{_LF} `src/llamafactory/train/trainer_utils.py` `_create_badam_optimizer`",
    ),
    _below(
        "early_stopping_steps", 1, when="train", expect="a positive patience (evaluations without improvement)",
        effect="transformers' EarlyStoppingCallback stops once the count of evaluations without improvement "
        "reaches the patience: with 0 or less the run stops at its first evaluation",
        source=f"{_LF} `src/llamafactory/train/tuner.py`; {_TF_CALLBACK} `EarlyStoppingCallback.on_evaluate`",
    ),
    # -- generation (chat/API, and SFT prediction with predict_with_generate) ----------------------------------------
    _below(
        "temperature", 0, when="samples", expect="a positive temperature (0 turns sampling off in chat)",
        effect='the sampler refuses it (transformers: "`temperature` … has to be a strictly positive float"; '
        "vLLM: temperature must be non-negative)",
        source=f"{_TF_GENERATION} `TemperatureLogitsWarper`; vLLM `SamplingParams._verify_args`",
    ),
    _exactly(
        "temperature", 0, when="predict_samples", expect="a positive temperature, or `do_sample: false`",
        effect="for SFT prediction LLaMA-Factory passes it to `generate` with `do_sample: true`, and transformers "
        'refuses 0 ("`temperature` (=0.0) has to be a strictly positive float … set `do_sample=False`")',
        source=f"{_LF} `src/llamafactory/train/sft/workflow.py` (`gen_kwargs`); {_TF_GENERATION} "
        "`TemperatureLogitsWarper`",
    ),
    _below(
        "top_p", 0, when="samples", expect="a value in (0, 1]",
        effect='the sampler refuses it (transformers: "`top_p` has to be a float > 0 and < 1"; vLLM: "top_p must '
        'be in (0, 1]")',
        source=f"{_TF_GENERATION} `TopPLogitsWarper`; vLLM `SamplingParams._verify_args`",
    ),
    _below(
        "top_k", 0, when="samples_hf", expect="a positive number of tokens, or 0 to turn it off",
        effect='transformers refuses it ("`top_k` has to be a strictly positive integer")',
        source=f"{_TF_GENERATION} `TopKLogitsWarper` (built whenever top_k != 0)",
    ),
    _at_most(
        "repetition_penalty", 0, when="generates_hf", expect="a positive penalty, 1.0 for none",
        effect='transformers refuses it ("`penalty` has to be a strictly positive float")',
        source=f"{_TF_GENERATION} `RepetitionPenaltyLogitsProcessor`",
    ),
    _at_most(
        "max_new_tokens", 0, when="generates", severity="warning", expect="a positive number of tokens",
        effect="LLaMA-Factory drops `max_new_tokens` unless it is positive and limits the whole sequence by "
        "`max_length` instead",
        source=f"{_LF} `src/llamafactory/hparams/generating_args.py` `GeneratingArguments.to_dict`",
    ),
    _above(
        "vllm_gpu_util", 1, when="vllm", expect="a fraction of GPU memory in (0, 1], e.g. 0.9",
        effect='vLLM refuses it ("GPU memory utilization must be less than 1.0")',
        source=f"{_LF} `src/llamafactory/chat/vllm_engine.py` (`gpu_memory_utilization`); vLLM `CacheConfig._verify_args`",
    ),
    # -- eval and export commands -------------------------------------------------------------------------------------
    _below(
        "batch_size", 1, when="eval_command", expect="a positive batch size",
        effect="LLaMA-Factory's evaluator steps through the questions by it: 0 is a ValueError (range step), a "
        "negative size predicts nothing",
        source=f"{_LF} `src/llamafactory/eval/evaluator.py` `Evaluator.eval`",
    ),
    _below(
        "n_shot", 0, when="eval_command", severity="warning", expect="0 (zero-shot) or more",
        effect="LLaMA-Factory selects range(n_shot) examples for the prompt: none, so the run is zero-shot",
        source=f"{_LF} `src/llamafactory/eval/evaluator.py` `Evaluator.eval`",
    ),
    _exactly(
        "export_size", 0, when="export", severity="warning", expect="a shard size in GB, e.g. 5",
        effect='LLaMA-Factory saves with `max_shard_size="0GB"`: every tensor goes into a file of its own',
        source=f"{_LF} `src/llamafactory/train/tuner.py` `export_model`",
    ),
)


#: Numeric keys without a band here, and why (another rule checks them, or no value fails or misleads).
NOT_RANGED: dict[str, str] = {
    "learning_rate": "LORA003 (zero or negative, and the usual range)",
    "lora_rank": "LORA002",
    "lora_alpha": "LORA002",
    "lora_dropout": "LORA005",
    "warmup_steps": "PRAC004 (the scale differs between transformers 4 and 5)",
    "warmup_ratio": "PRAC004",
    "torch_empty_cache_steps": "TRAIN007",
    "hyper_parallel_cp_size": "FT002",
    "freeze_trainable_layers": "FT014 and FT015 (0 selects no layer; negative counts from the first layer)",
    "quantization_bit": "QUANT008",
    "export_quantization_bit": "QUANT011",
    "ref_model_quantization_bit": "FT001",
    "reward_model_quantization_bit": "FT001",
    "tensor_model_parallel_size": "TRAIN012/TRAIN013",
    "pipeline_model_parallel_size": "TRAIN012/TRAIN013",
    "expert_model_parallel_size": "TRAIN012/TRAIN013",
    "context_parallel_size": "TRAIN012/TRAIN013",
    "virtual_pipeline_model_parallel_size": "TRAIN012",
    "recompute_num_layers": "TRAIN012",
    "image_max_pixels": "MODEL004 (the order of the bounds)",
    "image_min_pixels": "MODEL004",
    "video_max_pixels": "MODEL004",
    "video_min_pixels": "MODEL004",
    "oft_rank": "RANGE002 (peft needs exactly one of oft_rank and oft_block_size)",
    "oft_block_size": "RANGE002",
    "eval_delay": "a delay at or below 0 evaluates from the start, as without a delay",
    "ddp_timeout": "passed to torch.distributed as a timedelta; no failing value found in the sources read",
    "ddp_bucket_cap_mb": "passed to DDP unchanged; no failing value found in the sources read",
    "data_seed": "seeds a torch.Generator, which accepts any 64-bit integer",
    "local_rank": "set by the launcher",
    "past_index": "-1 means off; other values index the model outputs (a model property)",
    "tpu_num_cores": "TPU only",
    "fsdp_min_num_params": "TRAIN018 (with transformer_layer_cls_to_wrap)",
    "per_gpu_train_batch_size": "KEY002 (renamed to per_device_train_batch_size)",
    "per_gpu_eval_batch_size": "KEY002 (renamed to per_device_eval_batch_size)",
    "generation_max_length": "LLaMA-Factory replaces an unset or 0 value by cutoff_len",
    "generation_num_beams": "LF013 (LLaMA-Factory overrides it)",
    "ray_num_workers": "Ray validates it on the cluster; no failing value found in LLaMA-Factory",
    "buffer_size": "the streaming shuffle buffer; the behaviour of 0 depends on the datasets release",
    "eval_num_beams": "passed to generate; beam search validation depends on the transformers release",
    "num_beams": "passed to generate; beam search validation depends on the transformers release",
    "max_length": "a limit for the whole generated sequence; small values stop generation early, as asked",
    "length_penalty": "any real number is a valid beam-search length penalty",
    "apollo_rank": "a rank is not validated by LLaMA-Factory; behaviour of 0 not established from the sources read",
    "apollo_scale": "any scale runs",
    "galore_rank": "a rank is not validated by LLaMA-Factory; behaviour of 0 not established from the sources read",
    "galore_scale": "any scale runs",
    "badam_start_block": "an index into the model's blocks (a model property)",
    "badam_verbose": "a verbosity level",
    "pissa_iter": "-1 selects the exact SVD; other values are SVD iterations",
    "module_dropout": "OFT module dropout; peft's bounds were not established from the sources read",
    "simpo_gamma": "a margin; any real number runs",
    "ppo_target": "the adaptive-KL target; any positive or negative value runs",
    "asft_alpha": "a loss weight; any real number runs",
    "eaft_alpha": "a loss weight; any real number runs",
    "ld_alpha": "a length-desensitisation weight; any real number runs",
    "moe_aux_loss_coef": "a loss weight; any real number runs",
    "kt_lora_expert_num": "KTransformers settings, checked by MODEL008",
    "kt_lora_expert_intermediate_size": "KTransformers settings, checked by MODEL008",
    "audio_sampling_rate": "passed to the audio processor (a model property)",
    "video_fps": "frames per second sampled from the video; bounds depend on the video",
    "video_maxlen": "a frame count cap; bounds depend on the video",
    "export_quantization_nsamples": "calibration samples for export quantization; behaviour of 0 not established",
    "export_quantization_maxlen": "calibration sample length; LLaMA-Factory reports unusable values itself",
    "sglang_maxlen": "SGLang validates it when the engine starts; not established from the sources read",
    "sglang_mem_fraction": "SGLang validates it when the engine starts; not established from the sources read",
    "sglang_tp_size": "-1 means all GPUs; SGLang validates the rest",
    "vllm_maxlen": "vLLM validates it against the model when the engine starts (a model property)",
    "vllm_max_lora_rank": "vLLM validates it against its supported ranks when the engine starts",
    # keys of releases other than the default target (0.8.x, or the development head)
    "image_resolution": "LLaMA-Factory 0.8.x only (replaced by image_max_pixels); not ranged for old releases",
    "video_resolution": "LLaMA-Factory 0.8.x only (replaced by video_max_pixels); not ranged for old releases",
    "reserved_label_len": "LLaMA-Factory 0.8.0 only; not ranged for old releases",
    "chunk_size": "KTransformers (development head only); validated by KTransformers when it starts",
    "cpu_infer": "KTransformers (development head only); validated by KTransformers when it starts",
    "kt_maxlen": "KTransformers (development head only); validated by KTransformers when it starts",
    "tp_size": "development head only; validated by its backend when it starts",
}
