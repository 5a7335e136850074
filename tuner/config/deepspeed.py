"""The DeepSpeed JSON a training config names: where it is, what it says, and where each key sits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuner.config.document import Document, Entry, InputError
from tuner.config.loader import read_text
from tuner.config.positions import Span
from tuner.config.versions import DEFAULT_LLAMAFACTORY, Version


#: Top-level keys of DeepSpeed's config (``deepspeed/runtime/config.py`` and the HF integration's "auto"
#: fields). A JSON object with none of them is not a DeepSpeed config: it is reported, never shown.
DEEPSPEED_KEYS = frozenset({
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
    "zero_optimization", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "fp16", "bf16", "bfloat16",
    "amp", "optimizer", "scheduler", "steps_per_print", "wall_clock_breakdown", "dump_state", "prescale_gradients",
    "gradient_predivide_factor", "sparse_gradients", "communication_data_type", "seq_parallel_communication_data_type",
    "activation_checkpointing", "flops_profiler", "comms_logger", "monitor_config", "tensorboard", "wandb",
    "csv_monitor", "aio", "autotuning", "checkpoint", "data_types", "elasticity", "pipeline", "compression_training",
    "data_efficiency", "curriculum_learning", "memory_breakdown", "zero_quantized_weights", "zero_quantized_gradients",
    "tensor_parallel", "sequence_parallel_size", "nebula", "weight_quantization", "hybrid_engine", "comms_config",
    "disable_allgather", "load_universal_checkpoint", "use_node_local_storage", "graph_harvesting", "torch_autocast",
    "compile", "timers", "eigenvalue", "progressive_layer_drop", "quantize_training", "sparse_attention",
})  # fmt: skip

#: The DeepSpeed JSON files LLaMA-Factory ships in ``examples/deepspeed/``, which its example YAMLs (and many
#: users' YAMLs) name relative to its checkout. Contents follow LLaMA-Factory v0.9.4
#: ``examples/deepspeed/ds_z{0,2,3}[_offload]_config.json`` (the same names and settings from v0.8.0 on); up to
#: v0.9.1 ``overlap_comm`` was true, and PR #7205 ("[misc] fix ds config", in v0.9.2) set it to false.
BUNDLED_NAMES = (
    "ds_z0_config.json", "ds_z2_config.json", "ds_z2_offload_config.json", "ds_z3_config.json", "ds_z3_offload_config.json"
)  # fmt: skip
_OVERLAP_COMM_OFF_SINCE = Version.parse("0.9.2")


def bundled_config(name: str, llamafactory: Version = DEFAULT_LLAMAFACTORY) -> dict[str, Any]:
    """Our equivalent of LLaMA-Factory's bundled ``examples/deepspeed/<name>`` for a LLaMA-Factory version
    (see :data:`BUNDLED_NAMES`). "auto" values are filled by transformers' ``HfTrainerDeepSpeedConfig`` from the
    training arguments, as in the original files."""
    if name not in BUNDLED_NAMES:
        raise KeyError(name)
    stage = int(name[4])
    offload = "_offload" in name
    overlap = llamafactory < _OVERLAP_COMM_OFF_SINCE
    zero: dict[str, Any] = {"stage": stage}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero.update({
            "overlap_comm": overlap, "contiguous_gradients": True, "sub_group_size": 1e9,
            "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
            "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True,
        })  # fmt: skip
    else:
        zero.update({
            "allgather_partitions": True, "allgather_bucket_size": 5e8, "overlap_comm": overlap,
            "reduce_scatter": True, "reduce_bucket_size": 5e8, "contiguous_gradients": True,
            "round_robin_gradients": True,
        })  # fmt: skip
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},  # fmt: skip
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def bundled_name(value: str) -> str | None:
    """The bundled file a ``deepspeed:`` path names (``.../examples/deepspeed/ds_z3_config.json``), or None."""
    parts = value.replace("\\", "/").rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3:-1] == ["examples", "deepspeed"] and parts[-1] in BUNDLED_NAMES:
        return parts[-1]
    return None


@dataclass
class DeepSpeedConfig:
    """A loaded DeepSpeed config. ``doc`` is None when the YAML gives the config inline as a mapping, when it
    is LLaMA-Factory's bundled file read from our copy (``bundled``), and when it could not be read.

    ``unresolved`` means the YAML names a DeepSpeed config that cfglint could not read (``problem`` says why):
    DeepSpeed is in use, but nothing in it is known, so ``stage`` is None and ``data`` is empty.
    """

    data: dict[str, Any]
    doc: Document | None
    path: Path | None
    #: Found only relative to the YAML's directory, not to the working directory LLaMA-Factory opens it from.
    relative_to_config: bool = False
    unresolved: bool = False
    problem: str | None = None  # why an unresolved config could not be read, for FILE002
    not_found: bool = False  # unresolved because no file exists at the places tried (not a broken file)
    bundled: str | None = None  # the name of LLaMA-Factory's bundled file this is our copy of

    @property
    def zero(self) -> dict[str, Any]:
        z = self.data.get("zero_optimization")
        return z if isinstance(z, dict) else {}

    @property
    def stage(self) -> int | None:
        """The ZeRO stage; 0 when the JSON has no ``zero_optimization`` (plain data parallel), -1 when the value
        is not a whole number (rule DS001 reports it), None when the config is ``unresolved``."""
        if self.unresolved:
            return None
        stage = self.zero.get("stage", 0)
        try:
            return int(stage)
        except (TypeError, ValueError, OverflowError):  # "auto", [3], inf, nan
            return -1

    def offload_device(self, which: str) -> str | None:
        """``cpu``/``nvme`` when ``offload_optimizer`` or ``offload_param`` moves states off the GPU."""
        section = self.zero.get(which)
        if not isinstance(section, dict):
            return None
        device = str(section.get("device", "none")).lower()
        return None if device in {"none", ""} else device

    @property
    def offload_optimizer(self) -> str | None:
        return self.offload_device("offload_optimizer")

    @property
    def offload_param(self) -> str | None:
        return self.offload_device("offload_param")


def resolve_deepspeed_path(value: str, config_path: Path, cwd: Path | None = None) -> tuple[Path | None, list[Path]]:
    """Find the JSON the way a user expects: as given (LLaMA-Factory opens it relative to the working
    directory), then relative to the YAML's own directory. Returns the path found and every place tried."""
    raw = Path(value).expanduser()
    if raw.is_absolute():
        return (raw if raw.is_file() else None), [raw]
    tried = []
    for base in (cwd or Path.cwd(), config_path.resolve().parent):
        candidate = (base / raw).resolve()
        if candidate not in tried:
            tried.append(candidate)
        if candidate.is_file():
            return candidate, tried
    return None, tried


