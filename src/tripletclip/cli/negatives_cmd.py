"""``tripletclip negatives``: generate TripletData (negative captions, rewrites, images), filter, analyse.

Thin: each subcommand parses its options into the typed options object of one job and calls its function in
:mod:`tripletclip.negatives` (click hands the parsed values over as keyword arguments, ``**o``).
Sharding: ``--shard i/N``, or the RANK/WORLD_SIZE (torchrun) or SLURM_PROCID/SLURM_NTASKS variables.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import click

_SHARD = click.option("--shard", default=None, help="i/N: this process's share (default: torchrun/SLURM env, else 0/1).")
_OVERWRITE = click.option("--overwrite", is_flag=True, help="Start over in an output folder that holds another job.")


def _llm_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--backend", default="transformers", show_default=True, help="LLM backend: transformers, vllm, openai."),
        click.option("--model", default="", help="Local model folder or hub id (transformers/vllm), or the server's model name (openai)."),
        click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="openai backend: server URL."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="openai backend: env variable holding the key."),
        click.option("--concurrency", default=8, show_default=True, help="openai backend: parallel requests."),
        click.option("--timeout", default=60.0, show_default=True,
                     help="openai backend: seconds to wait for a reply (then retried; still none: counted, and "
                          "the caption is retried or falls back like an invalid reply)."),
        click.option("--max-reply-chars", default=2000, show_default=True,
                     help="Longest reply read (characters); longer ones are rejected unread, counted."),
        click.option("--device", default="auto", show_default=True),
        click.option("--dtype", default="auto", show_default=True),
        click.option("--llm-batch-size", default=32, show_default=True, help="Prompts per generate call."),
        click.option("--retries", default=2, show_default=True, help="Retries of invalid outputs (sampled)."),
        click.option("--temperature", default=None, type=float, help="0 = greedy (default for negatives; 0.7 for rewrites)."),
        click.option("--max-new-tokens", default=64, show_default=True),
    ]):
        f = opt(f)
    return f


def _input_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--key-col", default="key", show_default=True),
        click.option("--caption-col", default="caption", show_default=True),
        click.option("--image-col", default="auto", show_default=True, help="Column with the positive image path ('' = none)."),
        click.option("--chunk-size", default=10000, show_default=True, help="Rows per unit of work (tables; a tar is one unit)."),
    ]):
        f = opt(f)
    return f


def _llm(o: dict[str, Any], temperature: float) -> dict[str, Any]:
    """The LLM options shared by ``text --generator llm`` and ``rewrite``, from the parsed click options."""
    if o["backend"] == "openai":
        backend = {"base_url": o["base_url"], "api_key_env": o["api_key_env"], "concurrency": o["concurrency"],
                   "timeout": o["timeout"], "max_reply_bytes": 4 * o["max_reply_chars"] + (1 << 16)}
    elif o["backend"] == "vllm":
        backend = {"dtype": o["dtype"]}
    else:
        backend = {"device": o["device"], "dtype": o["dtype"]}
    return {"batch_size": o["llm_batch_size"], "retries": o["retries"], "max_new_tokens": o["max_new_tokens"],
            "seed": o["seed"], "temperature": temperature if o["temperature"] is None else o["temperature"],
            "max_reply_chars": o["max_reply_chars"],
            "backend_options": backend}


def _columns(o: dict[str, Any]) -> Any:
    from tripletclip.negatives.io import CaptionColumns

    return CaptionColumns(o["key_col"], o["caption_col"], o["image_col"], o["chunk_size"])


def _report(manifest: dict[str, Any], keys: tuple[str, ...]) -> None:
    click.echo(json.dumps({k: manifest.get(k) for k in keys if k in manifest}, indent=1))


@click.group()
def negatives() -> None:
    """Generate TripletData for real datasets: negative captions, rewrites, images, filtering, analysis."""


@negatives.command()
@click.option("--in", "inp", required=True, help="Captions: CSV/TSV, parquet, JSONL, or webdataset tars.")
@click.option("--out", required=True, help="Output folder (parquet parts + manifest.json).")
@click.option("--generator", default="rules", show_default=True, type=click.Choice(["rules", "llm"]))
@click.option("--types", default="sugarcrepe", show_default=True, help="rules: preset (sugarcrepe, ceclip) or comma list of edit types.")
@click.option("--per-caption", default=None, type=int, help="rules: negatives per caption (default 1; 4 for ceclip).")
@click.option("--tagger", default="auto", show_default=True, help="auto, lexicon, spacy or spacy:<model>.")
@click.option("--wordlists", default=None, help="rules: folder with your own word lists (same files as shipped).")
@click.option("--seed", default=0, show_default=True)
@click.option("--fallback", default="rules", show_default=True, type=click.Choice(["rules", "none"]))
@click.option("--batch-size", default=256, show_default=True, help="Captions handed to the generator at once.")
@_llm_options
@_input_options
@_SHARD
@_OVERWRITE
def text(**o: Any) -> None:
    """Negative captions (one parquet row per negative)."""
    from tripletclip.negatives.text_job import TextJobOptions, describe_text_output, run_text

    if o["generator"] == "rules":
        gen = {"types": o["types"], "per_caption": o["per_caption"] or (4 if o["types"] == "ceclip" else 1),
               "seed": o["seed"], "tagger": o["tagger"], "wordlists": o["wordlists"]}
    else:
        gen = {"backend": o["backend"], "model": o["model"], "fallback": o["fallback"], "tagger": o["tagger"],
               **_llm(o, temperature=0.0)}
    m = run_text(TextJobOptions(inp=o["inp"], out=o["out"], generator=o["generator"], generator_options=gen,
                                columns=_columns(o), batch_size=o["batch_size"], shard=o["shard"],
                                overwrite=o["overwrite"]))
    click.echo(describe_text_output(m, o["out"]))


@negatives.command()
@click.option("--in", "inp", required=True)
@click.option("--out", required=True)
@click.option("--n", "n", default=1, show_default=True, help="Rewrites per caption.")
@click.option("--seed", default=0, show_default=True)
@_llm_options
@_input_options
@_SHARD
@_OVERWRITE
def rewrite(**o: Any) -> None:
    """LaCLIP-style caption rewrites (output is a valid --in of `text`)."""
    from tripletclip.negatives.text_job import RewriteJobOptions, run_rewrite

    m = run_rewrite(RewriteJobOptions(inp=o["inp"], out=o["out"], backend=o["backend"], model=o["model"],
                                      options=_llm(o, temperature=0.7), n=o["n"], columns=_columns(o),
                                      shard=o["shard"], overwrite=o["overwrite"]))
    _report(m, ("complete", "units_done", "units_total", "rows", "captions_rewritten", "generator_counts", "last_run"))


@negatives.command()
@click.option("--negatives", "negs", required=True, help="Output folder (or parquet) of `negatives text`.")
@click.option("--out", required=True, help="Output folder of TripletData shards.")
@click.option("--backend", default="diffusers", show_default=True, type=click.Choice(["diffusers", "world"]))
@click.option("--model", default="stabilityai/sdxl-turbo", show_default=True, help="diffusers pipeline folder or cached hub id.")
@click.option("--steps", default=1, show_default=True, help="Denoising steps (SDXL-Turbo: 1-4).")
@click.option("--guidance", default=0.0, show_default=True, help="Classifier-free guidance (0 = none, SDXL-Turbo).")
@click.option("--size", default=512, show_default=True, help="Image side in pixels.")
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--batch-size", default=8, show_default=True, help="Prompts per pipeline call.")
@click.option("--positives", default=None, help="Where positive images are when the table has no image column: tars or a folder.")
@click.option("--image-root", default=None, help="Root for relative image paths in the table.")
@click.option("--chunk-size", default=1000, show_default=True, help="Keys per unit of work.")
@click.option("--shard-size", default=1000, show_default=True, help="Samples per output tar.")
@click.option("--max-negs-per-key", default=1, show_default=True, help="Negatives rendered per positive (TripletCLIP: 1).")
@click.option("--image-format", default="jpg", show_default=True, type=click.Choice(["jpg", "png"]))
@click.option("--seed", default=0, show_default=True)
@_SHARD
@_OVERWRITE
def images(**o: Any) -> None:
    """Negative images from negative captions, written as TripletData shards."""
    from tripletclip.negatives.images import ImageJobOptions, run_images
    from tripletclip.utils.ownership import check_separate

    check_separate(o["out"], [p for p in (o["negs"], o["positives"]) if p], in_option="--negatives/--positives")

    t2i = {"size": o["size"]} if o["backend"] == "world" else \
        {k: o[k] for k in ("model", "steps", "guidance", "size", "device", "dtype")}
    same = ("positives", "image_root", "batch_size", "chunk_size", "shard_size", "max_negs_per_key", "image_format",
            "seed", "shard", "overwrite")
    m = run_images(ImageJobOptions(negatives=o["negs"], out=o["out"], backend=o["backend"], backend_options=t2i,
                                   **{k: o[k] for k in same}))
    _report(m, ("complete", "units_done", "units_total", "total_samples", "total_neg_images", "edit_types",
                "missing_positive", "images_per_s_render", "last_run"))


@negatives.command(name="filter")
@click.option("--shards", required=True, help="TripletData folder (with manifest.json) or tars.")
@click.option("--out", required=True)
@click.option("--keep", default=0.5, show_default=True, help="Fraction of triplets to keep (top by CLIP score).")
@click.option("--model", default="", help="open_clip model name, e.g. ViT-B-32-quickgelu.")
@click.option("--pretrained", default="", help="open_clip pretrained tag or weights file.")
@click.option("--run", default="", help="A tripletclip run folder or checkpoint instead of --model.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--shard-size", default=1000, show_default=True)
@_SHARD
@_OVERWRITE
def filter_cmd(**o: Any) -> None:
    """TripletCLIP++ filter: keep the top fraction by 1/2 [s(x,y) + s(x',y')]."""
    from tripletclip.negatives.filter import FilterJobOptions, run_filter
    from tripletclip.utils.ownership import check_separate

    check_separate(o["out"], [o["shards"]], in_option="--shards")

    m = run_filter(FilterJobOptions(**o))
    click.echo(json.dumps(m.get("filter", {k: m.get(k) for k in ("complete", "units_done", "units_total")}), indent=1))


@negatives.command()
@click.option("--in", "inp", required=True, help="Negatives table folder or TripletData shards.")
@click.option("--out", required=True)
@click.option("--model", default="", help="open_clip model for cosine similarities (optional).")
@click.option("--pretrained", default="")
@click.option("--run", default="")
@click.option("--max-rows", default=5000, show_default=True, help="Rows sampled for the similarity plots.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
def stats(inp: str, out: str, model: str, pretrained: str, run: str, max_rows: int, batch_size: int, device: str) -> None:
    """Edit-type mix, caption length, concept coverage, similarity distributions (stats.json + PNG)."""
    from tripletclip.negatives.stats import compute_stats

    s = compute_stats(inp, out, model, pretrained, run, max_rows, batch_size, device)
    click.echo(json.dumps({k: s[k] for k in ("rows", "edit_types", "caption_words", "plots")}, indent=1))


@negatives.command()
@click.option("--shards", required=True, help="TripletData folder or tars with negative images.")
@click.option("--out", required=True)
@click.option("--model", required=True, help="transformers VQA model folder (ViLT or BLIP VQA).")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--max-samples", default=None, type=int, help="Check only the first N negative images.")
def faithfulness(shards: str, out: str, model: str, device: str, batch_size: int, max_samples: Optional[int]) -> None:
    """Yes/no questions per negative caption answered on its image by a VQA model (analysis)."""
    from tripletclip.negatives.faithfulness import run_faithfulness

    r = run_faithfulness(shards, out, model, device, batch_size, max_samples)
    click.echo(json.dumps({k: r[k] for k in ("pairs", "questions", "faithful_rate", "faithful_rate_by_edit_type")}, indent=1))
