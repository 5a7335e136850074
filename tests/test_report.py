"""Reporters as their readers see them: exact concise lines, the JSON contract, GitHub escaping, carets under
the right columns, and SARIF that the official 2.1.0 schema and GitHub's required set accept.

``fixtures/sarif-schema-2.1.0.json`` is a verbatim copy of ``sarif-2.1/schema/sarif-schema-2.1.0.json`` from
oasis-tcs/sarif-spec at commit e0583813964ec43cea53b6b531b402866095ed1f (the OASIS errata01 schema, draft-04).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rich.cells import cell_len

from tuner.config.document import InputError
from tuner.lint.rule import Edit, Fix, Rule, Severity, Violation
from tuner.lint.runner import FileResult
from tuner.report import FORMATS, default_format, render

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
ANSI = re.compile(r"\x1b\[")

A = Path("configs/a.yaml")
SAFE = Fix("set `lora_alpha: 32`", (Edit(0, 1, "x"),), safe=True)
UNSAFE = Fix("rename `lerning_rate` to `learning_rate`", (Edit(0, 1, "x"),), safe=False)


def violation(
    code: str = "KEY001",
    *,
    severity: Severity = Severity.ERROR,
    message: str = "unknown key `lerning_rate`",
    path: Path = A,
    key: str | None = "lerning_rate",
    line: int = 3,
    column: int = 1,
    end_line: int | None = None,
    end_column: int = 21,
    source: str = "lerning_rate: 1.0e-4",
    hint: str | None = None,
    fix: Fix | None = None,
    name: str = "unknown-key",
) -> Violation:
    return Violation(
        code=code,
        name=name,
        severity=severity,
        message=message,
        path=path,
        key=key,
        line=line,
        column=column,
        end_line=line if end_line is None else end_line,
        end_column=end_column,
        hint=hint,
        fix=fix,
        source_line=source,
    )


def three() -> list[Violation]:
    """An error with an unsafe fix, a warning with a safe fix, an info without one."""
    return [
        violation(hint="did you mean `learning_rate`?", fix=UNSAFE),
        violation(
            "LORA002",
            severity=Severity.WARNING,
            name="alpha-rank-ratio",
            message="lora_alpha is 16x lora_rank",
            key="lora_alpha",
            line=12,
            column=3,
            end_column=18,
            source="  lora_alpha: 256  # large",
            hint="keep lora_alpha at 1-2x lora_rank",
            fix=SAFE,
        ),
        violation(
            "BATCH003",
            severity=Severity.INFO,
            name="tiny-batch",
            message="effective batch size is 1",
            key="per_device_train_batch_size",
            line=20,
            end_column=31,
            source="per_device_train_batch_size: 1",
        ),
    ]


def output(fmt: str, results: list[FileResult], rules: dict[str, type[Rule]] | None = None, **kw: Any) -> str:
    buf = io.StringIO()
    kw.setdefault("color", False)
    render(fmt, results, rules or {}, buf, **kw)
    return buf.getvalue()


# -- concise -----------------------------------------------------------------------------------------------


def test_concise_lines_and_summary() -> None:
    out = output("concise", [FileResult(A, violations=three())])
    assert out == (
        "configs/a.yaml:3:1: error: KEY001 unknown key `lerning_rate`\n"
        "configs/a.yaml:12:3: warning: LORA002 [*] lora_alpha is 16x lora_rank\n"
        "configs/a.yaml:20:1: info: BATCH003 effective batch size is 1\n"
        "Found 1 error, 1 warning, 1 info.\n"
        "[*] 1 fixable with `--fix` (1 more with `--unsafe-fixes`).\n"
    )


def test_concise_like_ruff_when_only_errors() -> None:
    vs = [violation(line=n, source="") for n in (1, 2, 3)]
    assert output("concise", [FileResult(A, violations=vs)]).splitlines()[-1] == "Found 3 errors."


def test_concise_unsafe_fixes_mark_and_count_unsafe_fixes() -> None:
    out = output("concise", [FileResult(A, violations=three())], unsafe_fixes=True)
    assert "configs/a.yaml:3:1: error: KEY001 [*] unknown key" in out
    assert out.endswith("[*] 2 fixable with `--fix --unsafe-fixes`.\n")


def test_concise_clean_and_not_a_config() -> None:
    assert output("concise", [FileResult(A), FileResult(Path("ci.yaml"), not_a_config=True)]) == "All checks passed!\n"
    assert output("concise", []) == "All checks passed!\n"


def test_concise_input_error_and_rule_error() -> None:
    bad = FileResult(Path("b.yaml"), error=InputError("b.yaml", "mapping values are not allowed here", 4, 7))
    nowhere = FileResult(Path("c.yaml"), error=InputError("c.yaml", "cannot read file"))
    crashed = FileResult(A, rule_errors=["internal error in rule LORA009 (KeyError: 'x') at lora.py:12"])
    out = output("concise", [bad, nowhere, crashed])
    assert out == (
        "b.yaml:4:7: error: mapping values are not allowed here\n"
        "c.yaml: error: cannot read file\n"
        "configs/a.yaml: error: internal error in rule LORA009 (KeyError: 'x') at lora.py:12\n"
        "2 files could not be linted.\n"
    )


def test_concise_keeps_one_line_per_problem() -> None:
    out = output("concise", [FileResult(A, violations=[violation(message="first\nsecond")])])
    assert out.splitlines()[0] == "configs/a.yaml:3:1: error: KEY001 first second"


def test_concise_show_skipped() -> None:
    r = FileResult(A, skipped={"PREC002": "hardware unknown: pass --hw NAME"})
    assert "configs/a.yaml: PREC002 skipped: hardware unknown: pass --hw NAME\n" in output("concise", [r], show_skipped=True)
    assert "PREC002" not in output("concise", [r])


# -- json --------------------------------------------------------------------------------------------------

REQUIRED_VIOLATION = {"code": str, "name": str, "severity": str, "message": str, "line": int, "column": int}


def test_json_shape_and_types() -> None:
    other = FileResult(Path("b.yaml"))
    data = json.loads(output("json", [FileResult(A, violations=three()), other]))
    assert data["version"] == 1 and type(data["version"]) is int
    assert data["summary"] == {"errors": 1, "warnings": 1, "infos": 1}
    assert [f["path"] for f in data["files"]] == ["configs/a.yaml", "b.yaml"]
    assert data["files"][1]["violations"] == [] and data["files"][1]["error"] is None
    vs = data["files"][0]["violations"]
    for v in vs:
        for field, typ in REQUIRED_VIOLATION.items():
            assert type(v[field]) is typ, field
        assert v["key"] is None or isinstance(v["key"], str)
        assert v["fix"] is None or (set(v["fix"]) == {"safe", "description"} and type(v["fix"]["safe"]) is bool)
    first = vs[0]
    assert {k: first[k] for k in ("code", "name", "severity", "message", "key", "line", "column", "fix")} == {
        "code": "KEY001",
        "name": "unknown-key",
        "severity": "error",
        "message": "unknown key `lerning_rate`",
        "key": "lerning_rate",
        "line": 3,
        "column": 1,
        "fix": {"safe": False, "description": "rename `lerning_rate` to `learning_rate`"},
    }
    assert (first["end_line"], first["end_column"], first["hint"]) == (3, 21, "did you mean `learning_rate`?")
    assert [v["severity"] for v in vs] == ["error", "warning", "info"]
    assert vs[1]["fix"] == {"safe": True, "description": "set `lora_alpha: 32`"}
    assert vs[2]["fix"] is None


def test_json_input_error_and_extras() -> None:
    bad = FileResult(Path("b.yaml"), error=InputError("b.yaml", "mapping values are not allowed here", 4, 7))
    skipped = FileResult(A, skipped={"PREC002": "hardware unknown: pass --hw NAME"})
    data = json.loads(output("json", [bad, skipped]))
    err = data["files"][0]["error"]
    assert {k: err[k] for k in ("message", "line", "column")} == {
        "message": "mapping values are not allowed here",
        "line": 4,
        "column": 7,
    }
    assert data["files"][1]["skipped"] == {"PREC002": "hardware unknown: pass --hw NAME"}
    assert data["summary"] == {"errors": 0, "warnings": 0, "infos": 0}


def test_json_names_the_deepspeed_file_of_a_violation() -> None:
    ds = violation("DS001", path=Path("ds_z3.json"), key="zero_optimization.stage")
    data = json.loads(output("json", [FileResult(A, violations=[ds])]))
    assert data["files"][0]["path"] == "configs/a.yaml"
    assert data["files"][0]["violations"][0]["path"] == "ds_z3.json"


# -- github ------------------------------------------------------------------------------------------------


def test_github_annotations_per_severity() -> None:
    out = output("github", [FileResult(A, violations=three())])
    assert out.splitlines() == [
        (
            "::error file=configs/a.yaml,line=3,col=1,endLine=3,endColumn=21,title=cfglint (KEY001)"
            "::unknown key `lerning_rate`%0Ahelp: did you mean `learning_rate`?"
        ),
        (
            "::warning file=configs/a.yaml,line=12,col=3,endLine=12,endColumn=18,title=cfglint (LORA002)"
            "::lora_alpha is 16x lora_rank%0Ahelp: keep lora_alpha at 1-2x lora_rank"
        ),
        (
            "::notice file=configs/a.yaml,line=20,col=1,endLine=20,endColumn=31,title=cfglint (BATCH003)"
            "::effective batch size is 1"
        ),
    ]


def test_github_escaping(tmp_path: Path) -> None:
    odd = tmp_path / "we,ird:dir" / "a.yaml"
    v = violation(path=odd, message="100% sure:\r\nsee, here", key=None)
    (line,) = output("github", [FileResult(odd, violations=[v])], root=tmp_path).splitlines()
    assert line == (
        "::error file=we%2Cird%3Adir/a.yaml,line=3,col=1,endLine=3,endColumn=21,title=cfglint (KEY001)"
        "::100%25 sure:%0D%0Asee, here"
    )


def test_github_input_error_and_paths_relative_to_root(tmp_path: Path) -> None:
    p = tmp_path / "configs" / "b.yaml"
    bad = FileResult(p, error=InputError(p, "found character '\\t' that cannot start any token", 2, 1))
    assert output("github", [bad], root=tmp_path) == (
        "::error file=configs/b.yaml,line=2,col=1,title=cfglint (input error)"
        "::found character '\\t' that cannot start any token\n"
    )


# -- full --------------------------------------------------------------------------------------------------


def caret_under(out: str, source: str) -> str:
    """The part of ``source`` that the caret line printed under it covers."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith("| " + source))
    src_line, caret_line = lines[i], lines[i + 1]
    start = src_line.index("| ") + 2
    assert caret_line[: start - 2].strip() == "" and caret_line[start - 2 : start] == "| "
    marks = caret_line[start:]
    first = marks.index("^")
    last = first + len(marks[first:]) - len(marks[first:].lstrip("^"))
    return source[first:last]


