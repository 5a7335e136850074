"""Every number the estimator uses that does not follow from tensor shapes, with where it comes from.

``ESTIMATED`` numbers are derived from how the libraries allocate (source reading); ``CALIBRATED`` ones were
fitted to published or measured peaks. ``benchmarks/estimator_accuracy.py`` re-measures them on a GPU.
"""

from __future__ import annotations

MIB = 1024**2
GIB = 1024**3

ESTIMATED = "estimated"
CALIBRATED = "calibrated"

#: CUDA context + kernel images + cuBLAS/cuDNN handles outside PyTorch's allocator, as NVML sees it for one
#: process: about 500-600 MiB on H100 with torch 2.x (gpu_poor assumes 650 MB).
CUDA_CONTEXT_BYTES = 560 * MIB

#: NCCL communicator buffers per process when there is more than one rank (channels x peers x NCCL_BUFFSIZE
#: 4 MiB, plus proxy state). Grows slowly with the number of peers.
NCCL_BASE_BYTES = 256 * MIB
NCCL_PER_PEER_BYTES = 16 * MIB

#: Caching-allocator slack, once, on top of the live tensors (which the estimator counts exactly): the replay of
#: PyTorch's caching allocator (``tuner.memory.trace.allocator``: 512 B blocks, 2 MiB and 20 MiB segments, best fit,
#: splitting only remainders over 1 MiB in the large pool) on the allocations of the traced training steps of
#: ``benchmarks/estimator_vs_trace.py`` (0.5B-32B; LoRA, full, freeze; with and without checkpointing; foreach and
#: fused AdamW), fitted per byte of three kinds of tensor: frozen weights (allocated once, one segment each),
#: trainable weights + fp32 masters + optimizer states (allocated once but, for states, into blocks cached by the
#: first step's activations, which they then pin), and everything else at the peak (activations, logits, gradients).
#: ``SLACK_IN_USE``: reserved memory in segments that hold a live block, which an out-of-memory retry cannot give
#: back: what a run needs to fit (median error 1.6% of the tensors over 27 traced setups, worst 15% where full
#: fine-tuning's states pin activation segments). ``SLACK_CACHED``: the free segments a GPU with room to spare keeps
#: cached on top, to compare with ``max_memory_reserved()`` or nvidia-smi (median 3%, worst 11%).
SLACK_IN_USE = (0.018, 0.098, 0.052)
SLACK_CACHED = (0.0, 0.019, 0.148)
#: With ``expandable_segments`` the allocator maps pages into one growing segment per pool: no segment rounding and
#: little fragmentation. Not replayed; an estimate.
SLACK_EXPANDABLE = 0.02
#: Steps of varying length (no packing: each micro-batch padded to its longest row) against one step of cutoff_len,
#: in replays of the caching allocator with its give-backs (``tuner.memory.trace.allocator.min_capacity``) on the
#: traced steps of three setups x five shuffles of long-tailed lengths (``benchmarks/variable_length.py``): the range
#: of what such a run needs over the fixed-length step's need, and the most a roomy GPU reserved over the
#: fixed-length step's reserved. A note only: the estimate stays the step of the longest batch.
VARYING_NEED_EXTRA = (-0.183, 0.106)  # less where no batch of the run reached cutoff_len; median +0.5% to +1.3%
VARYING_RESERVED_EXTRA_MAX = 1.07

#: cuBLAS workspace (allocated through PyTorch's allocator on first GEMM; several streams share it).
CUBLAS_WORKSPACE_BYTES = 32 * MIB

