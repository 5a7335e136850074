"""From what a user wrote (a catalog alias, a directory, a hub id) to a :class:`ModelInfo`, offline.

The order follows what LLaMA-Factory itself would load: an existing local directory wins, then a hub id
already in the Hugging Face cache (read from disk, never downloaded), then the built-in catalog. Only the
standard library and this package are imported, because the lint path calls :func:`resolve_model_for_lint`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuner.models import catalog
from tuner.models.arch import Architecture
from tuner.models.vision import vision_tower

if TYPE_CHECKING:
    from tuner.models.params import ParamCounts

Source = Literal["catalog", "config.json", "hf-cache"]


class ModelError(LookupError):
    """A model that cannot be resolved; ``args[0]`` is a one-line message for the user."""


class UnknownModelError(ModelError):
    def __init__(self, message: str, spec: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.spec = spec
        self.suggestions = suggestions


class ModelConfigError(ModelError):
    """A ``config.json`` that exists but cannot be read as a decoder architecture."""


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: its architecture, where it came from, and hints for rules (template, chat, reasoning)."""

    name: str
    source: Source
    arch: Architecture
    path: Path | None = None  # the directory holding config.json (None for catalog entries)
    hub_id: str | None = None
    template: str | None = None  # the template LLaMA-Factory assigns this checkpoint; None for base checkpoints
    family_template: str | None = None  # the family's chat template, also for base checkpoints
    is_instruct: bool | None = None  # None: nothing says
    is_reasoning: bool | None = None
    published_params: int | None = None  # the checkpoint's published total, when the architecture is that checkpoint's

    @cached_property
    def params(self) -> ParamCounts:
        from tuner.models.params import count_params

        return count_params(self.arch)

    @property
    def total_params(self) -> int:
        return self.params.total

    def describe(self) -> str:
        """One line for reports: what the model is and how it was found."""
        where = {"catalog": "built-in catalog", "config.json": f"{self.path}/config.json",
                 "hf-cache": f"Hugging Face cache ({self.path})"}[self.source]
        return f"{self.name}: {self.arch.model_type}, {self.total_params / 1e9:.2f}B params, {self.arch.torch_dtype} (from {where})"


# -- config.json -> Architecture -------------------------------------------------------------------------------

# transformers' config defaults for the keys a checkpoint may leave out (Gemma 3 text_config omits most).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, tie_word_embeddings=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                    tie_word_embeddings=False),
    "mixtral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                    tie_word_embeddings=False, num_local_experts=8, num_experts_per_tok=2),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=32768,
                  tie_word_embeddings=False),
    "qwen2_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                      num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=32768,
                      tie_word_embeddings=False, num_experts=60, num_experts_per_tok=4,
                      moe_intermediate_size=1408, shared_expert_intermediate_size=5632),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=128, max_position_embeddings=32768,
                  tie_word_embeddings=False),
    "qwen3_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                      num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=32768,
                      tie_word_embeddings=False, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
                   tie_word_embeddings=True),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131072,
                        tie_word_embeddings=True),
    "qwen2_vl": dict(vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                     num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=32768,
                     tie_word_embeddings=False),
    "qwen2_5_vl": dict(vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                       num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=32768,
                       tie_word_embeddings=False),
}
_DEFAULTS["gemma3"] = _DEFAULTS["gemma3_text"]

