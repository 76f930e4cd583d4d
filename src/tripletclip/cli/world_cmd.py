"""``tripletclip world ...``: build the embedded world, render a caption, draw a gallery, measure the regime."""
from __future__ import annotations

import json

import click


def _spec_overrides(items: tuple[str, ...]) -> dict:
    """``--set KEY=VALUE`` world spec overrides (make_spec keywords; JSON values, bare words as strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set {item}: expected KEY=VALUE, e.g. --set 'colours=[\"red\",\"blue\"]'")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


_SET_HELP = "World spec override KEY=VALUE (make_spec keyword, JSON value), repeatable: --set max_objects=3"


@click.group()
def world() -> None:
    """The embedded compositional world (scenes, captions, verified hard negatives, benchmark)."""


@world.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--n-train", default=10000, show_default=True, help="Training triplets (TripletData shards).")
@click.option("--n-bench", default=400, show_default=True,
              help="Benchmark rows per SugarCrepe category (half seen, half held-out compositions).")
@click.option("--seed", default=0, show_default=True)
@click.option("--image-size", default=64, show_default=True, help="Rendered image side in pixels.")
@click.option("--n-neg", default=1, show_default=True, help="Negatives per training triplet (distinct edit types).")
@click.option("--n-captions", default=1, show_default=True, help="Captions per training image.")
@click.option("--spec", "spec_name", default="full", show_default=True,
              help="Named world spec: full (every shape, colour, texture) or demo (the world of `tripletclip demo`).")
@click.option("--heldout-pairs", default=None, type=int, help="Colour-shape pairs withheld from training "
              "(default: the spec's; 8 for full).")
@click.option("--n-retrieval", default=500, show_default=True, help="Retrieval benchmark images.")
@click.option("--train-edit-types", default="", help="Comma-separated edit types for training negatives "
              "(default: all seven; the others are then never seen in training).")
@click.option("--workers", default=1, show_default=True, help="Worker processes (output is identical for any).")
@click.option("--image-format", type=click.Choice(["png", "jpg"]), default="png", show_default=True,
              help="Training shard images (the benchmark is always PNG).")
@click.option("--overwrite", is_flag=True, help="Replace an existing world in --out (only what a build wrote is removed).")
@click.option("--no-progress", is_flag=True)
@click.option("--set", "spec_set", multiple=True, help=_SET_HELP)
def build(out_dir: str, n_train: int, n_bench: int, seed: int, image_size: int, n_neg: int, n_captions: int,
          spec_name: str, heldout_pairs: int | None, n_retrieval: int, train_edit_types: str, workers: int,
          image_format: str, overwrite: bool, no_progress: bool, spec_set: tuple[str, ...]) -> None:
    """Write OUT/train (TripletData shards) and OUT/bench (SugarCrepe, Winoground, retrieval, manifest)."""
    from tripletclip.world import SUGARCREPE_TYPES, build_world
    from tripletclip.world.build import spec_preset

    types = tuple(t.strip() for t in train_edit_types.split(",") if t.strip()) or SUGARCREPE_TYPES
    spec = spec_preset(spec_name, seed, **({} if heldout_pairs is None else {"heldout_pairs": heldout_pairs}),
                       **_spec_overrides(spec_set))
    summary = build_world(out_dir, n_train=n_train, n_bench=n_bench, seed=seed, image_size=image_size,
                          n_neg=n_neg, n_captions=n_captions, spec=spec,
                          n_retrieval=n_retrieval, train_edit_types=types, workers=workers,
                          image_format=image_format, overwrite=overwrite, progress=not no_progress)
    t = summary["timings"]
    click.echo(f"world written to {out_dir}: {summary['train']['samples']} training triplets, "
               f"{sum(sum(c.values()) for c in summary['bench']['counts'].values())} benchmark rows "
               f"in {t['total_s']:.1f} s (train {summary['train_triplets_per_s']:.0f} triplets/s)")


@world.command()
@click.argument("caption")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default=64, show_default=True)
@click.option("--scale", default=4, show_default=True, help="Nearest-neighbour upscaling for viewing.")
def render(caption: str, out_path: str, seed: int, size: int, scale: int) -> None:
    """Render CAPTION (a caption of the world grammar) to an image."""
    from PIL import Image

    from tripletclip.world import render_caption

    img = render_caption(caption, seed=seed, size=size)
    if scale > 1:
        img = img.resize((size * scale, size * scale), Image.NEAREST)
    img.save(out_path)
    click.echo(out_path)


@world.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--per-type", default=1, show_default=True, help="Triplets per edit type.")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default=64, show_default=True)
@click.option("--split", type=click.Choice(["seen", "heldout"]), default="seen", show_default=True)
def gallery(out_path: str, per_type: int, seed: int, size: int, split: str) -> None:
    """Draw triplets (x, y) | (x', y') of every edit type into one PNG."""
    from tripletclip.world.gallery import gallery_entries, gallery_image

    gallery_image(gallery_entries(per_type=per_type, seed=seed, image_size=size, split=split)).save(out_path)
    click.echo(out_path)


@world.command()
@click.option("--n-train", default=20000, show_default=True, help="Triplets sampled for the analysis.")
@click.option("--n-bench", default=200, show_default=True, help="Benchmark triplets per category and split.")
@click.option("--seed", default=0, show_default=True)
@click.option("--speed", default=2000, show_default=True, help="Triplets timed for throughput (0: skip).")
@click.option("--spec", "spec_name", default="full", show_default=True, help="Named world spec: full or demo.")
@click.option("--image-size", default=64, show_default=True, help="Rendered image side for the throughput timing.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False), help="Also write the JSON here.")
@click.option("--set", "spec_set", multiple=True, help=_SET_HELP)
def stats(n_train: int, n_bench: int, seed: int, speed: int, spec_name: str, image_size: int,
          out_path: str | None, spec_set: tuple[str, ...]) -> None:
    """Measure the regime: bag-of-words oracle in-batch and on the benchmark, text prior, coverage, speed."""
    from tripletclip.world import analyse_world, measure_throughput, spec_preset

    spec = spec_preset(spec_name, seed, **_spec_overrides(spec_set))
    report = analyse_world(spec, n_train=n_train, n_bench=n_bench, seed=seed)
    if speed:
        report["throughput"] = measure_throughput(speed, image_size=image_size, seed=seed, spec=spec)
    text = json.dumps(report, indent=1)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    click.echo(text)


@world.command()
@click.argument("overrides", nargs=-1)
@click.option("--preset", default=None, help="Demo preset whose world and base settings to use (default: demo).")
@click.option("--world-seed", type=int, default=None, help="World seed (default: the preset's).")
@click.option("--work", default=None, type=click.Path(file_okay=False),
              help="Scratch folder for the pretraining shards and run (default: a temporary folder).")
@click.option("--workers", default=1, show_default=True, help="World-building processes.")
@click.option("--force", is_flag=True, help="Pretrain again even when a cached base exists (replaces it).")
@click.option("--ship", is_flag=True, help="Maintainers: also write its compact copy into the package (demo/bases/).")
@click.option("--no-progress", is_flag=True)
def pretrain(overrides: tuple[str, ...], preset: str | None, world_seed: int | None, work: str | None, workers: int,
             force: bool, ship: bool, no_progress: bool) -> None:
    """Pretrain the fine-tuning regime's CLIP base on the world once; cached under the user cache directory.

    OVERRIDES are dotted demo-preset keys, e.g. base.train.steps=800."""
    import tempfile
    from pathlib import Path

    from tripletclip.demo import ensure_base, load_demo_config
    from tripletclip.models.factory import model_input_size
    from tripletclip.world import spec_preset

    cfg = load_demo_config(preset, overrides)
    if world_seed is not None:
        cfg.world_seed = world_seed
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed)
    size = model_input_size(cfg.run_dict().get("model", {}).get("name", "world-cnn"))
    with tempfile.TemporaryDirectory(prefix="tripletclip-pretrain-") as tmp:
        base = ensure_base(cfg, spec.to_json(), size, Path(work or tmp), workers, force=force,
                           progress=not no_progress, echo=click.echo)
    if ship:
        from tripletclip.demo.base import ship_base

        base["shipped_as"] = str(ship_base(Path(base["path"]).parent))
    click.echo(json.dumps(base, indent=1))
