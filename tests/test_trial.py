"""Real trials on the CPU with tiny architectures: what `cfgtune auto` gets back from the trial runner.

Every trial is a child process that imports torch, so the trials run once per module, two at a time (this
machine has two cores), and the tests read their results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tuner.models.arch import Architecture
from tuner.models.params import count_params, lora_trainable_params
from tuner.trial.runner import measure_throughput, run_trial
from tuner.trial.spec import TrialResult, TrialSpec

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("psutil")

TINY = Architecture("llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, vocab_size=512)
# Activations dominate this one (hidden 16, 8192 tokens a micro-batch), so checkpointing shows in the peak RSS.
NARROW = Architecture("llama", hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=512)
MIB = 1024**2
TIMEOUT = 240.0


def tiny_spec(**kw: object) -> TrialSpec:
    base: dict[str, object] = {"arch": TINY, "device": "cpu", "cutoff_len": 64, "per_device_train_batch_size": 2,
                               "lora_rank": 8, "warmup_steps": 1, "measure_steps": 2, "max_steps": 3}
    base.update(kw)
    return TrialSpec(**base)  # type: ignore[arg-type]


def gc_spec(gc: bool) -> TrialSpec:
    return TrialSpec(arch=NARROW, device="cpu", finetuning_type="full", precision="fp32", cutoff_len=256,
                     per_device_train_batch_size=32, gradient_checkpointing=gc, warmup_steps=0, measure_steps=1,
                     max_steps=1)


class Trials:
    """Runs the module's trials in a pool of two and remembers specs, results and how long each took."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.futures: dict[str, Future[TrialResult]] = {}
        self.specs: dict[str, TrialSpec] = {}
        self.elapsed: dict[str, float] = {}

    def submit(self, name: str, spec: TrialSpec, *, timeout: float = TIMEOUT, hook: str | None = None,
               workdir: str | None = None, after: str | None = None,
               adjust: Callable[[TrialSpec, TrialResult], TrialSpec] | None = None) -> None:
        env = {"CFGTUNE_TRIAL_TEST_HOOK": hook or ""}  # on top of this environment; empty: no hook

        def job() -> TrialResult:
            s = spec
            if after is not None:
                previous = self.futures[after].result()
                if adjust is not None:
                    s = adjust(spec, previous)
            self.specs[name] = s
            t = time.monotonic()
            result = run_trial(s, timeout_s=timeout, workdir=self.root / (workdir or name), env=env)
            self.elapsed[name] = time.monotonic() - t
            return result

        self.futures[name] = self.pool.submit(job)

    def __getitem__(self, name: str) -> TrialResult:
        return self.futures[name].result()


def _eighty_percent_of(spec: TrialSpec, measured: TrialResult) -> TrialSpec:
    assert measured.peak_bytes, "the reference trial measured no peak"
    spec.memory_limit_bytes = int(measured.peak_bytes * 0.8)
    return spec


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trials]:
    t = Trials(tmp_path_factory.mktemp("trials"))
    # Quick failures first, so that they do not wait behind the real trials.
    t.submit("watchdog", tiny_spec(memory_limit_bytes=8 * MIB))
    t.submit("crash", tiny_spec(), hook="crash@start")
    t.submit("hang", tiny_spec(), hook="hang@start", timeout=3.0)
    t.submit("ranks_hang", tiny_spec(finetuning_type="full", world_size=2), hook="hang@start", timeout=20.0)
    t.submit("lora", tiny_spec())
    t.submit("adaptive", tiny_spec(max_steps=200, measure_steps=4, measure_time_s=4.0, target_rel_ci=0.3))
    t.submit("gc_on", gc_spec(True))
    t.submit("gc_off", gc_spec(False))
    t.submit("killed", tiny_spec(finetuning_type="full"), hook="kill@step", workdir="shared")
    t.submit("oom", tiny_spec(), hook="oom@start")
    t.submit("no_liger", tiny_spec(liger=True))
    freeze = tiny_spec(finetuning_type="freeze", freeze_trainable_layers=1)
    t.submit("freeze", freeze, workdir="shared", after="killed")
    t.submit("ddp", tiny_spec(finetuning_type="full", world_size=2, gradient_accumulation_steps=2))
    # The same freeze trial under 80% of the peak it measured: the worker, not the watchdog, says over budget.
    t.submit("over_budget", dataclasses.replace(freeze), after="freeze", adjust=_eighty_percent_of)
    yield t
    t.pool.shutdown(wait=True)


