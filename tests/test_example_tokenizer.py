"""The `cfgtune data` example in README.md works on the bundled data with the bundled tokenizer, offline."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytest.importorskip("tokenizers")


def readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with ``prefix``, without its trailing comment."""
    lines = [line for line in README.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"README.md should show exactly one `{prefix}...` line"
    return shlex.split(lines[0].split("#", 1)[0])


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty home and HF cache: the example must not lean on a downloaded tokenizer or a statistics cache."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "120")


def run(argv: list[str], entry: str) -> subprocess.CompletedProcess[str]:
    """The command as the README gives it (from the repository root), its console script run by this Python."""
    code = f"import sys; from {entry} import main; sys.argv = {argv!r}; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)


def test_readme_cfgtune_data_command_works_on_the_bundled_data() -> None:
    argv = readme_command("cfgtune data examples/")
    assert "--tokenizer" in argv and Path(ROOT / argv[argv.index("--tokenizer") + 1]).is_dir()
    out = run([*argv, "--json", "--no-cache"], "tuner.cli.tune")
    assert out.returncode == 0, out.stdout + out.stderr
    stats = json.loads(out.stdout)
    (dataset,) = stats["datasets"]
    assert dataset["name"] == "alpaca_demo" and dataset["status"] == "ok" and dataset["samples"] == 200
    lengths = dataset["lengths"]
    rows = json.loads((ROOT / "examples" / "data" / "alpaca_demo.json").read_text())
    words = sorted(len(r["output"].split()) for r in rows)
    # The tokenizer learned the demo's words: a response costs about one token a word, plus the end of turn.
    assert words[100] + 1 <= lengths["response"]["p50"] <= 1.5 * words[100] + 5, (words[100], lengths["response"])
    assert words[-1] + 1 <= lengths["response"]["max"] <= 1.5 * words[-1] + 5, (words[-1], lengths["response"])
    # A prompt is a short instruction inside the qwen template's system prompt and ChatML markup.
    assert 20 <= lengths["prompt"]["p50"] <= 200, lengths["prompt"]
    assert lengths["total"]["max"] < stats["cutoff_len"] == 2048


def test_readme_cfgtune_data_human_output() -> None:
    out = run(readme_command("cfgtune data examples/"), "tuner.cli.tune")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "alpaca_demo" in out.stdout and "(from --tokenizer)" in out.stdout
    assert "0 samples truncated" in out.stdout


def test_readme_dataset_rules_run_with_the_bundled_tokenizer() -> None:
    argv = readme_command("cfglint check examples/qwen2.5-7b-lora-sft.yaml --tokenizer")
    out = run([*argv, "--select", "DATA"], "tuner.cli.entry")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "DATA004" in out.stdout and "99th percentile" in out.stdout
    without = run([a for a in argv if a not in ("--tokenizer", "examples/tokenizer")] + ["--select", "DATA",
                   "--show-skipped"], "tuner.cli.entry")  # fmt: skip
    assert "DATA004" in without.stdout and "pass --tokenizer PATH" in without.stdout


def test_bundled_tokenizer_is_small_and_has_the_chatml_tokens() -> None:
    from tokenizers import Tokenizer

    d = ROOT / "examples" / "tokenizer"
    assert (d / "tokenizer.json").stat().st_size < 200_000
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert tok.token_to_id(special) is not None, special
    config = json.loads((d / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and "<|im_start|>" in config["chat_template"]


def test_bundled_tokenizer_is_rebuilt_identically(tmp_path: Path) -> None:
    """scripts/build_example_tokenizer.py reproduces the shipped files from the bundled data."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_example_tokenizer.py"), "--out",
                          str(tmp_path)], capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / "tokenizer" / name).read_bytes(), name
