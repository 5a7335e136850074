"""Fuzzing: every command that reads a config keeps the contract on hostile input.

The contract (issue 12): exit 0 or 1 with a report, or exit 2 with a one-line message; never a traceback,
never an internal error of a rule, never a hang, never unbounded memory. Held for ``cfglint check``,
``cfgtune estimate``, ``cfgtune data`` and ``cfgtune launch --dry-run``, each input run in-process through the
click commands (fast), plus a few through real subprocesses with a memory limit (the entry points as shipped).

Inputs come from ``tests/fuzz_inputs.py``: documents built from the key schema, and mutations of the bundled
examples. The default run is bounded to about two minutes; ``CFGTUNE_FUZZ_EXAMPLES=N`` runs N inputs across
both modes (half each), e.g. ``CFGTUNE_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py``, and
``CFGTUNE_FUZZ_LOG=FILE`` appends a line for every input that kept the contract (progress of a long run).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_inputs import ROOT, FuzzInput, mutated_examples, schema_configs
from tuner.cli.lint import cli as lint_cli
from tuner.cli.tune import cli as tune_cli

#: Inputs over both modes; the default keeps the run near two minutes on a slow shared machine.
TOTAL = int(os.environ.get("CFGTUNE_FUZZ_EXAMPLES", "0") or 0) or 360
PER_MODE = max(1, TOTAL // 2)
#: One command on one input: seconds before it counts as a hang, and extra resident memory allowed.
TIME_LIMIT_S = float(os.environ.get("CFGTUNE_FUZZ_TIME_LIMIT", "10"))
MEMORY_LIMIT_MIB = 1024

FUZZ_SETTINGS = settings(
    max_examples=PER_MODE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Hang(BaseException):
    """Raised by the alarm when a command runs past the time limit (a BaseException: click must not catch it)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from tuner.data.testing import tiny_tokenizer

    base = tmp_path_factory.mktemp("fuzz")
    tok = tiny_tokenizer(base / "tok")
    data = base / "data"
    shutil.copytree(ROOT / "examples" / "data", data)
    (base / "hub").mkdir()
    yield {"base": base, "tok": tok, "data": data, "hub": base / "hub", "cache": base / "cache"}


def _commands(path: Path, ws: dict[str, Path]) -> list[tuple[str, Any, list[str]]]:
    name = path.name
    return [
        ("cfglint check", lint_cli, ["check", "--format", "concise", name]),
        ("cfglint check --format full", lint_cli, ["check", "--format", "full", "--show-skipped", name]),
        ("cfgtune estimate", tune_cli, ["estimate", "--hw", "h100", name]),
        ("cfgtune data", tune_cli, ["data", "--tokenizer", str(ws["tok"]), "--no-cache", name]),
        ("cfgtune launch --dry-run", tune_cli, ["launch", "--dry-run", name]),
    ]


def _alarm(signum: int, frame: object) -> None:
    raise Hang(f"still running after {TIME_LIMIT_S:.0f} s")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_contract(what: str, result: Result, elapsed: float, sample: FuzzInput) -> None:
    shown = sample.config[:300]
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise AssertionError(f"{what} raised on {shown!r}:\n{tb}")
    out = result.output
    assert result.exit_code in (0, 1, 2), f"{what} exit {result.exit_code} on {shown!r}:\n{out}"
    assert "Traceback" not in out, f"{what} printed a traceback on {shown!r}:\n{out}"
    assert "internal error" not in out, f"{what}: a rule crashed on {shown!r}:\n{out}"
    if what.startswith("cfgtune") and result.exit_code == 2:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1 and ": error: " in lines[0], f"{what}: exit 2 without one line on {shown!r}:\n{out}"
    if what.startswith("cfglint") and result.exit_code == 2:
        assert "error" in out, f"{what}: exit 2 without a message on {shown!r}:\n{out}"
    assert elapsed < TIME_LIMIT_S, f"{what} took {elapsed:.1f} s on {shown!r}"


