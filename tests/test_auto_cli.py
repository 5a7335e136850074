"""`cfgtune auto` end to end: the command line, tuned.yaml, the report, resume, and real trial processes.

Most tests swap the trial runner for a stand-in with a known memory and speed model (fast, deterministic);
the ones that check what happens to real trial processes (a killed one, a hung one, a whole CPU study with a
tiny model) run ``tuner.trial.runner.run_trial`` for real.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna", reason="the tuner needs optuna (pip install 'cfgtune[tune]')")
pytest.importorskip("matplotlib", reason="the report needs matplotlib (pip install 'cfgtune[tune]')")

from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.search.space import Point
from tuner.trial.spec import TrialResult, TrialSpec

MIB = 1024**2
TINY_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 512,
    "max_position_embeddings": 256, "torch_dtype": "float32", "tie_word_embeddings": False,
}  # fmt: skip

BASE_YAML = """\
# my LoRA recipe for the tiny model
### model
model_name_or_path: tiny-llama

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8  # what we always use
lora_target: all

### dataset
dataset: demo
template: default
cutoff_len: 32

### output
output_dir: saves/tiny
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8   # global batch 8
learning_rate: 1.0e-4
num_train_epochs: 1.0
bf16: true
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A launch directory with a tiny model, a base config and a dataset_info.json."""
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_CONFIG))
    (tmp_path / "base.yaml").write_text(BASE_YAML)
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}))
    (data / "demo.json").write_text(json.dumps([{"instruction": "hi", "input": "", "output": "hello"}] * 4))
    return tmp_path


def fake_peak(spec: TrialSpec) -> int:
    per_seq = 40 if spec.gradient_checkpointing else 120
    return (300 + per_seq * spec.per_device_train_batch_size + spec.lora_rank) * MIB


def fake_runner(spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
    """What a trial would report if peak memory and speed followed a simple model."""
    b = spec.per_device_train_batch_size
    micro = 0.01 * b**0.6 * (1.3 if spec.gradient_checkpointing else 1.0) * (1 + spec.lora_rank / 1000)
    peak = fake_peak(spec)
    status = "over_budget" if peak > (spec.memory_limit_bytes or 0) else "ok"
    return TrialResult(status=status, peak_bytes=peak, peak_rss_bytes=peak, micro_step_s=micro,
                       optimizer_step_s=0.002, wall_s=0.01)  # fmt: skip


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def lint_errors(path: Path) -> list[Any]:
    from tuner.launch.emit import lint_emitted
    from tuner.lint.rule import Severity

    result = lint_emitted(path, cwd=Path.cwd())
    assert result.error is None, result.error
    return [v for v in result.violations if v.severity is Severity.ERROR]


def trial_rows(report: str) -> dict[int, str]:
    """The rows of the report's "Every trial" table: trial number -> the row."""
    table = report.split("## Every trial", 1)[1].split("\n## ", 1)[0]
    return {int(m.group(1)): line for line in table.splitlines() if (m := re.match(r"^\| (\d+) \|", line))}


# -- command line ------------------------------------------------------------------------------------------------


def test_help_documents_every_option() -> None:
    result = invoke(["auto", "--help"])
    assert result.exit_code == 0
    for opt in ("--model", "--config", "--dataset-dir", "--gpus", "--device", "--memory-budget", "--vram-ceiling",
                "--global-batch", "--ranks", "--n-trials", "--timeout", "--trial-timeout", "--storage", "--study",
                "--resume", "--output-dir", "--policy", "--within"):  # fmt: skip
        assert opt in result.output, opt
    flat = " ".join(result.output.split())
    assert "the highest LoRA rank within --within of the best tokens/s" in flat  # the selection policy is documented
    assert "[default: 8,16,32,64,128]" in flat
    assert "Without a GPU, cfgtune auto exits 2 unless --device cpu is given" in flat


