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
from dataclasses import dataclass, field
from typing import Any, Optional

from tripletclip.data.contract import DataError
from tripletclip.data.manifest import build_manifest, fingerprint_files
from tripletclip.data.shards import ShardWriter, detect_image_ext, safe_key
from tripletclip.edit_types import known_edit_type
from tripletclip.errors import InputError
from tripletclip.negatives.base import stable_hash
from tripletclip.negatives.io import expand_paths, read_parquet_rows
from tripletclip.negatives.jobs import JobOptions, ShardedJob, resolve_shard
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


@dataclass(kw_only=True)
class ImageJobOptions(JobOptions):
    """``negatives images``: render the negatives table ``negatives`` with the T2I backend ``backend``."""

    negatives: str
    backend: str = "diffusers"
    backend_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the backend
    positives: Optional[str] = None  # tars or a folder holding the positive images, when the table has no path
    image_root: Optional[str] = None  # root of relative image paths in the table
    batch_size: int = 8  # prompts per backend call
    chunk_size: int = 1000  # keys per unit of work
    shard_size: int = 1000  # samples per output tar
    seed: int = 0
    image_format: str = "jpg"
    max_negs_per_key: Optional[int] = 1  # TripletCLIP renders one negative per positive


def run_images(opts: ImageJobOptions, t2i: Any = None) -> dict[str, Any]:
    """Render negative images for ``opts.negatives`` into TripletData shards in ``opts.out``; returns the manifest.

    ``t2i``: an already built backend (tests, notebooks) instead of ``opts.backend``.
    """
    if opts.batch_size < 1 or opts.chunk_size < 1:
        raise InputError(f"batch_size and chunk_size must be >= 1, got {opts.batch_size}, {opts.chunk_size}")
    rank, world = resolve_shard(opts.shard)
    paths = expand_paths(opts.negatives)
    groups = group_negatives(read_parquet_rows(opts.negatives, None), opts.max_negs_per_key)
    chunk = opts.chunk_size
    units = [f"keys {a}-{min(a + chunk, len(groups)) - 1}" for a in range(0, len(groups), chunk)]
    t2i = t2i if t2i is not None else build_t2i(opts.backend, **opts.backend_options)
    config = {"input": {"spec": opts.negatives, "fingerprint": fingerprint_files(paths)["sha256"],
                        "positives": opts.positives, "image_root": opts.image_root, "chunk_size": chunk,
                        "max_negs_per_key": opts.max_negs_per_key},
              "t2i": t2i.info(), "seed": opts.seed, "shard_size": opts.shard_size, "image_format": opts.image_format}
    job = ShardedJob(opts.out, "negatives-images", config, units, overwrite=opts.overwrite, world=world, rank=rank)
    pos = PositiveImages(opts.positives, opts.image_root)

    def work(u: int) -> dict[str, Any]:
        return _render_unit(u, groups[u * chunk : (u + 1) * chunk], pos, t2i, job, opts)

    summary = job.run(rank, world, work, what="keys")
    stats = job.unit_stats()
    render_s = sum(st["render_seconds"] for st in stats)
    return job.write_manifest({
        **build_manifest([s for st in stats for s in st["shards"]], "part"),
        "images_per_s_render": round(sum(st["neg_images"] for st in stats) / render_s, 3) if render_s else 0.0,
        "missing_positive_examples": [k for st in stats for k in st["missing_positive_keys"]][:_MAX_LISTED],
        "last_run": summary,
    })


def _render_unit(u: int, chunk: list[dict[str, Any]], pos: PositiveImages, t2i: Any, job: ShardedJob,
                 opts: ImageJobOptions) -> dict[str, Any]:
    """Render one unit's negatives and publish its shards; returns the unit's stats."""
    ready, missing = [], []
    for g in chunk:
        data = pos.get(g["key"], g["image"])
        try:
            if data is not None:
                detect_image_ext(data)
        except ValueError:
            data = None
        (ready if data is not None else missing).append((g, data))
    seeds = {(gi, m): stable_hash(opts.seed, g["key"], m, bits=31) for gi, (g, _) in enumerate(ready) for m in range(len(g["negs"]))}
    prompts = [(gi, m, g["negs"][m][0]) for gi, (g, _) in enumerate(ready) for m in range(len(g["negs"]))]
    rendered: dict[tuple[int, int], Any] = {}
    t0 = time.perf_counter()
    for b in range(0, len(prompts), opts.batch_size):
        batch = prompts[b : b + opts.batch_size]
        images = t2i.render([p[2] for p in batch], [seeds[p[0], p[1]] for p in batch])
        rendered.update({(gi, m): img for (gi, m, _), img in zip(batch, images)})
    t_render = time.perf_counter() - t0
    tmp = job.out / f".part{u:06d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    failed = [f"{ready[gi][0]['key']}:{m}" for (gi, m), img in rendered.items() if img is None]
    with ShardWriter(tmp, prefix=f"part{u:06d}", shard_size=opts.shard_size, image_format=opts.image_format) as w:
        for gi, (g, data) in enumerate(ready):
            caps = [g["caption"]] + ([g["original_caption"]] if g["original_caption"] != g["caption"] else [])
            # a caption the backend cannot render (None) is dropped with its image: captions and images stay aligned
            ms = [m for m in range(len(g["negs"])) if rendered[(gi, m)] is not None]
            meta = {"neg_seeds": [seeds[gi, m] for m in ms], "neg_generators": [g["negs"][m][2] for m in ms],
                    "t2i": f"{t2i.name}:{t2i.model_id}"}
            if safe_key(g["key"]) != g["key"]:
                meta["source_key"] = g["key"]
            w.write(safe_key(g["key"]), data, caps, neg_captions=[g["negs"][m][0] for m in ms],
                    neg_types=[g["negs"][m][1] for m in ms], neg_images=[rendered[(gi, m)] for m in ms], meta=meta)
    shards = w.manifest["shards"] if w.manifest else []
    for s in shards:  # publish the finished tars; the unit is marked done only after this
        (tmp / s["name"]).replace(job.out / s["name"])
    shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": len(chunk), "samples": len(ready), "neg_images": len(prompts) - len(failed),
            "render_seconds": round(t_render, 3), "render_failed": len(failed), "render_failed_examples": failed[:_MAX_LISTED],
            "missing_positive": len(missing), "missing_positive_keys": [g["key"] for g, _ in missing][:_MAX_LISTED],
            "shards": shards}
