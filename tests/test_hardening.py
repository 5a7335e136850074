"""Never stop early, never crash: the inputs that used to end in exit 2 before any rule ran, or in a traceback.

Each case is a minimal config of our own. Issue 10 item 3 (duplicate keys, `deepspeed:` paths that do not
resolve, LLaMA-Factory's bundled DeepSpeed files) and issue 12 item 1 (hostile inputs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli.lint import cli
from tuner.config.context import Context, StageUnknown
from tuner.config.deepspeed import BUNDLED_NAMES, bundled_config, bundled_name
from tuner.config.loader import parse_config
from tuner.lint.rule import Severity
from tuner.lint.testing import lint_options, lint_result, lint_text


def run(args: list[str], cwd: Path) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def context(text: str, directory: Path, **options: object) -> Context:
    options.setdefault("cwd", directory)
    options.setdefault("env", {})
    return Context(parse_config(text, directory / "run.yaml"), lint_options(**options))


FULL_Z3 = "stage: sft\ndo_train: true\nfinetuning_type: full\npure_bf16: true\ndeepspeed: {path}\n"


# -- LLaMA-Factory's bundled DeepSpeed files -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "stage", "optimizer", "param"),
    [
        ("ds_z0_config.json", 0, None, None),
        ("ds_z2_config.json", 2, None, None),
        ("ds_z2_offload_config.json", 2, "cpu", None),
        ("ds_z3_config.json", 3, None, None),
        ("ds_z3_offload_config.json", 3, "cpu", "cpu"),
    ],
)
def test_bundled_deepspeed_files_resolve_without_a_checkout(
    tmp_path: Path, name: str, stage: int, optimizer: str | None, param: str | None
) -> None:
    ctx = context(FULL_Z3.format(path=f"examples/deepspeed/{name}"), tmp_path)
    assert ctx.deepspeed is not None and ctx.deepspeed.bundled == name
    assert ctx.zero_stage == stage
    assert (ctx.deepspeed.offload_optimizer, ctx.deepspeed.offload_param) == (optimizer, param)
    assert ctx.deepspeed.data["train_micro_batch_size_per_gpu"] == "auto"
    assert ctx.deepspeed.data["bf16"] == {"enabled": "auto"}


def test_bundled_file_rules_see_zero3_and_no_finding_for_the_path(tmp_path: Path) -> None:
    found = lint_text(FULL_Z3.format(path="examples/deepspeed/ds_z3_config.json"), path=tmp_path / "run.yaml", env={})
    codes = [v.code for v in found]
    assert "PREC003" in codes  # pure_bf16 with ZeRO-3: the bundled file's stage is known
    assert "FILE002" not in codes


def test_bundled_file_by_absolute_cluster_path(tmp_path: Path) -> None:
    ctx = context(FULL_Z3.format(path="/nfs/me/LLaMA-Factory/examples/deepspeed/ds_z2_offload_config.json"), tmp_path)
    assert ctx.deepspeed is not None and ctx.zero_stage == 2 and ctx.deepspeed.offload_optimizer == "cpu"


def test_bundled_overlap_comm_follows_the_target_version() -> None:
    """PR #7205 (LLaMA-Factory v0.9.2) turned ``overlap_comm`` off in every bundled file."""
    from tuner.config.versions import Version

    for name in BUNDLED_NAMES:
        assert bundled_config(name, Version.parse("0.9.1"))["zero_optimization"]["overlap_comm"] is True
        assert bundled_config(name, Version.parse("0.9.2"))["zero_optimization"]["overlap_comm"] is False


def test_bundled_name_matches_only_the_examples_directory() -> None:
    assert bundled_name("examples/deepspeed/ds_z3_config.json") == "ds_z3_config.json"
    assert bundled_name("../LLaMA-Factory/examples/deepspeed/ds_z0_config.json") == "ds_z0_config.json"
    assert bundled_name("ds_z3_config.json") is None
    assert bundled_name("configs/deepspeed/ds_z3_config.json") is None
    assert bundled_name("examples/deepspeed/ds_z3_fp8_config.json") is None


def test_a_real_file_at_the_bundled_path_wins(tmp_path: Path) -> None:
    """A user's own edited copy in a checkout is what LLaMA-Factory reads."""
    d = tmp_path / "examples" / "deepspeed"
    d.mkdir(parents=True)
    (d / "ds_z3_config.json").write_text('{"zero_optimization": {"stage": 2}}')
    ctx = context(FULL_Z3.format(path="examples/deepspeed/ds_z3_config.json"), tmp_path)
    assert ctx.deepspeed is not None and ctx.deepspeed.bundled is None and ctx.zero_stage == 2


