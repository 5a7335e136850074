"""Hypothesis strategies for hostile configs, shared by the fuzz tests (tests/test_fuzz.py).

Two sources of inputs:

* :func:`schema_configs`: documents built from the key schema (``tuner.config.schema.load_schema()``): every
  key, values of its type and of the wrong type, choices, tags that force a type, huge integers, non-finite
  floats, anchors and aliases (a mapping alias bomb too), duplicate keys, deep nesting, JSON syntax, CRLF,
  a byte-order mark, NUL bytes, and a DeepSpeed config inline, in a file (valid, hostile or garbage bytes), at
  LLaMA-Factory's bundled path, or missing;
* :func:`mutated_examples`: the bundled examples (``examples/*.yaml``) with byte flips, line deletions and
  duplications, indentation changes and value type swaps.

Each example is a :class:`FuzzInput`: the config's bytes and the other files to write beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tuner.config.schema import load_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@dataclass
class FuzzInput:
    config: bytes
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content, written beside the config
    name: str = "run.yaml"

    def write(self, directory: Path) -> Path:
        for rel, data in self.files.items():
            p = directory / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        path = directory / self.name
        path.write_bytes(self.config)
        return path


_SCHEMA = load_schema()
_KEYS = sorted(_SCHEMA.keys)
#: Keys most rules read: drawn more often than the other 400.
_COMMON = [
    "model_name_or_path", "stage", "do_train", "finetuning_type", "lora_rank", "lora_alpha", "lora_target",
    "dataset", "dataset_dir", "template", "cutoff_len", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "num_train_epochs", "lr_scheduler_type", "bf16", "fp16", "pure_bf16", "quantization_bit",
    "quantization_method", "flash_attn", "packing", "neat_packing", "output_dir", "eval_strategy", "val_size",
    "warmup_ratio", "warmup_steps", "optim", "use_galore", "use_badam", "badam_mode", "pissa_init",
    "adapter_name_or_path", "ref_model", "pref_loss", "freeze_trainable_layers", "max_steps", "save_steps",
    "resume_from_checkpoint", "gradient_checkpointing", "predict_with_generate", "report_to", "max_samples",
]  # fmt: skip
_MODELS = ["qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "llama3-8b", "meta-llama/Meta-Llama-3-8B", "./model", "gemma2-9b", ""]

_words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_plain = st.from_regex(r"[a-z][a-z0-9_.\-/]{0,15}", fullmatch=True)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value) if not isinstance(value, float) or value == value and abs(value) != float("inf") else repr(value)


#: Value texts of every kind, right and wrong, written as YAML (not as Python values: tags and aliases too).
_hostile = st.sampled_from([
    "!!float true", "!!int x", "!!bool 4", "!!timestamp sft", "!!binary AAAA", "!!binary !!!", "!!set {a, b}",
    "!!omap [a: 1]", "!!str 3", "!!null x", "!!python/object:os.system ls", "9" * 5000, "9" * 400, "-" + "9" * 30,
    ".inf", "-.inf", ".nan", "1e400", "-1e400", "0x1F", "0o17", "1_000", "1:30", "2024-01-01", "~", "null", "''",
    '""', "yes", "off", "[a]", "[]", "{}", "{a: 1}", "[[[]]]", "[1, [2, {x: .nan}]]", "'3'", "\"auto\"", "auto",
    "-1", "0", "1", "2", "3", "4", "0.0", "-0.0", "1.0e-4", "1e-4", "le-4", "true", "false", "|\n  block\n  text",
    ">-\n  folded", "&a 1", "*undefined", "!custom x", "\"\\x00\"", "\"\\ud800\"", "a\tb", "# only a comment",
])  # fmt: skip


@st.composite
def _value_for(draw: st.DrawFn, name: str) -> str:
    spec = _SCHEMA.get(name)
    choice = draw(st.integers(0, 9))
    if spec is None or choice >= 7:
        return draw(_hostile)
    if name == "model_name_or_path":
        return json.dumps(draw(st.sampled_from(_MODELS)))
    if spec.choices and choice < 4:
        return _scalar_text(draw(st.sampled_from(list(spec.choices))))
    kind = spec.kind
    if kind == "bool":
        return draw(st.sampled_from(["true", "false", "0", "1", "yes", "null"]))
    if kind == "int":
        return str(draw(st.one_of(st.integers(-3, 5000), st.integers(-(2**70), 2**70))))
    if kind == "float":
        return _scalar_text(draw(st.floats(allow_nan=True, allow_infinity=True, width=64)))
    if kind == "list":
        return json.dumps(draw(st.lists(_plain, max_size=3)))
    if kind == "dict":
        return json.dumps(draw(st.dictionaries(_plain, st.one_of(st.integers(), _plain), max_size=3)))
    return _scalar_text(draw(st.one_of(_plain, _words, st.integers(-5, 5))))


_DS_STAGE = st.sampled_from(["0", "1", "2", "3", "4", "-1", '"3"', '"auto"', "null", "3.0", "2.5", "true", "[3]",
                             "Infinity", "-Infinity", "NaN", "1e400", '{"a": 1}'])  # fmt: skip


@st.composite
def _deepspeed_json(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # garbage
        return draw(st.binary(max_size=64))
    if kind == 1:  # deep nesting
        depth = draw(st.integers(20, 3000))
        return ('{"zero_optimization": ' + '{"x": ' * depth + "1" + "}" * (depth + 1)).encode()
    if kind == 2:  # not a DeepSpeed config
        return json.dumps({"aws_secret_access_key": "SECRET", "token": [1, 2]}).encode()
    parts = [f'"stage": {draw(_DS_STAGE)}']
    for section in ("offload_optimizer", "offload_param"):
        if draw(st.booleans()):
            device = draw(st.sampled_from(['"cpu"', '"CPU"', '"nvme"', '"none"', '"gpu"', "null", "3"]))
            parts.append(f'"{section}": {{"device": {device}, "pin_memory": true}}')
    for key in ("overlap_comm", "reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_gather_16bit_weights_on_model_save", "sub_group_size"):
        if draw(st.booleans()):
            value = draw(st.sampled_from(["true", "false", '"auto"', "5e8", "1e9", "-1", "NaN", "[]"]))
            parts.append(f'"{key}": {value}')
    top = [f'"zero_optimization": {{{", ".join(parts)}}}']
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping", "train_batch_size"):
        if draw(st.booleans()):
            value = draw(st.sampled_from(['"auto"', "1", "0", "8", "-3", "1.5", "null", "Infinity"]))
            top.append(f'"{key}": {value}')
    for key in ("fp16", "bf16"):
        if draw(st.booleans()):
            value = draw(st.sampled_from(["true", "false", '"auto"', "3"]))
            top.append(f'"{key}": {{"enabled": {value}}}')
    if draw(st.booleans()):
        lr = draw(st.sampled_from(['"auto"', "1e-4", "NaN"]))
        top.append(f'"optimizer": {{"type": "AdamW", "params": {{"lr": {lr}}}}}')
    if kind == 3:  # a duplicate key
        top.append(top[0])
    text = "{\n  " + ",\n  ".join(top) + "\n}\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    data = text.encode()
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def _deepspeed_entry(draw: st.DrawFn) -> tuple[str, dict[str, bytes]]:
    """The text of a ``deepspeed:`` value and the files it needs."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        stage = draw(st.sampled_from(["0", "2", "3", "'3'", ".inf", ".nan", "auto", "[3]", "9" * 30]))
        return f"{{zero_optimization: {{stage: {stage}}}, bf16: {{enabled: auto}}}}", {}
    if kind == 1:
        name = draw(st.sampled_from(["ds_z0_config.json", "ds_z2_config.json", "ds_z2_offload_config.json",
                                     "ds_z3_config.json", "ds_z3_offload_config.json", "ds_z3_fp8_config.json"]))  # fmt: skip
        prefix = draw(st.sampled_from(["examples/deepspeed/", "/nfs/LLaMA-Factory/examples/deepspeed/", "deepspeed/"]))
        return prefix + name, {}
    if kind == 2:
        return draw(st.sampled_from(["missing.json", "/nonexistent/ds.json", "''", "[a, b]", "3", "true", ".", "..", "/"])), {}
    return "ds.json", {"ds.json": draw(_deepspeed_json())}


