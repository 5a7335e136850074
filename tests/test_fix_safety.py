"""`--fix` never damages a file: the cases of issue 12 that did, each as a user meets it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli.lint import cli

YAML = "stage: sft\ndo_train: true\ndeepspeed: ds.json\n"
DS_QUOTED_STAGE = '{\n  "zero_optimization": {\n    "stage": "3"\n  }\n}\n'


def run(args: list[str], cwd: Path) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def write(path: Path, text: str, *, crlf: bool = False, bom: bool = False) -> None:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode())


@pytest.mark.parametrize(("crlf", "bom"), [(False, False), (True, False), (False, True), (True, True)])
def test_deepspeed_json_fix_keeps_crlf_and_bom_and_stays_json(tmp_path: Path, crlf: bool, bom: bool) -> None:
    write(tmp_path / "run.yaml", YAML)
    write(tmp_path / "ds.json", DS_QUOTED_STAGE, crlf=crlf, bom=bom)
    code, out = run(["check", "--select", "DS001", "--fix", "--format", "concise", "run.yaml"], tmp_path)
    raw = (tmp_path / "ds.json").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == bom
    text = raw.decode("utf-8-sig")
    assert json.loads(text) == {"zero_optimization": {"stage": 3}}
    if crlf:
        assert text.count("\n") == text.count("\r\n") > 0
    else:
        assert "\r" not in text
    assert code == 0 and "Applied 1 fix." in out


def test_diff_shows_the_deepspeed_change_and_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "run.yaml", YAML)
    write(tmp_path / "ds.json", DS_QUOTED_STAGE)
    code, out = run(["check", "--select", "DS001", "--diff", "--format", "concise", "run.yaml"], tmp_path)
    assert (tmp_path / "ds.json").read_text() == DS_QUOTED_STAGE
    assert '-    "stage": "3"' in out and '+    "stage": 3' in out
    assert "Applied" not in out
    assert code == 1


def test_yaml_bom_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    write(p, "stage: sft\nevaluation_strategy: steps\n", bom=True)
    run(["check", "--select", "KEY", "--fix", "run.yaml"], tmp_path)
    assert p.read_bytes() == b"\xef\xbb\xbfstage: sft\neval_strategy: steps\n"


def test_symlinked_config_stays_a_link_and_its_target_is_fixed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    target = real / "run.yaml"
    target.write_text("stage: sft\nevaluation_strategy: steps\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    run(["check", "--select", "KEY", "--fix", "link.yaml"], tmp_path)
    assert link.is_symlink()
    assert target.read_text() == "stage: sft\neval_strategy: steps\n"


def test_file_mode_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("stage: sft\nevaluation_strategy: steps\n")
    p.chmod(0o640)
    run(["check", "--select", "KEY", "--fix", "run.yaml"], tmp_path)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and "eval_strategy" in p.read_text()


def test_read_only_config_is_not_rewritten(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("stage: sft\nevaluation_strategy: steps\n")
    p.chmod(0o444)
    code, out = run(["check", "--select", "KEY", "--fix", "--format", "concise", "run.yaml"], tmp_path)
    assert p.read_text() == "stage: sft\nevaluation_strategy: steps\n"
    assert code == 2 and "read-only" in out and "Traceback" not in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    p = d / "run.yaml"
    p.write_text("stage: sft\nevaluation_strategy: steps\n")
    d.chmod(0o555)
    try:
        code, out = run(["check", "--select", "KEY", "--fix", "--format", "concise", str(p)], tmp_path)
    finally:
        d.chmod(0o755)
    assert code == 2 and "fixes not written" in out and "Traceback" not in out
    assert p.read_text() == "stage: sft\nevaluation_strategy: steps\n"


def test_unwritable_directory_write_files_raises_oserror_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever runs the tests (root too): a failing temporary file is an OSError, and nothing is left behind."""
    import tempfile

    p = tmp_path / "run.yaml"
    p.write_text("a: 1\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    from tuner.lint.fixes import write_files

    with pytest.raises(OSError):
        write_files({p: "a: 2\n"})
    assert p.read_text() == "a: 1\n" and sorted(x.name for x in tmp_path.iterdir()) == ["run.yaml"]


def test_transaction_puts_back_the_first_file_when_the_second_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.json"
    a.write_text("a: 1\n")
    b.write_text("{}\n")
    real_replace = os.replace
    calls: list[str] = []

    def flaky(src: str, dst: object) -> None:
        calls.append(str(dst))
        if str(dst) == str(b) and len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", flaky)
    from tuner.lint.fixes import write_files

    with pytest.raises(OSError):
        write_files({a: "a: 2\n", b: '{"x": 1}\n'})
    assert a.read_text() == "a: 1\n" and b.read_text() == "{}\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.yaml", "b.json"]  # no temporary file left


