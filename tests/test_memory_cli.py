"""`cfgtune estimate`: the breakdown table, JSON, headroom and fit limits, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.hardware.profiles import get_profile
from tuner.memory import TrainSetup, estimate, max_batch_that_fits
from tuner.models.resolve import resolve_model

LORA = """\
model_name_or_path: some/local-checkpoint
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
dataset: alpaca_en_demo
template: qwen
cutoff_len: 2048
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
bf16: true
output_dir: out
"""


def run(tmp_path: Path, text: str, *args: str, name: str = "run.yaml") -> object:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(cli, ["estimate", str(path), *args], catch_exceptions=False)


def test_table_shows_breakdown_headroom_and_limits(tmp_path: Path) -> None:
    result = run(tmp_path, LORA, "--hw", "h100", "--model", "qwen2.5-7b")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("frozen weights", "trainable weights", "optimizer states", "logits and loss", "CUDA context",
                 "peak per GPU", "estimated", "ceiling 90%", "headroom", "fits"):  # fmt: skip
        assert text in out
    setup = TrainSetup(resolve_model("qwen2.5-7b").arch, lora_rank=16, batch_size=2, cutoff_len=2048, gradient_accumulation_steps=4)
    best = max_batch_that_fits(setup, get_profile("h100"))
    assert f"largest per_device_train_batch_size that fits at cutoff_len 2048: {best}" in out
    assert "largest cutoff_len (multiple of 64) that fits at batch 2:" in out


def test_json_matches_the_api_and_adds_up(tmp_path: Path) -> None:
    result = run(tmp_path, LORA, "--hw", "a100-80g", "--model", "qwen2.5-7b", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    setup = TrainSetup(resolve_model("qwen2.5-7b").arch, lora_rank=16, batch_size=2, cutoff_len=2048, gradient_accumulation_steps=4)
    api = estimate(setup, get_profile("a100-80g"))
    assert data["peak_bytes"] == int(api.peak_bytes)
    assert data["hardware"] == "a100-sxm4-80g" and data["fits"] is True
    assert sum(c["bytes"] for c in data["components"] if c["at_peak"]) == pytest.approx(data["peak_bytes"], abs=1)
    assert data["headroom_bytes"] == data["ceiling_bytes"] - data["peak_bytes"] or abs(
        data["headroom_bytes"] - (data["ceiling_bytes"] - data["peak_bytes"])) <= 1
    assert data["max_per_device_train_batch_size"] >= 2
    assert data["setup"]["per_device_train_batch_size"] == 2 and data["setup"]["lora_rank"] == 16
    assert all(c["source"] in ("estimated", "calibrated") for c in data["components"])


def test_ceiling_option_changes_headroom(tmp_path: Path) -> None:
    r9 = json.loads(run(tmp_path, LORA, "--hw", "h100", "--model", "qwen2.5-7b", "--json").stdout)
    r5 = json.loads(run(tmp_path, LORA, "--hw", "h100", "--model", "qwen2.5-7b", "--json", "--ceiling", "0.5").stdout)
    assert r5["ceiling_bytes"] == pytest.approx(get_profile("h100").memory_bytes * 0.5, abs=1)
    assert r5["headroom_bytes"] < r9["headroom_bytes"]
    assert r5["max_per_device_train_batch_size"] < r9["max_per_device_train_batch_size"]


def test_zero3_json_and_gpus_shard_the_model(tmp_path: Path) -> None:
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"}, "bf16": {"enabled": "auto"}}')
    full = LORA.replace("finetuning_type: lora", "finetuning_type: full") + "deepspeed: z3.json\n"
    one = json.loads(run(tmp_path, full, "--hw", "h100", "--model", "qwen2.5-7b", "--json", "--gpus", "1").stdout)
    eight = json.loads(run(tmp_path, full, "--hw", "h100", "--model", "qwen2.5-7b", "--json", "--gpus", "8").stdout)
    assert eight["world_size"] == 8 and eight["setup"]["zero_stage"] == 3
    assert eight["peak_bytes"] < one["peak_bytes"]
    states = {c["key"]: c["bytes"] for c in one["components"]}
    states8 = {c["key"]: c["bytes"] for c in eight["components"]}
    assert states8["optimizer_states"] * 8 == pytest.approx(states["optimizer_states"])


def test_a_run_that_does_not_fit(tmp_path: Path) -> None:
    full = LORA.replace("finetuning_type: lora", "finetuning_type: full")
    result = run(tmp_path, full, "--hw", "rtx-4090-24g", "--model", "qwen2.5-7b")
    assert result.exit_code == 0
    assert "does not fit" in result.stdout
    assert "that fits at cutoff_len 2048: none" in result.stdout


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        (LORA, ["--hw", "no-such-gpu", "--model", "qwen2.5-7b"], "unknown hardware profile"),
        (LORA, ["--hw", "h100"], "model unknown"),
        (LORA, ["--hw", "h100", "--model", "no-such-model-9b"], "model unknown"),
        ("model_name_or_path: [unclosed\n", ["--hw", "h100"], "run.yaml"),
        (LORA + "deepspeed: missing.json\n", ["--hw", "h100", "--model", "qwen2.5-7b"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, text: str, args: list[str], needle: str) -> None:
    result = run(tmp_path, text, *args)
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["estimate", str(tmp_path / "nope.yaml"), "--hw", "h100"])
    assert result.exit_code == 2
    assert "not found" in result.stderr


DEEPSEEK_LORA = """\
model_name_or_path: deepseek-ai/DeepSeek-R1-Distill-Qwen-32B
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_target: all
dataset: alpaca_en_demo
template: deepseekr1
cutoff_len: 4096
per_device_train_batch_size: 1
bf16: true
output_dir: out
"""

#: What LLaMA-Factory logs for DeepSeek-R1-Distill-Qwen-32B with LoRA r16 on all linear layers.
DEEPSEEK_LINE = "trainable params: 134,217,728 || all params: 32,898,094,080 || trainable%: 0.4080"


def test_parameter_counts_as_llamafactory_logs_them(tmp_path: Path) -> None:
    result = run(tmp_path, DEEPSEEK_LORA, "--hw", "h100")
    assert result.exit_code == 0, result.output
    assert DEEPSEEK_LINE in result.stdout
    data = json.loads(run(tmp_path, DEEPSEEK_LORA, "--hw", "h100", "--json").stdout)
    assert data["params"] == {"trainable": 134_217_728, "all": 32_898_094_080, "trainable_percent": 0.408}


def test_parameter_counts_of_the_shipped_example_and_the_catalog_alias(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "deepseek-r1-32b-lora-zero3.yaml"
    result = CliRunner().invoke(cli, ["estimate", str(example), "--hw", "h100", "--gpus", "8", "--model", "deepseek-32b"])
    assert result.exit_code == 0, result.output
    assert DEEPSEEK_LINE in result.stdout  # ZeRO-3 partitions count at full size (ds_numel)


@pytest.mark.parametrize(
    ("edit", "trainable", "total"),
    [
        # full tuning: everything trains; Qwen2.5-0.5B ties lm_head to the embeddings, counted once
        ({"finetuning_type: lora": "finetuning_type: full"}, 494_032_768, 494_032_768),
        # LoRA r8 on q_proj,v_proj: 24 layers x 8 x ((896 + 896) + (896 + 128))
        ({"lora_rank: 16": "lora_rank: 8\nlora_target: q_proj,v_proj"}, 540_672, 494_573_440),
    ],
)
def test_parameter_counts_follow_the_method(tmp_path: Path, edit: dict[str, str], trainable: int, total: int) -> None:
    text = LORA
    for old, new in edit.items():
        text = text.replace(old, new)
    data = json.loads(run(tmp_path, text, "--hw", "h100", "--model", "qwen2.5-0.5b", "--json").stdout)
    assert (data["params"]["trainable"], data["params"]["all"]) == (trainable, total)


def test_unstated_optimizer_is_the_target_versions_default(tmp_path: Path) -> None:
    """transformers >= 4.54 defaults to fused AdamW (on torch >= 2.8); a stated optimizer is kept."""
    full = LORA.replace("finetuning_type: lora", "finetuning_type: full").replace("cutoff_len: 2048", "cutoff_len: 256")
    unstated = json.loads(run(tmp_path, full, "--hw", "h100", "--model", "qwen2.5-0.5b", "--json").stdout)
    stated = json.loads(run(tmp_path, full + "optim: adamw_torch\n", "--hw", "h100", "--model", "qwen2.5-0.5b", "--json").stdout)
    assert unstated["setup"]["optim"] == "adamw_torch_fused" and stated["setup"]["optim"] == "adamw_torch"
    assert unstated["peak_phase"] != "optimizer step" and stated["peak_phase"] == "optimizer step"
    assert unstated["reserved_bytes"] > unstated["allocated_bytes"]


def test_upcast_layernorm_on_qlora_is_estimated_as_the_fp32_stream_it_makes(tmp_path: Path) -> None:
    """LLaMA-Factory's upcast_layernorm on a 4-bit model: bitsandbytes computes and returns fp32 on the fp32 norm
    outputs, the residual stream turns fp32 and the checkpoints double; on a 16-bit model nothing changes."""
    qlora = LORA.replace("lora_rank: 16", "lora_rank: 16\nquantization_bit: 4")
    args = ("--hw", "h100", "--model", "llama-3.1-8b", "--json")
    plain = json.loads(run(tmp_path, qlora, *args).stdout)
    upcast = json.loads(run(tmp_path, qlora + "upcast_layernorm: true\n", *args).stdout)
    assert plain["setup"]["upcast_layernorm"] is False and upcast["setup"]["upcast_layernorm"] is True
    acts = {d["setup"]["upcast_layernorm"]: next(c["bytes"] for c in d["components"] if c["key"] == "activations")
            for d in (plain, upcast)}  # fmt: skip
    # 31 of 32 layer checkpoints of 2 x 2048 tokens x 4096 go from 2 to 4 bytes (the first layer's input stays bf16)
    assert acts[True] - acts[False] == pytest.approx(31 * 2 * 2048 * 4096 * 2, rel=0.05)
    table = run(tmp_path, qlora + "upcast_layernorm: true\n", *args[:-1]).stdout
    more = (upcast["peak_bytes"] - plain["peak_bytes"]) / 1024**3
    assert "upcast_layernorm on 4-bit layers" in table and f"{more:.2f} GiB more at the peak than without it" in table
    lora16 = json.loads(run(tmp_path, LORA + "upcast_layernorm: true\n", *args).stdout)
    base16 = json.loads(run(tmp_path, LORA, *args).stdout)
    assert lora16["peak_bytes"] == pytest.approx(base16["peak_bytes"], rel=0.001)


def test_the_target_transformers_release_decides_the_loss_copy_and_is_named(tmp_path: Path) -> None:
    """transformers 4.46-4.48 copy the shifted fp32 logits (batch > 1): 4 B per token per vocabulary entry more at
    the end of the forward than 4.49+, which pads the labels; the output names the versions estimated for."""
    text = LORA.replace("per_device_train_batch_size: 2", "per_device_train_batch_size: 4")
    peaks = {}
    for tf in ("4.48.3", "4.49.0"):
        result = run(tmp_path, text, "--model", "qwen2.5-7b", "--target-llamafactory", "0.9.2", "--target-transformers", tf, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["target"] == {"llamafactory": "0.9.2", "transformers": tf}
        peaks[tf] = data["peak_bytes"]
        assert data["setup"]["loss_shift"] == ("logits" if tf == "4.48.3" else "labels")
    tokens, vocab = 4 * 2048, 152064
    assert (peaks["4.48.3"] - peaks["4.49.0"]) / (tokens * vocab) == pytest.approx(2.0, abs=0.3)  # 14 B vs 12 B
    table = run(tmp_path, text, "--model", "qwen2.5-7b", "--target-transformers", "4.49.0")
    assert table.exit_code == 0 and "estimated for LLaMA-Factory 0.9.5, transformers 4.49.0" in table.stdout
    bad = run(tmp_path, text, "--model", "qwen2.5-7b", "--target-llamafactory", "0.1")
    assert bad.exit_code == 2 and "Traceback" not in bad.output


@pytest.mark.parametrize(("edit", "varying"), [
    ({}, True),
    ({"stage": "pt"}, False),  # LLaMA-Factory packs pre-training data unless told not to
    ({"stage": "pt", "packing": "false"}, True),
    ({"packing": "true"}, False),
    ({"neat_packing": "true"}, False),
])  # fmt: skip
def test_varying_lengths_follow_packing_and_the_note_says_what_they_do(tmp_path: Path, edit: dict[str, str], varying: bool) -> None:
    """Without packing each batch is as long as its longest row: the estimate stays the step of cutoff_len-token rows
    and a note gives what replays of the caching allocator measured for varying lengths."""
    text = LORA.replace("stage: sft", f"stage: {edit.get('stage', 'sft')}")
    text += "".join(f"{k}: {v}\n" for k, v in edit.items() if k != "stage")
    result = run(tmp_path, text, "--model", "qwen2.5-7b", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["setup"]["varying_lengths"] is varying
    notes = [n for n in data["notes"] if n.startswith("batches vary in length")]
    assert len(notes) == (1 if varying else 0)
    if varying:
        assert "benchmarks/variable_length.py" in notes[0] and "one step of 2048-token rows" in notes[0]
        packed = json.loads(run(tmp_path, text + "packing: true\n", "--model", "qwen2.5-7b", "--json").stdout)
        assert packed["peak_bytes"] == data["peak_bytes"]  # a note, not a figure
