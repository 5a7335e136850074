"""From what the user gave `cfgtune auto` (a model, maybe a base config and data, the device) to a search.

This is where the fixed part of every trial is decided: the architecture, the fine-tuning method and its
settings from the base config, ``cutoff_len`` (from the dataset statistics when data is given, else from the
config), the global batch, the device and its memory ceiling. Every problem is a :class:`SetupError` with a
message that names the option or the file, raised before any trial costs time.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config.resolved import attention_kernel, precision_of
from tuner.search.sizes import format_bytes
from tuner.search.space import (
    DEFAULT_RANKS,
    Point,
    SearchSpace,
    SpaceError,
    micro_batch_choices,
)
from tuner.trial.spec import TrialSpec

if TYPE_CHECKING:
    from tuner.config.document import Document
    from tuner.models.resolve import ModelInfo

DEFAULT_GLOBAL_BATCH = 16
DEFAULT_CUTOFF = 2048  # LLaMA-Factory's default
DEFAULT_CPU_BUDGET = 4 * 1024**3
CUTOFF_MULTIPLE = 64

FINETUNING_TYPES = ("lora", "freeze", "full")
MULTI_GPU_DISTS_LORA = ("ddp", "zero2", "zero3", "zero3_offload")
MULTI_GPU_DISTS_FULL = ("ddp", "zero2", "zero2_offload", "zero3", "zero3_offload")


class SetupError(Exception):
    """Input `cfgtune auto` cannot tune with; one line for the user (exit 2)."""


@dataclass
class AutoOptions:
    model: str | None = None
    config: Path | None = None
    dataset_dir: str | None = None
    dataset: str | None = None
    tokenizer: str | None = None
    cutoff_len: int | None = None
    gpus: int = 1
    device: str = "cuda"
    memory_budget: int | None = None  # bytes, CPU mode
    vram_ceiling: float = 0.90
    global_batch: int | None = None
    ranks: tuple[int, ...] = DEFAULT_RANKS
    liger: bool = True
    zero: bool = True
    output_dir: Path | None = None
    storage: str | None = None
    study: str | None = None
    resume: bool = False
    seed: int | None = 0
    target_ci: float = 0.02  # a trial measures until its 95% interval of tokens/s is within this of the median ...
    measure_time_s: float = 30.0  # ... or until its steps took this long
    cwd: Path = field(default_factory=Path.cwd)


@dataclass
class Device:
    kind: str  # cuda | cpu
    memory_total: int  # per device: the smallest GPU used, or the CPU budget
    description: str
    profile: str | None = None  # hardware profile name, for the linter
    memory_method: str = ""


@dataclass
class Prepared:
    options: AutoOptions
    model: ModelInfo
    device: Device
    space: SearchSpace
    baseline: Point
    ceiling_bytes: int
    output_dir: Path
    storage: str
    study_name: str
    base_doc: Document | None
    base_text: str | None
    generated_text: str | None
    cutoff_source: str
    dataset_dir: str | None
    notes: list[str] = field(default_factory=list)
    template: str | None = None  # the chat template a tuned config without one gets (the model's, when known)

    def meta(self) -> dict[str, Any]:
        """What the study stores so that a resume, a worker on another node, or a report can rebuild the run."""
        return {
            "model": self.model.name,
            "model_describe": self.model.describe(),
            "hardware": self.device.description,
            "device": self.device.kind,
            "memory_total_bytes": self.device.memory_total,
            "memory_method": self.device.memory_method,
            "ceiling_fraction": self.options.vram_ceiling,
            "ceiling_bytes": self.ceiling_bytes,
            "baseline": self.baseline.to_dict(),
            "cutoff_source": self.cutoff_source,
        }


# -- device ------------------------------------------------------------------------------------------------------

CUDA_METHOD = "the larger of PyTorch's peak reserved memory and the NVML-observed process total"
CPU_METHOD = "peak RSS of the trial process (VmHWM)"


def detect_device(opts: AutoOptions) -> Device:
    """The device trials run on and the memory each may use; no GPU without ``--device cpu`` is an error."""
    if opts.device == "cpu":
        if opts.gpus != 1:
            raise SetupError("--device cpu runs one trial process: drop --gpus (or use --gpus 1)")
        budget = opts.memory_budget or DEFAULT_CPU_BUDGET
        try:
            import psutil

            avail = psutil.virtual_memory().available
        except Exception:  # noqa: BLE001
            avail = None
        desc = f"CPU ({os.cpu_count()} cores), memory budget {format_bytes(budget)}"
        if avail is not None and budget > avail:
            desc += f" (more than the {format_bytes(avail)} available now)"
        return Device("cpu", budget, desc, None, CPU_METHOD)
    if opts.memory_budget is not None:
        raise SetupError("--memory-budget is for --device cpu; on a GPU the ceiling is --vram-ceiling of its memory")
    from tuner.hardware.detect import detect_gpus

    det = detect_gpus()
    gpus = [g for g in det.gpus if g.error is None]
    if not gpus:
        count, name, total = _torch_cuda()
        if not count:
            reason = det.reason or "NVML lists no usable GPU"
            raise SetupError(
                f"no GPU found ({reason}). cfgtune auto measures real trials on the GPU it tunes for; "
                "to try it on this machine, run the CPU demo with --device cpu (and --memory-budget SIZE)"
            )
        if opts.gpus > count:
            raise SetupError(f"--gpus {opts.gpus}, but CUDA sees {count} GPU(s)")
        return Device("cuda", total, f"{opts.gpus}× {name} ({format_bytes(total)})", None, CUDA_METHOD)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible not in (None, ""):
        idx = [int(x) for x in visible.split(",") if x.strip().isdigit()]
        chosen = [g for g in gpus if g.index in idx] or gpus
    else:
        chosen = gpus
    if opts.gpus > len(chosen):
        raise SetupError(f"--gpus {opts.gpus}, but this machine has {len(chosen)} usable GPU(s)")
    used = chosen[: opts.gpus]
    total = min(g.total_bytes for g in used)
    prof = used[0].profile
    name = used[0].name
    desc = f"{opts.gpus}× {name} ({format_bytes(total)})" + (f", profile {prof.name}" if prof else "")
    return Device("cuda", total, desc, prof.name if prof else None, CUDA_METHOD)


def _torch_cuda() -> tuple[int, str, int]:
    """CUDA as torch sees it, for machines without NVML bindings."""
    try:
        import torch
    except ImportError:
        return 0, "", 0
    if not torch.cuda.is_available():
        return 0, "", 0
    n = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    return n, props.name, int(props.total_memory)


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


# -- base config -----------------------------------------------------------------------------------------------


def load_base(path: Path) -> Document:
    from tuner.config.loader import load_config

    return load_config(path)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def base_precision(data: dict[str, Any]) -> str:
    return precision_of(data)


def base_attention(data: dict[str, Any], device: str, model_type: str | None = None) -> str:
    """The base config's attention as a trial's ``attn_implementation`` (``tuner.config.resolved``): on the CPU
    flash-attn is never available."""
    kernel = attention_kernel(data.get("flash_attn"), model_type, fa2_available=device == "cuda")
    return {"eager": "eager", "fa2": "flash_attention_2", "fa3": "flash_attention_3"}.get(kernel, "sdpa")


def base_dist(doc: Document, cwd: Path) -> str | None:
    """The strategy the base config's DeepSpeed JSON asks for, as a search-space name (None: no DeepSpeed)."""
    value = doc.data.get("deepspeed")
    if value in (None, ""):
        return None
    data: dict[str, Any] | None = value if isinstance(value, dict) else None
    if data is None:
        from tuner.config.deepspeed import resolve_deepspeed_path

        found, _ = resolve_deepspeed_path(str(value), doc.path, cwd)
        if found is None:
            return None
        try:
            data = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    zero = data.get("zero_optimization") if isinstance(data, dict) else None
    if not isinstance(zero, dict):
        return "ddp"
    stage = zero.get("stage", 0)
    offload = any(isinstance(zero.get(k), dict) and str(zero[k].get("device", "none")).lower() not in ("none", "")
                  for k in ("offload_optimizer", "offload_param"))  # fmt: skip
    name = {0: "ddp", 1: "zero1", 2: "zero2", 3: "zero3"}.get(stage if isinstance(stage, int) else -1, "ddp")
    return f"{name}_offload" if offload and name in ("zero2", "zero3") else name


