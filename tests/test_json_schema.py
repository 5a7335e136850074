"""`cfglint schema`: the JSON Schema editors read, checked with a real JSON Schema validator (jsonschema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tuner.cli.lint import cli
from tuner.config.json_schema import FILE_NAMES, KINDS, config_schema, dumps
from tuner.config.loader import LLaMAFactoryLoader
from tuner.config.schema import load_schema, value_problem
from tuner.config.versions import TargetVersions, resolve_target

jsonschema = pytest.importorskip("jsonschema")
Validator = jsonschema.Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.y*ml") if "mistakes" not in p.parts)
SHIPPED = sorted(p.parent for p in (ROOT / "schemas").glob("*/config.schema.json"))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty directory, so no settings file above the repository decides the target."""
    monkeypatch.chdir(tmp_path)


def _run(args: list[str], cwd: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _cli_schema(tmp_path: Path, *args: str) -> dict[str, Any]:
    code, out, err = _run(["schema", *args], tmp_path)
    assert code == 0, err
    return json.loads(out)


def _validator(target: TargetVersions | None = None, kind: str = "auto") -> Any:
    return Validator(config_schema(target, kind))


def _errors(doc: Any, target: TargetVersions | None = None, kind: str = "auto") -> list[str]:
    return sorted(e.message for e in _validator(target, kind).iter_errors(doc))


def _load(text: str) -> Any:
    return yaml.load(text, Loader=LLaMAFactoryLoader)


# -- what `cfglint schema` prints -----------------------------------------------------------------------------


def test_cli_prints_a_valid_draft_2020_12_schema(tmp_path: Path) -> None:
    doc = _cli_schema(tmp_path)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Validator.check_schema(doc)
    assert doc["x-cfglint-target"] == {"llamafactory": "0.9.5", "transformers": "5.6.0"}
    assert doc == config_schema(TargetVersions(), "auto")


def test_every_key_has_type_default_and_description() -> None:
    doc = config_schema(kind="train")
    lr = doc["properties"]["learning_rate"]
    assert lr["type"] == "number" and lr["default"] == 5e-05
    assert lr["description"].startswith("The initial learning rate") and "Default: 5e-05" in lr["description"]
    assert doc["properties"]["stage"]["enum"] == ["pt", "sft", "rm", "ppo", "dpo", "kto"]
    for name, prop in doc["properties"].items():
        assert "default" in prop and prop["description"], name


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "auto"])
def test_each_kind_lists_exactly_the_keys_its_parser_takes(kind: str, tmp_path: Path) -> None:
    doc = _cli_schema(tmp_path, "--isolated", "--command", kind)
    assert doc["additionalProperties"] is False
    assert set(doc["properties"]) == set(load_schema().settable_names(kind, TargetVersions()))


def test_chat_is_the_infer_parser(tmp_path: Path) -> None:
    assert _cli_schema(tmp_path, "--command", "chat") == config_schema(kind="infer")


def test_target_flags_and_settings_choose_the_release(tmp_path: Path) -> None:
    old = _cli_schema(tmp_path, "--target-llamafactory", "0.9.3", "--command", "infer")
    assert old["x-cfglint-target"]["llamafactory"] == "0.9.3"
    assert "use_cache" in old["properties"] and "use_kv_cache" not in old["properties"]  # renamed in 0.9.4
    tf4 = _cli_schema(tmp_path, "--transformers", "4")
    assert tf4["x-cfglint-target"] == {"llamafactory": "0.9.5", "transformers": "4.57.6"}
    (tmp_path / "pyproject.toml").write_text('[tool.cfglint]\ntarget-llamafactory = "0.9.3"\n')
    code, out, _ = _run(["schema", "--settings", str(tmp_path / "pyproject.toml")], tmp_path)
    assert code == 0 and json.loads(out)["x-cfglint-target"]["llamafactory"] == "0.9.3"


def test_unsupported_target_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = _run(["schema", "--target-llamafactory", "0.7"], tmp_path)
    assert code == 2 and "0.7 is outside the releases cfglint supports" in err