def load_deepspeed(
    value: Any,
    config_path: Path,
    *,
    key_line: int | None = None,
    cwd: Path | None = None,
    llamafactory: Version = DEFAULT_LLAMAFACTORY,
    texts: dict[Path, str] | None = None,
) -> DeepSpeedConfig:
    """Load the ``deepspeed:`` value of a config: a path to a JSON file, or an inline mapping.

    Never raises for the DeepSpeed file itself: a path that does not resolve, a file that cannot be read or is
    not a DeepSpeed config gives an ``unresolved`` config with the ``problem`` (rule FILE002 reports it), so
    linting goes on. LLaMA-Factory's bundled files (:data:`BUNDLED_NAMES`) resolve to our copy when the path
    does not exist here. ``texts`` holds file contents to use instead of the disk (fixes not yet written).
    """
    del key_line  # kept for callers; the finding is placed on the `deepspeed` key by the rule
    if isinstance(value, dict):
        return DeepSpeedConfig(data=value, doc=None, path=None)
    if not isinstance(value, str) or not value.strip():
        return DeepSpeedConfig(
            data={}, doc=None, path=None, unresolved=True,
            problem=f"`deepspeed: {_shown(value)}` is not the path of a DeepSpeed JSON file",
        )  # fmt: skip
    value = value.strip()
    try:
        found, tried = resolve_deepspeed_path(value, config_path, cwd)
    except (OSError, ValueError):  # a name too long for the file system, a NUL in the path
        found, tried = None, [Path(value[:80])]
    if found is None:
        name = bundled_name(value)
        if name is not None:
            return DeepSpeedConfig(data=bundled_config(name, llamafactory), doc=None, path=Path(value), bundled=name)
        places = " or ".join(str(t) for t in tried)
        return DeepSpeedConfig(
            data={}, doc=None, path=Path(value), unresolved=True, not_found=True,
            problem=f"`deepspeed: {value}` not found here (looked for {places}); LLaMA-Factory opens it relative "
            "to the directory it is launched from, so the DeepSpeed settings are unknown to cfglint",
        )  # fmt: skip
    try:
        text = (texts or {}).get(found)
        if text is None:
            text = read_text(found, what="DeepSpeed JSON")
        data = _parse_json(text, found)
    except InputError as exc:
        return DeepSpeedConfig(data={}, doc=None, path=found, unresolved=True, problem=str(exc))
    if data and not (set(data) & DEEPSPEED_KEYS):
        return DeepSpeedConfig(
            data={}, doc=None, path=found, unresolved=True,
            problem=f"{found}: a JSON object with none of DeepSpeed's keys (such as `zero_optimization`), "
            "so not a DeepSpeed config",
        )  # fmt: skip
    from_config_dir = not Path(value).expanduser().is_absolute() and found != tried[0]
    return DeepSpeedConfig(data=data, doc=_document(text, found), path=found, relative_to_config=from_config_dir)


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_json(text: str, path: Path) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {k!r}: DeepSpeed refuses the file")
            out[k] = v
        return out

    if _depth(text) > _MAX_JSON_DEPTH:
        raise InputError(path, f"JSON nests more than {_MAX_JSON_DEPTH} levels deep; a DeepSpeed config nests three")
    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise InputError(path, "JSON nests too deeply to be a DeepSpeed config") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    except ValueError as exc:
        line = _find_duplicate_line(text, str(exc))
        raise InputError(path, f"invalid DeepSpeed JSON: {exc}", line=line) from None
    if not isinstance(data, dict):
        raise InputError(path, "a DeepSpeed config must be a JSON object", line=1, column=1)
    return data


