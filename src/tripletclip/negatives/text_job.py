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
from pathlib import Path
from typing import Any, Optional

from tripletclip.negatives.base import TEXT_GENERATORS
from tripletclip.negatives.io import CaptionInput, write_parquet_atomic
from tripletclip.negatives.jobs import Job, resolve_shard
from tripletclip.negatives.llm import Rewriter

_KEEP = ("original_caption",)
_MAX_LISTED = 20


def _open_input(inp: str, key_col: str, caption_col: str, image_col: str, chunk_size: int) -> CaptionInput:
    # carries the original caption through when the input is the output of ``rewrite``
    return CaptionInput(inp, key_col, caption_col, image_col, chunk_size, keep_cols=_KEEP)


def _input_config(src: CaptionInput, chunk_size: int) -> dict[str, Any]:
    return {"spec": src.spec, "kind": src.kind, "fingerprint": src.fingerprint(), "key_col": src.key_col,
            "caption_col": src.caption_col, "image_col": src.image_col, "chunk_size": chunk_size}


def run_text(inp: str, out: str, generator: str = "rules", options: Optional[dict[str, Any]] = None,
             key_col: str = "key", caption_col: str = "caption", image_col: str = "auto", chunk_size: int = 10000,
             batch_size: int = 256, shard: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Generate negative captions for every caption of ``inp`` into ``out``; returns the manifest."""
    rank, world = resolve_shard(shard)
    src = _open_input(inp, key_col, caption_col, image_col, chunk_size)
    gen = TEXT_GENERATORS.get(generator)(**(options or {}))
    job = Job(out, "negatives-text", {"input": _input_config(src, chunk_size), "generator": gen.info()}, src.units,
              overwrite=overwrite, world=world)

    def work(u: int) -> dict[str, Any]:
        before = dict(src.skipped)
        rows = src.read(u)
        cols: dict[str, list] = {k: [] for k in ("key", "caption", "neg_caption", "edit_type", "generator", "detail",
                                                 "attempts", "fallback", "neg_index", "image", "original_caption")}
        edit_types: dict[str, int] = {}
        no_neg: list[str] = []
        for b in range(0, len(rows), batch_size):
            batch = rows[b : b + batch_size]
            for row, negs in zip(batch, gen.generate([(r.key, r.caption) for r in batch])):
                if not negs:
                    no_neg.append(row.key)
                for j, n in enumerate(negs):
                    for k, v in (("key", row.key), ("caption", row.caption), ("neg_caption", n.neg_caption),
                                 ("edit_type", n.edit_type), ("generator", n.generator), ("detail", n.detail),
                                 ("attempts", n.attempts), ("fallback", n.fallback), ("neg_index", j),
                                 ("image", row.image),
                                 ("original_caption", row.extra.get("original_caption") or row.caption)):
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


def _examples(job: Job) -> list[str]:
    out: list[str] = []
    for s in job.unit_stats():
        out.extend(s.get("keys_without_negative", []))
    return out[:_MAX_LISTED]


def run_rewrite(inp: str, out: str, backend: str = "transformers", model: str = "",
                options: Optional[dict[str, Any]] = None, n: int = 1, key_col: str = "key",
                caption_col: str = "caption", image_col: str = "auto", chunk_size: int = 10000,
                shard: Optional[str] = None, overwrite: bool = False, llm: Any = None) -> dict[str, Any]:
    """LaCLIP-style rewrites of every caption of ``inp`` into ``out``; returns the manifest."""
    rank, world = resolve_shard(shard)
    src = CaptionInput(inp, key_col, caption_col, image_col, chunk_size)
    rw = Rewriter(backend, model, n=n, llm=llm, **(options or {}))
    job = Job(out, "negatives-rewrite", {"input": _input_config(src, chunk_size), "rewriter": rw.info()}, src.units,
              overwrite=overwrite, world=world)

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