def test_lora_trial_measures_memory_time_and_counts_like_the_estimator(trials: Trials) -> None:
    r = trials["lora"]
    assert r.status == "ok", r.reason
    assert r.trainable_params == lora_trainable_params(TINY, 8, "all") == 16384
    assert r.total_params == count_params(TINY).total + r.trainable_params
    assert r.peak_rss_bytes and r.peak_bytes == r.peak_rss_bytes
    assert 50 * MIB < r.peak_bytes < 4096 * MIB
    assert r.micro_step_s and r.micro_step_s > 0
    assert r.optimizer_step_s is not None and r.optimizer_step_s >= 0
    assert r.extra["lora_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert r.extra["loss"] == pytest.approx(6.24, abs=0.3)  # ln(512): random weights, a real loss
    spec = trials.specs["lora"]
    tp = measure_throughput(r, spec, None, grad_accum=4)
    assert tp is not None and tp.mfu is None  # CPU: no MFU
    assert tp.tokens_per_s == pytest.approx(4 * 2 * 64 / (4 * r.micro_step_s + r.optimizer_step_s))


def test_a_trial_measures_until_its_interval_is_narrow_enough_or_its_time_cap(trials: Trials) -> None:
    """Which of the two ends the trial depends on the machine; either way the result says which, and carries the
    median with its interval over the steps after the warm-up, and the peak over every step."""
    r = trials["adaptive"]
    assert r.status == "ok", r.reason
    m = r.throughput
    assert m is not None and m["warmup"] >= 1 and m["n"] >= 2
    assert m["stop"].startswith(("interval within ±30% after", "time cap (4 s)")), m["stop"]
    assert m["stop"].startswith("time cap") or m["n"] >= 4  # the interval rule waits for the minimum of steps
    assert m["lo"] <= m["median"] <= m["hi"] and len(m["samples"]) == m["n"]
    assert r.extra["steps"] == m["warmup"] + m["n"] == len(r.extra["step_s"])
    assert len(r.extra["micro_steps_s"]) == m["n"] * trials.specs["adaptive"].gradient_accumulation_steps
    assert r.peak_bytes and r.peak_bytes >= r.extra["rss_after_build_bytes"]


def test_freeze_trial_trains_the_last_layers_and_runs_after_a_killed_trial_in_the_same_dir(trials: Trials) -> None:
    killed, r = trials["killed"], trials["freeze"]
    assert killed.status == "crash" and "SIGKILL" in killed.reason
    assert r.status == "ok", r.reason
    assert r.trainable_params == count_params(TINY).layers[-1].total
    assert r.total_params == count_params(TINY).total


def test_full_trials_with_and_without_checkpointing(trials: Trials) -> None:
    on, off = trials["gc_on"], trials["gc_off"]
    assert on.status == "ok", on.reason
    assert off.status == "ok", off.reason
    assert on.trainable_params == on.total_params == count_params(NARROW).total
    # Checkpointing keeps only each layer's input of 8192 tokens x 4 layers (about 45 MiB less here).
    assert off.peak_bytes - on.peak_bytes > 20 * MIB, (on.peak_bytes, off.peak_bytes)


def test_a_peak_above_the_budget_is_over_budget_with_the_measurement(trials: Trials) -> None:
    r = trials["over_budget"]
    limit = trials.specs["over_budget"].memory_limit_bytes
    assert r.status == "over_budget", r.reason
    assert r.peak_bytes and limit and r.peak_bytes > limit
    assert "exceeds the limit" in r.reason
    assert r.micro_step_s  # the trial ran to the end: the worker judged it, not the watchdog


def test_the_watchdog_stops_a_trial_far_over_budget(trials: Trials) -> None:
    r = trials["watchdog"]
    assert r.status == "over_budget"
    assert "passed 1.5x the memory budget" in r.reason
    assert trials.elapsed["watchdog"] < 30


def test_a_hang_becomes_a_timeout_and_the_process_group_is_gone(trials: Trials) -> None:
    r = trials["hang"]
    assert r.status == "timeout"
    assert "no result after 3 s" in r.reason
    assert trials.elapsed["hang"] < 15


def test_a_segfault_is_a_crash_with_the_signal(trials: Trials) -> None:
    r = trials["crash"]
    assert r.status == "crash"
    assert "SIGSEGV" in r.reason
    assert "test hook crash@start" in r.extra["stderr_tail"]


def test_an_out_of_memory_error_is_oom(trials: Trials) -> None:
    r = trials["oom"]
    assert r.status == "oom"
    assert "out of memory" in r.reason.lower()


def test_an_unavailable_feature_is_an_error_with_a_reason(trials: Trials) -> None:
    r = trials["no_liger"]
    assert r.status == "error"
    assert "Liger" in r.reason or "liger" in r.reason


def test_two_ranks_under_torchrun_report_the_max_over_ranks(trials: Trials) -> None:
    r = trials["ddp"]
    assert r.status == "ok", (r.reason, r.extra.get("stderr_tail"))
    assert r.extra["world_size"] == 2
    assert r.extra["reduced_over_ranks"] == "max"
    assert len(r.extra["micro_steps_s"]) == 2 * 2  # measured steps x GA (the step cap: 1 warm-up + 2)
    assert r.throughput is not None and r.throughput["n"] == 2 and r.throughput["stop"] == "step cap (3 steps)"
    assert r.peak_rss_bytes and r.peak_rss_bytes > 50 * MIB
    spec = trials.specs["ddp"]
    tp = measure_throughput(r, spec, None)
    assert tp is not None and tp.tokens_per_s == pytest.approx(2 * 2 * 64 * 2 / r.step_time(2))


def test_a_hang_under_torchrun_ends_every_rank(trials: Trials) -> None:
    import psutil

    r = trials["ranks_hang"]
    assert r.status == "timeout"
    stderr = (trials.root / "ranks_hang" / "stderr.log").read_text()
    assert stderr.count("test hook hang@start") == 2  # both ranks were up when it was stopped
    spec_path = str(trials.root / "ranks_hang" / "spec.json")
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if spec_path in " ".join(p.info["cmdline"] or [])]
    assert left == []
