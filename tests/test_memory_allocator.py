"""The caching-allocator replay (``tuner.memory.trace.allocator``): PyTorch's native CUDA allocator rules, case by case.

Each case is one rule of ``c10/cuda/CUDACachingAllocator.cpp`` (default configuration, one stream), with the numbers
``torch.cuda.memory_allocated()`` / ``memory_reserved()`` would show. Pure Python: no torch needed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.memory.trace.allocator import (
    AllocatorOutOfMemory,
    CachingAllocator,
    allocation_size,
    min_capacity,
    replay,
    round_size,
)

MIB = 1 << 20


def test_rounding_and_segment_sizes() -> None:
    assert [round_size(n) for n in (1, 512, 513)] == [512, 512, 1024]
    assert allocation_size(512) == 2 * MIB  # small pool: 2 MiB segments
    assert allocation_size(MIB) == 2 * MIB
    assert allocation_size(MIB + 512) == 20 * MIB  # 1-10 MiB: 20 MiB segments
    assert allocation_size(10 * MIB) == 10 * MIB  # from 10 MiB: rounded up to 2 MiB
    assert allocation_size(11 * MIB + 512) == 12 * MIB


def test_small_requests_share_a_2_mib_segment() -> None:
    a = CachingAllocator()
    a.malloc(100)
    a.malloc(1000)
    assert (a.allocated, a.reserved) == (512 + 1024, 2 * MIB)


def test_mid_requests_split_a_20_mib_segment() -> None:
    a = CachingAllocator()
    a.malloc(5 * MIB)
    a.malloc(5 * MIB)
    assert (a.allocated, a.reserved, a.segments) == (10 * MIB, 20 * MIB, 1)


def test_a_remainder_of_1_mib_or_less_is_not_split_and_counts_as_allocated() -> None:
    a = CachingAllocator()
    a.malloc(11 * MIB + 512)  # segment 12 MiB, remainder 0.5 MiB: the caller gets the whole block
    assert (a.allocated, a.reserved) == (12 * MIB, 12 * MIB)
    b = CachingAllocator()
    b.malloc(10 * MIB + 512)  # segment 12 MiB, remainder 1.5 MiB: split
    assert (b.allocated, b.reserved) == (10 * MIB + 512, 12 * MIB)


def test_freed_blocks_stay_cached_merge_and_are_reused_best_fit() -> None:
    a = CachingAllocator()
    x = a.malloc(5 * MIB)
    y = a.malloc(5 * MIB)
    big = a.malloc(30 * MIB)
    a.free(x)
    a.free(y)  # merges with x and with the free rest of the 20 MiB segment
    assert (a.allocated, a.reserved) == (30 * MIB, 50 * MIB)
    a.free(big)
    a.malloc(15 * MIB)  # the smallest fitting block is the 20 MiB one, not the 30 MiB one
    assert a.reserved == 50 * MIB and a.in_use_segments == 20 * MIB
    a.malloc(25 * MIB)  # the 30 MiB segment
    assert (a.reserved, a.segments, a.in_use_segments) == (50 * MIB, 2, 50 * MIB)


def test_in_use_segments_is_what_an_oom_retry_cannot_release() -> None:
    a = CachingAllocator()
    h = [a.malloc(12 * MIB) for _ in range(3)]
    a.free(h[0])
    a.free(h[2])
    assert (a.reserved, a.in_use_segments, a.max_in_use_segments) == (36 * MIB, 12 * MIB, 36 * MIB)
    assert a.max_allocated == 36 * MIB and a.malloc(0) == 0


def test_a_full_device_gives_back_wholly_free_segments_then_retries() -> None:
    # A longer batch than any before needs bigger blocks than the cached ones: on a roomy device the old segments
    # stay cached (reserved grows); on a device of 64 MiB the allocator gives them back and the request fits.
    roomy = CachingAllocator()
    tight = CachingAllocator(capacity=64 * MIB)
    for a in (roomy, tight):
        a.free(a.malloc(30 * MIB))
        a.free(a.malloc(40 * MIB))
    assert (roomy.reserved, roomy.max_reserved, roomy.releases) == (70 * MIB, 70 * MIB, 0)
    assert (tight.reserved, tight.max_reserved, tight.releases) == (40 * MIB, 40 * MIB, 1)
    assert tight.allocated == 0 and tight.max_allocated == 40 * MIB


def test_a_segment_holding_a_live_block_is_not_given_back() -> None:
    a = CachingAllocator(capacity=64 * MIB)
    keep = a.malloc(12 * MIB)  # its own 12 MiB segment, live
    a.free(a.malloc(30 * MIB))  # cached, wholly free
    big = a.malloc(50 * MIB)  # 12 + 30 + 50 > 64: the 30 MiB segment goes back, 12 + 50 fits
    assert (a.reserved, a.releases, a.in_use_segments) == (62 * MIB, 1, 62 * MIB)
    a.free(big)
    a.free(keep)
    try:
        b = CachingAllocator(capacity=64 * MIB)
        b.malloc(20 * MIB)
        b.malloc(50 * MIB)  # 20 MiB live: nothing to give back
    except AllocatorOutOfMemory as e:
        assert "capacity" in str(e)
    else:
        raise AssertionError("70 MiB of live blocks fitted in 64 MiB")


def test_replay_reproduces_the_recorded_run() -> None:
    a = CachingAllocator(events=[])
    h = [a.malloc(n) for n in (100, 5 * MIB, 30 * MIB, 700)]
    a.free(h[2])
    a.malloc(25 * MIB)
    a.free(h[0])
    assert a.events is not None and len(a.events) == 7
    b = replay(a.events)
    assert (b.allocated, b.reserved, b.max_allocated, b.max_reserved, b.max_in_use_segments) == (
        a.allocated, a.reserved, a.max_allocated, a.max_reserved, a.max_in_use_segments)


def test_min_capacity_is_what_the_run_needs_not_what_a_roomy_device_caches() -> None:
    # Batches of growing length, as a shuffled dataset delivers them: each new longest batch reserves a new segment
    # on a roomy device (an 8 MiB state in a 20 MiB segment whose rest takes the 10 MiB block, then 20 + 30 + 40:
    # 110 MiB), yet the run needs only what stays live across steps plus its longest step (20 + 40 = 60 MiB).
    a = CachingAllocator(events=[])
    a.malloc(8 * MIB)
    for n in (10, 20, 30, 40):
        a.free(a.malloc(n * MIB))
    assert a.events is not None and a.max_reserved == 110 * MIB
    need = min_capacity(a.events)
    assert need == 60 * MIB
    replay(a.events, need)
    try:
        replay(a.events, need - 2 * MIB)
    except AllocatorOutOfMemory:
        pass
    else:
        raise AssertionError("ran below the capacity min_capacity found")


_SIZES = st.one_of(
    st.integers(1, 1 << 20),  # small pool
    st.integers((1 << 20) + 1, 10 << 20),  # 20 MiB segments, shared
    st.integers(10 << 20, 64 << 20),  # a segment each
)


@st.composite
def _runs(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Random request and free sequences (every free of a live block), recorded as events."""
    a = CachingAllocator(events=[])
    live: list[int] = []
    for _ in range(draw(st.integers(1, 60))):
        if live and draw(st.booleans()):
            a.free(live.pop(draw(st.integers(0, len(live) - 1))))
        else:
            live.append(a.malloc(draw(_SIZES)))
    assert a.events is not None
    return a.events


@settings(max_examples=150, deadline=None)
@given(_runs())
def test_min_capacity_runs_and_lies_between_allocated_and_roomy_reserved(events: list[tuple[int, int]]) -> None:
    roomy = replay(events)
    need = min_capacity(events)
    assert roomy.max_allocated <= need <= -(-roomy.max_reserved // (2 * MIB)) * 2 * MIB
    tight = replay(events, need)  # runs, never holding more than the capacity
    assert tight.max_reserved <= need
    # where blocks land differs, so only which remainders are handed out whole (counted as allocated) can change
    assert abs(tight.max_allocated - roomy.max_allocated) <= len(events) * MIB
    if tight.releases == 0:
        assert tight.max_reserved == roomy.max_reserved  # nothing given back: the roomy run
