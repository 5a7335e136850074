"""PyTorch's CUDA caching allocator, replayed on a sequence of allocations and frees (pure Python, no CUDA).

The rules are those of the native backend with the default configuration (PyTorch ``c10/cuda/CUDACachingAllocator.cpp``,
``DeviceCachingAllocator``; one stream, no ``max_split_size_mb``, no ``expandable_segments``):

* a request is rounded up to a multiple of 512 B (``kMinBlockSize``; ``round_size``);
* requests up to 1 MiB (``kSmallSize``) come from the small pool, larger ones from the large pool;
* a request is served by the smallest cached free block of its pool that is large enough (best fit,
  ``get_free_block``); if there is none a new segment is reserved with ``cudaMalloc``: 2 MiB (``kSmallBuffer``)
  for a small request, 20 MiB (``kLargeBuffer``) for one under 10 MiB (``kMinLargeAlloc``), else the request
  rounded up to 2 MiB (``kRoundLarge``; ``get_allocation_size``);
* the block is split when the rest is worth keeping: at least 512 B in the small pool, more than 1 MiB in the
  large pool (``should_split``); otherwise the caller gets the whole block and ``allocated_bytes`` counts all of it;
* a freed block merges with free neighbours of its segment and stays cached;
* segments go back to the device only when a ``cudaMalloc`` would fail (or on ``empty_cache``): with a ``capacity``
  (the device memory PyTorch may use), a new segment that does not fit first makes the allocator give back every
  wholly free segment (``release_cached_blocks``; with no ``max_split_size_mb``, ``release_available_cached_blocks``
  gives back nothing), then it tries once more and raises :class:`AllocatorOutOfMemory` if it still does not fit.
  Without a capacity (a device with room to spare) nothing is ever given back.

``allocated`` and ``reserved`` are ``torch.cuda.memory_allocated()`` and ``memory_reserved()``; their maxima are
``max_memory_allocated()`` and ``max_memory_reserved()`` on a device with room to spare. ``in_use_segments`` is the
reserved memory an out-of-memory retry could not give back (segments holding at least one live block): its maximum
is close to what the run needs, but the blocks placed after a give-back can fragment differently and need more.
:func:`min_capacity` finds the need under these rules: it replays the recorded allocations and frees (``events``)
on smaller and smaller capacities, give-backs included.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

KMIN_BLOCK = 512
KSMALL_SIZE = 1 << 20
KSMALL_BUFFER = 2 << 20
KLARGE_BUFFER = 20 << 20
KMIN_LARGE_ALLOC = 10 << 20
KROUND_LARGE = 2 << 20


def round_size(nbytes: int) -> int:
    """``round_size``: at least 512 B, a multiple of 512 B."""
    return KMIN_BLOCK if nbytes < KMIN_BLOCK else -(-nbytes // KMIN_BLOCK) * KMIN_BLOCK


def allocation_size(size: int) -> int:
    """``get_allocation_size``: the segment ``cudaMalloc`` reserves for a (rounded) request nothing cached serves."""
    if size <= KSMALL_SIZE:
        return KSMALL_BUFFER
    if size < KMIN_LARGE_ALLOC:
        return KLARGE_BUFFER
    return -(-size // KROUND_LARGE) * KROUND_LARGE


class AllocatorOutOfMemory(MemoryError):
    """A request that does not fit in the capacity even after the cached segments were given back."""


@dataclass
class _Block:
    segment: int
    offset: int
    size: int
    small: bool
    allocated: bool = False
    prev: _Block | None = None
    next: _Block | None = None
    bid: int = 0


@dataclass
class CachingAllocator:
    """Replays ``malloc``/``free`` and keeps the allocator's statistics (see the module docstring)."""

    allocated: int = 0
    reserved: int = 0
    max_allocated: int = 0
    max_reserved: int = 0
    in_use_segments: int = 0
    max_in_use_segments: int = 0
    segments: int = 0  # segments ever reserved (also their ids); given-back ones are not subtracted
    #: device memory the allocator may reserve (None: unlimited, nothing is ever given back)
    capacity: int | None = None
    #: how many times a full capacity made the allocator give its cached segments back
    releases: int = 0
    #: when a list: every request and free, in order, for :func:`replay` (``(nbytes, handle)``; a free is ``(-1, handle)``)
    events: list[tuple[int, int]] | None = None
    _free: dict[bool, list[tuple[int, int, int, int]]] = field(default_factory=lambda: {True: [], False: []})
    _blocks: dict[int, _Block] = field(default_factory=dict)
    _segment_size: dict[int, int] = field(default_factory=dict)
    _segment_live: dict[int, int] = field(default_factory=dict)  # live blocks per segment
    _next_id: int = 0

    # -- pools -------------------------------------------------------------------------------------------------
    @staticmethod
    def _key(b: _Block) -> tuple[int, int, int, int]:
        return (b.size, b.segment, b.offset, b.bid)  # size first: best fit; then a stable address order

    def _insert(self, b: _Block) -> None:
        bisect.insort(self._free[b.small], self._key(b))

    def _remove(self, b: _Block) -> None:
        pool = self._free[b.small]
        i = bisect.bisect_left(pool, self._key(b))
        assert pool[i] == self._key(b)
        pool.pop(i)

    def _new_block(self, segment: int, offset: int, size: int, small: bool) -> _Block:
        self._next_id += 1
        b = _Block(segment, offset, size, small, bid=self._next_id)
        self._blocks[b.bid] = b
        return b

    # -- the API -----------------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes``; returns a handle for :meth:`free` (0 for an empty request, which allocates nothing)."""
        if nbytes <= 0:
            return 0
        size = round_size(nbytes)
        small = size <= KSMALL_SIZE
        pool = self._free[small]
        i = bisect.bisect_left(pool, (size, -1, -1, -1))
        if i < len(pool):
            block = self._blocks[pool.pop(i)[3]]
        else:
            seg_size = allocation_size(size)
            if self.capacity is not None and self.reserved + seg_size > self.capacity:
                self._release_cached_blocks()
                if self.reserved + seg_size > self.capacity:
                    raise AllocatorOutOfMemory(
                        f"{nbytes} B do not fit: {self.reserved} B reserved in segments holding live blocks, "
                        f"capacity {self.capacity} B")
            self.segments += 1
            seg = self.segments
            self._segment_size[seg] = seg_size
            self._segment_live[seg] = 0
            self.reserved += seg_size
            self.max_reserved = max(self.max_reserved, self.reserved)
            block = self._new_block(seg, 0, seg_size, small)
        remaining = block.size - size
        if (remaining >= KMIN_BLOCK) if small else (remaining > KSMALL_SIZE):
            rest = self._new_block(block.segment, block.offset + size, remaining, small)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            self._insert(rest)
        block.allocated = True
        self.allocated += block.size
        self.max_allocated = max(self.max_allocated, self.allocated)
        if self._segment_live[block.segment] == 0:
            self.in_use_segments += self._segment_size[block.segment]
            self.max_in_use_segments = max(self.max_in_use_segments, self.in_use_segments)
        self._segment_live[block.segment] += 1
        if self.events is not None:
            self.events.append((nbytes, block.bid))
        return block.bid

    def _release_cached_blocks(self) -> None:
        """``release_cached_blocks``: give every segment without a live block back to the device."""
        self.releases += 1
        for small, pool in self._free.items():
            keep = []
            for key in pool:  # a wholly free segment is one free block, the size of its segment (blocks merge)
                size, seg, offset, bid = key
                if offset == 0 and self._segment_live[seg] == 0 and size == self._segment_size[seg]:
                    del self._blocks[bid]
                    self.reserved -= self._segment_size.pop(seg)
                    del self._segment_live[seg]
                else:
                    keep.append(key)
            self._free[small] = keep  # still sorted

    def free(self, handle: int) -> None:
        if handle == 0:
            return
        if self.events is not None:
            self.events.append((-1, handle))
        block = self._blocks[handle]
        assert block.allocated, "double free"
        block.allocated = False
        self.allocated -= block.size
        self._segment_live[block.segment] -= 1
        if self._segment_live[block.segment] == 0:
            self.in_use_segments -= self._segment_size[block.segment]
        for neighbour in (block.prev, block.next):
            if neighbour is not None and not neighbour.allocated:
                self._remove(neighbour)
                del self._blocks[neighbour.bid]
                if neighbour is block.prev:
                    block.offset = neighbour.offset
                    block.prev = neighbour.prev
                    if neighbour.prev is not None:
                        neighbour.prev.next = block
                else:
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
                block.size += neighbour.size
        self._insert(block)


