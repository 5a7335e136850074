"""The files themselves: a key written twice, and a ``deepspeed:`` config cfglint could not read.

These used to stop the linter with exit 2 before any rule ran. They are findings now, and linting goes on
with what LLaMA-Factory would use: the later of two duplicate values, and DeepSpeed in use with its settings
unknown (rules that need the ZeRO stage are skipped, see ``Context.zero_stage``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tuner.config.context import Context
from tuner.config.document import Duplicate
from tuner.config.versions import v
from tuner.lint.rule import Edit, Finding, Fix, Rule, Severity

#: LLaMA-Factory v0.9.4 ``src/llamafactory/hparams/parser.py`` ``read_args`` loads the file with
#: ``OmegaConf.load``, whose loader refuses duplicate keys. v0.9.2 and v0.9.3 used ``yaml.safe_load`` and
#: earlier releases ``HfArgumentParser.parse_yaml_file`` (also ``yaml.safe_load``): the last value wins.
OMEGACONF_LOAD_SINCE = v("0.9.4")


def _removal(ctx: Context, dup: Duplicate) -> Fix | None:
    """Delete the lines of the earlier occurrence, when they hold nothing else (not in a flow mapping)."""
    doc = ctx.doc
    first_line, last_line = dup.first_key_span.start.line, dup.first_value_span.end.line
    start = doc.line_start(first_line)
    end = doc.line_end(last_line, with_newline=True)
    before = doc.text[start : dup.first_key_span.start.offset]
    after = doc.text[dup.first_value_span.end.offset : doc.line_end(last_line, with_newline=False)]
    if before.strip() or (after.strip() and not after.strip().startswith("#")):
        return None
    return Fix(f"remove the earlier `{dup.path}` (line {first_line})", (Edit(start, end, ""),), safe=False)


class DuplicateKey(Rule):
    """A key is written twice in one mapping.

    LLaMA-Factory v0.9.4 and later read the config with ``OmegaConf.load``, which refuses the file
    ("found duplicate key"), so the run does not start. Earlier releases read it with ``yaml.safe_load``, which
    silently keeps the last value: the first one is dead text that readers of the file take for the setting.
    cfglint lints on with the last value, as those releases do. With a stated target from 0.9.4 on it is an error;
    under the default target, where the release is unknown, a warning that names both behaviours.

    Bad:

    ```yaml
    stage: sft
    learning_rate: 1.0e-4
    lora_rank: 8
    learning_rate: 5.0e-5
    ```

    Good:

    ```yaml
    stage: sft
    learning_rate: 5.0e-5
    lora_rank: 8
    ```
    """

    code = "FILE001"
    name = "duplicate-key"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        refuses = ctx.lf >= OMEGACONF_LOAD_SINCE
        stated = ctx.options.target.stated("llamafactory")
        for dup in ctx.doc.duplicates:
            first = dup.first_key_span.start.line
            if refuses and not stated:
                # The release is unknown: true in every release is that one of the two values does nothing.
                message = (
                    f"`{dup.path}` is set twice (first on line {first}): LLaMA-Factory 0.9.4 and later refuse "
                    '(OmegaConf: "found duplicate key"), earlier releases silently use the last value'
                )
                severity = Severity.WARNING
            elif refuses:
                message = (
                    f"`{dup.path}` is set twice (first on line {first}): LLaMA-Factory {ctx.lf} refuses the file "
                    '(OmegaConf: "found duplicate key")'
                )
                severity = Severity.ERROR
            else:
                message = (
                    f"`{dup.path}` is set twice (first on line {first}): LLaMA-Factory {ctx.lf} silently uses the "
                    "last value, so the first one does nothing"
                )
                severity = Severity.WARNING
            yield Finding(
                key=dup.path,
                message=message,
                hint="keep one of them (cfglint checks the rest of the file with the last value)"
                + ("" if stated else "; state the release with `--target-llamafactory`"),
                fix=_removal(ctx, dup),
                severity=severity,
            )


class DeepSpeedUnreadable(Rule):
    """The ``deepspeed:`` config cannot be read: not found here, or not a DeepSpeed config.

    LLaMA-Factory hands the path to transformers, which opens it relative to the directory the run is launched
    from, so a path that does not resolve where cfglint runs may still be right on the training machine: that
    is an info finding (the rules that need the ZeRO stage are skipped), and a warning once ``--data-root``
    says where the run is launched from. LLaMA-Factory's own
    ``examples/deepspeed/ds_z{0,2,3}[_offload]_config.json`` are known and never reported. A file that exists
    but is not valid JSON, not a JSON object, or has none of DeepSpeed's keys stops the run: an error. The file's
    content is never shown.

    Bad:

    ```yaml
    stage: sft
    deepspeed: configs/my_zero3.json
    ```

    Good:

    ```yaml
    # configs/my_zero3.json: {"zero_optimization": {"stage": 3}}
    stage: sft
    deepspeed: configs/my_zero3.json
    ```

    Good:

    ```yaml
    stage: sft
    deepspeed: examples/deepspeed/ds_z3_config.json
    ```
    """

    code = "FILE002"
    name = "deepspeed-unreadable"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        ds = ctx.deepspeed_unresolved
        if ds is None:
            return
        if ds.not_found:
            stated = ctx.options.launch_dir_stated
            yield Finding(
                key="deepspeed",
                message=ds.problem or "the DeepSpeed config was not found",
                hint="check that the file exists in the directory `llamafactory-cli` is launched from"
                if stated
                else "pass `--data-root DIR` (the directory you launch `llamafactory-cli` from) to check the path; "
                "until then the rules that need the ZeRO stage are skipped",
                # Without the launch directory the linter cannot know the path is wrong (a cluster path, a
                # checkout of LLaMA-Factory): the finding only says what was not checked.
                severity=Severity.WARNING if stated else Severity.INFO,
            )
        else:
            yield Finding(
                key="deepspeed",
                message=f"{ds.problem}: DeepSpeed cannot start from it",
                hint="point `deepspeed:` at a DeepSpeed JSON config, e.g. LLaMA-Factory's "
                "examples/deepspeed/ds_z3_config.json",
            )
