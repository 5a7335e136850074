"""The version-ranged key schema: what it covers, how values are judged, and the generator that builds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner.config.schema import RENAMED, RENAMED_IN, load_schema, type_problem, value_problem
from tuner.config.versions import TargetVersions, v

ROOT = Path(__file__).resolve().parent.parent


def target(lf: str = "0.9.5", tf: str | None = None) -> TargetVersions:
    from tuner.config.versions import default_transformers

    return TargetVersions(v(lf), v(tf) if tf else default_transformers(v(lf)))


def test_schema_covers_llamafactory_tags_and_transformers_releases() -> None:
    s = load_schema()
    assert s.llamafactory_versions[0] == v("0.8.0") and v("0.9.5") in s.llamafactory_versions
    assert len(s.llamafactory_versions) >= 10  # every tag from 0.8.0
    assert {v("4.41.2"), v("4.54.0"), v("5.0.0"), v("5.6.0")} <= set(s.transformers_versions)
    assert len(s.settable_names("train")) > 300
    for key in ("model_name_or_path", "lora_rank", "cutoff_len", "template", "deepspeed", "learning_rate", "bf16", "eval_strategy"):
        assert s.accepted(key, "train", target()) is not None, key
    assert s.accepted("compute_dtype", "train") is None  # init-only
    assert s.accepted("n_shot", "train") is None and s.accepted("n_shot", "eval") is not None
    assert s.accepted("no_cuda", "train", target("0.9.5", "5.6.0")) is None  # gone in transformers 5
    assert s.accepted("no_cuda", "train", target("0.9.4", "4.57.1")) is not None
    assert s.accepted("overwrite_output_dir", "train", target("0.9.5", "5.6.0")) is not None  # LLaMA-Factory re-declares it


def test_seed_is_a_training_argument_and_an_eval_argument() -> None:
    s = load_schema()
    for lf in ("0.8.0", "0.9.2", "0.9.5"):
        train = s.accepted("seed", "train", target(lf))
        evaluate = s.accepted("seed", "eval", target(lf))
        assert train is not None and train.group == "TrainingArguments", lf
        assert evaluate is not None and evaluate.group == "EvaluationArguments", lf


def test_old_call_sites_with_a_transformers_major_still_work() -> None:
    s = load_schema()
    assert s.accepted("no_cuda", "train", 4) is not None and s.accepted("no_cuda", "train", 5) is None
    spec = s.get("warmup_steps")
    assert spec is not None and spec.kind_for(4) == "int" and spec.kind_for(5) == "float"
    assert spec.default_for(4) == 0


@pytest.mark.parametrize(
    ("key", "lf", "tf", "history"),
    [
        ("quantization_method", "0.8.2", None, "added in LLaMA-Factory 0.8.3"),
        ("use_reentrant_gc", "0.9.1", None, "added in LLaMA-Factory 0.9.2"),
        ("ray_run_name", "0.9.5", None, "removed in LLaMA-Factory 0.9.5"),
        ("visual_inputs", "0.9.2", None, "removed in LLaMA-Factory 0.9.0"),
        ("new_special_tokens", "0.9.5", None, "renamed to `add_special_tokens` in LLaMA-Factory 0.9.3"),
        ("add_special_tokens", "0.9.2", None, "added in LLaMA-Factory 0.9.3; 0.9.2 calls it `new_special_tokens`"),
        ("no_cuda", "0.9.5", "5.6.0", "not in transformers 5.0.0 and later (last seen in 4.57.1)"),
        ("eval_on_start", "0.8.3", "4.41.2", "added in transformers 4.45.0 (absent from 4.41.2)"),
        ("lora_rank", "0.8.0", None, None),
        ("lerning_rate", "0.9.5", None, None),
    ],
)
def test_history_explains_keys_of_other_releases(key: str, lf: str, tf: str | None, history: str | None) -> None:
    assert load_schema().history(key, target(lf, tf)) == history


def test_renames_point_at_keys_of_their_release() -> None:
    s = load_schema()
    for old, (new, why) in RENAMED.items():
        assert s.accepted(new, "train") is not None or s.accepted(new, "train", 4) is not None, f"{old} -> {new}"
        assert why
    assert s.renamed("fp16_backend", "train", 4) == ("half_precision_backend", RENAMED["fp16_backend"][1])
    assert s.renamed("fp16_backend", "train", 5) is None  # half_precision_backend is gone too: an unknown key
    for old, (new, since) in RENAMED_IN.items():
        assert s.accepted(new, "train", target(since)) is not None, new
        before = [r for r in s.llamafactory_versions if r < v(since)][-1]
        assert s.accepted(old, "train", target(str(before))) is not None, old
        assert s.declaration(new, target(str(before))) is None, new


def test_quantization_method_spellings_by_release() -> None:
    s = load_schema()
    assert s.choices("quantization_method", target("0.8.3")) == ("bitsandbytes", "hqq", "eetq")
    assert s.default("quantization_method", target("0.9.2")) == "bitsandbytes"
    assert s.default("quantization_method", target("0.9.3")) == "bnb"
    assert "bnb" in (s.choices("quantization_method", target("0.9.5")) or ())
    assert s.choices("flash_attn", target("0.8.0")) == ("off", "sdpa", "fa2", "auto")  # `disabled` from 0.8.3
    assert "disabled" in (s.choices("flash_attn", target("0.8.3")) or ())


def test_default_optimizer_by_transformers_release() -> None:
    s = load_schema()
    old = target("0.9.3", "4.53.3")
    new = target("0.9.4", "4.54.0")
    assert s.default("optim", old) == "adamw_torch" and s.torch_default("optim", old) is None
    assert s.default("optim", old, torch=v("2.8")) == "adamw_torch"
    # transformers 4.54.0 (PR #37358): adamw_torch_fused when torch>=2.8
    assert s.torch_default("optim", new) == (v("2.8"), "adamw_torch_fused")
    assert s.default("optim", new) == "adamw_torch"
    assert s.default("optim", new, torch=v("2.8.0")) == "adamw_torch_fused"
    assert s.default("optim", target(), torch=v("2.7.1")) == "adamw_torch"


def test_gradient_checkpointing_defaults_by_release() -> None:
    s = load_schema()
    for lf in ("0.8.0", "0.9.5"):
        assert s.default("disable_gradient_checkpointing", target(lf)) is False  # LLaMA-Factory turns it on
    assert s.declaration("use_reentrant_gc", target("0.9.1")) is None  # always reentrant before 0.9.2
    assert s.default("use_reentrant_gc", target("0.9.2")) is True
    assert not s.loading(target("0.9.3")).fsdp2_non_reentrant_gc
    assert s.loading(target("0.9.4")).fsdp2_non_reentrant_gc


def test_yaml_loading_by_release() -> None:
    s = load_schema()
    old, mid, new = s.loading(target("0.9.1")), s.loading(target("0.9.3")), s.loading(target("0.9.4"))
    assert old.loader == "HfArgumentParser.parse_yaml_file" and not old.duplicate_keys_refused
    assert mid.loader == "yaml.safe_load" and not mid.duplicate_keys_refused and not mid.exponent_floats
    assert new.loader == "OmegaConf.load" and new.duplicate_keys_refused and new.exponent_floats
    assert s.loading(target("0.9.2")).transformers.startswith(">=4.41.2,<=4.49.0")


@pytest.mark.parametrize(
    ("key", "value", "reported"),
    [
        ("do_train", 1, False),  # `if training_args.do_train:` — 1 is true
        ("do_train", 0, False),
        ("bf16", "true", False),  # a true string is true
        ("bf16", "false", True),  # ... and so is "false"
        ("resume_from_checkpoint", False, False),  # Trainer.train: `if resume_from_checkpoint is False: ... None`
        ("resume_from_checkpoint", True, False),
        ("export_device", "gpu", False),  # only `== "cpu"` is tested; anything else acts as `auto`
        ("lora_rank", 16, False),
        ("lora_rank", "16", True),
        ("lora_rank", 16.0, True),  # peft: nn.Linear(in, 16.0)
        ("per_device_train_batch_size", 4.0, True),
        ("save_steps", 500.0, False),  # transformers accepts float steps
        ("learning_rate", 1, False),
        ("learning_rate", "1e-4", True),
        ("cutoff_len", None, True),
        ("quantization_bit", None, False),
        ("stage", "sft", False),
        ("stage", "SFT", True),
        ("finetuning_type", "qlora", True),
        ("template", "qwen3", False),
        ("lora_target", [{"a": 1}], False),  # unsure what breaks: not reported
        ("eval_strategy", "steps", False),
        ("eval_strategy", "step", True),
        ("lr_scheduler_type", "cosine", False),
        ("lr_scheduler_type", "cosine_decay", True),
        ("optim", "adamw_torch_fused", False),
        ("fsdp", "full_shard auto_wrap", False),
        ("fsdp", "full_shard autowrap", True),
        ("deepspeed", {"zero_optimization": {"stage": 3}}, False),
    ],
)
def test_types_are_reported_only_where_they_break_or_change_the_run(key: str, value: object, reported: bool) -> None:
    spec = load_schema().get(key)
    assert spec is not None
    assert (type_problem(spec, value, target()) is not None) is reported


def test_type_messages_say_how_the_run_breaks() -> None:
    s = load_schema()
    stage = s.get("stage")
    assert stage is not None
    problem = value_problem(stage, "SFT", target())
    assert problem is not None and "Unknown task" in problem.message and problem.fixed == "sft"
    assert "IntervalStrategy" in (type_problem(s.get("eval_strategy"), "step", target()) or "")  # type: ignore[arg-type]
    assert "turns the option on" in (type_problem(s.get("do_train"), "false", target()) or "")  # type: ignore[arg-type]
    assert "DataLoader" in (type_problem(s.get("per_device_train_batch_size"), 2.0, target()) or "")  # type: ignore[arg-type]


def test_mix_strategy_only_matters_with_two_datasets() -> None:
    spec = load_schema().get("mix_strategy")
    assert spec is not None
    assert type_problem(spec, "interleave", target(), datasets=1) is None
    assert "Unknown mixing strategy" in (type_problem(spec, "interleave", target(), datasets=2) or "")


def test_exponent_floats_are_strings_before_omegaconf() -> None:
    spec = load_schema().get("learning_rate")
    assert spec is not None
    problem = type_problem(spec, 1e-4, target("0.9.3"), raw="1e-4")
    assert problem is not None and "yaml.safe_load" in problem
    assert type_problem(spec, 1e-4, target("0.9.4"), raw="1e-4") is None
    assert type_problem(spec, 1e-4, target("0.9.3"), raw="1.0e-4") is None


def test_suggestions() -> None:
    s = load_schema()
    assert s.suggest("lerning_rate")[0] == "learning_rate"
    assert s.suggest("Learning_Rate")[0] == "learning_rate"
    assert s.suggest("num train epochs")[0] == "num_train_epochs"
    assert s.suggest("evaluation_strategy") == ["eval_strategy"]
    assert s.suggest("new_special_tokens") == ["add_special_tokens"]
    assert s.suggest("zzzzzz") == []


# -- the generator ---------------------------------------------------------------------------------------------


def _schema_sync():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import schema_sync
    finally:
        sys.path.pop(0)
    return schema_sync


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


HP = "src/llamafactory/hparams"
PARSER = """\
    from transformers import Seq2SeqTrainingArguments
    _TRAIN_ARGS = [ModelArguments, Seq2SeqTrainingArguments]
    _INFER_ARGS = [ModelArguments]
    _EVAL_ARGS = [ModelArguments, EvaluationArguments]
    def read_args(): return {}  # {}
    """


@pytest.fixture
def fake_sources(tmp_path: Path) -> tuple[Path, Path]:
    """A LLaMA-Factory git repo with two tags and two transformers source trees, all made up."""
    lf = tmp_path / "lf"
    lf.mkdir()
    _git(lf, "init", "-q")
    _write(lf, {
        f"{HP}/model_args.py": """\
            from dataclasses import dataclass, field
            from typing import Literal, Optional
            @dataclass
            class ModelArguments:
                model_name_or_path: Optional[str] = field(default=None, metadata={"help": "The model."})
                quantization_method: Literal["bitsandbytes", "hqq"] = field(default="bitsandbytes")
                image_max_pixels: int = field(default=768 * 768)
                compute_dtype: Optional[str] = field(default=None, init=False)
            """,
        f"{HP}/evaluation_args.py": """\
            from dataclasses import dataclass
            @dataclass
            class EvaluationArguments:
                seed: int = 42
            """,
        f"{HP}/parser.py": PARSER.replace("def read_args(): return {}  # {}", "parser.parse_yaml_file(path)"),
        "src/llamafactory/extras/misc.py": 'check_version("transformers>=4.41.2,<=4.45.0")\n',
        "src/llamafactory/extras/constants.py": "X = 1\n",
    })  # fmt: skip
    _git(lf, "add", "-A")
    _git(lf, "commit", "-qm", "one")
    _git(lf, "tag", "v0.8.0")
    _write(lf, {
        f"{HP}/model_args.py": """\
            from dataclasses import dataclass, field
            from typing import Optional
            from ..extras.constants import QuantizationMethod
            @dataclass
            class ModelArguments:
                model_name_or_path: Optional[str] = field(default=None, metadata={"help": "The model."})
                quantization_method: QuantizationMethod = field(default=QuantizationMethod.BNB)
                use_reentrant_gc: bool = True
            """,
        f"{HP}/parser.py": PARSER.replace("def read_args(): return {}  # {}", "OmegaConf.load(path)"),
        "src/llamafactory/extras/constants.py": """\
            from enum import Enum
            class QuantizationMethod(str, Enum):
                BNB = "bnb"
                HQQ = "hqq"
            """,
        "src/llamafactory/extras/misc.py": 'check_version(\n    "transformers>=4.45.0,<=5.0.0"\n)\n',
    })  # fmt: skip
    _git(lf, "commit", "-qam", "two")
    _git(lf, "tag", "v0.9.4")
    tf = tmp_path / "tf"
    for version, extra in (("4.41.2", "    no_cuda: bool = False\n"), ("4.45.0", ""), ("5.0.0", "")):
        optim = (
            '    default_optim = "adamw_torch"\n'
            "    if is_torch_available():\n"
            "        if is_torch_greater_or_equal_than_2_8:\n"
            '            default_optim = "adamw_torch_fused"\n'
            if version == "5.0.0"
            else '    default_optim = "adamw_torch"\n'
        )
        _write(tf / version / "transformers", {
            "training_args.py": (
                "from dataclasses import dataclass, field\nfrom typing import Union\n"
                "class OptimizerNames(ExplicitEnum):\n    ADAMW_TORCH = 'adamw_torch'\n    ADAMW_TORCH_FUSED = 'adamw_torch_fused'\n"
                "@dataclass\nclass TrainingArguments:\n    seed: int = field(default=42)\n"
                + extra + optim
                + "    optim: Union[OptimizerNames, str] = field(default=default_optim)\n"
            ),
            "training_args_seq2seq.py": (
                "from dataclasses import dataclass\n@dataclass\nclass Seq2SeqTrainingArguments(TrainingArguments):\n"
                "    predict_with_generate: bool = False\n"
            ),
        })  # fmt: skip
    return lf, tf


def test_generator_reads_tags_and_releases(fake_sources: tuple[Path, Path]) -> None:
    lf, tf = fake_sources
    table = _schema_sync().build(lf, None, tf, ["4.41.2", "4.45.0", "5.0.0"])
    assert table["llamafactory_versions"] == ["0.8.0", "0.9.4"]
    meta = table["llamafactory"]
    assert meta["0.8.0"]["transformers"] == ">=4.41.2,<=4.45.0" and meta["0.9.4"]["transformers"] == ">=4.45.0,<=5.0.0"
    assert meta["0.8.0"]["duplicate_keys"] == "last wins" and meta["0.9.4"]["duplicate_keys"] == "refused"
    keys = table["keys"]
    qm = keys["quantization_method"]
    assert [(d["lf"], d["default"], d["choices"]) for d in qm] == [
        (["0.8.0", "0.9.4"], "bitsandbytes", ["bitsandbytes", "hqq"]),
        (["0.9.4", None], "bnb", ["bnb", "hqq"]),
    ]
    assert keys["image_max_pixels"][0]["default"] == 589824 and keys["image_max_pixels"][0]["lf"] == ["0.8.0", "0.9.4"]
    assert keys["use_reentrant_gc"][0]["lf"] == ["0.9.4", None]
    assert keys["compute_dtype"][0]["settable"] is False
    assert {d["group"] for d in keys["seed"]} == {"EvaluationArguments", "TrainingArguments"}
    assert keys["no_cuda"][0]["tf"] == ["4.41.2", "4.45.0"]
    assert keys["predict_with_generate"][0]["commands"] == ["train"]
    optim = keys["optim"]
    assert optim[-1]["tf"] == ["5.0.0", None] and optim[-1]["torch_default"] == [">=2.8", "adamw_torch_fused"]
    assert optim[0]["choices"] == ["adamw_torch", "adamw_torch_fused"]


def test_generator_check_mode_reports_drift(fake_sources: tuple[Path, Path], tmp_path: Path) -> None:
    lf, tf = fake_sources
    out = tmp_path / "_schema_data.py"
    script = str(ROOT / "scripts" / "schema_sync.py")
    base = [sys.executable, script, "--lf-git", str(lf), "--transformers-src", str(tf), "--out", str(out)]
    versions = ["--transformers-versions", "4.41.2,4.45.0,5.0.0"]
    assert subprocess.run([*base, *versions], capture_output=True, text=True).returncode == 0
    same = subprocess.run([*base, *versions, "--check"], capture_output=True, text=True)
    assert same.returncode == 0 and "0 difference(s)" in same.stdout
    drift = subprocess.run([*base, "--transformers-versions", "4.41.2,5.0.0", "--check"], capture_output=True, text=True)
    assert drift.returncode == 1 and "transformers_versions" in drift.stdout


def test_normalise_type() -> None:
    sync = _schema_sync()
    assert sync.normalise_type("int | None") == ("int", True)
    assert sync.normalise_type("Literal['a', 'b']") == ("str", False)
    assert sync.normalise_type("Optional[Union[dict, str]]")[0] == "dict"
    assert sync.normalise_type("Union[OptimizerNames, str]") == ("str", False)


@pytest.mark.skipif(
    not (os.environ.get("CFGLINT_LF_GIT") and os.environ.get("CFGLINT_TF_SRC")),
    reason="set CFGLINT_LF_GIT (a LLaMA-Factory git dir) and CFGLINT_TF_SRC (transformers wheels) to check the table",
)
def test_committed_table_matches_upstream() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "schema_sync.py"), "--lf-git", os.environ["CFGLINT_LF_GIT"],
         "--transformers-src", os.environ["CFGLINT_TF_SRC"], "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
