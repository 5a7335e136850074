"""The trace oracle: the peak allocated memory of a real training step, counted op by op (imports torch).

``trace_step(setup)`` runs the real transformers model, PEFT and torch optimizer for ``setup`` on fake tensors
(no weights, no GPU) and counts every live storage at the CUDA caching allocator's block size; the peak is what
``torch.cuda.max_memory_allocated()`` would report for the same step, up to what kernels allocate inside one op.
It is the independent check of :mod:`tuner.memory.estimator` (``benchmarks/estimator_vs_trace.py``). Never
imported by the lint path.
"""

from tuner.memory.trace.live import BLOCK, LiveStorages, allocator_size
from tuner.memory.trace.run import TraceResult, TraceUnsupported, check_supported, trace_step

__all__ = ["BLOCK", "LiveStorages", "TraceResult", "TraceUnsupported", "allocator_size", "check_supported", "trace_step"]
