"""Reading dataset files like LLaMA-Factory: formats, columns, and every kind of bad file or row.

The fixtures under tests/fixtures/data/ are small alpaca/sharegpt files, several malformed on purpose. Problems
must come back as counted findings with file:line, never as exceptions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuner.config.loader import parse_config
from tuner.data.lint_stats import dataset_stats_for_lint
from tuner.data.pipeline import DatasetStats
from tuner.data.testing import tiny_tokenizer
from tuner.config.context import Context, LintOptions

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "data")
    return tmp_path


def stats_for(work: Path, tok_dir: Path, dataset: str, **extra: object) -> DatasetStats:
    lines = [f"model_name_or_path: {tok_dir}", "stage: sft", "do_train: true", f"dataset: {dataset}", "template: qwen"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    doc = parse_config("\n".join(lines) + "\n", work / "run.yaml")
    ctx = Context(doc, LintOptions(cwd=work, env={"CFGTUNE_CACHE_DIR": str(work / "cache")}))
    return dataset_stats_for_lint(ctx)


def problems(stats: DatasetStats, name: str) -> list:
    rep = stats.report_for(name)
    assert rep is not None
    return rep.problems


def test_good_alpaca_has_no_problems_and_all_samples(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_ok")
    assert problems(s, "alpaca_ok") == []
    assert s.train.count == 5
    # without `columns`, `system` and `history` are not read (LLaMA-Factory's defaults leave them unset) ...
    assert s.train.multi_turn == 0
    # ... with them mapped, the history row is longer and multi-turn, and the row's own system prompt replaces
    # qwen's (longer) default one
    full = stats_for(work, tok_dir, "alpaca_full")
    assert full.train.multi_turn == 1
    assert full.train.total[4] > s.train.total[4] and full.train.total[3] < s.train.total[3]
    assert full.train.total[:3].tolist() == s.train.total[:3].tolist()


def test_missing_input_column_is_a_keyerror_with_a_fix(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_no_input")
    (p,) = problems(s, "alpaca_no_input")
    assert p.kind == "missing-column" and p.fatal
    assert "KeyError: 'input'" in p.message
    assert '"columns"' in (p.hint or "")
    # the same file with `columns` that leave `query` unset reads fine: LLaMA-Factory's semantics
    s2 = stats_for(work, tok_dir, "alpaca_no_input_mapped")
    assert problems(s2, "alpaca_no_input_mapped") == [] and s2.train.count == 2


def test_invalid_json_line_is_counted_with_its_line_number(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_bad_lines")
    (p,) = problems(s, "alpaca_bad_lines")
    assert p.kind == "unreadable" and p.count == 1
    assert p.where == ["data/alpaca_bad_lines.jsonl:3"]
    assert s.train.count == 3  # the statistics still use the good lines


def test_bad_rows_are_counted_and_located(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_rows")
    by_kind = {(p.kind, p.fatal): p for p in problems(s, "alpaca_rows")}
    dropped = by_kind[("dropped-row", False)]
    assert dropped.count == 2 and dropped.total == 5
    assert dropped.where == ["data/alpaca_rows.jsonl:2", "data/alpaca_rows.jsonl:5"]
    fatal = by_kind[("malformed-row", True)]
    assert fatal.count == 1 and fatal.where == ["data/alpaca_rows.jsonl:3"] and '"instruction"' in fatal.message
    assert s.train.count == 2


def test_broken_json_array_reports_line_and_column(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "broken_array")
    (p,) = problems(s, "broken_array")
    assert p.kind == "unreadable"
    assert "data/broken_array.json:3:" in p.message and "invalid JSON" in p.message
    assert s.train.count == 0


def test_empty_file(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "empty")
    (p,) = problems(s, "empty")
    assert p.kind == "empty" and "is empty" in p.message


def test_sharegpt_roles_and_counts(work: Path, tok_dir: Path) -> None:
    ok = stats_for(work, tok_dir, "sharegpt_ok")
    assert problems(ok, "sharegpt_ok") == [] and ok.train.count == 2 and ok.train.multi_turn == 1
    bad = stats_for(work, tok_dir, "sharegpt_bad")
    found = {p.where[0].rsplit(":", 1)[1]: p for p in problems(bad, "sharegpt_bad")}
    assert set(found) == {"2", "3", "4", "5"} and all(p.count == 1 for p in found.values())
    assert not found["2"].fatal and "roles out of order" in found["2"].message  # gpt speaks first: dropped
    assert not found["3"].fatal and "odd number of messages" in found["3"].message  # dropped
    assert found["4"].fatal and "not a string" in found["4"].message  # null content: LLaMA-Factory stops
    assert found["5"].fatal and "not a list" in found["5"].message
    assert bad.train.count == 1


def test_tags_and_columns_for_openai_style_messages(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "openai_style")
    assert problems(s, "openai_style") == [] and s.train.count == 2


def test_csv_and_parquet(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_csv")
    assert problems(s, "alpaca_csv") == [] and s.train.count == 2
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = json.loads((work / "data" / "alpaca_ok.json").read_text())[:3]
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in ("instruction", "input", "output")} for r in rows]),
                   work / "data" / "ok.parquet")  # fmt: skip
    info = json.loads((work / "data" / "dataset_info.json").read_text())
    info["pq"] = {"file_name": "ok.parquet"}
    (work / "data" / "dataset_info.json").write_text(json.dumps(info))
    s2 = stats_for(work, tok_dir, "pq")
    assert problems(s2, "pq") == [] and s2.train.count == 3
    # the same rows give the same lengths whether they come from JSON or parquet
    s3 = stats_for(work, tok_dir, "alpaca_ok", max_samples=3)
    assert s2.train.total.tolist() == s3.train.total.tolist()


def test_hub_only_datasets_are_skipped_not_downloaded(work: Path, tok_dir: Path) -> None:
    s = stats_for(work, tok_dir, "alpaca_ok,hub_only")
    rep = s.report_for("hub_only")
    assert rep is not None and rep.status == "skipped" and "not downloaded" in (rep.reason or "")
    assert s.train.count == 5
    with pytest.raises(LookupError, match="no local dataset"):
        stats_for(work, tok_dir, "hub_only")


def test_max_samples_and_num_samples(work: Path, tok_dir: Path) -> None:
    assert stats_for(work, tok_dir, "alpaca_ok", max_samples=2).train.count == 2
    info = json.loads((work / "data" / "dataset_info.json").read_text())
    info["sampled"] = {"file_name": "alpaca_ok.json", "num_samples": 8}
    (work / "data" / "dataset_info.json").write_text(json.dumps(info))
    assert stats_for(work, tok_dir, "sampled").train.count == 8  # LLaMA-Factory repeats rows to reach it


def test_no_tokenizer_is_a_skip_reason_not_an_error(work: Path) -> None:
    doc = parse_config("model_name_or_path: org/not-cached\ndataset: alpaca_ok\n", work / "run.yaml")
    ctx = Context(doc, LintOptions(cwd=work, env={"HF_HUB_CACHE": str(work / "hub")}))
    with pytest.raises(LookupError, match="no tokenizer for org/not-cached"):
        dataset_stats_for_lint(ctx)


def test_tokenizer_from_the_hf_cache_offline(work: Path, tok_dir: Path) -> None:
    snap = work / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tok_dir, snap)
    (work / "hub" / "models--org--tiny" / "refs").mkdir()
    (work / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    doc = parse_config("model_name_or_path: org/tiny\ndataset: alpaca_ok\ntemplate: qwen\n", work / "run.yaml")
    ctx = Context(doc, LintOptions(cwd=work, env={"HF_HUB_CACHE": str(work / "hub"), "CFGTUNE_CACHE_DIR": str(work / "c")}))
    s = dataset_stats_for_lint(ctx)
    assert s.request.tokenizer.source == "HF cache" and s.train.count == 5
