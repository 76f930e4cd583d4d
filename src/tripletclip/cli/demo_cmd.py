"""``tripletclip demo``: build the world, train every objective, evaluate, report (tripletclip.demo)."""
from __future__ import annotations

from pathlib import Path

import click

# The shipped presets, read from the package folder when --help is built (no demo import: --help stays fast), so
# a new preset file is listed without editing this module. demo.presets.preset_dir() is the same folder.
PRESETS = Path(__file__).resolve().parents[1] / "demo" / "presets"


def _preset_lines() -> list[str]:
    """``name  first line of its header comment`` for each shipped preset, the default first."""
    paths = sorted(PRESETS.glob("*.yaml"), key=lambda p: (p.stem != "demo", p.stem))
    width = max((len(p.stem) for p in paths), default=0)
    lines = []
    for path in paths:
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        first = first.split(" (")[0].rstrip(".:,")
        lines.append(f"{path.stem:<{width}}  {first if len(first) <= 90 else first[:87].rsplit(' ', 1)[0] + '...'}")
    return lines


def _preset_names() -> str:
    return ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))


@click.command(context_settings={"ignore_unknown_options": False},
               epilog="\b\nShipped presets (--preset NAME):\n" + "\n".join(f"  {ln}" for ln in _preset_lines()))
@click.argument("overrides", nargs=-1)
@click.option("--out", default="demo_out", show_default=True, help="Output folder (world, runs, results, report).")
@click.option("--quick", is_flag=True, help="Smoke run (preset demo-quick): few steps, one seed, a small world.")
@click.option("--preset", default=None,
              help=f"A shipped preset ({_preset_names()}; demo is the default, see below) or a YAML path.")
@click.option("--seeds", default=None, help="Comma-separated training seeds (default: the preset's, 0,1,2).")
@click.option("--methods", default=None, help="Comma-separated objectives or the preset's method names (default: the preset's methods, else every "
                   "registered objective but the opt-in fscclip, clic, degla).")
@click.option("--jobs", type=int, default=None, help="Trainings run in parallel (default: min(2, CPU count)).")
@click.option("--world-seed", type=int, default=None,
              help="World seed (default: the preset's, 1; seed 0 is the development seed the design was chosen on).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in --out (only what it wrote is removed).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted demo in --out (same settings only): its world, base and finished runs "
                   "are re-used, unfinished runs start afresh; on a finished demo, writes its results again.")
def demo(overrides: tuple[str, ...], out: str, quick: bool, preset: str | None, seeds: str | None,
         methods: str | None, jobs: int | None, world_seed: int | None, overwrite: bool, resume: bool) -> None:
    """The whole method offline on the embedded compositional world, in minutes on CPU.

    OVERRIDES are dotted preset keys, e.g. run.train.steps=200 base.train.steps=800 n_bench=400."""
    from tripletclip.demo.config import load_demo_config
    from tripletclip.errors import InputError

    if overwrite and resume:
        raise InputError("demo: --resume continues the demo in --out, --overwrite replaces it; give one of them")
    if quick and preset and preset != "demo-quick":  # what you set is what runs: never drop one of the two silently
        raise InputError(f"demo: --quick selects the preset demo-quick, which conflicts with --preset {preset}; "
                         f"give one of them (a shorter {preset}: e.g. run.train.steps=20 base.train.steps=50)")
    # the preset and every override checked first, in a second, before torch is even imported (a typo is one line)
    load_demo_config(preset or ("demo-quick" if quick else None), overrides)
    from tripletclip.demo import run_demo

    run_demo(out, preset=preset, overrides=overrides, quick=quick,
             seeds=[int(s) for s in seeds.split(",")] if seeds else None,
             methods=[m for m in methods.split(",") if m] if methods else None, jobs=jobs, world_seed=world_seed,
             overwrite=overwrite, resume=resume)
