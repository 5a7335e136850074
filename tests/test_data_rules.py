"""The DATA rules, each with a config that fires it and one that does not, on real files in tmp_path.

Every test builds a dataset_dir with dataset_info.json and a tiny BPE tokenizer (trained in the test); nothing
is downloaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tuner.data.testing import SENTENCES, tiny_tokenizer, write_dataset_dir
from tuner.lint.rule import Severity, Violation
from tuner.lint.testing import fix_text, lint_result, lint_text

WORDS = " ".join(SENTENCES).split()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def alpaca(n: int = 100, out_words: tuple[int, int] = (5, 120), prompt_words: int = 4, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"instruction": words(rng, prompt_words), "input": "", "output": words(rng, rng.randint(*out_words))}
            for _ in range(n)]  # fmt: skip


def chats(n: int = 40, turns: int = 4, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        conv = []
        for _ in range(turns):
            conv += [{"from": "human", "value": words(rng, 20)}, {"from": "gpt", "value": words(rng, 40)}]
        out.append({"conversations": conv})
    return out


def setup(tmp: Path, rows: list[dict], *, formatting: str = "alpaca", name: str = "d.json") -> Path:
    write_dataset_dir(tmp / "data", {"d": {"file_name": name, "formatting": formatting}}, {name: rows})
    return tmp


def lint(tmp: Path, tok_dir: Path, body: str, select: str) -> list[Violation]:
    text = f"model_name_or_path: {tok_dir}\nstage: sft\ndo_train: true\ndataset: d\ntemplate: qwen\n" + body
    return lint_text(text, path=tmp / "run.yaml", select=[select], cwd=tmp, env={"CFGTUNE_CACHE_DIR": str(tmp / "c")})


def codes(vs: list[Violation]) -> list[str]:
    return [v.code for v in vs]


# -- DATA001 ---------------------------------------------------------------------------------------------------
def test_data001_bad_rows_are_errors_with_locations(tmp_path: Path, tok_dir: Path) -> None:
    rows = alpaca(20)
    rows[3]["output"] = None
    rows[7] = {"instruction": "no output key at all"}
    setup(tmp_path, rows)
    (v,) = lint(tmp_path, tok_dir, "", "DATA001")
    assert v.severity is Severity.ERROR and v.key == "dataset" and v.line == 4
    assert "2 of 20 rows have" in v.message and "data/d.json:" in v.message
    setup(tmp_path, alpaca(20))
    assert lint(tmp_path, tok_dir, "", "DATA001") == []


def test_data001_unreadable_jsonl(tmp_path: Path, tok_dir: Path) -> None:
    write_dataset_dir(tmp_path / "data", {"d": {"file_name": "d.jsonl"}},
                      {"d.jsonl": '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": \n'})  # fmt: skip
    (v,) = lint(tmp_path, tok_dir, "", "DATA001")
    assert "data/d.jsonl:2" in v.message and "not valid JSON" in v.message


def test_data_rules_are_skipped_with_a_reason_without_tokenizer(tmp_path: Path) -> None:
    setup(tmp_path, alpaca(5))
    res = lint_result("model_name_or_path: org/never-downloaded\ndataset: d\ncutoff_len: 8\n", path=tmp_path / "run.yaml",
                      select=["DATA"], cwd=tmp_path, env={"HF_HUB_CACHE": str(tmp_path / "hub")})  # fmt: skip
    assert res.violations == []
    assert "no tokenizer" in res.skipped["DATA003"] and "--tokenizer" in res.skipped["DATA003"]
    assert "DATA002" not in res.skipped  # it needs only dataset_info.json


# -- DATA002 ---------------------------------------------------------------------------------------------------
def test_data002_undefined_name_and_missing_file(tmp_path: Path) -> None:
    write_dataset_dir(tmp_path / "data", {"alpaca_demo": {"file_name": "a.json"}, "gone": {"file_name": "gone.json"}},
                      {"a.json": alpaca(2)})  # fmt: skip
    vs = lint_text("dataset: alpaca_dem, gone\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path, env={})
    msgs = [v.message for v in vs]
    assert any("Undefined dataset alpaca_dem" in m for m in msgs)
    assert any("`alpaca_demo`" in (v.hint or "") for v in vs)
    assert any("data/gone.json does not exist" in m for m in msgs)
    assert all(v.severity is Severity.ERROR for v in vs)
    assert lint_text("dataset: alpaca_demo\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path, env={}) == []


def test_data002_ranking_dataset_needs_a_preference_stage(tmp_path: Path) -> None:
    write_dataset_dir(tmp_path / "data", {"p": {"file_name": "p.json", "ranking": True}}, {"p.json": alpaca(2)})
    (v,) = lint_text("stage: sft\ndataset: p\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path, env={})
    assert "not applicable in the current training stage" in v.message
    assert lint_text("stage: dpo\ndataset: p\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path, env={}) == []


def test_data002_missing_dataset_info_is_skipped_unless_the_launch_directory_is_known(tmp_path: Path) -> None:
    # Where LLaMA-Factory finds dataset_info.json depends on the directory it is launched from (usually its own
    # checkout): from a pre-commit run that is unknown, so the rule says so instead of reporting.
    r = lint_result("dataset: alpaca_en_demo\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path, env={})
    assert r.violations == [] and "--data-root" in r.skipped["DATA002"]
    # --data-root (the launch directory) or --dataset-dir make it knowable
    (v,) = lint_text("dataset: d\ndataset_dir: nowhere\n", path=tmp_path / "run.yaml", select=["DATA002"], cwd=tmp_path,
                     env={}, launch_dir_stated=True)  # fmt: skip
    assert v.severity is Severity.WARNING and v.key == "dataset_dir" and "Cannot open nowhere/dataset_info.json" in v.message


def test_data002_dataset_dir_relative_to_the_config(tmp_path: Path) -> None:
    """LLaMA-Factory resolves dataset_dir from the launch directory; we also accept the config's directory."""
    cfg_dir = tmp_path / "configs"
    write_dataset_dir(cfg_dir / "data", {"d": {"file_name": "d.json"}}, {"d.json": alpaca(2)})
    assert lint_text("dataset: d\n", path=cfg_dir / "run.yaml", select=["DATA002"], cwd=tmp_path, env={}) == []


