"""What the training really used: each GPU's memory through NVML, or the process tree's RSS on the CPU.

A real run is observed from outside, so the figures are the driver's and the kernel's, not torch's: NVML's
``used`` per device (what ``nvidia-smi`` shows, CUDA context and NCCL buffers included), less what was already in
use on that device before the launch; on a machine without NVML, or for a ``use_cpu`` run, the summed resident
set of the child and all its descendants (torchrun's ranks included). Both are sampled every
:data:`SAMPLE_INTERVAL_S` in a daemon thread, so a spike shorter than that can be missed; an out-of-memory
verdict therefore also considers the device's capacity (see :mod:`tuner.launch.verdict`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.trial.probe import Periodic

SAMPLE_INTERVAL_S = 0.5
#: The timeline keeps at most this many points; past it, every other one is dropped and the stride doubles.
TIMELINE_POINTS = 240

RSS_METHOD = "peak RSS of the largest process in the run's tree (per rank, as trials measure it)"
NVML_METHOD = "NVML device memory used, less what was in use before the launch"


@dataclass
class DevicePeak:
    label: str  # the CUDA_VISIBLE_DEVICES entry (an index or a UUID), or "cpu"
    name: str
    total_bytes: int | None
    baseline_bytes: int  # in use before the launch (other processes)
    peak_used_bytes: int = 0  # the largest sampled figure, baseline included

    @property
    def peak_bytes(self) -> int:
        return max(0, self.peak_used_bytes - self.baseline_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.label, "name": self.name, "total_bytes": self.total_bytes,
                "baseline_bytes": self.baseline_bytes, "peak_used_bytes": self.peak_used_bytes,
                "peak_bytes": self.peak_bytes}  # fmt: skip


@dataclass
class Observed:
    kind: str  # "cuda" | "cpu"
    method: str  # NVML_METHOD | RSS_METHOD
    devices: list[DevicePeak]
    hardware: str  # a hardware profile name, else the GPU's name, else "cpu": the history's key
    interval_s: float
    samples: int = 0
    timeline: list[tuple[float, list[int]]] = field(default_factory=list)  # (seconds since start, bytes per device)
    notes: list[str] = field(default_factory=list)
    tree_peak_bytes: int | None = None  # CPU runs: the whole tree's RSS (dataset workers too), for host memory

    @property
    def peak_bytes(self) -> int | None:
        """The largest per-device peak: what is compared with a per-device estimate."""
        return max((d.peak_bytes for d in self.devices), default=None) if self.samples else None

    @property
    def peak_device(self) -> DevicePeak | None:
        return max(self.devices, key=lambda d: d.peak_bytes) if self.devices and self.samples else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "method": self.method, "hardware": self.hardware, "interval_s": self.interval_s,
            "samples": self.samples, "peak_bytes": self.peak_bytes, "devices": [d.to_dict() for d in self.devices],
            "timeline": [{"t": round(t, 2), "bytes": v} for t, v in self.timeline], "notes": list(self.notes),
            "tree_peak_bytes": self.tree_peak_bytes,
        }  # fmt: skip


class Monitor(Periodic):
    """Samples in a daemon thread from :meth:`watch` to :meth:`stop`; a failed read never stops the run."""

    def __init__(self, observed: Observed) -> None:
        super().__init__(observed.interval_s)
        self.observed = observed
        self._t0 = 0.0
        self._stride = 1
        self._tick = 0

    def read(self) -> list[int] | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def attach(self, pid: int) -> None:
        """Called with the child's pid once it runs."""

    def sample(self) -> None:
        try:
            values = self.read()
        except Exception:  # noqa: BLE001 - a probe must never take the run down
            return
        if values is None:
            return
        obs = self.observed
        obs.samples += 1
        for dev, v in zip(obs.devices, values, strict=False):
            dev.peak_used_bytes = max(dev.peak_used_bytes, v)
        self._tick += 1
        if self._tick % self._stride == 0:
            obs.timeline.append((time.monotonic() - self._t0, [max(0, v - d.baseline_bytes) for v, d in zip(values, obs.devices, strict=False)]))
            if len(obs.timeline) > TIMELINE_POINTS:
                obs.timeline[:] = obs.timeline[::2]
                self._stride *= 2

    def watch(self, pid: int) -> None:
        """Start sampling the run whose child is ``pid`` (run_child's ``on_start``)."""
        self._t0 = time.monotonic()
        self.attach(pid)
        self.start()

    def stop(self) -> Observed:
        self.halt(timeout=5)
        self.close()
        return self.observed

    def close(self) -> None:
        """Release what :meth:`read` holds."""