def test_full_caret_under_the_key_value_span() -> None:
    out = output("full", [FileResult(A, violations=three())])
    assert caret_under(out, "  lora_alpha: 256  # large") == "lora_alpha: 256"
    assert caret_under(out, "lerning_rate: 1.0e-4") == "lerning_rate: 1.0e-4"
    assert "LORA002 [*] lora_alpha is 16x lora_rank\n  --> configs/a.yaml:12:3\n" in out
    assert "KEY001 unknown key `lerning_rate`\n  --> configs/a.yaml:3:1\n" in out  # unsafe: no [*]


def test_full_caret_with_wide_characters_and_tabs() -> None:
    src = "dataset: {名前: x, lora_rank: 8}"
    col = src.index("lora_rank") + 1
    v = violation(column=col, end_column=col + len("lora_rank: 8"), source=src)
    out = output("full", [FileResult(A, violations=[v])])
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith(src))
    pad = lines[i + 1].index("^") - (lines[i].index("| ") + 2)
    assert pad == cell_len(src[: col - 1])  # two cells for each of 名 and 前
    assert lines[i + 1].count("^") == len("lora_rank: 8")

    tabbed = violation(column=3, end_column=8, source="a\tbcdefgh")
    out = output("full", [FileResult(A, violations=[tabbed])])
    assert caret_under(out, "a   bcdefgh") == "bcdef"


