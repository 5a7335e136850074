"""The model catalog, config.json/HF-cache resolution, and parameter/LoRA counts against published figures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tuner.models import catalog
from tuner.models.arch import Architecture
from tuner.models.params import (
    count_params,
    find_all_linear_modules,
    layer_linears,
    linear_modules,
    lora_counts,
)
from tuner.models.resolve import (
    ModelConfigError,
    ModelError,
    architecture_from_config,
    find_in_hf_cache,
    hf_hub_cache,
    resolve_model,
    resolve_model_for_lint,
)

REPO = Path(__file__).resolve().parents[1]


def arch_of(alias: str) -> Architecture:
    return resolve_model(alias).arch


# -- parameter counts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, total",
    [
        ("qwen2.5-32b", 32_763_876_352),
        ("deepseek-32b", 32_763_876_352),
        ("qwen2.5-7b", 7_615_616_512),
        ("qwen2.5-7b-instruct", 7_615_616_512),
        ("llama3.1-8b", 8_030_261_248),
        ("qwen2.5-0.5b", 494_032_768),
        ("qwen2.5-1.5b", 1_543_714_304),
        ("deepseek-r1-1.5b", 1_777_088_000),  # same shapes as Qwen2.5-1.5B, but lm_head untied
        ("llama-3.2-1b", 1_235_814_400),
        ("mistral-7b", 7_248_023_552),
        ("qwen3-8b", 8_190_735_360),
        ("qwen3-30b-a3b", 30_532_122_624),
        ("gemma-2-2b", 2_614_341_888),  # head_dim 256 != 2304/8, four norms per layer
        ("gemma-3-1b", 999_885_952),  # plus q/k norms
        ("gemma-3-4b-it", 4_300_079_472),  # text + SigLIP tower + projector
        ("qwen2-vl-7b-instruct", 8_291_375_616),  # text + ViT + merger
    ],
)
def test_total_params_match_published_figures(alias: str, total: int) -> None:
    assert count_params(arch_of(alias)).total == total


@pytest.mark.parametrize("entry", catalog.CATALOG, ids=lambda e: e.key)
def test_every_catalog_entry_reproduces_its_published_total(entry: catalog.CatalogEntry) -> None:
    assert entry.published_params is not None
    for variant in entry.variants:
        assert count_params(entry.arch_for(variant)).total == entry.published_params, variant.hub_id


def test_tied_and_untied_embeddings_differ_by_one_matrix() -> None:
    tied, untied = count_params(arch_of("qwen2.5-1.5b")), count_params(arch_of("deepseek-r1-1.5b"))
    assert tied.lm_head == 0
    assert untied.lm_head == untied.embeddings == 151936 * 1536
    assert untied.total - tied.total == untied.embeddings


def test_moe_active_params_and_breakdown() -> None:
    c = count_params(arch_of("qwen3-30b-a3b"))
    assert c.active == 3_353_032_704  # "3.3B activated"
    assert c.experts == 48 * 128 * 3 * 2048 * 768
    assert c.router == 48 * 2048 * 128
    assert c.mlp == 0
    big = count_params(arch_of("qwen3-235b-a22b"))
    assert big.total == 235_093_634_560 and big.active == 22_190_763_520


def test_breakdown_parts_sum_to_total_and_biases_are_counted() -> None:
    c = count_params(arch_of("qwen2.5-7b"))
    parts = c.embeddings + c.lm_head + c.attention + c.attention_bias + c.mlp + c.norms
    assert parts == c.total
    assert c.attention_bias == 28 * (3584 + 512 + 512)  # q/k/v biases, none on o_proj
    assert c.norms == 28 * 2 * 3584 + 3584
    assert count_params(arch_of("llama3.1-8b")).attention_bias == 0


def test_linear_module_shapes_follow_head_dim_and_gqa() -> None:
    shapes = {lin.path: (lin.in_features, lin.out_features) for lin in layer_linears(arch_of("gemma-2-2b"))}
    assert shapes["self_attn.q_proj"] == (2304, 2048)  # 8 heads x 256
    assert shapes["self_attn.k_proj"] == (2304, 1024)  # 4 kv heads x 256
    assert shapes["self_attn.o_proj"] == (2048, 2304)
    assert shapes["mlp.down_proj"] == (9216, 2304)
    moe = {lin.path: lin for lin in layer_linears(arch_of("qwen3-30b-a3b"))}
    assert moe["mlp.gate"].out_features == 128
    assert moe["mlp.experts.0.up_proj"].count == 128 and moe["mlp.experts.0.up_proj"].out_features == 768
    every = {lin.path: lin.count for lin in linear_modules(arch_of("qwen2.5-7b"))}
    assert every["layers.self_attn.q_proj"] == 28 and every["lm_head"] == 1


# -- LoRA ------------------------------------------------------------------------------------------------------


def test_lora_rank16_all_on_r1_distill_32b_matches_llamafactory_log() -> None:
    counts = lora_counts(arch_of("deepseek-r1-32b"), 16, "all")
    assert counts.trainable == 134_217_728
    assert set(counts.targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert counts.module_count == 64 * 7


def test_lora_comma_list_dora_and_unknown_targets() -> None:
    arch = arch_of("qwen2.5-32b")
    assert lora_counts(arch, 16, "q_proj,v_proj").trainable == 64 * 16 * ((5120 + 5120) + (5120 + 1024))
    assert lora_counts(arch, 16, ["q_proj", " v_proj "]).trainable == 16_777_216
    dora = lora_counts(arch, 16, "all", dora=True)
    # one magnitude per output feature of each adapted module
    assert dora.trainable - 134_217_728 == 64 * (5120 + 1024 + 1024 + 5120 + 27648 + 27648 + 5120)
    bad = lora_counts(arch, 8, "q_proj,qkv_proj")
    assert bad.unmatched == ("qkv_proj",)
    head = lora_counts(arch, 8, "lm_head")
    assert head.trainable == 8 * (5120 + 152064)
    with pytest.raises(ValueError):
        lora_counts(arch, 0, "all")


def test_lora_all_on_moe_includes_router_and_experts_unless_fused() -> None:
    arch = arch_of("qwen3-30b-a3b")
    assert "gate" in find_all_linear_modules(arch)  # the router is an nn.Linear in transformers 4
    r = 8
    attn = r * ((2048 + 4096) + 2 * (2048 + 512) + (4096 + 2048))
    router = r * (2048 + 128)
    experts = 128 * r * 3 * (2048 + 768)
    assert lora_counts(arch, r, "all").trainable == 48 * (attn + router + experts)
    # transformers 5 fuses experts into 3-D parameters: `all` then only finds attention projections
    assert lora_counts(arch, r, "all", experts_are_linear=False).trainable == 48 * attn
    # ...and PEFT remaps explicit expert names to the fused parameters, gate+up with twice the rank
    v5 = lora_counts(arch, r, "q_proj,gate_proj,up_proj,down_proj", experts_are_linear=False)
    fused = 128 * 2 * r * (2048 + 2 * 768) + 128 * r * (768 + 2048)
    assert v5.trainable == 48 * (r * (2048 + 4096) + fused)
    half = lora_counts(arch, r, "gate_proj", experts_are_linear=False)
    assert half.problems and "up_proj" in half.problems[0]


def test_lora_all_on_vlm_skips_frozen_vision_tower() -> None:
    arch = arch_of("qwen2-vl-7b-instruct")
    frozen = lora_counts(arch, 8, "all")
    assert frozen.trainable == 20_185_088  # LLaMA-Factory's Qwen2-VL-7B rank-8 log line
    trained = lora_counts(arch, 8, "all", freeze_vision_tower=False)
    vit = 32 * 8 * ((1280 + 3840) + (1280 + 1280) + (1280 + 5120) + (5120 + 1280))
    assert trained.trainable == frozen.trainable + vit  # blocks only; the merger is a projector
    gemma = arch_of("gemma-3-4b-it")  # SigLIP names its projections q/k/v_proj too: still excluded when frozen
    assert lora_counts(gemma, 8, "q_proj").module_count == 34


# -- catalog and aliases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, hub_id, template",
    [
        ("deepseek-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseekr1"),
        ("deepseek-r1-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseekr1"),
        ("r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseekr1"),
        ("qwen2.5-7b", "Qwen/Qwen2.5-7B", None),
        ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen"),
        ("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen"),
        ("llama3-8b", "meta-llama/Meta-Llama-3-8B", None),
        ("llama3.1-8b", "meta-llama/Llama-3.1-8B", None),
        ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "llama3"),
        ("qwen3-8b", "Qwen/Qwen3-8B", "qwen3"),
        ("qwen3-30b-a3b-instruct-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507", "qwen3_nothink"),
        ("gemma2-9b-it", "google/gemma-2-9b-it", "gemma2"),
        ("qwen/qwen2.5-32b-instruct", "Qwen/Qwen2.5-32B-Instruct", "qwen"),
    ],
)
def test_aliases_resolve_to_checkpoints_with_templates(alias: str, hub_id: str, template: str | None) -> None:
    info = resolve_model(alias, env={"HF_HUB_CACHE": "/nonexistent"})
    assert (info.source, info.hub_id, info.template) == ("catalog", hub_id, template)


def test_variant_overrides_and_hints() -> None:
    base, chat = resolve_model("qwen2.5-7b"), resolve_model("qwen2.5-7b-instruct")
    assert base.arch.max_position_embeddings == 131072 and chat.arch.max_position_embeddings == 32768
    assert base.is_instruct is False and chat.is_instruct is True and base.family_template == "qwen"
    assert resolve_model("llama3-8b").arch.max_position_embeddings == 8192
    r1 = resolve_model("deepseek-7b")
    assert r1.is_reasoning is True and r1.published_params == 7_615_616_512


def test_unknown_alias_suggests_and_lists_on_one_line() -> None:
    with pytest.raises(LookupError) as err:
        resolve_model("qwen2.5-8b", env={"HF_HUB_CACHE": "/nonexistent"})
    msg = err.value.args[0]
    assert "\n" not in msg
    assert "did you mean `qwen2.5-7b`" in msg
    assert "known aliases:" in msg and "deepseek-r1-distill-qwen-32b" in msg and "gemma-3-27b" in msg


def test_catalog_templates_agree_with_llamafactory() -> None:
    """Each catalog variant's template is the one LLaMA-Factory registers for its hub id (the generated table,
    ``scripts/gen_templates.py``, from ``extras/constants.py`` ``register_model_group``), or None for a base
    checkpoint of a text-only group, which gets no default template (multimodal groups give it to every member)."""
    from tuner.config._templates_data import HUB_TEMPLATES

    checked = 0
    for entry in catalog.CATALOG:
        for variant in entry.variants:
            ref = HUB_TEMPLATES.get(variant.hub_id)
            if ref is None:
                continue
            template, chat, multimodal = ref
            assert variant.template == (template if chat or multimodal else None), variant.hub_id
            checked += 1
    assert checked > 60


# -- config.json -----------------------------------------------------------------------------------------------

QWEN25_7B_INSTRUCT = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
}

GEMMA3_4B_IT = {  # text_config leaves most keys to Gemma3TextConfig's defaults, as the real file does
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
    "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                    "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                      "patch_size": 14, "vision_use_head": False},
}

QWEN2_VL_7B = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "hidden_size": 3584, "intermediate_size": 18944,
    "max_position_embeddings": 32768, "model_type": "qwen2_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 152064,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
}

QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "decoder_sparse_step": 1, "head_dim": 128,
    "hidden_size": 2048, "intermediate_size": 6144, "max_position_embeddings": 40960, "mlp_only_layers": [],
    "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": True, "num_attention_heads": 32,
    "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 151936,
}

LLAMA_32_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "head_dim": 64, "hidden_size": 2048,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "tie_word_embeddings": True,
    "dtype": "bfloat16", "vocab_size": 128256,
}


def write_model(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    "config, total",
    [(QWEN25_7B_INSTRUCT, 7_615_616_512), (GEMMA3_4B_IT, 4_300_079_472), (QWEN2_VL_7B, 8_291_375_616),
     (QWEN3_30B_A3B, 30_532_122_624), (LLAMA_32_1B, 1_235_814_400)],
    ids=["qwen2", "gemma3", "qwen2_vl", "qwen3_moe", "llama"],
)
def test_config_json_parses_to_the_published_total(config: dict[str, Any], total: int) -> None:
    arch = architecture_from_config(config)
    assert count_params(arch).total == total
    assert arch.torch_dtype == "bfloat16"


def test_config_json_family_traits() -> None:
    gemma = architecture_from_config(GEMMA3_4B_IT)
    assert (gemma.head_size, gemma.qk_norm, gemma.extra_norms_per_layer, gemma.tie_word_embeddings) == (256, True, 2, True)
    assert "num_attention_heads" in gemma.extra["defaulted"]
    qwen = architecture_from_config(QWEN25_7B_INSTRUCT)
    assert qwen.attention_bias and not qwen.o_proj_bias  # Qwen2 hard-codes q/k/v biases
    moe = architecture_from_config({**QWEN3_30B_A3B, "mlp_only_layers": [0, 47]})
    assert moe.dense_layers == (0, 47)
    assert count_params(moe).mlp == 2 * 3 * 2048 * 6144


def test_local_directory_resolves_with_catalog_hints(tmp_path: Path) -> None:
    d = write_model(tmp_path / "models" / "Qwen2.5-7B-Instruct", QWEN25_7B_INSTRUCT)
    info = resolve_model(str(d))
    assert (info.source, info.path, info.template, info.is_instruct) == ("config.json", d, "qwen", True)
    assert info.published_params == 7_615_616_512
    rel = resolve_model("models/Qwen2.5-7B-Instruct", cwd=tmp_path)
    assert rel.path == d
    # a fine-tune with a resized vocabulary is not the published checkpoint
    d2 = write_model(tmp_path / "Qwen2.5-7B-Instruct", {**QWEN25_7B_INSTRUCT, "vocab_size": 152100})
    assert resolve_model(str(d2)).published_params is None


def test_quantization_config_is_kept(tmp_path: Path) -> None:
    quant = {"quant_method": "awq", "bits": 4, "group_size": 128}
    info = resolve_model(str(write_model(tmp_path / "awq", {**QWEN25_7B_INSTRUCT, "quantization_config": quant})))
    assert info.arch.quantization_config == quant


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"model_type": "mystery", "hidden_size": 64}), "`num_hidden_layers` is missing"),
        (json.dumps({**LLAMA_32_1B, "num_hidden_layers": "16"}), "`num_hidden_layers` must be a non-negative integer"),
        (json.dumps({"hidden_size": 8}), "no `model_type`"),
    ],
)
def test_bad_config_json_is_a_message(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ModelConfigError) as err:
        resolve_model(str(tmp_path))
    assert fragment in err.value.args[0] and str(tmp_path) in err.value.args[0]


def test_adapter_and_empty_directories_explain_themselves(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="adapter_name_or_path"):
        resolve_model(str(tmp_path / "adapter"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(LookupError, match="not found"):
        resolve_model("./no/such/dir", cwd=tmp_path)


# -- the Hugging Face cache ------------------------------------------------------------------------------------


def fake_cache(root: Path, hub_id: str, snapshots: dict[str, dict[str, Any]], main: str | None) -> Path:
    repo = root / ("models--" + hub_id.replace("/", "--"))
    for commit, config in snapshots.items():
        write_model(repo / "snapshots" / commit, config)
    if main is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(main + "\n")
    return repo


def test_hf_cache_snapshot_of_refs_main_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    old = {**LLAMA_32_1B, "num_hidden_layers": 2}
    fake_cache(cache, "meta-llama/Llama-3.2-1B-Instruct", {"aaa111": old, "bbb222": LLAMA_32_1B}, main="bbb222")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    info = resolve_model("meta-llama/Llama-3.2-1B-Instruct")
    assert info.source == "hf-cache" and info.path == cache / "models--meta-llama--Llama-3.2-1B-Instruct" / "snapshots" / "bbb222"
    assert info.total_params == 1_235_814_400 and info.template == "llama3"
    # the Hub ignores case in ids; so does the lookup
    assert resolve_model("META-LLAMA/llama-3.2-1b-instruct").source == "hf-cache"


def test_hf_cache_location_follows_the_environment(tmp_path: Path) -> None:
    assert hf_hub_cache({"HF_HUB_CACHE": str(tmp_path / "a"), "HF_HOME": str(tmp_path / "b")}) == tmp_path / "a"
    assert hf_hub_cache({"HF_HOME": str(tmp_path / "b")}) == tmp_path / "b" / "hub"
    assert hf_hub_cache({}).parts[-3:] == (".cache", "huggingface", "hub")
    fake_cache(tmp_path / "b" / "hub", "acme/tiny", {"c0ffee": QWEN25_7B_INSTRUCT}, main=None)
    assert find_in_hf_cache("acme/tiny", {"HF_HOME": str(tmp_path / "b")}) is not None
    info = resolve_model("acme/tiny", env={"HF_HOME": str(tmp_path / "b")})
    assert info.source == "hf-cache" and info.name == "acme/tiny" and info.template is None


def test_uncached_catalog_hub_id_falls_back_to_the_catalog(tmp_path: Path) -> None:
    info = resolve_model("Qwen/Qwen2.5-7B-Instruct", env={"HF_HUB_CACHE": str(tmp_path)})
    assert info.source == "catalog" and info.total_params == 7_615_616_512


# -- the lint path ---------------------------------------------------------------------------------------------


def test_lint_resolution_of_unknown_hub_id_is_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the lint path opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    with pytest.raises(LookupError) as err:
        resolve_model_for_lint("acme/not-a-model-7b", tmp_path, tmp_path, env=env)
    reason = err.value.args[0]
    assert reason.startswith("model unknown:") and "Hugging Face cache" in reason and "\n" not in reason
    with pytest.raises(LookupError, match=r"did you mean `qwen2\.5-7b`"):
        resolve_model_for_lint("qwen2.5-8b", tmp_path, tmp_path, env=env)


def test_lint_resolution_finds_relative_dirs_and_turns_errors_into_reasons(tmp_path: Path) -> None:
    write_model(tmp_path / "cfgs" / "model", QWEN25_7B_INSTRUCT)
    info = resolve_model_for_lint("model", base_dir=tmp_path / "cfgs", cwd=tmp_path)
    assert info.source == "config.json"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("[]")
    with pytest.raises(LookupError, match="expected a JSON object"):
        resolve_model_for_lint("broken", tmp_path, tmp_path)


def test_context_model_uses_the_resolver(tmp_path: Path) -> None:
    from tuner.config.loader import parse_config
    from tuner.config.context import Context, LintOptions

    doc = parse_config("model_name_or_path: deepseek-32b\n", tmp_path / "train.yaml")
    ctx = Context(doc, LintOptions(cwd=tmp_path))
    assert ctx.model.total_params == 32_763_876_352
    doc = parse_config("model_name_or_path: ./missing-model\n", tmp_path / "train.yaml")
    ctx = Context(doc, LintOptions(cwd=tmp_path))
    assert ctx.model is None and "not found" in (ctx._skip.get("model") or "")


def test_lint_path_imports_stay_light() -> None:
    code = (
        "import sys; from tuner.models.resolve import resolve_model_for_lint; "
        "resolve_model_for_lint('qwen2.5-7b', None, None); "
        "print(sorted(m for m in ('pydantic', 'yaml', 'transformers', 'huggingface_hub', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# -- optional: agreement with transformers itself --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore")  # transformers' own notices on meta-device construction
@pytest.mark.parametrize("config", [QWEN25_7B_INSTRUCT, QWEN3_30B_A3B, LLAMA_32_1B], ids=["qwen2", "qwen3_moe", "llama"])
def test_counts_agree_with_transformers_on_meta_device(config: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert model.num_parameters() == count_params(architecture_from_config(config)).total


TINY_QWEN3_MOE = {**QWEN3_30B_A3B, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "head_dim": 16, "moe_intermediate_size": 32, "num_experts": 8,
                  "num_experts_per_tok": 2, "intermediate_size": 96, "vocab_size": 256, "mlp_only_layers": [1]}
TINY_GEMMA3 = {**GEMMA3_4B_IT,
               "text_config": {"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                               "head_dim": 32, "vocab_size": 300},
               "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 48,
                                 "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
                                 "vision_use_head": False},
               "mm_tokens_per_image": 4}


def _llamafactory_targets(model: Any, target: str, composite: tuple[list[str], list[str]] | None, freeze: bool) -> list[str]:
    """LLaMA-Factory's find_all_linear_modules + patch_target_modules, run on a real module tree."""
    names = [t.strip() for t in target.split(",")]
    if names == ["all"]:
        forbidden = {"lm_head", *(composite[0] if composite else [])}
        if composite and freeze:
            forbidden.update(composite[1])
        names = sorted({n.split(".")[-1] for n, m in model.named_modules()
                        if not any(f in n for f in forbidden)
                        and "Linear" in type(m).__name__ and "Embedding" not in type(m).__name__})
    if composite:
        forbidden = {*composite[0], *(composite[1] if freeze else [])}
        names = [n for n, _ in model.named_modules() if any(t in n for t in names) and not any(f in n for f in forbidden)]
    return names


@pytest.mark.filterwarnings("ignore")  # PEFT's notices about its v4 -> v5 MoE target conversion
@pytest.mark.parametrize(
    "config, target, freeze",
    [(TINY_QWEN3_MOE, "all", True), (TINY_QWEN3_MOE, "q_proj,down_proj", True), (TINY_GEMMA3, "all", True),
     (TINY_GEMMA3, "all", False)],
    ids=["moe-all", "moe-list", "vlm-frozen", "vlm-trained"],
)
def test_lora_counts_agree_with_peft(config: dict[str, Any], target: str, freeze: bool) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    auto = transformers.AutoModelForImageTextToText if "vision_config" in config else transformers.AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(cfg)
        base_total = model.num_parameters()
        composite = (["multi_modal_projector"], ["vision_tower"]) if "vision_config" in config else None
        targets = _llamafactory_targets(model, target, composite, freeze)
        peft_model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    arch = architecture_from_config(config)
    assert count_params(arch).total == base_total
    experts_are_linear = int(transformers.__version__.split(".")[0]) < 5
    ours = lora_counts(arch, 4, target, freeze_vision_tower=freeze, experts_are_linear=experts_are_linear)
    assert ours.trainable == trainable
