"""`cfgtune worker`: joining a shared `cfgtune auto` study from another node."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.trial.spec import TrialResult, TrialSpec

MIB = 1024**2


def _runner(spec: TrialSpec, *, timeout_s: float, workdir: Path, **_: Any) -> TrialResult:
    peak = (300 + 5 * spec.per_device_train_batch_size * (1 if spec.gradient_checkpointing else 3)) * MIB
    return TrialResult(status="ok", peak_bytes=peak, micro_step_s=0.01 * spec.per_device_train_batch_size**0.5,
                       optimizer_step_s=0.001, wall_s=0.01)  # fmt: skip


def test_worker_joins_a_study_and_shares_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    from tuner.models.arch import Architecture
    from tuner.search.space import SearchSpace, micro_batch_choices
    from tuner.search.study import META_KEY, Budget, Search, open_study, read_records
    from tuner.search.view import PlainView

    arch = Architecture(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=128, vocab_size=512)  # fmt: skip
    sp = SearchSpace(template=TrialSpec(arch=arch, cutoff_len=32, device="cpu", memory_limit_bytes=900 * MIB),
                     global_batch=8, micro_batches=micro_batch_choices(8, 1), ranks=(8, 16))  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    meta = {"model": "tiny", "device": "cpu", "ceiling_bytes": 900 * MIB, "memory_total_bytes": 1000 * MIB,
            "baseline": sp.baseline().to_dict()}  # fmt: skip
    study, _ = open_study(storage, "shared", space=sp, meta=meta, resume=False)
    study.set_user_attr(f"{META_KEY}.n_trials", 5)
    Search(study=study, space=sp, ceiling_bytes=900 * MIB, runner=_runner, trials_dir=tmp_path / "head",
           budget=Budget(n_trials=2), view=PlainView(io.StringIO())).run()  # the head node's share  # fmt: skip
    monkeypatch.setattr("tuner.trial.runner.run_trial", _runner)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--storage", storage, "--study", "shared"])
    assert result.exit_code == 0, result.output
    assert "ran 3 trial(s)" in result.output and "stopped: --n-trials 5 reached" in result.output
    records = read_records(study)
    assert sum(r.ran for r in records) == 5
    assert sum(r.origin == "baseline" for r in records) == 1
    keys = [r.point.key for r in records if r.ran]
    assert len(keys) == len(set(keys))  # the worker never re-ran what the head measured
    assert (tmp_path / "cfgtune-worker" / "trials").is_dir()


def test_worker_for_a_missing_study_is_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = CliRunner().invoke(cli, ["worker", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study", "nope"])
    assert result.exit_code == 2 and "no study 'nope'" in result.output


def test_bad_storage_url_is_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = CliRunner().invoke(cli, ["worker", "--storage", "not a url", "--study", "s"])
    assert result.exit_code == 2 and "is not a storage URL" in result.output


# -- several workers on one study: heartbeats, stale trials, claims ------------------------------------------------


def _study(tmp_path: Path, name: str = "s") -> tuple[Any, Any]:
    from tuner.models.arch import Architecture
    from tuner.search.space import SearchSpace, micro_batch_choices
    from tuner.search.study import open_study

    arch = Architecture(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=128, vocab_size=512)  # fmt: skip
    sp = SearchSpace(template=TrialSpec(arch=arch, cutoff_len=32, device="cpu", memory_limit_bytes=900 * MIB),
                     global_batch=8, micro_batches=micro_batch_choices(8, 1), ranks=(8, 16))  # fmt: skip
    study, _ = open_study(f"sqlite:///{tmp_path / 'shared.db'}", name, space=sp, meta={"model": "tiny"}, resume=False)
    return study, sp


def _search(study: Any, sp: Any, tmp_path: Path, n: int, runner: Any = _runner, **kw: Any) -> Any:
    from tuner.search.study import Budget, Search
    from tuner.search.view import PlainView

    kw.setdefault("view", PlainView(io.StringIO()))
    return Search(study=study, space=sp, ceiling_bytes=900 * MIB, runner=runner, trials_dir=tmp_path / "t",
                  budget=Budget(n_trials=n), **kw)  # fmt: skip


def _other_workers_trial(study: Any, point: Any, *, beat_age_s: float, every: float = 1.0) -> int:
    """A RUNNING trial of a worker on another host whose last heartbeat is ``beat_age_s`` old."""
    import time

    trial = study.ask()
    trial.set_user_attr("worker", "node-b:4242")
    trial.set_user_attr("point", point.to_dict())
    trial.set_user_attr("heartbeat", {"at": time.time() - beat_age_s, "seq": 7, "every": every, "worker": "node-b:4242"})
    return int(trial.number)


def test_a_trial_whose_worker_stopped_beating_is_closed_with_a_reason_and_retried(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from tuner.search.records import INTERRUPTED

    study, sp = _study(tmp_path)
    lost_point = sp.baseline()
    lost = _other_workers_trial(study, lost_point, beat_age_s=30.0, every=1.0)  # grace 4 s: long gone
    log = io.StringIO()
    from tuner.search.view import PlainView

    out = _search(study, sp, tmp_path, 3, view=PlainView(log)).run()
    assert out.stop_reason == "--n-trials 3 reached" and out.ran_here == 3
    closed = next(r for r in out.records if r.number == lost)
    assert closed.fate == INTERRUPTED and closed.lost_by == "node-b:4242"
    assert "worker node-b:4242 stopped sending heartbeats 30 s ago" in closed.reason
    assert f"trial {lost} closed: worker node-b:4242 stopped sending heartbeats" in log.getvalue()
    retried = [r for r in out.records if r.point == lost_point and r.ran]
    assert len(retried) == 1  # the point ran again, once


def test_a_live_trial_of_another_worker_counts_toward_n_trials_and_a_stale_one_does_not(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from tuner.search.space import Point

    study, sp = _study(tmp_path)
    live = _other_workers_trial(study, Point(8, 16, False, False), beat_age_s=0.5, every=60.0)
    out = _search(study, sp, tmp_path, 2, wait_for_others=False).run()
    assert out.ran_here == 1 and out.stop_reason == "--n-trials 2 reached"
    assert next(r for r in out.records if r.number == live).fate == "running"  # not closed: it is beating

    study2, sp2 = _study(tmp_path / "b")
    _other_workers_trial(study2, Point(8, 16, False, False), beat_age_s=100.0, every=1.0)
    out2 = _search(study2, sp2, tmp_path / "b", 2).run()
    assert out2.ran_here == 2  # the silent trial was closed, not counted


def test_a_point_whose_worker_died_twice_is_failed_not_retried_forever(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from tuner.search.records import INTERRUPTED, LOST

    study, sp = _study(tmp_path)
    point = sp.baseline()
    first = _other_workers_trial(study, point, beat_age_s=50.0)
    search = _search(study, sp, tmp_path, 1)
    assert search.recover_stale() == 1
    second = _other_workers_trial(study, point, beat_age_s=50.0)  # the retry's worker died as well
    out = _search(study, sp, tmp_path, 3).run()
    by = {r.number: r for r in out.records}
    assert by[first].fate == INTERRUPTED and by[second].fate == LOST
    assert "lost its worker twice: not retried" in by[second].reason and by[second].fate_text.startswith("failed")
    assert not any(r.point == point and r.ran for r in out.records)  # never run a third time
    assert out.ran_here == 3 and out.stop_reason == "--n-trials 3 reached"


def test_two_workers_that_claim_the_same_point_at_once_run_it_once(tmp_path: Path) -> None:
    """The race: another worker claims the point between this worker's plan and its claim."""
    pytest.importorskip("optuna")
    from tuner.search.records import DUPLICATE

    study, sp = _study(tmp_path)
    calls: list[TrialSpec] = []

    def runner(spec: TrialSpec, **kw: Any) -> TrialResult:
        calls.append(spec)
        return _runner(spec, **kw)

    search = _search(study, sp, tmp_path, 2, runner=runner, wait_for_others=False)
    claim = search._claim
    raced: list[int] = []

    def racing_claim(trial: Any, point: Any, origin: str) -> None:
        if not raced:  # the first claim loses the race to a trial of node-b on the same point
            raced.append(_other_workers_trial(study, point, beat_age_s=0.0, every=60.0))
        claim(trial, point, origin)

    search._claim = racing_claim
    out = search.run()
    dup = [r for r in out.records if r.fate == DUPLICATE]
    assert len(dup) == 1 and dup[0].duplicate_of == raced[0]
    ran_points = [r.point.key for r in out.records if r.ran]
    rival = next(r for r in out.records if r.number == raced[0])
    assert rival.point.key not in ran_points  # this worker did not run what node-b is running
    assert out.ran_here == len(calls) == 1  # node-b's running trial counts toward the 2