def test_full_severity_rule_name_help_fix_and_summary() -> None:
    out = output("full", [FileResult(A, violations=three())])
    assert "^^^^^^^^^^^^^^^^^^^^ error: unknown-key" in out
    assert "warning: alpha-rank-ratio" in out and "info: tiny-batch" in out
    assert "help: did you mean `learning_rate`?\nfix: rename `lerning_rate` to `learning_rate` (unsafe)\n" in out
    assert "fix: set `lora_alpha: 32` (safe)\n" in out
    assert "Found 1 error, 1 warning, 1 info in 1 file.\n" in out
    assert "[*] 1 fixable with `--fix` (1 more with `--unsafe-fixes`).\n" in out
    assert out.index("configs/a.yaml (1 error, 1 warning, 1 info)") < out.index("KEY001")
    assert not ANSI.search(out)


def test_full_summary_counts_files_and_pluralises() -> None:
    b = FileResult(Path("b.yaml"), violations=[violation(path=Path("b.yaml"))])
    out = output("full", [FileResult(A, violations=[violation(), violation(line=4)]), b, FileResult(Path("c.yaml"))])
    assert "Found 3 errors, 0 warnings, 0 infos in 2 files.\n" in out


def test_full_skipped_rules() -> None:
    results = [
        FileResult(A, skipped={"PREC002": "hardware unknown: pass --hw NAME", "DATA001": "no dataset_dir"}),
        FileResult(Path("b.yaml"), skipped={"PREC002": "hardware unknown: pass --hw NAME"}),
    ]
    out = output("full", results)
    assert "All checks passed!\n" in out
    assert "2 rules skipped (pass --show-skipped to see why)\n" in out
    out = output("full", results, show_skipped=True)
    assert "DATA001 skipped: no dataset_dir\nPREC002 skipped: hardware unknown: pass --hw NAME\n" in out
    assert out.count("PREC002") == 1