# -- a deepspeed path that does not resolve ----------------------------------------------------------------
def test_unresolved_deepspeed_is_one_finding_and_linting_goes_on(tmp_path: Path) -> None:
    """Info while the launch directory is unknown (the path may be right there), a warning once it is stated."""
    text = FULL_Z3.format(path="configs/zero3.json") + "lora_rnk: 8\n"
    stated = lint_result(text, path=tmp_path / "run.yaml", env={}, cwd=tmp_path, launch_dir_stated=True)
    assert [v.severity for v in stated.violations if v.code == "FILE002"] == [Severity.WARNING]
    result = lint_result(text, path=tmp_path / "run.yaml", env={})
    file002 = [v for v in result.violations if v.code == "FILE002"]
    assert len(file002) == 1 and file002[0].severity is Severity.INFO
    assert file002[0].line == 5
    message = file002[0].message
    assert str(tmp_path / "configs" / "zero3.json") in message  # where it looked
    assert "relative to the directory it is launched from" in message
    assert "KEY001" in [v.code for v in result.violations]  # the rest of the file is still linted
    # PREC003 needs the ZeRO stage: skipped with the reason, not judged as "no ZeRO-3"
    assert "PREC003" not in [v.code for v in result.violations]
    assert "ZeRO stage is unknown" in result.skipped["PREC003"]


def test_unresolved_deepspeed_means_deepspeed_in_use_with_unknown_stage(tmp_path: Path) -> None:
    ctx = context(FULL_Z3.format(path="/cluster/ds.json"), tmp_path)
    assert ctx.deepspeed is None and ctx.uses_deepspeed
    assert ctx.deepspeed_unresolved is not None and ctx.deepspeed_unresolved.stage is None
    with pytest.raises(StageUnknown):
        _ = ctx.zero3
    assert ctx.estimate is None  # the memory estimate needs the stage: unknown, not a guess


def test_rule_that_fires_without_zero3_is_skipped_when_the_stage_is_unknown(tmp_path: Path) -> None:
    """FT010: layer-wise BAdam in a distributed run needs ZeRO-3. An unreadable config may well be ZeRO-3."""
    text = "stage: sft\ndo_train: true\nfinetuning_type: full\nuse_badam: true\nbadam_mode: layer\ndeepspeed: ds.json\n"
    result = lint_result(text, path=tmp_path / "run.yaml", env={}, select=["FT010", "FILE002"], gpus=4)
    assert [v.code for v in result.violations] == ["FILE002"]
    assert "FT010" in result.skipped
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 2}}')
    result = lint_result(text, path=tmp_path / "run.yaml", env={}, select=["FT010", "FILE002"], gpus=4)
    assert [v.code for v in result.violations] == ["FT010"]


def test_distributed_is_known_from_an_unresolved_deepspeed(tmp_path: Path) -> None:
    """DeepSpeed runs under torchrun whatever its stage: FT009 (layer-wise GaLore, distributed) still applies."""
    text = "stage: sft\ndo_train: true\nfinetuning_type: full\nuse_galore: true\ngalore_layerwise: true\ndeepspeed: ds.json\n"
    codes = [v.code for v in lint_text(text, path=tmp_path / "run.yaml", env={})]
    assert "FILE002" in codes
    assert any(c.startswith("FT") for c in codes)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "invalid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"aws_secret_access_key": "SECRET-VALUE"}', "not a DeepSpeed config"),
    ],
)
def test_broken_deepspeed_file_is_an_error_finding_and_its_content_is_never_shown(
    tmp_path: Path, content: str, words: str
) -> None:
    (tmp_path / "ds.json").write_text(content + "\n")
    (tmp_path / "run.yaml").write_text("stage: sft\ndeepspeed: ds.json\n")
    code, out = run(["check", "--format", "full", "run.yaml"], tmp_path)
    assert code == 1
    assert "FILE002" in out and words in out
    assert "SECRET" not in out and "aws_secret" not in out
    assert "Traceback" not in out


def test_deepspeed_that_is_not_a_path(tmp_path: Path) -> None:
    found = lint_text("stage: sft\ndeepspeed: [a, b]\n", path=tmp_path / "run.yaml", env={}, select=["FILE002"])
    assert [(v.code, v.severity) for v in found] == [("FILE002", Severity.ERROR)]


def test_empty_deepspeed_means_no_deepspeed(tmp_path: Path) -> None:
    """transformers tests ``if self.deepspeed:``; an empty value is no DeepSpeed, not an unreadable file."""
    ctx = context('stage: sft\ndeepspeed: ""\n', tmp_path)
    assert not ctx.uses_deepspeed and ctx.zero_stage is None


