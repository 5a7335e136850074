"""Write the chosen configuration as LLaMA-Factory YAML (and the DeepSpeed JSON it names), then lint it.

With a base config, only the tuned keys change, through span edits on the original text (the same edits
``cfglint --fix`` makes), so the user's comments, order and formatting survive. Without one, a complete
minimal SFT config is generated. Either way a short comment header says how the values were obtained.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tuner.config.loader import parse_config
from tuner.lint.fixes import remove_key, set_key, write_atomic, yaml_scalar
from tuner.search.space import DISTS, Point, SearchSpace
from tuner.search.space import deepspeed_filename as _ds_filename
from tuner.trial.spec import TrialSpec

HEADER_PREFIX = "# cfgtune: "

#: Where a key goes when the base config lacks it: after the first of these keys that it has.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "template": ("dataset_dir", "dataset"),
    "lora_rank": ("finetuning_type", "stage"),
    "lora_alpha": ("lora_rank", "finetuning_type"),
    "cutoff_len": ("template", "dataset_dir", "dataset"),
    "per_device_train_batch_size": ("output_dir", "report_to"),
    "gradient_accumulation_steps": ("per_device_train_batch_size",),
    "disable_gradient_checkpointing": ("gradient_accumulation_steps", "per_device_train_batch_size"),
    "enable_liger_kernel": ("disable_gradient_checkpointing", "gradient_accumulation_steps"),
    "deepspeed": ("finetuning_type", "lora_target", "stage"),
}


class EmitError(Exception):
    """The tuned config could not be written (a base config that does not parse, an unwritable directory)."""


@dataclass
class Emitted:
    yaml_path: Path
    deepspeed_path: Path | None
    text: str
    changed: list[str] = field(default_factory=list)  # "key: old -> new" lines for the report
    removed: list[str] = field(default_factory=list)


def tuned_values(space: SearchSpace, point: Point, spec: TrialSpec) -> tuple[dict[str, Any], list[str]]:
    """The keys to set for a point, and the keys to remove (a DeepSpeed config the run must not use), as the
    search space's dimensions declare them (:data:`tuner.search.space.DIMENSIONS`), plus the fixed cutoff_len."""
    values: dict[str, Any] = {}
    remove: list[str] = []
    for key, value in space.yaml_values(point).items():
        if value is None:
            remove.append(key)
        else:
            values[key] = value
    values["cutoff_len"] = spec.cutoff_len
    return values, remove


def deepspeed_json(spec: TrialSpec) -> dict[str, Any]:
    """LLaMA-Factory's DeepSpeed JSON for the chosen stage: the trial's ZeRO settings, sizes left to "auto".

    The trial ran with every "auto" resolved the way the HF Trainer resolves it, so writing "auto" back gives
    the run the same numbers while the YAML stays the one place that sets batch sizes and precision.
    """
    from tuner.trial.distributed import deepspeed_config

    cfg = deepspeed_config(spec)
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        cfg[key] = "auto"
    cfg["fp16"]["enabled"] = "auto"
    cfg["bf16"] = {"enabled": "auto"}
    zero = cfg["zero_optimization"]
    if zero.get("stage") == 3:
        for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
            zero[key] = "auto"
    cfg.pop("steps_per_print", None)
    cfg.pop("wall_clock_breakdown", None)
    return cfg


def deepspeed_filename(point: Point) -> str:
    return _ds_filename(point.dist)


# -- generated config ----------------------------------------------------------------------------------------


def generate_config(
    *,
    model_path: str,
    finetuning_type: str = "lora",
    dataset: str | None,
    dataset_dir: str | None,
    template: str | None,
    output_dir: str,
    precision: str = "bf16",
    use_cpu: bool = False,
) -> str:
    """A minimal, complete LLaMA-Factory SFT config. The tuned keys hold LLaMA-Factory-example placeholders
    here, in their usual sections, and are overwritten with the chosen values afterwards. ``use_cpu`` keeps a
    config tuned on the CPU on the CPU, where its trials measured it, even on a machine with a GPU."""
    q = yaml_scalar
    lines = ["### model", f"model_name_or_path: {q(model_path)}", "", "### method", "stage: sft", "do_train: true",
             f"finetuning_type: {finetuning_type}"]  # fmt: skip
    if finetuning_type == "lora":
        lines += ["lora_rank: 8", "lora_alpha: 16", "lora_target: all"]
    lines += ["", "### dataset", f"dataset: {q(dataset or 'alpaca_en_demo')}"]
    if dataset_dir:
        lines.append(f"dataset_dir: {q(dataset_dir)}")
    if template:
        lines.append(f"template: {q(template)}")
    lines += ["cutoff_len: 2048", "overwrite_cache: true", "preprocessing_num_workers: 16", "",
              "### output", f"output_dir: {q(output_dir)}", "logging_steps: 10", "save_steps: 500",
              "plot_loss: true", "overwrite_output_dir: true", "report_to: none", "",
              "### train", "per_device_train_batch_size: 1", "gradient_accumulation_steps: 8",
              "learning_rate: 1.0e-4", "num_train_epochs: 3.0", "lr_scheduler_type: cosine",
              "warmup_ratio: 0.1"]  # fmt: skip
    if precision in ("bf16", "fp16"):
        lines.append(f"{precision}: true")
    elif precision == "pure_bf16":
        lines.append("pure_bf16: true")
    if use_cpu:
        lines.append("use_cpu: true")
    lines.append("ddp_timeout: 180000000")
    return "\n".join(lines) + "\n"