def test_the_heartbeat_beats_while_a_trial_runs(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    import time

    study, sp = _study(tmp_path)
    seen: list[int] = []

    def slow(spec: TrialSpec, **kw: Any) -> TrialResult:
        # Wait for the beats themselves rather than a fixed time: a loaded CI machine may run the beat thread late,
        # but it must run while the trial does. The deadline only bounds a heartbeat that never beats.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen.append(study.get_trials()[0].user_attrs.get("heartbeat", {}).get("seq", 0))
            if seen[-1] >= 4:
                break
            time.sleep(0.05)
        return _runner(spec, **kw)

    _search(study, sp, tmp_path, 1, runner=slow, heartbeat_s=0.1).run()
    beat = study.get_trials()[0].user_attrs["heartbeat"]
    assert max(seen) >= 4, f"the heartbeat did not beat while the trial ran: seq {seen[:1]} -> {seen[-1:]}"
    assert beat["seq"] >= 4 and beat["every"] == 0.1 and abs(beat["at"] - time.time()) < 60


def test_a_result_for_a_trial_another_worker_closed_is_dropped_not_counted(tmp_path: Path) -> None:
    """Clocks far apart or a storage outage: another worker closed this trial while it ran."""
    pytest.importorskip("optuna")
    import optuna

    study, sp = _study(tmp_path)
    log = io.StringIO()

    def closed_meanwhile(spec: TrialSpec, **kw: Any) -> TrialResult:
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if len(study.get_trials()) == 1:
            study.tell(running[0].number, state=optuna.trial.TrialState.FAIL)
        return _runner(spec, **kw)

    from tuner.search.view import PlainView

    out = _search(study, sp, tmp_path, 2, runner=closed_meanwhile, view=PlainView(log)).run()
    assert "closed by another worker while it ran" in log.getvalue()
    assert out.ran_here == 2 == sum(r.ran for r in out.records)  # counted once: by the study and by this worker