_MAX_JSON_DEPTH = 32


def _depth(text: str) -> int:
    """The deepest bracket nesting of JSON text (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _find_duplicate_line(text: str, message: str) -> int | None:
    start = message.find("'")
    end = message.find("'", start + 1)
    if start < 0 or end < 0:
        return None
    needle = f'"{message[start + 1:end]}"'
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[1] if len(hits) > 1 else None


def _document(text: str, path: Path) -> Document:
    """Positions for every key of the JSON. JSON is YAML flow syntax, so the YAML composer gives marks."""
    doc = Document(path=path, text=text, data={})
    try:
        node = yaml.compose(text.replace("\t", " "), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        return doc
    if isinstance(node, yaml.MappingNode):
        _index(doc, node, "")
    return doc


def _index(doc: Document, node: yaml.MappingNode, prefix: str) -> None:
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        path = f"{prefix}{key_node.value}"
        ks = Span(
            doc.pos(doc.offset(key_node.start_mark.line, key_node.start_mark.column)),
            doc.pos(doc.offset(key_node.end_mark.line, key_node.end_mark.column)),
        )
        vs = Span(
            doc.pos(doc.offset(value_node.start_mark.line, value_node.start_mark.column)),
            doc.pos(doc.offset(value_node.end_mark.line, value_node.end_mark.column)),
        )
        doc.entries[path] = Entry(path, None, ks, vs)
        if isinstance(value_node, yaml.MappingNode):
            _index(doc, value_node, f"{path}.")
