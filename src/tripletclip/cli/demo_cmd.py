"""``tripletclip demo``: build the world, train every objective, evaluate, report (tripletclip.demo)."""
from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("overrides", nargs=-1)
@click.option("--out", default="demo_out", show_default=True, help="Output folder (world, runs, results, report).")
@click.option("--quick", is_flag=True, help="Smoke run (preset demo-quick): few steps, one seed, a small world.")
@click.option("--preset", default=None,
              help="A shipped preset (demo: fine-tuning regime, the default; demo-scratch: from scratch, "
                   "data-limited; demo-quick) or a YAML path.")
@click.option("--seeds", default=None, help="Comma-separated training seeds (default: the preset's, 0,1,2).")
@click.option("--methods", default=None, help="Comma-separated objectives (default: every registered one).")
@click.option("--jobs", type=int, default=None, help="Trainings run in parallel (default: min(2, CPU count)).")
@click.option("--world-seed", type=int, default=None,
              help="World seed (default: the preset's, 1; seed 0 is the development seed the design was chosen on).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in --out (only what it wrote is removed).")
def demo(overrides: tuple[str, ...], out: str, quick: bool, preset: str | None, seeds: str | None,
         methods: str | None, jobs: int | None, world_seed: int | None, overwrite: bool) -> None:
    """The whole method offline on the embedded compositional world, in minutes on CPU.

    OVERRIDES are dotted preset keys, e.g. run.train.steps=200 base.train.steps=800 n_bench=400."""
    from tripletclip.demo import run_demo

    run_demo(out, preset=preset, overrides=overrides, quick=quick,
             seeds=[int(s) for s in seeds.split(",")] if seeds else None,
             methods=[m for m in methods.split(",") if m] if methods else None, jobs=jobs, world_seed=world_seed,
             overwrite=overwrite)