_QKV_BIAS_ALWAYS = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}  # hard-coded in the modeling code
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}
_GEMMA_NORMS = {"gemma2", "gemma3", "gemma3_text"}  # pre/post feed-forward layernorms
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _dtype(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.removeprefix("torch.")


def architecture_from_config(cfg: Mapping[str, Any], *, where: str = "config.json") -> Architecture:
    """Read a Hugging Face ``config.json`` (as a dict) into an :class:`Architecture`.

    Composite configs (``text_config``/``vision_config``, as Gemma 3 and newer Qwen2-VL write them) are merged,
    keys a checkpoint may omit take transformers' defaults (listed in ``extra["defaulted"]``), and a key that
    is missing without a default raises :class:`ModelConfigError` naming it.
    """
    model_type = str(cfg.get("model_type") or "")
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), Mapping) else None
    merged: dict[str, Any] = {k: v for k, v in cfg.items() if k not in ("text_config", "vision_config")}
    text_type = model_type
    if text is not None:
        merged.update(text)
        text_type = str(text.get("model_type") or model_type)
    if not model_type:
        model_type = text_type
    if not model_type:
        raise ModelConfigError(f"{where}: no `model_type`; is this a transformers model directory?")
    if "kv_lora_rank" in merged:
        raise ModelConfigError(
            f"{where}: model_type `{model_type}` uses multi-head latent attention, which cfgtune cannot size yet"
        )
    defaults = _DEFAULTS.get(text_type) or _DEFAULTS.get(model_type) or {}
    defaulted: list[str] = []

    def get(key: str, *alts: str) -> Any:
        for k in (key, *alts):
            if merged.get(k) is not None:
                return merged[k]
        if key in defaults:
            defaulted.append(key)
            return defaults[key]
        return None

    def integer(key: str, *alts: str, required: bool = True, default: int = 0) -> int:
        v = get(key, *alts)
        if v is None:
            if required:
                raise ModelConfigError(
                    f"{where}: `{key}` is missing (model_type `{model_type}`); cfgtune needs it to size the model"
                )
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
            raise ModelConfigError(f"{where}: `{key}` must be a non-negative integer, got {v!r}")
        return int(v)

    hidden = integer("hidden_size", "n_embd", "d_model")
    layers = integer("num_hidden_layers", "n_layer", "num_layers")
    heads = integer("num_attention_heads", "n_head")
    if heads == 0 or hidden == 0 or layers == 0:
        raise ModelConfigError(f"{where}: `hidden_size`, `num_hidden_layers` and `num_attention_heads` must be > 0")
    kv = integer("num_key_value_heads", required=False, default=heads) or heads
    head_dim_raw = get("head_dim")
    head_dim = int(head_dim_raw) if isinstance(head_dim_raw, (int, float)) and not isinstance(head_dim_raw, bool) and head_dim_raw > 0 else None
    if head_dim is None and hidden % heads:
        raise ModelConfigError(f"{where}: `hidden_size` {hidden} is not divisible by `num_attention_heads` {heads}")

    # Mixture of experts, under each family's names
    experts = integer("num_experts", "num_local_experts", "n_routed_experts", required=False)
    inter = integer("intermediate_size", "n_inner", "ffn_dim", required=experts == 0, default=0)
    per_tok = integer("num_experts_per_tok", required=False) if experts else 0
    moe_inter = integer("moe_intermediate_size", required=False) if experts else 0
    if experts and not moe_inter:
        moe_inter = inter  # Mixtral: each expert is a full-size MLP
    shared = integer("shared_expert_intermediate_size", required=False) if experts else 0
    dense: tuple[int, ...] = ()
    if experts:
        only = merged.get("mlp_only_layers") or []
        step = merged.get("decoder_sparse_step") or 1
        only_set = {int(i) for i in only if isinstance(i, int)}
        step = int(step) if isinstance(step, int) and step > 0 else 1
        dense = tuple(i for i in range(layers) if i in only_set or (i + 1) % step != 0)
        if dense and not inter:
            raise ModelConfigError(f"{where}: `intermediate_size` is missing but layers {list(dense)} are dense")

    vocab = integer("vocab_size")
    tie_raw = cfg.get("tie_word_embeddings", merged.get("tie_word_embeddings"))
    if tie_raw is None:
        tie_raw = defaults.get("tie_word_embeddings", True)  # transformers' PretrainedConfig default
        defaulted.append("tie_word_embeddings")

    bias_flag = bool(get("attention_bias"))
    if text_type in _QKV_BIAS_ALWAYS or model_type in _QKV_BIAS_ALWAYS:
        qkv_bias, o_bias = True, False
    else:
        qkv_bias = o_bias = bias_flag

    dtype = _dtype(cfg.get("torch_dtype")) or _dtype(cfg.get("dtype")) or _dtype(merged.get("torch_dtype")) or _dtype(merged.get("dtype"))
    if dtype is None:
        dtype = "float32"  # what transformers loads when the checkpoint does not say
        defaulted.append("torch_dtype")

    vision_params = 0
    vision_linears: tuple[tuple[str, int, int, bool, int], ...] = ()
    extra: dict[str, Any] = {}
    vc = cfg.get("vision_config")
    if isinstance(vc, Mapping):
        tower = vision_tower(model_type, vc, hidden)
        if tower is None:
            extra["vision_unknown"] = True
        else:
            vision_params, vision_linears = tower

    for key in ("rope_theta", "rope_scaling", "sliding_window", "hidden_act", "hidden_activation", "rms_norm_eps"):
        if merged.get(key) is not None:
            extra[key] = merged[key]
    if defaulted:
        extra["defaulted"] = sorted(set(defaulted))
    if text_type != model_type:
        extra["text_model_type"] = text_type
    quant = cfg.get("quantization_config")
    archs = cfg.get("architectures")

    return Architecture(
        model_type=model_type,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=integer("max_position_embeddings", "n_positions", required=False, default=4096),
        tie_word_embeddings=bool(tie_raw),
        head_dim=head_dim,
        attention_bias=qkv_bias,
        o_proj_bias=o_bias,
        mlp_bias=bool(get("mlp_bias")),
        qk_norm=text_type in _QK_NORM or model_type in _QK_NORM,
        extra_norms_per_layer=2 if (text_type in _GEMMA_NORMS or model_type in _GEMMA_NORMS) else 0,
        torch_dtype=dtype,
        num_experts=experts,
        num_experts_per_tok=per_tok,
        moe_intermediate_size=moe_inter,
        shared_expert_intermediate_size=shared,
        vision_params=vision_params,
        quantization_config=dict(quant) if isinstance(quant, Mapping) else None,
        architectures=tuple(str(a) for a in archs) if isinstance(archs, list) else (),
        extra=extra,
        dense_layers=dense,
        vision_linears=vision_linears,
    )


