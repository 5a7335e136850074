"""``ctx.dataset`` for the linter: the config's data settings -> :class:`DatasetStats`, or a reason to skip.

``LookupError("one-line reason")`` means the DATA rules that need the dataset are skipped with that reason
(no tokenizer, no dataset_info.json, only hub datasets, the ``data`` extra is not installed). Bad *data* is not a
reason to skip: it comes back inside the statistics as problems, which DATA001 reports as errors. Anything
unexpected is turned into a skip as well, because a lint run must never end in a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.data.info import (
    DatasetInfoError,
    find_dataset_dir,
    is_online,
    load_dataset_info,
    split_names,
)

if TYPE_CHECKING:
    from tuner.data.pipeline import DataRequest, DatasetStats
    from tuner.config.context import Context


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def request_from_context(ctx: Context) -> DataRequest:
    """Build the statistics request, raising LookupError with the reason when it cannot be built."""
    names = split_names(ctx.get("dataset"))
    eval_names = split_names(ctx.get("eval_dataset"))
    if not names and not eval_names:
        raise LookupError("no `dataset` in the config")
    from tuner.data.tokenizer import find_tokenizer

    raw_dir = ctx.options.dataset_dir or ctx.get("dataset_dir") or "data"
    if is_online(raw_dir):
        raise LookupError(f"dataset_dir {raw_dir!r}: datasets come from the Hub and are not downloaded")
    cwd = ctx.options.cwd or Path.cwd()
    directory, looked = find_dataset_dir(str(raw_dir), cwd=cwd, config_dir=ctx.path.parent)
    if directory is None:
        raise LookupError(f"no dataset_info.json in {' or '.join(str(p) for p in looked)}")
    try:
        info = load_dataset_info(directory)
    except DatasetInfoError as exc:
        raise LookupError(str(exc)) from None
    local = [n for n in names + eval_names if isinstance(info.entries.get(n), dict) and _is_local(info.entries[n])]
    if not local:
        raise LookupError("no local dataset to read: " + ", ".join(names + eval_names) + " are on the Hub or undefined")
    candidates = [m for m in (ctx.options.model, ctx.get("model_name_or_path")) if m]
    tok = None
    error: LookupError | None = None
    for i, model in enumerate(candidates or [None]):
        try:
            tok = find_tokenizer(
                ctx.options.tokenizer if i == 0 else None, str(model) if model else None, cwd=cwd,
                config_dir=ctx.path.parent, env=ctx.options.env,
            )  # fmt: skip
            break
        except LookupError as exc:
            error = error or exc
    if tok is None:
        raise error or LookupError("no tokenizer: pass --tokenizer PATH")
    # Only now the heavy part: a lint run without a tokenizer never imports numpy or tokenizers.
    try:
        import numpy  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        raise LookupError("dataset rules need numpy and tokenizers: pip install 'cfgtune[data]'") from None
    from tuner.data.pipeline import DataRequest
    packing_set = ctx.get("packing")
    return DataRequest(
        train_names=names,
        eval_names=eval_names,
        info=info,
        tokenizer=tok,
        stage=ctx.stage,
        template=ctx.get("template") if isinstance(ctx.get("template"), str) else None,
        cutoff_len=_int(ctx.get("cutoff_len")) or 2048,
        packing=ctx.packing,
        packing_explicit=bool(packing_set) or ctx.flag("neat_packing"),
        neat_packing=ctx.flag("neat_packing"),
        mask_history=ctx.flag("mask_history"),
        train_on_prompt=ctx.flag("train_on_prompt"),
        enable_thinking=ctx.get("enable_thinking", True),
        preserve_thinking=ctx.flag("preserve_thinking"),
        default_system=ctx.get("default_system") if isinstance(ctx.get("default_system"), str) else None,
        max_samples=_int(ctx.get("max_samples")),
        seed=_int(ctx.get("seed")) or 42,
        env=ctx.options.env,
        cwd=cwd,
    )


def _is_local(entry: dict[str, Any]) -> bool:
    return "file_name" in entry and not any(
        k in entry for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
    )


def dataset_stats_for_lint(ctx: Context) -> DatasetStats:
    try:
        req = request_from_context(ctx)
        from tuner.data.pipeline import compute

        return compute(req)
    except LookupError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug here must not take the linter down: the data rules are skipped instead
        raise LookupError(f"dataset statistics failed ({exc.__class__.__name__}: {exc})") from None
