"""Several `cfgtune worker` processes on one study, as on several nodes: real OS processes and real CPU trials.

Two workers share a study in a journal file and in PostgreSQL (a local server that `.ci/postgres.sh` starts; it
exports CFGTUNE_TEST_POSTGRES_URL). Each trial is a real trial process training a tiny random-weight model, so a
test takes tens of seconds on two cores; they are the evidence that the counting, the claims, the heartbeats and
the kill handling hold between processes, which in-process tests (tests/test_worker.py) cannot show.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _module in ("optuna", "torch", "transformers", "peft", "psutil", "matplotlib"):
    pytest.importorskip(_module, reason="multi-worker tests run real CPU trials (pip install 'cfgtune[tune]')")

import optuna
import psutil  # type: ignore[import-untyped]

MIB = 1024**2
N_TRIALS = 2  # two workers sharing a study: one trial each, started at once (each trial is a real process)
N_KILL = 3  # the kill test: worker B keeps going after the kill however late it is noticed
HEARTBEAT_S = "0.5"
TINY_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 512,
    "max_position_embeddings": 256, "torch_dtype": "float32", "tie_word_embeddings": False,
}  # fmt: skip
#: What `cfgtune auto` is given; the study is created from the same options, so `--resume` accepts it.
AUTO_ARGS = ["--model", "tiny-llama", "--device", "cpu", "--memory-budget", "3GiB", "--cutoff-len", "32",
             "--global-batch", "4", "--ranks", "8,16", "--trial-timeout", "120"]  # fmt: skip


def postgres_url() -> str:
    """The test server's URL; a local run without one skips, CI without one fails (it must not skip silently)."""
    url = os.environ.get("CFGTUNE_TEST_POSTGRES_URL", "")
    problem = ""
    if not url:
        problem = "CFGTUNE_TEST_POSTGRES_URL is not set: `source .ci/postgres.sh` starts a local PostgreSQL and sets it"
    else:
        try:
            import psycopg  # noqa: F401 - SQLAlchemy's driver for postgresql:// URLs
        except ImportError:
            problem = "the PostgreSQL driver is missing: pip install 'psycopg[binary]'"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
        pytest.skip(problem)
    return url


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A launch directory with a tiny model and a dataset_info.json, as for `cfgtune auto`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-llama").mkdir()
    (tmp_path / "tiny-llama" / "config.json").write_text(json.dumps(TINY_CONFIG))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}))
    (tmp_path / "data" / "demo.json").write_text(json.dumps([{"instruction": "hi", "input": "", "output": "yo"}] * 4))
    return tmp_path


def create_study(workdir: Path, storage: str, name: str, n_trials: int) -> Any:
    """The study as `cfgtune auto` creates it (same space and metadata), before any node runs a trial."""
    from tuner.search.setup import AutoOptions, prepare
    from tuner.search.study import META_KEY, open_study

    prep = prepare(AutoOptions(model="tiny-llama", device="cpu", memory_budget=3 * 1024**3, cutoff_len=32,
                               global_batch=4, ranks=(8, 16), storage=storage, study=name,
                               output_dir=workdir / "out", cwd=workdir))  # fmt: skip
    study, _ = open_study(storage, name, space=prep.space, meta=prep.meta(), resume=False)
    study.set_user_attr(f"{META_KEY}.n_trials", n_trials)
    return study


