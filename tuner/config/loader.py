"""Read a training YAML the way LLaMA-Factory does, keeping the position of every key and value.

LLaMA-Factory loads a config with ``OmegaConf.load`` and hands ``OmegaConf.to_container(...)`` to
``HfArgumentParser.parse_dict``. OmegaConf's YAML loader is PyYAML's ``SafeLoader`` (YAML 1.1 booleans:
``yes``/``on``/``off``) with two changes that matter here:

* a wider float resolver, so ``1e-4`` is the float ``0.0001`` (plain PyYAML reads it as a string);
* no timestamp resolver, so ``2024-01-01`` stays a string;

and it refuses duplicate keys. We compose the node tree (for positions) with the same resolvers and then
construct each value, so values here are exactly what LLaMA-Factory's dataclasses receive.

Duplicate keys are not an input error here: LLaMA-Factory before v0.9.4 read the file with ``yaml.safe_load``
(v0.9.2/v0.9.3 ``src/llamafactory/hparams/parser.py`` ``read_args``; earlier ``HfArgumentParser.parse_yaml_file``),
which keeps the last value, and v0.9.4 switched to ``OmegaConf.load``, which refuses the file. The loader keeps
the last value, records every duplicate in ``Document.duplicates``, and rule FILE001 reports it with the
severity of the target version.

Whatever the text, loading ends in a :class:`Document` or an :class:`InputError` (exit 2, one line): values
that do not match an explicit tag (``!!float true``), integers past Python's digit limit, aliases that expand
to an enormous tree, nesting beyond any real config, and files that are not regular files (a FIFO,
``/dev/zero``) are all input errors, never a traceback or a hang.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from tuner.config.document import Document, Duplicate, Entry, InputError
from tuner.config.positions import Span

#: Training configs are a few KiB; anything this large is almost certainly the wrong file.
MAX_BYTES = 2 * 1024 * 1024
#: A config has a few dozen keys; aliases that repeat mappings can make a small file expand without bound.
MAX_ENTRIES = 20_000
#: Nesting levels of mappings; LLaMA-Factory configs nest two or three (an inline DeepSpeed config).
MAX_DEPTH = 64

_FLOAT_TAG = "tag:yaml.org,2002:float"
_OMEGACONF_FLOAT = re.compile(
    r"""^(?:
     [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotAConfig(InputError):
    """Well-formed YAML that cannot be a LLaMA-Factory config: a list or a single value at the top level, several
    documents in one stream, or nothing at all.

    ``cfgtune`` commands that need a config still stop on it (it is an :class:`InputError`); ``cfglint check``
    skips the file instead, because pre-commit hands it every YAML in the repository (CI workflows, k8s
    manifests, docker-compose files). ``reason`` is the short, file-independent phrase ``--show-skipped`` groups
    by; ``keys`` are the top-level keys of the mappings in a multi-document stream, so that a real config with
    a stray ``---`` is still reported (LLaMA-Factory reads exactly one document and would refuse it).
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        reason: str,
        line: int | None = None,
        column: int | None = None,
        keys: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(path, message, line=line, column=column)
        self.reason = reason
        self.keys = keys


class LLaMAFactoryLoader(_Base):
    """PyYAML's safe loader with OmegaConf's implicit resolvers (see the module docstring)."""


LLaMAFactoryLoader.add_implicit_resolver(_FLOAT_TAG, _OMEGACONF_FLOAT, list("-+0123456789."))
LLaMAFactoryLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in LLaMAFactoryLoader.yaml_implicit_resolvers.copy().items()
}


def read_bytes(path: str | Path, *, what: str = "config", max_bytes: int = MAX_BYTES) -> bytes:
    """Read a small regular file, turning every way it can be unreadable into an :class:`InputError`.

    Only regular files are read: a FIFO would block forever and ``/dev/zero`` never ends. At most
    ``max_bytes + 1`` bytes are read, so a file whose size ``stat`` misreports cannot exhaust memory.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(p, f"{what} file not found") from None
    except PermissionError:
        raise InputError(p, f"cannot read {what} file: permission denied") from None
    except OSError as exc:
        raise InputError(p, f"cannot read {what} file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(p, f"is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(p, f"not a regular file (a pipe, socket or device), not a {what} file")
    if st.st_size > max_bytes:
        raise InputError(p, _too_big(st.st_size, what))
    try:
        # O_NONBLOCK: should the path turn into a FIFO after the check, opening it must not wait for a writer.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except PermissionError:
        raise InputError(p, f"cannot read {what} file: permission denied") from None
    except OSError as exc:
        raise InputError(p, f"cannot read {what} file: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise InputError(p, _too_big(len(raw), what))
    return raw


def _too_big(size: int, what: str) -> str:
    return f"file is {size / 1024 / 1024:.1f} MiB; a {what} is a few KiB, so this is probably the wrong file"


def read_text(path: str | Path, *, what: str = "config", max_bytes: int = MAX_BYTES) -> str:
    """Read a small UTF-8 text file (a leading byte-order mark is dropped); see :func:`read_bytes`."""
    return decode_text(read_bytes(path, what=what, max_bytes=max_bytes), Path(path), what=what)


def decode_text(raw: bytes, path: str | Path, *, what: str = "config") -> str:
    if b"\x00" in raw:
        raise InputError(path, f"binary file (contains NUL bytes), not a {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line=line) from None
    return text


def load_config(path: str | Path) -> Document:
    """Load a training config file (YAML, or JSON which LLaMA-Factory reads the same way)."""
    p = Path(path)
    raw = read_bytes(p)
    doc = parse_config(decode_text(raw, p), p)
    doc.bom = raw.startswith(b"\xef\xbb\xbf")
    return doc


def parse_config(text: str, path: str | Path = "<string>") -> Document:
    """Parse config text into a :class:`Document`; raise :class:`InputError` for anything unlintable."""
    p = Path(path)
    if "\x00" in text:
        raise InputError(p, "binary file (contains NUL bytes), not a config")
    if not text.strip():
        raise NotAConfig(p, "empty config: expected a mapping of LLaMA-Factory arguments", "an empty file")
    loader = LLaMAFactoryLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if exc.problem and "another document" in exc.problem:
                raise _several_documents(p, text, exc) from None
            raise _syntax_error(p, text, exc) from None
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(p, text, exc) from None
        except yaml.YAMLError as exc:
            raise _reader_error(p, text, exc) from None
        if node is None:
            raise NotAConfig(
                p, "empty config (only comments): expected a mapping of LLaMA-Factory arguments", "only comments"
            )
        doc = Document(path=p, text=text, data={})
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
            raise NotAConfig(
                p,
                f"the top level is {kind}; a training config must be a mapping of `key: value` lines",
                f"the top level is {kind}, not a mapping",
                line=node.start_mark.line + 1,
                column=node.start_mark.column + 1,
            )
        if node.flow_style:
            end = doc.offset(node.end_mark.line, node.end_mark.column) - 1
            doc.flow_end = end if 0 <= end < len(text) and text[end] == "}" else None
        try:
            doc.data = _walk_mapping(loader, doc, node, prefix="", budget=[MAX_ENTRIES])
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(p, text, exc) from None
        except yaml.YAMLError as exc:
            raise InputError(p, f"invalid YAML: {exc}") from None
        return doc
    except RecursionError:
        raise InputError(p, "YAML nests too deeply to be a training config") from None
    finally:
        loader.dispose()


def _several_documents(path: Path, text: str, exc: yaml.MarkedYAMLError) -> InputError:
    """A stream of several documents (``---`` between them): never a config LLaMA-Factory can read.

    Composing the stream again gives the top-level keys of every mapping document, which tell a k8s manifest or
    a docker-compose override from a training config that gained a stray ``---``. A stream that does not
    compose past the first document is an ordinary syntax error.
    """
    mark = exc.problem_mark
    line = mark.line + 1 if mark is not None else None
    keys: set[str] = set()
    count = 0
    try:
        for node in yaml.compose_all(text, Loader=LLaMAFactoryLoader):
            count += 1
            if isinstance(node, yaml.MappingNode):
                keys.update(str(k.value) for k, _ in node.value if isinstance(k, yaml.ScalarNode))
    except yaml.YAMLError as later:
        if isinstance(later, yaml.MarkedYAMLError):
            return _syntax_error(path, text, later)
        return InputError(path, f"invalid YAML: {later}")
    except RecursionError:
        return InputError(path, "YAML nests too deeply to be a training config")
    return NotAConfig(
        path,
        f"{count} YAML documents in one file (`---` starts another one on line {line}); LLaMA-Factory reads a "
        "config as a single mapping and stops on a second document",
        "several YAML documents separated by `---`",
        line=line,
        column=1,
        keys=frozenset(keys),
    )


def _reader_error(path: Path, text: str, exc: yaml.YAMLError) -> InputError:
    """PyYAML's reader errors (control characters) carry a character offset, not a mark: report its line."""
    position = getattr(exc, "position", None)
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(position, int):
        line = text[:position].count("\n") + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        return InputError(path, f"invalid YAML: control character U+{char:04X} is not allowed", line=line, column=column)
    return InputError(path, f"invalid YAML: {exc}")


def _syntax_error(path: Path, text: str, exc: yaml.MarkedYAMLError) -> InputError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    if "\\t" in problem or (mark is not None and _line_has_tab(text, mark.line)):
        return InputError(path, "tab character: YAML allows only spaces for indentation", line=line, column=col)
    if exc.context and exc.problem and exc.context not in problem:
        problem = f"{problem} ({exc.context})"
    return InputError(path, f"invalid YAML: {problem}", line=line, column=col)


def _line_has_tab(text: str, line0: int) -> bool:
    lines = text.split("\n")
    return 0 <= line0 < len(lines) and "\t" in lines[line0]


def _span(doc: Document, node: yaml.Node) -> Span:
    start = doc.offset(node.start_mark.line, node.start_mark.column)
    end = doc.offset(node.end_mark.line, node.end_mark.column)
    if end < start:
        end = start
    # Block scalars end after their trailing newlines; a span ends at the last visible character.
    while end > start and doc.text[end - 1] in "\r\n":
        end -= 1
    return Span(doc.pos(start), doc.pos(end))


def _key_name(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    raise yaml.constructor.ConstructorError(
        "while reading a mapping", None, "a key must be a plain word such as `lora_rank`", node.start_mark
    )


def _pairs(loader: Any, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's key/value pairs with ``<<`` merge keys expanded, as YAML 1.1 readers do."""
    loader.flatten_mapping(node)
    return list(node.value)


def _construct(loader: Any, doc: Document, node: yaml.Node) -> Any:
    """Build a value; a value its explicit tag cannot hold (``!!int x``) is an input error, not a traceback."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError) as exc:
        first = doc.text[doc.offset(node.start_mark.line, node.start_mark.column) :].splitlines()[:1] or [""]
        shown = first[0].strip()
        if len(shown) > 40:
            shown = shown[:37] + "..."
        why = "an integer with too many digits" if "digits" in str(exc) else f"not a valid {node.tag.rsplit(':', 1)[-1]}"
        raise InputError(
            doc.path,
            f"invalid YAML value `{shown}`: {why}; YAML readers (LLaMA-Factory's too) stop on it",
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
        ) from None


def _beyond_float(value: Any) -> bool:
    """An integer no float can hold (over 308 digits), here or inside a list or mapping value.

    Iterative, and each list or mapping is looked at once: aliases can share one list many times over.
    """
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > 1024:
                return True
        elif isinstance(item, (list, dict)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item if isinstance(item, list) else item.values())
    return False


def _walk_mapping(
    loader: Any, doc: Document, node: yaml.MappingNode, prefix: str, budget: list[int], depth: int = 0
) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise InputError(
            doc.path,
            f"mappings nest more than {MAX_DEPTH} levels deep; a training config nests two or three",
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
        )
    seen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    duplicated: set[str] = set()
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
            name = str(key_node.value)
            if name in seen:
                first_key, first_value = seen[name]
                doc.duplicates.append(
                    Duplicate(f"{prefix}{name}", _span(doc, first_key), _span(doc, first_value), _span(doc, key_node))
                )
                duplicated.add(name)
            seen[name] = (key_node, value_node)
    result: dict[str, Any] = {}
    for key_node, value_node in _pairs(loader, node):
        budget[0] -= 1
        if budget[0] < 0:
            raise InputError(
                doc.path,
                f"the YAML expands to more than {MAX_ENTRIES} keys (aliases repeating mappings); "
                "a training config has a few dozen",
                line=key_node.start_mark.line + 1,
            )
        name = _key_name(key_node)
        path = f"{prefix}{name}"
        if name in duplicated and name in result:  # the later value wins: forget what the earlier one indexed
            for stale in [k for k in doc.entries if k.startswith((f"{path}.", f"{path}["))]:
                del doc.entries[stale]
        if isinstance(value_node, yaml.MappingNode):
            value: Any = _walk_mapping(loader, doc, value_node, prefix=f"{path}.", budget=budget, depth=depth + 1)
        else:
            value = _construct(loader, doc, value_node)
            if _beyond_float(value):
                raise InputError(
                    doc.path,
                    f"`{path}`: an integer too large for any number LLaMA-Factory or transformers reads "
                    "(it does not fit a float); YAML readers accept it, the run cannot use it",
                    line=value_node.start_mark.line + 1,
                    column=value_node.start_mark.column + 1,
                )
            if isinstance(value_node, yaml.SequenceNode) and isinstance(value, list):
                budget[0] -= len(value_node.value)
                for i, item in enumerate(value_node.value[: len(value)]):
                    item_path = f"{path}[{i}]"
                    if item_path not in doc.entries:
                        s = _span(doc, item)
                        doc.entries[item_path] = Entry(item_path, value[i], s, s)
        doc.entries[path] = Entry(path, value, _span(doc, key_node), _span(doc, value_node))
        result[name] = value
    return result
