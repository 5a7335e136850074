"""`cfglint check` in a real repository and in CI: non-configs never block the hook; ruff's habits
(--statistics, --exit-zero, stdin, --diff, --show-fixes, rule URLs); GitLab and JUnit reports; path-aware globs;
terminal output that wraps between words and groups skipped reasons."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tuner.cli.lint import cli

ROOT = Path(__file__).resolve().parent.parent

CONFIG_WITH_ONE_ERROR = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
dataset: alpaca_en_demo
template: qwen
bf16: true
output_dir: saves/qwen
lerning_rate: 1.0e-4
"""

MIXED = {
    ".github/workflows/ci.yml": "name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n",
    "k8s/pods.yaml": "- name: web\n  image: nginx\n- name: db\n  image: postgres\n",
    "k8s/app.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\napiVersion: apps/v1\nkind: Deployment\n",
    "docker-compose.yml": "services:\n  web:\n    image: nginx\n    ports: ['80:80']\n",
    "ansible/site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: hi}\n",
    "charts/web/templates/deploy.yaml": "{{- if .Values.enabled }}\nkind: Deployment\n{{- end }}\n",
    "empty.yaml": "",
    "configs/run.yaml": CONFIG_WITH_ONE_ERROR,
}


def make_repo(root: Path, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return sorted(files)


def hook_command() -> list[str]:
    """The documented hook's command line, as pre-commit builds it: `entry` then the file names."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "cfglint")
    assert hook["types_or"] == ["yaml"] and "files" not in hook  # every YAML in the repository reaches us
    return shlex.split(hook["entry"]) + list(hook.get("args", []))


def cfglint(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a fresh interpreter (the fast path pre-commit takes)."""
    code = "import sys; from tuner.cli.entry import main; sys.argv[0] = 'cfglint'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, input=stdin, env={**os.environ, "NO_COLOR": "1"}
    )


