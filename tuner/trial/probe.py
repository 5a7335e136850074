"""Memory probes for a trial process: peak RSS on the CPU, and the NVML view of the GPU.

torch's own counters miss what the driver holds for the process (the CUDA context, cuBLAS/NCCL workspaces,
non-PyTorch allocations), and on the CPU ``ru_maxrss`` can carry over the parent's high-water mark through
``vfork``/``exec``. So each probe reads the kernel's or the driver's figure and samples it in a thread while the
trial runs, keeping the maximum.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

SAMPLE_INTERVAL_S = 0.02


def vm_hwm_bytes(pid: int | str = "self") -> int | None:
    """The peak resident set of a process's current address space (``VmHWM``), reset by ``exec``."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def ru_maxrss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class Periodic:
    """Calls ``sample()`` at once and then every ``interval`` seconds in a daemon thread, until :meth:`halt`.

    The base of every memory sampler: a trial's (here) and a launched run's (:mod:`tuner.launch.monitor`).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def halt(self, timeout: float) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


class _Sampler(Periodic):
    """Calls ``read()`` every ``interval`` seconds and keeps the largest value."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(interval)
        self.peak = 0

    def read(self) -> int | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def sample(self) -> None:
        try:
            value = self.read()
        except Exception:  # noqa: BLE001 - a probe must never take the trial down
            return
        if value is not None and value > self.peak:
            self.peak = value

    def stop(self) -> int:
        self.halt(timeout=2)
        self.sample()
        return self.peak


class RssSampler(_Sampler):
    def read(self) -> int | None:
        return rss_bytes()

    def peak_rss(self) -> tuple[int, str]:
        """(bytes, how): the kernel's high-water mark where there is one, else the sampled maximum."""
        hwm = vm_hwm_bytes()
        if hwm is not None:
            return max(hwm, self.peak), "VmHWM"
        return max(self.peak, 0), "psutil samples"


@dataclass
class NvmlDevice:
    handle: Any
    index_label: str
    baseline_used: int  # device memory used before this process touched the GPU


def _visible_entry(local_rank: int) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if local_rank < len(entries):
            return entries[local_rank]
    return str(local_rank)


def open_nvml_device(local_rank: int) -> NvmlDevice | None:
    """The NVML handle of the GPU this rank will use, opened before CUDA is initialised (for the baseline)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        entry = _visible_entry(local_rank)
        if entry.startswith(("GPU-", "MIG-")):
            handle = pynvml.nvmlDeviceGetHandleByUUID(entry)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(entry))
        used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        return NvmlDevice(handle=handle, index_label=entry, baseline_used=used)
    except Exception:  # noqa: BLE001 - no NVML (driver, container, MIG): torch's counters remain
        return None


class NvmlSampler(_Sampler):
    """This process's GPU memory as the driver sees it.

    ``nvmlDeviceGetComputeRunningProcesses`` gives it per PID; inside a container the PIDs are the host's and do
    not match, and then the device's used memory less the baseline taken before CUDA started stands in.
    """

    def __init__(self, device: NvmlDevice, pid: int | None = None, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(interval)
        self.device = device
        self.pid = pid or os.getpid()
        self.method = "none"

    def read(self) -> int | None:
        import pynvml

        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self.device.handle)
        except Exception:  # noqa: BLE001 - not supported on this driver: fall back to the device total
            procs = []
        for proc in procs:
            if proc.pid == self.pid and proc.usedGpuMemory is not None:
                self.method = "process"
                return int(proc.usedGpuMemory)
        used = int(pynvml.nvmlDeviceGetMemoryInfo(self.device.handle).used)
        if self.method != "process":
            self.method = "device used - baseline"
        return max(0, used - self.device.baseline_used)
