"""`cfgtune launch` for real: a fake `llamafactory-cli` on PATH, its output, exit code, memory and verdict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from launch_config import CONFIG

import tuner.hardware.detect as detect_mod
from tuner.cli.tune import cli
from tuner.launch.provenance import sidecar_path, write_provenance
from tuner.launch.verdict import Reference, detect_oom, judge, oom_floor, torch_oom_need

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
MIB = 1024**2

#: The stand-in for LLaMA-Factory; FAKE_MODE picks what it does.
FAKE_CLI = r'''#!/usr/bin/env python3
import os, signal, sys, time
mode = os.environ.get("FAKE_MODE", "alloc")
print("fake trainer:", " ".join(sys.argv[1:]), "CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"), flush=True)
if mode == "alloc":  # hold ~150 MiB for a while, like a training step
    blob = bytearray(150 * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    time.sleep(0.6)
    print("{'loss': 1.2345, 'epoch': 1.0}", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
elif mode == "workers":  # 150 MiB here and 150 MiB in each of two dataset workers
    import subprocess
    hold = "b = bytearray(150 * 1024 * 1024); b[::4096] = b'\\1' * len(b[::4096]); import time; time.sleep(1.2)"
    kids = [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(2)]
    blob = bytearray(150 * 1024 * 1024)
    blob[::4096] = b"\1" * len(blob[::4096])
    for k in kids:
        k.wait()
elif mode == "gpu":  # tell the fake NVML what "GPU 0" holds
    for mib in (2000, 6000, 3000):
        open(os.environ["FAKE_GPU_FILE"], "w").write(str(mib))
        time.sleep(0.3)
    print("{'train_runtime': 1.0}", flush=True)
elif mode == "oom":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
          "79.10 GiB of which 1.05 GiB is free. Including non-PyTorch memory, this process has 78.00 GiB memory in "
          "use.", file=sys.stderr, flush=True)
    sys.exit(1)
elif mode == "fail":
    sys.exit(3)
elif mode == "sleep":  # stop cleanly on SIGINT, as the HF trainer does after saving
    def stop(signum, frame):
        print("saved checkpoint", flush=True)
        sys.exit(130)
    signal.signal(signal.SIGINT, stop)
    print("training...", flush=True)
    while True:
        time.sleep(0.05)
elif mode == "stubborn":  # ignores SIGINT and SIGTERM: only SIGKILL stops it
    signal.signal(signal.SIGINT, lambda s, f: print("ignoring SIGINT", flush=True))
    signal.signal(signal.SIGTERM, lambda s, f: print("ignoring SIGTERM", flush=True))
    import subprocess  # a "rank" in a session of its own, as torchrun starts them, as stubborn as its parent
    rank = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"], start_new_session=True)
    open("rank.pid", "w").write(str(rank.pid))  # a file: lines after "training..." may sit in the test's read buffer
    print("training...", flush=True)
    while True:
        time.sleep(0.05)
'''


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with tuned.yaml, a fake llamafactory-cli first on PATH, and a private CFGTUNE_HOME."""
    monkeypatch.chdir(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "llamafactory-cli"
    fake.write_text(FAKE_CLI)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CFGTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "tuned.yaml").write_text(CONFIG)
    return tmp_path


class NoNvml:
    def nvmlInit(self) -> None:
        raise RuntimeError("NVML Shared Library Not Found")


