"""Run the chosen rules over a file: locate findings, apply suppressions, apply fixes and re-lint."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tuner.config.document import Document, InputError
from tuner.config.kind import ConfigKind
from tuner.config.loader import NotAConfig, decode_text, parse_config, read_bytes
from tuner.config.schema import RENAMED, load_schema
from tuner.config.context import Context, LintOptions
from tuner.lint.fixes import apply_edits, write_files
from tuner.lint.rule import Edit, Finding, Fix, Rule, Severity, SkipRule, Violation
from tuner.lint.suppress import Suppressions, parse_suppressions

#: sqlfluff's runaway limit: fixes that keep producing new fixes stop here.
MAX_FIX_PASSES = 10


@dataclass
class FileResult:
    path: Path
    violations: list[Violation] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # rule code -> why it did not run
    error: InputError | None = None
    not_a_config: bool = False
    #: Why the file was not linted as a config, in a short phrase shared by files skipped for the same reason.
    skip_reason: str | None = None
    fixes_applied: int = 0
    original_text: str | None = None
    fixed_text: str | None = None  # the text after fixes (written unless --diff)
    rule_errors: list[str] = field(default_factory=list)
    suppressed: int = 0
    kind: ConfigKind | None = None  # what the file is for (train, export, infer, eval) and why
    #: Other files the fixes change (the DeepSpeed JSON): original and fixed text, for ``--diff``.
    other_original: dict[Path, str] = field(default_factory=dict)
    other_fixed: dict[Path, str] = field(default_factory=dict)
    fix_notes: list[str] = field(default_factory=list)  # fixes left out on purpose (the finding stays)
    #: (code, name) of each finding the fixes remove: applied with ``--fix``, would be with ``--diff``.
    fixed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def diff(self) -> str:
        import difflib

        pairs = [(self.path, self.original_text, self.fixed_text)]
        pairs += [(p, self.other_original.get(p), t) for p, t in self.other_fixed.items()]
        out: list[str] = []
        for path, before, after in pairs:
            if before is None or after is None or before == after:
                continue
            out.extend(
                difflib.unified_diff(
                    before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=f"a/{path}", tofile=f"b/{path}"
                )
            )
        return "".join(out)

    def count(self, severity: Severity) -> int:
        return sum(1 for v in self.violations if v.severity is severity)


#: Keys only a LLaMA-Factory config has; one of them is enough to lint the file.
_SIGNATURE = {
    "model_name_or_path", "stage", "finetuning_type", "dataset", "eval_dataset", "template", "cutoff_len",
    "do_train", "lora_rank", "lora_target", "adapter_name_or_path", "export_dir", "deepspeed", "quantization_bit",
}  # fmt: skip


def looks_like_config(doc: Document) -> bool:
    """Pre-commit hands us every YAML file; only LLaMA-Factory configs are linted (see :func:`not_config_reason`)."""
    return not_config_reason(doc) is None


def not_config_reason(doc: Document) -> str | None:
    """Why ``doc`` is not a LLaMA-Factory config, or None when it is one.

    Other YAML that shares a few keys with transformers' arguments (an Accelerate config has ``use_cpu``,
    ``debug`` and ``fsdp_config``) is skipped unless most of its keys are LLaMA-Factory keys.
    """
    if any(k.startswith("_target_") or k == "_recursive_" for k in doc.data):
        # a Hydra/OmegaConf object spec (`_target_: pkg.Class`), which LLaMA-Factory never reads
        return "a Hydra object spec (`_target_`)"
    return None if has_config_keys(doc.data) else "no LLaMA-Factory keys at the top level"


def has_config_keys(keys: Iterable[str]) -> bool:
    """One key only a LLaMA-Factory config has, or mostly keys LLaMA-Factory reads."""
    keys = list(keys)
    if any(k in _SIGNATURE for k in keys):
        return True
    schema = load_schema()
    known = sum(1 for k in keys if k in schema.keys or k in RENAMED)
    return known > 0 and known * 2 >= len(keys)


_BLOCK_KEY = re.compile(r"""^["']?([A-Za-z_][\w.-]*)["']?[ \t]*:(?:[ \t]|$)""", re.M)
_QUOTED_KEY = re.compile(r"""["']([A-Za-z_][\w.-]*)["'][ \t]*:""")


def keys_in_text(text: str) -> set[str]:
    """The top-level keys a file that does not parse appears to set: unindented ``key:`` lines, and quoted
    keys anywhere (a config written as JSON). Only used to decide whether a broken file was meant as a config."""
    return set(_BLOCK_KEY.findall(text)) | set(_QUOTED_KEY.findall(text))


def _locate(ctx: Context, finding: Finding) -> tuple[Path, int, int, int, int, str]:
    doc: Document | None = ctx.doc
    if finding.in_deepspeed:
        doc = ctx.deepspeed.doc if ctx.deepspeed is not None else None
        if doc is None:  # inline mapping: point at the `deepspeed:` key of the YAML
            doc = ctx.doc
            finding_keys: tuple[str | None, ...] = ("deepspeed",)
        else:
            finding_keys = (finding.key, *finding.also)
    else:
        finding_keys = (finding.key, *finding.also)
    assert doc is not None  # the YAML itself always has a document
    if finding.line is not None and not finding.in_deepspeed:
        line = max(1, min(finding.line, doc.line_count))
        text = doc.line_text(line)
        end = finding.end_column if finding.end_column is not None else len(text) + 1
        return doc.path, line, finding.column, line, end, text
    for key in finding_keys:
        if key and (entry := doc.entry(key)) is not None:
            s, e = entry.key_span.start, entry.value_span.end
            if e.line != s.line:  # a multi-line value: underline the key only
                e = entry.key_span.end
            return doc.path, s.line, s.column, e.line, e.column, doc.line_text(s.line)
    return doc.path, 1, 1, 1, 1, doc.line_text(1)


@dataclass
class RunState:
    """What a finished pass of the rules did, for rules that judge the run itself (``Rule.after_others``)."""

    suppressions: Suppressions
    ran: set[str]  # codes of the rules that ran to completion on this file
    selected: set[str]  # codes of every rule chosen for this run


def run_rules(ctx: Context, rules: Iterable[Rule], result: FileResult) -> list[Violation]:
    out: list[Violation] = []
    sup = parse_suppressions(ctx.doc.text)
    ds_sup = None
    if ctx.deepspeed is not None and ctx.deepspeed.doc is not None:
        ds_sup = parse_suppressions(ctx.deepspeed.doc.text)
    rules = list(rules)
    ran: set[str] = set()
    ordered = [r for r in rules if not r.after_others] + [r for r in rules if r.after_others]
    for rule in ordered:
        if rule.after_others:
            ctx.run = RunState(suppressions=sup, ran=set(ran), selected={r.code for r in rules})
        unmet = [(n, r) for n in rule.needs if (r := ctx.skip_reason(n)) is not None]
        if unmet:
            result.skipped[rule.code] = "; ".join(r for _, r in unmet)
            continue
        try:
            findings = list(rule.check(ctx))
        except SkipRule as exc:
            result.skipped[rule.code] = str(exc)
            continue
        except InputError:
            raise
        except Exception as exc:  # a buggy rule must not take the linter down
            import traceback

            tb = traceback.extract_tb(exc.__traceback__)[-1]
            result.rule_errors.append(
                f"internal error in rule {rule.code} ({exc.__class__.__name__}: {exc}) at {tb.filename}:{tb.lineno}"
            )
            continue
        ran.add(rule.code)
        for f in findings:
            path, line, col, eline, ecol, src = _locate(ctx, f)
            table = ds_sup if (f.in_deepspeed and ds_sup is not None and path != ctx.doc.path) else sup
            if table.suppressed(rule.code, line):
                result.suppressed += 1
                continue
            severity, message = f.severity or rule.severity, f.message
            if f.depends_on_version and not ctx.options.target.stated(f.depends_on_version):
                severity, message = Severity.INFO, message + _unstated_version_note(ctx, f.depends_on_version)
            fix = f.fix
            if fix is not None and f.in_deepspeed and path != ctx.doc.path:
                fix = Fix(fix.description, tuple(Edit(e.start, e.end, e.content, e.path or path) for e in fix.edits), fix.safe)
            out.append(
                Violation(
                    code=rule.code,
                    name=rule.name,
                    severity=severity,
                    message=message,
                    path=path,
                    key=f.key,
                    line=line,
                    column=col,
                    end_line=eline,
                    end_column=ecol,
                    hint=f.hint,
                    fix=fix,
                    source_line=src,
                )
            )
    out.sort(key=lambda v: (str(v.path) != str(ctx.doc.path), v.line, v.column, v.severity.rank, v.code))
    return out


def _unstated_version_note(ctx: Context, side: str) -> str:
    """Why a version-dependent finding is only info: the user did not say which release the file is for."""
    target = ctx.options.target
    if side == "transformers":
        return (
            f" (true for transformers {target.transformers}, the default target; if the run uses another release, "
            "state it with --target-transformers or `target-transformers` in the settings)"
        )
    return (
        f" (true for LLaMA-Factory {target.llamafactory}, the default target; if the run uses another release, state "
        "it with --target-llamafactory or `target-llamafactory` in the settings)"
    )


def lint_document(doc: Document, rules: list[Rule], options: LintOptions, result: FileResult | None = None) -> FileResult:
    result = result or FileResult(path=doc.path)
    reason = not_config_reason(doc)
    if reason is not None:
        result.not_a_config, result.skip_reason = True, reason
        return result
    ctx = Context(doc, options)
    result.kind = ctx.kind
    result.violations = run_rules(ctx, rules, result)
    return result


def lint_file(
    path: Path,
    rules: list[Rule],
    options: LintOptions,
    *,
    fix: bool = False,
    unsafe_fixes: bool = False,
    write: bool = True,
    text: str | None = None,
) -> FileResult:
    """Lint one file. With ``fix``, apply fixes until none apply, then lint the result once more.

    ``text`` is the file's content when it does not come from ``path`` (``cfglint check -`` reads stdin; the
    path is then only a name, and nothing is written).

    A file that is not a LLaMA-Factory config is skipped with the reason (``not_a_config``, ``skip_reason``):
    a list or a value at the top level, several documents, an empty file, a mapping without LLaMA-Factory
    keys, and YAML that does not parse and names no LLaMA-Factory key. A file that is unreadable, or that
    names LLaMA-Factory keys and does not parse (or parses as several documents), is an input error (exit 2).

    Fixes are worked out in memory, over the YAML and the DeepSpeed JSON it names together (each re-lint reads
    the JSON as fixed so far), and then checked: the YAML must still parse, a JSON file must still be JSON, and
    a config written in JSON syntax must stay JSON. Only then are the files written, all or none
    (:func:`tuner.lint.fixes.write_files`), keeping each file's byte-order mark, line ends, mode and symlinks.
    """
    result = FileResult(path=path)
    try:
        bom = False
        if text is None:
            raw = read_bytes(path)
            bom = raw.startswith(b"\xef\xbb\xbf")
            text = decode_text(raw, path)
        elif "\x00" in text:
            raise InputError(path, "binary file (contains NUL bytes), not a config")
        try:
            doc = parse_config(text, path)
        except NotAConfig as exc:
            if exc.keys and has_config_keys(exc.keys):
                raise  # a config with a stray `---`: LLaMA-Factory cannot read it either
            result.not_a_config, result.skip_reason = True, exc.reason
            return result
        except InputError:
            if has_config_keys(keys_in_text(text)):
                raise
            result.not_a_config, result.skip_reason = True, "not valid YAML, and no LLaMA-Factory keys"
            return result
        doc.bom = bom
        result.original_text = doc.text
        lint_document(doc, rules, options, result)
        if not fix or result.not_a_config:
            return result
        _fix_loop(doc, rules, options, result, unsafe_fixes=unsafe_fixes, write=write)
    except InputError as exc:
        result.error = exc
    return result


def _fix_loop(
    doc: Document, rules: list[Rule], options: LintOptions, result: FileResult, *, unsafe_fixes: bool, write: bool
) -> None:
    import dataclasses

    path = doc.path
    text = doc.text
    others: dict[Path, str] = {}  # fixed text of other files so far
    boms: dict[Path, bool] = {path: doc.bom}
    applied_total = 0
    before = [v for v in result.violations if v.fix is not None and (v.fix.safe or unsafe_fixes)]
    for _ in range(MAX_FIX_PASSES):
        edits = [e for v in result.violations if v.fix is not None and (v.fix.safe or unsafe_fixes) for e in v.fix.edits]
        if not edits:
            break
        own = [e for e in edits if e.path is None or Path(e.path) == path]
        applied = 0
        new_text = text
        if own:
            new_text, applied = apply_edits(text, own)
        new_others = dict(others)
        for other in sorted({Path(e.path) for e in edits if e.path is not None and Path(e.path) != path}):
            if other not in new_others:
                raw = read_bytes(other, what="DeepSpeed JSON")
                boms[other] = raw.startswith(b"\xef\xbb\xbf")
                result.other_original[other] = decode_text(raw, other, what="DeepSpeed JSON")
                new_others[other] = result.other_original[other]
            new_others[other], n = apply_edits(new_others[other], [e for e in edits if e.path is not None and Path(e.path) == other])
            applied += n
        if applied == 0:
            break
        if not _has_keys(new_text):  # removing the last key leaves no config: keep the key, report it
            result.fix_notes.append("a fix was not applied: it would remove every key of the config")
            break
        problem = _broken_by_fix(doc, new_text, new_others, result)
        if problem is not None:  # a fix must never break a file: keep what the earlier passes did
            result.rule_errors.append(f"a fix was not applied: {problem}")
            break
        text, others = new_text, new_others
        applied_total += applied
        fresh = FileResult(path=path)
        relint = dataclasses.replace(options, file_texts={**options.file_texts, **others})
        lint_document(parse_config(text, path), rules, relint, fresh)
        result.violations, result.skipped = fresh.violations, fresh.skipped
        result.rule_errors.extend(e for e in fresh.rule_errors if e not in result.rule_errors)
    result.fixed_text = text
    if applied_total:
        remaining = {(v.code, v.key, v.message) for v in result.violations}
        result.fixed = [(v.code, v.name) for v in before if (v.code, v.key, v.message) not in remaining]
    result.other_fixed = {p: t for p, t in others.items() if t != result.other_original.get(p)}
    changes = {p: t for p, t in result.other_fixed.items()}
    if text != result.original_text:
        changes[path] = text
    if not write:
        return  # --diff: nothing is applied, so nothing is counted as applied
    if changes:
        try:
            write_files(changes, boms)
        except OSError as exc:
            result.rule_errors.append(f"fixes not written ({exc.strerror or exc}): {getattr(exc, 'filename', '') or path}")
            return
    result.fixes_applied = applied_total


def _broken_by_fix(doc: Document, text: str, others: dict[Path, str], result: FileResult) -> str | None:
    """Why the fixed texts cannot be written, or None when they are sound."""
    import json

    try:
        parse_config(text, doc.path)
    except InputError as exc:
        return f"it would make the YAML invalid ({exc})"
    if doc.flow_end is not None and _is_json(doc.text) and not _is_json(text):
        return f"{doc.path} is written in JSON syntax and the fix would not keep it JSON"
    for other, other_text in others.items():
        try:
            json.loads(other_text)
        except ValueError as exc:
            return f"it would make {other} invalid JSON ({exc})"
    return None


def _has_keys(text: str) -> bool:
    try:
        return bool(parse_config(text).data)
    except InputError as exc:
        return not exc.message.startswith("empty config")  # else broken, not empty: _broken_by_fix says how


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True
