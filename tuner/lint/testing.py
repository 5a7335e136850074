"""Helpers for rule tests (ours and plugin authors'): lint a YAML string, apply fixes to a string."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tuner.config.loader import parse_config
from tuner.config.context import LintOptions
from tuner.config.versions import TargetVersions, Version, with_transformers_major
from tuner.lint.fixes import apply_edits
from tuner.lint.registry import load_registry, select_rules
from tuner.lint.rule import Rule, Violation
from tuner.lint.runner import FileResult, lint_document


def rules_for(select: list[str] | str | None = None) -> list[Rule]:
    if isinstance(select, str):
        select = [select]
    return [cls() for cls in select_rules(load_registry(plugins=False), select or [])]


def lint_result(text: str, *, path: str | Path = "config.yaml", select: list[str] | str | None = None, **options: Any) -> FileResult:
    """Lint YAML text as if it were the file ``path`` (relative paths in it resolve from its directory)."""
    p = Path(path)
    options.setdefault("cwd", p.parent if p.parent != Path("") else Path.cwd())
    options.setdefault("env", {})
    doc = parse_config(text, p)
    return lint_document(doc, rules_for(select), lint_options(**options))


def lint_options(**options: Any) -> LintOptions:
    """LintOptions from keyword arguments; ``transformers_major=5`` or ``llamafactory="0.8.3"`` set the target."""
    target = options.pop("target", None) or TargetVersions()
    major = options.pop("transformers_major", None)
    if major is not None:
        target = with_transformers_major(target, int(major))
    lf = options.pop("llamafactory", None)
    if lf is not None:
        target = TargetVersions(Version.parse(str(lf)), target.transformers, target.source)
    return LintOptions(target=target, **options)


def lint_text(text: str, *, path: str | Path = "config.yaml", select: list[str] | str | None = None, **options: Any) -> list[Violation]:
    return lint_result(text, path=path, select=select, **options).violations


def codes(text: str, **kwargs: Any) -> list[str]:
    return [v.code for v in lint_text(text, **kwargs)]


def fix_text(text: str, *, select: list[str] | str | None = None, unsafe: bool = False, **options: Any) -> str:
    """Apply one pass of fixes of the selected rules to ``text`` and return the new text."""
    edits = [
        e
        for v in lint_text(text, select=select, **options)
        if v.fix is not None and (v.fix.safe or unsafe)
        for e in v.fix.edits
        if e.path is None
    ]
    return apply_edits(text, edits)[0]


# -- docstring examples that need more than the YAML ---------------------------------------------------------
# A rule's Bad/Good examples may say what they need in YAML comments, so that `cfglint explain` shows it and
# tests (ours and plugin authors') can recreate it:
#   # cfglint --hw NAME --gpus N --transformers 5     lint options, as on the command line
#   # cfglint --data-root .                           the run is launched from the config's directory
#   # NAME.json: {...}                                  a file (e.g. a DeepSpeed JSON) written next to the config
#   # the model's config.json: {...}                    a model directory with these config.json fields, as --model
#   # env: NAME=VALUE                                   the environment of the run
SMALL_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "torch_dtype": "float32",
}

_OPTION = re.compile(r"--(hw|gpus|transformers|command|nodes|host-ram|data-root|target-llamafactory)[ =](\S+)")


def make_model_dir(directory: Path, **fields: Any) -> Path:
    d = directory / "model"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({**SMALL_LLAMA, **fields}))
    return d


def example_options(text: str, directory: Path) -> dict[str, Any]:
    """Write the files an example's comments describe into ``directory`` and return the lint options it asks for."""
    directory.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"env": {}, "cwd": directory}
    for line in text.splitlines():
        comment = line.strip()
        if not comment.startswith("#"):
            continue
        body = comment.lstrip("#").strip()
        if body.startswith("cfglint "):
            for name, value in _OPTION.findall(body):
                key = {"transformers": "transformers_major", "host-ram": "host_ram_gib",
                       "target-llamafactory": "llamafactory"}.get(name, name)  # fmt: skip
                if name in ("gpus", "transformers", "nodes"):
                    options[key] = int(value)
                elif name == "host-ram":
                    options[key] = float(value)
                elif name == "data-root":  # the launch directory: the example's own directory
                    options["launch_dir_stated"] = True
                else:
                    options[key] = value
        elif body.startswith("the model's config.json:"):
            fields = json.loads(body.split(":", 1)[1])
            options["model"] = str(make_model_dir(directory, **fields))
        elif body.startswith("env:"):
            name, _, value = body[4:].strip().partition("=")
            options["env"][name] = value
        elif m := re.match(r"([\w.-]+(?:/[\w.-]+)*\.json):\s*(\{.*\})$", body):
            (directory / m.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (directory / m.group(1)).write_text(json.dumps(json.loads(m.group(2)), indent=2) + "\n")
    return options


def lint_example(text: str, code: str, directory: Path) -> list[Violation]:
    """Lint a docstring example as ``directory/run.yaml`` with what its comments ask for."""
    options = example_options(text, directory)
    return lint_text(text, path=directory / "run.yaml", select=[code], **options)
