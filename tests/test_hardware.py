"""Hardware profiles, GPU matching, NVML detection and `cfgtune hw`, with NVML faked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tuner.cli.tune import cli
from tuner.hardware import detect as detect_mod
from tuner.hardware.detect import detect_gpus
from tuner.hardware.profiles import (
    HardwareProfile,
    ProfileError,
    build_registry,
    get_profile,
    list_profiles,
    load_profile_text,
    match_gpu,
)

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = ROOT / "hw_profiles"
MIB = 1024**2
GIB = 1024**3

# The models the project promises to cover, by canonical id.
REQUIRED = [
    "v100-sxm2-16g", "v100-sxm2-32g", "v100-pcie-16g", "v100-pcie-32g", "t4-16g", "a10-24g",
    "a100-sxm4-40g", "a100-sxm4-80g", "a100-pcie-40g", "a100-pcie-80g", "a800-sxm4-80g", "h100-pcie-80g",
    "h100-sxm-80g", "h800-sxm-80g", "h20-96g", "h200-sxm-141g", "l4-24g", "l40s-48g", "rtx-3090-24g",
    "rtx-4090-24g", "rtx-4090-48g", "rtx-5090-32g", "rtx-a6000-48g", "mi250x-gcd-64g", "mi300x-192g",
    "k100-ai-64g",
]  # fmt: skip


# -- the shipped profiles ---------------------------------------------------------------------------------------


def test_every_yaml_loads_validates_and_is_listed() -> None:
    files = sorted(PROFILE_DIR.glob("*.yaml"))
    assert len(files) >= len(REQUIRED)
    for f in files:
        p = load_profile_text(f.read_text(), f)
        assert p.name == f.stem
    assert [p.name for p in list_profiles()] == [f.stem for f in files]


def test_required_models_are_covered() -> None:
    names = {p.name for p in list_profiles()}
    assert [r for r in REQUIRED if r not in names] == []


def test_every_profile_documents_where_its_memory_figure_comes_from() -> None:
    for f in PROFILE_DIR.glob("*.yaml"):
        comments = "\n".join(line for line in f.read_text().splitlines() if line.startswith("#"))
        assert "memory_gib:" in comments, f"{f.name} does not say where memory_gib comes from"


@pytest.mark.parametrize(
    ("name", "cc", "bf16"),
    [
        ("v100-sxm2-16g", (7, 0), False), ("v100-sxm2-32g", (7, 0), False), ("v100-pcie-16g", (7, 0), False),
        ("v100-pcie-32g", (7, 0), False), ("t4-16g", (7, 5), False), ("a10-24g", (8, 6), True),
        ("a100-sxm4-40g", (8, 0), True), ("a100-pcie-80g", (8, 0), True), ("a800-sxm4-80g", (8, 0), True),
        ("rtx-3090-24g", (8, 6), True), ("rtx-a6000-48g", (8, 6), True), ("l4-24g", (8, 9), True),
        ("l40s-48g", (8, 9), True), ("rtx-4090-24g", (8, 9), True), ("rtx-4090-48g", (8, 9), True),
        ("h100-sxm-80g", (9, 0), True), ("h100-pcie-80g", (9, 0), True), ("h800-sxm-80g", (9, 0), True),
        ("h20-96g", (9, 0), True), ("h200-sxm-141g", (9, 0), True), ("rtx-5090-32g", (12, 0), True),
        ("mi250x-gcd-64g", None, True), ("mi300x-192g", None, True), ("k100-ai-64g", None, True),
    ],
)  # fmt: skip
def test_compute_capability_and_bf16(name: str, cc: tuple[int, int] | None, bf16: bool) -> None:
    p = get_profile(name)
    assert p.compute_capability == cc
    assert p.bf16 is bf16
    assert (p.tflops_bf16 is None) is (not bf16)


def test_facts_rules_depend_on() -> None:
    # Pre-Ampere NVIDIA: no bf16, no FlashAttention-2; Ampere and newer: both.
    for p in list_profiles():
        if p.vendor == "nvidia":
            assert p.compute_capability is not None
            assert p.bf16 is (p.compute_capability >= (8, 0)), p.name
            assert p.flash_attn2 is (p.compute_capability >= (8, 0)), p.name
            assert p.fp8 is (p.compute_capability >= (8, 9)), p.name
        assert 10 < p.memory_gib < 200 and p.tflops_fp16 > 0 and p.memory_bandwidth_gbs > 0
    h100, h800, h20 = get_profile("h100"), get_profile("h800"), get_profile("h20")
    assert h800.tflops_bf16 == h100.tflops_bf16 and h800.interconnect_gbs < h100.interconnect_gbs
    assert h20.tflops_bf16 == pytest.approx(148) and 94 < h20.memory_gib < 96
    assert get_profile("a800").interconnect_gbs < get_profile("a100").interconnect_gbs
    assert get_profile("h100").memory_bytes == int(79.6 * GIB)
    assert get_profile("mi300x").fp8 and not get_profile("mi250x").fp8


# -- lookup -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("h100-sxm-80g", "h100-sxm-80g"), ("H100-80G", "h100-sxm-80g"), ("h100_sxm", "h100-sxm-80g"),
        ("H100", "h100-sxm-80g"), ("a100 80GB", "a100-sxm4-80g"), ("A100-40G", "a100-sxm4-40g"),
        ("v100", "v100-sxm2-32g"), ("RTX4090", "rtx-4090-24g"), ("4090-48G", "rtx-4090-48g"),
        ("K100_AI", "k100-ai-64g"), ("MI300X", "mi300x-192g"), ("NVIDIA H100 80GB HBM3", "h100-sxm-80g"),
        ("Tesla V100-SXM2-16GB", "v100-sxm2-16g"),
    ],
)  # fmt: skip
def test_get_profile_accepts_ids_aliases_and_device_names(spelling: str, expected: str) -> None:
    assert get_profile(spelling).name == expected


def test_every_alias_resolves_to_its_own_profile() -> None:
    for p in list_profiles():
        for spelling in (p.name, *p.aliases, p.name.upper().replace("-", "_")):
            assert get_profile(spelling) is p


def test_typo_gets_did_you_mean_and_the_known_ids() -> None:
    with pytest.raises(LookupError) as info:
        get_profile("h10o")
    message = info.value.args[0]
    assert "\n" not in message
    assert "did you mean `h100`" in message
    assert "h200-sxm-141g" in message and "t4-16g" in message


def test_unknown_name_without_a_close_match_still_lists_known_ids() -> None:
    with pytest.raises(LookupError, match=r"unknown hardware profile 'tpu-v5e'.*Known profiles: a10-24g"):
        get_profile("tpu-v5e")


def test_ambiguous_device_name_names_the_choices() -> None:
    with pytest.raises(LookupError, match=r"ambiguous: use `rtx-4090-24g` or `rtx-4090-48g`"):
        get_profile("NVIDIA GeForce RTX 4090")


# -- NVML name matching -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nvml_name", "total_mib", "expected"),
    [
        ("Tesla V100-SXM2-32GB", 32768, "v100-sxm2-32g"),
        ("Tesla V100-SXM2-32GB", 32510, "v100-sxm2-32g"),  # older drivers report less
        ("Tesla V100-SXM2-16GB", 16160, "v100-sxm2-16g"),
        ("Tesla V100-PCIE-16GB", 16384, "v100-pcie-16g"),
        ("Tesla V100-PCIE-32GB", 32768, "v100-pcie-32g"),
        ("Tesla T4", 15360, "t4-16g"),
        ("Tesla T4", 15109, "t4-16g"),
        ("NVIDIA A10", 23028, "a10-24g"),
        ("NVIDIA A100-SXM4-40GB", 40960, "a100-sxm4-40g"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-sxm4-80g"),
        ("A100-SXM-80GB", 81920, "a100-sxm4-80g"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-pcie-40g"),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-pcie-80g"),
        ("NVIDIA A800-SXM4-80GB", 81920, "a800-sxm4-80g"),
        ("NVIDIA H100 80GB HBM3", 81559, "h100-sxm-80g"),
        ("NVIDIA H100 PCIe", 81559, "h100-pcie-80g"),
        ("NVIDIA H100 PCIe", 94514, "h100-nvl-94g"),  # an H100 NVL under an early driver's name
        ("NVIDIA H100 NVL", 95830, "h100-nvl-94g"),
        ("NVIDIA H800", 81559, "h800-sxm-80g"),
        ("NVIDIA H20", 97871, "h20-96g"),
        ("NVIDIA H200", 143771, "h200-sxm-141g"),
        ("NVIDIA L4", 23034, "l4-24g"),
        ("NVIDIA L40S", 46068, "l40s-48g"),
        ("NVIDIA L40", 46068, "l40-48g"),
        ("NVIDIA GeForce RTX 3090", 24576, "rtx-3090-24g"),
        ("NVIDIA GeForce RTX 4090", 24564, "rtx-4090-24g"),
        ("NVIDIA GeForce RTX 4090", 49140, "rtx-4090-48g"),
        ("NVIDIA GeForce RTX 5090", 32607, "rtx-5090-32g"),
        ("NVIDIA RTX A6000", 49140, "rtx-a6000-48g"),
        ("AMD Instinct MI300X", 205822885888 // MIB, "mi300x-192g"),
        ("AMD Instinct MI250X", 65520, "mi250x-gcd-64g"),
        ("K100_AI", 65520, "k100-ai-64g"),
    ],
)
def test_match_gpu_real_nvml_names(nvml_name: str, total_mib: int, expected: str) -> None:
    p = match_gpu(nvml_name, total_mib * MIB)
    assert p is not None and p.name == expected


@pytest.mark.parametrize(
    "nvml_name",
    [
        "NVIDIA A10G",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA H20-3e",
        "NVIDIA GH200 480GB",
        "NVIDIA H200 NVL 2",
        "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
        "Quadro RTX 8000",
    ],
)
def test_match_gpu_does_not_guess_other_models(nvml_name: str) -> None:
    assert match_gpu(nvml_name, 80 * GIB) is None


def test_match_gpu_rejects_a_memory_size_the_model_does_not_have() -> None:
    assert match_gpu("NVIDIA H100 80GB HBM3", 40 * GIB) is None
    assert match_gpu("NVIDIA GeForce RTX 4090", 32 * GIB) is None  # neither 24 nor 48 GB


def test_match_gpu_without_memory_takes_the_smaller_candidate_and_accepts_bytes() -> None:
    assert match_gpu("NVIDIA GeForce RTX 4090").name == "rtx-4090-24g"  # type: ignore[union-attr]
    assert match_gpu(b"Tesla T4", 15360 * MIB).name == "t4-16g"  # type: ignore[union-attr]
    assert match_gpu("  NVIDIA  H100 80GB HBM3 ", None).name == "h100-sxm-80g"  # type: ignore[union-attr]


# -- validation -------------------------------------------------------------------------------------------------


def _profile_yaml(**changes: Any) -> str:
    data = yaml.safe_load((PROFILE_DIR / "a10-24g.yaml").read_text())
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return yaml.safe_dump(data)


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"compute_capability": "eight"}, "compute_capability", 'like "8.0"'),
        ({"compute_capability": None}, "compute_capability", "needs one"),
        ({"bf16": "yes"}, "bf16", "true or false"),
        ({"bf16": False}, "tflops_bf16", "must be null"),
        ({"tflops_bf16": None}, "tflops_bf16", "throughput is needed"),
        ({"memory_gib": -1}, "memory_gib", "positive number"),
        ({"memory_gib": "24GB"}, "memory_gib", "positive number"),
        ({"vendor": "intel"}, "vendor", "nvidia, amd, hygon"),
        ({"nvml_patterns": ["NVIDIA A10("]}, "nvml_patterns", "not a valid regex"),
        ({"nvml_patterns": []}, "nvml_patterns", "at least one"),
        ({"name": "a10-24gb"}, "name", "does not match the file name"),
        ({"aliases": "a10"}, "aliases", "list of strings"),
    ],
)
def test_invalid_profile_names_file_and_field(changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile_text(_profile_yaml(**changes), "hw_profiles/a10-24g.yaml")
    text = str(info.value)
    assert text.startswith("hw_profiles/a10-24g.yaml: ")
    assert f"field `{field}`" in text and words in text
    assert info.value.field == field


def test_missing_and_unknown_fields_are_reported() -> None:
    with pytest.raises(ProfileError, match=r"a10-24g.yaml: missing field\(s\): memory_gib"):
        load_profile_text(_profile_yaml(memory_gib=_DROP), "hw_profiles/a10-24g.yaml")
    with pytest.raises(ProfileError, match=r"unknown field\(s\): memory_gb"):
        load_profile_text(_profile_yaml(memory_gb=24), "hw_profiles/a10-24g.yaml")


def test_broken_yaml_is_an_input_error_with_a_line() -> None:
    with pytest.raises(Exception) as info:
        load_profile_text("name: a10-24g\nvendor: [nvidia\n", "hw_profiles/a10-24g.yaml")
    assert str(info.value).startswith("hw_profiles/a10-24g.yaml:3: not valid YAML")


def test_two_profiles_claiming_one_alias_is_an_error_naming_both() -> None:
    a10 = get_profile("a10")
    clash = load_profile_text(_profile_yaml(name="a10-clone", aliases=["A10"]), "hw_profiles/a10-clone.yaml")
    with pytest.raises(ProfileError, match=r"a10-clone.yaml: field `aliases`: 'A10' is already .* a10-24g"):
        build_registry([a10, clash])


# -- detection with a fake NVML ---------------------------------------------------------------------------------


class FakeNvmlError(Exception):
    def __init__(self, value: int, text: str = "") -> None:
        super().__init__(text or f"NVML error {value}")
        self.value = value


class FakeNvml:
    """Just the pynvml calls detection makes, answering from a list of (name, total MiB, free MiB, cc)."""

    def __init__(
        self,
        devices: list[tuple[str, int, int, tuple[int, int]]],
        init_error: Exception | None = None,
        broken: frozenset[int] = frozenset(),
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.broken = broken
        self.shut_down = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i in self.broken:
            raise FakeNvmlError(15, "GPU is lost")
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self.devices[h][0].encode()  # old pynvml returned bytes

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        _, total, free, _ = self.devices[h]
        return SimpleNamespace(total=total * MIB, free=free * MIB, used=(total - free) * MIB)

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return self.devices[h][3]


TWO_H100 = [("NVIDIA H100 80GB HBM3", 81559, 80000, (9, 0)), ("NVIDIA H100 80GB HBM3", 81559, 1024, (9, 0))]


def test_detect_lists_gpus_with_profiles_and_versions() -> None:
    fake = FakeNvml(TWO_H100 + [("NVIDIA A10G", 23028, 23000, (8, 6))])
    det = detect_gpus(nvml=fake, env={})
    assert det.found and det.reason is None and fake.shut_down
    assert [g.index for g in det.gpus] == [0, 1, 2]
    g0 = det.gpus[0]
    assert g0.name == "NVIDIA H100 80GB HBM3" and g0.total_bytes == 81559 * MIB and g0.free_bytes == 80000 * MIB
    assert g0.compute_capability == (9, 0) and g0.profile is get_profile("h100")
    assert g0.driver_version == det.driver_version == "550.54.15"
    assert g0.cuda_driver_version == det.cuda_driver_version == "12.4"
    assert det.gpus[2].profile is None  # A10G: no profile, not a wrong one


@pytest.mark.parametrize(
    ("code", "words"),
    [(12, "driver is not installed"), (9, "driver is not loaded"), (4, "no permission"), (999, "NVML could not start")],
)
def test_detect_init_failures_become_reasons(code: int, words: str) -> None:
    fake = FakeNvml([], init_error=FakeNvmlError(code))
    det = detect_gpus(nvml=fake, env={})
    assert not det.found and det.gpus == ()
    assert words in (det.reason or "")


def test_detect_without_pynvml_or_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(detect_mod, "load_nvml", missing)
    assert "nvidia-ml-py" in (detect_gpus(env={}).reason or "")
    det = detect_gpus(nvml=FakeNvml([]), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert det.reason == "the NVIDIA driver is loaded but reports no GPU" and det.visible_devices == "0"


def test_one_unreadable_gpu_does_not_hide_the_others() -> None:
    det = detect_gpus(nvml=FakeNvml(TWO_H100, broken=frozenset({0})), env={})
    assert det.gpus[0].error == "GPU is lost" and det.gpus[0].profile is None
    assert det.gpus[1].profile is get_profile("h100")


# -- `cfgtune hw` -----------------------------------------------------------------------------------------------


def _fake(monkeypatch: pytest.MonkeyPatch, nvml: Any) -> None:
    monkeypatch.setattr(detect_mod, "load_nvml", lambda: nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cli_hw_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, FakeNvml(TWO_H100))
    result = CliRunner().invoke(cli, ["hw"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2 GPUs: 2 x NVIDIA H100 80GB HBM3 (driver 550.54.15, CUDA 12.4)" in out
    rows = [line for line in out.splitlines() if "NVIDIA H100 80GB HBM3" in line and "h100-sxm-80g" in line]
    assert len(rows) == 2
    assert "79.6 GiB" in rows[0] and "78.1 GiB" in rows[0] and "9.0" in rows[0] and "550.54.15" in rows[0]
    assert "1.0 GiB" in rows[1]


def test_cli_hw_json(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, FakeNvml(TWO_H100 + [("NVIDIA GeForce RTX 4090", 49140, 49000, (8, 9))]))
    result = CliRunner().invoke(cli, ["hw", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["count"] == 3 and data["reason"] is None
    assert data["driver_version"] == "550.54.15" and data["cuda_driver_version"] == "12.4"
    assert [g["profile"] for g in data["gpus"]] == ["h100-sxm-80g", "h100-sxm-80g", "rtx-4090-48g"]
    assert data["gpus"][0]["total_bytes"] == 81559 * MIB and data["gpus"][0]["compute_capability"] == "9.0"


def test_cli_hw_unmatched_gpu_gets_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, FakeNvml([("NVIDIA GeForce RTX 4090", 32768, 32000, (8, 9))]))
    result = CliRunner().invoke(cli, ["hw"])
    assert result.exit_code == 0
    assert "its name fits rtx-4090-24g, rtx-4090-48g but its memory (32.0 GiB) does not" in result.stdout
    assert "--hw NAME" in result.stdout


def test_cli_hw_without_gpu_exits_2_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, FakeNvml([], init_error=FakeNvmlError(12, "NVML Shared Library Not Found")))
    result = CliRunner().invoke(cli, ["hw"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "No NVIDIA GPU found: the NVIDIA driver is not installed" in result.stderr
    assert "--hw NAME" in result.stderr and "cfgtune hw --list" in result.stderr
    assert result.stdout == ""


def test_cli_hw_json_without_gpu_still_prints_json_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(detect_mod, "load_nvml", missing)
    result = CliRunner().invoke(cli, ["hw", "--json"])
    assert result.exit_code == 2
    data = json.loads(result.output)  # stdout and stderr together: nothing but the JSON, for `2>&1 | jq`
    assert data["count"] == 0 and "nvidia-ml-py" in data["reason"]


def test_cli_hw_list_table_and_json() -> None:
    result = CliRunner().invoke(cli, ["hw", "--list"])
    assert result.exit_code == 0
    for name in REQUIRED:
        assert name in result.stdout
    t4_row = next(line for line in result.stdout.splitlines() if line.startswith("t4-16g"))
    assert "65 fp16" in t4_row and "7.5" in t4_row

    result = CliRunner().invoke(cli, ["hw", "--list", "--json"])
    assert result.exit_code == 0
    profiles = json.loads(result.stdout)["profiles"]
    assert len(profiles) == len(list_profiles())
    h100 = next(p for p in profiles if p["name"] == "h100-sxm-80g")
    assert h100["compute_capability"] == "9.0" and h100["bf16"] is True and "h100-80g" in h100["aliases"]


def test_cli_hw_show_one_profile_and_a_typo() -> None:
    result = CliRunner().invoke(cli, ["hw", "H100-80G", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["name"] == "h100-sxm-80g"

    result = CliRunner().invoke(cli, ["hw", "v100"])
    assert result.exit_code == 0 and "NVIDIA V100 SXM2 32GB" in result.stdout and "7.0" in result.stdout

    result = CliRunner().invoke(cli, ["hw", "h10o"])
    assert result.exit_code == 2
    assert "did you mean `h100`" in result.stderr and "Traceback" not in result.output


def test_profiles_load_without_heavy_imports() -> None:
    code = (
        "import sys\nfrom tuner.hardware.profiles import get_profile, list_profiles\n"
        "list_profiles(); get_profile('h100-80g')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'pynvml', 'rich', 'torch', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_profile_is_frozen() -> None:
    p: HardwareProfile = get_profile("t4")
    with pytest.raises(AttributeError):
        p.bf16 = True  # type: ignore[misc]
