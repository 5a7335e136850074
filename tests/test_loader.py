"""The loader reads values as LLaMA-Factory does and turns every bad input into a one-line InputError."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.config.deepspeed import load_deepspeed
from tuner.config.document import InputError
from tuner.config.loader import load_config, parse_config


# How LLaMA-Factory reads a config: `read_args` in src/llamafactory/hparams/parser.py does
#   OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_cli(argv)))
# and passes the dict to HfArgumentParser.parse_dict, which converts nothing. OmegaConf's YAML loader is
# PyYAML's SafeLoader (YAML 1.1 booleans) plus a float resolver that accepts `1e-4`, minus the timestamp
# resolver, and it refuses duplicate keys. These cases pin that behaviour down.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("learning_rate: 1e-4", 0.0001),  # plain PyYAML would give the string '1e-4'
        ("learning_rate: 1.0e-4", 0.0001),
        ("learning_rate: 5E-5", 5e-05),
        ("learning_rate: .5", 0.5),
        ("num_train_epochs: 3", 3),
        ("num_train_epochs: 3.0", 3.0),
        ("bf16: true", True),
        ("bf16: yes", True),  # YAML 1.1 booleans survive in OmegaConf
        ("bf16: off", False),
        ("lora_rank: '16'", "16"),  # quoted numbers stay strings: parse_dict does not convert them
        ("run_name: 2024-01-01", "2024-01-01"),  # no timestamp resolver
        ("resume_from_checkpoint: null", None),
        ("resume_from_checkpoint: ~", None),
        ("lora_target: q_proj,v_proj", "q_proj,v_proj"),  # split later by LLaMA-Factory's __post_init__
        ("dataset: [a, b]", ["a", "b"]),
        ("save_steps: 1_000", 1000),
    ],
)
def test_values_follow_llamafactory_semantics(text: str, expected: object) -> None:
    doc = parse_config(text + "\n", "run.yaml")
    (value,) = doc.data.values()
    assert value == expected
    assert type(value) is type(expected)


def test_spans_point_at_keys_and_values() -> None:
    text = "# header\nmodel_name_or_path: Qwen/Qwen2.5-7B  # base\nlora_rank:   16\nnested:\n  inner: 2\n"
    doc = parse_config(text, "run.yaml")
    e = doc.entry("lora_rank")
    assert e is not None
    assert (e.key_span.start.line, e.key_span.start.column) == (3, 1)
    assert (e.value_span.start.line, e.value_span.start.column) == (3, 14)
    assert text[e.value_span.start.offset : e.value_span.end.offset] == "16"
    m = doc.entry("model_name_or_path")
    assert m is not None and text[m.value_span.start.offset : m.value_span.end.offset] == "Qwen/Qwen2.5-7B"
    inner = doc.entry("nested.inner")
    assert inner is not None and (inner.key_span.start.line, inner.key_span.start.column) == (5, 3)


def test_merge_keys_are_expanded() -> None:
    doc = parse_config("base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\n", "run.yaml")
    assert doc.data["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("stage: sft\n\tlora_rank: 8\n", 2, "tab character"),
        ("- stage: sft\n", 1, "top level is a list"),
        ("just a string\n", 1, "top level is a single value"),
        ("dataset: [a, b\nstage: sft\n", None, "invalid YAML"),
        ("stage: sft\n---\nstage: pt\n", 2, "2 YAML documents in one file"),
        ("x: !!python/object:os.system ls\n", 1, "invalid YAML"),
        ("? [a, b]\n: 1\n", 1, "a key must be a plain word"),
    ],
)
def test_bad_yaml_is_one_clear_error(text: str, line: int | None, words: str) -> None:
    with pytest.raises(InputError) as info:
        parse_config(text, "bad.yaml")
    err = info.value
    assert words in str(err)
    assert str(err).startswith("bad.yaml")
    if line is not None:
        assert err.line == line
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty config"),
        (b"   \n\n", "empty config"),
        (b"# only a comment\n", "only comments"),
        (b"\x00\x01\x02binary", "binary file"),
        (b"stage: sft\nname: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, words: str) -> None:
    p = tmp_path / "run.yaml"
    p.write_bytes(content)
    with pytest.raises(InputError, match=words):
        load_config(p)


def test_missing_huge_and_directory_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="directory"):
        load_config(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("stage: sft\n" + "# padding\n" * 300_000)
    with pytest.raises(InputError, match="MiB"):
        load_config(big)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "bom.yaml"
    p.write_bytes("\ufeffstage: sft\n".encode())
    assert load_config(p).data == {"stage": "sft"}


def test_deepspeed_json_is_found_relative_to_cwd_then_config(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "ds.json").write_text('{"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}}')
    ds = load_deepspeed("ds.json", tmp_path / "cfg" / "run.yaml", cwd=tmp_path)
    assert ds.stage == 3 and ds.offload_param == "cpu" and ds.offload_optimizer is None
    assert ds.relative_to_config
    assert ds.doc is not None and ds.doc.entry("zero_optimization.stage") is not None
    ds2 = load_deepspeed("cfg/ds.json", tmp_path / "cfg" / "run.yaml", cwd=tmp_path)
    assert not ds2.relative_to_config


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "not found"),
        ("{", "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_bad_deepspeed_json(tmp_path: Path, content: str | None, words: str) -> None:
    """A DeepSpeed file that cannot be used is an unresolved config with the reason (rule FILE002), not an error."""
    if content is not None:
        (tmp_path / "ds.json").write_text(content)
    ds = load_deepspeed("ds.json", tmp_path / "run.yaml", cwd=tmp_path)
    assert ds.unresolved and ds.stage is None and ds.data == {}
    assert ds.problem is not None and words in ds.problem


def test_duplicate_keys_keep_the_last_value() -> None:
    doc = parse_config("lora_rank: 8\nlora_rank: 16\na:\n  b: [1, 2]\n  b: [3]\n")
    assert doc.data == {"lora_rank": 16, "a": {"b": [3]}}
    assert [(d.path, d.first_key_span.start.line, d.key_span.start.line) for d in doc.duplicates] == [
        ("lora_rank", 1, 2),
        ("a.b", 4, 5),
    ]
    assert doc.entry("lora_rank").value_span.start.line == 2  # type: ignore[union-attr]
    assert "a.b[1]" not in doc.entries  # the earlier list's items are forgotten


_yaml_chars = st.sampled_from(list("abc: -[]{},#&*!|>'\"%@`\t\n 0123456789.eE+~?<=") + ["\x00", "\ufeff", "é"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(_yaml_chars, max_size=120))
def test_loader_never_crashes_on_random_text(text: str) -> None:
    try:
        doc = parse_config(text, "fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml")
        assert "\n" not in exc.message
    else:
        assert isinstance(doc.data, dict)


_valid_lines = st.lists(
    st.sampled_from(
        [
            "stage: sft",
            "lora_rank: 8",
            "learning_rate: 1e-4",
            "dataset: [a, b]",
            "nested:",
            "  inner: 1",
            "  - item",
            "\tbad: tab",
            "key: 'unterminated",
            "key: \"ok\"",
            "# comment",
            "---",
            "- list",
            "a: &x 1",
            "b: *x",
            "c: *missing",
            "<<: {d: 1}",
            "k: {x: 1, x: 2}",
            ":",
            "? complex",
        ]
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(_valid_lines)
def test_loader_never_crashes_on_line_soup(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        doc = parse_config(text, "soup.yaml")
    except InputError as exc:
        assert str(exc).startswith("soup.yaml")
    else:
        # Whatever loads must agree with a plain YAML reading of the same text on the keys present.
        plain = yaml.safe_load(text)
        assert set(doc.data) == {str(k) for k in plain}
