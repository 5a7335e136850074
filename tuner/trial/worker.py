"""One trial, in its own process: ``python -m tuner.trial.worker --spec spec.json --out result.json``.

It builds the model (:mod:`tuner.trial.build`) and runs optimizer steps of ``gradient_accumulation_steps``
micro-batches of random token ids of shape (batch, cutoff_len) with a real loss, timing micro-steps and optimizer
steps apart, until the tokens/s of the steps after the warm-up is known well enough: its 95% interval within
``target_rel_ci`` of the median (after at least ``measure_steps`` steps), or ``measure_time_s`` spent, or
``max_steps`` taken (:mod:`tuner.trial.stats`). The first ``warmup_steps`` are always skipped, and slower leading
steps after them are detected and skipped too. The peak memory is taken over every step. Whatever happens, it writes a
:class:`TrialResult` (atomically) before it exits, unless the process is killed outright; the parent
(:mod:`tuner.trial.runner`) classifies that case.

Under torchrun each rank trains; rank 0 writes the result with the maximum over ranks of every peak and time.
A rank that fails writes ``<out>.rank<N>`` and exits non-zero, so torchrun stops the others instead of leaving
them blocked in a collective.

``CFGTUNE_TRIAL_TEST_HOOK=<action>[@<phase>]`` makes the worker misbehave on purpose, for the tests of the
runner: action ``kill`` (SIGKILL itself), ``hang``, ``crash`` (SIGSEGV), ``raise`` (an exception), ``oom``
(a simulated out-of-memory error) or ``barrier`` (announce itself in the directory ``CFGTUNE_TRIAL_TEST_BARRIER``
names and wait, at most 90 s, until ``CFGTUNE_TRIAL_TEST_BARRIER_N`` trials (default 2) have: the multi-worker
tests use it so that every worker's first trial is running at once, however slowly the workers start); phase
``start`` (before torch is imported), ``build`` (after the model is built) or ``step`` (after the warm-up steps:
the default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tuner.trial.build import TrialSetupError, compute_dtype_name
from tuner.trial.distributed import MAX_GRAD_NORM, DistEnv, dist_env
from tuner.trial.probe import NvmlSampler, RssSampler, open_nvml_device, ru_maxrss_bytes
from tuner.trial.spec import TrialResult, TrialSpec
from tuner.trial.stats import converged, step_measurement

HOOK_ENV = "CFGTUNE_TRIAL_TEST_HOOK"
BARRIER_ENV = "CFGTUNE_TRIAL_TEST_BARRIER"
BARRIER_WAIT_S = 90.0
LEARNING_RATE = 1e-4


# -- test hooks ---------------------------------------------------------------------------------------------------


def _hook(phase: str) -> None:
    value = os.environ.get(HOOK_ENV, "")
    if not value:
        return
    action, _, when = value.partition("@")
    if (when or "step") != phase:
        return
    print(f"[cfgtune trial] test hook {action}@{phase}", file=sys.stderr, flush=True)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "hang":
        while True:
            time.sleep(3600)
    elif action == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "raise":
        raise RuntimeError(f"simulated failure ({HOOK_ENV}={value})")
    elif action == "barrier":
        _barrier()
    elif action == "oom":
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate 20.00 GiB (simulated by {HOOK_ENV}={value})"
        )


def _barrier() -> None:
    """Announce this trial in the barrier directory and wait until enough trials have (bounded, see above)."""
    folder = Path(os.environ.get(BARRIER_ENV, ""))
    if not str(folder) or not folder.is_dir():
        return
    need = int(os.environ.get(f"{BARRIER_ENV}_N", "2"))
    (folder / f"trial-{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_WAIT_S
    while len(list(folder.glob("trial-*"))) < need and time.monotonic() < deadline:
        time.sleep(0.1)


# -- pieces -------------------------------------------------------------------------------------------------------


def _sync(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def make_optimizer(spec: TrialSpec, params: list[Any], device: Any, *, deepspeed_offload: bool = False) -> Any:
    """The optimizer the Trainer would create for ``optim`` (no weight decay, as the Trainer's default)."""
    import torch

    name = spec.optim
    if deepspeed_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=LEARNING_RATE)
    if name in ("adamw_torch", "adamw_hf"):
        return torch.optim.AdamW(params, lr=LEARNING_RATE)
    if name == "adamw_torch_fused":
        return torch.optim.AdamW(params, lr=LEARNING_RATE, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=LEARNING_RATE)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=LEARNING_RATE, scale_parameter=False, relative_step=False)
    bnb_names = {
        "adamw_8bit": "AdamW8bit",
        "adamw_bnb_8bit": "AdamW8bit",
        "paged_adamw_8bit": "PagedAdamW8bit",
        "paged_adamw_32bit": "PagedAdamW32bit",
        "paged_adamw": "PagedAdamW",
    }
    if name in bnb_names:
        if device.type != "cuda":
            raise TrialSetupError(f"optim {name} (bitsandbytes) needs a CUDA device")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise TrialSetupError(f"optim {name} needs bitsandbytes, which is not importable here ({exc})") from exc
        return getattr(bnb.optim, bnb_names[name])(params, lr=LEARNING_RATE)
    raise TrialSetupError(
        f"optim {name!r} is not run by the trial runner (adamw_torch, adamw_torch_fused, adamw_8bit, "
        "paged_adamw_8bit, paged_adamw_32bit, adafactor, sgd)"
    )


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    text = str(exc)
    return "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _hf_deepspeed_config(ds_config: dict[str, Any] | None) -> Any:
    """transformers' ZeRO-3 switch: while this object lives, models are created partitioned (``zero.Init``).

    transformers holds it by weak reference, so the trial keeps it until the end (modeling code also asks
    ``is_deepspeed_zero3_enabled()`` during forward).
    """
    if ds_config is None or ds_config["zero_optimization"]["stage"] != 3:
        return None
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(ds_config)


