"""Live device memory as the CUDA caching allocator counts it, from the storages torch ops create.

:class:`LiveStorages` is a ``TorchDispatchMode``: every tensor an op returns is looked at, and a storage it has
not seen is added to the running total at its allocator size; a ``weakref.finalize`` on the storage takes it off
again when the last tensor (or view) that uses it is gone. The running total after every op, and its maximum, are
the live blocks the caching allocator hands out, each the request rounded up to its block size: what
``torch.cuda.memory_allocated()`` counts, except that the allocator also counts the unsplit rest (at most 1 MiB) of
a cached block it hands out whole; :mod:`tuner.memory.trace.allocator` replays that (``allocator=``).

The rounding is the caching allocator's ``round_size`` (PyTorch ``c10/cuda/CUDACachingAllocator.cpp``): a
request is rounded up to a multiple of ``kMinBlockSize`` = 512 bytes; an empty tensor allocates nothing.

It works the same on real tensors and on ``FakeTensor``s (whose storages have sizes but no data), which is what
lets a 32B model's training step be counted on a CPU. What it cannot see: memory a kernel allocates and frees
inside one op (cuBLAS workspaces, FlashAttention's backward accumulators), which never appears as an op output.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tuner.memory.trace.allocator import CachingAllocator

#: ``kMinBlockSize`` of the CUDA caching allocator: every block is a multiple of it.
BLOCK = 512


def allocator_size(nbytes: int) -> int:
    """The bytes the CUDA caching allocator counts for a request of ``nbytes`` (0 for an empty tensor)."""
    if nbytes <= 0:
        return 0
    return -(-nbytes // BLOCK) * BLOCK


class LiveStorages(TorchDispatchMode):
    """Counts live storages (see the module docstring). ``phase`` labels the peak and the per-phase maxima."""

    def __init__(self, snapshot: bool = False, allocator: CachingAllocator | None = None) -> None:
        super().__init__()
        self.live: dict[int, int] = {}  # StorageImpl address -> counted bytes
        #: optional replay of the caching allocator on the same allocations and frees (reserved memory)
        self.allocator = allocator
        self.handles: dict[int, int] = {}
        #: with ``snapshot``: what created each live storage (phase and op), and the live bytes by creator at the peak
        self.snapshot = snapshot
        self.origin: dict[int, str] = {}
        self.at_peak: dict[str, int] = {}
        self.label = "model"
        self.current = 0
        self.peak = 0
        self.peak_phase = ""
        self.phase = "setup"
        self.phase_peaks: dict[str, int] = {}
        self.ops = 0  # ops that returned tensors

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def _free(self, key: int) -> None:
        size = self.live.pop(key, None)
        if size is not None:
            self.current -= size
            self.origin.pop(key, None)
            if self.allocator is not None:
                self.allocator.free(self.handles.pop(key, 0))

    def _note(self) -> None:
        if self.current > self.peak:
            self.peak = self.current
            self.peak_phase = self.phase
            if self.snapshot:
                by: dict[str, int] = {}
                for key, size in self.live.items():
                    label = self.origin.get(key, "?")
                    by[label] = by.get(label, 0) + size
                self.at_peak = by
        if self.current > self.phase_peaks.get(self.phase, -1):
            self.phase_peaks[self.phase] = self.current

    def track(self, tensor: torch.Tensor, handle: int | None = None) -> None:
        """Count ``tensor``'s storage if it is new (or resized), until it is freed. ``handle``: the allocator block
        already holding it (see :meth:`CachingAllocator.malloc`), for storages allocated before tracking began."""
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        size = allocator_size(storage.nbytes())
        old = self.live.get(key)
        if old is None:
            if self.allocator is not None:
                self.handles[key] = self.allocator.malloc(storage.nbytes()) if handle is None else handle
            self.live[key] = size
            self.current += size
            if self.snapshot:
                self.origin[key] = self.label
            weakref.finalize(storage, self._free, key)
        elif old != size:  # resized in place (an out= op)
            self.live[key] = size
            self.current += size - old
            if self.allocator is not None:
                self.allocator.free(self.handles.pop(key, 0))
                self.handles[key] = self.allocator.malloc(storage.nbytes())
        self._note()

    def track_all(self, tensors: Iterable[torch.Tensor]) -> None:
        for t in tensors:
            self.track(t)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._note()

    # -- the mode ----------------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _SAME_DTYPE_OPS:
            _check_same_dtype(func, args)
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if tensors:  # ops that return tensors (queries such as prim.device or .item() are not counted)
            self.ops += 1
        if self.snapshot:
            self.label = f"{self.phase}: {func}"
        for t in tensors:
            self.track(t)
        return out


#: Matrix products whose CPU and CUDA kernels refuse operands of different floating dtypes; FakeTensor's meta
#: kernels do not check, so without this a fake run would go on where the real step stops.
_SAME_DTYPE_OPS = frozenset({
    torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default,
})  # fmt: skip


def _check_same_dtype(func: Any, args: Any) -> None:
    """Raise what the real kernel raises when the operands of a matrix product differ in dtype."""
    dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()}
    if len(dtypes) > 1:
        names = " != ".join(sorted(str(d).replace("torch.", "") for d in dtypes))
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {names} ({func})")
