"""GPU hardware profiles: one YAML per model under ``hw_profiles/``, loaded, validated and looked up here.

This module is on the lint path (``cfglint --hw NAME``), so it uses plain dataclasses and PyYAML, and loads
the files once, on first use. The YAMLs ship as package data of ``tuner.hw_profiles``; in a source checkout
that has not been installed they are read from the repository's ``hw_profiles/`` directory instead.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tuner.config.document import InputError

VENDORS = ("nvidia", "amd", "hygon")
GIB = 1024**3

#: A detected GPU matches a profile only when its memory is within this fraction of the profile's.
MEMORY_TOLERANCE = 0.10


class ProfileError(InputError):
    """A profile YAML that is malformed: names the file and the field, so whoever edited it can fix it."""

    def __init__(self, path: str | Path, message: str, field_name: str | None = None) -> None:
        if field_name:
            message = f"field `{field_name}`: {message}"
        super().__init__(path, message)
        self.field = field_name


@dataclass(frozen=True)
class HardwareProfile:
    """What rules, the estimator and the tuner need to know about one GPU model.

    Throughput figures are vendor datasheet numbers without sparsity. ``memory_gib`` is the total the driver
    reports (less than the marketing size: ECC and firmware reservations), which is what a run can use.
    ``interconnect_gbs`` is the GPU-to-GPU bandwidth per GPU, bidirectional, as vendors quote it.
    """

    name: str
    display: str
    vendor: str
    aliases: tuple[str, ...]
    nvml_patterns: tuple[str, ...]
    memory_gib: float
    compute_capability: tuple[int, int] | None
    bf16: bool
    fp8: bool
    flash_attn2: bool
    tflops_bf16: float | None
    tflops_fp16: float
    memory_bandwidth_gbs: float
    interconnect: str
    interconnect_gbs: float
    source: str = field(default="", compare=False, repr=False)
    _regexes: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    @property
    def compute_capability_str(self) -> str | None:
        cc = self.compute_capability
        return None if cc is None else f"{cc[0]}.{cc[1]}"

    def matches_name(self, device_name: str) -> bool:
        """Whether a device name as NVML (or ROCm, for AMD/Hygon) reports it is this model's."""
        name = _clean_device_name(device_name)
        return any(rx.search(name) for rx in self._regexes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, with the compute capability written the way the YAML writes it."""
        return {
            "name": self.name,
            "display": self.display,
            "vendor": self.vendor,
            "aliases": list(self.aliases),
            "nvml_patterns": list(self.nvml_patterns),
            "memory_gib": self.memory_gib,
            "memory_bytes": self.memory_bytes,
            "compute_capability": self.compute_capability_str,
            "bf16": self.bf16,
            "fp8": self.fp8,
            "flash_attn2": self.flash_attn2,
            "tflops_bf16": self.tflops_bf16,
            "tflops_fp16": self.tflops_fp16,
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "interconnect": self.interconnect,
            "interconnect_gbs": self.interconnect_gbs,
        }


# -- parsing and validation -----------------------------------------------------------------------------------

_FIELDS = (
    "name", "display", "vendor", "aliases", "nvml_patterns", "memory_gib", "compute_capability", "bf16", "fp8",
    "flash_attn2", "tflops_bf16", "tflops_fp16", "memory_bandwidth_gbs", "interconnect", "interconnect_gbs",
)  # fmt: skip
_ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_CC_RE = re.compile(r"^(\d+)\.(\d+)$")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_profile(data: Any, path: str | Path) -> HardwareProfile:
    """Validate one profile's mapping; every problem is a :class:`ProfileError` naming the file and field."""
    if not isinstance(data, dict):
        raise ProfileError(path, f"expected a mapping of profile fields, got {type(data).__name__}")
    missing = [f for f in _FIELDS if f not in data]
    if missing:
        raise ProfileError(path, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(map(str, data)) - set(_FIELDS))
    if unknown:
        raise ProfileError(path, f"unknown field(s): {', '.join(unknown)} (known: {', '.join(_FIELDS)})")

    def text(key: str) -> str:
        v = data[key]
        if not isinstance(v, str) or not v.strip():
            raise ProfileError(path, f"expected non-empty text, got {v!r}", key)
        return v.strip()

    def flag(key: str) -> bool:
        v = data[key]
        if not isinstance(v, bool):
            raise ProfileError(path, f"expected true or false, got {v!r}", key)
        return v

    def positive(key: str, allow_null: bool = False) -> float | None:
        v = data[key]
        if v is None and allow_null:
            return None
        if not _is_number(v) or v <= 0:
            raise ProfileError(path, f"expected a positive number, got {v!r}", key)
        return float(v)

    def text_list(key: str) -> tuple[str, ...]:
        v = data[key]
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
            raise ProfileError(path, f"expected a list of strings, got {v!r}", key)
        return tuple(str(x).strip() for x in v)

    name = text("name")
    if not _ID_RE.match(name):
        raise ProfileError(path, f"{name!r} is not a lowercase id like `h100-sxm-80g`", "name")
    stem = Path(str(path)).name.rsplit(".", 1)[0]
    if stem != name:
        raise ProfileError(path, f"{name!r} does not match the file name {stem!r}", "name")

    vendor = text("vendor")
    if vendor not in VENDORS:
        raise ProfileError(path, f"{vendor!r} is not one of {', '.join(VENDORS)}", "vendor")

    patterns = text_list("nvml_patterns")
    if not patterns:
        raise ProfileError(path, "needs at least one pattern", "nvml_patterns")
    regexes = []
    for p in patterns:
        try:
            regexes.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise ProfileError(path, f"pattern {p!r} is not a valid regex: {exc}", "nvml_patterns") from None

    cc_raw = data["compute_capability"]
    cc: tuple[int, int] | None
    if cc_raw is None:
        if vendor == "nvidia":
            raise ProfileError(path, 'an NVIDIA GPU needs one, like "9.0"', "compute_capability")
        cc = None
    else:
        m = _CC_RE.match(str(cc_raw)) if isinstance(cc_raw, (str, float)) else None
        if not m:
            raise ProfileError(path, f'expected text like "8.0" or null, got {cc_raw!r}', "compute_capability")
        cc = (int(m.group(1)), int(m.group(2)))
        if vendor != "nvidia":
            raise ProfileError(path, "only NVIDIA GPUs have a CUDA compute capability; use null", "compute_capability")

    bf16 = flag("bf16")
    tflops_bf16 = positive("tflops_bf16", allow_null=True)
    if bf16 and tflops_bf16 is None:
        raise ProfileError(path, "bf16 is true, so the bf16 throughput is needed", "tflops_bf16")
    if not bf16 and tflops_bf16 is not None:
        raise ProfileError(path, "bf16 is false, so this must be null", "tflops_bf16")

    return HardwareProfile(
        name=name,
        display=text("display"),
        vendor=vendor,
        aliases=text_list("aliases"),
        nvml_patterns=patterns,
        memory_gib=float(positive("memory_gib") or 0),
        compute_capability=cc,
        bf16=bf16,
        fp8=flag("fp8"),
        flash_attn2=flag("flash_attn2"),
        tflops_bf16=tflops_bf16,
        tflops_fp16=float(positive("tflops_fp16") or 0),
        memory_bandwidth_gbs=float(positive("memory_bandwidth_gbs") or 0),
        interconnect=text("interconnect"),
        interconnect_gbs=float(positive("interconnect_gbs") or 0),
        source=str(path),
        _regexes=tuple(regexes),
    )


def load_profile_text(text: str, path: str | Path) -> HardwareProfile:
    """Parse and validate one profile's YAML text."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # a safe loader: the C one when PyYAML has it
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(path, f"not valid YAML: {getattr(exc, 'problem', None) or exc}", line) from None
    return parse_profile(data, path)


# -- the installed set --------------------------------------------------------------------------------------------


def _profile_files() -> list[tuple[str, str]]:
    """(display path, text) of every shipped profile, from the package data or, uninstalled, the repo dir."""
    try:
        from importlib.resources import files

        root: Any = files("tuner.hw_profiles")
        entries = [e for e in root.iterdir() if e.name.endswith(".yaml")]
        prefix = "hw_profiles"
    except ModuleNotFoundError:  # a source checkout on PYTHONPATH: the package-dir mapping is not in effect
        import tuner

        root = Path(tuner.__file__).resolve().parent.parent / "hw_profiles"
        entries = sorted(root.glob("*.yaml")) if root.is_dir() else []
        prefix = "hw_profiles"
    out = [(f"{prefix}/{e.name}", e.read_text(encoding="utf-8")) for e in entries]
    return sorted(out)


def _norm(text: str) -> str:
    """Case- and separator-insensitive key: ``H100_SXM`` == ``h100-sxm``; ``80GB`` == ``80g``."""
    s = re.sub(r"[^a-z0-9]", "", text.lower())
    return re.sub(r"(\d)gb", r"\1g", s)


@dataclass(frozen=True)
class _Registry:
    profiles: tuple[HardwareProfile, ...]
    by_key: dict[str, HardwareProfile]
    spellings: dict[str, str]  # normalized key -> the id or alias as written


def build_registry(profiles: Iterable[HardwareProfile]) -> _Registry:
    """Index profiles by id and alias; two profiles claiming one name is an error naming both files."""
    by_key: dict[str, HardwareProfile] = {}
    spellings: dict[str, str] = {}
    ordered = sorted(profiles, key=lambda p: p.name)
    for p in ordered:
        for spelling in (p.name, *p.aliases):
            key = _norm(spelling)
            if not key:
                raise ProfileError(p.source, f"alias {spelling!r} has no letters or digits", "aliases")
            other = by_key.get(key)
            if other is not None and other is not p:
                raise ProfileError(
                    p.source,
                    f"{spelling!r} is already a name or alias of {other.name} ({other.source})",
                    "aliases",
                )
            by_key[key] = p
            spellings.setdefault(key, spelling)
    return _Registry(tuple(ordered), by_key, spellings)


@lru_cache(maxsize=1)
def _registry() -> _Registry:
    return build_registry(load_profile_text(text, path) for path, text in _profile_files())


def list_profiles() -> list[HardwareProfile]:
    """Every shipped profile, sorted by id."""
    return list(_registry().profiles)


def get_profile(name: str) -> HardwareProfile:
    """The profile for an id, an alias, or a device name as nvidia-smi prints it.

    Raises ``LookupError`` whose first argument is a one-line message with a suggestion and the known ids,
    which the lint context turns into the reason a hardware-aware rule was skipped.
    """
    reg = _registry()
    key = _norm(name)
    if key in reg.by_key:
        return reg.by_key[key]
    by_device = [p for p in reg.profiles if p.matches_name(name)]
    if len(by_device) == 1:
        return by_device[0]
    known = ", ".join(p.name for p in reg.profiles)
    if len(by_device) > 1:
        choices = " or ".join(f"`{p.name}`" for p in by_device)
        raise LookupError(f"hardware profile {name!r} is ambiguous: use {choices}. Known profiles: {known}")
    close = difflib.get_close_matches(key, list(reg.by_key), n=1, cutoff=0.6)
    hint = f"did you mean `{reg.spellings[close[0]]}`? " if close else ""
    raise LookupError(f"unknown hardware profile {name!r}: {hint}Known profiles: {known}")


def _clean_device_name(name: str | bytes) -> str:
    if isinstance(name, bytes):  # old pynvml releases return bytes
        name = name.decode("utf-8", "replace")
    return " ".join(name.split())


def match_gpu(nvml_name: str | bytes, total_bytes: int | None = None) -> HardwareProfile | None:
    """The profile for a detected device, or None when no profile fits.

    The name picks the candidates; the memory the driver reports picks among them (A100 40 vs 80 GB under
    older names, RTX 4090 vs the 48 GB modified card) and rejects a candidate whose memory is off by more
    than ``MEMORY_TOLERANCE`` (an unlisted variant is better reported as unknown than as the wrong card).
    Without a memory figure an ambiguous name gets the smallest candidate, so memory estimates stay safe.
    """
    name = _clean_device_name(nvml_name)
    candidates = [p for p in _registry().profiles if p.matches_name(name)]
    if not candidates:
        return None
    if total_bytes is None or total_bytes <= 0:
        return min(candidates, key=lambda p: p.memory_gib)

    def off(p: HardwareProfile) -> float:
        return abs(total_bytes - p.memory_bytes) / p.memory_bytes

    best = min(candidates, key=off)
    return best if off(best) <= MEMORY_TOLERANCE else None


def name_candidates(nvml_name: str | bytes) -> list[HardwareProfile]:
    """Profiles whose name patterns match, whatever the memory: used to explain a failed match."""
    name = _clean_device_name(nvml_name)
    return [p for p in _registry().profiles if p.matches_name(name)]