def test_full_input_errors_rule_errors_and_non_configs() -> None:
    results = [
        FileResult(Path("b.yaml"), error=InputError("b.yaml", "mapping values are not allowed here", 4, 7)),
        FileResult(Path(".github/ci.yaml"), not_a_config=True, skip_reason="no LLaMA-Factory keys at the top level"),
        FileResult(A, rule_errors=["internal error in rule LORA009 (KeyError: 'x') at lora.py:12"]),
    ]
    out = output("full", results)
    assert "error: b.yaml:4:7: mapping values are not allowed here\n" in out
    assert "1 file not LLaMA-Factory configs, not linted (pass --show-skipped to see which)\n" in out
    assert ".github/ci.yaml" not in out  # pre-commit hands over every YAML: the skipped files are a count
    out = output("full", results, show_skipped=True)
    assert "not LLaMA-Factory configs, not linted (no LLaMA-Factory keys at the top level): .github/ci.yaml\n" in out
    assert "error: configs/a.yaml: internal error in rule LORA009 (KeyError: 'x') at lora.py:12\n" in out
    assert "1 file could not be linted." in out
    assert "All checks passed!" not in out


def test_full_without_a_source_line_still_names_severity_and_rule() -> None:
    v = violation(source="", key=None, column=1, end_column=1, line=1)
    out = output("full", [FileResult(A, violations=[v])])
    assert " = error: unknown-key\n" in out and "^" not in out


