#!/usr/bin/env python3
"""Regenerate or check the chat-template table the TMPL rules use (``tuner/config/_templates_data.py``).

The source is LLaMA-Factory itself, at the release cfglint targets by default (0.9.5), given on the command line
(see ``scripts/lf_source.py``): an installed package (``--lf-installed``), a package or checkout directory
(``--lf-src``), a git clone at a tag (``--lf-git DIR --lf-ref v0.9.5``) or a release archive (``--lf-dist``).
Two files are parsed with ``ast``, never imported: ``data/template.py`` (every ``register_template`` call, with
its flags) and ``extras/constants.py`` (every ``register_model_group`` call: the ``DownloadSource.DEFAULT`` hub
id of each model and the group's template). Only what the lint rules read is kept, so the module stays small and
imports in a few milliseconds:

* ``TEMPLATES``: template name -> (reasoning, efficient_eos, mm_plugin)
* ``HUB_TEMPLATES``: hub id -> (registered template or None, is a chat/instruct checkpoint, multimodal)
* ``STOP_WORDS``: template name -> (stop words, replace_eos), for templates that have stop words

``--check`` exits 1 when the committed module differs from what the source would generate. CI runs it against
``pip install llamafactory==0.9.5`` (``.ci/run``)::

    python scripts/gen_templates.py --lf-installed --check
    python scripts/gen_templates.py --lf-git ../LLaMA-Factory --lf-ref v0.9.5
"""

from __future__ import annotations

import argparse
import ast
import pprint
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lf_source  # the sibling module, whichever directory this script is run from

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tuner" / "config" / "_templates_data.py"

#: A model name that says it is a base (pre-trained only) checkpoint.
_BASE_NAME = re.compile(r"(?i)(^|[-_.])(base|pt)([-_.]|$)")
#: A model name that says it was tuned to chat or follow instructions.
_CHAT_NAME = re.compile(r"(?i)(^|[-_.])(instruct|chat|thinking|distill|it)([-_.]|$)")


# -- reading LLaMA-Factory's source ----------------------------------------------------------------------------


def _calls(tree: ast.Module, *names: str) -> list[ast.Call]:
    """Module-level calls of the named functions, in source order."""
    return [
        node.value
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id in names
    ]


def _kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def _const(node: ast.expr | None, default: Any = None) -> Any:
    return node.value if isinstance(node, ast.Constant) else default


def read_templates(text: str) -> list[dict[str, Any]]:
    """Every template ``data/template.py`` registers: ``register_template`` (``_register_template`` before
    v0.9.1), with ``template_class`` a ``ReasoningTemplate`` (or a subclass) marking a reasoning template."""
    tree = ast.parse(text)
    bases = {
        node.name: [b.id for b in node.bases if isinstance(b, ast.Name)]
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }

    def is_reasoning(cls: str) -> bool:
        return cls == "ReasoningTemplate" or any(is_reasoning(b) for b in bases.get(cls, ()))

    out = []
    for call in _calls(tree, "register_template", "_register_template"):
        kw = _kwargs(call)
        plugin = kw.get("mm_plugin")
        mm = "base"
        if isinstance(plugin, ast.Call):
            pk = _kwargs(plugin)
            mm = _const(pk.get("name"), _const(plugin.args[0] if plugin.args else None, "base"))
        cls = kw.get("template_class")
        stops = kw.get("stop_words")
        out.append(
            {
                "name": _const(kw.get("name")),
                "reasoning": isinstance(cls, ast.Name) and is_reasoning(cls.id),
                "efficient_eos": bool(_const(kw.get("efficient_eos"), False)),
                "replace_eos": bool(_const(kw.get("replace_eos"), False)),
                "stop_words": [_const(e) for e in stops.elts] if isinstance(stops, ast.List) else [],
                "mm_plugin": mm,
            }
        )
    return out