def test_interrupted_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    p = tmp_path / "run.yaml"
    p.write_text("a: 1\n")
    real_fsync = os.fsync

    def killed(fd: int) -> None:
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "fsync", killed)
    from tuner.lint.fixes import write_files

    with pytest.raises(KeyboardInterrupt):
        write_files({p: "a: 2\n"})
    assert p.read_text() == "a: 1\n" and sorted(x.name for x in tmp_path.iterdir()) == ["run.yaml"]


def test_json_is_refused_together_with_the_yaml(tmp_path: Path) -> None:
    """When any fixed file would be broken, no file is written: not the YAML, not the JSON."""
    from tuner.config.loader import load_config
    from tuner.lint.rule import Edit, Finding, Fix, Rule
    from tuner.lint.runner import lint_file
    from tuner.lint.testing import lint_options

    write(tmp_path / "run.yaml", YAML)
    write(tmp_path / "ds.json", DS_QUOTED_STAGE)

    class Breaks(Rule):
        code = "ZZZ001"
        name = "breaks"

        def check(self, ctx):  # type: ignore[no-untyped-def]
            yield Finding(key="stage", message="m", fix=Fix("yaml", (Edit(0, 0, "# ok\n"),)))
            yield Finding(key=None, message="j", in_deepspeed=True,
                          fix=Fix("json", (Edit(0, 1, "["),)))  # fmt: skip

    assert load_config(tmp_path / "run.yaml")
    result = lint_file(tmp_path / "run.yaml", [Breaks()], lint_options(cwd=tmp_path, env={}), fix=True)
    assert (tmp_path / "run.yaml").read_text() == YAML
    assert (tmp_path / "ds.json").read_text() == DS_QUOTED_STAGE
    assert any("invalid JSON" in e for e in result.rule_errors)


def test_a_fix_that_would_empty_the_config_is_left_out(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("torch_empty_cache_steps: 0\n")
    code, out = run(["check", "--select", "TRAIN007", "--fix", "--unsafe-fixes", "--format", "concise", "run.yaml"], tmp_path)
    assert p.read_text() == "torch_empty_cache_steps: 0\n"
    assert code in (0, 1) and "TRAIN007" in out


def test_json_syntax_config_gets_keys_inside_the_braces(tmp_path: Path) -> None:
    p = tmp_path / "run.json"
    p.write_text('{"do_train": true, "finetuning_type": "lora", "lora_rank": 8}')
    run(["check", "--select", "LF007", "--fix", "run.json"], tmp_path)
    assert json.loads(p.read_text()) == {"do_train": True, "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16}
    p.write_text('{\n  "do_train": true,\n  "finetuning_type": "lora",\n  "lora_rank": 8\n}\n')
    run(["check", "--select", "LF007", "--fix", "run.json"], tmp_path)
    assert p.read_text() == '{\n  "do_train": true,\n  "finetuning_type": "lora",\n  "lora_rank": 8,\n  "lora_alpha": 16\n}\n'


def test_json_syntax_config_rename_and_remove_stay_json(tmp_path: Path) -> None:
    p = tmp_path / "run.json"
    p.write_text('{"stage": "sft", "evaluation_strategy": "steps", "lora_rank": 8}')
    run(["check", "--select", "KEY002", "--fix", "run.json"], tmp_path)
    assert json.loads(p.read_text()) == {"stage": "sft", "eval_strategy": "steps", "lora_rank": 8}