# -- the Hugging Face cache, read offline ---------------------------------------------------------------------


def hf_hub_cache(env: Mapping[str, str] | None = None) -> Path:
    """Where ``huggingface_hub`` keeps downloads: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ~/.cache."""
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec))


def find_in_hf_cache(hub_id: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The cached snapshot directory holding ``config.json`` for ``hub_id`` (``refs/main`` first), or None."""
    cache = hf_hub_cache(env)
    folder = "models--" + hub_id.replace("/", "--")
    repo = cache / folder
    if not repo.is_dir():
        try:  # the Hub is case-insensitive about ids; the cache folder keeps the spelling of the download
            names = [n for n in os.listdir(cache) if n.lower() == folder.lower()]
        except OSError:
            return None
        if not names:
            return None
        repo = cache / names[0]
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except OSError:
            commit = ""
        if commit and (snapshots / commit / "config.json").is_file():
            return snapshots / commit
    try:
        found = [d for d in snapshots.iterdir() if (d / "config.json").is_file()]
    except OSError:
        return None
    if not found:
        return None
    return max(found, key=lambda d: (d / "config.json").stat().st_mtime)


# -- resolution -----------------------------------------------------------------------------------------------


def _name_hints(name: str) -> tuple[bool | None, bool | None]:
    """Chat/reasoning hints from a checkpoint's name, for models the catalog does not know."""
    low = name.lower()
    instruct: bool | None = None
    if re.search(r"(instruct|chat|-it\b|-it-|thinking|distill|-sft\b)", low):
        instruct = True
    elif re.search(r"(-base\b|-pt\b)", low):
        instruct = False
    reasoning = True if re.search(r"(\br1\b|-r1-|thinking|qwq|reason)", low) else None
    return instruct, reasoning


def _from_catalog(entry: catalog.CatalogEntry, variant: catalog.Variant) -> ModelInfo:
    return ModelInfo(
        name=variant.hub_id.split("/", 1)[-1],
        source="catalog",
        arch=entry.arch_for(variant),
        hub_id=variant.hub_id,
        template=variant.template,
        family_template=entry.template,
        is_instruct=variant.instruct,
        is_reasoning=variant.reasoning,
        published_params=entry.published_params,
    )


def _from_config_dir(directory: Path, source: Source, hub_id: str | None) -> ModelInfo:
    cfg = _read_json(directory / "config.json")
    arch = architecture_from_config(cfg, where=str(directory / "config.json"))
    hit = None
    for key in (hub_id, directory.name, cfg.get("_name_or_path")):
        if isinstance(key, str) and key:
            hit = catalog.lookup(key) or catalog.lookup(key.rstrip("/").rsplit("/", 1)[-1])
            if hit:
                break
    name = hub_id or directory.name
    if source == "hf-cache" and hub_id:
        name = hub_id
    if hit is None:
        instruct, reasoning = _name_hints(name)
        return ModelInfo(name=name, source=source, arch=arch, path=directory, hub_id=hub_id,
                         is_instruct=instruct, is_reasoning=reasoning)
    entry, variant = hit
    from tuner.models.params import count_params

    published = entry.published_params if entry.published_params == count_params(arch).total else None
    return ModelInfo(
        name=name,
        source=source,
        arch=arch,
        path=directory,
        hub_id=hub_id or variant.hub_id,
        template=variant.template,
        family_template=entry.template,
        is_instruct=variant.instruct,
        is_reasoning=variant.reasoning,
        published_params=published,
    )


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~", "\\")) or "\\" in spec or spec.count("/") > 1 or bool(re.match(r"^[A-Za-z]:", spec))


def _local_candidates(spec: str, base_dir: Path | None, cwd: Path | None) -> list[Path]:
    p = Path(spec).expanduser()
    if p.is_absolute():
        return [p]
    roots = [cwd if cwd is not None else Path.cwd()]
    if base_dir is not None and Path(base_dir) not in roots:
        roots.append(Path(base_dir))
    return [r / p for r in roots]


def _local(spec: str, base_dir: Path | None, cwd: Path | None) -> ModelInfo | None:
    if any(len(part) > 255 for part in Path(spec).parts):  # no such file name (ENAMETOOLONG), so not local
        return None
    for cand in _local_candidates(spec, base_dir, cwd):
        if cand.is_file() and cand.name == "config.json":
            return _from_config_dir(cand.parent, "config.json", None)
        if cand.is_dir():
            if (cand / "config.json").is_file():
                return _from_config_dir(cand, "config.json", None)
            if (cand / "adapter_config.json").is_file():
                raise ModelError(
                    f"`{spec}` is a LoRA adapter directory, not a model: put the base model in "
                    "`model_name_or_path` and this directory in `adapter_name_or_path`"
                )
            raise ModelError(f"directory `{cand}` has no config.json; point `model_name_or_path` at a model directory")
    return None


def _suggest(spec: str) -> list[str]:
    import difflib

    aliases = catalog.all_aliases()
    by_norm: dict[str, str] = {}
    for a in aliases:
        by_norm.setdefault(catalog.normalize(a), a)
    close = difflib.get_close_matches(catalog.normalize(spec), list(by_norm), n=3, cutoff=0.6)
    return [by_norm[c] for c in close]


def _resolve(spec: str, base_dir: Path | None, cwd: Path | None, env: Mapping[str, str] | None) -> ModelInfo | None:
    local = _local(spec, base_dir, cwd)
    if local is not None:
        return local
    if looks_like_hub_id(spec):
        snap = find_in_hf_cache(spec, env)
        if snap is not None:
            return _from_config_dir(snap, "hf-cache", spec)
    if _looks_like_path(spec):
        return None
    hit = catalog.lookup(spec)
    if hit is not None:
        return _from_catalog(*hit)
    return None


def resolve_model(
    spec: str,
    *,
    base_dir: str | Path | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelInfo:
    """Resolve a catalog alias, a local directory with ``config.json``, or a hub id (HF cache, then catalog).

    Relative paths are tried against ``cwd`` (where LLaMA-Factory will run; default: the current directory),
    then ``base_dir``. Nothing is downloaded. Raises :class:`ModelError` (a ``LookupError``) with a one-line
    message; for an unknown name it suggests the closest aliases and lists the known ones.
    """
    spec = str(spec).strip()
    if not spec:
        raise ModelError("no model given: pass a catalog alias, a directory with config.json, or a hub id")
    info = _resolve(spec, Path(base_dir) if base_dir else None, Path(cwd) if cwd else None, env)
    if info is not None:
        return info
    suggestions = _suggest(spec)
    hint = f"did you mean {', '.join(f'`{s}`' for s in suggestions)}? " if suggestions else ""
    if _looks_like_path(spec):
        where = ", ".join(str(p) for p in _local_candidates(spec, Path(base_dir) if base_dir else None,
                                                            Path(cwd) if cwd else None))
        raise UnknownModelError(f"model directory `{spec}` not found (looked at {where})", spec, suggestions)
    known = ", ".join(catalog.primary_aliases())
    cache = f"not in the Hugging Face cache ({hf_hub_cache(env)}), " if looks_like_hub_id(spec) else ""
    raise UnknownModelError(
        f"unknown model `{spec}`: not a local directory, {cache}not a catalog alias; {hint}"
        f"known aliases: {known} (add -instruct, or use a hub id, for other checkpoints)",
        spec,
        suggestions,
    )


def resolve_model_for_lint(
    spec: str,
    base_dir: str | Path | None,
    cwd: str | Path | None,
    env: Mapping[str, str] | None = None,
) -> ModelInfo:
    """:func:`resolve_model` for the linter: offline, silent, and a short reason when nothing is found.

    The reason becomes the "skipped" note of every rule that needs the model, so it says what was tried and
    how to give the linter the model.
    """
    spec = str(spec).strip()
    if not spec:
        raise LookupError("model unknown: `model_name_or_path` is empty")
    try:
        info = _resolve(spec, Path(base_dir) if base_dir else None, Path(cwd) if cwd else None, env)
    except ModelError as exc:
        raise LookupError(f"model unknown: {exc.args[0]}") from None
    except OSError as exc:  # a name too long for a path, an unreadable directory: a skip, not a crash
        shown = spec if len(spec) <= 80 else spec[:77] + "..."
        raise LookupError(f"model unknown: cannot look up `{shown}` ({exc.strerror or exc})") from None
    if info is not None:
        return info
    suggestions = _suggest(spec)
    hint = f" (did you mean `{suggestions[0]}`?)" if suggestions else ""
    if _looks_like_path(spec):
        reason = f"model unknown: directory `{spec}` not found"
    elif looks_like_hub_id(spec):
        reason = (f"model unknown: `{spec}` is not in the Hugging Face cache ({hf_hub_cache(env)}) "
                  f"nor the built-in catalog{hint}")
    else:
        reason = f"model unknown: `{spec}` is not a local directory nor a catalog alias{hint}"
    raise LookupError(reason + "; pass --model with a catalog alias or a directory holding config.json")
