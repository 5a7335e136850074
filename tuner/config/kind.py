"""What a LLaMA-Factory YAML is for: training, export/merge, chat/inference, or benchmark evaluation.

``llamafactory-cli`` reads every YAML with the parser of the subcommand it is given: ``train`` with
``get_train_args`` (model, data, training, fine-tuning and generation arguments), ``export`` and
``chat``/``api``/``webchat`` with ``get_infer_args`` (no training arguments), ``eval`` with ``get_eval_args``
(LLaMA-Factory v0.9.x ``src/llamafactory/hparams/parser.py``). The YAML does not name the subcommand, so we
read it from the keys, as a person would: an ``export_dir`` is an export, a ``task`` is an MMLU-style
evaluation, training arguments make a training run, and a model with a template and nothing else is a chat or
inference config. Linting an export YAML against the training rules is how "none of do_train, do_eval is
true" ended up on merge configs; each kind is linted with its own command's arguments and rules.

``--command`` (or ``command = ...`` in the settings) overrides the detection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TRAIN = "train"
EXPORT = "export"
INFER = "infer"
EVAL = "eval"

#: Keys that only a training run reads (TrainingArguments, the dataset pipeline, the trainer's stage).
_TRAIN_KEYS = frozenset(
    {
        "stage", "do_train", "do_eval", "do_predict", "output_dir", "dataset", "eval_dataset", "deepspeed", "fsdp",
        "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
        "max_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "save_steps", "save_strategy",
        "logging_steps", "cutoff_len", "val_size", "plot_loss", "overwrite_output_dir", "report_to",
        "preprocessing_num_workers", "packing", "neat_packing", "train_on_prompt", "mask_history", "lora_rank",
        "lora_alpha", "lora_dropout", "lora_target", "pref_beta", "pref_loss", "ref_model", "reward_model",
        "freeze_trainable_layers", "resume_from_checkpoint", "max_samples", "predict_with_generate",
        "eval_strategy", "evaluation_strategy", "per_device_eval_batch_size", "bf16", "fp16", "pure_bf16",
    }
)  # fmt: skip
#: Training keys that the chat/infer parser also accepts (DataArguments and FinetuningArguments fields), which
#: inference configs copied from a training run often keep: alone, with inference keys, they make no training run.
_SHARED_WITH_INFER = frozenset(
    {
        "cutoff_len", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "max_samples",
        "preprocessing_num_workers", "pure_bf16", "train_on_prompt", "mask_history", "packing", "neat_packing",
    }
)  # fmt: skip
#: Keys of ``llamafactory-cli eval`` (EvaluationArguments).
_EVAL_KEYS = frozenset({"task", "task_dir", "n_shot", "lang", "save_dir"})
#: Keys a chat, API or inference config sets (ModelArguments' inference part, GeneratingArguments).
_INFER_KEYS = frozenset(
    {
        "infer_backend", "template", "adapter_name_or_path", "model_name_or_path", "max_new_tokens",
        "temperature", "top_p", "top_k", "do_sample", "repetition_penalty", "default_system", "infer_dtype",
        "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_config", "sglang_maxlen",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ConfigKind:
    """The detected kind, the ``llamafactory-cli`` subcommands that read it, and the keys that decided it."""

    kind: str
    reason: str
    stated: bool = False  # given with --command instead of detected

    @property
    def command(self) -> str:
        """The command whose parser the key schema checks the file against (``train``/``export``/``infer``/``eval``)."""
        return self.kind


def detect_kind(data: Mapping[str, Any], stated: str | None = None) -> ConfigKind:
    """The kind of a config from its top-level keys (see the module docstring); ``stated`` wins when given."""
    if stated:
        kind = {"chat": INFER, "api": INFER, "webchat": INFER}.get(stated, stated)
        return ConfigKind(kind, f"--command {stated}", stated=True)
    keys = set(data)
    train = sorted(keys & _TRAIN_KEYS)
    only_shared = bool(train) and all(k in _SHARED_WITH_INFER for k in train)
    if train and _training_signal(data, train) and not (only_shared and keys & _INFER_KEYS):
        return ConfigKind(TRAIN, "training keys: " + ", ".join(train[:3]))
    if data.get("export_dir"):
        return ConfigKind(EXPORT, "`export_dir` is set")
    if keys & _EVAL_KEYS and "task" in keys:
        return ConfigKind(EVAL, "`task` is set")
    if keys & _INFER_KEYS and (not train or only_shared):
        return ConfigKind(INFER, "model and inference keys only, no training arguments")
    return ConfigKind(TRAIN, "no kind-specific keys; read as a training config")


def _training_signal(data: Mapping[str, Any], train_keys: list[str]) -> bool:
    """Whether the training keys present make this a training run rather than an export that repeats a few of
    the training settings (export YAMLs often keep ``finetuning_type``, ``template`` and sometimes ``stage``)."""
    if not data.get("export_dir"):
        return True
    strong = {"do_train", "output_dir", "dataset", "deepspeed", "per_device_train_batch_size", "learning_rate"}
    return any(k in strong for k in train_keys)
