"""Which GPUs this machine has, read through NVML and matched to hardware profiles.

NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``) is what ``nvidia-smi`` reads: it needs the
driver but not CUDA or torch, so detection is cheap and works before any framework is installed. Anything
that stops detection (no package, no driver, no GPU, no permission) becomes a reason in the result, never
an exception, because "no GPU here" is a normal answer on a laptop or a CI runner.

The NVML module is injectable (``detect_gpus(nvml=...)``, or replace :func:`load_nvml`) so tests can fake it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tuner.hardware.profiles import GIB, HardwareProfile, match_gpu

# NVML return codes (nvml.h) that have a plain-language meaning for a user.
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None
    driver_version: str | None
    cuda_driver_version: str | None
    profile: HardwareProfile | None
    error: str | None = None  # a device NVML lists but cannot query (fallen off the bus, no permission)

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def free_gib(self) -> float:
        return self.free_bytes / GIB

    @property
    def compute_capability_str(self) -> str | None:
        cc = self.compute_capability
        return None if cc is None else f"{cc[0]}.{cc[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "total_bytes": self.total_bytes,
            "total_gib": round(self.total_gib, 2),
            "free_bytes": self.free_bytes,
            "free_gib": round(self.free_gib, 2),
            "compute_capability": self.compute_capability_str,
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "profile": self.profile.name if self.profile else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class Detection:
    """The GPUs found, or, when there are none, why."""

    gpus: tuple[GpuInfo, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    reason: str | None = None  # set when no GPU could be listed
    visible_devices: str | None = field(default=None)  # CUDA_VISIBLE_DEVICES at detection time, if set

    @property
    def found(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": len(self.gpus),
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "cuda_visible_devices": self.visible_devices,
            "gpus": [g.to_dict() for g in self.gpus],
            "reason": self.reason,
        }


def load_nvml() -> Any:
    """The pynvml module; raises ImportError when nvidia-ml-py is not installed."""
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    if isinstance(value, bytes):  # pynvml before 11.5 returned bytes
        return value.decode("utf-8", "replace")
    return str(value)


def _error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _init_failure(exc: BaseException) -> str:
    code = _error_code(exc)
    if code == _NVML_ERROR_LIBRARY_NOT_FOUND:
        return "the NVIDIA driver is not installed (libnvidia-ml.so was not found)"
    if code == _NVML_ERROR_DRIVER_NOT_LOADED:
        return "the NVIDIA driver is not loaded (no NVIDIA GPU, or its kernel module failed to load)"
    if code == _NVML_ERROR_NO_PERMISSION:
        return "no permission to open the NVIDIA devices (/dev/nvidia*)"
    return f"NVML could not start: {exc}"


def _cuda_version(nvml: Any) -> str | None:
    for fn_name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        fn = getattr(nvml, fn_name, None)
        if fn is None:
            continue
        try:
            v = int(fn())
        except Exception:  # noqa: BLE001, S112 - an optional detail; NVML raises its own error types
            continue
        return f"{v // 1000}.{(v % 1000) // 10}"
    return None


def _device(nvml: Any, index: int, driver: str | None, cuda: str | None) -> GpuInfo:
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(handle)).strip()
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        total, free = int(mem.total), int(mem.free)
    except Exception as exc:  # noqa: BLE001 - one bad device must not hide the others
        return GpuInfo(index, "unknown", 0, 0, None, driver, cuda, None, error=str(exc) or type(exc).__name__)
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        cc: tuple[int, int] | None = (int(major), int(minor))
    except Exception:  # noqa: BLE001 - some vGPU setups do not report it
        cc = None
    return GpuInfo(index, name, total, free, cc, driver, cuda, match_gpu(name, total))


def detect_gpus(nvml: Any = None, env: dict[str, str] | None = None) -> Detection:
    """Every GPU NVML lists, each matched to a profile; on failure an empty result with a reason.

    NVML lists all GPUs regardless of ``CUDA_VISIBLE_DEVICES`` (and in PCI order, which CUDA does not use
    by default), so the variable is reported alongside rather than applied.
    """
    env = dict(os.environ) if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if nvml is None:
        try:
            nvml = load_nvml()
        except ImportError:
            return Detection(
                reason="the `nvidia-ml-py` package is not installed (pip install nvidia-ml-py, or cfgtune[tune])",
                visible_devices=visible,
            )
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError subclasses, or OSError from the loader
        return Detection(reason=_init_failure(exc), visible_devices=visible)
    try:
        try:
            driver: str | None = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            driver = None
        cuda = _cuda_version(nvml)
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            return Detection(
                driver_version=driver,
                cuda_driver_version=cuda,
                reason=f"NVML could not count the GPUs: {exc}",
                visible_devices=visible,
            )
        gpus = tuple(_device(nvml, i, driver, cuda) for i in range(count))
        reason = None if gpus else "the NVIDIA driver is loaded but reports no GPU"
        return Detection(gpus, driver, cuda, reason, visible)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - nothing useful to do about a failed shutdown
            pass