def test_no_gpu_exits_2_unless_device_cpu(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.hardware import detect

    monkeypatch.setattr(detect, "detect_gpus", lambda *a, **k: detect.Detection(reason="the NVIDIA driver is not loaded"))
    monkeypatch.setattr("tuner.search.setup._torch_cuda", lambda: (0, "", 0))
    result = CliRunner().invoke(cli, ["auto", "--model", "tiny-llama", "--n-trials", "1"])
    assert result.exit_code == 2
    assert "no GPU found (the NVIDIA driver is not loaded)" in result.output
    assert "--device cpu" in result.output
    assert not Path("cfgtune-runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model-xyz", "--device", "cpu"], "unknown model `no-such-model-xyz`"),
        (["--model", "tiny-llama", "--device", "cpu", "--memory-budget", "lots"], "is not a size"),
        (["--model", "tiny-llama", "--device", "cpu", "--ranks", "8,x"], "--ranks: `x` is not an integer"),
        (["--model", "tiny-llama", "--device", "cpu", "--gpus", "2"], "--device cpu runs one trial process"),
        (["--model", "tiny-llama", "--device", "cpu", "--global-batch", "6", "--gpus", "1", "--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["auto", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


# -- a whole study with the stand-in runner ---------------------------------------------------------------------


def run_fake_study(monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> Any:
    monkeypatch.setattr("tuner.trial.runner.run_trial", fake_runner)
    return invoke(["auto", "--config", "base.yaml", "--device", "cpu", "--memory-budget", "700MiB",
                   "--ranks", "8,16,32", "--output-dir", "out", *extra])  # fmt: skip


def test_study_writes_a_tuned_config_that_keeps_comments_and_lints_clean(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_fake_study(monkeypatch, ["--n-trials", "7"])
    assert result.exit_code == 0, result.output
    out = workdir / "out"
    tuned = (out / "tuned.yaml").read_text()
    # the header says how it was tuned; the user's comments and layout survive
    assert tuned.startswith("# cfgtune: tuned by cfgtune auto for tiny-llama on CPU")
    assert "# my LoRA recipe for the tiny model" in tuned
    assert "# what we always use" in tuned and "# global batch 8" in tuned
    from tuner.config.loader import load_config

    data = load_config(out / "tuned.yaml").data
    assert data["per_device_train_batch_size"] * data["gradient_accumulation_steps"] == 8  # global batch kept
    assert data["lora_alpha"] == 2 * data["lora_rank"] and data["lora_rank"] in (8, 16, 32)
    assert data["cutoff_len"] == 32 and data["dataset"] == "demo" and data["learning_rate"] == 1e-4
    ceiling = int(0.9 * 700 * MIB)
    spec = TrialSpec(arch=None, per_device_train_batch_size=data["per_device_train_batch_size"],  # type: ignore[arg-type]
                     lora_rank=data["lora_rank"], gradient_checkpointing=not data.get("disable_gradient_checkpointing", False))
    assert fake_peak(spec) <= ceiling  # the choice fits
    assert lint_errors(out / "tuned.yaml") == []
    # the report: the choice, the gain over the baseline, every trial with its fate, the plots
    report = (out / "report.md").read_text()
    assert "## Choice" in report and "Gain over the baseline:" in report
    import optuna

    study = optuna.load_study(study_name="cfgtune-tiny-llama", storage=f"sqlite:///{out / 'study.db'}")
    rows = trial_rows(report)
    shown = {t.number for t in study.trials if t.user_attrs.get("fate") != "duplicate"}
    assert set(rows) == shown and len(rows) >= 7
    for t in study.trials:
        if t.number in rows:
            fate = {"ok": "feasible", "over_budget": "over the ceiling", "pruned": "pruned (not run)"}[t.user_attrs["fate"]]
            assert f"| {fate} |" in rows[t.number]
    assert "| baseline |" in rows[0] and "| 1 × 8 |" in rows[0]
    for png in ("pareto.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cfglint: clean" in result.output or "cfglint: 0 error(s)" in result.output


def test_over_budget_trials_are_infeasible_and_the_study_completes(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_fake_study(monkeypatch, ["--n-trials", "6", "--memory-budget", "520MiB"])
    assert result.exit_code == 0, result.output
    assert "over the ceiling" in result.output
    report = (workdir / "out" / "report.md").read_text()
    over = [row for row in trial_rows(report).values() if "| over the ceiling |" in row]
    assert over and all("measured peak" in row for row in over)
    assert "stopped: --n-trials 6 reached" in report


def test_resume_continues_the_same_study_from_the_cli(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_fake_study(monkeypatch, ["--n-trials", "3"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, ["auto", "--config", "base.yaml", "--device", "cpu", "--memory-budget", "700MiB",
                                     "--ranks", "8,16,32", "--output-dir", "out", "--n-trials", "5"])  # fmt: skip
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = run_fake_study(monkeypatch, ["--n-trials", "5", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    started = re.findall(r"trial +(\d+) start", resumed.output)
    assert len(started) == 2 and min(int(n) for n in started) >= 3  # only the two missing trials ran
    report = (workdir / "out" / "report.md").read_text()
    assert "5 trial(s) run" in report
    mismatch = run_fake_study(monkeypatch, ["--n-trials", "6", "--resume", "--global-batch", "16"])
    assert mismatch.exit_code == 2 and "global_batch: stored 8, now 16" in mismatch.output


def test_no_feasible_configuration_exits_1_with_a_report(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_fake_study(monkeypatch, ["--n-trials", "3", "--memory-budget", "200MiB"])
    assert result.exit_code == 1
    assert "no feasible configuration" in result.output
    assert not (workdir / "out" / "tuned.yaml").exists()
    assert "No feasible configuration was found" in (workdir / "out" / "report.md").read_text()


def test_generated_config_when_there_is_no_base(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tuner.trial.runner.run_trial", fake_runner)
    result = invoke(["auto", "--model", "tiny-llama", "--device", "cpu", "--memory-budget", "1GiB", "--cutoff-len", "32",
                     "--global-batch", "4", "--ranks", "8,16", "--dataset-dir", "data", "--n-trials", "4",
                     "--output-dir", "gen"])  # fmt: skip
    assert result.exit_code == 0, result.output
    from tuner.config.loader import load_config

    data = load_config(workdir / "gen" / "tuned.yaml").data
    assert data["model_name_or_path"] == "tiny-llama" and data["dataset"] == "demo" and data["dataset_dir"] == "data"
    assert data["per_device_train_batch_size"] * data["gradient_accumulation_steps"] == 4
    assert data["cutoff_len"] == 32 and data["stage"] == "sft" and data["do_train"] is True
    assert data["use_cpu"] is True  # tuned on the CPU: it trains there too
    assert lint_errors(workdir / "gen" / "tuned.yaml") == []


def test_deepspeed_json_is_written_when_zero_is_chosen(workdir: Path) -> None:
    from tuner.launch.emit import emit
    from tuner.models.resolve import resolve_model
    from tuner.search.space import Point, SearchSpace, micro_batch_choices

    model = resolve_model("tiny-llama")
    t = TrialSpec(arch=model.arch, cutoff_len=32, world_size=4)
    sp = SearchSpace(template=t, global_batch=16, micro_batches=micro_batch_choices(16, 4), ranks=(8, 16),
                     dists=("ddp", "zero2", "zero3", "zero3_offload"))  # fmt: skip
    point = Point(2, 16, False, False, "zero3_offload")
    emitted = emit(output_dir=workdir / "ds", base_text=BASE_YAML, base_path=workdir / "base.yaml", generated_text=None,
                   space=sp, point=point, spec=sp.spec(point), header=["test"], cwd=workdir)  # fmt: skip
    assert emitted.deepspeed_path == workdir / "ds" / "ds_z3_offload_config.json"
    ds = json.loads(emitted.deepspeed_path.read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"
    from tuner.config.loader import load_config

    data = load_config(emitted.yaml_path).data
    assert data["deepspeed"] == "ds/ds_z3_offload_config.json"
    assert data["per_device_train_batch_size"] == 2 and data["gradient_accumulation_steps"] == 2  # 2 × 2 × 4 GPUs
    assert lint_errors(emitted.yaml_path) == []
    # and the other way: a DeepSpeed key is removed when plain DDP is chosen
    with_ds = emitted.yaml_path.read_text()
    ddp = emit(output_dir=workdir / "ddp", base_text=with_ds, base_path=emitted.yaml_path, generated_text=None,
               space=sp, point=Point(2, 16, False, False, "ddp"), spec=sp.spec(Point(2, 16, False, False, "ddp")),
               header=["again"], cwd=workdir)  # fmt: skip
    assert "deepspeed" not in load_config(ddp.yaml_path).data and ddp.deepspeed_path is None
    assert ddp.text.count("# cfgtune:") == 1  # the old header was replaced, not stacked


# -- real trial processes ------------------------------------------------------------------------------------------


def test_a_killed_or_hung_trial_is_recorded_infeasible_and_the_study_completes(workdir: Path) -> None:
    """Trials 1 and 2 are real worker processes told (CFGTUNE_TRIAL_TEST_HOOK) to SIGKILL themselves and to hang."""
    pytest.importorskip("psutil")
    from tuner.models.resolve import resolve_model
    from tuner.search.space import SearchSpace, micro_batch_choices
    from tuner.search.study import Budget, Search, open_study
    from tuner.search.view import PlainView
    from tuner.trial.runner import run_trial

    calls: list[int] = []

    def runner(spec: TrialSpec, *, timeout_s: float, workdir: Path, **kw: Any) -> TrialResult:
        calls.append(1)
        if len(calls) == 2:
            return run_trial(spec, timeout_s=60, workdir=workdir, env={"CFGTUNE_TRIAL_TEST_HOOK": "kill@start"})
        if len(calls) == 3:
            return run_trial(spec, timeout_s=3, workdir=workdir, env={"CFGTUNE_TRIAL_TEST_HOOK": "hang@start"})
        return fake_runner(spec, timeout_s=timeout_s, workdir=workdir)

    model = resolve_model("tiny-llama")
    t = TrialSpec(arch=model.arch, cutoff_len=32, device="cpu", memory_limit_bytes=900 * MIB)
    sp = SearchSpace(template=t, global_batch=8, micro_batches=micro_batch_choices(8, 1), ranks=(8, 16))
    study, _ = open_study(f"sqlite:///{workdir / 's.db'}", "kill", space=sp, meta={}, resume=False)
    log = io.StringIO()
    out = Search(study=study, space=sp, ceiling_bytes=900 * MIB, runner=runner, trials_dir=workdir / "trials",
                 budget=Budget(n_trials=5), view=PlainView(log)).run()  # fmt: skip
    assert out.stop_reason == "--n-trials 5 reached" and not out.interrupted
    ran = sorted((r for r in out.records if r.ran), key=lambda r: r.number)
    assert len(ran) == 5
    killed, hung = ran[1], ran[2]
    assert killed.fate == "crash" and "SIGKILL" in killed.reason and not killed.feasible
    assert hung.fate == "timeout" and not hung.feasible
    assert ran[0].feasible and any(r.feasible for r in ran[3:])  # the study went on and still found configs
    assert "crashed" in log.getvalue() and "timed out" in log.getvalue()


@pytest.mark.slow
def test_real_cpu_study_end_to_end(workdir: Path) -> None:
    """The CPU demo: real trial processes train the tiny model; tuned.yaml lints clean; the report is complete."""
    for module in ("torch", "transformers", "peft", "psutil"):
        pytest.importorskip(module, reason="real trials need the tune extra")
    result = invoke(["auto", "--model", "tiny-llama", "--device", "cpu", "--memory-budget", "3GiB", "--cutoff-len", "32",
                     "--global-batch", "4", "--ranks", "8,16", "--n-trials", "3", "--trial-timeout", "120",
                     "--measure-time", "3", "--race-trials", "2", "--output-dir", "real"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = workdir / "real"
    assert (out / "tuned.yaml").is_file() and lint_errors(out / "tuned.yaml") == []
    report = (out / "report.md").read_text()
    rows = trial_rows(report)
    assert len([r for r in rows.values() if "| feasible |" in r]) >= 1
    assert sorted(rows) == sorted(int(n) for n in re.findall(r"trial +(\d+) start", result.output)) or any(
        "pruned" in r for r in rows.values()
    )
    assert all(re.search(r"\| (feasible|over the ceiling|out of memory|crashed|timed out|error|pruned \(not run\)) \|", r) for r in rows.values())
    assert "peak RSS" in report and "Gain over the baseline:" in report
    for png in ("pareto.png", "memory.png"):
        assert (out / png).stat().st_size > 1000
    for d in (out / "trials").iterdir():
        assert (d / "result.json").is_file()


# -- output a user can act on -----------------------------------------------------------------------------------


def cfglint_check(path: Path, *extra: str) -> Any:
    from tuner.cli.lint import cli as lint_cli

    return CliRunner().invoke(lint_cli, ["check", str(path), *extra], catch_exceptions=False)


def noisy_runner(spec: TrialSpec, *, timeout_s: float, workdir: Path, **kw: Any) -> TrialResult:
    """fake_runner with per-step samples: 3% noise per step, seeded by the point, so intervals are real."""
    import math
    import random

    from tuner.trial.stats import measure

    r = fake_runner(spec, timeout_s=timeout_s, workdir=workdir)
    tps = r.tokens_per_s(spec) or 1.0
    rng = random.Random(hash((spec.per_device_train_batch_size, spec.lora_rank, spec.gradient_checkpointing, workdir.name)))
    r.throughput = measure([tps * math.exp(rng.gauss(0, 0.03)) for _ in range(12)], warmup=1).to_dict()
    return r


@pytest.mark.parametrize("base", [True, False])
def test_tuned_yaml_lints_without_findings_and_outputs_name_files_relative_to_the_output_dir(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, base: bool
) -> None:
    monkeypatch.setattr("tuner.trial.runner.run_trial", noisy_runner)
    args = ["--config", "base.yaml"] if base else ["--model", "tiny-llama", "--cutoff-len", "32", "--global-batch", "8"]
    result = invoke(["auto", *args, "--device", "cpu", "--memory-budget", "700MiB", "--ranks", "8,16,32",
                     "--dataset-dir", "data", "--n-trials", "6", "--race-trials", "4", "--output-dir", "out"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = workdir / "out"
    lint = cfglint_check(out / "tuned.yaml", "--dataset-dir", "data")
    assert lint.exit_code == 0, lint.output
    assert "warning" not in lint.output.lower() and "error" not in lint.output.lower(), lint.output
    assert "cfglint: clean" in result.output
    from tuner.config.loader import load_config

    data = load_config(out / "tuned.yaml").data
    assert data["template"] == "default"  # the base config's own, or the fallback for a model with none known
    tuned, report = (out / "tuned.yaml").read_text(), (out / "report.md").read_text()
    for text in (tuned, report):
        assert str(workdir) not in text  # no absolute path: everything is named from the output directory
    assert "details in report.md" in tuned
    assert "**Tuned config**: `tuned.yaml`" in report and "in `study.db`" in report
    # the report states the noise, the intervals and why the choice beats its neighbours
    assert "**Measurement noise**: a single run's 95% interval is ±" in report
    assert "### Why this point and not its neighbours" in report
    assert re.search(r"tokens/s \(measured, 95% interval\) \| [\d,]+ \[[\d,]+, [\d,]+\]", report), report
    assert re.search(r"\*\*Gain over the baseline: [\d.]+×\*\* tokens/s \([+-]\d+%\) \(95% interval [\d.]+-[\d.]+×; paired", report)
    assert re.search(r"measured: peak .* tokens/s \(95% interval [\d,]+-[\d,]+, \d runs?\)", result.output)


def test_single_gpu_offload_is_searched_only_when_the_model_does_not_fit_otherwise(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner.search import setup

    monkeypatch.setattr(setup, "detect_device", lambda opts: setup.Device("cuda", 16 * 1024**3, "1× test GPU (16 GiB)"))
    monkeypatch.setattr(setup, "deepspeed_installed", lambda: True)
    big = setup.prepare(setup.AutoOptions(model="qwen2.5-7b", cutoff_len=512, global_batch=8, cwd=workdir))
    assert big.space.dists == ("none", "zero2_offload", "zero3_offload")
    assert any("ZeRO-2/3 with CPU offload are searched on this one GPU" in n for n in big.notes)
    assert any(p.dist == "zero3_offload" for p in big.space.points())
    spec = big.space.spec(Point(1, 8, True, False, "zero3_offload"))
    assert (spec.zero_stage, spec.offload_optimizer, spec.offload_param, spec.world_size) == (3, True, True, 1)
    small = setup.prepare(setup.AutoOptions(model="tiny-llama", cutoff_len=32, global_batch=8, cwd=workdir))
    assert small.space.dists == ("none",)  # it fits: no offload to search
    monkeypatch.setattr(setup, "deepspeed_installed", lambda: False)
    nods = setup.prepare(setup.AutoOptions(model="qwen2.5-7b", cutoff_len=512, global_batch=8, cwd=workdir))
    assert nods.space.dists == ("none",) and any("deepspeed is not installed" in n for n in nods.notes)


def test_the_base_configs_additional_target_and_upcast_layernorm_reach_the_trials_and_their_estimate(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials train what the config trains: PEFT's modules_to_save copies and LLaMA-Factory's fp32 norms, and the
    estimate that prunes them sees the same (a copy of a 512 x 64 embedding and head: 65,536 parameters more)."""
    from tuner.search import setup
    from tuner.search.prune import setup_of
    from tuner.search.space import Point

    base = workdir / "base.yaml"
    base.write_text("model_name_or_path: tiny-llama\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
                    "additional_target: embed_tokens,lm_head\nupcast_layernorm: true\ncutoff_len: 32\n"
                    "dataset: demo\ntemplate: qwen\nbf16: true\noutput_dir: out\n")  # fmt: skip
    prep = setup.prepare(setup.AutoOptions(model="tiny-llama", config=base, device="cpu", cutoff_len=32, global_batch=4, cwd=workdir))
    spec = prep.space.spec(Point(1, 8, True, False, "none"))
    assert spec.additional_target == "embed_tokens,lm_head" and spec.upcast_layernorm
    train = setup_of(spec)
    assert train.additional_target == ("embed_tokens", "lm_head") and train.upcast_layernorm  # type: ignore[attr-defined]
    from tuner.memory.model import plan_params

    plain = plan_params(train.with_(additional_target=()))  # type: ignore[attr-defined]
    assert plan_params(train).trainable - plain.trainable == 2 * 512 * 64  # type: ignore[arg-type]
