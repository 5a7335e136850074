"""From a config's data settings to :class:`DatasetStats`: resolve, read, convert, tokenize, measure, cache.

One dataset at a time, as LLaMA-Factory's ``_load_single_dataset``: read the files, sample ``num_samples`` rows,
keep the first ``max_samples``, convert, encode. Each dataset is cached on its own, so adding a second dataset
to a config does not re-tokenize the first. Problems never raise: a dataset that cannot be used gets a status
and a reason, and its defects become :class:`~tuner.data.problems.Problem` objects for the DATA rules.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuner.data import cache
from tuner.data.convert import convert, stage_kind
from tuner.data.encode import EncodeOptions, TurnLengths, encode_samples
from tuner.data.info import (
    DatasetAttr,
    DatasetInfo,
    DatasetInfoError,
    file_type,
    local_files,
    resolve,
    shown,
)
from tuner.data.problems import Problem
from tuner.data.readers import Table, read_bytes
from tuner.data.stats import SplitStats, Truncation
from tuner.data.templates import ChatTemplate, get_template
from tuner.data.tokenizer import TokenizerInfo, load_tokenizer


@dataclass
class DataRequest:
    """Everything from the config (and the command line) that decides the statistics."""

    train_names: list[str]
    eval_names: list[str]
    info: DatasetInfo
    tokenizer: TokenizerInfo
    stage: str = "sft"
    template: str | None = None
    cutoff_len: int = 2048
    packing: bool = False  # effective: unset means stage == pt; neat_packing turns it on
    packing_explicit: bool = False  # `packing: true` or `neat_packing: true`: LLaMA-Factory uses cutoff_len - 1
    neat_packing: bool = False
    mask_history: bool = False
    train_on_prompt: bool = False
    enable_thinking: bool | None = True
    preserve_thinking: bool = False
    default_system: str | None = None
    max_samples: int | None = None
    seed: int = 42
    env: Mapping[str, str] = field(default_factory=dict)
    use_cache: bool = True
    cwd: Path | None = None  # the launch directory, for showing paths

    @property
    def effective_cutoff(self) -> int:
        return self.cutoff_len - 1 if self.packing_explicit else self.cutoff_len


@dataclass
class DatasetReport:
    """One named dataset: where it came from and what happened to it."""

    name: str
    key: str  # the config key that names it: dataset | eval_dataset
    status: str  # ok | skipped | failed
    reason: str | None = None
    files: list[str] = field(default_factory=list)
    formatting: str | None = None
    rows: int = 0  # rows after num_samples / max_samples
    samples: int = 0  # rows that became usable samples
    media_rows: int = 0  # rows with images/videos/audios (their tokens are not counted)
    problems: list[Problem] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0
    lengths: TurnLengths | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "key": self.key, "status": self.status, "reason": self.reason, "files": self.files,
            "formatting": self.formatting, "rows": self.rows, "samples": self.samples, "media_rows": self.media_rows,
            "cached": self.cached, "seconds": round(self.seconds, 3), "problems": [p.to_dict() for p in self.problems],
        }  # fmt: skip
        if self.lengths is not None and self.lengths.count:
            d["lengths"] = SplitStats(self.lengths).to_dict()
        return d


@dataclass
class DatasetStats:
    """Token statistics of a config's datasets, what ``ctx.dataset`` is for the DATA rules."""

    request: DataRequest
    template: ChatTemplate
    reports: list[DatasetReport]
    train: SplitStats
    eval: SplitStats | None = None
    seconds: float = 0.0

    @property
    def cutoff_len(self) -> int:
        return self.request.cutoff_len

    @property
    def effective_cutoff(self) -> int:
        return self.request.effective_cutoff

    @property
    def kind(self) -> str:
        return stage_kind(self.request.stage)

    @property
    def problems(self) -> list[Problem]:
        return [p for r in self.reports for p in r.problems]

    def report_for(self, name: str) -> DatasetReport | None:
        return next((r for r in self.reports if r.name == name), None)

    def truncation(self, cutoff_len: int | None = None, split: str = "train") -> Truncation:
        stats = self.train if split == "train" else (self.eval or SplitStats(TurnLengths.empty()))
        return stats.truncation(
            self.effective_cutoff if cutoff_len is None else cutoff_len,
            mask_history=self.request.mask_history,
            train_on_prompt=self.request.train_on_prompt,
        )

    @property
    def skipped(self) -> list[DatasetReport]:
        return [r for r in self.reports if r.status == "skipped"]

    def to_dict(self) -> dict[str, Any]:
        req = self.request
        out: dict[str, Any] = {
            "tokenizer": str(req.tokenizer.path),
            "tokenizer_source": req.tokenizer.source,
            "template": self.template.name,
            "template_note": self.template.note,
            "dataset_info": str(req.info.path),
            "stage": req.stage,
            "cutoff_len": req.cutoff_len,
            "effective_cutoff_len": self.effective_cutoff,
            "packing": req.packing,
            "mask_history": req.mask_history,
            "train_on_prompt": req.train_on_prompt,
            "datasets": [r.to_dict() for r in self.reports],
            "train": self.train.to_dict(),
            "seconds": round(self.seconds, 3),
        }
        if self.train.count:
            out["train"]["truncation"] = self.truncation().to_dict()
        if self.eval is not None:
            out["eval"] = self.eval.to_dict()
            if self.eval.count:
                out["eval"]["truncation"] = self.truncation(split="eval").to_dict()
        return out