# -- cutoff from the data --------------------------------------------------------------------------------------


def dataset_cutoff(doc: Document, opts: AutoOptions, model_ref: str) -> tuple[int | None, str]:
    """``cutoff_len`` from the token statistics of the config's datasets (p90, rounded up to a multiple of 64,
    the same rule as `cfgtune data` and DATA003), or None and why not."""
    from tuner.config.document import InputError
    from tuner.config.context import Context, LintOptions

    try:
        ctx = Context(doc, LintOptions(dataset_dir=opts.dataset_dir, tokenizer=opts.tokenizer, model=model_ref,
                                       cwd=opts.cwd, env=dict(os.environ)))  # fmt: skip
        from tuner.data.lint_stats import request_from_context
        from tuner.data.pipeline import compute

        req = request_from_context(ctx)
        stats = compute(req)
    except (LookupError, InputError) as exc:
        return None, str(exc.args[0] if exc.args else exc)
    except Exception as exc:  # noqa: BLE001 - statistics are a refinement; the config's value still works
        return None, f"dataset statistics failed ({type(exc).__name__}: {exc})"
    if stats.train.count == 0:
        return None, "the datasets yielded no training sample"
    from tuner.cli.tune_data import suggested_cutoff

    cut = suggested_cutoff(stats)
    if cut is None:
        return None, "no training sample"
    p90 = stats.train.p(90)
    return cut, f"p90 of {stats.train.count} training samples is {p90:.0f} tokens, rounded up to a multiple of {CUTOFF_MULTIPLE}"