#: Bytes per token per vocabulary entry live at the loss's backward peak (HF ``ForCausalLMLoss``: logits upcast to
#: fp32, ``cross_entropy`` = ``log_softmax`` + ``nll_loss``): the saved fp32 log-softmax (4), the NLL gradient (4)
#: and the log-softmax gradient (4). Counted by the trace oracle (``tuner.memory.trace``); the same with fp32 logits.
LOSS_BYTES_PER_VOCAB_TOKEN = 12.0
#: ... and at the end of the forward: the 16-bit logits (2), the saved log-softmax (4) and either the loss's fp32
#: upcast (inside the loss) or accelerate's fp32 copy of the returned logits (``convert_outputs_to_fp32``, after it) (4).
LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN = 10.0
#: With fp32 logits (``upcast_lmhead_output``, or an fp32 run) the upcast and the copy are the logits themselves.
LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN_FP32_LOGITS = 8.0
#: transformers 4.46-4.48 (``ForCausalLMLoss``) and, inside the model's forward, 4.45 and older shift the fp32 logits
#: into a contiguous copy before the cross-entropy, live with the log-softmax at the end of the forward: 4 B more
#: (14 with 16-bit logits; 12 where the forward returns fp32 logits, 4.45 and older). A shifted slice of a batch of one
#: is contiguous already and is not copied. 4.49 shifts the labels instead (huggingface/transformers#35646). Counted
#: by the trace oracle (``loss_shift``).
LOSS_SHIFT_COPY_BYTES_PER_VOCAB_TOKEN = 4.0
#: A model whose own code runs ``CrossEntropyLoss`` on the 16-bit logits, without autocast (DeepSpeed's 16-bit
#: engine, pure bf16): the saved 16-bit log-softmax, the NLL gradient and the log-softmax gradient (2 + 2 + 2) at the
#: backward peak; at the end of the forward the logits, their shifted contiguous copy and the log-softmax (2 + 2 + 2).
#: Qwen-7B's ``modeling_qwen.py`` (``QWenLMHeadModel.forward``) is such a model. Counted by the trace oracle. Under
#: autocast ``cross_entropy`` runs in fp32 anyway (it is on autocast's fp32 list), so nothing changes there.
LOSS_BYTES_PER_VOCAB_TOKEN_16BIT = 6.0
LOSS_FORWARD_BYTES_PER_VOCAB_TOKEN_16BIT = 6.0

#: bitsandbytes NF4/FP4: 4-bit codes plus per-64-value absmax. Double quantization stores the absmax as
#: 8-bit with an fp32 scale per 256 blocks (Dettmers et al. 2023): 0.5 + 1/64 + 4/(64*256) B/param.
NF4_BYTES = 0.5
NF4_CONSTANTS_DQ = 1 / 64 + 4 / (64 * 256)
NF4_CONSTANTS = 4 / 64
#: LLM.int8: int8 codes, the fp32 row scale is negligible per parameter.
INT8_BYTES = 1.0
#: HQQ/GPTQ/AWQ-style group quantization: a 16-bit scale and zero point per group of 64 (HQQ) or 128.
GROUP_CONSTANTS_64 = 4 / 64
GROUP_CONSTANTS_128 = 4 / 128

#: 8-bit optimizer states (bitsandbytes blockwise, torchao): one byte + an fp32 absmax per 256-value block.
STATE_8BIT = 1 + 4 / 256
STATE_4BIT = 0.5 + 4 / 128

#: HF DeepSpeed docs: overlap_comm "uses 4.5x the allgather_bucket_size and reduce_bucket_size values";
#: DeepSpeed stage 1/2 keeps one reduce buffer (two with overlap_comm) of reduce_bucket_size elements.
ZERO12_OVERLAP_BUFFERS = 2

#: DeepSpeed's CPU-side estimate multiplies host buffers by 1.5 (pinned staging, ``additional_buffer_factor``).
HOST_BUFFER_FACTOR = 1.5

#: Model types Liger's LLaMA-Factory integration patches (``model_utils/liger_kernel.py``); others run unpatched.
LIGER_MODEL_TYPES = frozenset(
    {
        "gemma", "gemma2", "gemma3", "gemma3_text", "glm4", "granite", "llama", "llama4", "llava", "mistral",
        "mixtral", "mllama", "olmo2", "paligemma", "phi3", "qwen2", "qwen2_vl", "qwen2_5_vl", "qwen3",
        "qwen3_moe", "qwen3_vl", "internvl",
    }
)  # fmt: skip

#: Host RAM of one training process outside any offload: the Python interpreter, torch/CUDA libraries,
#: tokenizer and data-loader workers. 2.5-4 GiB per rank is typical for an HF Trainer run.
HOST_PROCESS_BYTES = 3 * GIB