def test_cfgtune_estimate_with_an_unresolved_deepspeed_is_one_line(tmp_path: Path) -> None:
    from tuner.cli.tune import cli as tune_cli

    (tmp_path / "run.yaml").write_text("model_name_or_path: qwen2.5-7b\nstage: sft\ndo_train: true\ndeepspeed: nope.json\n")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(tune_cli, ["estimate", "--hw", "h100", "run.yaml"])
    finally:
        os.chdir(old)
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "ZeRO stage is unknown" in result.output and "nope.json" in result.output


# -- duplicate keys ------------------------------------------------------------------------------------------
DUP = "stage: sft\nlr_scheduler_type: cosine\nlora_rank: 8\nlr_scheduler_type: bogus\n"


@pytest.mark.parametrize(("lf", "severity"), [("0.9.4", Severity.ERROR), ("0.9.5", Severity.ERROR), ("0.9.3", Severity.WARNING), ("0.8.3", Severity.WARNING)])
def test_duplicate_key_severity_follows_the_target_version(lf: str, severity: Severity) -> None:
    found = [v for v in lint_text(DUP, llamafactory=lf) if v.code == "FILE001"]
    assert len(found) == 1
    assert found[0].severity is severity and found[0].line == 4
    assert "first on line 2" in found[0].message
    assert ("refuses the file" in found[0].message) == (severity is Severity.ERROR)


def test_duplicate_key_lints_on_with_the_last_value() -> None:
    found = lint_text(DUP)
    key003 = [v for v in found if v.code == "KEY003"]
    assert key003 and "bogus" in key003[0].message and key003[0].line == 4


def test_duplicate_key_fix_removes_the_earlier_one(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("stage: sft\nlora_rank: 8   # old\nlora_alpha: 16\nlora_rank: 16\n")
    code, _ = run(["check", "--select", "FILE", "--fix", "--unsafe-fixes", "run.yaml"], tmp_path)
    assert p.read_text() == "stage: sft\nlora_alpha: 16\nlora_rank: 16\n"
    assert code == 0
    p.write_text("stage: sft\nlora_rank: 8\nlora_rank: 16\n")
    run(["check", "--select", "FILE", "--fix", "run.yaml"], tmp_path)  # unsafe: not without --unsafe-fixes
    assert p.read_text() == "stage: sft\nlora_rank: 8\nlora_rank: 16\n"


def test_duplicate_in_a_flow_mapping_has_no_line_fix() -> None:
    found = [v for v in lint_text('{"stage": "sft", "lora_rank": 8, "lora_rank": 16}') if v.code == "FILE001"]
    assert len(found) == 1 and found[0].fix is None


def test_json_duplicate_in_deepspeed_file_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}})[:-1] + ', "zero_optimization": {}}')
    found = lint_text("stage: sft\ndeepspeed: ds.json\n", path=tmp_path / "run.yaml", env={})
    assert any(v.code == "FILE002" and "duplicate key" in v.message for v in found)


# -- hostile inputs (issue 12): exit 0/1 with a report or exit 2 with one line, never a traceback or a hang ----
BASE = "model_name_or_path: llama3-8b\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"


def cfgtune(args: list[str], cwd: Path) -> tuple[int, str]:
    from tuner.cli.tune import cli as tune_cli

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(tune_cli, args)
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def assert_one_line_error(code: int, out: str, words: str) -> None:
    assert code == 2, out
    assert words in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!float true", "not a valid float"),
        ("!!int x", "not a valid int"),
        ("!!bool 4", "not a valid bool"),
        ("!!timestamp sft", "not a valid timestamp"),
        ("9" * 5000, "too many digits"),
    ],
)
def test_values_their_tag_cannot_hold(tmp_path: Path, value: str, words: str) -> None:
    (tmp_path / "run.yaml").write_text(BASE + f"lora_rank: {value}\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, words)
    assert "run.yaml:5:12:" in out
    for args in (["estimate", "--hw", "h100", "run.yaml"], ["launch", "--dry-run", "run.yaml"]):
        code, out = cfgtune(args, tmp_path)
        assert_one_line_error(code, out, words)


def _mapping_bomb(levels: int = 25) -> str:
    out = "stage: sft\nm0: &m0 {x: 1, y: 2}\n"
    for i in range(1, levels):
        refs = ", ".join(f"k{j}: *m{i - 1}" for j in range(9))
        out += f"m{i}: &m{i} {{{refs}}}\n"
    return out


def test_alias_bomb_of_mappings_is_refused_quickly(tmp_path: Path) -> None:
    import time

    (tmp_path / "run.yaml").write_text(_mapping_bomb())
    start = time.monotonic()
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert time.monotonic() - start < 10
    assert_one_line_error(code, out, "expands to more than")


def test_fifo_and_devices_are_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "not a regular file")
    code, out = run(["check", "--format", "concise", "/dev/zero"], tmp_path)
    assert_one_line_error(code, out, "not a regular file")
    code, out = cfgtune(["estimate", "--hw", "h100", "/dev/zero"], tmp_path)
    assert_one_line_error(code, out, "not a regular file")