def run_all(sample: FuzzInput, ws: dict[str, Path]) -> None:
    directory = Path(tempfile.mkdtemp(dir=ws["base"]))
    try:
        (directory / "examples").mkdir()
        (directory / "examples" / "data").symlink_to(ws["data"])
        path = sample.write(directory)
        env = {"HF_HUB_CACHE": str(ws["hub"]), "HF_HOME": str(ws["hub"]), "CFGTUNE_CACHE_DIR": str(ws["cache"]),
               "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
        runner = CliRunner(env=env)
        rss_before = _max_rss_mib()
        old = os.getcwd()
        os.chdir(directory)
        previous = signal.signal(signal.SIGALRM, _alarm)
        try:
            for what, command, args in _commands(path, ws):
                start = time.monotonic()
                signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S * 3)
                try:
                    result = runner.invoke(command, args)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                check_contract(what, result, time.monotonic() - start, sample)
        finally:
            signal.signal(signal.SIGALRM, previous)
            os.chdir(old)
        grew = _max_rss_mib() - rss_before
        assert grew < MEMORY_LIMIT_MIB, f"peak memory grew by {grew:.0f} MiB on {sample.config[:300]!r}"
        if os.environ.get("CFGTUNE_FUZZ_LOG"):  # long runs: one line per input that kept the contract
            with open(os.environ["CFGTUNE_FUZZ_LOG"], "a", encoding="utf-8") as log:
                log.write(f"{sample.name}\t{len(sample.config)}\n")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@FUZZ_SETTINGS
@given(sample=schema_configs())
def test_schema_driven_configs_keep_the_contract(sample: FuzzInput, workspace: dict[str, Path]) -> None:
    run_all(sample, workspace)


@FUZZ_SETTINGS
@given(sample=mutated_examples())
def test_mutated_examples_keep_the_contract(sample: FuzzInput, workspace: dict[str, Path]) -> None:
    run_all(sample, workspace)


# -- the shipped entry points, in real processes with a memory limit ---------------------------------------------
def _limit_memory() -> None:  # pragma: no cover - runs in the child
    limit = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory
    )


HOSTILE = {
    "mapping-bomb": b"stage: sft\nm0: &m0 {x: 1, y: 2}\n"
    + b"".join(f"m{i}: &m{i} {{".encode() + b", ".join(f"k{j}: *m{i - 1}".encode() for j in range(9)) + b"}\n" for i in range(1, 26)),
    "tags": b"stage: sft\nlora_rank: !!int x\n",
    "huge-int": b"stage: sft\nlora_rank: " + b"9" * 5000 + b"\n",
    "deep-yaml": b"stage: sft\nnest: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-deepspeed": b"stage: sft\ndo_train: true\ndeepspeed: {zero_optimization: " + b"{a: " * 3000 + b"1" + b"}" * 3001 + b"\n",
    "inf-stage": b"model_name_or_path: qwen2.5-7b\nstage: sft\ndo_train: true\ndeepspeed: {zero_optimization: {stage: .inf}}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_entry_points_in_a_process(tmp_path: Path, name: str) -> None:
    (tmp_path / "run.yaml").write_bytes(HOSTILE[name])
    for args in (["-m", "tuner.cli.entry", "check", "run.yaml"], ["-m", "tuner.cli.tune", "estimate", "--hw", "h100", "run.yaml"],
                 ["-m", "tuner.cli.tune", "launch", "--dry-run", "run.yaml"]):  # fmt: skip
        proc = run_process(args, tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode in (0, 1, 2), out
        assert "Traceback" not in out and "internal error" not in out, out
        if proc.returncode == 2 and "tuner.cli.tune" in args:
            assert len(proc.stderr.strip().splitlines()) == 1, out


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_entry_point_on_a_fifo_or_device(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "run.yaml")
        target = "run.yaml"
    proc = run_process(["-m", "tuner.cli.entry", "check", target], tmp_path)
    assert proc.returncode == 2 and "not a regular file" in proc.stdout + proc.stderr


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.one_of(schema_configs(), mutated_examples()))
def test_random_inputs_through_the_shipped_cfglint(sample: FuzzInput) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = sample.write(Path(d))
        proc = run_process(["-m", "tuner.cli.entry", "check", path.name], Path(d))
        out = proc.stdout + proc.stderr
        assert proc.returncode in (0, 1, 2) and "Traceback" not in out and "internal error" not in out, out
