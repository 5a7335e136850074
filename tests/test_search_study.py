"""The study loop with a stand-in trial runner: baseline first, infeasible trials recorded, budgets, resume.

The runner is replaced by a function with a known memory and speed model, so these tests check the search
itself in well under a second each; tests/test_auto_cli.py runs real trial processes.
"""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna", reason="the tuner needs optuna (pip install 'cfgtune[tune]')")

from tuner.search.records import DUPLICATE, INTERRUPTED, PRUNED
from tuner.search.space import Point, SearchSpace
from tuner.search.study import Budget, Search, StudyError, open_study, read_records
from tuner.search.view import PlainView
from tuner.trial.spec import TrialResult, TrialSpec
from search_fixtures import CEILING, MIB, make_space, peak_of





class FakeRunner:
    """Trials that report what :func:`peak_of` says, are faster with larger batches and without checkpointing."""

    def __init__(self, fail: dict[int, str] | None = None) -> None:
        self.calls: list[TrialSpec] = []
        self.fail = fail or {}  # call index -> "raise" | "crash" | "interrupt"

    def __call__(self, spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
        i = len(self.calls)
        self.calls.append(spec)
        assert workdir.is_dir() and workdir.is_absolute()
        what = self.fail.get(i)
        if what == "raise":
            raise RuntimeError("runner bug")
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "crash":
            return TrialResult(status="crash", reason="the trial process died of SIGSEGV")
        peak = peak_of(spec)
        if peak > 1400 * MIB:
            return TrialResult(status="oom", reason="CUDA out of memory")
        b = spec.per_device_train_batch_size
        micro = 0.01 * b**0.6 * (1.3 if spec.gradient_checkpointing else 1.0) * (1 + spec.lora_rank / 1000)
        status = "over_budget" if peak > (spec.memory_limit_bytes or CEILING) else "ok"
        return TrialResult(status=status, peak_bytes=peak, micro_step_s=micro, optimizer_step_s=0.002, wall_s=0.01)


def new_search(tmp_path: Path, runner: Any, *, n_trials: int = 8, name: str = "s", resume: bool = False,
               space: SearchSpace | None = None, estimator: Any = None, seed: int = 0) -> Search:
    sp = space or make_space()
    study, _ = open_study(f"sqlite:///{tmp_path / 'study.db'}", name, space=sp, meta={"model": "tiny"}, resume=resume, seed=seed)
    return Search(study=study, space=sp, ceiling_bytes=CEILING, runner=runner, trials_dir=tmp_path / "trials",
                  budget=Budget(n_trials=n_trials, trial_timeout_s=30), estimator=estimator,
                  view=PlainView(io.StringIO()))  # fmt: skip


def test_baseline_runs_first_and_infeasible_trials_do_not_stop_the_study(tmp_path: Path) -> None:
    runner = FakeRunner()
    out = new_search(tmp_path, runner, n_trials=8).run()
    ran = [r for r in out.records if r.ran]
    assert len(ran) == 8 and out.stop_reason == "--n-trials 8 reached" and not out.interrupted
    first = min(out.records, key=lambda r: r.number)
    assert first.origin == "baseline" and first.point == Point(1, 16, True, False)
    assert first.grad_accum == 16 and first.feasible
    over = [r for r in ran if r.fate in ("over_budget", "oom")]
    assert over, "the boundary probes should hit the ceiling at least once"
    for r in over:
        assert not r.feasible
        assert r.fate == "oom" or r.peak_bytes > CEILING
    # every feasible trial is within the ceiling, and the study's constraints agree with the records
    for t in read_records_with_trials(out, tmp_path):
        rec, trial = t
        if rec.fate in ("ok", "over_budget", "oom"):
            assert (max(trial.constraints.values()) <= 0) == rec.feasible


def read_records_with_trials(out: Any, tmp_path: Path) -> list[tuple[Any, Any]]:
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    by_number = {t.number: t for t in study.trials}
    return [(r, by_number[r.number]) for r in out.records]


def test_oom_prunes_bigger_points_without_running_them(tmp_path: Path) -> None:
    runner = FakeRunner()
    out = new_search(tmp_path, runner, n_trials=14).run()
    ooms = [r for r in out.records if r.fate == "oom"]
    assert ooms
    ran_keys = {s.per_device_train_batch_size for s in runner.calls if not s.gradient_checkpointing}
    # after batch b without checkpointing ran out of memory, no larger batch without checkpointing ran
    for o in ooms:
        later = [r for r in out.records if r.ran and r.number > o.number and r.point.needs_at_least_as_much_memory_as(o.point)]
        assert later == []
    assert ran_keys  # some no-checkpointing point did run
    for r in out.records:
        if r.fate == PRUNED:
            assert r.reason.startswith("pruned")


def test_pruned_and_repeated_points_do_not_count_against_n_trials(tmp_path: Path) -> None:
    def est(spec: TrialSpec) -> int:
        return peak_of(spec) * 2

    runner = FakeRunner()
    search = new_search(tmp_path, runner, n_trials=6, estimator=est)
    sp = search.space
    doomed = Point(16, 32, False, False)  # 5 GiB by the fake, 10 by the estimate: far over the 1000 MiB ceiling
    search.study.enqueue_trial(sp.params(Point(1, 16, True, False)), user_attrs={"origin": "baseline"})
    search.study.enqueue_trial(sp.params(doomed), user_attrs={"origin": "sampler"})
    search.study.enqueue_trial(sp.params(Point(1, 16, True, False)), user_attrs={"origin": "sampler"})
    out = search.run()
    assert len(runner.calls) == 6 == sum(1 for r in out.records if r.ran)
    assert all(s.per_device_train_batch_size != 16 or s.gradient_checkpointing for s in runner.calls)
    pruned = [r for r in out.records if r.fate == PRUNED]
    assert pruned[0].point == doomed and pruned[0].number == 1
    # the baseline measured half of its estimate, so the estimate is calibrated down to the true 4.9 GiB
    assert pruned[0].reason.startswith("pruned by estimate: predicted 4.9 GiB > ceiling 1000 MiB")
    assert "measured ratio 0.50" in pruned[0].reason
    assert not pruned[0].feasible and pruned[0].predicted_bytes == est(sp.spec(doomed))
    repeat = next(r for r in out.records if r.fate == DUPLICATE)
    assert repeat.number == 2 and repeat.duplicate_of == 0 and "already tried as trial #0" in repeat.reason


def test_a_failing_runner_or_a_crash_is_an_infeasible_trial(tmp_path: Path) -> None:
    runner = FakeRunner(fail={1: "raise", 2: "crash"})
    out = new_search(tmp_path, runner, n_trials=5).run()
    ran = sorted((r for r in out.records if r.ran), key=lambda r: r.number)
    assert len(ran) == 5
    assert ran[1].fate == "error" and "runner bug" in ran[1].reason and not ran[1].feasible
    assert ran[2].fate == "crash" and "SIGSEGV" in ran[2].reason and not ran[2].feasible
    assert any(r.feasible for r in ran[3:])


def test_space_exhausted_stops_early(tmp_path: Path) -> None:
    sp = make_space(global_batch=2, ranks=(8,))  # 2 batches x 2 checkpointing = 4 points
    runner = FakeRunner()
    out = new_search(tmp_path, runner, n_trials=50, space=sp).run()
    assert out.stop_reason == "every point of the search space was measured or pruned"
    assert len(runner.calls) == 4
    assert len({s.per_device_train_batch_size * 10 + s.gradient_checkpointing for s in runner.calls}) == 4


def test_resume_continues_the_same_study(tmp_path: Path) -> None:
    first = FakeRunner()
    out1 = new_search(tmp_path, first, n_trials=3).run()
    assert sum(r.ran for r in out1.records) == 3
    with pytest.raises(StudyError, match="already exists.*--resume"):
        new_search(tmp_path, FakeRunner(), n_trials=5)
    second = FakeRunner()
    out2 = new_search(tmp_path, second, n_trials=5, resume=True).run()
    assert len(second.calls) == 2  # 5 in the study, 3 of them from before
    assert sum(r.ran for r in out2.records) == 5
    assert {r.number for r in out1.records if r.ran} <= {r.number for r in out2.records if r.ran}
    assert sum(1 for r in out2.records if r.origin == "baseline") == 1  # the baseline is not run again
    keys = [r.point.key for r in out2.records if r.ran]
    assert len(keys) == len(set(keys))  # nothing measured twice


def test_resume_refuses_a_different_search(tmp_path: Path) -> None:
    new_search(tmp_path, FakeRunner(), n_trials=1).run()
    with pytest.raises(StudyError, match="different search.*global_batch: stored 16, now 32"):
        new_search(tmp_path, FakeRunner(), resume=True, space=make_space(global_batch=32))


def test_ctrl_c_keeps_what_was_measured_and_resume_retries_the_trial(tmp_path: Path) -> None:
    runner = FakeRunner(fail={2: "interrupt"})
    out = new_search(tmp_path, runner, n_trials=6).run()
    assert out.interrupted and out.stop_reason.startswith("interrupted")
    interrupted = [r for r in out.records if r.fate == INTERRUPTED]
    assert len(interrupted) == 1
    lost = interrupted[0].point
    again = FakeRunner()
    out2 = new_search(tmp_path, again, n_trials=6, resume=True).run()
    assert not out2.interrupted
    retried = [r for r in out2.records if r.origin == "retry"]
    assert len(retried) == 1 and retried[0].point == lost and retried[0].ran
    assert again.calls[0].per_device_train_batch_size == lost.micro  # the interrupted point runs first
    assert sum(r.ran for r in out2.records) == 6


def test_trials_left_running_by_a_dead_process_are_closed_on_resume(tmp_path: Path) -> None:
    search = new_search(tmp_path, FakeRunner(), n_trials=2)
    trial = search.study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead_pid()}")
    trial.set_user_attr("point", Point(2, 8, True, False).to_dict())
    out = new_search(tmp_path, FakeRunner(), n_trials=2, resume=True).run()
    stale = [r for r in out.records if r.number == trial.number]
    assert stale and stale[0].fate == INTERRUPTED


def dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_records_are_readable_from_storage_alone(tmp_path: Path) -> None:
    out = new_search(tmp_path, FakeRunner(), n_trials=3).run()
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    again = read_records(study)
    assert [(r.number, r.fate, r.tokens_per_s) for r in again] == [(r.number, r.fate, r.tokens_per_s) for r in out.records]
    ok = next(r for r in again if r.feasible)
    assert ok.spec is not None and ok.result is not None and ok.spec.gradient_accumulation_steps == ok.grad_accum
    assert study.user_attrs["cfgtune"]["space"]["global_batch"] == 16


def test_patience_and_timeout_end_the_search(tmp_path: Path) -> None:
    calls = []

    def slower_each_time(spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
        calls.append(spec)
        micro = 0.01 * spec.per_device_train_batch_size * len(calls)  # tokens/s falls with every trial
        return TrialResult(status="ok", peak_bytes=300 * MIB, micro_step_s=micro, optimizer_step_s=0.0)

    search = new_search(tmp_path, slower_each_time, n_trials=20, space=make_space(ranks=(8,)))
    search.budget.patience = 3
    out = search.run()
    assert len(calls) == 4  # the first trial stays the best; three more add nothing
    assert "3 trials in a row added nothing" in out.stop_reason

    import time

    def slow(spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
        time.sleep(0.4)
        return TrialResult(status="ok", peak_bytes=300 * MIB, micro_step_s=0.01, optimizer_step_s=0.001)

    search = new_search(tmp_path / "t", slow, n_trials=20, name="t")
    search.budget.timeout_s = 0.5
    out = search.run()
    assert out.stop_reason == "--timeout 0.5s reached"
    assert 1 <= sum(r.ran for r in out.records) <= 3