def run(args: list[str], cwd: Path, stdin: str | None = None) -> tuple[int, str, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, input=stdin, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


# -- the pre-commit hook over a repository of mixed YAML ---------------------------------------------------------


def test_documented_hook_passes_mixed_yaml_except_real_findings(tmp_path: Path) -> None:
    files = make_repo(tmp_path, MIXED)
    entry = hook_command()
    assert entry[:2] == ["cfglint", "check"]
    proc = cfglint(entry[1:] + files, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"\S+:\d+:\d+: ", ln)]
    assert lines == [
        "configs/run.yaml:9:1: error: KEY001 unknown key `lerning_rate`: LLaMA-Factory refuses the config "
        '("Some keys are not used by the HfArgumentParser")'
    ]
    assert proc.stderr == ""
    # without the config, the same repository passes silently
    proc = cfglint(entry[1:] + [f for f in files if f != "configs/run.yaml"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("All checks passed!")
    assert "k8s" not in proc.stdout and "skipped" not in proc.stdout


def test_show_skipped_says_why_each_non_config_was_not_linted(tmp_path: Path) -> None:
    files = make_repo(tmp_path, MIXED)
    proc = cfglint(["check", "--show-skipped", *files], tmp_path)
    out = proc.stdout
    assert ".github/workflows/ci.yml: skipped: not a LLaMA-Factory config (no LLaMA-Factory keys at the top level)" in out
    assert "k8s/pods.yaml: skipped: not a LLaMA-Factory config (the top level is a list, not a mapping)" in out
    assert "ansible/site.yml: skipped: not a LLaMA-Factory config (the top level is a list, not a mapping)" in out
    assert "k8s/app.yaml: skipped: not a LLaMA-Factory config (several YAML documents separated by `---`)" in out
    assert "docker-compose.yml: skipped: not a LLaMA-Factory config (no LLaMA-Factory keys at the top level)" in out
    assert "charts/web/templates/deploy.yaml: skipped: not a LLaMA-Factory config (not valid YAML, and no LLaMA-Factory keys)" in out
    assert "empty.yaml: skipped: not a LLaMA-Factory config (an empty file)" in out


def test_cfglint_check_on_this_repository_does_not_stop_on_its_hook_file(tmp_path: Path) -> None:
    proc = cfglint(["check", "--show-skipped", str(ROOT / ".pre-commit-hooks.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the top level is a list" in proc.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # a real config with a stray document marker: LLaMA-Factory cannot read it either
        (CONFIG_WITH_ONE_ERROR + "---\n", "2 YAML documents in one file (`---` starts another one on line 10)"),
        # a config with a syntax error is still exit 2 (the issue-10 contract), not skipped
        ("model_name_or_path: Qwen/Qwen2.5-7B\nstage: sft\nlora_rank: [8\n", "invalid YAML"),
        ('{"stage": "sft", "model_name_or_path": "x"\n', "invalid YAML"),
    ],
)
def test_configs_that_cannot_be_read_still_exit_2(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "run.yaml").write_text(text)
    proc = cfglint(["check", "run.yaml"], tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout.startswith("run.yaml:") and words in proc.stdout


# -- ruff's habits ----------------------------------------------------------------------------------------------

BROKEN = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
lora_rank: "16"        # keep this comment
evaluation_strategy: steps
lerning_rate: 1.0e-4
lora_alpha: "32"
"""


def test_statistics_counts_findings_per_rule(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    (tmp_path / "b.yaml").write_text(BROKEN.replace("lerning_rate", "learning_rate"))
    code, out, _ = run(["check", "--select", "KEY", "--statistics", "a.yaml", "b.yaml"], tmp_path)
    assert code == 1
    assert out.splitlines() == [
        "4\tKEY003\t[*] wrong-type",
        "2\tKEY002\t[*] renamed-key",
        "1\tKEY001\t[ ] unknown-key",
    ]
    code, out, _ = run(["check", "--select", "KEY", "--statistics", "--format", "json", "a.yaml", "b.yaml"], tmp_path)
    assert json.loads(out)[0] == {"code": "KEY003", "name": "wrong-type", "count": 4, "fixable": True}


def test_exit_zero_reports_but_passes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    code, out, _ = run(["check", "--select", "KEY", "--exit-zero", "--format", "concise", "a.yaml"], tmp_path)
    assert code == 0 and "a.yaml:6:1: error: KEY001" in out
    (tmp_path / "bad.yaml").write_text("stage: sft\nlora_rank: [8\n")
    code, _, _ = run(["check", "--exit-zero", "bad.yaml"], tmp_path)
    assert code == 2  # an unreadable config is not a finding


def test_stdin_with_a_filename(tmp_path: Path) -> None:
    (tmp_path / ".cfglint.toml").write_text('[per-file-ignores]\n"configs/*.yaml" = ["KEY002"]\n')
    proc = cfglint(["check", "--select", "KEY", "-", "--stdin-filename", "configs/run.yaml"], tmp_path, stdin=BROKEN)
    assert proc.returncode == 1
    assert "configs/run.yaml:6:1: error: KEY001 unknown key `lerning_rate`" in proc.stdout
    assert "KEY002" not in proc.stdout  # settings apply to the name given
    assert not (tmp_path / "configs").exists()
    # the name alone means stdin too, as in ruff
    proc = cfglint(["check", "--select", "KEY", "--stdin-filename", "x.yaml"], tmp_path, stdin=BROKEN)
    assert proc.returncode == 1 and "x.yaml:6:1: error: KEY001" in proc.stdout
    # not a config on stdin: skipped, exit 0
    proc = cfglint(["check", "-"], tmp_path, stdin="- a\n- b\n")
    assert proc.returncode == 0 and "All checks passed!" in proc.stdout


def test_stdin_fix_prints_the_fixed_text_and_reports_on_stderr(tmp_path: Path) -> None:
    code, out, err = run(["check", "--select", "KEY", "--fix", "--show-fixes", "-", "--stdin-filename", "run.yaml"], tmp_path, stdin=BROKEN)
    assert code == 1  # lerning_rate stays (an unsafe rename)
    assert out == BROKEN.replace('"16"', "16").replace('"32"', "32").replace("evaluation_strategy", "eval_strategy")
    assert "run.yaml:6:1: error: KEY001" in err
    assert "Fixed 3 errors:\n- run.yaml:\n    1 x KEY002 (renamed-key)\n    2 x KEY003 (wrong-type)\n" in err


def test_diff_keeps_stdout_a_clean_diff_and_says_would_fix(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text(BROKEN)
    code, out, err = run(["check", "--select", "KEY", "--diff", "run.yaml"], tmp_path)
    assert code == 1 and p.read_text() == BROKEN
    assert out.startswith("--- a/run.yaml\n+++ b/run.yaml\n@@")
    assert all(line[:1] in ("-", "+", " ", "@") for line in out.splitlines()), out
    assert err == "Would fix 3 errors.\n"
    assert "Applied" not in out + err
    code, out, err = run(["check", "--select", "KEY", "--diff", "--unsafe-fixes", "--show-fixes", "run.yaml"], tmp_path)
    assert "+learning_rate: 1.0e-4" in out  # the unsafe rename of a misspelt key
    assert err == (
        "Would fix 4 errors.\nWould fix 4 errors:\n- run.yaml:\n    1 x KEY001 (unknown-key)\n    1 x KEY002 (renamed-key)\n"
        "    2 x KEY003 (wrong-type)\n"
    )
    assert p.read_text() == BROKEN


def test_fix_show_fixes_lists_what_was_fixed(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text(BROKEN)
    code, out, _ = run(["check", "--select", "KEY", "--fix", "--show-fixes", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1
    assert "Applied 3 fixes.\nFixed 3 errors:\n- run.yaml:\n    1 x KEY002 (renamed-key)\n    2 x KEY003 (wrong-type)\n" in out
    assert "lora_rank: 16        # keep this comment\n" in p.read_text()


def test_json_findings_carry_the_rule_url(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(BROKEN)
    _, out, _ = run(["check", "--select", "KEY001", "--format", "json", "run.yaml"], tmp_path)
    v = json.loads(out)["files"][0]["violations"][0]
    assert v["url"].endswith("docs/rules.md#key001-unknown-key")
    assert "## KEY001 `unknown-key`" in (ROOT / "docs" / "rules.md").read_text()  # the anchor exists


def test_sarif_help_uri_when_the_package_names_its_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.report import _common, sarif
    from tuner.lint.runner import lint_file

    p = tmp_path / "run.yaml"
    p.write_text(BROKEN)
    monkeypatch.setattr(_common, "repository_url", lambda: "https://git.example.org/team/cfgtune")
    from tuner.config.context import LintOptions
    from tuner.config.versions import resolve_target
    from tuner.lint.registry import load_registry

    reg = load_registry()
    result = lint_file(p, [reg.get("KEY001")()], LintOptions(target=resolve_target(None, None)[0]))
    doc = sarif.document([result], {"KEY001": reg.get("KEY001")}, _common.Options(root=tmp_path))
    rule = doc["runs"][0]["tool"]["driver"]["rules"][0]
    assert rule["helpUri"] == "https://git.example.org/team/cfgtune/blob/main/docs/rules.md#key001-unknown-key"


# -- CI formats -------------------------------------------------------------------------------------------------


def test_gitlab_code_quality_report(tmp_path: Path) -> None:
    make_repo(tmp_path, {"configs/run.yaml": BROKEN, "configs/bad.yaml": "stage: sft\nlora_rank: [8\n", "ci.yml": "on: push\n"})
    code, out, _ = run(["check", "--select", "KEY", "--format", "gitlab", "configs", "ci.yml"], tmp_path)
    assert code == 2
    issues = json.loads(out)
    for issue in issues:
        assert set(issue) >= {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["severity"] in {"info", "minor", "major", "critical", "blocker"}
        assert isinstance(issue["location"]["lines"]["begin"], int)
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    by_code = {(i["check_name"], i["location"]["lines"]["begin"]): i for i in issues}
    key001 = by_code[("KEY001", 6)]
    assert key001["location"]["path"] == "configs/run.yaml" and key001["severity"] == "major"
    assert key001["description"].startswith("KEY001: unknown key `lerning_rate`")
    assert by_code[("KEY002", 5)]["severity"] == "info"
    assert by_code[("CFG000", 3)]["severity"] == "critical" and by_code[("CFG000", 3)]["location"]["path"] == "configs/bad.yaml"
    # a finding keeps its fingerprint when lines move
    (tmp_path / "configs" / "run.yaml").write_text("# a new first line\n" + BROKEN)
    _, out2, _ = run(["check", "--select", "KEY", "--format", "gitlab", "configs/run.yaml"], tmp_path)
    moved = {i["check_name"]: i for i in json.loads(out2)}
    assert moved["KEY001"]["fingerprint"] == key001["fingerprint"] and moved["KEY001"]["location"]["lines"]["begin"] == 7


def test_junit_report(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {"run.yaml": BROKEN, "clean.yaml": "model_name_or_path: x\nstage: sft\n", "bad.yaml": "stage: sft\nlora_rank: [8\n", "ci.yml": "on: push\n"},
    )
    out_file = tmp_path / "report.xml"
    code, out, _ = run(
        ["check", "--select", "KEY", "--format", "junit", "-o", str(out_file), "run.yaml", "clean.yaml", "bad.yaml", "ci.yml"],
        tmp_path,
    )
    assert code == 2 and out == ""
    root = ET.parse(out_file).getroot()
    assert root.tag == "testsuites" and root.get("name") == "cfglint"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"run.yaml", "clean.yaml", "bad.yaml", "ci.yml"}
    run_suite = suites["run.yaml"]
    failures = run_suite.findall("testcase/failure")
    assert run_suite.get("failures") == str(len(failures)) == "3"  # KEY001 and two KEY003 errors; KEY002 is info
    case = run_suite.find("testcase[@name='KEY001 lerning_rate']")
    assert case is not None and case.get("line") == "6" and case.get("classname") == "run.yaml"
    fail = case.find("failure")
    assert fail is not None and fail.get("type") == "error" and fail.get("message", "").startswith("unknown key `lerning_rate`")
    assert (fail.text or "").startswith("run.yaml:6:1: error: KEY001 ")
    assert suites["clean.yaml"].get("failures") == "0" and suites["clean.yaml"].find("testcase") is not None
    assert suites["bad.yaml"].get("errors") == "1" and suites["bad.yaml"].find("testcase/error") is not None
    skipped = suites["ci.yml"].find("testcase/skipped")
    assert skipped is not None and "not a LLaMA-Factory config" in skipped.get("message", "")
    assert root.get("tests") == str(sum(int(s.get("tests", "0")) for s in suites.values()))


def test_concise_names_the_severity(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(BROKEN)
    _, out, _ = run(["check", "--select", "KEY", "--format", "concise", "run.yaml"], tmp_path)
    assert "run.yaml:6:1: error: KEY001 unknown key" in out
    assert "run.yaml:5:1: info: KEY002 [*] " in out


# -- path-aware globs -------------------------------------------------------------------------------------------


def test_per_file_ignores_and_exclude_are_path_aware(tmp_path: Path) -> None:
    make_repo(tmp_path, {"configs/top.yaml": BROKEN, "configs/a/b/deep.yaml": BROKEN, "old/x/y.yaml": BROKEN})
    (tmp_path / ".cfglint.toml").write_text(
        'select = ["KEY001"]\nexclude = ["old"]\n[per-file-ignores]\n"configs/*.yaml" = ["KEY001"]\n'
    )
    code, out, _ = run(["check", "--format", "concise", "."], tmp_path)
    assert code == 1
    assert "configs/a/b/deep.yaml:6:1: error: KEY001" in out  # `*` does not cross `/`
    assert "configs/top.yaml" not in out and "old/" not in out
    (tmp_path / ".cfglint.toml").write_text('select = ["KEY001"]\n[per-file-ignores]\n"configs/**/*.yaml" = ["KEY001"]\n')
    code, out, _ = run(["check", "--format", "concise", "configs"], tmp_path)
    assert code == 0, out  # `**` does


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("configs/*.yaml", "configs/x.yaml", True),
        ("configs/*.yaml", "configs/a/b/x.yaml", False),
        ("configs/**/*.yaml", "configs/a/b/x.yaml", True),
        ("configs/**/*.yaml", "configs/x.yaml", True),
        ("**/ci.yaml", ".github/workflows/ci.yaml", True),
        ("run.yaml", "deep/down/run.yaml", True),
        ("*_test.yaml", "a/b_test.yaml", True),
        ("third_party", "third_party/x/y.yaml", True),
        ("configs/old", "configs/older/x.yaml", False),
        ("./configs/?.yaml", "configs/a.yaml", True),
        ("x[0-9].yaml", "x10.yaml", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    from tuner.lint.settings import path_matches

    assert path_matches(pattern, path) is matches


# -- terminal polish --------------------------------------------------------------------------------------------


def test_show_skipped_groups_rules_by_reason(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(CONFIG_WITH_ONE_ERROR)
    _, out, _ = run(["check", "--show-skipped", "--format", "concise", "run.yaml"], tmp_path)
    skipped = [ln for ln in out.splitlines() if " skipped: " in ln]
    reasons = [ln.split(" skipped: ", 1)[1] for ln in skipped]
    assert len(reasons) == len(set(reasons))  # each reason once per file
    hw = next(ln for ln in skipped if "pass --hw" in ln)
    assert re.match(r"run\.yaml: MEM001, MEM002, .*PREC002 skipped: hardware unknown", hw), hw


def test_full_format_wraps_between_words(tmp_path: Path) -> None:
    from tuner.lint.runner import FileResult
    from tuner.lint.rule import Severity, Violation
    from tuner.report import render

    msg = "unknown key `lerning_rate`: LLaMA-Factory refuses the config (" + "Some keys are not used " * 6 + ")"
    v = Violation(
        code="KEY001", name="unknown-key", severity=Severity.ERROR, message=msg, path=Path("run.yaml"), key="lerning_rate",
        line=1, column=1, end_line=1, end_column=13, hint="did you mean `learning_rate`? " * 4, fix=None, source_line="lerning_rate: 1",
    )  # fmt: skip
    import io

    stream = io.StringIO()
    os.environ["COLUMNS"] = "60"
    try:
        render("full", [FileResult(Path("run.yaml"), violations=[v])], {}, stream, color=True)
    finally:
        del os.environ["COLUMNS"]
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert max(len(line) for line in text.splitlines()) <= 60
    words = set(re.findall(r"[A-Za-z_`-]+", msg + v.hint))
    assert set(re.findall(r"[A-Za-z_`-]+", text)) >= words  # every word whole, none cut in two
    assert "help: did you mean" in text


def test_rules_listing_has_no_restructuredtext_backticks(tmp_path: Path) -> None:
    code, out, _ = run(["rules"], tmp_path)
    assert code == 0 and "``" not in out
    code, out, _ = run(["explain", "KEY003"], tmp_path)
    assert code == 0 and "``" not in out.replace("```", "") and ":func:" not in out


def test_data_rule_names_each_directory_once(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(CONFIG_WITH_ONE_ERROR.replace("lerning_rate: 1.0e-4\n", "dataset_dir: nowhere\n"))
    _, out, _ = run(["check", "--select", "DATA", "--data-root", ".", "--format", "concise", "run.yaml"], tmp_path)
    looked = re.search(r"looked in ([^)]*)\)", out)
    assert looked is not None, out
    places = looked.group(1).split(", ")
    assert len(places) == len(set(places)) == 1
