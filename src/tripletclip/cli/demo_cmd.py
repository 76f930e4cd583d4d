"""``tripletclip demo``: build the world, train the five objectives, evaluate, report (tripletclip.demo)."""
from __future__ import annotations

import click


@click.command()
@click.option("--out", default="demo_out", show_default=True, help="Output folder (world, runs, results, report).")
@click.option("--quick", is_flag=True, help="Smoke run: few steps, one seed, a small world.")
@click.option("--preset", default=None, help="A demo preset YAML (default configs/demo.yaml).")
@click.option("--seeds", default=None, help="Comma-separated training seeds (default 0,1,2; --quick: 0).")
@click.option("--methods", default="clip,negclip,negimage,tripletclip,ceclip", show_default=True)
@click.option("--n-train", type=int, default=None, help="Training triplets (default: steps x batch, one epoch).")
@click.option("--n-bench", type=int, default=None, help="Benchmark rows per category (default 200; --quick 28).")
@click.option("--jobs", type=int, default=None, help="Trainings run in parallel (default: min(2, CPU count)).")
@click.option("--world-seed", type=int, default=0, show_default=True)
def demo(out: str, quick: bool, preset: str | None, seeds: str | None, methods: str, n_train: int | None,
         n_bench: int | None, jobs: int | None, world_seed: int) -> None:
    """The whole method offline on the embedded compositional world, in minutes on CPU."""
    from tripletclip.demo import run_demo

    try:
        run_demo(out, quick=quick, preset=preset, seeds=[int(s) for s in seeds.split(",")] if seeds else None,
                 methods=[m for m in methods.split(",") if m], n_train=n_train, n_bench=n_bench, jobs=jobs,
                 world_seed=world_seed)
    except (ValueError, FileExistsError) as e:
        raise click.UsageError(str(e)) from None