def test_output_file_and_output_dir(tmp_path: Path) -> None:
    code, out, err = _run(["schema", "--isolated", "-o", str(tmp_path / "s.json"), "--command", "export"], tmp_path)
    assert code == 0 and out == "" and "wrote" in err
    assert json.loads((tmp_path / "s.json").read_text()) == config_schema(kind="export")
    code, _, _ = _run(["schema", "--isolated", "--output-dir", str(tmp_path / "d")], tmp_path)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(FILE_NAMES.values())
    code, _, err = _run(["schema", "-o", "a.json", "--output-dir", "d"], tmp_path)
    assert code == 2 and "not both" in err


# -- the shipped files ------------------------------------------------------------------------------------------


def test_the_default_target_and_transformers_4_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"llamafactory-0.9.5", "llamafactory-0.9.5-transformers-4"}


@pytest.mark.parametrize("directory", SHIPPED, ids=lambda p: p.name)
def test_shipped_schemas_do_not_drift(directory: Path) -> None:
    """Regenerate with `cfglint schema --isolated [--target-...] --output-dir schemas/<dir>` when this fails."""
    stated = json.loads((directory / "config.schema.json").read_text())["x-cfglint-target"]
    target, _ = resolve_target(stated["llamafactory"], stated["transformers"])
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILE_NAMES.values())
    for kind, name in FILE_NAMES.items():
        shipped = (directory / name).read_text(encoding="utf-8")
        assert shipped == dumps(config_schema(target, kind)), f"{directory.name}/{name} is stale"


# -- validation: examples pass, typos and wrong choices fail -----------------------------------------------------


def test_there_are_bundled_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("directory", SHIPPED, ids=lambda p: p.name)
def test_bundled_examples_validate(path: Path, directory: Path) -> None:
    data = _load(path.read_text())
    for name in ("config.schema.json", "train.schema.json"):
        schema = json.loads((directory / name).read_text())
        assert sorted(e.message for e in Validator(schema).iter_errors(data)) == [], f"{name} rejects {path.name}"


def test_the_mistakes_example_is_rejected_where_it_breaks() -> None:
    data = _load((ROOT / "examples" / "mistakes" / "qwen2.5-7b-oops.yaml").read_text())
    assert _errors(data) == [
        "'16' is not of type 'integer'",
        "Additional properties are not allowed ('evaluation_strategy' was unexpected)",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lerning_rate: 1.0e-4", "Additional properties are not allowed ('lerning_rate' was unexpected)"),
        ("Learning_Rate: 1.0e-4", "Additional properties are not allowed ('Learning_Rate' was unexpected)"),
        ("lora_r: 8", "Additional properties are not allowed ('lora_r' was unexpected)"),
        ("stage: sfft", "'sfft' is not one of ['pt', 'sft', 'rm', 'ppo', 'dpo', 'kto']"),
        ("finetuning_type: qlora", "'qlora' is not one of ['lora', 'oft', 'freeze', 'full']"),
        ("lr_scheduler_type: cosine_decay", "'cosine_decay' is not one of"),
        ("save_strategy: no", "False is not one of ['no', 'steps', 'epoch', 'best']"),  # YAML 1.1 reads `no` as false
        ("fsdp: full_shard auto_wrapp", "does not match"),
        ("do_train: 'false'", "should not be valid under"),
        ("lora_rank: 8.5", "8.5 is not of type 'integer'"),
        ("learning_rate: '1.0e-4'", "'1.0e-4' is not of type 'number'"),
        ("cutoff_len: null", "None is not of type 'number'"),
        ("output_dir: [saves/x]", "['saves/x'] is not of type 'string', 'null'"),
    ],
)
def test_rejected(text: str, message: str) -> None:
    errors = _errors(_load("model_name_or_path: m\n" + text))
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize(
    "text",
    [
        "do_train: 1",  # tested for truth
        "do_train: 'yes'",  # a non-empty string: true, as meant
        "learning_rate: 1",  # an int where a float goes
        "learning_rate: 1e-4",  # a float to OmegaConf (LLaMA-Factory 0.9.4 on)
        "num_train_epochs: 3",
        "warmup_steps: 10.0",  # transformers takes the float
        "lora_target: q_proj,v_proj",
        "lora_target: [q_proj, v_proj]",
        "dataset: [alpaca_en_demo, identity]",  # split_arg passes lists on
        "report_to: none",
        "run_name: 2024",
        "resume_from_checkpoint: false",
        "mix_strategy: interleave",  # only fails when two datasets are mixed: not the schema's to say
        "fsdp: full_shard auto_wrap",
        "fsdp: [full_shard, offload]",
        "quantization_bit: null",
        "deepspeed: {zero_optimization: {stage: 2}}",
        "template: qwen3_nothink",  # templates are checked by cfglint, which knows them by release
    ],
)
def test_accepted_because_llamafactory_runs_it(text: str) -> None:
    assert _errors(_load("model_name_or_path: m\n" + text)) == []