# -- DATA003 ---------------------------------------------------------------------------------------------------
def test_data003_cutoff_below_p90_fires_with_counts_and_a_safe_fix(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(100))
    (v,) = lint(tmp_path, tok_dir, "cutoff_len: 128\n", "DATA003")
    assert v.severity is Severity.WARNING and v.key == "cutoff_len"
    assert "90th percentile" in v.message and "are truncated" in v.message
    assert v.fix is not None and v.fix.safe
    suggested = int(v.fix.description.split("`cutoff_len: ")[1].split("`")[0])
    assert suggested % 64 == 0
    # at the suggested value the rule is quiet and at most 10% of samples are truncated
    assert lint(tmp_path, tok_dir, f"cutoff_len: {suggested}\n", "DATA003") == []


def test_data003_fix_keeps_comments_and_layout(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(100))
    text = (f"# my run\nmodel_name_or_path: {tok_dir}  # local\nstage: sft\ndo_train: true\ndataset: d\n"
            "template: qwen\ncutoff_len: 128   # too short?\nlearning_rate: 1.0e-4\n")  # fmt: skip
    fixed = fix_text(text, path=tmp_path / "run.yaml", select=["DATA003"], cwd=tmp_path,
                     env={"CFGTUNE_CACHE_DIR": str(tmp_path / "c")})  # fmt: skip
    lines = fixed.splitlines()
    assert lines[0] == "# my run" and lines[1].endswith("# local") and lines[-1] == "learning_rate: 1.0e-4"
    new = next(ln for ln in lines if ln.startswith("cutoff_len:"))
    assert new.endswith("   # too short?") and int(new.split()[1]) % 64 == 0 and int(new.split()[1]) > 128