class RssMonitor(Monitor):
    """The largest RSS among the child and its descendants, which is what a trial's budget applies to (one rank),
    and the tree's summed RSS beside it (dataset workers, several ranks: what the host must hold)."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S, notes: list[str] | None = None) -> None:
        super().__init__(Observed("cpu", RSS_METHOD, [DevicePeak("cpu", "host memory", _host_total(), 0)], "cpu",
                                  interval_s, notes=list(notes or [])))  # fmt: skip
        self._root: Any = None

    def attach(self, pid: int) -> None:
        import psutil

        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def read(self) -> list[int] | None:
        import psutil

        if self._root is None:
            return None
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return None
        total = largest = 0
        for p in procs:
            try:
                rss = int(p.memory_info().rss)
            except psutil.Error:
                continue
            total += rss
            largest = max(largest, rss)
        if total:
            self.observed.tree_peak_bytes = max(self.observed.tree_peak_bytes or 0, total)
        return [largest] if largest else None


class NvmlMonitor(Monitor):
    def __init__(self, nvml: Any, handles: list[Any], devices: list[DevicePeak], hardware: str,
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:  # fmt: skip
        super().__init__(Observed("cuda", NVML_METHOD, devices, hardware, interval_s))
        self.nvml = nvml
        self.handles = handles

    def read(self) -> list[int] | None:
        return [int(self.nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles]

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - nothing to do about a failed shutdown
            pass


def _host_total() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def visible_entries(env: Mapping[str, str]) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES entries, or None when the variable is unset (all GPUs)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [e.strip() for e in value.split(",") if e.strip()]


def _open_nvml(env: Mapping[str, str], nvml: Any, interval_s: float) -> tuple[NvmlMonitor | None, str]:
    """An NVML monitor for the visible GPUs, or None and why not."""
    if nvml is None:
        try:
            from tuner.hardware.detect import load_nvml

            nvml = load_nvml()
        except ImportError:
            return None, "the `nvidia-ml-py` package is not installed"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU: the RSS fallback
        return None, f"NVML could not start ({exc})"
    try:
        entries = visible_entries(env)
        if entries is None:
            entries = [str(i) for i in range(int(nvml.nvmlDeviceGetCount()))]
        handles, devices = [], []
        for entry in entries:
            if entry.startswith(("GPU-", "MIG-")):
                h = nvml.nvmlDeviceGetHandleByUUID(entry)
            else:
                h = nvml.nvmlDeviceGetHandleByIndex(int(entry))
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            try:
                name = _text(nvml.nvmlDeviceGetName(h)).strip()
            except Exception:  # noqa: BLE001
                name = "unknown GPU"
            handles.append(h)
            devices.append(DevicePeak(entry, name, int(mem.total), int(mem.used)))
    except Exception as exc:  # noqa: BLE001 - a GPU we cannot read: better RSS than a crash
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110
            pass
        return None, f"NVML could not read the GPUs ({exc})"
    if not devices:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110
            pass
        return None, "NVML reports no GPU"
    from tuner.hardware.profiles import match_gpu

    profile = match_gpu(devices[0].name, devices[0].total_bytes)
    hardware = profile.name if profile is not None else devices[0].name
    return NvmlMonitor(nvml, handles, devices, hardware, interval_s), ""


def make_monitor(env: Mapping[str, str], *, use_cpu: bool, interval_s: float = SAMPLE_INTERVAL_S,
                 nvml: Any = None) -> Monitor:  # fmt: skip
    """The GPU monitor when NVML sees the run's GPUs, else the process-tree RSS monitor (with the reason)."""
    if use_cpu:
        return RssMonitor(interval_s, ["a CPU run (use_cpu: true)"])
    mon, why = _open_nvml(env, nvml, interval_s)
    if mon is None:
        return RssMonitor(interval_s, [f"no GPU memory figures: {why}"])
    return mon
