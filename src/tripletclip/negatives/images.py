"""The negative-image job (``tripletclip negatives images``): TripletData shards for the trainer.

Input: the negatives table of ``negatives text`` (one row per negative caption). Rows are grouped by key
(one sample per positive image, its negatives in order), groups are split into units, each unit renders its
negative captions in batches with a registered text-to-image backend and writes its samples with
``tripletclip.data.shards.ShardWriter`` into a temporary folder; the finished tars are renamed into the output
folder, then the unit is marked done (see :mod:`tripletclip.negatives.jobs`). The output ``manifest.json`` is
the data package's shard manifest (shards, sample counts, sha256, edit types, dataset hash) plus the
generation record (config, counts of missing positives, per-stage throughput).

Per-image seed = stable_hash(seed, key, m), recorded in the sample's meta (``neg_seeds``): re-rendering one
sample reproduces its image. Sample layout: positive image, caption(s) (the caption the negative was made
from first; the original caption too when it was rewritten), negative captions and their renderings aligned.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from tripletclip.data.contract import DataError
from tripletclip.data.manifest import MANIFEST_FORMAT, combine_hashes, fingerprint_files
from tripletclip.data.shards import ShardWriter, detect_image_ext, safe_key
from tripletclip.edit_types import EDIT_TYPES, known_edit_type
from tripletclip.negatives.base import stable_hash
from tripletclip.negatives.io import expand_paths, read_parquet_rows
from tripletclip.negatives.jobs import Job, resolve_shard
from tripletclip.negatives.positives import PositiveImages
from tripletclip.negatives.t2i import build_t2i

_MAX_LISTED = 20


def group_negatives(rows: list[dict[str, Any]], max_negs: Optional[int] = None) -> list[dict[str, Any]]:
    """One group per key in first-appearance order, negatives in row order."""
    groups: dict[str, dict[str, Any]] = {}
    for n, r in enumerate(rows):
        for c in ("key", "caption", "neg_caption"):
            if not r.get(c):
                raise DataError(f"negatives table, row {n}: column '{c}' is missing or empty; give the output of "
                                "`tripletclip negatives text`")
        g = groups.get(r["key"])
        if g is None:
            g = groups[r["key"]] = {"key": str(r["key"]), "caption": r["caption"], "image": r.get("image") or "",
                                    "original_caption": r.get("original_caption") or r["caption"], "negs": []}
        if max_negs is None or len(g["negs"]) < max_negs:
            g["negs"].append((r["neg_caption"], known_edit_type(r.get("edit_type")), r.get("generator") or ""))
    return list(groups.values())


def run_images(negatives: str, out: str, backend: str = "diffusers", options: Optional[dict[str, Any]] = None,
               positives: Optional[str] = None, image_root: Optional[str] = None, batch_size: int = 8,
               chunk_size: int = 1000, shard_size: int = 1000, seed: int = 0, image_format: str = "jpg",
               max_negs_per_key: Optional[int] = 1, shard: Optional[str] = None, overwrite: bool = False,
               t2i: Any = None) -> dict[str, Any]:
    """Render negative images for the negatives table ``negatives`` into TripletData shards in ``out``."""
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
    rank, world = resolve_shard(shard)
    paths = expand_paths(negatives)
    groups = group_negatives(read_parquet_rows(negatives, None), max_negs_per_key)
    units = [f"keys {a}-{min(a + chunk_size, len(groups)) - 1}" for a in range(0, len(groups), chunk_size)]
    t2i = t2i if t2i is not None else build_t2i(backend, **(options or {}))
    config = {"input": {"spec": negatives, "fingerprint": fingerprint_files(paths)["sha256"], "positives": positives,
                        "image_root": image_root, "chunk_size": chunk_size, "max_negs_per_key": max_negs_per_key},
              "t2i": t2i.info(), "seed": seed, "shard_size": shard_size, "image_format": image_format}
    job = Job(out, "negatives-images", config, units, prefix="part", overwrite=overwrite, world=world)
    pos = PositiveImages(positives, image_root)

    def work(u: int) -> dict[str, Any]:
        chunk = groups[u * chunk_size : (u + 1) * chunk_size]
        ready, missing = [], []
        for g in chunk:
            data = pos.get(g["key"], g["image"])
            try:
                if data is not None:
                    detect_image_ext(data)
            except ValueError:
                data = None
            (ready if data is not None else missing).append((g, data))
        jobs = [(gi, m, neg[0], stable_hash(seed, g["key"], m, bits=31))
                for gi, (g, _) in enumerate(ready) for m, neg in enumerate(g["negs"])]
        rendered: dict[tuple[int, int], Any] = {}
        t0 = time.perf_counter()
        for b in range(0, len(jobs), batch_size):
            batch = jobs[b : b + batch_size]
            images = t2i.render([j[2] for j in batch], [j[3] for j in batch])
            for (gi, m, _, _), img in zip(batch, images):
                rendered[(gi, m)] = img
        t_render = time.perf_counter() - t0
        tmp = job.out / f".part{u:06d}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        failed: list[str] = []
        with ShardWriter(tmp, prefix=f"part{u:06d}", shard_size=shard_size, image_format=image_format) as w:
            for gi, (g, data) in enumerate(ready):
                caps = [g["caption"]] + ([g["original_caption"]] if g["original_caption"] != g["caption"] else [])
                # a caption the backend cannot render (None) is dropped with its image: captions and images stay aligned
                ms = [m for m in range(len(g["negs"])) if rendered[(gi, m)] is not None]
                failed += [f"{g['key']}:{m}" for m in range(len(g["negs"])) if rendered[(gi, m)] is None]
                meta = {"neg_seeds": [stable_hash(seed, g["key"], m, bits=31) for m in ms],
                        "neg_generators": [g["negs"][m][2] for m in ms], "t2i": f"{t2i.name}:{t2i.model_id}"}
                if safe_key(g["key"]) != g["key"]:
                    meta["source_key"] = g["key"]
                w.write(safe_key(g["key"]), data, caps, neg_captions=[g["negs"][m][0] for m in ms],
                        neg_types=[g["negs"][m][1] for m in ms], neg_images=[rendered[(gi, m)] for m in ms], meta=meta)
        shards = w.manifest["shards"] if w.manifest else []
        for s in shards:  # publish the finished tars; the unit is marked done only after this
            (tmp / s["name"]).replace(job.out / s["name"])
        shutil.rmtree(tmp, ignore_errors=True)
        return {"rows": len(chunk), "samples": len(ready), "neg_images": len(jobs) - len(failed),
                "render_seconds": round(t_render, 3), "render_failed": len(failed), "render_failed_examples": failed[:_MAX_LISTED],
                "missing_positive": len(missing), "missing_positive_keys": [g["key"] for g, _ in missing][:_MAX_LISTED],
                "edit_types": {t: sum(s["edit_types"].get(t, 0) for s in shards) for t in EDIT_TYPES
                               if any(t in s["edit_types"] for s in shards)},
                "shards": shards}

    summary = job.run(rank, world, work, what="keys")
    stats = job.unit_stats()
    shards = [s for st in stats for s in st["shards"]]
    render_s = sum(st["render_seconds"] for st in stats)
    data_manifest = {
        "format": MANIFEST_FORMAT, "prefix": "part", "shards": shards, "num_shards": len(shards),
        "total_samples": sum(s["samples"] for s in shards),
        "total_neg_captions": sum(s["neg_captions"] for s in shards),
        "total_neg_images": sum(s["neg_images"] for s in shards),
        "dataset_hash": combine_hashes(s["sha256"] for s in shards),
        "images_per_s_render": round(sum(st["neg_images"] for st in stats) / render_s, 3) if render_s else 0.0,
        "missing_positive_examples": [k for st in stats for k in st["missing_positive_keys"]][:_MAX_LISTED],
        "last_run": summary,
    }
    return job.write_manifest(data_manifest)