# -- the whole setup -------------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    from tuner.launch.emit import safe_name

    return safe_name(text)


def prepare(opts: AutoOptions) -> Prepared:
    from tuner.config.document import InputError
    from tuner.models.resolve import ModelError, resolve_model

    if not 0.0 < opts.vram_ceiling <= 1.0:
        raise SetupError(f"--vram-ceiling must be a fraction in (0, 1], got {opts.vram_ceiling}")
    notes: list[str] = []
    doc = None
    base_text = None
    if opts.config is not None:
        try:
            doc = load_base(opts.config)
        except InputError as exc:
            raise SetupError(str(exc)) from None
        base_text = doc.text
    data: dict[str, Any] = dict(doc.data) if doc is not None else {}
    spec_text = opts.model or data.get("model_name_or_path")
    if not spec_text:
        raise SetupError("no model: pass --model SPEC (a catalog alias, a model directory, or a cached hub id)")
    try:
        model = resolve_model(str(spec_text), base_dir=opts.config.parent if opts.config else None, cwd=opts.cwd)
    except ModelError as exc:
        raise SetupError(str(exc.args[0] if exc.args else exc)) from None

    device = detect_device(opts)
    ceiling = int(opts.vram_ceiling * device.memory_total)

    ft = str(data.get("finetuning_type") or "lora")
    if ft not in FINETUNING_TYPES:
        raise SetupError(f"{opts.config}: finetuning_type `{ft}`: cfgtune auto tunes lora, freeze and full")
    stage = str(data.get("stage") or "sft")
    if stage not in ("sft", "pt"):
        notes.append(f"stage `{stage}`: trials measure single-sequence causal-LM steps, so pairwise stages use more "
                     "memory than measured; keep headroom")  # fmt: skip

    # -- batch ------------------------------------------------------------------------------------------------
    world = opts.gpus
    if opts.global_batch is not None:
        global_batch = opts.global_batch
    elif doc is not None and (_int(data.get("per_device_train_batch_size")) or _int(data.get("gradient_accumulation_steps"))):
        global_batch = (_int(data.get("per_device_train_batch_size")) or 8) * (_int(data.get("gradient_accumulation_steps")) or 1) * world
        notes.append(f"global batch {global_batch} from the base config (micro batch × accumulation × {world})")
    else:
        global_batch = DEFAULT_GLOBAL_BATCH * world if DEFAULT_GLOBAL_BATCH % world else DEFAULT_GLOBAL_BATCH
        notes.append(f"global batch {global_batch} by default (pass --global-batch to change it)")
    try:
        micro = micro_batch_choices(global_batch, world)
    except SpaceError as exc:
        raise SetupError(str(exc)) from None

    # -- what the generated config would say, and the dataset ----------------------------------------------------
    model_ref = _model_reference(model, str(spec_text), opts.cwd)
    output_dir = opts.output_dir or Path("cfgtune-runs") / _safe(model.name)
    dataset_dir = opts.dataset_dir or (str(data["dataset_dir"]) if data.get("dataset_dir") else None)
    dataset = opts.dataset or (str(data["dataset"]) if data.get("dataset") else None)
    if dataset is None:
        # LLaMA-Factory reads ./data when no dataset_dir is given, so a generated config must name a dataset there
        where = dataset_dir or "data"
        dataset = _first_local_dataset(Path(where) if Path(where).is_absolute() else opts.cwd / where)
        if dataset:
            notes.append(f"dataset `{dataset}`: the first local entry of {where}/dataset_info.json (pass --dataset to choose)")
    generated_text = None
    template = model.template or model.family_template
    if doc is None:
        from tuner.launch.emit import generate_config

        if template is None:
            template = "default"
            notes.append(f"template `default`: no chat template is known for {model.name}; set `template` to the "
                         "model's own if it has one")  # fmt: skip
        generated_text = generate_config(
            model_path=model_ref, finetuning_type="lora", dataset=dataset, dataset_dir=dataset_dir,
            template=template, output_dir=f"saves/{_safe(model.name)}/lora/sft", precision="bf16",
            use_cpu=device.kind == "cpu",
        )  # fmt: skip
    elif opts.dataset and opts.dataset != data.get("dataset"):
        raise SetupError(f"--dataset {opts.dataset}: the base config names dataset `{data.get('dataset')}`; edit the config instead")

    # -- cutoff ---------------------------------------------------------------------------------------------------
    if opts.cutoff_len is not None:
        cutoff, cutoff_source = opts.cutoff_len, "--cutoff-len"
    else:
        cutoff, cutoff_source = 0, ""
        if dataset and (dataset_dir or doc is not None):
            from tuner.config.loader import parse_config

            draft = doc if doc is not None else parse_config(generated_text or "", output_dir / "tuned.yaml")
            cut, why = dataset_cutoff(draft, opts, model_ref)
            if cut is not None:
                cutoff, cutoff_source = cut, f"dataset statistics: {why}"
            else:
                notes.append(f"cutoff_len not from the data: {why}")
        if not cutoff:
            cfg_cut = _int(data.get("cutoff_len"))
            cutoff, cutoff_source = (cfg_cut, "the base config") if cfg_cut else (DEFAULT_CUTOFF, "LLaMA-Factory's default")
    max_pos = model.arch.max_position_embeddings
    if max_pos and cutoff > max_pos:
        notes.append(f"cutoff_len {cutoff} capped at the model's max_position_embeddings {max_pos}")
        cutoff = max_pos

    # -- the space --------------------------------------------------------------------------------------------------
    lora = ft == "lora"
    ranks = tuple(opts.ranks) if lora else (0,)
    ligers: tuple[bool, ...] = (False,)
    if opts.liger and device.kind == "cuda" and liger_installed():
        ligers = (False, True)
    elif opts.liger and device.kind == "cuda":
        notes.append("Liger kernel not searched: liger-kernel is not installed (pip install liger-kernel)")
    dists: tuple[str, ...] = ("none",)
    if world > 1:
        if opts.zero and deepspeed_installed():
            dists = MULTI_GPU_DISTS_LORA if lora else MULTI_GPU_DISTS_FULL
        else:
            dists = ("ddp",)
            if opts.zero:
                notes.append("ZeRO not searched: deepspeed is not installed; trials use plain DDP")
    target = data.get("lora_target", "all")
    if isinstance(target, list):
        target = ",".join(str(t) for t in target)
    extra = data.get("additional_target") if ft == "lora" else None
    if isinstance(extra, list):
        extra = ",".join(str(t) for t in extra)
    trial_template = TrialSpec(
        arch=model.arch,
        model_name=model.name,
        finetuning_type=ft,
        lora_rank=_int(data.get("lora_rank")) or 8,
        lora_target=str(target or "all"),
        lora_dropout=float(data.get("lora_dropout") or 0.0),
        use_dora=bool(data.get("use_dora")),
        additional_target=str(extra or ""),
        freeze_trainable_layers=_int(data.get("freeze_trainable_layers")) or 2,
        quantization_bit=_int(data.get("quantization_bit")),
        upcast_layernorm=data.get("upcast_layernorm") is True,
        cutoff_len=int(cutoff),
        attn_implementation=base_attention(data, device.kind, model.arch.model_type),
        precision=base_precision(data) if doc is not None else "bf16",
        optim=_optim(data.get("optim")),
        world_size=world,
        device=device.kind,
        memory_limit_bytes=ceiling,
        seed=opts.seed or 0,
        target_rel_ci=opts.target_ci,
        measure_time_s=opts.measure_time_s,
    )
    try:
        space = SearchSpace(template=trial_template, global_batch=global_batch, micro_batches=micro, ranks=ranks,
                            gcs=(True, False), ligers=ligers, dists=dists)  # fmt: skip
        if world == 1 and device.kind == "cuda" and opts.zero:
            space = _single_gpu_offload(space, ceiling, notes)
    except SpaceError as exc:
        raise SetupError(str(exc)) from None
    bdist = base_dist(doc, opts.cwd) if doc is not None else None
    if world > 1 and bdist is None:
        bdist = "ddp"
    baseline = space.baseline(rank=_int(data.get("lora_rank")), dist=bdist)

    storage = opts.storage
    if storage is None:
        from tuner.search.study import default_storage

        storage = default_storage(output_dir)
    study_name = opts.study or f"cfgtune-{_safe(model.name)}"
    return Prepared(
        options=opts, model=model, device=device, space=space, baseline=baseline, ceiling_bytes=ceiling,
        output_dir=output_dir, storage=storage, study_name=study_name, base_doc=doc, base_text=base_text,
        generated_text=generated_text, cutoff_source=cutoff_source, dataset_dir=dataset_dir, notes=notes,
        template=template if doc is None or model.template else None,
    )  # fmt: skip


