"""LLaMA-Factory start-up checks for model arguments (MODEL), trainer arguments (TRAIN) and silent rewrites (LF)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuner.lint.rule import Severity
from tuner.lint.testing import fix_text, lint_text


def fired(text: str, code: str, **options: Any) -> list[Any]:
    return [v for v in lint_text(text, select=[code], **options) if v.code == code]


# -- MODEL -------------------------------------------------------------------------------------------------------
def test_model_name_required_but_not_for_other_spellings_or_accelerate_configs() -> None:
    (v,) = fired("stage: sft\ndo_train: true\n", "MODEL001")
    assert v.severity is Severity.ERROR
    assert not fired("model_name_or_path: Qwen/Qwen2.5-7B\n", "MODEL001")
    assert not fired("base_model: Qwen/Qwen2.5-7B\nstage: sft\n", "MODEL001")  # KEY002 renames it
    assert not fired("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nfsdp_config: {}\nuse_cpu: false\n", "MODEL001")


def test_special_tokens_config_file(tmp_path: Path) -> None:
    run = tmp_path / "run.yaml"
    text = "new_special_tokens_config: tokens.yaml\n"
    (v,) = fired(text, "MODEL002", path=run)
    assert "not found" in v.message and str(tmp_path / "tokens.yaml") in v.message
    (tmp_path / "tokens.yaml").write_text("- <a>\n- <b>\n")
    (v,) = fired(text, "MODEL002", path=run)
    assert "not a mapping" in v.message
    (tmp_path / "tokens.yaml").write_text("key: [unclosed\n")
    assert "cannot be read" in fired(text, "MODEL002", path=run)[0].message
    (tmp_path / "tokens.yaml").write_text('"<think>": start of reasoning\n"</think>": end of reasoning\n')
    assert not fired(text, "MODEL002", path=run)
    # Relative paths start from where the run is launched, not from the YAML's directory.
    sub = tmp_path / "configs"
    sub.mkdir()
    assert fired(text, "MODEL002", path=sub / "run.yaml", cwd=sub)
    assert not fired(text, "MODEL002", path=sub / "run.yaml", cwd=tmp_path)


def test_special_tokens_both_and_pixels() -> None:
    assert fired("new_special_tokens_config: t.yaml\nadd_special_tokens: <a>\n", "MODEL003")
    (v,) = fired("video_min_pixels: 100000\n", "MODEL004")
    assert v.key == "video_min_pixels" and "`video_max_pixels: 65536`" in v.message
    assert not fired("image_max_pixels: 1024\n", "MODEL004")  # equal to the minimum is fine


def test_export_quantization_dataset() -> None:
    assert fired("export_quantization_bit: 4\n", "MODEL005", command="export")
    assert not fired("export_quantization_bit: 4\nexport_quantization_dataset: data/c4_demo.jsonl\n", "MODEL005")


def test_kt_cpu_activation_and_checkpointing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fired("kt_cpu_activation: recompute\n", "MODEL006", llamafactory="0.9.6")
    assert not fired("use_kt: true\nkt_cpu_activation: recompute\n", "MODEL006", llamafactory="0.9.6")
    assert not fired("kt_cpu_activation: recompute\n", "MODEL006", llamafactory="0.9.5")  # KEY001: no such key
    text = (
        "use_kt: true\nuse_unsloth_gc: true\ngradient_checkpointing: true\ngradient_checkpointing_kwargs: {}\n"
        "fsdp_config:\n  activation_checkpointing: true\nkt_cpu_activation: recompute\ndisable_gradient_checkpointing: true\n"
    )
    vs = fired(text, "MODEL007")
    assert [v.key for v in vs] == [
        "use_unsloth_gc", "gradient_checkpointing", "gradient_checkpointing_kwargs",
        "fsdp_config.activation_checkpointing", "kt_cpu_activation",
    ]  # fmt: skip
    assert vs[3].line == 6  # the nested key's own line
    assert [v.key for v in fired("use_kt: true\n", "MODEL007", env={"FSDP_ACTIVATION_CHECKPOINTING": "true"})] == [
        "fsdp_config.activation_checkpointing"
    ]
    assert not fired("use_kt: true\nkt_cpu_activation: recompute\n", "MODEL007")


def test_kt_config_contents() -> None:
    vs = fired("use_kt: true\nkt_config:\n  enabled: true\n  kt_train_mode: full\n  kt_model_max_length: 0\n", "MODEL008")
    assert len(vs) == 2
    assert "`kt_train_mode`" in vs[0].message and "`enabled`" not in vs[0].message  # enabled: true is tolerated
    assert vs[1].key == "kt_config.kt_model_max_length" and vs[1].line == 5
    assert fired("use_kt: true\nkt_config: '[1, 2]'\n", "MODEL008")
    assert not fired("use_kt: true\nkt_config:\n  kt_model_max_length: 8192\n  kt_num_gpu_experts: 4\n", "MODEL008")


def test_kt_finetuning_type_and_adapter_folder() -> None:
    assert fired("use_kt: true\nfinetuning_type: oft\n", "MODEL009")
    assert not fired("use_kt: true\nfinetuning_type: full\n", "MODEL009")
    (v,) = fired("use_kt: true\nadapter_name_or_path: out\nadapter_folder: ../../etc\n", "MODEL009")
    assert v.key == "adapter_folder"
    assert not fired("use_kt: true\nadapter_name_or_path: out\nadapter_folder: sub/dir\n", "MODEL009")


def test_kt_inference_settings() -> None:
    assert fired("kt_config:\n  a: 1\n", "MODEL010", command="infer")
    assert not fired("kt_config:\n  a: 1\n", "MODEL010")  # train: kt_config belongs to transformers-KT there
    (v,) = fired("use_kt: true\ninfer_backend: vllm\n", "MODEL010", command="infer")
    assert v.key == "infer_backend"


def test_kt_sft_generate() -> None:
    assert fired("use_kt: true\npredict_with_generate: true\n", "MODEL011")
    assert not fired("use_kt: true\nstage: dpo\ncompute_accuracy: true\n", "MODEL011")


def test_infer_backend_only_for_chat_api_web() -> None:
    text = "infer_backend: sglang\n"
    assert fired("do_train: true\n" + text, "MODEL012")
    assert fired(text, "MODEL012", command="eval")
    assert not fired(text, "MODEL012", command="infer")
    # A chat config (a model, a template and a backend; no training arguments) is read by `llamafactory-cli chat`.
    assert not fired("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\ntemplate: qwen\n" + text, "MODEL012")
    assert fix_text("do_train: true\n" + text, select="MODEL012", unsafe=True) == "do_train: true\n"


def test_zero3_backends(tmp_path: Path) -> None:
    (tmp_path / "z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    vs = fired("use_unsloth: true\nuse_kt: true\ndeepspeed: z3.json\n", "MODEL013", path=tmp_path / "run.yaml")
    assert [v.key for v in vs] == ["use_unsloth", "use_kt"]
    assert not fired("use_unsloth: true\n", "MODEL013")


def test_trackio() -> None:
    assert fired("report_to: [trackio]\nproject: null\n", "MODEL014")
    assert not fired("report_to: trackio\n", "MODEL014")  # project defaults to "huggingface"
    vs = fired("report_to: trackio\ntrackio_space_id: dash\nrun_name: r1\n", "MODEL015")
    assert [(v.key, v.severity) for v in vs] == [("trackio_space_id", Severity.WARNING)]
    vs = fired("report_to: trackio\n", "MODEL015")
    assert [(v.key, v.severity) for v in vs] == [("run_name", Severity.INFO)]
    assert not fired("report_to: wandb\ntrackio_space_id: dash\n", "MODEL015")


def test_fp8_all_gather_without_fp8() -> None:
    text = "fp8_enable_fsdp_float8_all_gather: true\n"
    (v,) = fired(text, "MODEL016")
    assert not v.fix.safe
    assert fix_text(text, select="MODEL016", unsafe=True) == text + "fp8: true\n"
    assert not fired(text + "fp8: true\n", "MODEL016")


def test_export_checks_only_for_export() -> None:
    assert fired("model_name_or_path: m\n", "MODEL017", command="export")
    assert not fired("model_name_or_path: m\n", "MODEL017")
    text = "model_name_or_path: m\nadapter_name_or_path: a\nexport_dir: out\n"
    (v,) = fired(text + "export_quantization_bit: 4\n", "MODEL018", command="export")
    assert "Please merge adapters before quantizing the model." in v.message
    (v,) = fired(text + "quantization_bit: 4\n", "MODEL018", command="export")
    assert "Cannot merge adapters to a quantized model." in v.message
    assert not fired(text, "MODEL018", command="export")


def test_unsloth_oft() -> None:
    assert fired("do_train: true\nfinetuning_type: oft\nuse_unsloth: true\n", "MODEL019")
    assert not fired("finetuning_type: oft\nuse_unsloth: true\n", "MODEL019")


# -- TRAIN -------------------------------------------------------------------------------------------------------
def test_eval_and_logging_steps_required() -> None:
    assert not fired("eval_strategy: steps\n", "TRAIN001")  # falls back to logging_steps (500)
    (v,) = fired("logging_steps: 0\n", "TRAIN001")
    assert v.key == "logging_steps"
    assert not fired("logging_steps: 0\nlogging_strategy: epoch\n", "TRAIN001")


def test_steps_must_be_integers() -> None:
    vs = fired("logging_steps: 10.5\neval_strategy: steps\neval_steps: 0.25\nsave_steps: 100.0\n", "TRAIN002")
    assert [v.key for v in vs] == ["logging_steps"]
    assert fired("eval_strategy: steps\neval_steps: 12.5\n", "TRAIN002")
    assert not fired("eval_strategy: epoch\neval_steps: 12.5\n", "TRAIN002")


def test_load_best_model_strategies() -> None:
    lb = "load_best_model_at_end: true\n"
    assert not fired(lb + "eval_strategy: steps\neval_steps: 100\nsave_steps: 300\n", "TRAIN003")
    (v,) = fired(lb + "eval_strategy: steps\neval_steps: 200\nsave_steps: 300\n", "TRAIN003")
    assert v.key == "save_steps" and "not a multiple" in v.message
    # eval_steps unset: transformers uses logging_steps.
    (v,) = fired(lb + "eval_strategy: steps\nlogging_steps: 30\nsave_steps: 500\n", "TRAIN003")
    assert "from `logging_steps`" in v.message
    assert fired(lb + "eval_strategy: steps\neval_steps: 0.1\nsave_steps: 500\n", "TRAIN003")
    assert not fired(lb + "eval_strategy: steps\neval_steps: 0.1\nsave_steps: 0.2\n", "TRAIN003")
    assert fired(lb + "eval_strategy: epoch\n", "TRAIN003")
    assert not fired(lb + "eval_strategy: epoch\nsave_strategy: epoch\n", "TRAIN003")
    assert not fired(lb + "save_strategy: best\n", "TRAIN003")


def test_scheduler_needs_eval() -> None:
    assert not fired("lr_scheduler_type: reduce_lr_on_plateau\neval_strategy: steps\n", "TRAIN004")
    assert fired("lr_scheduler_type: greedy\n", "TRAIN004", transformers_major=5)
    assert not fired("lr_scheduler_type: cosine\n", "TRAIN004")


def test_prefetch_factor_fix() -> None:
    text = "dataloader_prefetch_factor: 4\n"
    (v,) = fired(text, "TRAIN005")
    assert "(the default)" in v.message and v.fix.safe
    assert not fired(text + "dataloader_num_workers: 2\n", "TRAIN005")
    assert fix_text("bf16: true\n" + text, select="TRAIN005") == "bf16: true\n"


def test_fsdp_options() -> None:
    assert fired("fsdp: [offload]\n", "TRAIN006")
    assert fired("fsdp: full_shard shard_grad_op\n", "TRAIN006")
    assert not fired("fsdp: shard_grad_op offload\n", "TRAIN006")
    assert not fired("fsdp: ''\n", "TRAIN006")


def test_empty_cache_steps() -> None:
    assert fix_text("torch_empty_cache_steps: -1\nbf16: true\n", select="TRAIN007") == "bf16: true\n"
    assert not fired("torch_empty_cache_steps: 10\n", "TRAIN007")


def test_report_to_names() -> None:
    text = "report_to: wandb, tensorboard\n"
    (v,) = fired(text, "TRAIN008")
    assert fix_text(text, select="TRAIN008") == "report_to: [wandb, tensorboard]\n"
    (v,) = fired("report_to: [wandb, tensorbord]\n", "TRAIN008")
    assert "`tensorboard`" in v.hint
    assert fired("report_to: [all, wandb]\n", "TRAIN008")
    for ok in ("none", "all", "[none]", "[wandb, swanlab]", "mlflow"):
        assert not fired(f"report_to: {ok}\n", "TRAIN008"), ok
    assert fired("report_to: kubeflow\n", "TRAIN008", transformers_major=4)
    assert not fired("report_to: kubeflow\n", "TRAIN008", transformers_major=5)


def _checkpoint(folder: Path, step: int, total: int) -> None:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": total}))


def test_output_dir_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "saves" / "run1"
    out.mkdir(parents=True)
    text = "stage: sft\ndo_train: true\noutput_dir: saves/run1\n"
    run = tmp_path / "run.yaml"
    assert not fired(text, "TRAIN009", path=run)  # an empty directory is fine
    (out / "adapter_model.safetensors").write_text("")
    (v,) = fired(text, "TRAIN009", path=run)
    assert v.line == 3 and "adapter_model.safetensors" in v.message
    assert fix_text(text, select="TRAIN009", unsafe=True, path=run) == text + "overwrite_output_dir: true\n"
    assert not fired(text + "overwrite_output_dir: true\n", "TRAIN009", path=run)
    assert not fired(text + "resume_from_checkpoint: x\n", "TRAIN009", path=run)
    assert not fired(text.replace("sft", "rm") + "finetuning_type: full\n", "TRAIN009", path=run)
    assert not fired(text.replace("do_train: true", "do_train: false"), "TRAIN009", path=run)
    # The directory is looked up from where the run starts.
    assert not fired(text, "TRAIN009", path=run, cwd=tmp_path / "saves")
    _checkpoint(out, 10, 100)  # with a checkpoint it resumes instead (TRAIN010)
    assert not fired(text, "TRAIN009", path=run)


def test_output_dir_auto_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = "stage: sft\ndo_train: true\noutput_dir: out\n"
    run = tmp_path / "run.yaml"
    _checkpoint(out, 100, 1000)
    _checkpoint(out, 300, 1000)
    (out / "checkpoint-x").mkdir()
    (v,) = fired(text, "TRAIN010", path=run)
    assert v.severity is Severity.WARNING and "`checkpoint-300`" in v.message and "step 300 of 1000" in v.message
    _checkpoint(out, 1000, 1000)
    (v,) = fired(text, "TRAIN010", path=run)
    assert "training ends immediately" in v.message
    (v,) = fired(text.replace("sft", "ppo"), "TRAIN010", path=run)
    assert v.severity is Severity.ERROR
    assert not fired(text + "overwrite_output_dir: true\n", "TRAIN010", path=run)


def test_eval_save_dir(tmp_path: Path) -> None:
    (tmp_path / "res").mkdir()
    assert fired("save_dir: res\n", "TRAIN011", command="eval", path=tmp_path / "e.yaml")
    assert not fired("save_dir: res2\n", "TRAIN011", command="eval", path=tmp_path / "e.yaml")


# -- LF ----------------------------------------------------------------------------------------------------------
def test_list_where_string_expected_fix_joins() -> None:
    text = "adapter_name_or_path: [saves/a, saves/b]  # two adapters\nadd_tokens:\n  - <x>\n  - <y>\n"
    vs = fired(text, "LF001")
    assert [v.key for v in vs] == ["adapter_name_or_path", "add_tokens"]
    fixed = fix_text(text, select="LF001")
    assert fixed == "adapter_name_or_path: saves/a,saves/b  # two adapters\nadd_tokens: <x>,<y>\n"
    assert not fired(fixed, "LF001")
    assert fix_text("add_tokens: ['a: b', c]\n", select="LF001") == 'add_tokens: "a: b,c"\n'
    assert not fired("new_special_tokens_config: t.yaml\nadd_special_tokens: [<a>]\n", "LF001")
    assert not fired("dataset: [a, b]\n", "LF001")


def test_empty_comma_items() -> None:
    (v,) = fired("dataset: a,,b\n", "LF002")
    assert v.severity is Severity.ERROR
    assert fix_text("dataset: a,,b,  # two\n", select="LF002") == "dataset: a,b  # two\n"
    assert fix_text('dataset: ",a"\n', select="LF002") == "dataset: a\n"
    (v,) = fired("lora_target: q_proj,v_proj,\n", "LF002")
    assert v.severity is Severity.WARNING
    assert not fired("dataset: a, b\n", "LF002")


def test_target_all_mixed() -> None:
    (v,) = fired("lora_target: [all, lm_head]\n", "LF003")
    assert "`lm_head`" in v.message
    assert fix_text("lora_target: all, lm_head\n", select="LF003", unsafe=True) == "lora_target: all\n"
    assert not fired("lora_target: all\n", "LF003")
    assert not fired("freeze_trainable_modules: all,mlp\n", "LF003")  # freeze handles `all` per entry
    assert not fired("finetuning_type: full\nlora_target: all,lm_head\n", "LF003")  # LoRA is not used
    assert fired("finetuning_type: full\nuse_galore: true\ngalore_target: all,mlp\n", "LF003")


def test_special_token_fallback_and_packing_rewrites() -> None:
    assert fired("init_special_tokens: desc_init_w_noise\n", "LF004")
    assert not fired("init_special_tokens: noise_init\n", "LF004")
    assert fired("neat_packing: true\npacking: false\n", "LF005")
    assert not fired("neat_packing: true\npacking: true\n", "LF005")
    (v,) = fired("neat_packing: true\n", "LF006")
    assert "2047" in v.message and v.severity is Severity.INFO
    assert not fired("stage: pt\n", "LF006")  # implicit packing keeps cutoff_len


def test_lora_alpha_default_info_and_fix() -> None:
    text = "do_train: true\nlora_rank: 16\nlora_dropout: 0.05\n"
    (v,) = fired(text, "LF007")
    assert v.severity is Severity.INFO and "32" in v.message
    assert fix_text(text, select="LF007") == "do_train: true\nlora_rank: 16\nlora_alpha: 32\nlora_dropout: 0.05\n"
    assert not fired(text + "lora_alpha: 8\n", "LF007")
    assert not fired("do_train: true\n", "LF007")  # nothing chosen, nothing to explain


def test_start_up_warnings_of_get_train_args() -> None:
    assert fired("do_train: true\nresize_vocab: true\n", "LF008")
    assert not fired("do_train: true\nresize_vocab: true\nadditional_target: embed_tokens\n", "LF008")
    assert fired("do_train: true\nquantization_bit: 4\n", "LF009")
    assert not fired("do_train: true\nquantization_bit: 4\nupcast_layernorm: true\n", "LF009")
    assert fired("do_train: true\nuse_apollo: true\n", "LF010")
    assert not fired("do_train: true\nuse_apollo: true\npure_bf16: true\n", "LF010")
    assert fired("do_eval: true\nquantization_bit: 8\n", "LF011")
    assert not fired("stage: sft\nquantization_bit: 8\n", "LF011")  # neither trains nor evaluates
    assert not fired("do_train: true\nquantization_bit: 8\n", "LF011")
    assert fired("stage: dpo\ndo_eval: true\n", "LF012")
    assert not fired("stage: dpo\ndo_eval: true\npref_loss: simpo\n", "LF012")
    assert not fired("stage: dpo\ndo_train: true\ndo_eval: true\n", "LF012")


def test_overrides_and_dropped_settings() -> None:
    assert fired("remove_unused_columns: true\n", "LF013")
    assert not fired("remove_unused_columns: false\n", "LF013")
    (v,) = fired("generation_num_beams: 4\neval_num_beams: 2\n", "LF013")
    assert v.key == "generation_num_beams"
    assert fired("report_to: [swanlab]\nuse_swanlab: true\n", "LF014")
    assert not fired("report_to: [swanlab]\n", "LF014")
    assert fired("stage: ppo\nfinetuning_type: freeze\nresume_from_checkpoint: c\n", "LF015")
    assert not fired("stage: sft\nfinetuning_type: full\nresume_from_checkpoint: c\n", "LF015")
    assert fired("stage: rm\nresume_from_checkpoint: out/checkpoint-5\n", "LF016")
    assert not fired("stage: rm\nresume_from_checkpoint: out/checkpoint-5/\nadapter_name_or_path: out/checkpoint-5\n", "LF016")
    assert fired("stage: kto\npacking: true\n", "LF017")
    assert not fired("stage: pt\npacking: true\n", "LF017")


def test_report_to_all_default() -> None:
    (v,) = fired("do_train: true\n", "LF018", transformers_major=4)
    assert v.severity is Severity.WARNING and not v.fix.safe
    assert fix_text("do_train: true\n", select="LF018", unsafe=True, transformers_major=4) == "do_train: true\nreport_to: none\n"
    assert fired("do_train: true\nreport_to: [all]\n", "LF018", transformers_major=4)
    assert not fired("do_train: true\n", "LF018", transformers_major=5)
    assert not fired("do_train: true\nreport_to: wandb\n", "LF018")
    assert not fired("do_train: true\nstage: ppo\n", "LF018")  # STAGE011


def test_kt_reentrant_gc() -> None:
    assert fired("use_kt: true\nuse_reentrant_gc: true\n", "LF019")
    assert not fired("use_kt: true\nuse_reentrant_gc: true\ndisable_gradient_checkpointing: true\n", "LF019")


def test_megatron_bridge_args_only_with_the_env(tmp_path: Path) -> None:
    env = {"USE_MEGATRON_BRIDGE": "1"}
    text = "tensor_model_parallel_size: 0\nrecompute_granularity: some\nextra_config: mb.json\n"
    assert not fired(text, "TRAIN012", llamafactory="0.9.6")
    vs = fired(text, "TRAIN012", llamafactory="0.9.6", env=env, path=tmp_path / "run.yaml")
    assert [v.key for v in vs] == ["tensor_model_parallel_size", "recompute_granularity", "extra_config"]
    (tmp_path / "mb.json").write_text("{}")
    assert len(fired(text, "TRAIN012", llamafactory="0.9.6", env=env, path=tmp_path / "run.yaml")) == 2
    assert not fired('extra_config: \'{"train.train_iters": 10}\'\n', "TRAIN012", llamafactory="0.9.6", env=env)
    assert not fired(text, "TRAIN012", llamafactory="0.9.6", env={**env, "USE_MCA": "1"})  # the MCA parser wins
    assert not fired(text, "TRAIN012", env=env, llamafactory="0.9.5")  # no Megatron Bridge parser before 0.9.6


def test_megatron_bridge_compat_and_world_size() -> None:
    env = {"USE_MEGATRON_BRIDGE": "1"}
    vs = fired("stage: kto\nfinetuning_type: freeze\nquantization_bit: 4\nuse_mca: true\n", "TRAIN013", llamafactory="0.9.6", env=env)
    assert [v.key for v in vs] == ["stage", "finetuning_type", "quantization_bit", "use_mca"]  # in file order
    text = "tensor_model_parallel_size: 4\npipeline_model_parallel_size: 2\n"
    assert not fired(text, "TRAIN013", llamafactory="0.9.6", env=env)  # GPU count unknown
    (v,) = fired(text, "TRAIN013", env=env, llamafactory="0.9.6", gpus=4)
    assert "exceeds `world_size` (4)" in v.message
    (v,) = fired(text, "TRAIN013", env=env, llamafactory="0.9.6", gpus=12)
    assert "must divide `world_size` (12)" in v.message
    assert not fired(text, "TRAIN013", env=env, llamafactory="0.9.6", gpus=8, nodes=2)


# -- TRAIN: transformers' Trainer set-up ---------------------------------------------------------------------------
def _z(tmp_path: Path, stage: int) -> Path:
    (tmp_path / f"z{stage}.json").write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    return tmp_path / "run.yaml"


def test_save_only_model_with_load_best_under_deepspeed_or_fsdp(tmp_path: Path) -> None:
    run = _z(tmp_path, 2)
    base = "save_only_model: true\nload_best_model_at_end: true\neval_strategy: steps\nval_size: 0.1\n"
    (v,) = fired(base + "deepspeed: z2.json\n", "TRAIN014", path=run)
    assert v.key == "save_only_model" and v.severity is Severity.ERROR
    assert "DeepSpeed can't be used with `save_only_model` along with `load_best_model_at_end`." in v.message
    (v,) = fired(base + "fsdp: full_shard auto_wrap\n", "TRAIN014")
    assert "FSDP can't be used" in v.message
    (v,) = fired(base, "TRAIN014", env={"ACCELERATE_USE_FSDP": "true"})
    assert "the launch environment" in v.message
    assert not fired(base, "TRAIN014")  # plain DDP can reload the best model
    assert not fired(base.replace("save_only_model: true\n", "") + "deepspeed: z2.json\n", "TRAIN014", path=run)
    assert not fired(base + "stage: rm\ndeepspeed: z2.json\n", "TRAIN014", path=run)  # STAGE007 refuses it first
    fixed = fix_text(base + "deepspeed: z2.json\n", select="TRAIN014", unsafe=True, path=run)
    assert "save_only_model" not in fixed
    sharded = {"FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}
    (v,) = fired("save_only_model: true\nfsdp: full_shard\n", "TRAIN014", env=sharded)
    assert "not compatible with FSDP state dict type 'SHARDED_STATE_DICT'" in v.message
    assert not fired("save_only_model: true\n", "TRAIN014", env=sharded)  # no FSDP


def test_save_strategy_best_needs_metric_and_evaluation() -> None:
    (v,) = fired("save_strategy: best\neval_strategy: steps\nval_size: 0.1\n", "TRAIN015")
    assert "`args.metric_for_best_model` must be provided when using 'best' save_strategy" in v.message
    assert fix_text("save_strategy: best\n", select="TRAIN015", unsafe=True).endswith("metric_for_best_model: eval_loss\n")
    # load_best_model_at_end (and a plateau scheduler) make the metric default to loss.
    assert not fired("save_strategy: best\nload_best_model_at_end: true\neval_strategy: steps\n", "TRAIN015")
    assert not fired("save_strategy: best\nlr_scheduler_type: reduce_lr_on_plateau\neval_strategy: epoch\n", "TRAIN015")
    greedy = "save_strategy: best\nlr_scheduler_type: greedy\neval_strategy: epoch\n"
    assert not fired(greedy, "TRAIN015", transformers_major=5)
    # Without evaluation nothing is ever saved: a warning, for training runs.
    vs = fired("do_train: true\nsave_strategy: best\nmetric_for_best_model: eval_loss\n", "TRAIN015")
    assert [v.severity for v in vs] == [Severity.WARNING] and "none is ever saved" in vs[0].message
    assert not fired("save_strategy: steps\n", "TRAIN015")


def test_auto_find_batch_size_zero3(tmp_path: Path) -> None:
    run = _z(tmp_path, 3)
    text = "deepspeed: z3.json\nauto_find_batch_size: true\nbf16: true\n"
    (v,) = fired(text, "TRAIN016", path=run)
    assert "isn't supported yet with DeepSpeed Zero-3" in v.message
    assert fix_text(text, select="TRAIN016", path=run) == "deepspeed: z3.json\nbf16: true\n"
    _z(tmp_path, 2)
    assert not fired(text.replace("z3", "z2"), "TRAIN016", path=run)


def test_fsdp_with_deepspeed_or_without_torchrun(tmp_path: Path) -> None:
    run = _z(tmp_path, 3)
    (v,) = fired("fsdp: full_shard\ndeepspeed: z3.json\n", "TRAIN017", path=run)
    assert "Using --fsdp xxx together with --deepspeed is not possible" in v.message
    (v,) = fired("fsdp: full_shard auto_wrap\n", "TRAIN017", gpus=1)
    assert "Using fsdp only works in distributed training." in v.message
    assert not fired("fsdp: full_shard auto_wrap\n", "TRAIN017")  # GPU count unknown
    assert not fired("fsdp: full_shard auto_wrap\n", "TRAIN017", gpus=4)
    assert not fired("fsdp: full_shard auto_wrap\n", "TRAIN017", gpus=1, env={"FORCE_TORCHRUN": "1"})
    assert not fired("fsdp: ''\n", "TRAIN017", gpus=1)


def test_fsdp_config_conflicts() -> None:
    wrap = "fsdp: full_shard auto_wrap\nfsdp_config:\n  fsdp_min_num_params: 1000\n  transformer_layer_cls_to_wrap: X\n"
    (v,) = fired(wrap, "TRAIN018")
    assert "mutually exclusive" in v.message
    assert not fired(wrap.replace("fsdp: full_shard auto_wrap\n", ""), "TRAIN018")  # no fsdp: never looked at
    legacy = "fsdp: full_shard auto_wrap\nfsdp_min_num_params: 1000\nfsdp_transformer_layer_cls_to_wrap: X\n"
    assert fired(legacy, "TRAIN018", transformers_major=4)  # the top-level fsdp_* keys are gone in transformers 5
    assert not fired(legacy, "TRAIN018", transformers_major=5)
    json_text = 'fsdp: full_shard\nfsdp_config: \'{"sync_module_states": "false", "cpu_ram_efficient_loading": "true"}\'\n'
    (v,) = fired(json_text, "TRAIN018")
    assert "`sync_module_states` must be" in v.message
    assert not fired("fsdp: full_shard\nfsdp_config: fsdp.json\n", "TRAIN018")  # a file on the cluster
    ac = "fsdp: full_shard\nfsdp_config:\n  activation_checkpointing: true\ngradient_checkpointing: true\n"
    (v,) = fired(ac, "TRAIN018")
    assert v.key == "gradient_checkpointing" and "can't be set to True simultaneously" in v.message
    assert not fired(ac + "use_kt: true\n", "TRAIN018")  # MODEL007 reports it for KTransformers


def test_gradient_checkpointing_arguments_override_llamafactory() -> None:
    (v,) = fired("do_train: true\ngradient_checkpointing_kwargs: {use_reentrant: false}\n", "TRAIN019")
    assert v.severity is Severity.WARNING and "never read" in v.message and "use_reentrant_gc" in v.hint
    (v,) = fired("do_train: true\ngradient_checkpointing: true\ndisable_gradient_checkpointing: true\n", "TRAIN019")
    assert v.key == "disable_gradient_checkpointing" and "has no effect" in v.message
    (v,) = fired("do_train: true\ngradient_checkpointing: true\nuse_reentrant_gc: false\n", "TRAIN019")
    assert "`use_reentrant: True`" in v.message
    kwargs = "do_train: true\ngradient_checkpointing: true\nuse_reentrant_gc: false\ngradient_checkpointing_kwargs: {use_reentrant: false}\n"
    assert not fired(kwargs, "TRAIN019")
    assert not fired("do_train: true\ngradient_checkpointing: true\n", "TRAIN019")  # same as LLaMA-Factory's default
    assert not fired("gradient_checkpointing_kwargs: {use_reentrant: false}\n", "TRAIN019")  # not training
    assert not fired("do_train: true\nuse_kt: true\ngradient_checkpointing_kwargs: {a: 1}\n", "TRAIN019")


def test_accelerator_config_num_steps_and_grad_accum() -> None:
    text = "gradient_accumulation_steps: 4\naccelerator_config:\n  gradient_accumulation_kwargs:\n    num_steps: 4\n"
    (v,) = fired(text, "TRAIN020")
    assert "`num_steps` is set but `gradient_accumulation_steps` is greater than 1" in v.message
    assert not fired(text.replace("steps: 4\naccel", "steps: 1\naccel"), "TRAIN020")
    assert not fired('gradient_accumulation_steps: 4\naccelerator_config: \'{"split_batches": true}\'\n', "TRAIN020")
    (v,) = fired("accelerator_config:\n  split_batch: true\n", "TRAIN020")
    assert "`split_batch`" in v.message and "unexpected keyword argument 'split_batch'" in v.message
    assert not fired("accelerator_config: accelerate.json\n", "TRAIN020")


def test_early_stopping_needs_evaluation_and_metric() -> None:
    vs = fired("do_train: true\nearly_stopping_steps: 3\n", "TRAIN021")
    assert len(vs) == 2
    assert "IntervalStrategy of steps or epoch" in vs[0].message and "metric_for_best_model" in vs[1].message
    (v,) = fired("do_train: true\nearly_stopping_steps: 3\neval_strategy: steps\nval_size: 0.1\n", "TRAIN021")
    assert "requires metric_for_best_model to be defined" in v.message
    ok = "do_train: true\nearly_stopping_steps: 3\neval_strategy: epoch\nval_size: 0.1\nload_best_model_at_end: true\nsave_strategy: epoch\n"
    assert not fired(ok, "TRAIN021")
    assert not fired("do_train: true\neval_strategy: steps\n", "TRAIN021")


def test_scheduler_kwargs() -> None:
    text = "do_train: true\nlr_scheduler_type: cosine\nlr_scheduler_kwargs:\n  min_lr: 1.0e-6\n"
    (v,) = fired(text, "TRAIN022")
    assert "get_cosine_schedule_with_warmup() got an unexpected keyword argument 'min_lr'" in v.message
    assert "lr_scheduler_type: cosine_with_min_lr" in fix_text(text, select="TRAIN022", unsafe=True)
    (v,) = fired("do_train: true\nlr_scheduler_type: cosine_with_min_lr\n", "TRAIN022")
    assert "One of min_lr or min_lr_rate should be set" in v.message and v.key == "lr_scheduler_type"
    both = 'do_train: true\nlr_scheduler_type: cosine_warmup_with_min_lr\nlr_scheduler_kwargs: \'{"min_lr": 1e-6, "min_lr_rate": 0.1}\'\n'
    assert "Only one of min_lr or min_lr_rate" in fired(both, "TRAIN022")[0].message
    assert not fired("do_train: true\nlr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr_rate: 0.1}\n", "TRAIN022")
    # polynomial decays to lr_end, 1e-7 unless stated
    (v,) = fired("do_train: true\nlr_scheduler_type: polynomial\nlearning_rate: 1.0e-7\n", "TRAIN022")
    assert "lr_end (1e-07) must be smaller than initial lr (1e-07)" in v.message
    assert not fired("do_train: true\nlr_scheduler_type: polynomial\nlearning_rate: 1.0e-5\n", "TRAIN022")
    # warmup_stable_decay: LLaMA-Factory fills num_decay_steps in from 0.9.3 on
    wsd = "do_train: true\nlr_scheduler_type: warmup_stable_decay\n"
    assert "num_decay_steps" in fired(wsd, "TRAIN022", llamafactory="0.9.2")[0].message
    assert not fired(wsd, "TRAIN022", llamafactory="0.9.3")
    assert "Unknown decay type: exp" in fired(wsd + "lr_scheduler_kwargs: {decay_type: exp}\n", "TRAIN022")[0].message
    # ignored kwargs are a warning; inverse_sqrt reads them from transformers 5 on
    (v,) = fired("do_train: true\nlr_scheduler_type: constant_with_warmup\nlr_scheduler_kwargs: {a: 1}\n", "TRAIN022")
    assert v.severity is Severity.WARNING and "ignored" in v.message
    inv = "do_train: true\nlr_scheduler_type: inverse_sqrt\nlr_scheduler_kwargs: {timescale: 100}\n"
    assert fired(inv, "TRAIN022", transformers_major=4) and not fired(inv, "TRAIN022", transformers_major=5)
    assert not fired("do_train: true\nlr_scheduler_type: reduce_lr_on_plateau\nlr_scheduler_kwargs: {factor: 0.5}\n", "TRAIN022")
    assert not fired(text.replace("do_train: true\n", ""), "TRAIN022")


def test_scheduler_kwargs_not_read_when_deepspeed_schedules(tmp_path: Path) -> None:
    ds = {"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR", "params": {}}}
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    text = "do_train: true\ndeepspeed: ds.json\nlr_scheduler_type: cosine_with_min_lr\n"
    assert not fired(text, "TRAIN022", path=tmp_path / "run.yaml")
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert fired(text, "TRAIN022", path=tmp_path / "run.yaml")


def test_transformers_low_rank_optimizers() -> None:
    (v,) = fired("do_train: true\noptim: galore_adamw\n", "TRAIN023")
    assert "You need to define `optim_target_modules` to use galore_adamw optimizers" in v.message
    text = "do_train: true\noptim: galore_adamw_layerwise\noptim_target_modules: [attn]\ngradient_accumulation_steps: 4\n"
    (v,) = fired(text, "TRAIN023")
    assert v.key == "gradient_accumulation_steps" and "does not support gradient accumulation" in v.message
    vs = fired(text.replace("steps: 4", "steps: 1"), "TRAIN023", gpus=2)
    assert ["does not support DDP" in v.message for v in vs] == [True]
    assert not fired("do_train: true\noptim: galore_adamw\nuse_galore: true\n", "TRAIN023")  # LLaMA-Factory's GaLore
    assert not fired("do_train: true\noptim: adamw_torch\n", "TRAIN023")


def test_group_by_length_with_streaming() -> None:
    text = "do_train: true\nstreaming: true\nmax_steps: 100\ngroup_by_length: true\n"
    (v,) = fired(text, "TRAIN024", transformers_major=4)
    assert v.severity is Severity.ERROR and "not `IterableDataset`" in v.message
    assert "group_by_length" not in fix_text(text, select="TRAIN024", transformers_major=4)
    five = "do_train: true\nstreaming: true\nmax_steps: 100\ntrain_sampling_strategy: group_by_length\n"
    (v,) = fired(five, "TRAIN024", transformers_major=5)
    assert v.severity is Severity.WARNING and "ignored" in v.message
    assert not fired(text, "TRAIN024", transformers_major=5)
    assert not fired(text.replace("streaming: true", "streaming: false"), "TRAIN024")


def test_apex_bf16_only_transformers_4() -> None:
    text = "bf16: true\nhalf_precision_backend: apex\n"
    (v,) = fired(text, "TRAIN025", transformers_major=4)
    assert "GPU bf16 is not supported by apex" in v.message
    assert fix_text(text, select="TRAIN025", transformers_major=4) == "bf16: true\n"
    assert not fired(text.replace("bf16", "fp16"), "TRAIN025", transformers_major=4)
    assert not fired(text, "TRAIN025", transformers_major=5)


def test_resume_from_checkpoint_true() -> None:
    text = "do_train: true\noutput_dir: saves/run\nresume_from_checkpoint: true\n"
    (v,) = fired(text, "TRAIN026")
    assert v.severity is Severity.WARNING and "not needed" in v.message and "No valid checkpoint found" in v.message
    assert fix_text(text, select="TRAIN026") == "do_train: true\noutput_dir: saves/run\n"
    (v,) = fired(text + "overwrite_output_dir: true\n", "TRAIN026")
    assert "not needed" not in v.message and "if `output_dir` has none" in v.message and v.fix is None
    assert not fired(text.replace("checkpoint: true", "checkpoint: saves/run/checkpoint-100"), "TRAIN026")
    assert not fired("do_train: true\nresume_from_checkpoint: false\n", "TRAIN026")
    assert not fired(text.replace("do_train: true", "do_train: false"), "TRAIN026")
    assert not fired(text + "stage: ppo\n", "TRAIN026")


def test_dict_arguments_written_as_text() -> None:
    (v,) = fired("lr_scheduler_kwargs: '{min_lr_rate: 0.1}'\n", "TRAIN027")
    assert "not valid JSON" in v.message and "column 2" in v.message
    text = "do_train: true\ngradient_checkpointing: true\ngradient_checkpointing_kwargs: use_reentrant=False\n"
    (v,) = fired(text, "TRAIN027")
    assert "argument after ** must be a mapping" in v.message
    assert not fired(text.replace("gradient_checkpointing: true\n", ""), "TRAIN027")  # never read
    assert not fired("fsdp_config: fsdp.json\naccelerator_config: acc.json\n", "TRAIN027")  # file names
    assert not fired('lr_scheduler_kwargs: \'{"min_lr_rate": 0.1}\'\n', "TRAIN027")
    assert not fired("do_train: true\nlr_scheduler_type: constant\nlr_scheduler_kwargs: x\n", "TRAIN027")
    # json.loads raises a plain ValueError (no position) for an integer past Python's int-string limit
    (v,) = fired(f"lr_scheduler_kwargs: '{{\"min_lr_rate\": {'1' * 5000}}}'\n", "TRAIN027")
    assert "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion)" in v.message


def test_optim_args_format() -> None:
    (v,) = fired('do_train: true\noptim_args: "use_kahan_summation: true"\n', "TRAIN028")
    assert "'use_kahan_summation:true'" in v.message and "not enough values to unpack" in v.message
    assert "too many" in fired("do_train: true\noptim_args: a=1=2\n", "TRAIN028")[0].message
    assert fired("do_train: true\noptim_args: a=1,\n", "TRAIN028")  # a trailing comma is an empty item
    assert not fired("do_train: true\noptim_args: a=1, b = 2\n", "TRAIN028")  # spaces are removed first
    assert not fired("do_train: true\nuse_muon: true\noptim_args: x\n", "TRAIN028")
    assert not fired("optim_args: x\n", "TRAIN028")
