"""The caching-allocator replay (``tuner.memory.trace.allocator``): PyTorch's native CUDA allocator rules, case by case.

Each case is one rule of ``c10/cuda/CUDACachingAllocator.cpp`` (default configuration, one stream), with the numbers
``torch.cuda.memory_allocated()`` / ``memory_reserved()`` would show. Pure Python: no torch needed.
"""

from __future__ import annotations

from tuner.memory.trace.allocator import CachingAllocator, allocation_size, round_size

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
