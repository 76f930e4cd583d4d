"""The negative-caption and caption-rewrite jobs (``tripletclip negatives text`` / ``rewrite``).

Output of ``text``: ``part-<unit>.parquet`` files, one row per negative, columns ``key, caption, neg_caption,
edit_type, generator, detail, attempts, fallback, neg_index, image, original_caption``, plus ``manifest.json``
(counts per edit type, captions without a negative, invalid LLM outputs by reason, retries, fallbacks, the
tagger used). Output of ``rewrite``: one row per caption, ``key, caption`` (the first valid rewrite, else the
original), ``original_caption, rewrites, rewritten, generator, image``: itself a valid input of ``text``, as in
TripletCLIP where negatives are made from LaCLIP-rewritten captions (arXiv 2411.02545, Sec. 3.2).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tripletclip.negatives.base import TEXT_GENERATORS
from tripletclip.negatives.io import CaptionColumns, CaptionInput, write_parquet_atomic
from tripletclip.negatives.jobs import JobOptions, ShardedJob, resolve_shard
from tripletclip.negatives.llm import Rewriter
from tripletclip.utils.ownership import check_separate

_KEEP = ("original_caption",)
_MAX_LISTED = 20
_TEXT_COLUMNS = ("key", "caption", "neg_caption", "edit_type", "generator", "detail", "attempts", "fallback",
                 "neg_index", "image", "original_caption")


@dataclass(kw_only=True)
class TextJobOptions(JobOptions):
    """``negatives text``: captions in ``inp``, negatives by the generator registered as ``generator``."""

    inp: str
    generator: str = "rules"
    generator_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the generator
    columns: CaptionColumns = field(default_factory=CaptionColumns)
    batch_size: int = 256  # captions handed to the generator at once


@dataclass(kw_only=True)
class RewriteJobOptions(JobOptions):
    """``negatives rewrite``: LaCLIP-style rewrites of the captions in ``inp`` by an LLM backend."""

    inp: str
    backend: str = "transformers"
    model: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the Rewriter / backend
    n: int = 1  # rewrites per caption
    columns: CaptionColumns = field(default_factory=CaptionColumns)


def _input_config(src: CaptionInput) -> dict[str, Any]:
    return {"spec": src.spec, "kind": src.kind, "fingerprint": src.fingerprint(), **asdict(src.columns)}


def run_text(opts: TextJobOptions) -> dict[str, Any]:
    """Generate negative captions for every caption of ``opts.inp`` into ``opts.out``; returns the manifest."""
    rank, world = resolve_shard(opts.shard)
    # keep_cols carries the original caption through when the input is the output of ``rewrite``
    src = CaptionInput(opts.inp, opts.columns, keep_cols=_KEEP)
    check_separate(opts.out, [opts.inp, *src.paths])
    gen = TEXT_GENERATORS.get(opts.generator)(**opts.generator_options)
    job = ShardedJob(opts.out, "negatives-text", {"input": _input_config(src), "generator": gen.info()}, src.units,
                     overwrite=opts.overwrite, world=world, rank=rank)

    def work(u: int) -> dict[str, Any]:
        before = dict(src.skipped)
        rows = src.read(u)
        cols: dict[str, list] = {k: [] for k in _TEXT_COLUMNS}
        edit_types: dict[str, int] = {}
        no_neg: list[str] = []
        for b in range(0, len(rows), opts.batch_size):
            batch = rows[b : b + opts.batch_size]
            for row, negs in zip(batch, gen.generate([(r.key, r.caption) for r in batch])):
                if not negs:
                    no_neg.append(row.key)
                for j, n in enumerate(negs):
                    values = (row.key, row.caption, n.neg_caption, n.edit_type, n.generator, n.detail, n.attempts,
                              n.fallback, j, row.image, row.extra.get("original_caption") or row.caption)
                    for k, v in zip(_TEXT_COLUMNS, values):
                        cols[k].append(v)
                    edit_types[n.edit_type] = edit_types.get(n.edit_type, 0) + 1
        write_parquet_atomic(cols, job.out / f"part-{u:06d}.parquet")
        skipped = {k: v - before.get(k, 0) for k, v in src.skipped.items() if v - before.get(k, 0)}
        return {"rows": len(rows), "negatives": len(cols["key"]), "edit_types": edit_types,
                "captions_without_negative": len(no_neg), "keys_without_negative": no_neg[:_MAX_LISTED],
                "generator_counts": gen.stats.take(), **({"input_skipped": skipped} if src.kind == "wds" else {})}

    summary = job.run(rank, world, work, what="captions")
    extra: dict[str, Any] = {"generator_info": gen.info(), "last_run": summary,
                             "keys_without_negative_examples": _examples(job)}
    if src.kind != "wds":
        extra["input_skipped"] = dict(src.skipped)
    return job.write_manifest(extra)


def describe_text_output(manifest: dict[str, Any], out: str | Path, n_examples: int = 5) -> str:
    """What ``negatives text`` wrote, for a person: totals, negatives per edit type, a few example rows
    (caption -> negative, one per edit type first), and where the full manifest is."""
    from tripletclip.negatives.io import read_parquet_rows

    total = int(manifest.get("negatives", 0))
    lines = [f"{total:,} negatives for {int(manifest.get('rows', 0)):,} captions "
             f"({int(manifest.get('captions_without_negative', 0)):,} without a negative); units "
             f"{manifest.get('units_done')}/{manifest.get('units_total')}"
             + (", complete" if manifest.get("complete") else ", INCOMPLETE: run the same command again to finish")]
    counts = sorted((manifest.get("edit_types") or {}).items(), key=lambda kv: -kv[1])
    if counts:
        width = max(len(k) for k, _ in counts)
        lines.append("negatives per edit type:")
        lines += [f"  {k:<{width}}  {v:>8,}  {100 * v / max(1, total):5.1f}%" for k, v in counts]
    if manifest.get("generator_counts"):
        lines.append("generator counters: " + ", ".join(f"{k} {v:,}" for k, v in sorted(manifest["generator_counts"].items())))
    parts = sorted(Path(out).glob("part-*.parquet"))
    rows = read_parquet_rows(str(parts[0]), ["caption", "neg_caption", "edit_type"]) if parts else []
    first: dict[str, dict[str, Any]] = {}
    for r in rows:  # the first row of each edit type, then more rows if there are fewer types than examples
        first.setdefault(r["edit_type"], r)
    picked = list(first.values())[:n_examples]
    picked += [r for r in rows if r not in picked][: n_examples - len(picked)]
    if picked:
        lines.append("examples (caption -> negative, edit type):")
        for r in picked:
            lines += [f"  [{r['edit_type']}] {r['caption']}", f"  {' ' * (len(r['edit_type']) + 2)} -> {r['neg_caption']}"]
    lines.append(f"manifest: {Path(out) / 'manifest.json'}")
    return "\n".join(lines)


def _examples(job: ShardedJob) -> list[str]:
    out: list[str] = []
    for s in job.unit_stats():
        out.extend(s.get("keys_without_negative", []))
    return out[:_MAX_LISTED]


def run_rewrite(opts: RewriteJobOptions, llm: Any = None) -> dict[str, Any]:
    """LaCLIP-style rewrites of every caption of ``opts.inp`` into ``opts.out``; returns the manifest.

    ``llm``: an already built backend (tests, notebooks) instead of ``opts.backend``.
    """
    rank, world = resolve_shard(opts.shard)
    src = CaptionInput(opts.inp, opts.columns)
    check_separate(opts.out, [opts.inp, *src.paths])
    rw = Rewriter(opts.backend, opts.model, n=opts.n, llm=llm, **opts.options)
    job = ShardedJob(opts.out, "negatives-rewrite", {"input": _input_config(src), "rewriter": rw.info()}, src.units,
                     overwrite=opts.overwrite, world=world, rank=rank)

    def work(u: int) -> dict[str, Any]:
        rows = src.read(u)
        t0 = time.perf_counter()
        texts = rw.rewrite([(r.key, r.caption) for r in rows])
        cols: dict[str, list] = {k: [] for k in ("key", "caption", "original_caption", "rewrites", "rewritten",
                                                 "generator", "image")}
        for r, t in zip(rows, texts):
            valid = [x for x in t if x is not None]
            for k, v in (("key", r.key), ("caption", valid[0] if valid else r.caption), ("original_caption", r.caption),
                         ("rewrites", valid), ("rewritten", bool(valid)), ("generator", rw.label), ("image", r.image)):
                cols[k].append(v)
        write_parquet_atomic(cols, job.out / f"part-{u:06d}.parquet")
        return {"rows": len(rows), "captions_rewritten": sum(cols["rewritten"]),
                "llm_seconds": round(time.perf_counter() - t0, 3), "generator_counts": rw.stats.take()}

    summary = job.run(rank, world, work, what="captions")
    return job.write_manifest({"rewriter_info": rw.info(), "last_run": summary, "input_skipped": dict(src.skipped)})


def list_parts(out: str | Path) -> list[Path]:
    """The parquet parts of a text/rewrite output folder, in unit order."""
    return sorted(Path(out).glob("part-*.parquet"))