def compute(req: DataRequest) -> DatasetStats:
    """Statistics for every dataset the request names. Never raises for bad data; raises LookupError only
    when the tokenizer cannot be loaded."""
    t0 = time.perf_counter()
    state = _State(req)
    template = state.template()
    reports: list[DatasetReport] = []
    for key, names in (("dataset", req.train_names), ("eval_dataset", req.eval_names)):
        for name in names:
            reports.append(_one(state, template, name, key))
    train = SplitStats(TurnLengths.concat([r.lengths for r in reports if r.key == "dataset" and r.lengths is not None]))
    ev = None
    if req.eval_names:
        ev = SplitStats(TurnLengths.concat([r.lengths for r in reports if r.key == "eval_dataset" and r.lengths is not None]))
    return DatasetStats(req, template, reports, train, ev, seconds=time.perf_counter() - t0)


class _State:
    """The tokenizer is loaded only on a cache miss: a warm run never parses tokenizer.json."""

    def __init__(self, req: DataRequest) -> None:
        self.req = req
        self._tok: Any = None
        self._template: ChatTemplate | None = None

    def template(self) -> ChatTemplate:
        if self._template is None:
            name = self.req.template
            from tuner.data.templates import TEMPLATES

            if name in TEMPLATES:
                self._template = TEMPLATES[name]
            else:
                info = self.req.tokenizer
                raw = load_tokenizer(info) if info.chat_template else None
                self._template = get_template(name, info.chat_template, raw, info.bos_token, info.eos_token)
        return self._template

    def tokenizer(self) -> Any:
        if self._tok is None:
            t = self.template()
            self._tok = load_tokenizer(self.req.tokenizer, t.stop_words, t.replace_eos)
        return self._tok


