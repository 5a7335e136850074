"""From config to a real run: `cfgtune auto --device cpu` tunes a tiny model, `cfgtune launch` trains it with
LLaMA-Factory for a few steps, and a checkpoint is written.

LLaMA-Factory pins its own torch and transformers, so this test runs in its own environment (``.ci/run`` builds
and caches it). Elsewhere it is skipped with a reason; with ``CFGTUNE_REQUIRE_LLAMAFACTORY=1`` (set by CI) a
missing LLaMA-Factory is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.data.testing import write_dataset_dir

pytestmark = pytest.mark.llamafactory

REQUIRED = os.environ.get("CFGTUNE_REQUIRE_LLAMAFACTORY") == "1"
BIN = Path(sys.executable).parent


def _llamafactory_cli() -> str | None:
    found = shutil.which("llamafactory-cli", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        if REQUIRED:
            pytest.fail("CFGTUNE_REQUIRE_LLAMAFACTORY=1 but llamafactory-cli is not installed in this environment")
        pytest.skip("LLaMA-Factory is not installed here (CI runs this test in its own environment: see .ci/run)")
    return found


ALPACA = [
    {"instruction": f"Repeat the word number {i}.", "input": "", "output": f"Word number {i} is {w}."}
    for i, w in enumerate(["apple", "river", "stone", "cloud", "ember", "maple", "frost", "grain"] * 3)
]

BASE = """\
# the tiny LoRA recipe this test tunes and trains
### model
model_name_or_path: {model}

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: alpaca_tiny
dataset_dir: {data}
template: default
cutoff_len: 64
overwrite_cache: true
preprocessing_num_workers: 1

### output
output_dir: {output}
logging_steps: 1
save_steps: 2
overwrite_output_dir: true
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 4
learning_rate: 1.0e-4
max_steps: 2
use_cpu: true
"""


def _tiny_model(path: Path) -> None:
    """A random-weight Llama and a BPE tokenizer trained here: nothing is downloaded."""
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuner.data.testing import tiny_tokenizer

    text = [f"{r['instruction']} {r['output']}" for r in ALPACA] * 4 + ["Human: Assistant: ### Instruction Response"]
    tiny_tokenizer(path, corpus=text, bos_token="<s>", eos_token="</s>", pad_token="<|endoftext|>")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"),
                         pad_token_id=tok.token_to_id("<|endoftext|>"), tie_word_embeddings=False)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)


def _cfgtune(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "CFGTUNE_HOME": str(cwd / "home")}
    return subprocess.run([sys.executable, "-m", "tuner.cli.tune", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)  # fmt: skip


@pytest.mark.slow
def test_auto_then_launch_trains_a_checkpoint_with_llamafactory(tmp_path: Path) -> None:
    _llamafactory_cli()
    model, data, output = tmp_path / "tiny-llama", tmp_path / "data", tmp_path / "saves" / "tiny-lora"
    _tiny_model(model)
    write_dataset_dir(data, {"alpaca_tiny": {"file_name": "alpaca_tiny.json"}}, {"alpaca_tiny.json": ALPACA})
    (tmp_path / "base.yaml").write_text(BASE.format(model=model, data=data, output=output))

    auto = _cfgtune(["auto", "--model", str(model), "--config", "base.yaml", "--dataset-dir", str(data),
                     "--device", "cpu", "--memory-budget", "3GiB", "--global-batch", "4", "--ranks", "8,16",
                     "--n-trials", "2", "--trial-timeout", "180", "--output-dir", "tuned"], tmp_path, 600)  # fmt: skip
    assert auto.returncode == 0, auto.stdout + auto.stderr
    tuned = tmp_path / "tuned" / "tuned.yaml"
    assert tuned.is_file()
    assert "tuned by cfgtune auto" in tuned.read_text()

    launch = _cfgtune(["launch", str(tuned)], tmp_path, 600)
    assert launch.returncode == 0, launch.stdout[-4000:] + launch.stderr[-4000:]
    checkpoints = sorted(output.glob("checkpoint-*"))
    assert checkpoints, f"no checkpoint in {output}: {sorted(p.name for p in output.iterdir()) if output.exists() else 'missing'}"
    assert (checkpoints[-1] / "adapter_model.safetensors").is_file()
    assert (output / "adapter_config.json").is_file()
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 2

    # The launch watched the run: its peak against the estimate and the chosen trial, kept for calibration.
    assert "exit code 0" in launch.stderr and "measured: peak RSS of the largest process" in launch.stderr
    assert "trial #" in launch.stderr and "the estimate said" in launch.stderr
    record = json.loads((output / "cfgtune-launch.json").read_text())
    assert record["exit_code"] == 0 and not record["oom"]
    assert record["trial_peak_bytes"] and record["estimate_bytes"]
    assert 100 * 1024**2 < record["measured"]["peak_bytes"] < 3 * 1024**3  # a tiny model's trainer process
    history = (tmp_path / "home" / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["config_sha256"] == record["config_sha256"]
