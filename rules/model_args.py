"""Model arguments: the model, special tokens, image/video limits, export, KTransformers, Unsloth and trackers.

Mirrors ``ModelArguments.__post_init__`` and the KTransformers helpers (``hparams/model_args.py``), the model and
tracker checks of ``get_train_args``/``get_infer_args``/``get_eval_args`` (``hparams/parser.py``) and the export
checks of ``export_model`` (``train/tuner.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import yaml

from tuner.config.context import Context
from tuner.lint.fixes import remove_key, set_key
from tuner.lint.rule import Finding, Rule, Severity, lf_stops

from ._lf_common import (
    INFER_COMMANDS,
    adapters,
    command,
    env_enabled,
    int_value,
    keys_text,
    report_to,
    resolve_dir,
)


#: Keys that mean the file names its model another way, or is not a LLaMA-Factory v0 config at all.
_NOT_LF_MODEL_KEYS = ("model", "base_model", "model_path", "model_name", "compute_environment", "distributed_type")


class ModelNameRequired(Rule):
    """No ``model_name_or_path``.

    ``ModelArguments.__post_init__`` raises "Please provide `model_name_or_path`." for every command
    (``model_args.py``). A config that is always launched with the model as a
    command-line override (``llamafactory-cli train run.yaml model_name_or_path=...``) can suppress this rule.

    Bad:

    ```yaml
    stage: sft
    do_train: true
    ```

    Good:

    ```yaml
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    stage: sft
    do_train: true
    ```
    """

    code = "MODEL001"
    name = "model-name-required"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("model_name_or_path") not in (None, ""):
            return
        # The model under another name is a renamed/unknown key (KEY rules); Accelerate and LLaMA-Factory v1
        # configs share a few key names with training configs but are not read by this parser.
        if any(k in ctx.data for k in _NOT_LF_MODEL_KEYS):
            return
        yield Finding(
            key="model_name_or_path",
            message="no `model_name_or_path`: " + lf_stops("Please provide `model_name_or_path`."),
            hint="set `model_name_or_path` to a Hugging Face model id or a local model directory (or pass "
            "`model_name_or_path=...` after the YAML on the command line)",
        )


class SpecialTokensConfig(Rule):
    """A ``new_special_tokens_config`` file that is missing or is not a ``{token: description}`` mapping.

    ``ModelArguments.__post_init__`` loads the file with OmegaConf and re-raises any error; a file that is not a
    mapping raises "YAML config must be a dictionary mapping tokens to descriptions.".
    The path is resolved from the directory the run is launched in.

    Bad:

    ```yaml
    new_special_tokens_config: does/not/exist.yaml
    ```

    Good:

    ```yaml
    add_special_tokens: <think>,</think>
    ```
    """

    code = "MODEL002"
    name = "special-tokens-config"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        value = ctx.get("new_special_tokens_config")
        if not isinstance(value, str) or not value:
            return
        path = resolve_dir(ctx, value)
        if not path.is_file():
            yield Finding(
                key="new_special_tokens_config",
                message=f"`new_special_tokens_config: {value}` not found (looked for {path}): LLaMA-Factory stops at "
                "start-up when it cannot load the file",
                hint="fix the path (relative paths start from the directory you launch `llamafactory-cli` in)",
            )
            return
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            yield Finding(
                key="new_special_tokens_config",
                message=f"`new_special_tokens_config: {value}` cannot be read as YAML ({exc.__class__.__name__}): "
                "LLaMA-Factory stops at start-up",
                hint="write a YAML mapping of each new token to its description",
            )
            return
        if not isinstance(data, dict):
            yield Finding(
                key="new_special_tokens_config",
                message=f"`new_special_tokens_config: {value}` holds a {type(data).__name__}, not a mapping: "
                + lf_stops("YAML config must be a dictionary mapping tokens to descriptions."),
                hint='write one `"<token>": "what it means"` line per token',
            )


class SpecialTokensBoth(Rule):
    """Both ``new_special_tokens_config`` and ``add_special_tokens``.

    The config file wins: ``ModelArguments.__post_init__`` logs "Both 'new_special_tokens_config' and
    'add_special_tokens' are set." and replaces ``add_special_tokens`` with the file's tokens, so tokens listed only
    in ``add_special_tokens`` are not added.

    Bad:

    ```yaml
    new_special_tokens_config: special_tokens.yaml
    add_special_tokens: <tool_call>,</tool_call>
    ```

    Good:

    ```yaml
    new_special_tokens_config: special_tokens.yaml
    ```
    """

    code = "MODEL003"
    name = "special-tokens-both"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("new_special_tokens_config") is not None and ctx.get("add_special_tokens") is not None:
            yield Finding(
                key="add_special_tokens",
                also=("new_special_tokens_config",),
                message="`add_special_tokens` is ignored: `new_special_tokens_config` is also set and its tokens "
                "replace the list",
                hint="list every new token in the `new_special_tokens_config` file and remove `add_special_tokens`",
            )


class PixelBounds(Rule):
    """``image_max_pixels`` below ``image_min_pixels`` (or the same for video).

    ``ProcessorArguments.__post_init__`` raises "`image_max_pixels` cannot be smaller than `image_min_pixels`."
    (``model_args.py``). The defaults are 768×768 / 32×32 for images and
    256×256 / 16×16 for video frames, so lowering only the maximum below the default minimum trips this too.

    Bad:

    ```yaml
    image_max_pixels: 512
    ```

    Good:

    ```yaml
    image_max_pixels: 262144
    ```
    """

    code = "MODEL004"
    name = "pixel-bounds"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        for kind in ("image", "video"):
            hi, lo = int_value(ctx, f"{kind}_max_pixels"), int_value(ctx, f"{kind}_min_pixels")
            if hi is not None and lo is not None and hi < lo:
                key = f"{kind}_max_pixels" if ctx.has(f"{kind}_max_pixels") else f"{kind}_min_pixels"
                yield Finding(
                    key=key,
                    also=(f"{kind}_max_pixels", f"{kind}_min_pixels"),
                    message=f"`{kind}_max_pixels: {hi}` is below `{kind}_min_pixels: {lo}`: "
                    + lf_stops(f"`{kind}_max_pixels` cannot be smaller than `{kind}_min_pixels`."),
                    hint="these are pixel counts (width × height), e.g. 512×512 = 262144",
                )


class ExportQuantizationDataset(Rule):
    """``export_quantization_bit`` without ``export_quantization_dataset``.

    GPTQ calibrates on sample text; ``ExportArguments.__post_init__`` raises "Quantization dataset is necessary
    for exporting." for every command.

    Bad:

    ```yaml
    export_dir: saves/llama3-8b-gptq
    export_quantization_bit: 4
    ```

    Good:

    ```yaml
    export_dir: saves/llama3-8b-gptq
    export_quantization_bit: 4
    export_quantization_dataset: data/c4_demo.jsonl
    ```
    """

    code = "MODEL005"
    name = "export-quantization-dataset"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("export_quantization_bit") is not None and ctx.get("export_quantization_dataset") is None:
            yield Finding(
                key="export_quantization_bit",
                also=("export_quantization_dataset",),
                message="`export_quantization_bit` without `export_quantization_dataset`: "
                + lf_stops("Quantization dataset is necessary for exporting."),
                hint="set `export_quantization_dataset`, e.g. `data/c4_demo.jsonl` from the LLaMA-Factory repository",
            )


class KTCpuActivationNeedsKT(Rule):
    """``kt_cpu_activation`` without ``use_kt: true``.

    ``KTransformersArguments.__post_init__`` raises "`kt_cpu_activation` is only valid when `use_kt: true`."
    (``model_args.py``, after v0.9.5; earlier releases refuse the key itself, KEY001).

    Bad:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
    kt_cpu_activation: retain
    ```

    Good:

    ```yaml
    # cfglint --target-llamafactory 0.9.6
    use_kt: true
    kt_cpu_activation: retain
    ```
    """

    code = "MODEL006"
    name = "kt-cpu-activation-needs-kt"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.schema.accepted("kt_cpu_activation", ctx.kind.command, ctx.options.target) is None:
            return  # a release without KTransformers' arguments refuses the key itself (KEY001)
        if ctx.get("kt_cpu_activation") is not None and not ctx.flag("use_kt"):
            yield Finding(
                key="kt_cpu_activation",
                message="`kt_cpu_activation` without `use_kt: true`: "
                + lf_stops("`kt_cpu_activation` is only valid when `use_kt: true`."),
                hint="set `use_kt: true` to train with KTransformers, or remove `kt_cpu_activation`",
            )


class KTCheckpointing(Rule):
    """KTransformers training with a gradient-checkpointing setting it does not accept.

    With ``use_kt``, LLaMA-Factory's ``disable_gradient_checkpointing`` is the only switch: KTransformers supplies
    its own checkpoint context. ``configure_kt_checkpointing`` (``model_args.py``) raises for
    ``gradient_checkpointing: true``, ``gradient_checkpointing_kwargs``, FSDP ``activation_checkpointing`` and
    Unsloth's checkpointing, and ``kt_cpu_activation: recompute`` needs GPU checkpointing on.

    Bad:

    ```yaml
    use_kt: true
    gradient_checkpointing: true
    ```

    Good:

    ```yaml
    use_kt: true
    disable_gradient_checkpointing: false
    ```
    """

    code = "MODEL007"
    name = "kt-checkpointing"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.flag("use_kt"):
            return
        for key in ("use_unsloth", "use_unsloth_gc"):
            if ctx.flag(key):
                yield Finding(
                    key=key,
                    also=("use_kt",),
                    message=f"`{key}` with `use_kt`: "
                    + lf_stops("KTransformers cannot be combined with Unsloth checkpoint wrapping."),
                    hint=f"remove `{key}`",
                )
        if ctx.flag("gradient_checkpointing"):
            yield Finding(
                key="gradient_checkpointing",
                also=("use_kt",),
                message="`gradient_checkpointing: true` with `use_kt`: "
                + lf_stops("KTransformers uses LLaMA-Factory's `disable_gradient_checkpointing`; remove "
                         "`gradient_checkpointing: true`."),
                hint="remove `gradient_checkpointing` (LLaMA-Factory checkpoints by default)",
            )
        if ctx.get("gradient_checkpointing_kwargs") is not None:
            yield Finding(
                key="gradient_checkpointing_kwargs",
                also=("use_kt",),
                message="`gradient_checkpointing_kwargs` with `use_kt`: "
                + lf_stops("KTransformers supplies its checkpoint context; remove `gradient_checkpointing_kwargs`."),
                hint="remove `gradient_checkpointing_kwargs`",
            )
        fsdp_config = ctx.get("fsdp_config")
        if (isinstance(fsdp_config, dict) and fsdp_config.get("activation_checkpointing")) or str(
            ctx.options.env.get("FSDP_ACTIVATION_CHECKPOINTING", "false")
        ).lower() in {"1", "true", "yes"}:
            yield Finding(
                key="fsdp_config.activation_checkpointing",
                also=("fsdp_config", "use_kt"),
                message="FSDP `activation_checkpointing` with `use_kt`: "
                + lf_stops("Disable FSDP activation checkpointing when using KTransformers."),
                hint="turn off `activation_checkpointing` in `fsdp_config` (and FSDP_ACTIVATION_CHECKPOINTING)",
            )
        gpu = "retain" if ctx.flag("disable_gradient_checkpointing") else "recompute"
        if ctx.get("kt_cpu_activation") == "recompute" and gpu == "retain":
            yield Finding(
                key="kt_cpu_activation",
                also=("disable_gradient_checkpointing",),
                message="`kt_cpu_activation: recompute` with `disable_gradient_checkpointing: true`: "
                + lf_stops("`kt_cpu_activation: recompute` requires GPU gradient checkpointing."),
                hint="set `disable_gradient_checkpointing: false` or `kt_cpu_activation: retain`",
            )


#: ``kt_config`` entries LLaMA-Factory derives from its own arguments (``_KT_DERIVED_KEYS``).
_KT_DERIVED = (
    "enabled", "kt_activation_policy", "kt_expert_checkpoint_path", "kt_full_weight_grad", "kt_lora_alpha",
    "kt_lora_dropout", "kt_lora_expert_intermediate_size", "kt_lora_expert_num", "kt_lora_rank",
    "kt_non_expert_weight_path", "kt_skip_expert_loading", "kt_train_mode", "kt_use_lora_experts", "kt_weight_path",
)  # fmt: skip


class KTConfig(Rule):
    """A ``kt_config`` that is not a flat mapping, repeats settings LLaMA-Factory derives, or has a bad capacity.

    LLaMA-Factory fills ``kt_lora_rank``, ``kt_train_mode``, ``kt_weight_path`` and similar entries from its own
    arguments and refuses to have them overridden: "These `kt_config` values are derived from LLaMA-Factory
    arguments: […]". ``kt_config`` must be a mapping ("LLaMA-Factory `kt_config` must be a flat mapping.") and
    ``kt_model_max_length`` a positive integer (``model_args.py``).

    Bad:

    ```yaml
    use_kt: true
    kt_config:
      kt_lora_rank: 16
    ```

    Good:

    ```yaml
    use_kt: true
    lora_rank: 16
    ```
    """

    code = "MODEL008"
    name = "kt-config"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        raw = ctx.get("kt_config")
        if raw is None or not ctx.flag("use_kt"):
            return
        if not isinstance(raw, dict):
            yield Finding(
                key="kt_config",
                message="`kt_config` is not a mapping: " + lf_stops("LLaMA-Factory `kt_config` must be a flat mapping."),
                hint="write `kt_config` as a YAML mapping of KTransformers settings",
            )
            return
        derived = sorted(k for k in raw if k in _KT_DERIVED and not (k in ("enabled", "kt_skip_expert_loading") and raw[k] is True))
        if derived:
            yield Finding(
                key="kt_config",
                message=f"`kt_config` sets {keys_text(derived)}, which LLaMA-Factory derives itself: "
                + lf_stops(f"These `kt_config` values are derived from LLaMA-Factory arguments: {derived}."),
                hint="use the LLaMA-Factory keys instead (`lora_rank`, `lora_alpha`, `finetuning_type`, "
                "`kt_weight_path`, ...) and remove these entries",
            )
        if "kt_model_max_length" in raw:
            cap = raw["kt_model_max_length"]
            try:
                ok = not isinstance(cap, bool) and int(cap) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                yield Finding(
                    key="kt_config.kt_model_max_length",
                    also=("kt_config",),
                    message=f"`kt_config.kt_model_max_length: {cap}`: "
                    + lf_stops("`kt_model_max_length` must be a positive integer."),
                    hint="use a positive token count, at least `cutoff_len`",
                )


class KTFinetuningType(Rule):
    """KTransformers with a ``finetuning_type`` it cannot train, or an adapter folder outside the adapter.

    KTransformers trains LoRA adapters or the full model: "KTransformers supports LoRA and full-parameter
    finetuning." (``model_args.py``), and ``model/adapter.py`` refuses OFT ("KTransformers only supports LoRA
    finetuning."). ``adapter_folder`` must stay inside the adapter directory ("`adapter_folder` must stay inside
    the KT adapter directory.").

    Bad:

    ```yaml
    use_kt: true
    finetuning_type: freeze
    ```

    Good:

    ```yaml
    use_kt: true
    finetuning_type: lora
    ```
    """

    code = "MODEL009"
    name = "kt-finetuning-type"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.flag("use_kt"):
            return
        if ctx.finetuning_type not in ("lora", "full"):
            yield Finding(
                key="finetuning_type",
                also=("use_kt",),
                message=f"`finetuning_type: {ctx.finetuning_type}` with `use_kt`: "
                + lf_stops("KTransformers supports LoRA and full-parameter finetuning."),
                hint="use `finetuning_type: lora` (or `full`) with KTransformers",
            )
        folder = ctx.get("adapter_folder")
        if isinstance(folder, str) and folder and adapters(ctx):
            root = os.path.normpath("/adapter")
            target = os.path.normpath(os.path.join(root, folder))
            if os.path.commonpath((root, target)) != root:
                yield Finding(
                    key="adapter_folder",
                    also=("use_kt",),
                    message=f"`adapter_folder: {folder}` leaves the adapter directory: "
                    + lf_stops("`adapter_folder` must stay inside the KT adapter directory."),
                    hint="give a sub-folder of `adapter_name_or_path`",
                )


class KTConfigWithoutKT(Rule):
    """Chat, export or eval with ``kt_config`` but without ``use_kt: true``.

    ``configure_kt_loading`` (``model_args.py``) raises "`kt_config` requires `use_kt: true`." and, with
    ``use_kt``, "KTransformers inference requires `infer_backend: huggingface`.".

    Bad:

    ```yaml
    # cfglint --command infer
    model_name_or_path: deepseek-ai/DeepSeek-V3
    kt_config:
      kt_num_gpu_experts: 8
    ```

    Good:

    ```yaml
    # cfglint --command infer
    model_name_or_path: deepseek-ai/DeepSeek-V3
    use_kt: true
    kt_config:
      kt_num_gpu_experts: 8
    ```
    """

    code = "MODEL010"
    name = "kt-inference-config"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if command(ctx) not in INFER_COMMANDS | {"eval"}:
            return
        if ctx.get("kt_config") is not None and not ctx.flag("use_kt"):
            yield Finding(
                key="kt_config",
                message="`kt_config` without `use_kt: true`: " + lf_stops("`kt_config` requires `use_kt: true`."),
                hint="set `use_kt: true`, or remove `kt_config`",
            )
        backend = ctx.get("infer_backend")
        if ctx.flag("use_kt") and isinstance(backend, str) and backend != "huggingface":
            yield Finding(
                key="infer_backend",
                also=("use_kt",),
                message=f"`infer_backend: {backend}` with `use_kt`: "
                + lf_stops("KTransformers inference requires `infer_backend: huggingface`."),
                hint="use `infer_backend: huggingface` with KTransformers",
            )


class KTSFTGenerate(Rule):
    """KTransformers SFT with ``predict_with_generate`` or ``compute_accuracy``.

    The SFT workflow raises "`predict_with_generate` is not supported in KTransformers SFT yet." / "`compute_accuracy`
    is not supported in KTransformers SFT yet." (``train/sft/workflow.py``) once the
    model has loaded.

    Bad:

    ```yaml
    stage: sft
    use_kt: true
    compute_accuracy: true
    ```

    Good:

    ```yaml
    stage: sft
    use_kt: true
    ```
    """

    code = "MODEL011"
    name = "kt-sft-generate"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "sft" or not ctx.flag("use_kt"):
            return
        key = "predict_with_generate" if ctx.flag("predict_with_generate") else "compute_accuracy" if ctx.flag("compute_accuracy") else None
        if key:
            yield Finding(
                key=key,
                also=("use_kt",),
                message=f"`{key}` with `use_kt`: LLaMA-Factory fails after loading the model with "
                f'"`{key}` is not supported in KTransformers SFT yet."',
                hint=f"remove `{key}`; evaluate the result without KTransformers",
            )


class InferBackendHF(Rule):
    """``infer_backend: vllm`` or ``sglang`` for training or ``llamafactory-cli eval``.

    vLLM and SGLang serve chat, API and web UI only. ``get_train_args`` and ``get_eval_args`` raise "vLLM/SGLang
    backend is only available for API, CLI and Web." (``parser.py``).

    Bad:

    ```yaml
    do_train: true
    infer_backend: vllm
    ```

    Good:

    ```yaml
    do_train: true
    ```
    """

    code = "MODEL012"
    name = "infer-backend-hf-only"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if command(ctx) not in ("train", "eval"):
            return
        backend = ctx.get("infer_backend")
        if isinstance(backend, str) and backend != "huggingface":
            yield Finding(
                key="infer_backend",
                message=f"`infer_backend: {backend}` with `llamafactory-cli {command(ctx)}`: "
                + lf_stops("vLLM/SGLang backend is only available for API, CLI and Web."),
                hint="remove `infer_backend` here; use vLLM with `llamafactory-cli chat/api/webchat` or "
                "`scripts/vllm_infer.py`",
                fix=remove_key(ctx, "infer_backend", "remove `infer_backend`", safe=False),
            )


class Zero3Backends(Rule):
    """Unsloth or KTransformers under DeepSpeed ZeRO-3.

    Both replace the model's modules with kernels that ZeRO-3's parameter partitioning cannot shard.
    ``get_train_args`` raises "Unsloth is incompatible with DeepSpeed ZeRO-3." / "KTransformers is incompatible
    with DeepSpeed ZeRO-3.".

    Bad:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    use_unsloth: true
    deepspeed: ds_z3_config.json
    ```

    Good:

    ```yaml
    # ds_z2_config.json: {"zero_optimization": {"stage": 2}}
    use_unsloth: true
    deepspeed: ds_z2_config.json
    ```
    """

    code = "MODEL013"
    name = "zero3-backends"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.zero3:
            return
        for key, name in (("use_unsloth", "Unsloth"), ("use_kt", "KTransformers")):
            if ctx.flag(key):
                yield Finding(
                    key=key,
                    also=("deepspeed",),
                    message=f"`{key}` under DeepSpeed ZeRO-3: " + lf_stops(f"{name} is incompatible with DeepSpeed ZeRO-3."),
                    hint=f"use ZeRO-2 (`ds_z2_config.json`) with {name}, or turn `{key}` off",
                )


def _uses_trackio(ctx: Context) -> bool:
    loggers, _ = report_to(ctx)
    return "trackio" in loggers


class TrackioProject(Rule):
    """``report_to: trackio`` with an empty ``project``.

    ``_verify_trackio_args`` (``parser.py``) raises "`--project` must be specified when using Trackio.". ``project``
    defaults to ``huggingface``, so this only happens when it is set
    to an empty value.

    Bad:

    ```yaml
    report_to: trackio
    project: ""
    ```

    Good:

    ```yaml
    report_to: trackio
    project: llama3-sft
    ```
    """

    code = "MODEL014"
    name = "trackio-project"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and _uses_trackio(ctx) and not ctx.get("project"):
            yield Finding(
                key="project",
                also=("report_to",),
                message="`report_to` includes trackio but `project` is empty: "
                + lf_stops("`--project` must be specified when using Trackio."),
                hint="set `project` to the Trackio project name",
            )


class TrackioSettings(Rule):
    """Trackio settings LLaMA-Factory warns about: a ``trackio_space_id`` that is not ``org/space``, no ``run_name``.

    ``_verify_trackio_args`` (``parser.py``) logs "trackio_space_id 'X' should typically be in format 'org/space'
    for Hugging Face Spaces deployment." and suggests a ``run_name``.

    Bad:

    ```yaml
    report_to: trackio
    project: llama3-sft
    trackio_space_id: my-dashboard
    ```

    Good:

    ```yaml
    report_to: trackio
    project: llama3-sft
    trackio_space_id: my-org/my-dashboard
    run_name: lora-r16-lr1e-4
    ```
    """

    code = "MODEL015"
    name = "trackio-settings"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not _uses_trackio(ctx):
            return
        space = ctx.get("trackio_space_id")
        if isinstance(space, str) and space and space != "trackio" and "/" not in space:
            yield Finding(
                key="trackio_space_id",
                message=f"`trackio_space_id: {space}` is not in `org/space` form: a Hugging Face Space id needs the "
                "owner, so the dashboard may not be deployed where you expect",
                hint=f"write `trackio_space_id: <your-org>/{space}`",
            )
        if not ctx.get("run_name"):
            yield Finding(
                key="run_name",
                also=("report_to",),
                severity=Severity.INFO,
                message="no `run_name`: Trackio names the run automatically, which makes runs hard to tell apart",
                hint="set `run_name` to something that identifies this run",
            )


class FP8AllGatherWithoutFP8(Rule):
    """``fp8_enable_fsdp_float8_all_gather`` without ``fp8: true``.

    ``get_train_args`` logs "fp8_enable_fsdp_float8_all_gather requires fp8=True. Setting fp8=True." but sets
    ``model_args.fp8``, which nothing reads; the trainer checks ``training_args.fp8``, which stays false
    (``parser.py``, ``train/fp8_utils.py``). The run trains without FP8 although the
    log says otherwise.

    Bad:

    ```yaml
    fsdp: full_shard auto_wrap
    fp8_enable_fsdp_float8_all_gather: true
    ```

    Good:

    ```yaml
    fsdp: full_shard auto_wrap
    fp8: true
    fp8_enable_fsdp_float8_all_gather: true
    ```
    """

    code = "MODEL016"
    name = "fp8-all-gather-without-fp8"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or env_enabled(ctx, "USE_MCA") or env_enabled(ctx, "USE_MEGATRON_BRIDGE"):
            return
        if ctx.flag("fp8_enable_fsdp_float8_all_gather") and not ctx.flag("fp8"):
            yield Finding(
                key="fp8_enable_fsdp_float8_all_gather",
                also=("fp8",),
                message="`fp8_enable_fsdp_float8_all_gather` without `fp8: true`: LLaMA-Factory logs \"Setting "
                'fp8=True" but does not enable FP8 training, so the run trains in bf16/fp16',
                hint="set `fp8: true` explicitly (FP8 needs a Hopper or newer GPU)",
                fix=set_key(ctx, "fp8", "true", "set `fp8: true`", after="fp8_enable_fsdp_float8_all_gather", safe=False),
            )


class ExportNeedsDir(Rule):
    """``llamafactory-cli export`` without ``export_dir``.

    ``export_model`` (``train/tuner.py``) raises "Please specify `export_dir` to save model.".

    Bad:

    ```yaml
    # cfglint --command export
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    adapter_name_or_path: saves/qwen2.5-7b/lora/sft
    ```

    Good:

    ```yaml
    # cfglint --command export
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    adapter_name_or_path: saves/qwen2.5-7b/lora/sft
    export_dir: saves/qwen2.5-7b/merged
    ```
    """

    code = "MODEL017"
    name = "export-needs-dir"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if command(ctx) == "export" and ctx.get("export_dir") in (None, ""):
            yield Finding(
                key="export_dir",
                also=("model_name_or_path",),
                message="no `export_dir`: " + lf_stops("Please specify `export_dir` to save model."),
                hint="set `export_dir` to the directory the merged model is written to",
            )


class ExportMergeQuantized(Rule):
    """Exporting adapters together with quantization.

    Adapters are merged into the base weights on export, which quantized weights do not allow. ``export_model``
    raises "Please merge adapters before quantizing the model." with ``export_quantization_bit``, and "Cannot
    merge adapters to a quantized model." when the model is loaded with ``quantization_bit``
    (``train/tuner.py``). Merge first, then quantize the merged model in a second
    export.

    Bad:

    ```yaml
    # cfglint --command export
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    adapter_name_or_path: saves/qwen2.5-7b/lora/sft
    quantization_bit: 4
    export_dir: saves/qwen2.5-7b/merged
    ```

    Good:

    ```yaml
    # cfglint --command export
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    adapter_name_or_path: saves/qwen2.5-7b/lora/sft
    export_dir: saves/qwen2.5-7b/merged
    ```
    """

    code = "MODEL018"
    name = "export-merge-quantized"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if command(ctx) != "export" or ctx.get("adapter_name_or_path") is None:
            return
        if ctx.get("export_quantization_bit") is not None:
            yield Finding(
                key="export_quantization_bit",
                also=("adapter_name_or_path",),
                message="`export_quantization_bit` with `adapter_name_or_path`: "
                + lf_stops("Please merge adapters before quantizing the model."),
                hint="export the merged model first, then quantize it in a second export without the adapter",
            )
        elif ctx.get("quantization_bit") is not None:
            yield Finding(
                key="quantization_bit",
                also=("adapter_name_or_path",),
                message="`quantization_bit` with `adapter_name_or_path` on export: LLaMA-Factory stops after loading "
                'the model with "Cannot merge adapters to a quantized model."',
                hint="remove `quantization_bit`: merge into the unquantized model (use `export_quantization_bit` "
                "afterwards for a quantized export)",
            )


class UnslothOFT(Rule):
    """``use_unsloth`` with ``finetuning_type: oft``.

    Unsloth patches LoRA layers only; ``model/adapter.py`` raises "Unsloth is currently not supported for OFT."
    when it creates the adapter.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: oft
    use_unsloth: true
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: lora
    use_unsloth: true
    ```
    """

    code = "MODEL019"
    name = "unsloth-oft"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_training and ctx.flag("use_unsloth") and ctx.finetuning_type == "oft" and not ctx.flag("use_kt"):
            yield Finding(
                key="use_unsloth",
                also=("finetuning_type",),
                message="`use_unsloth` with `finetuning_type: oft`: LLaMA-Factory stops after loading the model "
                'with "Unsloth is currently not supported for OFT."',
                hint="use `finetuning_type: lora` with Unsloth, or turn `use_unsloth` off",
            )