class Worker:
    """One `cfgtune worker` OS process, its output in a file."""

    def __init__(self, workdir: Path, storage: str, study: str, tag: str, **env: str) -> None:
        self.log = workdir / f"worker-{tag}.log"
        self.out = open(self.log, "wb")  # noqa: SIM115 - closed in wait()
        cmd = [sys.executable, "-m", "tuner.cli.tune", "worker", "--storage", storage, "--study", study,
               "--trial-timeout", "120", "--workdir", str(workdir / f"worker-{tag}")]  # fmt: skip
        full_env = {**os.environ, "CFGTUNE_HEARTBEAT_S": HEARTBEAT_S, **env}
        full_env.pop("CFGTUNE_TRIAL_TEST_HOOK", None) if "CFGTUNE_TRIAL_TEST_HOOK" not in env else None
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
        self.id = f"{socket.gethostname()}:{self.proc.pid}"

    def wait(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
        return self.log.read_text()


def ran_count(output: str) -> int:
    m = re.search(r"cfgtune worker: ran (\d+) trial\(s\)", output)
    assert m, output[-2000:]
    return int(m.group(1))


def records(storage: str, name: str) -> list[Any]:
    from tuner.search.study import make_storage, read_records

    return read_records(optuna.load_study(study_name=name, storage=make_storage(storage)))


def assert_consistent(recs: list[Any], workers_ran: list[int], n_trials: int) -> None:
    """Every trial that ran is counted once, the total is within --n-trials (+ workers - 1 started at the same
    moment), no point ran twice, and nothing is left running."""
    ran = [r for r in recs if r.ran]
    assert len(ran) == sum(workers_ran), (len(ran), workers_ran)
    assert n_trials <= len(ran) <= n_trials + len(workers_ran) - 1
    keys = [r.point.key for r in ran]
    assert len(keys) == len(set(keys)), keys
    assert not [r for r in recs if r.fate == "running"]


@pytest.fixture
def pg_study() -> Iterator[tuple[str, str]]:
    url = postgres_url()
    name = f"cfgtune-test-{uuid.uuid4().hex[:8]}"
    yield url, name
    from tuner.search.study import make_storage

    try:
        optuna.delete_study(study_name=name, storage=make_storage(url))
    except KeyError:
        pass


# -- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_workers_share_a_study_and_auto_resume_writes_the_result(workdir: Path, kind: str,
                                                                     request: pytest.FixtureRequest) -> None:
    if kind == "journal":
        storage, name = f"journal:{workdir / 'shared' / 'study.log'}", "shared"
    else:
        storage, name = request.getfixturevalue("pg_study")
    create_study(workdir, storage, name, N_TRIALS)
    # Each worker's first trial waits for the other's (the trial's `barrier` test hook): however late one worker
    # starts on a loaded machine, the other cannot finish its trial and take the second before it claims one.
    barrier = workdir / "barrier"
    barrier.mkdir()
    hook = {"CFGTUNE_TRIAL_TEST_HOOK": "barrier@start", "CFGTUNE_TRIAL_TEST_BARRIER": str(barrier)}
    a = Worker(workdir, storage, name, "a", **hook)
    b = Worker(workdir, storage, name, "b", **hook)
    out_a, out_b = a.wait(240), b.wait(240)
    assert a.proc.returncode == 0 and b.proc.returncode == 0, out_a + out_b
    ran_a, ran_b = ran_count(out_a), ran_count(out_b)
    assert ran_a >= 1 and ran_b >= 1  # both nodes did work
    assert len(list(barrier.glob("trial-*"))) == N_TRIALS
    recs = records(storage, name)
    assert_consistent(recs, [ran_a, ran_b], N_TRIALS)
    assert {r.worker for r in recs if r.ran} == {a.id, b.id}
    assert sum(r.origin == "baseline" and r.ran for r in recs) == 1

    # Any node writes the result: the budget is spent, so --resume runs nothing and writes tuned.yaml from both
    # (--race-trials 0: no re-measurement of finalists either; with it, the head would race them here).
    from click.testing import CliRunner

    from tuner.cli.tune import cli

    result = CliRunner().invoke(cli, ["auto", *AUTO_ARGS, "--n-trials", str(N_TRIALS), "--storage", storage,
                                      "--study", name, "--output-dir", "result", "--resume", "--race-trials", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"stopped: --n-trials {N_TRIALS} reached" in result.output and " start" not in result.output
    assert sum(r.ran for r in records(storage, name)) == len([r for r in recs if r.ran])  # nothing new ran
    assert (workdir / "result" / "tuned.yaml").is_file()
    report = (workdir / "result" / "report.md").read_text()
    assert f"{ran_a + ran_b} trial(s) run" in report


def test_two_workers_on_postgres_and_a_worker_killed_mid_trial(workdir: Path, pg_study: tuple[str, str]) -> None:
    """Worker A's trials hang (a test hook in the trial process); it is SIGKILLed while its trial is RUNNING.
    Its trial process must go with it, and worker B must close the trial with a reason, run the point again,
    and finish the study."""
    url, name = pg_study
    create_study(workdir, url, name, N_KILL)
    a = Worker(workdir, url, name, "a", CFGTUNE_TRIAL_TEST_HOOK="hang@start")
    b = Worker(workdir, url, name, "b")
    study = optuna.load_study(study_name=name, storage=url)

    deadline = time.monotonic() + 60
    trial, child = None, None
    while time.monotonic() < deadline and (trial is None or child is None):
        time.sleep(0.1)
        mine = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                if t.user_attrs.get("worker") == a.id and "point" in t.user_attrs]  # fmt: skip
        trial = mine[0] if mine else None
        kids = [p for p in psutil.Process(a.proc.pid).children() if "tuner.trial.worker" in " ".join(p.cmdline())]
        child = kids[0] if kids else None
        assert a.proc.poll() is None, a.log.read_text()
    assert trial is not None and child is not None, "worker A never started a trial"

    def seq() -> int:
        return study.get_trials()[trial.number].user_attrs["heartbeat"]["seq"]

    first = seq()
    time.sleep(1.2)
    assert seq() > first  # A's heartbeat thread beats while its trial runs

    a.proc.send_signal(signal.SIGKILL)
    a.wait(10)
    gone_by = time.monotonic() + 5
    while time.monotonic() < gone_by and child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.1)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "the killed worker's trial outlived it"

    out_b = b.wait(240)
    assert b.proc.returncode == 0, out_b
    recs = records(url, name)
    assert_consistent(recs, [0, ran_count(out_b)], N_KILL)
    killed = next(r for r in recs if r.number == trial.number)
    assert killed.fate == "interrupted" and killed.lost_by == a.id
    assert f"worker {a.id} is gone" in killed.reason and "runs again" in killed.reason
    again = [r for r in recs if r.point == killed.point and r.ran]
    assert len(again) == 1 and again[0].worker == b.id  # retried once, by the worker that is left
    assert f"trial {trial.number} closed" in out_b