# -- the trial ----------------------------------------------------------------------------------------------------


class Trial:
    """State of one trial while it runs, so that a failure still reports what was measured until then."""

    def __init__(self, spec: TrialSpec, env: DistEnv) -> None:
        self.spec = spec
        self.env = env
        self.t0 = time.perf_counter()
        self.extra: dict[str, Any] = {"world_size": spec.world_size}
        self.result = TrialResult(status="ok")
        self.device: Any = None
        self.rss = RssSampler()
        self.nvml: NvmlSampler | None = None
        self.hf_ds_config: Any = None

    # The measurement loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        spec, env = self.spec, self.env
        if spec.measure_steps < 1:
            raise TrialSetupError("measure_steps must be at least 1")
        _hook("start")
        if spec.device == "cuda":
            nvml_dev = open_nvml_device(env.local_rank)  # before CUDA starts: the baseline
            if nvml_dev is not None:
                self.nvml = NvmlSampler(nvml_dev)
                self.nvml.start()
        self.rss.start()

        import torch

        from tuner.trial.build import build
        from tuner.trial.distributed import deepspeed_config, init_process_group

        if spec.device == "cuda":
            if not torch.cuda.is_available():
                raise TrialSetupError("device cuda asked for, but torch sees no CUDA device")
            self.device = torch.device("cuda", env.local_rank)
            torch.cuda.set_device(self.device)
            self.result.device_name = torch.cuda.get_device_name(self.device)
        elif spec.device == "cpu":
            self.device = torch.device("cpu")
            self.result.device_name = f"cpu ({torch.get_num_threads()} threads)"
        else:
            raise TrialSetupError(f"device {spec.device!r}: cuda or cpu")
        device = self.device

        use_ds = spec.zero_stage is not None
        if use_ds and device.type != "cuda":
            raise TrialSetupError("DeepSpeed ZeRO trials need CUDA devices")
        if env.world_size != spec.world_size:
            raise TrialSetupError(
                f"the spec asks for world_size {spec.world_size} but {env.world_size} process(es) were started"
            )
        if env.is_distributed or use_ds:
            if use_ds:
                try:
                    import deepspeed
                except ImportError as exc:
                    raise TrialSetupError(
                        f"zero_stage {spec.zero_stage} needs DeepSpeed, which is not importable here ({exc})"
                    ) from exc
                deepspeed.init_distributed(dist_backend="nccl")
            else:
                init_process_group(env, device.type)
        torch.manual_seed(spec.seed + env.rank)

        ds_config = deepspeed_config(spec) if use_ds else None
        zero3 = use_ds and spec.zero_stage == 3
        self.hf_ds_config = _hf_deepspeed_config(ds_config)
        built = build(spec, device, zero3=zero3)
        model = built.model
        self.result.trainable_params = built.trainable_params
        self.result.total_params = built.total_params
        self.extra["notes"] = built.notes
        if built.lora_targets:
            self.extra["lora_targets"] = built.lora_targets
        self.extra["attn_implementation"] = getattr(model.config, "_attn_implementation", spec.attn_implementation)
        self.extra["rss_after_build_bytes"] = self.rss.read()
        if device.type == "cuda":
            self.extra["allocated_after_build_bytes"] = int(torch.cuda.memory_allocated(device))
        _hook("build")

        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise TrialSetupError("nothing to train: no parameter requires grad")
        offload = use_ds and spec.offload_optimizer
        optimizer = make_optimizer(spec, trainable, device, deepspeed_offload=offload)

        engine = None
        ddp = False
        if use_ds:
            import deepspeed

            engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
            model = engine
        elif env.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [env.local_rank] if device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
            ddp = True

        dtype = getattr(torch, compute_dtype_name(spec.precision))
        amp = engine is None and spec.precision in ("bf16", "fp16", "pure_bf16")
        scaler = None
        if amp and spec.precision == "fp16" and device.type == "cuda":
            scaler = torch.amp.GradScaler("cuda")

        gen = torch.Generator(device="cpu")
        gen.manual_seed(spec.seed + 17 * env.rank)
        shape = (spec.per_device_train_batch_size, spec.cutoff_len)
        input_ids = torch.randint(0, spec.arch.vocab_size, shape, generator=gen).to(device)
        labels = input_ids.clone()
        ga = spec.gradient_accumulation_steps

        def micro_step(boundary: bool) -> float:
            sync = model.no_sync() if ddp and not boundary else nullcontext()
            autocast = torch.autocast(device.type, dtype=dtype) if amp else nullcontext()
            with sync:
                with autocast:
                    out = model(input_ids=input_ids, labels=labels)
                if engine is not None:
                    engine.backward(out.loss)
                    if not boundary:
                        engine.step()  # bookkeeping only: not a gradient-accumulation boundary
                else:
                    loss = out.loss / ga
                    (scaler.scale(loss) if scaler is not None else loss).backward()
            return float(out.loss.detach())

        def optimizer_step() -> None:
            if engine is not None:
                engine.step()
                return
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        micro_all: list[list[float]] = []
        opt_all: list[float] = []
        step_all: list[float] = []
        loss = math.nan
        tokens_per_step = spec.tokens_per_micro_step * ga
        measuring_since = 0.0
        step = 0
        stop = ""
        while True:
            if step == spec.warmup_steps:
                _hook("step")
                measuring_since = time.perf_counter()
            micro: list[float] = []
            for mi in range(ga):
                _sync(device)
                t = time.perf_counter()
                loss = micro_step(boundary=mi == ga - 1)
                _sync(device)
                micro.append(time.perf_counter() - t)
            t = time.perf_counter()
            optimizer_step()
            _sync(device)
            opt = time.perf_counter() - t
            micro_all.append(micro)
            opt_all.append(opt)
            step_all.append(sum(micro) + opt)
            step += 1
            stop = self._stop_reason(step_all, tokens_per_step, measuring_since)
            if env.is_distributed:
                from tuner.trial.distributed import all_reduce_max

                # every rank runs the same number of steps (collectives): continue while any rank wants to
                go_on = all_reduce_max([0.0 if stop else 1.0])[0] > 0
                stop = "" if go_on else (stop or "another rank stopped")
            if stop:
                break
        m = step_measurement(step_all, tokens_per_step, min_warmup=min(spec.warmup_steps, len(step_all) - 1),
                             stop=stop)  # fmt: skip
        self.result.throughput = m.to_dict()
        self.extra["steps"] = len(step_all)
        self.extra["step_s"] = [round(x, 6) for x in step_all]
        self._timings(micro_all[m.warmup:], opt_all[m.warmup:], distributed=env.is_distributed)
        self.extra["loss"] = loss
        self.extra["tokens_per_micro_step"] = spec.tokens_per_micro_step

    def _stop_reason(self, step_all: list[float], tokens_per_step: float, measuring_since: float,
                     now: float | None = None) -> str:  # fmt: skip
        """Why to stop measuring now, or "" to take another step: the interval is narrow enough, the time cap
        has passed (with at least two measured steps), or the step cap."""
        spec = self.spec
        measured = len(step_all) - spec.warmup_steps
        if len(step_all) >= spec.max_steps:
            return f"step cap ({spec.max_steps} steps)"
        if measured < 2:
            return ""
        elapsed = (time.perf_counter() if now is None else now) - measuring_since
        if measured >= spec.measure_steps:
            m = step_measurement(step_all, tokens_per_step, min_warmup=spec.warmup_steps)
            if converged(m, spec.target_rel_ci, spec.measure_steps):
                return f"interval within ±{spec.target_rel_ci:.0%} after {m.n} steps"
        if elapsed >= spec.measure_time_s:
            return f"time cap ({spec.measure_time_s:g} s)"
        return ""

    def _timings(self, micro_all: list[list[float]], opt_all: list[float], *, distributed: bool) -> None:
        """Median micro-step and optimizer-step times.

        Several processes synchronise gradients on the last micro-step of a step (DDP ``no_sync``, ZeRO's
        boundary): with accumulation the micro-step time comes from the others and the boundary's extra cost is
        folded into the optimizer step, so ``GA x micro + optimizer`` reproduces a step at any accumulation.
        """
        ga = len(micro_all[0])
        self.extra["micro_steps_s"] = [round(x, 6) for row in micro_all for x in row]
        self.extra["optimizer_steps_s"] = [round(x, 6) for x in opt_all]
        if distributed and ga > 1:
            micro_s = statistics.median(x for row in micro_all for x in row[:-1])
            opt_s = statistics.median(o + sum(row) - ga * micro_s for row, o in zip(micro_all, opt_all, strict=True))
        else:
            micro_s = statistics.median(x for row in micro_all for x in row)
            opt_s = statistics.median(opt_all)
        self.result.micro_step_s = micro_s
        self.result.optimizer_step_s = max(opt_s, 0.0)

    # Memory and the verdict ----------------------------------------------------------------------------------

    def finish(self) -> TrialResult:
        """Stop the probes, take the peaks (the maximum over ranks), and judge against the memory limit."""
        spec, r = self.spec, self.result
        self.rss.stop()
        peak_rss, how = self.rss.peak_rss()
        r.peak_rss_bytes = peak_rss
        self.extra["ru_maxrss_bytes"] = ru_maxrss_bytes()
        if spec.device == "cuda":
            nvml = self.nvml.stop() if self.nvml is not None else None
            reserved = allocated = 0
            try:
                import torch

                if self.device is not None and torch.cuda.is_initialized():
                    reserved = int(torch.cuda.max_memory_reserved(self.device))
                    allocated = int(torch.cuda.max_memory_allocated(self.device))
            except Exception as exc:  # noqa: BLE001 - a CUDA error leaves the context unusable
                self.extra["memory_stats_error"] = _first_line(exc)
            r.peak_reserved_bytes = reserved or None
            r.peak_allocated_bytes = allocated or None
            r.nvml_bytes = nvml or None
            r.peak_bytes = max(reserved, nvml or 0) or None
            self.extra["memory_method"] = (
                f"max(torch max_memory_reserved, NVML {self.nvml.method})" if self.nvml else "torch max_memory_reserved"
            )
        else:
            r.peak_bytes = peak_rss
            self.extra["memory_method"] = f"peak RSS ({how})"
        if r.status == "ok" and self.env.is_distributed:
            self._reduce_over_ranks()
        limit = spec.memory_limit_bytes
        if r.status == "ok" and limit and r.peak_bytes is not None and r.peak_bytes > limit:
            r.status = "over_budget"
            r.reason = f"peak memory {_gib(r.peak_bytes)} exceeds the limit {_gib(limit)}"
        r.wall_s = time.perf_counter() - self.t0
        r.extra = self.extra
        return r

    def _reduce_over_ranks(self) -> None:
        from tuner.trial.distributed import all_reduce_max

        r = self.result
        names = ("peak_bytes", "peak_reserved_bytes", "peak_allocated_bytes", "nvml_bytes", "peak_rss_bytes",
                 "micro_step_s", "optimizer_step_s")
        values = [float(getattr(r, n) or 0) for n in names]
        try:
            reduced = all_reduce_max(values)
        except Exception as exc:  # noqa: BLE001 - a rank went away: keep this rank's figures
            self.extra["reduce_error"] = _first_line(exc)
            return
        for n, v in zip(names, reduced, strict=True):
            if n.endswith("_s"):
                setattr(r, n, v)
            else:
                setattr(r, n, int(v) or None)
        self.extra["reduced_over_ranks"] = "max"


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def run(spec: TrialSpec, env: DistEnv | None = None) -> TrialResult:
    """Run the trial in this process; every failure becomes a status with its reason."""
    trial = Trial(spec, env or dist_env())
    try:
        trial.run()
    except TrialSetupError as exc:
        trial.result.status, trial.result.reason = "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - the worker's whole point: a failure is a result
        if _is_oom(exc):
            trial.result.status, trial.result.reason = "oom", _first_line(exc)
        else:
            trial.result.status, trial.result.reason = "crash", _first_line(exc)
            import traceback

            trial.extra["traceback"] = traceback.format_exc(limit=-8)[-4000:]
    return trial.finish()


def write_result(result: TrialResult, path: Path) -> None:
    """Atomically: a reader never sees half a file, even if this process dies while writing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    os.replace(tmp, path)


def rank_result_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.rank{rank}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.trial.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path, help="TrialSpec JSON")
    parser.add_argument("--out", required=True, type=Path, help="where to write the TrialResult JSON")
    args = parser.parse_args(argv)
    env = dist_env()
    spec = TrialSpec.read(args.spec)
    result = run(spec, env)
    if env.is_main:
        write_result(result, args.out)
    elif result.status != "ok":
        write_result(result, rank_result_path(args.out, env.rank))
    if result.status != "ok" and result.reason:
        print(f"[cfgtune trial] rank {env.rank}: {result.status}: {result.reason}", file=sys.stderr, flush=True)
    if env.is_distributed:
        from tuner.trial.distributed import destroy_process_group

        if result.status == "ok":
            destroy_process_group()
        # A failed rank leaves at once with a non-zero code: torchrun then stops the ranks waiting on it.
        return 0 if result.status == "ok" else 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is on disk: skip interpreter and CUDA teardown, which can hang after a CUDA error and only
    # delays freeing the GPU (the driver reclaims everything when the process is gone).
    os._exit(code)
