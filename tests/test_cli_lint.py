"""`cfglint` as a user runs it: output, exit codes, fixes written to disk, settings, suppressions."""

from __future__ import annotations

import json
import re
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
    assert f"{broken}:5:1: error: KEY003" in out
    assert f"{broken}:6:1: info: KEY002 [*]" in out
    assert f"{broken}:7:1: error: KEY001" in out


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
    # the default target: 0.9.4+ refuse the file, older releases use the last value, so a warning naming both
    assert code == 1  # MODEL001: no model_name_or_path
    assert f"{p}:3:1: warning: FILE001 `lora_rank` is set twice (first on line 2)" in out
    code, out = run(["check", "--format", "concise", "--target-llamafactory", "0.9.5", str(p)], tmp_path)
    assert code == 1 and f"{p}:3:1: error: FILE001" in out


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
    assert ":5:1: error: KEY001" in out
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


# -- target versions ---------------------------------------------------------------------------------------------

VERSIONED = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
seed: 42
quantization_bit: 4
quantization_method: bnb
add_special_tokens: "<think>,</think>"
"""


def _cli(args: list[str], cwd: Path, *, hide_transformers: bool = False, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """cfglint in a fresh interpreter; ``hide_transformers`` makes transformers neither importable nor found in
    the package metadata, as in a pre-commit environment."""
    import subprocess
    import sys

    prelude = "import sys\n"
    if hide_transformers:
        prelude += (
            "sys.modules['transformers'] = None\n"
            "import tuner.lint.distributions as d\n"
            "_real = d.installed_version\n"
            "d.installed_version = lambda name: None if name.lower() == 'transformers' else _real(name)\n"
        )
    prelude += "from tuner.cli.entry import main\nsys.argv[0] = 'cfglint'\nmain()\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude, *args],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def test_same_findings_with_and_without_transformers_installed(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(VERSIONED.replace("bnb", "bitsandbytes") + "lerning_rate: 1.0e-4\ndo_eval: 1\n")
    args = ["check", "--format", "concise", "run.yaml"]
    with_tf = _cli(args, tmp_path, env={"CFGLINT_TRANSFORMERS": "4"})  # the old override is ignored now
    without = _cli(args, tmp_path, hide_transformers=True)
    assert with_tf == without
    code, out, _ = without
    assert code == 1
    assert "run.yaml:6:1: info: KEY003" in out  # bitsandbytes is 0.9.2's spelling
    assert "run.yaml:8:1: error: KEY001" in out  # lerning_rate
    assert not re.search(r"run.yaml:[49]:1: [a-z]+: KEY", out)  # seed: a TrainingArguments field; 1 is true
    assert out.splitlines()[-2].endswith("(linted for LLaMA-Factory 0.9.5, transformers 5.6.0).")


def test_auto_reads_the_installed_versions_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(VERSIONED)
    code, out, err = _cli(["check", "--format", "concise", "--target-transformers", "auto", "run.yaml"], tmp_path)
    from tuner.lint.distributions import installed_version

    installed = installed_version("transformers")
    if installed is None:
        assert code == 2 and "transformers is not installed" in err
    else:
        assert f"transformers {installed})" in out
    code, out, err = _cli(["check", "--target-transformers", "auto", "run.yaml"], tmp_path, hide_transformers=True)
    assert code == 2 and "--target-transformers auto: transformers is not installed" in err


@pytest.mark.parametrize(
    ("args", "expected", "absent"),
    [
        # a key added in 0.9.x, linted for 0.8.3
        (["--target-llamafactory", "0.8.3"], "KEY001 `add_special_tokens` is not accepted by LLaMA-Factory 0.8.3, "
         "transformers 4.45.0: added in LLaMA-Factory 0.9.3; 0.8.3 calls it `new_special_tokens`", None),
        # the bitsandbytes spelling: `bnb` from 0.9.3, `bitsandbytes` before
        (["--target-llamafactory", "0.9.2"], "KEY003 [*] `quantization_method: bnb` is not LLaMA-Factory 0.9.2's name", None),
        ([], "All checks passed! (linted for LLaMA-Factory 0.9.5, transformers 5.6.0)", "KEY"),
    ],
)
def test_findings_follow_the_target_versions(tmp_path: Path, args: list[str], expected: str, absent: str | None) -> None:
    (tmp_path / "run.yaml").write_text(VERSIONED)
    code, out = run(["check", "--select", "KEY", "--format", "concise", *args, "run.yaml"], tmp_path)
    assert expected in out, out
    assert absent is None or absent not in out


def test_renamed_key_by_release(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("model_name_or_path: Qwen/Qwen2.5-7B\nstage: sft\nnew_special_tokens: <a>\n")
    code, out = run(["check", "--select", "KEY", "--target-llamafactory", "0.9.5", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1 and "KEY002 [*] `new_special_tokens` is not accepted: use `add_special_tokens`" in out
    # with the default target (not stated) it holds only for some releases: info, asking for the version
    code, out = run(["check", "--select", "KEY", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 0 and "--target-llamafactory" in out
    code, out = run(["check", "--select", "KEY", "--target-llamafactory", "0.9.2", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 0, out


def test_default_optimizer_depends_on_the_transformers_release(tmp_path: Path) -> None:
    """GaLore needs `optim: adamw_torch`; unset, transformers >= 4.54 picks adamw_torch_fused on torch >= 2.8."""
    (tmp_path / "run.yaml").write_text(
        "model_name_or_path: Qwen/Qwen2.5-0.5B\nstage: sft\ndo_train: true\nfinetuning_type: full\nuse_galore: true\n"
    )
    code, out = run(["check", "--select", "FT012", "--format", "concise", "run.yaml"], tmp_path)
    assert "FT012" in out and "adamw_torch_fused" in out
    for tf in ("4.53.3", "4.52.4"):
        code, out = run(["check", "--select", "FT012", "--target-llamafactory", "0.9.3", "--target-transformers", tf,
                         "--format", "concise", "run.yaml"], tmp_path)  # fmt: skip
        assert "FT012" not in out, out


def test_one_point_exponent_floats_before_omegaconf(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("model_name_or_path: Qwen/Qwen2.5-0.5B\nstage: sft\nlearning_rate: 1e-4\n")
    code, out = run(["check", "--select", "KEY", "--target-llamafactory", "0.9.3", "--format", "concise", "run.yaml"], tmp_path)
    assert "KEY003 [*] `learning_rate: 1e-4` is the string '1e-4' to LLaMA-Factory 0.9.3" in out
    code, _ = run(["check", "--select", "KEY", "--fix", "--target-llamafactory", "0.9.3", "run.yaml"], tmp_path)
    assert "learning_rate: 1.0e-4\n" in (tmp_path / "run.yaml").read_text()
    code, out = run(["check", "--select", "KEY", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 0, out


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("concise", "Found 1 error (linted for LLaMA-Factory 0.9.4, transformers 4.57.1)."),
        ("full", "Found 1 error, 0 warnings, 0 infos in 1 file (linted for LLaMA-Factory 0.9.4, transformers 4.57.1)."),
        ("github", "::notice title=cfglint::cfglint: linted for LLaMA-Factory 0.9.4, transformers 4.57.1"),
    ],
)
def test_every_format_names_the_versions(tmp_path: Path, fmt: str, expected: str) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\nlerning_rate: 1.0e-4\n")
    code, out = run(["check", "--select", "KEY", "--target-llamafactory", "0.9.4", "--format", fmt, "run.yaml"], tmp_path)
    assert code == 1 and expected in out, out


def test_json_and_sarif_carry_the_versions(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\nlerning_rate: 1.0e-4\n")
    run(["check", "--transformers", "4", "--format", "json", "-o", "out.json", "run.yaml"], tmp_path)
    summary = json.loads((tmp_path / "out.json").read_text())["summary"]
    assert summary["target"] == {"llamafactory": "0.9.5", "transformers": "4.57.6"}
    assert summary["linted_for"] == "LLaMA-Factory 0.9.5, transformers 4.57.6"
    run(["check", "--format", "sarif", "-o", "out.sarif", "run.yaml"], tmp_path)
    props = json.loads((tmp_path / "out.sarif").read_text())["runs"][0]["properties"]
    assert props["target"] == {"llamafactory": "0.9.5", "transformers": "5.6.0"}


def test_target_settings_and_flags(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\nlora_rank: 8\n")
    (tmp_path / ".cfglint.toml").write_text('target-llamafactory = "0.9.3"\ntarget-transformers = "4.51.3"\n')
    code, out = run(["check", "--format", "concise", "--select", "KEY", "run.yaml"], tmp_path)
    assert "(linted for LLaMA-Factory 0.9.3, transformers 4.51.3)" in out
    code, out = run(["check", "--format", "concise", "--select", "KEY", "--target-llamafactory", "0.9.4", "run.yaml"], tmp_path)
    assert "(linted for LLaMA-Factory 0.9.4, transformers 4.51.3)" in out  # the flag wins; the setting stays
    (tmp_path / ".cfglint.toml").write_text("transformers = 4\n")  # the old major setting is shorthand
    code, out = run(["check", "--format", "concise", "--select", "KEY", "run.yaml"], tmp_path)
    assert "(linted for LLaMA-Factory 0.9.5, transformers 4.57.6)" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--target-llamafactory", "0.7.1"], "LLaMA-Factory 0.7.1 is outside the releases cfglint supports (0.8.0 to 0.9.5"),
        (["--target-llamafactory", "newest"], "not a version number: 'newest'"),
        (["--target-transformers", "6.1"], "transformers 6.1 is not a major cfglint knows"),
    ],
)
def test_unsupported_targets_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\n")
    code, out, err = _cli(["check", *args, "run.yaml"], tmp_path)
    assert code == 2 and words in err, err


def test_transformers_outside_the_release_range_warns(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\n")
    code, out, err = _cli(
        ["check", "--select", "KEY", "--target-llamafactory", "0.9.3", "--transformers", "5", "--format", "concise", "run.yaml"],
        tmp_path,
    )
    assert code == 0 and "cfglint: warning: LLaMA-Factory 0.9.3 requires transformers>=4.45.0" in err
    assert "(linted for LLaMA-Factory 0.9.3, transformers 5.8.0)" in out


def test_mcore_adapter_keys_are_not_judged_under_use_mca() -> None:
    from tuner.lint.testing import lint_result

    text = "model_name_or_path: Qwen/Qwen3-30B-A3B\nstage: sft\ndo_train: true\ntensor_model_parallel_size: 2\n"
    plain = lint_result(text, select="KEY001")
    assert [v.code for v in plain.violations] == ["KEY001"]
    mca = lint_result(text, select="KEY001", env={"USE_MCA": "1"})
    assert mca.violations == [] and "mcore_adapter" in mca.skipped["KEY001"]
    old = lint_result(text, select="KEY001", env={"USE_MCA": "1"}, llamafactory="0.9.3")  # no USE_MCA before 0.9.4
    assert [v.code for v in old.violations] == ["KEY001"]
