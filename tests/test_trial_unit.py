"""The trial runner's decisions that need no child process: exit classification, launch commands, ZeRO configs,
throughput arithmetic, config mapping, and the import cost of the modules the CLI touches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.hardware.profiles import get_profile
from tuner.models.arch import Architecture
from tuner.trial.build import casts_trainable_to_fp32, config_kwargs
from tuner.trial.distributed import deepspeed_config
from tuner.trial.runner import (
    classify_exit,
    last_meaningful_line,
    measure_throughput,
    run_trial,
    worker_command,
)
from tuner.trial.spec import TrialResult, TrialSpec
from tuner.trial.throughput import flops_per_token, matmul_params

ROOT = Path(__file__).resolve().parent.parent
ARCH = Architecture("qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, vocab_size=512, attention_bias=True)

TORCHRUN_OOM = """\
[rank1]: Traceback (most recent call last):
[rank1]:   File "/x/tuner/trial/worker.py", line 200, in micro_step
[rank1]:     out = model(input_ids=input_ids, labels=labels)
[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB. GPU 1 has a total capacity of 79.11 GiB
W0101 12:00:00.000000 1234 torch/distributed/elastic/multiprocessing/api.py:900] Sending process 5678 closing signal SIGTERM
"""
CRASH = """\
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/x/tuner/trial/worker.py", line 10, in <module>
    import deepspeed