def test_exponent_floats_are_strings_before_llamafactory_094() -> None:
    """PyYAML (LLaMA-Factory before 0.9.4) reads `1e-4` as a string, which breaks; OmegaConf reads a float."""
    text = "learning_rate: 1e-4\n"
    old, _ = resolve_target("0.9.3", None)
    assert _errors(yaml.safe_load(text), old) == ["'1e-4' is not of type 'number'"]
    assert _errors(_load(text)) == []


# -- kinds -----------------------------------------------------------------------------------------------------

EXPORT = "model_name_or_path: m\nadapter_name_or_path: saves/lora\ntemplate: qwen\nfinetuning_type: lora\nexport_dir: out\n"
CHAT = "model_name_or_path: m\ntemplate: qwen\ninfer_backend: huggingface\n"
EVAL = "model_name_or_path: m\ntemplate: qwen\ntask: mmlu_test\nn_shot: 5\nsave_dir: saves/eval\n"


def test_auto_reads_an_export_with_the_inference_parser() -> None:
    assert _errors(_load(EXPORT)) == []
    assert _errors(_load(EXPORT + "warmup_ratio: 0.1\n")) == [
        "Additional properties are not allowed ('warmup_ratio' was unexpected)"
    ]
    # training keys make it a training run that also exports (as `cfglint check` reads it)
    assert _errors(_load(EXPORT + "do_train: true\nwarmup_ratio: 0.1\n")) == []


def test_auto_reads_task_as_an_evaluation() -> None:
    assert _errors(_load(EVAL)) == []
    assert _errors(_load(EVAL + "warmup_ratio: 0.1\n")) == [
        "Additional properties are not allowed ('warmup_ratio' was unexpected)"
    ]
    assert _errors(_load("model_name_or_path: m\nn_shot: 5\n")) == [
        "Additional properties are not allowed ('n_shot' was unexpected)"
    ]


def test_the_infer_schema_refuses_training_keys() -> None:
    assert _errors(_load(CHAT), kind="infer") == []
    assert _errors(_load(CHAT)) == []
    assert _errors(_load(CHAT + "learning_rate: 1.0e-4\n"), kind="infer") == [
        "Additional properties are not allowed ('learning_rate' was unexpected)"
    ]


def test_unknown_key_is_one_error_not_one_per_branch() -> None:
    assert len(_errors({"lerning_rate": 1.0, "export_dir": "x"})) == 1
    assert len(_errors({"lerning_rate": 1.0, "task": "mmlu_test"})) == 1


def test_keys_follow_the_target_release() -> None:
    t091, _ = resolve_target("0.9.1", None)
    assert _errors({"image_resolution": 512}, t091) == []  # renamed to image_max_pixels in 0.9.2
    assert _errors({"image_resolution": 512}) == [
        "Additional properties are not allowed ('image_resolution' was unexpected)"
    ]
    assert _errors({"image_max_pixels": 589824}) == []
    t4, _ = resolve_target(None, "4")
    key = {"fsdp_transformer_layer_cls_to_wrap": "Qwen2DecoderLayer"}
    assert _errors(key, t4) == [] and len(_errors(key)) == 1


