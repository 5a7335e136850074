"""Rules about cfglint's own suppression comments (``# cfglint: disable=...``)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from tuner.lint.rule import Edit, Finding, Fix, Rule, Severity
from tuner.lint.suppress import ALL, Directive

if TYPE_CHECKING:
    from tuner.config.context import Context


@lru_cache(maxsize=1)
def _known_codes() -> frozenset[str]:
    from tuner.lint.registry import load_registry

    return frozenset(cls.code for cls in load_registry().sorted())


class UnusedSuppression(Rule):
    """A ``# cfglint: disable=...`` comment that silences nothing.

    A suppression outlives the problem it was written for: once the value is fixed or the rule changes, the
    comment stays and silently hides the next real problem on that line. Like ruff's RUF100, cfglint reports
    a directive whose codes silenced no finding, and a code that names no rule (a typo never suppresses
    anything). A code is reported as unused only when every rule it names ran on the file: a rule skipped for
    lack of ``--hw`` or a model, or left out by ``--select``, might have needed it. A bare ``disable`` (every
    rule) is never reported. The fix removes the unused codes, or the whole comment when none is used.

    Bad:

    ```yaml
    stage: sft
    lora_rank: 16  # cfglint: disable=LORA999
    ```

    Good:

    ```yaml
    stage: sft
    lora_rank: 16
    ```
    """

    code = "SUP001"
    name = "unused-suppression"
    severity = Severity.WARNING
    fixable = "safe"
    after_others = True

    def check(self, ctx: Context) -> Iterator[Finding]:
        run = ctx.run
        if run is None:
            return
        known = _known_codes()
        for d in run.suppressions.directives:
            unused: list[str] = []
            reasons: list[str] = []
            for sel in d.selectors:
                if sel == ALL or sel in d.used:
                    continue
                named = [c for c in known if c.startswith(sel)]
                if not named:
                    unused.append(sel)
                    reasons.append(f"`{sel}` is not a rule code")
                elif all(c in run.ran for c in named):
                    unused.append(sel)
                    reasons.append(f"`{sel}` silenced nothing" + (" on the next line" if d.scope == "next" else ""))
            if not unused:
                continue
            if d.scope == "file":
                reasons = [r.replace(" silenced nothing", " silenced nothing in this file") for r in reasons]
            yield Finding(
                key=None,
                line=d.line,
                column=d.comment_start - ctx.doc.line_start(d.line) + 1,
                message="unused suppression: " + "; ".join(reasons),
                hint="remove it, so that it cannot hide the next problem on this line",
                fix=_fix(ctx, d, unused),
            )


def _fix(ctx: Context, d: Directive, unused: list[str]) -> Fix | None:
    text = ctx.doc.text
    kept = [s for s in d.selectors if s not in unused]
    if kept and d.codes_span is not None:
        start, end = d.codes_span
        return Fix(f"remove {', '.join(unused)} from the suppression", (Edit(start, end, ",".join(kept)),))
    if d.whole_line:
        start = ctx.doc.line_start(d.line)
        end = ctx.doc.line_end(d.line)
        return Fix("remove the unused suppression comment", (Edit(start, end, ""),))
    start = d.comment_start
    while start > 0 and text[start - 1] in " \t":
        start -= 1
    return Fix("remove the unused suppression comment", (Edit(start, d.comment_end, ""),))