ModuleNotFoundError: No module named 'deepspeed'
/usr/lib/python3.11/warnings.py:1: UserWarning: something noisy
"""


def test_a_written_result_wins_and_keeps_its_status() -> None:
    written = TrialResult(status="over_budget", reason="peak 9 GiB > 8 GiB", peak_bytes=9)
    assert classify_exit(0, "", written) is written
    assert classify_exit(1, CRASH, TrialResult(status="crash")).reason == "ModuleNotFoundError: No module named 'deepspeed'"


def test_cuda_oom_in_stderr_is_oom_even_without_a_result() -> None:
    r = classify_exit(1, TORCHRUN_OOM, None)
    assert r.status == "oom"
    assert r.reason.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB")


@pytest.mark.parametrize("code", [-9, 137])
def test_a_killed_process_is_a_crash_that_says_so(code: int) -> None:
    r = classify_exit(code, "loading...\n", None)
    assert r.status == "crash"
    assert "killed (SIGKILL)" in r.reason and "out of memory" in r.reason


def test_other_failures_are_crashes_with_the_exception_line() -> None:
    r = classify_exit(1, CRASH, None)
    assert r.status == "crash"
    assert r.reason == "ModuleNotFoundError: No module named 'deepspeed'"
    assert classify_exit(-11, "", None).reason == "the trial process died of SIGSEGV"
    assert "without writing a result" in classify_exit(0, "", None).reason


def test_last_meaningful_line_skips_tracebacks_and_launcher_noise() -> None:
    assert last_meaningful_line("RuntimeError: CUDA error: an illegal memory access was encountered\n"
                                "CUDA kernel errors might be asynchronously reported\n"
                                "  File \"x.py\", line 3\n").startswith("RuntimeError: CUDA error")
    assert last_meaningful_line("plain message\n   \n") == "plain message"


def test_launch_command_uses_torchrun_for_several_gpus_and_for_deepspeed(tmp_path: Path) -> None:
    s, o = tmp_path / "spec.json", tmp_path / "result.json"
    one = worker_command(TrialSpec(arch=ARCH), s, o, "py")
    assert one == ["py", "-m", "tuner.trial.worker", "--spec", str(s), "--out", str(o)]
    four = worker_command(TrialSpec(arch=ARCH, world_size=4, zero_stage=3), s, o, "py")
    assert four[:3] == ["py", "-m", "torch.distributed.run"]
    assert four[four.index("--nproc_per_node") + 1] == "4"
    assert four[-6:] == ["-m", "tuner.trial.worker", "--spec", str(s), "--out", str(o)]
    assert "torch.distributed.run" in worker_command(TrialSpec(arch=ARCH, zero_stage=2), s, o, "py")


def test_zero_config_resolves_every_auto_from_the_spec() -> None:
    spec = TrialSpec(arch=ARCH, world_size=4, zero_stage=3, per_device_train_batch_size=2,
                     gradient_accumulation_steps=8, offload_optimizer=True, offload_param=True)
    cfg = deepspeed_config(spec)
    assert cfg["train_batch_size"] == 2 * 8 * 4
    assert cfg["train_micro_batch_size_per_gpu"] == 2 and cfg["gradient_accumulation_steps"] == 8
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["reduce_bucket_size"] == 64 * 64
    assert zero["stage3_param_persistence_threshold"] == 640
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "cpu"
    assert "auto" not in json.dumps(cfg)
    z2 = deepspeed_config(TrialSpec(arch=ARCH, world_size=2, zero_stage=2, precision="fp16"))["zero_optimization"]
    assert z2["stage"] == 2 and "offload_param" not in z2 and z2["reduce_bucket_size"] == 5e8


def test_mfu_uses_6n_plus_attention_against_the_profile_peak() -> None:
    arch = Architecture("llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, intermediate_size=14336, vocab_size=128256)
    # Llama-3-8B: 8.03B parameters, of which the 525M input embedding multiplies nothing.
    assert matmul_params(arch) == 8_030_261_248 - 128256 * 4096
    fpt = flops_per_token(arch, 2048)
    assert fpt == 6 * matmul_params(arch) + 12 * 32 * 4096 * 2048
    spec = TrialSpec(arch=arch, cutoff_len=2048, per_device_train_batch_size=2, world_size=8,
                     gradient_accumulation_steps=4)
    result = TrialResult(status="ok", micro_step_s=0.5, optimizer_step_s=0.2)
    h100 = get_profile("h100-sxm-80g")
    tp = measure_throughput(result, spec, h100)
    assert tp is not None
    tokens = 2 * 2048 * 8 * 4
    assert tp.step_time_s == pytest.approx(4 * 0.5 + 0.2)
    assert tp.tokens_per_s == pytest.approx(tokens / 2.2)
    assert tp.tokens_per_s_per_device == pytest.approx(tokens / 2.2 / 8)
    assert tp.mfu == pytest.approx(fpt * tokens / 2.2 / (8 * 989e12))
    assert 0.3 < tp.mfu < 0.6
    more_ga = measure_throughput(result, spec, h100, grad_accum=16)
    assert more_ga is not None and more_ga.tokens_per_s > tp.tokens_per_s  # the optimizer step amortises
    assert measure_throughput(TrialResult(status="oom"), spec, h100) is None
    cpu = TrialSpec(arch=arch, device="cpu")
    assert measure_throughput(result, cpu, h100).mfu is None  # type: ignore[union-attr]


def test_config_mapping_and_fallbacks() -> None:
    mt, kw, notes = config_kwargs(Architecture("internlm2", 64, 2, 4, 2, 128, 512))
    assert mt == "llama" and "llama model of the same shapes stands in" in notes[0]
    assert kw["num_key_value_heads"] == 2 and kw["use_cache"] is False
    mt, kw, notes = config_kwargs(Architecture("gemma3", 64, 2, 4, 2, 128, 512, head_dim=32))
    assert mt == "gemma3_text" and kw["head_dim"] == 32 and "language model only" in notes[0]
    moe = Architecture("qwen3_moe", 64, 2, 4, 2, 128, 512, num_experts=8, num_experts_per_tok=2,
                       moe_intermediate_size=32, dense_layers=(0,))
    mt, kw, _ = config_kwargs(moe)
    assert mt == "qwen3_moe" and kw["num_experts"] == 8 and kw["mlp_only_layers"] == [0]
    assert kw["output_router_logits"] is True  # LLaMA-Factory trains MoE with the router loss


def test_trainable_upcast_follows_llamafactory() -> None:
    assert casts_trainable_to_fp32(TrialSpec(arch=ARCH))
    assert not casts_trainable_to_fp32(TrialSpec(arch=ARCH, precision="pure_bf16"))
    assert not casts_trainable_to_fp32(TrialSpec(arch=ARCH, zero_stage=3, world_size=2))
    assert casts_trainable_to_fp32(TrialSpec(arch=ARCH, zero_stage=3, world_size=2, quantization_bit=4))


def test_run_trial_never_raises_for_a_launch_that_cannot_start(tmp_path: Path) -> None:
    r = run_trial(TrialSpec(arch=ARCH, device="cpu"), timeout_s=10, workdir=tmp_path, python=str(tmp_path / "nope"))
    assert r.status == "error"
    assert "could not run the trial" in r.reason


def test_the_trial_modules_import_no_heavy_package() -> None:
    code = ("import sys, json\nimport tuner.trial.runner, tuner.trial.worker, tuner.trial.build, tuner.trial.probe\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'peft', 'deepspeed', 'pynvml', 'psutil', 'optuna'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cpu_trials_run_with_sleeping_openmp_threads_unless_the_user_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.trial.runner import _child_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _child_env(None, "cpu")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in _child_env(None, "cuda")
    assert _child_env({"OMP_WAIT_POLICY": "ACTIVE"}, "cpu")["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert _child_env(None, "cpu")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_barrier_hook_waits_for_the_other_trial_and_announces_itself(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-worker tests' rendezvous: a trial announces itself and goes on once enough trials have."""
    import threading
    import time

    from tuner.trial import worker

    monkeypatch.setenv(worker.HOOK_ENV, "barrier@start")
    monkeypatch.setenv(worker.BARRIER_ENV, str(tmp_path))
    released = threading.Event()
    waiter = threading.Thread(target=lambda: (worker._hook("start"), released.set()))
    waiter.start()
    time.sleep(0.5)
    assert not released.is_set() and len(list(tmp_path.glob("trial-*"))) == 1  # alone: still waiting
    (tmp_path / "trial-other").touch()  # the other worker's trial arrives
    waiter.join(timeout=10)
    assert released.is_set()
    worker._hook("build")  # another phase: nothing happens