OFFLOAD_DISTS = ("zero2_offload", "zero3_offload")


def _single_gpu_offload(space: SearchSpace, ceiling: int, notes: list[str]) -> SearchSpace:
    """One GPU: when even the leanest point (micro batch 1, the lowest rank, checkpointing and Liger on where
    searched) is estimated over the ceiling, ZeRO-2/3 with CPU offload become a dimension (DeepSpeed on one GPU
    only saves memory by offloading: there is no other rank to partition with)."""
    from dataclasses import replace

    from tuner.search.prune import estimate_peak

    lean = Point(space.micro_batches[0], space.ranks[0], True in space.gcs, True in space.ligers, "none")
    try:
        est = estimate_peak(space.spec(lean))
    except Exception:  # noqa: BLE001 - the estimator cannot size it: the trials will tell
        return space
    if est is None or est <= ceiling:
        return space
    if not deepspeed_installed():
        notes.append(f"the leanest configuration is estimated at {format_bytes(est)}, over the ceiling "
                     f"{format_bytes(ceiling)}: ZeRO offload to the CPU could fit it, but deepspeed is not installed")  # fmt: skip
        return space
    notes.append(f"the leanest configuration is estimated at {format_bytes(est)}, over the ceiling "
                 f"{format_bytes(ceiling)}: ZeRO-2/3 with CPU offload are searched on this one GPU")  # fmt: skip
    return replace(space, dists=("none", *OFFLOAD_DISTS))


