"""`cfglint` as a user runs it: output, exit codes, fixes written to disk, settings, suppressions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli.lint import cli

ROOT = Path(__file__).resolve().parent.parent

BROKEN = """\
# my run
model_name_or_path: Qwen/Qwen2.5-7B-Instruct   # the base
stage: sft
do_train: true
lora_rank: "16"        # keep this comment
evaluation_strategy: steps
lerning_rate: 1.0e-4
"""


def run(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run cfglint in ``cwd`` (settings files are looked up from there) and return (exit code, output)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(BROKEN)
    return p


def test_errors_exit_1_with_file_line_key(broken: Path, tmp_path: Path) -> None:
    code, out = run(["check", "--select", "KEY", "--format", "concise", str(broken)], tmp_path)
    assert code == 1
    assert f"{broken}:5:1: KEY003" in out
    assert f"{broken}:6:1: KEY002 [*]" in out
    assert f"{broken}:7:1: KEY001" in out


def test_clean_file_exits_0(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\nlora_rank: 16\n")
    code, out = run(["check", "--select", "KEY", "--format", "concise", str(p)], tmp_path)
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "missing.yaml"], "not found"),
        (["check", "--select", "NOPE999", "ok.yaml"], "unknown rule code or prefix: NOPE999"),
        (["check", "--format", "xml", "ok.yaml"], "Invalid value"),
        (["check", "--hw", "h1OO", "ok.yaml"], "--hw"),
    ],
)
def test_usage_and_input_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "ok.yaml").write_text("stage: sft\n")
    code, out = run(args, tmp_path)
    assert code == 2
    assert words in out


def test_malformed_yaml_is_one_line_and_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("stage: sft\nlora_rank: [8\n")
    code, out = run(["check", "--format", "concise", str(p)], tmp_path)
    assert code == 2
    assert f"{p}:" in out and "invalid YAML" in out
    assert "Traceback" not in out


def test_duplicate_key_is_a_finding_not_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "dup.yaml"
    p.write_text("stage: sft\nlora_rank: 8\nlora_rank: 16\n")
    code, out = run(["check", "--format", "concise", str(p)], tmp_path)
    assert code == 1
    assert f"{p}:3:1: FILE001 `lora_rank` is set twice (first on line 2)" in out


def test_missing_deepspeed_json_is_a_warning_and_linting_goes_on(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("stage: sft\ndeepspeed: ds_z3.json\nlora_rnk: 8\n")
    code, out = run(["check", "--format", "concise", str(p)], tmp_path)
    assert code == 1  # the unknown key below it is still found
    assert "FILE002" in out and "ds_z3.json` not found here" in out and "KEY001" in out


def test_fix_keeps_comments_and_relints(broken: Path, tmp_path: Path) -> None:
    code, out = run(["check", "--select", "KEY", "--fix", "--format", "concise", str(broken)], tmp_path)
    text = broken.read_text()
    assert 'lora_rank: 16        # keep this comment' in text
    assert "eval_strategy: steps" in text
    assert "# my run\n" in text and "# the base" in text
    assert "lerning_rate" in text  # the rename is unsafe: not applied without --unsafe-fixes
    assert code == 1  # the unknown key remains
    assert "KEY001" in out and "KEY002" not in out
    code, _ = run(["check", "--select", "KEY", "--fix", "--unsafe-fixes", "--format", "concise", str(broken)], tmp_path)
    assert code == 0
    assert "learning_rate: 1.0e-4" in broken.read_text()


def test_diff_writes_nothing(broken: Path, tmp_path: Path) -> None:
    before = broken.read_text()
    code, out = run(["check", "--select", "KEY", "--diff", "--format", "concise", str(broken)], tmp_path)
    assert broken.read_text() == before
    assert code == 1
    assert "-evaluation_strategy: steps" in out and "+eval_strategy: steps" in out
    assert '+lora_rank: 16        # keep this comment' in out


def test_select_ignore_prefix_and_specificity(broken: Path, tmp_path: Path) -> None:
    _, out = run(["check", "--select", "KEY", "--ignore", "KEY00", "--format", "concise", str(broken)], tmp_path)
    assert "KEY00" not in out
    _, out = run(["check", "--select", "KEY002", "--ignore", "KEY", "--format", "concise", str(broken)], tmp_path)
    assert "KEY002" in out and "KEY001" not in out  # the more specific selector wins


def test_inline_suppression(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text(
        "stage: sft\n"
        "lerning_rate: 1.0e-4  # cfglint: disable=KEY001\n"
        "# cfglint: disable=KEY\n"
        "evaluation_strategy: steps\n"
        "warmup_stepz: 10\n"
    )
    code, out = run(["check", "--select", "KEY", "--format", "concise", str(p)], tmp_path)
    assert code == 1
    assert ":5:1: KEY001" in out
    assert ":2:" not in out and ":4:" not in out


def test_file_wide_suppression(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("# cfglint: disable-file=KEY001\nstage: sft\nlerning_rate: 1.0e-4\n")
    code, _ = run(["check", "--select", "KEY", "--format", "concise", str(p)], tmp_path)
    assert code == 0


def test_settings_in_pyproject_and_dotfile(broken: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cfglint]\nselect = ["KEY"]\nignore = ["KEY001"]\n')
    _, out = run(["check", "--format", "concise", str(broken)], tmp_path)
    assert "KEY002" in out and "KEY001" not in out
    (tmp_path / ".cfglint.toml").write_text('select = ["KEY001"]\n')
    _, out = run(["check", "--format", "concise", str(broken)], tmp_path)
    assert "KEY001" in out and "KEY002" not in out
    (tmp_path / ".cfglint.toml").write_text('selekt = ["KEY001"]\n')
    code, out = run(["check", str(broken)], tmp_path)
    assert code == 2 and "unknown [tool.cfglint] setting" in out


def test_per_file_ignores(broken: Path, tmp_path: Path) -> None:
    (tmp_path / ".cfglint.toml").write_text('select = ["KEY"]\n[per-file-ignores]\n"run.yaml" = ["KEY00"]\n')
    code, _ = run(["check", "--format", "concise", str(broken)], tmp_path)
    assert code == 0


def test_strict_makes_warnings_fail(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: lora\nlora_rank: 16\nlora_alpha: 512\n")
    code, out = run(["check", "--select", "LORA", "--format", "concise", str(p)], tmp_path)
    assert code == 0 and "LORA" in out
    code, _ = run(["check", "--select", "LORA", "--strict", "--format", "concise", str(p)], tmp_path)
    assert code == 1


def test_json_output_shape(broken: Path, tmp_path: Path) -> None:
    code, out = run(["check", "--select", "KEY", "--format", "json", str(broken)], tmp_path)
    data = json.loads(out)
    assert data["version"] == 1
    assert set(data["summary"]) >= {"errors", "warnings", "infos"}
    (f,) = data["files"]
    assert f["path"] == str(broken)
    v = next(v for v in f["violations"] if v["code"] == "KEY002")
    assert {"code", "name", "severity", "message", "key", "line", "column", "fix"} <= set(v)
    assert v["key"] == "evaluation_strategy" and v["line"] == 6 and v["column"] == 1
    assert v["fix"] == {"safe": True, "description": "rename `evaluation_strategy` to `eval_strategy`"}


def test_non_config_yaml_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "workflow.yaml"
    p.write_text("name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n")
    code, _ = run(["check", "--format", "concise", str(p)], tmp_path)
    assert code == 0


def test_directories_are_searched(broken: Path, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.yml").write_text("stage: sft\nlerning_rate: 1\n")
    code, out = run(["check", "--select", "KEY", "--format", "concise", str(tmp_path)], tmp_path)
    assert code == 1
    assert "other.yml" in out and "run.yaml" in out


def test_rules_and_explain(tmp_path: Path) -> None:
    code, out = run(["rules", "--json"], tmp_path)
    assert code == 0
    rules = json.loads(out)
    assert any(r["code"] == "KEY001" and r["severity"] == "error" for r in rules)
    code, out = run(["explain", "KEY002"], tmp_path)
    assert code == 0
    assert "evaluation_strategy" in out and "Bad" in out and "Good" in out
    code, out = run(["explain", "KEY0002"], tmp_path)
    assert code == 2 and "did you mean" in out


def test_keys_lists_schema(tmp_path: Path) -> None:
    code, out = run(["keys", "lora_"], tmp_path)
    assert code == 0
    assert "lora_rank" in out and "lora_alpha" in out and "learning_rate" not in out


def test_bundled_example_is_clean(tmp_path: Path) -> None:
    code, out = run(["check", "--format", "concise", str(ROOT / "examples" / "qwen2.5-7b-lora-sft.yaml")], ROOT)
    assert code == 0, out


def test_mistakes_example_is_caught() -> None:
    code, out = run(
        ["check", "--format", "concise", "--hw", "v100-32g", str(ROOT / "examples" / "mistakes" / "qwen2.5-7b-oops.yaml")],
        ROOT,
    )
    assert code == 1
    for expected in ("KEY003", "KEY002", "LORA", "TMPL", "PREC"):
        assert expected in out, f"{expected} missing from:\n{out}"


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "a.yaml"],
        ["check", "--select", "KEY,LORA", "--select=PREC", "--ignore", "KEY001", "a.yaml", "b.yaml"],
        ["check", "--fix", "--unsafe-fixes", "--strict", "--format", "json", "-o", "out.json", "a.yaml"],
        ["check", "--hw=h100-80g", "--gpus", "8", "--nodes", "2", "--host-ram", "512", "--transformers", "5", "a.yaml"],
        ["check", "--command", "eval", "--show-skipped", "--force-exclude", "--isolated", "--model", "qwen2.5-7b", "a.yaml"],
    ],
)
def test_fast_parser_agrees_with_click(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point's click-free parser must produce exactly what click would pass to the command."""
    from tuner.cli import check as check_module
    from tuner.cli.check_options import parse_fast

    seen: dict[str, object] = {}
    monkeypatch.setattr(check_module, "run_check", lambda params: seen.update(params) or 0)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    fast = parse_fast(argv)
    assert fast is not None
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in seen.items()} == fast


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["check", "--format", "xml", "a.yaml"], 2, "Invalid value"),
        (["check", "--gpus", "0", "a.yaml"], 2, "Invalid value"),
        (["check", "--hw"], 2, "requires an argument"),
        (["check"], 2, "Missing argument"),
        (["--version"], 0, "cfglint, version"),
        (["check", "--help"], 0, "--unsafe-fixes"),
    ],
)
def test_entry_point_falls_back_to_click(argv: list[str], code: int, words: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import sys; from tuner.cli.entry import main; sys.argv[0] = 'cfglint'; main()", *argv],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == code
    assert words in result.stdout + result.stderr


def test_accelerate_config_is_not_linted(tmp_path: Path) -> None:
    p = tmp_path / "accelerate.yaml"
    p.write_text(
        "compute_environment: LOCAL_MACHINE\ndebug: false\ndistributed_type: FSDP\nfsdp_config:\n  fsdp_offload_params: false\n"
        "machine_rank: 0\nmixed_precision: bf16\nnum_machines: 1\nnum_processes: 8\nuse_cpu: false\n"
    )
    code, out = run(["check", "--format", "concise", str(p)], tmp_path)
    assert code == 0 and "KEY001" not in out
