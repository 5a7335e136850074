"""Run the chosen rules over a file: locate findings, apply suppressions, apply fixes and re-lint."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tuner.config.document import Document, InputError
from tuner.config.kind import ConfigKind
from tuner.config.loader import load_config, parse_config
from tuner.config.schema import RENAMED, load_schema
from tuner.config.context import Context, LintOptions
from tuner.lint.fixes import apply_edits, write_atomic
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
    fixes_applied: int = 0
    original_text: str | None = None
    fixed_text: str | None = None  # the text after fixes (written unless --diff)
    rule_errors: list[str] = field(default_factory=list)
    suppressed: int = 0
    kind: ConfigKind | None = None  # what the file is for (train, export, infer, eval) and why

    @property
    def diff(self) -> str:
        if self.original_text is None or self.fixed_text is None or self.original_text == self.fixed_text:
            return ""
        import difflib

        return "".join(
            difflib.unified_diff(
                self.original_text.splitlines(keepends=True),
                self.fixed_text.splitlines(keepends=True),
                fromfile=f"a/{self.path}",
                tofile=f"b/{self.path}",
            )
        )

    def count(self, severity: Severity) -> int:
        return sum(1 for v in self.violations if v.severity is severity)


#: Keys only a LLaMA-Factory config has; one of them is enough to lint the file.
_SIGNATURE = {
    "model_name_or_path", "stage", "finetuning_type", "dataset", "eval_dataset", "template", "cutoff_len",
    "do_train", "lora_rank", "lora_target", "adapter_name_or_path", "export_dir", "deepspeed", "quantization_bit",
}  # fmt: skip


def looks_like_config(doc: Document) -> bool:
    """Pre-commit hands us every YAML file; only LLaMA-Factory configs are linted.

    Other YAML that shares a few keys with transformers' arguments (an Accelerate config has ``use_cpu``,
    ``debug`` and ``fsdp_config``) is skipped unless most of its keys are LLaMA-Factory keys.
    """
    if any(k.startswith("_target_") or k == "_recursive_" for k in doc.data):
        return False  # a Hydra/OmegaConf object spec (`_target_: pkg.Class`), which LLaMA-Factory never reads
    if any(k in _SIGNATURE for k in doc.data):
        return True
    schema = load_schema()
    known = sum(1 for k in doc.data if k in schema.keys or k in RENAMED)
    return known > 0 and known * 2 >= len(doc.data)


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
            if f.depends_on_version and ctx.options.target.source.get(f.depends_on_version) == "default":
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
    if not looks_like_config(doc):
        result.not_a_config = True
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
) -> FileResult:
    """Lint one file. With ``fix``, apply fixes until none apply, then lint the result once more."""
    result = FileResult(path=path)
    try:
        doc = load_config(path)
        result.original_text = doc.text
        lint_document(doc, rules, options, result)
        if not fix or result.not_a_config:
            return result
        text = doc.text
        other_files: dict[Path, str] = {}
        for _ in range(MAX_FIX_PASSES):
            edits = [
                e
                for v in result.violations
                if v.fix is not None and (v.fix.safe or unsafe_fixes)
                for e in v.fix.edits
            ]
            if not edits:
                break
            own = [e for e in edits if e.path is None or Path(e.path) == path]
            applied = 0
            if own:
                text, applied = apply_edits(text, own)
            for other in {Path(e.path) for e in edits if e.path is not None and Path(e.path) != path}:
                base = other_files.get(other) or other.read_text(encoding="utf-8")
                other_files[other], n = apply_edits(base, [e for e in edits if e.path is not None and Path(e.path) == other])
                applied += n
                if write:
                    write_atomic(other, other_files[other])
            if applied == 0:
                break
            result.fixes_applied += applied
            try:
                new_doc = parse_config(text, path)
            except InputError as exc:  # a fix must never break the file; keep the original
                result.rule_errors.append(f"a fix produced invalid YAML and was not written: {exc}")
                return result
            fresh = FileResult(path=path)
            lint_document(new_doc, rules, options, fresh)
            result.violations, result.skipped = fresh.violations, fresh.skipped
            result.rule_errors.extend(fresh.rule_errors)
        result.fixed_text = text
        if write and text != result.original_text:
            write_atomic(path, text)
    except InputError as exc:
        result.error = exc
    return result
