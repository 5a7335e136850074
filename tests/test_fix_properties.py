"""Properties of `--fix` for every fixable rule, on its own `Bad:` examples in several file shapes.

For each fixable rule and each shape of its bad examples (LF, CRLF, a byte-order mark, both, a file mode, a
symlink, the config written in JSON syntax):

* the result parses, and a DeepSpeed JSON the fix touched is still JSON (a JSON-syntax config stays JSON);
* the keys that stay keep their order, full-line comments stay, line ends and the byte-order mark are kept;
* the file mode and symlinks are kept (the link's target is fixed);
* a second ``--fix`` changes nothing;
* ``--diff`` writes nothing;
* the YAML and its DeepSpeed JSON are written together or not at all.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tuner.config.loader import load_config, parse_config
from tuner.lint.registry import load_registry
from tuner.lint.rule import Rule
from tuner.lint.runner import FileResult, lint_file
from tuner.lint.testing import example_options, lint_options

FIXABLE = [cls for cls in load_registry(plugins=False).sorted() if cls.fixable != "none"]
SHAPES = ["lf", "crlf", "bom", "crlf+bom", "mode", "symlink", "json"]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink()}


def _lint(path: Path, cls: type[Rule], options: dict[str, object], *, write: bool = True) -> FileResult:
    return lint_file(path, [cls()], lint_options(**options), fix=True, unsafe_fixes=True, write=write)


def _keys(text: str) -> list[str]:
    return list(parse_config(text).data)


def _full_line_comments(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def _prepare(text: str, shape: str, directory: Path) -> tuple[Path, dict[str, object]] | None:
    options = example_options(text, directory)
    body = text
    name = "run.yaml"
    if shape == "json":
        try:
            data = parse_config(text, directory / "run.yaml").data
            body = json.dumps(data, indent=2 if len(data) % 2 else None) + "\n"
        except Exception:  # noqa: BLE001 - an example that is not JSON-representable has no JSON shape
            return None
        name = "run.json"
    if "crlf" in shape:
        body = body.replace("\n", "\r\n")
    raw = body.encode()
    if "bom" in shape:
        raw = b"\xef\xbb\xbf" + raw
    path = directory / name
    if shape == "symlink":
        (directory / "real").mkdir()
        (directory / "real" / name).write_bytes(raw)
        path.symlink_to(directory / "real" / name)
    else:
        path.write_bytes(raw)
    if shape == "mode":
        path.chmod(0o640)
    return path, options


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", FIXABLE, ids=lambda c: c.code)
def test_fix_properties(cls: type[Rule], shape: str, tmp_path: Path) -> None:
    for i, text in enumerate(cls.bad_examples()):
        directory = tmp_path / f"bad{i}"
        prepared = _prepare(text, shape, directory)
        if prepared is None:
            continue
        path, options = prepared
        target = path.resolve()
        before_files = _snapshot(directory)
        before_raw = target.read_bytes()
        before_text = before_raw.decode("utf-8-sig")

        # --diff writes nothing
        diff_result = _lint(path, cls, options, write=False)
        assert _snapshot(directory) == before_files, f"{cls.code} {shape}: --diff wrote a file"
        assert diff_result.fixes_applied == 0

        result = _lint(path, cls, options)
        assert result.error is None and not result.rule_errors, (cls.code, shape, result.error, result.rule_errors)
        after_raw = target.read_bytes()
        after_text = after_raw.decode("utf-8-sig")
        # parses, BOM, line ends
        load_config(path)
        assert after_raw.startswith(b"\xef\xbb\xbf") == ("bom" in shape), f"{cls.code} {shape}: byte-order mark changed"
        if "crlf" in shape:
            assert after_text.count("\n") == after_text.count("\r\n"), f"{cls.code} {shape}: line ends mixed"
        else:
            assert "\r" not in after_text, f"{cls.code} {shape}: CR introduced"
        if shape == "json":
            json.loads(after_text)  # still JSON
        # keys that stay keep their order (FILE001 removes the earlier of two equal keys: the later one's place
        # is the key's place now); full-line comments stay
        kept = [k for k in _keys(after_text) if k in _keys(before_text)]
        if cls.code != "FILE001":
            assert kept == [k for k in _keys(before_text) if k in kept], f"{cls.code} {shape}: key order changed"
        comments_after = _full_line_comments(after_text)
        assert all(c in comments_after for c in _full_line_comments(before_text)), f"{cls.code} {shape}: comment lost"
        # mode and symlinks
        if shape == "mode":
            assert stat.S_IMODE(path.stat().st_mode) == 0o640
        if shape == "symlink":
            assert path.is_symlink() and path.resolve() == target
        # other files the fix touched are still JSON
        for other in result.other_fixed:
            json.loads(Path(other).read_text(encoding="utf-8-sig"))
        # idempotent
        snapshot = _snapshot(directory)
        again = _lint(path, cls, options)
        assert _snapshot(directory) == snapshot, f"{cls.code} {shape}: a second --fix changed the files"
        assert again.fixes_applied == 0


@pytest.mark.parametrize("cls", FIXABLE, ids=lambda c: c.code)
def test_fixable_label_matches_the_fixes_offered(cls: type[Rule], tmp_path: Path) -> None:
    """`cfglint rules` lists a rule as "safe" when it offers a safe fix (applied by plain `--fix`), "unsafe"
    when every fix it offers needs `--unsafe-fixes`: checked on the fixes its bad examples get."""
    offered = []
    for i, text in enumerate(cls.bad_examples()):
        options = example_options(text, tmp_path / f"bad{i}")
        path = tmp_path / f"bad{i}" / "run.yaml"
        path.write_text(text)
        res = lint_file(path, [cls()], lint_options(**options))
        offered += [v.fix.safe for v in res.violations if v.fix is not None]
    if not offered:
        pytest.skip(f"{cls.code}'s bad examples get no fix (its fix needs another shape of the problem)")
    assert (cls.fixable == "safe") == any(offered), f"{cls.code} is listed as {cls.fixable!r}, offers safe={offered}"


@pytest.mark.parametrize("cls", [c for c in FIXABLE if c.code.startswith("DS")], ids=lambda c: c.code)
def test_yaml_and_json_are_written_together_or_not_at_all(cls: type[Rule], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last rename of a fix's transaction fails: every file is as it was, and nothing is left beside them."""
    for i, text in enumerate(cls.bad_examples()):
        directory = tmp_path / f"bad{i}"
        options = example_options(text, directory)
        path = directory / "run.yaml"
        path.write_text(text + "evaluation_strategy: steps\n")  # a YAML fix (KEY002) beside the JSON fix
        before = _snapshot(directory)
        real_replace = os.replace
        calls: list[str] = []

        def flaky(src: str, dst: object, calls: list[str] = calls, real_replace: object = real_replace) -> None:
            calls.append(str(dst))
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            real_replace(src, dst)  # type: ignore[operator]

        monkeypatch.setattr(os, "replace", flaky)
        from tuner.lint.registry import load_registry as registry

        key002 = registry(plugins=False).get("KEY002")
        assert key002 is not None
        res = lint_file(path, [cls(), key002()], lint_options(**options), fix=True, unsafe_fixes=True)
        monkeypatch.setattr(os, "replace", real_replace)
        if len(calls) >= 2:  # two files were to be written: neither is
            assert _snapshot(directory) == before
            assert any("fixes not written" in e for e in res.rule_errors)
