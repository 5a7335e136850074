"""What a rule can see: the config's values and positions, and lazily, hardware, model, data and memory.

Everything beyond the YAML text is resolved on first use and cached, so a run that selects no
hardware-aware rule never loads a hardware profile, and the lint path never imports torch. When something
cannot be resolved, the property is None and ``skip_reason(need)`` says why; rules that need it are skipped.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config.deepspeed import DeepSpeedConfig, load_deepspeed
from tuner.config.document import Document
from tuner.config.kind import ConfigKind, detect_kind
from tuner.config.resolved import RESOLVED_KEYS, ResolvedConfig, resolve
from tuner.config.schema import Schema, load_schema
from tuner.config.versions import TargetVersions, Version
from tuner.lint.rule import Need, SkipRule

_UNSET: Any = object()


class StageUnknown(SkipRule, LookupError):
    """The ZeRO stage was asked for, but the DeepSpeed config the YAML names could not be read.

    A rule that needs the stage is skipped with this reason (it is a :class:`SkipRule`), and lazy facts that
    need it (the memory estimate) are unknown with this reason (it is a :class:`LookupError`): never a guess.
    """


@dataclass
class LintOptions:
    """Everything the command line and the settings files add to what the YAML says."""

    hw: str | None = None  # a hardware profile name, e.g. "h100-80g"
    gpus: int | None = None  # GPUs per node the run will use
    nodes: int = 1
    command: str | None = None  # llamafactory-cli subcommand whose parser reads the file; None: detect the kind
    model: str | None = None  # overrides model_name_or_path for model lookups (a catalog alias, a dir)
    tokenizer: str | None = None  # a tokenizer dir or tokenizer.json for dataset statistics
    dataset_dir: str | None = None  # overrides dataset_dir
    host_ram_gib: float | None = None  # host RAM per node, for offload rules
    cwd: Path | None = None  # where the run will be launched from (relative paths)
    launch_dir_stated: bool = False  # the user said where the run is launched from (--data-root): cwd is known
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    target: TargetVersions = field(default_factory=TargetVersions)  # LLaMA-Factory and transformers versions
    file_texts: dict[Path, str] = field(default_factory=dict)  # contents to read instead of the disk (fixes in flight)

    @property
    def transformers_major(self) -> int:
        """Which transformers major the run uses: changes some keys and defaults."""
        return self.target.transformers_major


class Context:
    def __init__(self, doc: Document, options: LintOptions | None = None, schema: Schema | None = None) -> None:
        self.doc = doc
        options = options or LintOptions()
        #: What the file is for; the rules of other commands do not apply to it.
        self.kind: ConfigKind = detect_kind(doc.data, options.command)
        if options.command != self.kind.command:
            options = dataclasses.replace(options, command=self.kind.command)
        self.options = options
        self.schema = schema or load_schema()
        self._cache: dict[str, Any] = {}
        self._skip: dict[str, str] = {}
        #: Set by the runner before rules that judge the run itself (``tuner.lint.runner.RunState``).
        self.run: Any = None
        self.deepspeed: DeepSpeedConfig | None = None
        #: A `deepspeed:` that names a config cfglint could not read: DeepSpeed is in use, its stage unknown.
        self.deepspeed_unresolved: DeepSpeedConfig | None = None
        ds = doc.data.get("deepspeed")
        if ds:  # transformers tests `if self.deepspeed:`, so "" and {} mean no DeepSpeed
            loaded = load_deepspeed(
                ds, doc.path, cwd=self.options.cwd, llamafactory=self.options.target.llamafactory,
                texts=self.options.file_texts,
            )  # fmt: skip
            if loaded.unresolved:
                self.deepspeed_unresolved = loaded
            else:
                self.deepspeed = loaded

    # -- target versions ---------------------------------------------------------------------------------
    @property
    def lf(self) -> Version:
        """The LLaMA-Factory version linted for: ``ctx.lf >= v("0.9.2")``."""
        return self.options.target.llamafactory

    @property
    def transformers(self) -> Version:
        return self.options.target.transformers

    # -- values ------------------------------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data

    @property
    def path(self) -> Path:
        return self.doc.path

    def has(self, key: str) -> bool:
        """Whether the user wrote this key (a top-level name or a dotted path)."""
        return key in self.doc.data or key in self.doc.entries

    def get(self, key: str, default: Any = _UNSET) -> Any:
        """The value as written, else ``default`` if given, else LLaMA-Factory's default for the key."""
        if key in self.doc.data:
            return self.doc.data[key]
        if default is not _UNSET:
            return default
        spec = self.schema.get(key)
        return spec.default_for(self.options.target) if spec else None

    def flag(self, key: str) -> bool:
        """A boolean option as LLaMA-Factory would test it (``if args.key:``)."""
        return bool(self.get(key))

    def number(self, key: str, default: float | None = None) -> float | None:
        """A numeric value, or ``default`` when it is unset or not a number (the schema rule reports that)."""
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return default
        return v

    def as_list(self, key: str) -> list[str]:
        """A comma-separated or list-valued key, split the way LLaMA-Factory splits it."""
        v = self.get(key)
        if v is None:
            return []
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, list):
            return [str(p).strip() for p in v]
        return [str(v)]

    @property
    def stage(self) -> str:
        return str(self.get("stage") or "sft")

    @property
    def finetuning_type(self) -> str:
        return str(self.get("finetuning_type") or "lora")

    @property
    def is_train_command(self) -> bool:
        """The file is read by ``llamafactory-cli train`` (a training, evaluation or prediction run)."""
        return self.options.command == "train"

    @property
    def is_training(self) -> bool:
        """The file trains: read by ``llamafactory-cli train`` with ``do_train`` on."""
        return self.is_train_command and self.flag("do_train")

    @property
    def lora_rank(self) -> int | None:
        v = self.get("lora_rank")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def lora_alpha(self) -> int | float | None:
        """The alpha LLaMA-Factory will use: unset or 0 means ``2 * lora_rank``."""
        v = self.get("lora_alpha")
        if v in (None, 0) and self.lora_rank is not None:
            return self.lora_rank * 2
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    @property
    def packing(self) -> bool:
        """Effective packing: unset means ``stage == pt``; ``neat_packing`` turns it on."""
        if self.flag("neat_packing"):
            return True
        v = self.get("packing")
        return (self.stage == "pt") if v is None else bool(v)

    @property
    def uses_deepspeed(self) -> bool:
        """Whether the run uses DeepSpeed, whether or not cfglint could read its config."""
        return self.deepspeed is not None or self.deepspeed_unresolved is not None

    @property
    def zero_stage(self) -> int | None:
        """The DeepSpeed ZeRO stage, 0 for DeepSpeed without ZeRO, None without DeepSpeed.

        Raises :class:`StageUnknown` when the YAML names a DeepSpeed config that could not be read, so a rule
        that needs the stage is skipped instead of judging the run as if it had no DeepSpeed.
        """
        if self.deepspeed_unresolved is not None:
            raise StageUnknown(f"the ZeRO stage is unknown: {self.deepspeed_unresolved.problem}")
        return None if self.deepspeed is None else self.deepspeed.stage

    @property
    def zero3(self) -> bool:
        return self.zero_stage == 3

    @property
    def fsdp(self) -> bool:
        v = self.get("fsdp")
        return bool(v) and v != "" and v != []

    @property
    def gpus(self) -> int | None:
        """GPUs per node, from ``--gpus``, else the visible devices in the environment, else unknown."""
        if self.options.gpus is not None:
            return self.options.gpus
        env = self.options.env.get("CUDA_VISIBLE_DEVICES")
        if env:
            return len([d for d in env.split(",") if d.strip()])
        return None

    @property
    def world_size(self) -> int:
        return (self.gpus or 1) * max(1, self.options.nodes)

    @property
    def resolved(self) -> ResolvedConfig:
        """What LLaMA-Factory will run with for the target versions (``tuner.config.resolved``)."""

        def compute() -> ResolvedConfig:
            data = {k: self.get(k) if k != "optim" else self.doc.data.get(k) for k in RESOLVED_KEYS}  # optim: as written (its schema default is prose)
            data["deepspeed"] = self.doc.data.get("deepspeed")
            return resolve(
                data,
                kind=self.kind.kind,
                target=self.options.target,
                deepspeed=self.deepspeed,
                gpus_per_node=self.gpus,
                nodes=self.options.nodes,
                env=self.options.env,
            )

        return self.cached("resolved", compute)

    # -- lazily resolved facts ---------------------------------------------------------------------------
    def skip_reason(self, need: Need) -> str | None:
        """Why a need is unmet, or None when it is met."""
        value = {Need.HARDWARE: lambda: self.hardware, Need.MODEL: lambda: self.model, Need.DATASET: lambda: self.dataset}[need]()
        if value is not None:
            return None
        return self._skip.get(need.value, f"no {need.value} information")

    def _lazy(self, name: str, resolve: Any) -> Any:
        if name not in self._cache:
            try:
                self._cache[name] = resolve()
            except LookupError as exc:  # unknown profile, unresolvable model: a skip with a reason
                self._cache[name] = None
                self._skip[name] = str(exc.args[0]) if exc.args else str(exc)
        return self._cache[name]

    @property
    def hardware(self) -> Any:
        """The GPU profile (``tuner.hardware.profiles.HardwareProfile``) from ``--hw``, or None."""

        def resolve() -> Any:
            if not self.options.hw:
                raise LookupError("hardware unknown: pass --hw NAME (see `cfgtune hw --list`)")
            from tuner.hardware.profiles import get_profile

            return get_profile(self.options.hw)

        return self._lazy("hardware", resolve)

    @property
    def model(self) -> Any:
        """The model's architecture (``tuner.models.ModelInfo``) from config.json, the HF cache or the catalog."""

        def resolve() -> Any:
            spec = self.options.model or self.get("model_name_or_path")
            if not spec:
                raise LookupError("model unknown: no `model_name_or_path`")
            from tuner.models.resolve import resolve_model_for_lint

            return resolve_model_for_lint(
                str(spec), base_dir=self.doc.path.parent, cwd=self.options.cwd, env=self.options.env
            )

        return self._lazy("model", resolve)

    @property
    def dataset(self) -> Any:
        """Token-length statistics of the training data (``tuner.data``), or None."""

        def resolve() -> Any:
            from tuner.data.lint_stats import dataset_stats_for_lint

            return dataset_stats_for_lint(self)

        return self._lazy("dataset", resolve)

    @property
    def estimate(self) -> Any:
        """The memory estimate (``tuner.memory``) when both hardware and model are known, else None."""

        def resolve() -> Any:
            if self.hardware is None or self.model is None:
                raise LookupError("memory estimate needs --hw and a known model")
            from tuner.memory.from_config import estimate_for_context

            return estimate_for_context(self)

        return self._lazy("estimate", resolve)

    def cached(self, name: str, compute: Any) -> Any:
        """A per-file cache for rules that share an expensive derived value."""
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]