def _optim(value: Any) -> str:
    from tuner.memory.setup import parse_optim

    return parse_optim(value)


def _model_reference(model: ModelInfo, spec: str, cwd: Path) -> str:
    """What ``model_name_or_path`` should say: the hub id for catalog and cache hits, else the directory."""
    if model.source == "config.json" and model.path is not None:
        p = Path(spec).expanduser()
        return spec if not p.is_absolute() and (cwd / p).resolve() == model.path.resolve() else str(model.path)
    return model.hub_id or spec


def _first_local_dataset(directory: Path) -> str | None:
    try:
        entries = json.loads((directory / "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entries, dict):
        return None
    for name, entry in entries.items():
        if isinstance(entry, dict) and "file_name" in entry and not any(
            k in entry for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
        ):
            return str(name)
    return None


def describe_space(space: SearchSpace) -> str:
    """The searched dimensions and their values, from the dimension table."""
    parts = []
    for dim in space.shown():
        values = space.values(dim)
        if dim.field == "micro":
            parts.append(f"micro batch {list(values)} (accumulation keeps the global batch {space.global_batch})")
        elif dim.field == "rank":
            parts.append(f"rank {list(values)} (alpha = 2 × rank)")
        elif len(values) > 1:
            parts.append(f"{dim.label} " + "/".join(dim.show(v) for v in values))
    return "; ".join(parts) + f" = {space.size} points"