@st.composite
def schema_configs(draw: st.DrawFn) -> FuzzInput:
    """A config built from the key schema, in block or flow (JSON) syntax, with hostile details mixed in."""
    names = draw(st.lists(st.one_of(st.sampled_from(_COMMON), st.sampled_from(_KEYS), _plain), min_size=0, max_size=14))
    entries = [(n, draw(_value_for(n))) for n in names]
    files: dict[str, bytes] = {}
    if draw(st.integers(0, 2)) == 0:
        ds_text, files = draw(_deepspeed_entry())
        entries.append(("deepspeed", ds_text))
    if entries and draw(st.integers(0, 5)) == 0:  # a duplicate key
        entries.append(draw(st.sampled_from(entries)))
    flow = draw(st.integers(0, 5)) == 0
    if flow:
        body = "{" + ", ".join(f"{json.dumps(k)}: {v if chr(10) not in v else json.dumps(v)}" for k, v in entries) + "}\n"
    else:
        lines = []
        for k, v in entries:
            sep = "\n  " if v.startswith(("|", ">")) else " "
            lines.append(f"{k}:{sep}{v.replace(chr(10), chr(10) + '  ') if sep != ' ' else v}")
            if draw(st.integers(0, 6)) == 0:
                lines.append("# " + draw(_words).replace("\n", " "))
        extra = draw(st.integers(0, 12))
        if extra == 0:  # anchors and aliases, merge keys
            lines += ["base: &b {lora_rank: 8, stage: sft}", "<<: *b", "copy: *b"]
        elif extra == 1:  # an alias bomb built from mappings
            lines.append("m0: &m0 {x: 1, y: 2}")
            for i in range(1, draw(st.integers(2, 22))):
                lines.append(f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(9)) + "}")
        elif extra == 2:  # an alias bomb built from lists
            lines.append("l0: &l0 [1, 2]")
            for i in range(1, draw(st.integers(2, 22))):
                lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
        elif extra == 3:  # deep nesting
            depth = draw(st.integers(10, 400))
            lines.append("nest: " + "{a: " * depth + "1" + "}" * depth)
        elif extra == 4:
            depth = draw(st.integers(10, 400))
            lines.append("nest: " + "[" * depth + "]" * depth)
        body = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    data = body.encode("utf-8", "surrogatepass")
    data = draw(_text_noise(data))
    return FuzzInput(config=data, files=files, name="run.json" if flow and draw(st.booleans()) else "run.yaml")


