"""The search space of `cfgtune auto`: which knobs a trial may turn, declared once, and how a point becomes a trial.

Only knobs that change speed or memory but not what is learned per sample are searched, plus the LoRA rank
(a quality choice, kept as a second objective rather than traded for speed). The global batch is fixed:
``gradient_accumulation_steps = global_batch / (micro_batch × world_size)``, so a faster point never changes
the effective batch, the learning-rate schedule or the number of optimizer steps.

Every dimension is declared once, in :data:`DIMENSIONS`: its name (the Optuna parameter and the LLaMA-Factory
key people know), the values the space holds, when it applies, how a value edits the trial and the YAML, how it
reads in a report, which direction needs more memory (for pruning by dominance) and which value is the cheaper
one (for "a choice gives way to a strictly cheaper neighbour it does not beat"). The planner, the pruner, the
estimator setup, the report and the tuned-config writer all read the table instead of naming dimensions.

Optuna sees each dimension as a categorical of its values (not indices), so optuna-dashboard shows
``per_device_train_batch_size: 4``, not ``micro_batch_idx: 2``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.trial.spec import TrialSpec

if TYPE_CHECKING:
    import optuna

#: Distributed strategies, with the DeepSpeed settings each one means (stage, offload optimizer, offload
#: parameters). "none" is a single device without DeepSpeed.
DISTS: dict[str, tuple[int | None, bool, bool]] = {
    "none": (None, False, False),
    "ddp": (None, False, False),
    "zero1": (1, False, False),
    "zero2": (2, False, False),
    "zero2_offload": (2, True, False),
    "zero3": (3, False, False),
    "zero3_offload": (3, True, True),
}

#: Per-device memory, heaviest first; a strategy needs no more memory than one before it, all else equal.
DIST_MEMORY_ORDER = ("none", "ddp", "zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")
#: Work beyond the training step itself, least first: communication grows with the stage, offload moves the
#: optimizer (and parameters) over PCIe. The cost order "gives way to a cheaper neighbour" uses.
DIST_COST_ORDER = ("none", "ddp", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")

DEFAULT_RANKS = (8, 16, 32, 64, 128)


class SpaceError(ValueError):
    """Options that leave no valid search space; the message says which option to change."""


@dataclass(frozen=True, order=True)
class Point:
    """One configuration the search can try; one field per dimension (see :data:`DIMENSIONS`)."""

    micro: int  # per_device_train_batch_size
    rank: int  # lora_rank (0 when not LoRA)
    gc: bool  # gradient checkpointing
    liger: bool
    dist: str = "none"

    @property
    def key(self) -> str:
        """A stable identity, used to spot a point measured before (by this or another worker)."""
        return "-".join(d.key_part(getattr(self, d.field)) for d in DIMENSIONS)

    def get(self, dim: Dimension) -> Any:
        return getattr(self, dim.field)

    def with_value(self, dim: Dimension, value: Any) -> Point:
        return dataclasses.replace(self, **{dim.field: value})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        return cls(**{dim.field: dim.parse(d[dim.field]) if dim.field in d else dim.default for dim in DIMENSIONS})

    def needs_at_least_as_much_memory_as(self, other: Point) -> bool:
        """Whether this point's peak memory is no lower than ``other``'s, from monotonicity alone.

        Each dimension says which direction needs more memory (more sequences per micro-batch, a higher rank,
        checkpointing off, Liger off); a dimension without such an order (the distributed strategy: buckets and
        offload make it model-dependent) must be equal.
        """
        for dim in DIMENSIONS:
            a, b = self.get(dim), other.get(dim)
            if dim.memory == 0:
                if a != b:
                    return False
            elif (a - b if dim.memory > 0 else b - a) < 0:
                return False
        return True


@dataclass(frozen=True, repr=False)
class Dimension:
    """One searched knob. ``memory``: +1 when a larger value needs more memory, -1 when less, 0 when neither is
    known; ``cost``: a sort key, lower = cheaper (less work per token: no recomputation, fewer trainable
    parameters, less communication or offload), None when no value is cheaper."""

    name: str  # the Optuna parameter, as the LLaMA-Factory key where there is one
    field: str  # the Point attribute
    values_attr: str  # the SearchSpace attribute holding the searched values
    label: str  # for people: table headers, descriptions
    abbrev: str  # in Point.key
    memory: int
    cost: Callable[[Any], float] | None
    parse: Callable[[Any], Any]
    default: Any
    show: Callable[[Any], str]  # a value as a report cell
    spec: Callable[[SearchSpace, Any], dict[str, Any]]  # TrialSpec fields a value sets
    yaml: Callable[[SearchSpace, Any], dict[str, Any]]  # LLaMA-Factory keys a value sets (None: remove the key)
    applies: Callable[[SearchSpace], bool]  # whether a report or description shows it for this space
    probe_first: Callable[[Any], float] = lambda v: 0.0  # the planner's guess of the faster value: lower first
    brief: Callable[[Any], str | None] = lambda v: None  # a value in a live-view line (None: not shown)

    def __repr__(self) -> str:
        return f"Dimension({self.name})"

    def key_part(self, value: Any) -> str:
        if isinstance(value, bool):
            return f"{self.abbrev}{int(value)}"
        return f"{self.abbrev}{value}"


def _onoff(v: Any) -> str:
    return "on" if v else "off"


def _micro_spec(space: SearchSpace, v: Any) -> dict[str, Any]:
    return {"per_device_train_batch_size": v, "gradient_accumulation_steps": space.grad_accum(v)}


def _micro_yaml(space: SearchSpace, v: Any) -> dict[str, Any]:
    return {"per_device_train_batch_size": v, "gradient_accumulation_steps": space.grad_accum(v)}


def _rank_spec(space: SearchSpace, v: Any) -> dict[str, Any]:
    return {"lora_rank": v, "lora_alpha": 2 * v} if space.is_lora else {}


def _dist_spec(space: SearchSpace, v: Any) -> dict[str, Any]:
    stage, off_opt, off_param = DISTS[v]
    return {"zero_stage": stage, "offload_optimizer": off_opt, "offload_param": off_param}


def deepspeed_filename(dist: str) -> str:
    """LLaMA-Factory's example name for a strategy's DeepSpeed JSON (``ds_z3_offload_config.json``)."""
    stage = DISTS[dist][0]
    return f"ds_z{stage}{'_offload' if dist.endswith('_offload') else ''}_config.json"


def _dist_yaml(space: SearchSpace, v: Any) -> dict[str, Any]:
    # the JSON's file name; the writer puts the file next to tuned.yaml and writes the path the run resolves
    return {"deepspeed": deepspeed_filename(v) if DISTS[v][0] is not None else None}


#: The search space's dimensions, in the order points are listed and keyed.
DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        name="per_device_train_batch_size", field="micro", values_attr="micro_batches", label="micro batch",
        abbrev="b", memory=+1, cost=None, parse=int, default=1, show=str,
        spec=_micro_spec, yaml=_micro_yaml, applies=lambda sp: True, brief=lambda v: f"batch {v}",
    ),
    Dimension(
        name="lora_rank", field="rank", values_attr="ranks", label="LoRA rank", abbrev="r", memory=+1,
        cost=lambda v: float(v), parse=int, default=0, show=str,
        spec=_rank_spec, yaml=lambda sp, v: {"lora_rank": v, "lora_alpha": 2 * v} if sp.is_lora else {},
        applies=lambda sp: sp.is_lora, brief=lambda v: f"rank {v}",
    ),
    Dimension(
        name="gradient_checkpointing", field="gc", values_attr="gcs", label="gradient checkpointing", abbrev="gc",
        memory=-1, cost=lambda v: 1.0 if v else 0.0, parse=bool, default=True, show=_onoff,
        spec=lambda sp, v: {"gradient_checkpointing": v}, yaml=lambda sp, v: {"disable_gradient_checkpointing": not v},
        applies=lambda sp: True, probe_first=lambda v: 1.0 if v else 0.0,  # recomputation costs time
        brief=lambda v: "ckpt on" if v else "ckpt off",
    ),
    Dimension(
        name="enable_liger_kernel", field="liger", values_attr="ligers", label="Liger kernel", abbrev="lg",
        memory=-1, cost=None, parse=bool, default=False, show=_onoff,
        spec=lambda sp, v: {"liger": v}, yaml=lambda sp, v: {"enable_liger_kernel": v},
        applies=lambda sp: sp.ligers != (False,), probe_first=lambda v: 0.0 if v else 1.0,  # fused kernels are usually faster
        brief=lambda v: "liger" if v else None,
    ),
    Dimension(
        name="distributed", field="dist", values_attr="dists", label="distributed", abbrev="", memory=0,
        cost=lambda v: float(DIST_COST_ORDER.index(v)) if v in DIST_COST_ORDER else 99.0, parse=str,
        default="none", show=str, spec=_dist_spec, yaml=_dist_yaml, applies=lambda sp: sp.dists != ("none",),
        probe_first=lambda v: float(DIST_COST_ORDER.index(v)) if v in DIST_COST_ORDER else 99.0,
        brief=lambda v: None if v == "none" else str(v),
    ),
)  # fmt: skip

#: The dimensions besides micro batch and rank: together they make a point's memory *regime* (the planner probes
#: each regime's largest micro batch; the pruner calibrates the estimator per regime).
REGIME_DIMENSIONS = tuple(d for d in DIMENSIONS if d.field not in ("micro", "rank"))


def regime_of(p: Point) -> tuple[Any, ...]:
    return tuple(p.get(d) for d in REGIME_DIMENSIONS)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def derive_grad_accum(global_batch: int, micro: int, world_size: int = 1) -> int:
    """The gradient accumulation that keeps ``micro × accumulation × world_size == global_batch``."""
    if micro < 1 or world_size < 1 or global_batch < 1:
        raise SpaceError("batch sizes and the world size must be positive")
    per_step = micro * world_size
    if global_batch % per_step:
        raise SpaceError(
            f"global batch {global_batch} is not a multiple of micro batch {micro} × {world_size} GPU(s); "
            "pick a global batch divisible by both"
        )
    return global_batch // per_step


def micro_batch_choices(global_batch: int, world_size: int, max_micro: int | None = None) -> tuple[int, ...]:
    """Micro batches that divide the per-device share of the global batch exactly."""
    if global_batch % world_size:
        raise SpaceError(
            f"--global-batch {global_batch} is not divisible by --gpus {world_size}; every GPU must get the same share"
        )
    per_rank = global_batch // world_size
    return tuple(d for d in divisors(per_rank) if max_micro is None or d <= max_micro)


@dataclass(frozen=True)
class SearchSpace:
    """Everything a study varies (the tuples) and everything it holds fixed (``template``)."""

    template: TrialSpec  # arch, finetuning type, cutoff, precision, device, world size, memory limit, ...
    global_batch: int
    micro_batches: tuple[int, ...]
    ranks: tuple[int, ...]
    gcs: tuple[bool, ...] = (True, False)
    ligers: tuple[bool, ...] = (False,)
    dists: tuple[str, ...] = ("none",)

    def __post_init__(self) -> None:
        if not self.micro_batches:
            raise SpaceError("no micro batch size divides the global batch")
        for m in self.micro_batches:
            derive_grad_accum(self.global_batch, m, self.template.world_size)
        if not self.ranks or any(r < 0 for r in self.ranks):
            raise SpaceError("--ranks needs at least one positive rank")
        unknown = [d for d in self.dists if d not in DISTS]
        if unknown:
            raise SpaceError(f"unknown distributed strategy {unknown[0]!r}; known: {', '.join(DISTS)}")
        for field_name in ("micro_batches", "ranks"):
            values = getattr(self, field_name)
            if list(values) != sorted(set(values)):
                object.__setattr__(self, field_name, tuple(sorted(set(values))))

    # -- dimensions --------------------------------------------------------------------------------------
    def values(self, dim: Dimension) -> tuple[Any, ...]:
        return tuple(getattr(self, dim.values_attr))

    def varied(self) -> list[Dimension]:
        """The dimensions with more than one value: the ones Optuna is asked about."""
        return [d for d in DIMENSIONS if len(self.values(d)) > 1]

    def shown(self) -> list[Dimension]:
        """The dimensions a report or a description shows for this space."""
        return [d for d in DIMENSIONS if d.applies(self)]

    # -- points ------------------------------------------------------------------------------------------
    @property
    def is_lora(self) -> bool:
        return self.template.finetuning_type == "lora"

    @property
    def world_size(self) -> int:
        return self.template.world_size

    def grad_accum(self, micro: int) -> int:
        return derive_grad_accum(self.global_batch, micro, self.world_size)

    def points(self) -> Iterator[Point]:
        """The whole grid, in a deterministic order (the last dimension varies slowest)."""
        grids: list[dict[str, Any]] = [{}]
        for dim in DIMENSIONS:
            grids = [{**g, dim.field: v} for v in self.values(dim) for g in grids]
        for g in grids:
            yield Point(**g)

    @property
    def size(self) -> int:
        n = 1
        for dim in DIMENSIONS:
            n *= len(self.values(dim))
        return n

    def contains(self, p: Point) -> bool:
        return all(p.get(d) in self.values(d) for d in DIMENSIONS)

    def spec(self, p: Point) -> TrialSpec:
        """The trial that measures a point: the template with each dimension's edits (and the derived accumulation)."""
        changes: dict[str, Any] = {}
        for dim in DIMENSIONS:
            changes.update(dim.spec(self, p.get(dim)))
        return dataclasses.replace(self.template, **changes)

    def yaml_values(self, p: Point) -> dict[str, Any]:
        """The LLaMA-Factory keys a point sets (a value None means: remove that key)."""
        out: dict[str, Any] = {}
        for dim in DIMENSIONS:
            out.update(dim.yaml(self, p.get(dim)))
        return out

    def neighbours(self, p: Point) -> list[Point]:
        """The points one step away along one dimension (the next value up or down in its list)."""
        out: list[Point] = []
        for dim in self.varied():
            vals = self.values(dim)
            i = vals.index(p.get(dim)) if p.get(dim) in vals else None
            if i is None:
                continue
            for j in (i + 1, i - 1):
                if 0 <= j < len(vals):
                    out.append(p.with_value(dim, vals[j]))
        return out

    def cheaper_neighbours(self, p: Point, dims: Sequence[Dimension] | None = None) -> list[tuple[Dimension, Point]]:
        """Points that differ from ``p`` in one dimension with a cost order, at a strictly lower cost."""
        out: list[tuple[Dimension, Point]] = []
        for dim in dims if dims is not None else self.varied():
            if dim.cost is None or len(self.values(dim)) < 2:
                continue
            here = dim.cost(p.get(dim))
            for v in self.values(dim):
                if dim.cost(v) < here:
                    out.append((dim, p.with_value(dim, v)))
        return out

    def describe(self, p: Point) -> str:
        """A point in words, the dimensions this space shows: ``micro batch 4 × 2, LoRA rank 16, ...``."""
        parts = []
        for dim in self.shown():
            v = p.get(dim)
            if dim.field == "micro":
                parts.append(f"micro batch {v} × {self.grad_accum(v)}")
            else:
                parts.append(f"{dim.label} {dim.show(v)}")
        return ", ".join(parts)

    def nearest_rank(self, rank: int | None) -> int:
        if not self.is_lora:
            return self.ranks[0]
        if rank is None:
            rank = 16  # what hand-written LLaMA-Factory recipes use most
        return min(self.ranks, key=lambda r: (abs(r - rank), r))

    def baseline(self, rank: int | None = None, dist: str | None = None) -> Point:
        """The hand-written recipe: batch 1, accumulation up to the global batch, checkpointing on, no Liger."""
        if dist is None or dist not in self.dists:
            dist = self.dists[0]
        return Point(
            micro=self.micro_batches[0],
            rank=self.nearest_rank(rank),
            gc=True if True in self.gcs else self.gcs[0],
            liger=False if False in self.ligers else self.ligers[0],
            dist=dist,
        )

    # -- Optuna --------------------------------------------------------------------------------------------
    def params(self, p: Point) -> dict[str, Any]:
        """The point as Optuna parameters (for ``enqueue_trial``): one categorical per varied dimension."""
        return {d.name: p.get(d) for d in self.varied()}

    def suggest(self, trial: optuna.trial.Trial) -> Point:
        """Ask Optuna for a point: a categorical of the values of each dimension that has more than one."""
        values: dict[str, Any] = {}
        for dim in DIMENSIONS:
            vals = self.values(dim)
            v = trial.suggest_categorical(dim.name, list(vals)) if len(vals) > 1 else vals[0]
            values[dim.field] = dim.parse(v)
        return Point(**values)

    # -- storage ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"template": self.template.to_dict(), "global_batch": self.global_batch}
        for dim in DIMENSIONS:
            out[dim.values_attr] = list(self.values(dim))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        values = {dim.values_attr: tuple(dim.parse(x) for x in d[dim.values_attr]) for dim in DIMENSIONS
                  if dim.values_attr in d}  # fmt: skip
        return cls(template=TrialSpec.from_dict(d["template"]), global_batch=int(d["global_batch"]), **values)

    def differences(self, other: SearchSpace) -> list[str]:
        """What differs from a stored space, in option terms, so a mismatched ``--resume`` can say why."""
        # Compare as stored (JSON: tuples become lists), so a space read back from storage equals itself.
        mine, theirs = json.loads(json.dumps(self.to_dict())), json.loads(json.dumps(other.to_dict()))
        out: list[str] = []
        for key in ("global_batch", *(dim.values_attr for dim in DIMENSIONS)):
            if mine[key] != theirs[key]:
                out.append(f"{key}: stored {theirs[key]}, now {mine[key]}")
        t_mine, t_theirs = mine["template"], theirs["template"]
        for key in sorted(set(t_mine) | set(t_theirs)):
            if t_mine.get(key) != t_theirs.get(key):
                what = "architecture" if key == "arch" else key
                out.append(f"{what}: stored {_short(t_theirs.get(key))}, now {_short(t_mine.get(key))}")
        return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"8,16,32"`` -> (8, 16, 32), with a message naming the option on a bad item."""
    items: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise SpaceError(f"{what}: `{part}` is not an integer (write e.g. 8,16,32)") from None
        if v < 1:
            raise SpaceError(f"{what}: {v} must be a positive integer")
        items.append(v)
    if not items:
        raise SpaceError(f"{what}: give at least one value")
    return tuple(sorted(set(items)))