class FileNvml:
    """Two fake H100s; GPU 0's used memory is 500 MiB plus what the fake trainer wrote to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        extra = int(self.path.read_text() or 0) * MIB if h == 0 and self.path.exists() else 0
        used = 500 * MIB + extra
        return SimpleNamespace(total=81559 * MIB, free=81559 * MIB - used, used=used)


def launch(args: list[str], monkeypatch: pytest.MonkeyPatch, mode: str = "alloc", nvml: Any = None) -> Any:
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.setattr(detect_mod, "load_nvml", lambda: nvml or NoNvml())
    return CliRunner().invoke(cli, ["launch", *args, "--sample-interval", "0.05"], catch_exceptions=False)


def history(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "home" / "history.jsonl").read_text().splitlines()]


# -- a run on the CPU path (no NVML here) -------------------------------------------------------------------------


def test_output_streams_through_and_memory_is_measured_and_recorded(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = launch(["tuned.yaml"], monkeypatch)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "fake trainer: train tuned.yaml" in out and "{'loss': 1.2345, 'epoch': 1.0}" in out
    assert "a warning on stderr" in result.stderr  # the child's stderr stays stderr
    assert "measured: peak RSS of the largest process" in out
    assert "the whole process tree (dataset workers included) peaked at" in out
    assert "no trial measurement (not tuned by cfgtune auto)" in out
    assert "the estimate said" in out and "not comparable" in out  # RSS vs a GPU estimate, said honestly
    # the record sits next to the config (the fake made no output_dir), the history got one line
    rec = json.loads((work / "tuned.launch.json").read_text())
    assert rec["exit_code"] == 0 and rec["oom"] is False and rec["device"] == "cpu"
    assert 150 * MIB <= rec["observed_peak_bytes"] <= 1024 * MIB  # the fake held 150 MiB
    assert rec["settings"]["per_device_train_batch_size"] == 4 and rec["settings"]["lora_rank"] == 16
    assert rec["settings"]["cutoff_len"] == 1024 and rec["settings"]["gradient_checkpointing"] is True
    assert rec["estimate_raw_bytes"] and rec["trial_peak_bytes"] is None
    assert rec["model"] and rec["duration_s"] >= 0.5
    assert rec["measured"]["timeline"]
    lines = history(work)
    assert len(lines) == 1 and lines[0]["config_sha256"] == rec["config_sha256"]
    assert f"history: {work / 'home' / 'history.jsonl'}" in out


def test_a_cpu_run_is_judged_by_its_largest_process_like_a_trial(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = launch(["tuned.yaml"], monkeypatch, mode="workers")
    assert result.exit_code == 0, result.output
    rec = json.loads((work / "tuned.launch.json").read_text())
    peak, tree = rec["observed_peak_bytes"], rec["measured"]["tree_peak_bytes"]
    assert 150 * MIB <= peak < 300 * MIB  # one process: the trainer, not its workers
    assert tree >= 400 * MIB  # the three together, reported beside it


def test_record_goes_to_the_output_dir_when_the_run_made_it(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "saves" / "q").mkdir(parents=True)
    assert launch(["tuned.yaml"], monkeypatch).exit_code == 0
    assert json.loads((work / "saves" / "q" / "cfgtune-launch.json").read_text())["exit_code"] == 0
    assert not (work / "tuned.launch.json").exists()


def test_the_exit_code_passes_through(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = launch(["tuned.yaml"], monkeypatch, mode="fail")
    assert result.exit_code == 3
    assert "exit code 3" in result.output and "not out of memory" in result.output
    assert history(work)[0]["exit_code"] == 3


def _sidecar(work: Path, calibrated: int, peak: int) -> None:
    write_provenance(work / "tuned.yaml", {
        "model": "qwen2.5-7b", "hardware": "NVIDIA H100 80GB HBM3", "device": "cuda", "world_size": 1,
        "ceiling_bytes": int(0.9 * 79.6 * GIB),
        "trial": {"number": 7, "peak_bytes": peak, "tokens_per_s": 1234.0, "predicted_bytes": calibrated - GIB,
                  "calibrated_bytes": calibrated, "prediction_basis": "fitted to 2 measured trial(s) of this regime"},
        "study": {"name": "cfgtune-qwen", "storage": "sqlite:///study.db"},
    })  # fmt: skip


def test_oom_names_the_predictions_that_were_wrong(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sidecar(work, calibrated=60 * GIB, peak=64 * GIB)
    result = launch(["tuned.yaml"], monkeypatch, mode="oom", nvml=FileNvml(work / "gpu0"))
    assert result.exit_code == 1
    assert "torch.OutOfMemoryError: CUDA out of memory" in result.stderr  # streamed
    # torch said 78 GiB in use + 2 GiB tried: the run needed at least 80 GiB
    assert ("the run ran out of memory at 80.0 GiB; the estimate said 60.0 GiB (-25%), trial #7 measured 64.0 GiB "
            "(-20%): both under-predicted") in result.output  # fmt: skip
    rec = history(work)[0]
    assert rec["oom"] is True and rec["needed_bytes"] == 80 * GIB and rec["trial_peak_bytes"] == 64 * GIB
    assert rec["verdict"]["under_predicted"] == ["the estimate", "trial #7"]
    assert rec["hardware"] == "h100-sxm-80g"  # the profile NVML's name matches: the history key


def test_nvml_path_reports_each_gpu_and_compares_with_the_trial(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sidecar(work, calibrated=5 * GIB, peak=5 * GIB + 512 * MIB)
    gpu_file = work / "gpu0"
    monkeypatch.setenv("FAKE_GPU_FILE", str(gpu_file))
    result = launch(["tuned.yaml", "--gpus", "2"], monkeypatch, mode="gpu", nvml=FileNvml(gpu_file))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "CUDA_VISIBLE_DEVICES=0,1" in out and "FORCE_TORCHRUN=1" in out
    assert "measuring: NVML device memory used" in out and "GPU 0, 1" in out
    assert "GPU 0 (NVIDIA H100 80GB HBM3): peak 5.9 GiB of 79.6 GiB (500 MiB was in use before the launch)" in out
    assert "GPU 1 (NVIDIA H100 80GB HBM3): peak 0 MiB" in out
    # 6000 MiB observed = 5.86 GiB: the estimate (5 GiB) 15% short, the trial (5.5 GiB) 6% short
    assert "observed peak 5.9 GiB (GPU 0, the highest of 2); the estimate said 5.0 GiB (-15%), trial #7 measured 5.5 GiB (-6%)" in out
    assert "1.07x trial #7's measurement" in out and "checkpoint saving" in out
    assert "trial #7 ran on 1 GPU(s) and this run uses 2: ZeRO shards over the run's GPUs" in out
    rec = json.loads((work / "tuned.launch.json").read_text())
    assert rec["observed_per_device"] == {"0": 6000 * MIB, "1": 0}
    assert rec["world_size"] == 2 and rec["gpus"] == ["0", "1"] and rec["device"] == "cuda"
    assert rec["estimate_basis"].startswith("calibrated (fitted to 2") and rec["trial"] == "trial #7"


def test_an_edited_tuned_yaml_is_noticed(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sidecar(work, calibrated=5 * GIB, peak=5 * GIB)
    (work / "tuned.yaml").write_text(CONFIG.replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 8"))
    result = launch(["tuned.yaml"], monkeypatch)
    assert result.exit_code == 0
    assert "was edited after cfgtune auto wrote it" in result.output and "trial #7 measured the config as it was then" in result.output
    rec = history(work)[0]
    assert rec["provenance_edited"] is True and rec["estimate_bytes"] == rec["estimate_raw_bytes"] != 5 * GIB


# -- Ctrl-C, for real, on a `cfgtune launch` process ---------------------------------------------------------------


def _start(work: Path, mode: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FAKE_MODE": mode, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli.tune", "launch", "tuned.yaml", "--sample-interval", "0.05", *extra],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    seen = ""
    while "training..." not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert "training..." in seen, seen
    return proc


def test_ctrl_c_is_forwarded_and_the_trainer_stops_cleanly(work: Path) -> None:
    proc = _start(work, "sleep")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert "saved checkpoint" in out
    assert proc.returncode == 130
    assert "SIGINT: forwarded to the training" in err and "stopped early (SIGINT)" in err
    assert history(work)[0]["exit_code"] == 130


def test_a_second_ctrl_c_escalates_to_sigterm_then_sigkill(work: Path) -> None:
    proc = _start(work, "stubborn", "--kill-grace", "0.3")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert "ignoring SIGINT" in out and "ignoring SIGTERM" in out
    assert "sent SIGTERM; SIGKILL in 0.3 s" in err
    assert proc.returncode == 128 + 9
    # the rank in its own session got the SIGKILL too: no orphan keeps the GPU
    rank = int((work / "rank.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(rank) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(rank)
    rec = history(work)[0]
    assert rec["forwarded_signals"] == ["SIGINT", "SIGTERM", "SIGKILL"] and rec["oom"] is False  # our SIGKILL is no OOM


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie (dead, not yet reaped by init) counts as gone
        return fh.read().split(")")[-1].split()[0] != "Z"


# -- provenance from `cfgtune auto` -------------------------------------------------------------------------------


def test_cfgtune_auto_leaves_provenance_that_launch_uses(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("matplotlib")
    from tuner.trial.spec import TrialResult, TrialSpec

    def runner(spec: TrialSpec, **_: Any) -> TrialResult:
        peak = (300 + 40 * spec.per_device_train_batch_size + spec.lora_rank) * MIB
        return TrialResult(status="ok", peak_bytes=peak, peak_rss_bytes=peak, micro_step_s=0.01 * spec.per_device_train_batch_size**0.6,
                           optimizer_step_s=0.002, wall_s=0.01)  # fmt: skip

    (work / "tiny").mkdir()
    (work / "tiny" / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 512,
        "max_position_embeddings": 256, "torch_dtype": "float32", "tie_word_embeddings": False}))  # fmt: skip
    (work / "base.yaml").write_text(CONFIG.replace("Qwen/Qwen2.5-7B-Instruct", "tiny").replace("cutoff_len: 1024", "cutoff_len: 32")
                                    .replace("template: qwen", "template: default"))  # fmt: skip
    monkeypatch.setattr("tuner.trial.runner.run_trial", runner)
    auto = CliRunner().invoke(cli, ["auto", "--config", "base.yaml", "--device", "cpu", "--memory-budget", "900MiB",
                                    "--ranks", "8,16", "--output-dir", "out", "--n-trials", "3"])  # fmt: skip
    assert auto.exit_code in (0, 1), auto.output
    tuned = work / "out" / "tuned.yaml"
    side = json.loads(sidecar_path(tuned).read_text())
    import hashlib

    assert side["config_sha256"] == hashlib.sha256(tuned.read_bytes()).hexdigest()
    assert side["device"] == "cpu" and side["model"] == "tiny" and side["study"]["name"]
    n, peak = side["trial"]["number"], side["trial"]["peak_bytes"]
    assert peak > 0 and side["trial"]["tokens_per_s"] > 0 and side["ceiling_bytes"] == int(0.9 * 900 * MIB)
    result = launch([str(tuned), "--force"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"trial #{n} measured" in result.output and "not tuned by cfgtune auto" not in result.output


# -- verdict, as pure functions -----------------------------------------------------------------------------------


def test_verdict_oom_wording_and_who_was_wrong() -> None:
    refs = [Reference("the estimate", "said", int(61.2 * GIB)), Reference("trial #7", "measured", 63 * GIB)]
    v = judge(observed=int(79.1 * GIB), refs=refs, oom_reason="CUDA out of memory in the output")
    assert v.oom and v.headline == ("the run ran out of memory at 79.1 GiB; the estimate said 61.2 GiB (-23%), "
                                    "trial #7 measured 63.0 GiB (-20%): both under-predicted")  # fmt: skip
    high = [Reference("the estimate", "said", 90 * GIB), Reference("trial #7", "measured", 63 * GIB)]
    v = judge(observed=80 * GIB, refs=high, oom_reason="x")
    assert v.headline.endswith("the estimate said 90.0 GiB (+12%), trial #7 measured 63.0 GiB (-21%): trial #7 under-predicted; the estimate did not")
    assert v.wrong == ["trial #7"]
    none = [Reference("the estimate", "said", 50 * GIB), Reference("the trial", "measured", None, missing="no trial measurement (not tuned by cfgtune auto)")]
    v = judge(observed=None, refs=none, oom_reason="x", capacity=80 * GIB)
    assert "ran out of memory at 80.0 GiB" in v.headline and "no trial measurement (not tuned by cfgtune auto): the estimate under-predicted" in v.headline


def test_verdict_without_oom_reports_the_ratio_to_the_trial() -> None:
    refs = [Reference("the estimate", "said", 60 * GIB), Reference("trial #3", "measured", 50 * GIB)]
    v = judge(observed=55 * GIB, refs=refs, oom_reason=None, where="GPU 0")
    assert not v.oom and v.headline == "observed peak 55.0 GiB (GPU 0); the estimate said 60.0 GiB (+9%), trial #3 measured 50.0 GiB (-9%)"
    assert any("1.10x trial #3" in line for line in v.lines)
    assert v.comparisons[1]["ratio"] == pytest.approx(1.1)


def test_oom_detection_and_what_torch_says_was_needed() -> None:
    tail = ("RuntimeError: CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total capacity of 23.5 GiB of "
            "which 100.00 MiB is free. Including non-PyTorch memory, this process has 23.00 GiB memory in use.")  # fmt: skip
    assert detect_oom(tail, signal=None) == "CUDA out of memory in the output"
    assert torch_oom_need(tail) == 23 * GIB + 512 * MIB
    assert oom_floor(20 * GIB, tail=tail) == 23 * GIB + 512 * MIB
    assert oom_floor(20 * GIB, capacity=24 * GIB) == 24 * GIB  # no message: the device's capacity
    assert detect_oom("", signal=9, forwarded=[]) is not None  # the kernel's OOM killer
    assert detect_oom("", signal=9, forwarded=["SIGINT", "SIGTERM", "SIGKILL"]) is None  # we killed it
    assert detect_oom("[rank0]: Signal 9 (SIGKILL) received by PID 123", signal=None) is not None
    assert detect_oom("loss 1.2\nsaving checkpoint", signal=None) is None


def test_exit_code_of_a_signal_death() -> None:
    from tuner.launch.run import exit_code_of

    assert exit_code_of(-2) == 130 and exit_code_of(-9) == 137 and exit_code_of(3) == 3


def test_launch_module_does_not_import_torch(work: Path) -> None:
    code = textwrap.dedent("""
        import sys, json
        import tuner.cli.tune_launch, tuner.launch.run, tuner.launch.monitor, tuner.launch.verdict
        import tuner.launch.history, tuner.launch.provenance, tuner.cli.tune_estimate
        from tuner.cli.tune_estimate import estimate_config
        estimate_config("tuned.yaml", detect=False)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optuna"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_signal_is_recorded_before_it_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run is judged as soon as the child dies: a SIGKILL recorded only after it went out could be read as the
    kernel's OOM killer (the escalation timer thread races the main thread). Each signal is on the list first."""
    import subprocess

    from tuner.launch import run as launch_run
    from tuner.trial import runner

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    fwd = launch_run._Forwarder(0.1, lambda _msg: None)
    fwd.started(child)
    seen: list[list[str]] = []
    real_killpg, real_signal_all = os.killpg, runner.signal_all
    monkeypatch.setattr(launch_run.os, "killpg", lambda pid, sig: (seen.append(list(fwd.sent)), real_killpg(pid, sig)))
    # (the last call below finds no group: killpg raises, after recording what the list held)
    monkeypatch.setattr(runner, "signal_all", lambda *a: (seen.append(list(fwd.sent)), real_signal_all(*a)))
    fwd._kill(signal.SIGTERM)
    fwd._kill(signal.SIGKILL)
    child.wait(timeout=10)
    assert seen[:2] == [["SIGTERM"], ["SIGTERM", "SIGKILL"]]
    fwd._kill(signal.SIGTERM)  # the group is gone: nothing sent, and the record is taken back
    assert seen[-1] == ["SIGTERM", "SIGKILL", "SIGTERM"] and fwd.sent == ["SIGTERM", "SIGKILL"]