def test_an_inference_only_key_chooses_the_inference_parser() -> None:
    """LLaMA-Factory 0.9.6 adds `kt_config` to the inference parser only."""
    head, _ = resolve_target("0.9.6", None)
    assert _errors({"model_name_or_path": "m", "kt_config": "kt.yaml"}, head) == []
    assert _errors({"model_name_or_path": "m", "kt_config": "kt.yaml", "warmup_ratio": 0.1}, head) == [
        "Additional properties are not allowed ('warmup_ratio' was unexpected)"
    ]


# -- the schema agrees with what cfglint's key checks say breaks -------------------------------------------------

PROBES: list[Any] = [True, False, 0, 1, 2.5, "x", "false", "1e-4", None, [], ["a"], {"a": 1}]


def _stricter_by_design(d: Any, value: Any, prop: dict[str, Any]) -> bool:
    """Where the schema refuses a value `value_problem` lets through, on purpose (module docstring): values
    that no config means and that break or do nothing, which the linter has no rule for."""
    container = isinstance(value, (list, dict))
    if d.kind in ("bool", "int", "float") and container:
        return True  # a list or mapping where a scalar goes
    if d.kind in ("int", "float") and isinstance(value, bool):
        return True  # a boolean where a number goes
    if d.kind == "dict" and not isinstance(value, (dict, str, type(None))):
        return True  # neither a mapping nor the path of a JSON file
    if d.kind in ("str", "list", "str_or_bool") and isinstance(value, dict):
        return True  # a mapping where a string or list goes (an unfilled `{placeholder}`)
    if "enum" in prop or "pattern" in prop:  # converted to an enum upstream: only its strings work
        return not isinstance(value, str) and not (d.kind == "list" and isinstance(value, list))
    return False


def test_the_schema_never_rejects_what_cfglint_accepts_except_by_design() -> None:
    schema = load_schema()
    target = TargetVersions()
    doc = config_schema(target, "train")
    checked = 0
    for name in schema.settable_names("train", target):
        d = schema.accepted(name, "train", target)
        assert d is not None
        validator = Validator(doc["properties"][name])
        for value in PROBES:
            rejected = not validator.is_valid(value)
            broken = value_problem(d, value, target) is not None
            checked += 1
            if rejected and not broken:
                assert _stricter_by_design(d, value, doc["properties"][name]), f"rejects {name}: {value!r}, which runs"
            assert not (broken and not rejected), f"schema accepts {name}: {value!r}, which breaks"
    assert checked > 3000


# -- the lint path stays light ------------------------------------------------------------------------------------


def test_cfglint_check_does_not_import_the_schema_generator() -> None:
    example = ROOT / "examples" / "qwen2.5-7b-lora-sft.yaml"
    code = (
        "import sys, json\n"
        "from tuner.cli.lint import cli\n"
        f"try:\n    cli(['check', '--isolated', '--format', 'concise', {str(example)!r}], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('tuner.config.json_schema', 'jsonschema', 'pydantic')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- the README shows the editor set-up ---------------------------------------------------------------------------


def test_readme_shows_the_editor_set_up() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "# yaml-language-server: $schema=" in readme and '"yaml.schemas"' in readme
    assert "cfglint schema -o .vscode/llamafactory.schema.json" in readme
    for directory in ("llamafactory-0.9.5/", "llamafactory-0.9.5-transformers-4/"):
        assert f"`{directory}`" in readme and (ROOT / "schemas" / directory / "config.schema.json").is_file()


def test_the_readme_modeline_reaches_a_schema_that_validates_the_readme_example(tmp_path: Path) -> None:
    """The set-up as a user follows it: generate the file, point the modeline at it, validate the config."""
    code, _, _ = _run(["schema", "--isolated", "-o", str(tmp_path / ".vscode" / "llamafactory.schema.json")], tmp_path)
    assert code == 0
    config = tmp_path / "configs" / "run.yaml"
    config.parent.mkdir()
    config.write_text("# yaml-language-server: $schema=../.vscode/llamafactory.schema.json\nmodel_name_or_path: m\n")
    modeline = config.read_text().splitlines()[0].split("$schema=", 1)[1]
    schema = json.loads((config.parent / modeline).resolve().read_text())
    assert list(Validator(schema).iter_errors(_load(config.read_text()))) == []
    assert not Validator(schema).is_valid(_load(config.read_text() + "modle_name_or_path: m\n"))
