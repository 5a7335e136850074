"""The Optuna study behind `cfgtune auto` and `cfgtune worker`: storage, creation and resume.

The study stores everything a worker on another node, a resume or optuna-dashboard needs: the search space and
the run's metadata (``user_attrs["cfgtune"]``), every trial's point and measurements (:mod:`tuner.search.records`),
objectives named ``tokens_per_s`` and ``lora_rank``, and one categorical parameter per searched dimension under
its LLaMA-Factory name (:mod:`tuner.search.space`). The trial loop is :mod:`tuner.search.loop` (exploration,
racing, the gain over the baseline), with :mod:`tuner.search.planner` choosing what to measure and
:mod:`tuner.search.recovery` closing the trials of workers that stopped; they are re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.search.loop import Budget, Runner, Search, SearchInterrupted, SearchOutcome, judge_result
from tuner.search.records import TrialRecord, records_of
from tuner.search.recovery import worker_id
from tuner.search.space import SearchSpace

if TYPE_CHECKING:
    import optuna

META_KEY = "cfgtune"
#: 2: categorical parameters under the dimensions' names, named objectives, repeated proposals answered.
META_VERSION = 2
#: The objectives' names, as optuna-dashboard shows them.
METRIC_NAMES = ("tokens_per_s", "lora_rank")

__all__ = ["META_KEY", "Budget", "Runner", "Search", "SearchInterrupted", "SearchOutcome", "StudyError",
           "default_storage", "judge_result", "make_storage", "open_study", "read_records", "records_of",
           "worker_id"]  # fmt: skip


class StudyError(Exception):
    """A study that cannot be created, found or resumed; the message says what to do."""


# -- storage and study --------------------------------------------------------------------------------------------


def default_storage(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'study.db').resolve()}"


def make_storage(url: str) -> Any:
    """Any Optuna storage from one string.

    ``sqlite:///file.db``, ``postgresql://...``, ``mysql+pymysql://...`` (SQLAlchemy URLs, RDB storage);
    ``journal:PATH`` or a path ending in ``.log``/``.journal`` (append-only journal file, safe on NFS);
    ``redis://host:port`` (journal in Redis); ``grpc://host:port`` (an ``optuna grpc`` storage proxy).
    """
    import optuna

    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:").removeprefix("//")
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(Path(path).expanduser())))
    if url.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    if url.startswith("grpc://"):
        host, _, port = url.removeprefix("grpc://").partition(":")
        return optuna.storages.GrpcStorageProxy(host=host or "localhost", port=int(port or 13000))
    if "://" not in url:
        raise StudyError(
            f"--storage {url!r} is not a storage URL: use e.g. sqlite:///study.db, postgresql://user@host/db, "
            "journal:/shared/study.log or redis://host:6379"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several local workers wait for the lock, not fail
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ModuleNotFoundError as exc:
        hint = {"postgresql": "pip install 'psycopg[binary]' (or psycopg2-binary with postgresql+psycopg2://...)",
                "mysql": "pip install pymysql, and write the URL as mysql+pymysql://user:password@host/db"}  # fmt: skip
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        raise StudyError(f"cannot open storage {url!r}: the database driver is missing ({exc}); "
                         + hint.get(scheme, "install the SQLAlchemy driver the URL names")) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds
        raise StudyError(f"cannot open storage {url!r}: {exc}") from None


def make_sampler(seed: int | None, n_startup_trials: int = 4) -> Any:
    import optuna

    # Multivariate TPE with constant liar (v5 defaults) copes with parallel workers; the few random start-up
    # trials matter because the planner has already placed the informative first points.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True, constant_liar=True
    )


def directions(space: SearchSpace) -> list[str]:
    return ["maximize", "maximize"] if space.is_lora and len(space.ranks) > 1 else ["maximize"]


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def open_study(
    storage_url: str,
    name: str,
    *,
    space: SearchSpace | None,
    meta: dict[str, Any] | None,
    resume: bool,
    seed: int | None = None,
    create: bool = True,
) -> tuple[optuna.Study, dict[str, Any]]:
    """Create the study, or load it when resuming or joining; returns it with its stored cfgtune metadata.

    ``space`` None (a worker) takes the stored space as it is. Otherwise a resumed study must have been
    created for the same search space, and the differences are named when it was not.
    """
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    storage = make_storage(storage_url)
    try:
        exists = name in study_names(storage)
    except Exception as exc:  # noqa: BLE001
        raise StudyError(f"cannot read storage {storage_url!r}: {exc}") from None
    if exists and not resume:
        raise StudyError(
            f"study {name!r} already exists in {storage_url}: pass --resume to continue it, "
            "or --study NAME (or another --output-dir) to start a new one"
        )
    if not exists and not create:
        known = ", ".join(study_names(storage)) or "none"
        raise StudyError(f"no study {name!r} in {storage_url} (studies there: {known})")
    if exists:
        probe = optuna.load_study(study_name=name, storage=storage)
        stored = probe.user_attrs.get(META_KEY)
        if not isinstance(stored, dict) or "space" not in stored:
            raise StudyError(f"study {name!r} in {storage_url} was not created by cfgtune auto")
        if int(stored.get("version", 1)) < META_VERSION:
            raise StudyError(
                f"study {name!r} was created by an older cfgtune (its parameters are indices, not values): start a "
                "new study (another --study NAME or --output-dir)"
            )
        stored_space = SearchSpace.from_dict(stored["space"])
        if space is not None:
            diff = space.differences(stored_space)
            if diff:
                raise StudyError(
                    f"study {name!r} was created for a different search; --resume needs the same options. "
                    "Differences: " + "; ".join(diff[:6])
                )
        sampler = make_sampler(seed)
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        return study, stored
    assert space is not None and meta is not None
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions(space),  # type: ignore[arg-type]
        sampler=make_sampler(seed), load_if_exists=True,
    )  # fmt: skip
    if META_KEY not in study.user_attrs:
        study.set_user_attr(META_KEY, {"version": META_VERSION, **meta, "space": space.to_dict()})
        import warnings

        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRIC_NAMES[: len(study.directions)]))
    return study, study.user_attrs[META_KEY]


def read_records(study: optuna.Study) -> list[TrialRecord]:
    return records_of(study.get_trials(deepcopy=False))