def test_data003_inserts_cutoff_len_when_the_default_is_too_short(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(30, out_words=(900, 1200)))  # well above the 2048 default
    text = f"model_name_or_path: {tok_dir}\nstage: sft\ndataset: d\ntemplate: qwen\nlearning_rate: 1.0e-4\n"
    fixed = fix_text(text, path=tmp_path / "run.yaml", select=["DATA003"], cwd=tmp_path,
                     env={"CFGTUNE_CACHE_DIR": str(tmp_path / "c")})  # fmt: skip
    assert "\ntemplate: qwen\ncutoff_len: " in fixed and fixed.endswith("learning_rate: 1.0e-4\n")


# -- DATA004 ---------------------------------------------------------------------------------------------------
def test_data004_cutoff_far_above_p99(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(60, out_words=(5, 40)))
    (v,) = lint(tmp_path, tok_dir, "cutoff_len: 8192\n", "DATA004")
    assert v.severity is Severity.INFO and "99th percentile" in v.message
    assert v.fix is not None and v.fix.safe and "every sample still fits" in (v.hint or "")
    assert lint(tmp_path, tok_dir, "cutoff_len: 128\n", "DATA004") == []
    assert lint(tmp_path, tok_dir, "cutoff_len: 8192\npacking: true\n", "DATA004") == []  # rows are filled


# -- DATA005 ---------------------------------------------------------------------------------------------------
def test_data005_train_on_prompt_with_long_prompts(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(40, out_words=(1, 3), prompt_words=120))
    (v,) = lint(tmp_path, tok_dir, "train_on_prompt: true\ncutoff_len: 4096\n", "DATA005")
    assert v.key == "train_on_prompt" and "prompt tokens" in v.message and v.fix is not None and not v.fix.safe
    assert lint(tmp_path, tok_dir, "cutoff_len: 4096\n", "DATA005") == []
    setup(tmp_path, alpaca(40, out_words=(100, 120), prompt_words=3))
    assert lint(tmp_path, tok_dir, "train_on_prompt: true\ncutoff_len: 4096\n", "DATA005") == []


# -- DATA006 ---------------------------------------------------------------------------------------------------
def test_data006_multi_turn_samples_lose_last_turns(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, chats(), formatting="sharegpt")
    (v,) = lint(tmp_path, tok_dir, "cutoff_len: 256\n", "DATA006")
    assert "lose their last turns" in v.message and "mask_history" in (v.hint or "")
    assert lint(tmp_path, tok_dir, "cutoff_len: 8192\n", "DATA006") == []
    assert lint(tmp_path, tok_dir, "cutoff_len: 256\nmask_history: true\n", "DATA006") == []


def test_data006_mask_history_on_single_turn_data(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(10))
    (v,) = lint(tmp_path, tok_dir, "mask_history: true\n", "DATA006")
    assert v.severity is Severity.INFO and "no effect" in v.message and v.fix is not None


# -- DATA007 ---------------------------------------------------------------------------------------------------
def test_data007_packing_with_short_samples(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(200, out_words=(3, 8)))
    (v,) = lint(tmp_path, tok_dir, "packing: true\ncutoff_len: 4096\nper_device_train_batch_size: 2\n", "DATA007")
    assert "samples in each" in v.message and "fewer steps" in v.message
    assert lint(tmp_path, tok_dir, "cutoff_len: 4096\n", "DATA007") == []  # no packing


def test_data007_packing_that_gains_nothing(tmp_path: Path, tok_dir: Path) -> None:
    setup(tmp_path, alpaca(30, out_words=(150, 160)))
    (v,) = lint(tmp_path, tok_dir, "neat_packing: true\ncutoff_len: 512\n", "DATA007")
    assert "gains little" in v.message


def test_eval_dataset_problems_point_at_eval_dataset(tmp_path: Path, tok_dir: Path) -> None:
    rows = alpaca(5)
    rows[1]["output"] = 3
    write_dataset_dir(tmp_path / "data", {"d": {"file_name": "d.json"}, "e": {"file_name": "e.json"}},
                      {"d.json": alpaca(5), "e.json": rows})  # fmt: skip
    (v,) = lint(tmp_path, tok_dir, "eval_dataset: e\n", "DATA001")
    assert v.key == "eval_dataset" and "dataset `e`" in v.message
    assert json.loads((tmp_path / "data" / "dataset_info.json").read_text())  # untouched