def test_full_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    results = [FileResult(A, violations=three())]
    assert not ANSI.search(output("full", results, color=False))
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.delenv("NO_COLOR", raising=False)
    colored = output("full", results, color=True)
    assert "\x1b[1;31mKEY001" in colored  # errors red
    assert "\x1b[1;33mLORA002" in colored  # warnings yellow
    assert "\x1b[1;34mBATCH003" in colored  # infos blue


# -- sarif -------------------------------------------------------------------------------------------------


class AlphaRule(Rule):
    """lora_alpha far above lora_rank.

    LoRA scales its update by alpha/rank; a ratio of 16 multiplies the effective learning rate and
    training diverges.

    Bad:

    ```yaml
    lora_rank: 16
    lora_alpha: 256
    ```

    Good:

    ```yaml
    lora_rank: 16
    lora_alpha: 32
    ```
    """

    code = "LORA002"
    name = "alpha-rank-ratio"
    severity = Severity.WARNING


class WordyRule(Rule):
    code = "KEY001"
    name = "unknown-key"
    severity = Severity.ERROR
    __doc__ = "A key LLaMA-Factory does not know.\n\n" + "It is ignored or rejected at start-up. " * 60


RULES: dict[str, type[Rule]] = {"LORA002": AlphaRule, "KEY001": WordyRule}


def sarif(results: list[FileResult], root: Path, **kw: Any) -> dict[str, Any]:
    return json.loads(output("sarif", results, RULES, root=root, **kw))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def github_problems(doc: dict[str, Any]) -> list[str]:
    """GitHub's "required" set (github/docs sarif-support.md), which the OASIS schema leaves optional."""
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    need(bool(doc.get("$schema")) and doc.get("version") == "2.1.0" and bool(doc.get("runs")), "sarifLog")
    for run in doc["runs"]:
        driver = run["tool"]["driver"]
        need(bool(driver.get("name")) and isinstance(driver.get("rules"), list), "toolComponent")
        need(isinstance(run.get("results"), list), "run.results")
        for rule in driver["rules"]:
            for field in ("shortDescription", "fullDescription"):
                text = rule.get(field, {}).get("text", "")
                need(0 < len(text) <= 1024, f"{rule.get('id')}.{field}")
            need(bool(rule.get("id")) and bool(rule.get("help", {}).get("text")), f"{rule.get('id')}.help")
        for res in run["results"]:
            need(bool(res.get("message", {}).get("text")), "result.message.text")
            need(bool(res.get("partialFingerprints")), "result.partialFingerprints")
            need(1 <= len(res.get("locations", [])) <= 10, "result.locations")
            phys = res["locations"][0]["physicalLocation"]
            need(bool(phys["artifactLocation"].get("uri")), "artifactLocation.uri")
            need(set(phys["region"]) >= {"startLine", "startColumn", "endLine", "endColumn"}, "region")
            need(driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"], "ruleIndex")
    return problems


def test_sarif_is_valid_and_complete(tmp_path: Path) -> None:
    p = tmp_path / "configs" / "my run.yaml"
    vs = [violation(path=p, hint="did you mean `learning_rate`?"), *three()[1:]]
    vs = [Violation(**{**v.__dict__, "path": p}) for v in vs]
    doc = sarif([FileResult(p, violations=vs, skipped={"PREC002": "hardware unknown"})], tmp_path)
    assert schema_errors(doc) == []
    assert github_problems(doc) == []
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "cfglint" and re.fullmatch(r"\d+\.\d+\.\d+.*", driver["semanticVersion"])
    assert "informationUri" not in driver or driver["informationUri"].startswith("https://")
    assert [r["id"] for r in driver["rules"]] == ["BATCH003", "KEY001", "LORA002"]  # the rules that fired
    alpha = driver["rules"][2]
    assert alpha["name"] == "alpha-rank-ratio"
    assert alpha["shortDescription"]["text"] == "lora_alpha far above lora_rank."
    assert alpha["fullDescription"]["text"].startswith("LoRA scales its update") and "```" not in alpha["fullDescription"]["text"]
    assert "lora_alpha: 256" in alpha["help"]["markdown"]
    assert alpha["defaultConfiguration"]["level"] == "warning"
    assert len(driver["rules"][1]["fullDescription"]["text"]) <= 1024  # the wordy docstring is clipped
    assert [r["level"] for r in run["results"]] == ["error", "warning", "note"]  # info -> note
    first = run["results"][0]
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "configs/my%20run.yaml"},  # repo-relative, POSIX, URI-encoded
        "region": {"startLine": 3, "startColumn": 1, "endLine": 3, "endColumn": 21},
    }
    assert first["message"]["text"].startswith("unknown key `lerning_rate`")
    assert run["columnKind"] == "unicodeCodePoints"


