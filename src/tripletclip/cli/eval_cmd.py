"""``tripletclip eval``: parse, build the encoder, call :func:`tripletclip.eval.run_eval`, print the headlines."""
from __future__ import annotations

from typing import Optional

import click


@click.command("eval")
@click.option("--benchmark", "benchmarks", default=None, help="Benchmark name(s), comma-separated (see --list).")
@click.option("--annotations", multiple=True, help="Annotation file/folder: PATH for all, or NAME=PATH. Repeatable.")
@click.option("--images", multiple=True, help="Image folder: DIR for all, or NAME=DIR; several are searched in order.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Result JSON file.")
@click.option("--model", default=None, help="open_clip model name (with --pretrained), e.g. ViT-B-32-quickgelu, "
              "or hf:PATH_OR_ID for a transformers CLIP folder (incl. released TripletCLIP checkpoints).")
@click.option("--pretrained", default="", help="open_clip tag, a weights file, or a tripletclip run/checkpoint folder.")
@click.option("--checkpoint", default=None, help="A tripletclip run folder or checkpoint folder (instead of --model).")
@click.option("--random-init", is_flag=True, help="Score --model with random weights (seeded by --seed); a baseline, never by accident.")
@click.option("--seed", default=0, show_default=True, help="Seed of the --random-init weights.")
@click.option("--force-quick-gelu", is_flag=True, help="Build the model with QuickGELU (OpenAI weights need it).")
@click.option("--per-row", "per_row", type=click.Path(dir_okay=False), default=None, help="Also write one JSON line per scored row.")
@click.option("--skip-missing", is_flag=True, help="Skip rows whose image is missing (counted in the result) instead of failing.")
@click.option("--blind", is_flag=True, help="Text-only baseline: replace every image by an image-free query.")
@click.option("--option", "options", multiple=True, help="Evaluator option KEY=VALUE or NAME.KEY=VALUE (e.g. zeroshot.dataset=cifar10).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON or YAML file {benchmark: {annotations, images, options...}}; flags override it.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--list", "list_benchmarks", is_flag=True, help="List the benchmarks and their options, then exit.")
@click.option("--suite", default=None, help="Run a suite (compositionality): every benchmark --suite-config names, one table.")
@click.option("--suite-config", type=click.Path(dir_okay=False), default=None,
              help="YAML/JSON {benchmark: {annotations, images, options}} of the suite's files (paths checked first).")
@click.option("--base", "base_spec", default=None, help="Suite: base model [LABEL=]CHECKPOINT_DIR or MODEL:PRETRAINED; "
              "every other model gets its change against it.")
@click.option("--compare", "compare_specs", multiple=True, help="Suite: another model side by side, [LABEL=]SPEC. Repeatable.")
def eval_cmd(
    benchmarks: Optional[str], annotations: tuple[str, ...], images: tuple[str, ...], out: Optional[str],
    model: Optional[str], pretrained: str, checkpoint: Optional[str], random_init: bool, seed: int,
    force_quick_gelu: bool, per_row: Optional[str],
    skip_missing: bool, blind: bool, options: tuple[str, ...], config_path: Optional[str], batch_size: int,
    device: str, precision: str, list_benchmarks: bool, suite: Optional[str], suite_config: Optional[str],
    base_spec: Optional[str], compare_specs: tuple[str, ...],
) -> None:
    """Evaluate a model on compositional, retrieval and zero-shot benchmarks."""
    if list_benchmarks:  # answered from the catalog: no torch import (under 2 s)
        from tripletclip.catalog import format_benchmarks

        click.echo(format_benchmarks(), nl=False)
        return
    if suite:
        from tripletclip.eval.suite import run_suite_command

        run_suite_command(suite, suite_config, out, model, pretrained, checkpoint, base_spec, compare_specs,
                          device=device, batch_size=batch_size, precision=precision, force_quick_gelu=force_quick_gelu,
                          skip_missing=skip_missing, echo=click.echo)
        return
    from tripletclip.eval import load_encoder, run_eval
    from tripletclip.eval.api import build_args, check_inputs, headline_table, read_eval_config

    if not benchmarks or not out:
        raise click.UsageError("--benchmark and --out are required (see --list for the benchmarks)")
    config = read_eval_config(config_path) if config_path else None
    args = build_args(benchmarks, annotations, images, options, config)
    check_inputs(benchmarks, args)  # a missing folder fails here, not after a model download
    init_seed = seed if random_init else None
    encoder = load_encoder(model, pretrained, checkpoint, device, batch_size, precision, force_quick_gelu, progress=True,
                           random_init_seed=init_seed)
    command = {"benchmarks": benchmarks, "args": args, "model": model, "pretrained": pretrained,
               "checkpoint": checkpoint, "random_init_seed": init_seed, "blind": blind, "skip_missing": skip_missing,
               "precision": precision}
    doc = run_eval(benchmarks, encoder, args, out, per_row, blind, skip_missing, command)
    click.echo(headline_table(doc))
    click.echo(f"results: {out} (fractions, full precision)" + (f", rows: {per_row}" if per_row else ""))