def test_deeply_nested_deepspeed_json(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text('{"zero_optimization": ' + '{"x": ' * 5000 + "1" + "}" * 5001)
    (tmp_path / "run.yaml").write_text(BASE + "deepspeed: ds.json\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1 and "FILE002" in out and "nests more than" in out and "Traceback" not in out
    code, out = cfgtune(["estimate", "--hw", "h100", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "ZeRO stage is unknown")
    code, out = cfgtune(["launch", "--dry-run", "run.yaml"], tmp_path)
    assert "Traceback" not in out and code in (0, 1, 2)


def test_deeply_nested_yaml(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\ndeepspeed: " + "{a: " * 200 + "1" + "}" * 200 + "\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "nest")


@pytest.mark.parametrize("stage", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_zero_stage_in_a_json_file(tmp_path: Path, stage: str) -> None:
    (tmp_path / "ds.json").write_text(f'{{"zero_optimization": {{"stage": {stage}}}}}')
    (tmp_path / "run.yaml").write_text(BASE + "deepspeed: ds.json\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1 and "DS001" in out and "internal error" not in out
    code, out = cfgtune(["estimate", "--hw", "h100", "run.yaml"], tmp_path)
    assert code in (0, 1) and "Traceback" not in out


@pytest.mark.parametrize("stage", [".inf", "-.inf", ".nan"])
def test_non_finite_zero_stage_inline(tmp_path: Path, stage: str) -> None:
    (tmp_path / "run.yaml").write_text(BASE + f"deepspeed: {{zero_optimization: {{stage: {stage}}}}}\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1 and "DS001" in out and "internal error" not in out


def test_list_where_a_string_is_expected(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(BASE + "lr_scheduler_type: [a]\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 1 and "internal error" not in out


def test_per_file_ignores_refuses_typos_and_knows_all(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("stage: sft\nlora_rnk: 8\n")
    (tmp_path / ".cfglint.toml").write_text('[per-file-ignores]\n"run.yaml" = ["KEY01X"]\n')
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "unknown rule code or prefix: KEY01X")
    (tmp_path / ".cfglint.toml").write_text('[per-file-ignores]\n"run.yaml" = ["ALL"]\n')
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code == 0 and "KEY001" not in out


def test_huge_integers_and_overlong_names_found_by_the_fuzzer(tmp_path: Path) -> None:
    """An integer past float's range (LORA001 converted it) and a path component longer than any file name
    (model and DeepSpeed lookups stat'ed it: ENAMETOOLONG)."""
    (tmp_path / "run.yaml").write_text(
        f"stage: sft\ndo_train: true\nmodel_name_or_path: {'m' * 400}\ndeepspeed: {'a' * 400}.json\nlora_rank: 8\n"
        f"lora_alpha: {'9' * 300}\n"
    )
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert code in (0, 1) and "internal error" not in out and "FILE002" in out
    for args in (["estimate", "--hw", "h100", "run.yaml"], ["launch", "--dry-run", "run.yaml"]):
        code, out = cfgtune(args, tmp_path)
        assert code in (1, 2) and "Traceback" not in out


@pytest.mark.parametrize("value", ["9" * 400, "-" + "9" * 400, "[1, " + "9" * 400 + "]"])
def test_integer_no_float_can_hold_is_one_line(tmp_path: Path, value: str) -> None:
    """Found by the fuzzer (DSET001/2/5/10 converted `val_size` to float). No setting can use such a number."""
    (tmp_path / "run.yaml").write_text(f"stage: sft\ndo_train: true\nval_size: {value}\n")
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "integer too large")
    assert "run.yaml:3:11:" in out
    code, out = cfgtune(["estimate", "--hw", "h100", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "integer too large")


def test_list_alias_bomb_is_quick(tmp_path: Path) -> None:
    """The big-integer check must look at a shared list once (found by the long fuzz run: it hung)."""
    import time

    lines = ["stage: sft", "l0: &l0 [1, 2]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 23)]
    (tmp_path / "run.yaml").write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    code, out = run(["check", "--format", "concise", "run.yaml"], tmp_path)
    assert time.monotonic() - start < 10 and code in (0, 1, 2) and "Traceback" not in out


def test_error_on_a_file_with_bare_cr_line_ends_is_one_line(tmp_path: Path) -> None:
    """Found by the long fuzz run: old Mac line ends (CR) split the quoted value over three lines."""
    (tmp_path / "run.yaml").write_bytes(b"a: !!float true\r# c\rstage: sft\r")
    code, out = cfgtune(["estimate", "--hw", "h100", "run.yaml"], tmp_path)
    assert_one_line_error(code, out, "not a valid float")
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 1
