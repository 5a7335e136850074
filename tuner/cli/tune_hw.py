"""`cfgtune hw`: which GPUs this machine has and which profile each matches; `--list` shows every profile.

Exit codes follow the project's convention: 0 ok, 2 usage or input error. "No GPU here" is exit 2 with a
plain message, because whoever ran `cfgtune hw` expected one, and the way forward (name the GPU with
``--hw``) is the same as for a typo.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from rich.console import Console

    from tuner.hardware.detect import Detection
    from tuner.hardware.profiles import HardwareProfile

NO_GPU_HINT = (
    "To lint or estimate for a GPU that is not on this machine, name it with --hw NAME, e.g.\n"
    "  cfglint check --hw h100-80g train.yaml\n"
    "  cfgtune estimate --hw a100-80g train.yaml\n"
    "`cfgtune hw --list` shows every known NAME."
)


def _console() -> Console:
    from rich.console import Console

    # Piped or captured output gets a fixed, generous width so rows are never cut to 80 columns.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def _fail(message: str) -> NoReturn:
    click.echo(f"cfgtune hw: error: {message}", err=True)
    sys.exit(2)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 1024**3:.1f} GiB"


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:g}"


def _tflops(p: HardwareProfile) -> str:
    return _num(p.tflops_bf16) if p.tflops_bf16 is not None else f"{_num(p.tflops_fp16)} fp16"


def _yes(v: bool) -> str:
    return "yes" if v else "-"


@click.command("hw")
@click.argument("name", required=False)
@click.option("--list", "list_all", is_flag=True, help="List every hardware profile instead of detecting GPUs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hw(name: str | None, list_all: bool, as_json: bool) -> None:
    """Detect this machine's GPUs (via NVML) and match each to a hardware profile.

    With NAME, show that profile (an id, an alias such as h100-80g, or a name as nvidia-smi prints it).
    The profile names are what `--hw` takes in `cfglint` and `cfgtune estimate`.
    """
    from tuner.config.document import InputError

    if name and list_all:
        _fail("give either NAME or --list, not both")
    try:
        if list_all:
            _list_profiles(as_json)
        elif name:
            _show_profile(name, as_json)
        else:
            _detect(as_json)
    except InputError as exc:  # a broken profile YAML: a packaging or editing mistake, reported plainly
        _fail(str(exc))


# -- detection ------------------------------------------------------------------------------------------------


def _detect(as_json: bool) -> None:
    from tuner.hardware.detect import detect_gpus

    det = detect_gpus()
    if as_json:  # only JSON, whatever was found: the reason is its `reason` field, the exit code says the rest
        click.echo(json.dumps(det.to_dict(), indent=2))
    if not det.found:
        if not as_json:
            click.echo(f"No NVIDIA GPU found: {det.reason}.\n{NO_GPU_HINT}", err=True)
        sys.exit(2)
    if not as_json:
        _print_detection(det)


def _print_detection(det: Detection) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tuner.hardware.profiles import name_candidates

    console = _console()
    names: dict[str, int] = {}
    for g in det.gpus:
        key = "unreadable" if g.error else g.name
        names[key] = names.get(key, 0) + 1
    summary = escape(", ".join(f"{n} x {name}" for name, n in names.items()))
    driver = f"driver {det.driver_version or 'unknown'}, CUDA {det.cuda_driver_version or 'unknown'}"
    console.print(f"{len(det.gpus)} GPU{'s' if len(det.gpus) != 1 else ''}: {summary} ({driver})", soft_wrap=True)

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("GPU", no_wrap=True)
    table.add_column("Total", justify="right", no_wrap=True)
    table.add_column("Free", justify="right", no_wrap=True)
    table.add_column("CC", justify="right")
    table.add_column("Driver", no_wrap=True)
    table.add_column("Profile", no_wrap=True)
    for g in det.gpus:
        if g.error:
            table.add_row(str(g.index), f"[red]unreadable: {escape(g.error)}[/red]", "-", "-", "-", "-", "-")
            continue
        profile = g.profile.name if g.profile else "[yellow]none[/yellow]"
        table.add_row(
            str(g.index), escape(g.name), _gib(g.total_bytes), _gib(g.free_bytes),
            g.compute_capability_str or "-", g.driver_version or "-", profile,
        )  # fmt: skip
    console.print(table)

    unmatched = {g.name: g for g in det.gpus if g.profile is None and not g.error}
    for g in unmatched.values():
        cands = name_candidates(g.name)
        why = (
            f"its name fits {', '.join(p.name for p in cands)} but its memory ({_gib(g.total_bytes)}) does not"
            if cands
            else "no profile knows this model"
        )
        console.print(
            f"[yellow]note:[/yellow] {escape(g.name)}: no hardware profile ({why}). "
            "Pass the closest one with --hw NAME; `cfgtune hw --list` shows them.",
            soft_wrap=True,
        )
    if det.visible_devices is not None:
        console.print(
            f"note: CUDA_VISIBLE_DEVICES={escape(det.visible_devices)}: a run sees only those GPUs "
            "(NVML numbers them in PCI order; CUDA does too only with CUDA_DEVICE_ORDER=PCI_BUS_ID).",
            soft_wrap=True,
        )


# -- profiles -------------------------------------------------------------------------------------------------


def _list_profiles(as_json: bool) -> None:
    from rich.table import Table

    from tuner.hardware.profiles import list_profiles

    profiles = list_profiles()
    if as_json:
        click.echo(json.dumps({"profiles": [p.to_dict() for p in profiles]}, indent=2))
        return
    console = _console()
    wide = console.width >= 150  # on a narrow terminal, drop the long text columns rather than fold every row
    columns: list[tuple[str, str]] = [("Id", "left")]
    if wide:
        columns.append(("GPU", "left"))
    columns += [
        ("Memory", "right"), ("CC", "right"), ("bf16", "center"), ("fp8", "center"), ("FA2", "center"),
        ("TFLOP/s", "right"), ("Mem GB/s", "right"), ("Link GB/s", "right"), ("Aliases", "left"),
    ]  # fmt: skip
    table = Table(
        show_edge=False, pad_edge=False, title=f"{len(profiles)} hardware profiles (use the id or an alias with --hw)"
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=col != "Aliases", overflow="fold")  # type: ignore[arg-type]
    for p in profiles:
        cells = [p.name] + ([p.display] if wide else [])
        cells += [
            f"{p.memory_gib:g} GiB", p.compute_capability_str or "-", _yes(p.bf16), _yes(p.fp8),
            _yes(p.flash_attn2), _tflops(p), _num(p.memory_bandwidth_gbs), _num(p.interconnect_gbs),
            ", ".join(p.aliases),
        ]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    console.print(
        "TFLOP/s: dense bf16 datasheet peak (fp16 where the GPU has no bf16), no sparsity. "
        "Memory: the total the driver reports.",
        soft_wrap=True,
    )


def _show_profile(name: str, as_json: bool) -> None:
    from tuner.hardware.profiles import get_profile

    try:
        p = get_profile(name)
    except LookupError as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc))
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
        return
    rows: list[tuple[str, Any]] = [
        ("id", p.name),
        ("aliases", ", ".join(p.aliases) or "-"),
        ("vendor", p.vendor),
        ("memory", f"{p.memory_gib:g} GiB ({p.memory_bytes} bytes)"),
        ("compute capability", p.compute_capability_str or "- (not CUDA)"),
        ("bf16 / fp8 / FlashAttention-2", f"{_yes(p.bf16)} / {_yes(p.fp8)} / {_yes(p.flash_attn2)}"),
        ("TFLOP/s bf16 / fp16 (dense)", f"{_num(p.tflops_bf16)} / {_num(p.tflops_fp16)}"),
        ("memory bandwidth", f"{_num(p.memory_bandwidth_gbs)} GB/s"),
        ("interconnect", f"{p.interconnect} ({_num(p.interconnect_gbs)} GB/s)"),
        ("device names", "; ".join(p.nvml_patterns)),
        ("source", p.source),
    ]
    console = _console()
    console.print(f"[bold]{p.display}[/bold]")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        console.print(f"  {k:<{width}}  {v}", markup=False)