# -- editing -------------------------------------------------------------------------------------------------


def strip_header(text: str) -> str:
    """Drop a header a previous `cfgtune auto` wrote, so tuning a tuned file does not stack headers."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith(HEADER_PREFIX.rstrip()):
        i += 1
    if i and i < len(lines) and not lines[i].strip():
        i += 1
    return "".join(lines[i:])


def apply_settings(text: str, values: dict[str, Any], remove: Sequence[str], path: Path) -> tuple[str, list[str], list[str]]:
    """Set and remove top-level keys by span edits, one at a time (each edit re-parses, so offsets stay right)."""
    changed: list[str] = []
    removed: list[str] = []
    for key, value in values.items():
        doc = parse_config(text, path)
        old = doc.data.get(key, None) if key in doc.data else None
        if key in doc.data and old == value:
            continue
        if key not in doc.data and value is False and key in ("disable_gradient_checkpointing", "enable_liger_kernel"):
            continue  # LLaMA-Factory's default already; an explicit `false` would only add noise
        anchor = next((a for a in _ANCHORS.get(key, ()) if a in doc.data), None)
        fix = set_key(SimpleNamespace(doc=doc), key, yaml_scalar(value), f"set {key}", after=anchor)  # type: ignore[arg-type]
        text = _apply(text, fix.edits)
        changed.append(f"{key}: {yaml_scalar(old) if key in doc.data else '(unset)'} -> {yaml_scalar(value)}")
    for key in remove:
        doc = parse_config(text, path)
        if key not in doc.data:
            continue
        removal = remove_key(SimpleNamespace(doc=doc), key, f"remove {key}")  # type: ignore[arg-type]
        if removal is None:
            raise EmitError(f"{path}: cannot remove `{key}` (it shares a line with another key); remove it by hand")
        text = _apply(text, removal.edits)
        removed.append(f"{key}: {yaml_scalar(doc.data[key])}")
    return text, changed, removed


def _apply(text: str, edits: Sequence[Any]) -> str:
    for e in sorted(edits, key=lambda e: -e.start):
        text = text[: e.start] + e.content + text[e.end :]
    return text


def header_lines(lines: Sequence[str]) -> str:
    return "".join(f"{HEADER_PREFIX}{ln}".rstrip() + "\n" for ln in lines)


def relative_to_cwd(path: Path, cwd: Path | None = None) -> str:
    """How the YAML should name a file: relative to the launch directory when it is below it, as LLaMA-Factory
    resolves relative paths from where it runs."""
    cwd = (cwd or Path.cwd()).resolve()
    p = path.resolve()
    try:
        return str(p.relative_to(cwd))
    except ValueError:
        return str(p)


def emit(
    *,
    output_dir: Path,
    base_text: str | None,
    base_path: Path | None,
    generated_text: str | None,
    space: SearchSpace,
    point: Point,
    spec: TrialSpec,
    header: Sequence[str],
    cwd: Path | None = None,
    filename: str = "tuned.yaml",
    template: str | None = None,
) -> Emitted:
    """Write ``tuned.yaml`` (and the DeepSpeed JSON when ZeRO was chosen) into ``output_dir``, atomically.

    ``template``: set when the base config has none and the model's is known (so the tuned file lints clean).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = output_dir / filename
    source = base_text if base_text is not None else generated_text
    if source is None:
        raise EmitError("nothing to emit: neither a base config nor a generated one")
    values, remove = tuned_values(space, point, spec)
    text = strip_header(source)
    if template and "template" not in _data_of(text, base_path or yaml_path):
        values = {"template": template, **values}
    ds_path: Path | None = None
    if DISTS[point.dist][0] is not None:
        ds_path = output_dir / str(values["deepspeed"])
        write_atomic(ds_path, json.dumps(deepspeed_json(spec), indent=2) + "\n")
        # LLaMA-Factory opens the file relative to the directory it is launched from (where cfgtune auto ran)
        values["deepspeed"] = relative_to_cwd(ds_path, cwd)
    try:
        text, changed, removed = apply_settings(text, values, remove, base_path or yaml_path)
    except Exception as exc:  # InputError from the loader: the base config was checked before, so this is a bug
        raise EmitError(f"could not edit {base_path or 'the generated config'}: {exc}") from exc
    if base_text is None:
        changed = [f"{k}: {yaml_scalar(v)}" for k, v in values.items()]  # placeholders are not "old" values
    text = header_lines(header) + ("\n" if not text.startswith("\n") else "") + text
    write_atomic(yaml_path, text)
    return Emitted(yaml_path, ds_path, text, changed, removed)


def _data_of(text: str, path: Path) -> dict[str, Any]:
    try:
        return dict(parse_config(text, path).data)
    except Exception:  # noqa: BLE001 - apply_settings reports a config that does not parse
        return {}


def lint_emitted(path: Path, *, cwd: Path | None = None, hw: str | None = None, gpus: int | None = None,
                 model: str | None = None, dataset_dir: str | None = None) -> Any:
    """Lint the written file with every rule, the way ``cfglint check`` would; returns the FileResult."""
    from tuner.config.context import LintOptions
    from tuner.lint.registry import load_registry
    from tuner.lint.runner import lint_file

    rules = [cls() for cls in load_registry().sorted()]
    options = LintOptions(hw=hw, gpus=gpus, model=model, dataset_dir=dataset_dir, cwd=cwd or Path.cwd(),
                          env=dict(os.environ))  # fmt: skip
    return lint_file(path, rules, options)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    return _SAFE_NAME.sub("-", text).strip("-") or "model"