def replay(events: list[tuple[int, int]], capacity: int | None = None) -> CachingAllocator:
    """Run recorded ``events`` (:attr:`CachingAllocator.events`) on a fresh allocator with ``capacity``.

    Raises :class:`AllocatorOutOfMemory` where the run would stop."""
    a = CachingAllocator(capacity=capacity)
    handles: dict[int, int] = {}
    for nbytes, handle in events:
        if nbytes < 0:
            a.free(handles.pop(handle))
        else:
            handles[handle] = a.malloc(nbytes)
    return a


def min_capacity(events: list[tuple[int, int]], step: int = KROUND_LARGE) -> int:
    """The smallest capacity, in multiples of ``step``, on which ``events`` run without running out of memory.

    Bisection between nothing and the most reserved on an unlimited device (no run needs more). Fitting is close to
    monotonic in the capacity but not guaranteed to be: the value returned is one that runs, with ``step`` less
    failing. (The roomy run's allocated peak is not a safe lower bound: after a give-back, blocks land elsewhere and
    fewer unsplit remainders may be handed out whole.)"""
    roomy = replay(events)
    if roomy.max_reserved == 0:
        return 0
    lo = 0  # in steps: nothing fits in no memory
    hi = -(-roomy.max_reserved // step)  # in steps: runs (nothing is ever given back)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            replay(events, mid * step)
        except AllocatorOutOfMemory:
            lo = mid
        else:
            hi = mid
    return hi * step