@st.composite
def _text_noise(draw: st.DrawFn, data: bytes) -> bytes:
    """Line ends, a byte-order mark, NUL bytes, tabs: what editors and copy-paste do to files."""
    roll = draw(st.integers(0, 19))
    if roll == 0:
        data = data.replace(b"\n", b"\r\n")
    elif roll == 1:
        data = b"\xef\xbb\xbf" + data
    elif roll == 2 and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + b"\x00" + data[i:]
    elif roll == 3:
        data = data.replace(b"\n", b"\r")
    elif roll == 4 and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + b"\t" + data[i:]
    return data


_SWAPS = ["true", "false", "null", "0", "-1", "1.0e-4", "[a, b]", "{a: 1}", "'x'", "auto", ".nan", "!!int x", "9" * 5000]


@st.composite
def mutated_examples(draw: st.DrawFn) -> FuzzInput:
    """A bundled example with a few mutations: byte flips, line deletions/duplications, indentation, type swaps."""
    src = draw(st.sampled_from(EXAMPLES))
    data = src.read_bytes()
    for _ in range(draw(st.integers(1, 4))):
        lines = data.split(b"\n")
        op = draw(st.integers(0, 5))
        if op == 0 and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
        elif op == 1 and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
            data = b"\n".join(lines)
        elif op == 2 and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif op == 3 and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = b" " * draw(st.integers(1, 4)) + lines[i]
            data = b"\n".join(lines)
        elif op == 4 and lines:
            i = draw(st.integers(0, len(lines) - 1))
            if b":" in lines[i] and not lines[i].lstrip().startswith(b"#"):
                key = lines[i].split(b":", 1)[0]
                lines[i] = key + b": " + draw(st.sampled_from(_SWAPS)).encode()
                data = b"\n".join(lines)
        else:
            data = draw(_text_noise(data))
    files: dict[str, bytes] = {}
    if b"examples/deepspeed/ds_z3_config.json" in data and draw(st.booleans()):
        # as if run from a checkout whose copy was edited, or from anywhere (the bundled copy)
        files["examples/deepspeed/ds_z3_config.json"] = draw(_deepspeed_json())
    return FuzzInput(config=data, files=files, name=src.name)