def test_sarif_input_errors_and_crashed_rules(tmp_path: Path) -> None:
    bad = FileResult(tmp_path / "b.yaml", error=InputError(tmp_path / "b.yaml", "mapping values are not allowed here", 4, 7))
    crashed = FileResult(tmp_path / "a.yaml", rule_errors=["internal error in rule LORA009 (KeyError: 'x')"])
    doc = sarif([bad, crashed], tmp_path)
    assert schema_errors(doc) == [] and github_problems(doc) == []
    run = doc["runs"][0]
    (res,) = run["results"]
    assert res["ruleId"] == "CFG000" and res["level"] == "error"
    assert run["tool"]["driver"]["rules"][res["ruleIndex"]]["name"] == "input-error"
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 4
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "b.yaml"
    assert run["invocations"][0]["executionSuccessful"] is False


def test_sarif_fingerprints_follow_keys_and_stay_distinct(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    twice = [violation(path=p), violation(path=p, line=9)]  # one key flagged twice
    fps = [r["partialFingerprints"] for r in sarif([FileResult(p, violations=twice)], tmp_path)["runs"][0]["results"]]
    assert fps[0] != fps[1]
    moved = [violation(path=p, line=30)]
    again = sarif([FileResult(p, violations=moved)], tmp_path)["runs"][0]["results"][0]["partialFingerprints"]
    assert again == fps[0]


def test_sarif_empty_run_is_valid(tmp_path: Path) -> None:
    doc = sarif([FileResult(tmp_path / "a.yaml")], tmp_path)
    assert schema_errors(doc) == [] and github_problems(doc) == []
    assert doc["runs"][0]["results"] == []


def test_the_schema_validator_bites(tmp_path: Path) -> None:
    doc = sarif([FileResult(tmp_path / "a.yaml", violations=three())], tmp_path)
    doc["runs"][0]["results"][2]["level"] = "info"
    assert any("'info' is not one of" in e for e in schema_errors(doc))
    doc = sarif([FileResult(tmp_path / "a.yaml", violations=three())], tmp_path)
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert any("minimum" in e for e in schema_errors(doc))


# -- dispatch ----------------------------------------------------------------------------------------------


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        output("xml", [])


def test_default_format_follows_the_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert default_format(io.StringIO()) == "concise"
    assert default_format(Tty()) == "full"
    assert output("auto", [FileResult(A, violations=[violation()])]).startswith("configs/a.yaml:3:1: error: KEY001")


def test_only_the_full_format_imports_rich() -> None:
    probe = (
        "import io, sys\n"
        "from pathlib import Path\n"
        "from tuner.lint.runner import FileResult\n"
        "from tuner.report import render\n"
        "for fmt in ('concise', 'json', 'github', 'sarif'):\n"
        "    render(fmt, [FileResult(Path('a.yaml'))], {}, io.StringIO())\n"
        "before = any(m.split('.')[0] == 'rich' for m in sys.modules)\n"
        "render('full', [FileResult(Path('a.yaml'))], {}, io.StringIO(), color=False)\n"
        "print(before, 'rich' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert set(FORMATS) == {"full", "concise", "json", "sarif", "github", "gitlab", "junit"}
