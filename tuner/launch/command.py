"""The command that trains a tuned config: ``llamafactory-cli train`` with the environment LLaMA-Factory reads.

LLaMA-Factory starts torchrun itself when it sees several GPUs, or when ``FORCE_TORCHRUN=1``; DeepSpeed needs
torchrun's rendezvous even on one GPU, so a config that names a DeepSpeed JSON always gets ``FORCE_TORCHRUN=1``.
The GPUs are chosen with ``CUDA_VISIBLE_DEVICES`` (the first N unless the variable is already set). Several
nodes use LLaMA-Factory's own variables (``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LaunchPlan:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # only what is set on top of the caller's environment
    notes: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # variable -> why it is set, for --dry-run

    def environment_lines(self) -> list[str]:
        """Each variable the launch sets on top of the caller's environment, one per line, with why."""
        if not self.env:
            return ["# environment: nothing set on top of yours"]
        lines = ["# environment set on top of yours:"]
        for k, v in self.env.items():
            line = f"{k}={shlex.quote(v)}"
            lines.append(f"{line}  # {self.why[k]}" if k in self.why else line)
        return lines

    def shell(self) -> str:
        """The command as one line to paste into a shell."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        cmd = " ".join(shlex.quote(a) for a in self.argv)
        return f"{prefix} {cmd}" if prefix else cmd


def plan_launch(
    config: Path,
    *,
    uses_deepspeed: bool,
    gpus: int | None,
    environ: Mapping[str, str],
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
    cli: str = "llamafactory-cli",
) -> LaunchPlan:
    env: dict[str, str] = {}
    notes: list[str] = []
    why: dict[str, str] = {}
    if gpus is not None and gpus >= 1:
        if environ.get("CUDA_VISIBLE_DEVICES"):
            visible = [d for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
            if len(visible) != gpus:
                notes.append(f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']} names {len(visible)} GPU(s), "
                             f"not {gpus}; it is kept as set")  # fmt: skip
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
            why["CUDA_VISIBLE_DEVICES"] = f"--gpus {gpus}: the first {gpus} GPU(s)"
    if uses_deepspeed or (gpus or 1) > 1 or nnodes > 1:
        env["FORCE_TORCHRUN"] = "1"
        why["FORCE_TORCHRUN"] = ("DeepSpeed needs torchrun, even on one GPU" if uses_deepspeed
                                 else "several GPUs or nodes: LLaMA-Factory starts torchrun")  # fmt: skip
    if nnodes > 1:
        env["NNODES"] = str(nnodes)
        env["NODE_RANK"] = str(node_rank)
        if master_addr:
            env["MASTER_ADDR"] = master_addr
        if master_port:
            env["MASTER_PORT"] = str(master_port)
    for k in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if k in env:
            why[k] = "torchrun's rendezvous, read by LLaMA-Factory"
    return LaunchPlan([cli, "train", str(config)], env, notes, why)