def _one(state: _State, template: ChatTemplate, name: str, key: str) -> DatasetReport:
    req = state.req
    t0 = time.perf_counter()
    if name not in req.info.entries:
        return DatasetReport(name, key, "failed", f"undefined in {req.info.path}")
    try:
        attr = resolve(name, req.info)
    except DatasetInfoError as exc:
        return DatasetReport(name, key, "failed", str(exc))
    rep = DatasetReport(name, key, "ok", formatting=attr.formatting)
    if not attr.is_local:
        rep.status, rep.reason = "skipped", f"loaded from {attr.load_from} ({attr.dataset_name}): not downloaded"
        return rep
    files = local_files(attr, req.info)
    rep.files = [str(shown(f, req.cwd)) for f in files]
    if not files or not files[0].exists():
        rep.status, rep.reason = "failed", f"{shown(req.info.dir / attr.dataset_name, req.cwd)} not found"
        return rep
    ftype = file_type(files[0])
    if ftype is None or any(file_type(f) != ftype for f in files):
        rep.status, rep.reason = "failed", f"unsupported or mixed file types in {attr.dataset_name}"
        return rep
    raws: list[bytes] = []
    for f in files:
        try:
            raws.append(f.read_bytes())
        except OSError as exc:
            rep.problems.append(Problem(name, "unreadable", f"{shown(f, req.cwd)}: cannot read: {exc.strerror or exc}"))
            raws.append(b"")
    key_parts = _key_parts(req, template, attr, ftype)
    ck = cache.make_key([cache.file_digest(r) for r in raws], key_parts)
    cdir = cache.cache_dir(req.env)
    if req.use_cache:
        hit = cache.load(cdir, ck)
        if hit is not None:
            rep.problems = rep.problems + hit.problems
            rep.lengths, rep.cached = hit.lengths, True
            rep.rows, rep.samples, rep.media_rows = hit.meta["rows"], hit.meta["samples"], hit.meta.get("media_rows", 0)
            rep.seconds = time.perf_counter() - t0
            return rep
    table = Table()
    for f, raw in zip(files, raws, strict=True):
        part, probs = read_bytes(name, shown(f, req.cwd), raw, ftype)
        rep.problems += probs
        table.extend(part)
    table = _select(table, attr, req)
    rep.rows = len(table.rows)
    kind = stage_kind(req.stage)
    samples, probs, rep.media_rows = convert(table, attr, kind)
    rep.problems += probs
    rep.samples = len(samples)
    opts = EncodeOptions(
        kind=kind, enable_thinking=req.enable_thinking, preserve_thinking=req.preserve_thinking,
        mask_history=req.mask_history, default_system=req.default_system, has_bos=req.tokenizer.bos_token is not None,
    )  # fmt: skip
    rep.lengths = encode_samples(samples, template, state.tokenizer(), opts) if samples else TurnLengths.empty()
    if req.use_cache:
        meta = {"rows": rep.rows, "samples": rep.samples, "media_rows": rep.media_rows, "dataset": name}
        cache.store(cdir, ck, cache.Entry(rep.lengths, rep.problems, meta))
    rep.seconds = time.perf_counter() - t0
    return rep


def _key_parts(req: DataRequest, template: ChatTemplate, attr: DatasetAttr, ftype: str) -> dict[str, Any]:
    return {
        "entry": attr.raw,
        "ftype": ftype,
        "tokenizer": req.tokenizer.digest(),
        "template": template.fingerprint(),
        "kind": stage_kind(req.stage),
        "enable_thinking": req.enable_thinking,
        "preserve_thinking": req.preserve_thinking,
        "mask_history": req.mask_history,
        "default_system": req.default_system,
        "max_samples": req.max_samples,
        "seed": req.seed,
    }


def _select(table: Table, attr: DatasetAttr, req: DataRequest) -> Table:
    """``num_samples`` (a seeded random subset, or repeats) then the first ``max_samples``, as LLaMA-Factory."""
    n = len(table.rows)
    sel: list[int] | None = None
    if attr.num_samples is not None and n:
        rng = np.random.default_rng(req.seed)
        idx = rng.permutation(n)[: attr.num_samples]
        if attr.num_samples > n:
            idx = np.concatenate([idx, rng.choice(n, attr.num_samples - n)])
        sel = idx.tolist()
    if req.max_samples is not None and (sel is not None or req.max_samples < n):
        sel = (sel if sel is not None else list(range(n)))[: max(0, req.max_samples)]
    if sel is None:
        return table
    out = Table(rows=[table.rows[i] for i in sel], columns=set(table.columns))
    chosen = sel
    out._parts = [(0, lambda j: table.locate([chosen[j]])[0])]
    return out