def read_hub_ids(text: str) -> dict[str, dict[str, Any]]:
    """Hub id -> its ``register_model_group`` entry in ``extras/constants.py``: the ``DownloadSource.DEFAULT``
    path of each model, the group's template, and whether LLaMA-Factory makes it the model's default template
    (a name with ``-Chat``/``-Distill``/``-Instruct``/``-Thinking``, or a multimodal group)."""
    out: dict[str, dict[str, Any]] = {}
    for call in _calls(ast.parse(text), "register_model_group"):
        kw = _kwargs(call)
        template = _const(kw.get("template"))
        multimodal = bool(_const(kw.get("multimodal"), False))
        models = kw.get("models")
        if not isinstance(models, ast.Dict):
            continue
        for key, paths in zip(models.keys, models.values, strict=True):
            name = _const(key)
            if not isinstance(name, str) or not isinstance(paths, ast.Dict):
                continue
            for src, path in zip(paths.keys, paths.values, strict=True):
                if isinstance(src, ast.Attribute) and src.attr == "DEFAULT" and isinstance(_const(path), str):
                    applies = template is not None and (
                        any(s in name for s in ("-Chat", "-Distill", "-Instruct", "-Thinking")) or multimodal
                    )
                    out[path.value] = {  # type: ignore[attr-defined]
                        "model_name": name,
                        "template": template,
                        "default_template_applies": applies,
                        "multimodal": multimodal,
                    }
    return out


def read_source(src: lf_source.LFSource) -> dict[str, Any]:
    return {
        "templates": read_templates(src.read("data/template.py")),
        "hf_hub_id_to_template": read_hub_ids(src.read("extras/constants.py")),
    }


def is_chat_checkpoint(hub_id: str, entry: dict[str, Any]) -> bool:
    """LLaMA-Factory applies a group's template by default only to chat/instruct/thinking checkpoints
    (``register_model_group``: ``-Chat``, ``-Instruct``, ``-Thinking``, ``-Distill``, or multimodal groups).
    Multimodal groups apply it to their ``-Base`` members too, so the name decides for those."""
    names = (str(entry.get("model_name", "")), hub_id.rsplit("/", 1)[-1])
    if any(_BASE_NAME.search(n) for n in names):
        return False
    # LLaMA-Factory's suffix test is case-sensitive, so `Phi-4-mini-instruct` is not matched upstream.
    return bool(entry.get("default_template_applies")) or any(_CHAT_NAME.search(n) for n in names)


def build(source: dict[str, Any]) -> dict[str, Any]:
    templates = {
        t["name"]: (bool(t.get("reasoning")), bool(t.get("efficient_eos")), str(t.get("mm_plugin") or "base"))
        for t in source["templates"]
    }
    hub = {
        hub_id: (entry.get("template"), is_chat_checkpoint(hub_id, entry), bool(entry.get("multimodal")))
        for hub_id, entry in sorted(source["hf_hub_id_to_template"].items(), key=lambda kv: kv[0].lower())
    }
    unknown = sorted({t for t, _, _ in hub.values() if t is not None and t not in templates})
    if unknown:
        raise SystemExit(f"hub ids map to templates that are not registered: {', '.join(unknown)}")
    stops = {
        t["name"]: (tuple(t.get("stop_words") or ()), bool(t.get("replace_eos")))
        for t in source["templates"]
        if t.get("stop_words")
    }
    return {"templates": dict(sorted(templates.items())), "hub": hub, "stops": dict(sorted(stops.items()))}


def render(data: dict[str, Any], origin: str) -> str:
    lines = [
        f'"""Generated by scripts/gen_templates.py from {origin}. Do not edit by hand."""',
        "",
        "# fmt: off",
        "#: template name -> (reasoning template, efficient_eos, mm_plugin)",
        "TEMPLATES: dict[str, tuple[bool, bool, str]] = "
        + pprint.pformat(data["templates"], width=120, sort_dicts=False),
        "",
        "#: Hugging Face hub id -> (template LLaMA-Factory registers or None, chat/instruct checkpoint, multimodal)",
        "HUB_TEMPLATES: dict[str, tuple[str | None, bool, bool]] = "
        + pprint.pformat(data["hub"], width=120, sort_dicts=False),
        "",
        "#: template name -> (stop words, replace_eos: the first stop word becomes the tokenizer's EOS)",
        "STOP_WORDS: dict[str, tuple[tuple[str, ...], bool]] = "
        + pprint.pformat(data["stops"], width=120, sort_dicts=False),
        "# fmt: on",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=lf_source.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    lf_source.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the module is out of date")
    args = parser.parse_args(argv)
    src = lf_source.from_arguments(args)
    origin = f"LLaMA-Factory {src.version} (`data/template.py` `register_template`, `extras/constants.py` `register_model_group`)"
    text = render(build(read_source(src)), origin)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date against {src.label}: run scripts/gen_templates.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date with LLaMA-Factory {src.version}")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes) from LLaMA-Factory {src.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
