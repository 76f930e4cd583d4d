"""TripletCLIP++'s CLIP-score filter: keep the triplets a pretrained CLIP finds most faithful.

Score of a sample (arXiv 2411.02545, TripletCLIP++): 1/2 [s(x, y) + s(x', y')], the cosine of the positive
pair plus the cosine of the synthetic pair (averaged over the sample's negative pairs when it has several).
Stage 1 scores every input shard (sharded over ranks, resumable: ``scores/scores-<unit>.parquet``). Stage 2,
once every shard is scored, keeps the top fraction (ties broken by key, so the choice is deterministic)
and copies the kept samples byte for byte into new shards with ShardWriter; the manifest records the
model, the fraction, the threshold and the score distribution.

A sample without a negative image cannot be scored as a triplet; it is dropped and counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tripletclip.data.contract import DataError
from tripletclip.data.shard_reader import load_image, read_bytes, read_shard, shard_files
from tripletclip.data.shards import ShardWriter
from tripletclip.errors import InputError
from tripletclip.negatives.io import write_parquet_atomic
from tripletclip.negatives.jobs import JobError, JobOptions, ShardedJob, resolve_shard
from tripletclip.negatives.scoring import ClipScorer, load_bundle
from tripletclip.utils.files import write_json_atomic


def score_shard(path: str, scorer: ClipScorer) -> dict[str, list]:
    """Per sample: s(x,y), mean s(x',y') over its rendered negatives, and the combined score (NaN if none)."""
    cols: dict[str, list] = {"key": [], "s_pos": [], "s_neg": [], "score": [], "n_neg_images": []}
    samples = list(read_shard(path))
    pos = scorer.pair_cosines([load_image(s.image) for s in samples], [s.captions[0] for s in samples])
    pairs = [(i, m) for i, s in enumerate(samples) for m in range(len(s.neg_images)) if m < len(s.neg_captions)]
    neg = scorer.pair_cosines([load_image(samples[i].neg_images[m]) for i, m in pairs],
                              [samples[i].neg_captions[m] for i, m in pairs]) if pairs else np.zeros(0)
    per: dict[int, list[float]] = {}
    for (i, _), v in zip(pairs, neg):
        per.setdefault(i, []).append(float(v))
    for i, s in enumerate(samples):
        sn = float(np.mean(per[i])) if i in per else float("nan")
        cols["key"].append(s.key)
        cols["s_pos"].append(float(pos[i]))
        cols["s_neg"].append(sn)
        cols["score"].append(0.5 * (float(pos[i]) + sn))
        cols["n_neg_images"].append(len(per.get(i, [])))
    return cols


@dataclass(kw_only=True)
class FilterJobOptions(JobOptions):
    """``negatives filter``: keep the top ``keep`` fraction of the TripletData ``shards`` by CLIP score."""

    shards: str
    keep: float = 0.5
    model: str = ""  # open_clip model name ...
    pretrained: str = ""  # ... and its pretrained tag or weights file
    run: str = ""  # or a tripletclip run folder / checkpoint
    batch_size: int = 64
    device: str = "auto"
    shard_size: int = 1000  # samples per output tar


def run_filter(opts: FilterJobOptions, bundle: Any = None) -> dict[str, Any]:
    """Score every sample of ``opts.shards`` and write the top ``opts.keep`` fraction to ``opts.out``; returns
    the manifest (or the scoring summary when other ranks still have shards to score). ``bundle``: an already
    loaded model instead of ``opts.model`` / ``opts.run``."""
    if not 0 < opts.keep <= 1:
        raise InputError(f"--keep must be in (0, 1], got {opts.keep}")
    rank, world = resolve_shard(opts.shard)
    paths = shard_files(opts.shards)
    bundle = bundle if bundle is not None else load_bundle(opts.model, opts.pretrained, opts.run)
    scorer = ClipScorer(bundle, device=opts.device, batch_size=opts.batch_size)
    out_dir = Path(opts.out)
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise DataError(f"{opts.shards}: two input shards share a file name; give one folder at a time")
    cfg = {"inputs": [str(Path(p).resolve()) for p in paths], "sizes": [Path(p).stat().st_size for p in paths],
           "model": scorer.identity, "batch_size": opts.batch_size}
    job = ShardedJob(out_dir / "scores", "negatives-filter-scores", cfg, names, prefix="scores",
                     overwrite=opts.overwrite, world=world, rank=rank)

    def work(u: int) -> dict[str, Any]:
        cols = score_shard(paths[u], scorer)
        write_parquet_atomic(cols, job.out / f"scores-{u:06d}.parquet")
        return {"rows": len(cols["key"]), "no_negative_image": int(sum(n == 0 for n in cols["n_neg_images"]))}

    summary = job.run(rank, world, work, what="shards")
    scores_manifest = job.write_manifest({"last_run": summary})
    if not scores_manifest["complete"]:
        return scores_manifest  # other ranks still scoring; re-run (any rank) once they finished
    if rank != 0:
        return scores_manifest
    return _select_and_write(paths, job, out_dir, opts.keep, scorer.identity, opts.shard_size, cfg)


def _select_and_write(paths: list[str], job: ShardedJob, out_dir: Path, keep: float, identity: dict[str, Any],
                      shard_size: int, cfg: dict[str, Any]) -> dict[str, Any]:
    record = {"keep": keep, "model": identity, "inputs": cfg["inputs"], "input_sizes": cfg["sizes"]}
    done = out_dir / "manifest.json"
    if done.exists():
        m = json.loads(done.read_text())
        if m.get("filter", {}).get("config") == json.loads(json.dumps(record, default=str)):
            return m  # already written by an earlier run
    tables = [pq.read_table(job.out / f"scores-{u:06d}.parquet").to_pydict() for u in range(len(paths))]
    keys = [(u, k) for u, t in enumerate(tables) for k in t["key"]]
    score = np.array([s for t in tables for s in t["score"]], dtype=np.float64)
    valid = ~np.isnan(score)
    n_keep = int(round(keep * int(valid.sum())))
    # sort by score descending, then by key for a deterministic cut through ties
    order = sorted(np.flatnonzero(valid), key=lambda i: (-score[i], keys[i][1]))
    kept = {keys[i] for i in order[:n_keep]}
    threshold = float(score[order[n_keep - 1]]) if n_keep else float("nan")
    with ShardWriter(out_dir, prefix="train", shard_size=shard_size, overwrite=True) as w:
        for u, p in enumerate(paths):
            for s in read_shard(p):
                if (u, s.key) in kept:
                    w.write(s.key, read_bytes(s.image), s.captions, s.neg_captions, s.neg_types,
                            [read_bytes(b) for b in s.neg_images], meta=s.meta)
    manifest = dict(w.manifest or {})
    vs = score[valid]
    manifest["filter"] = {
        "config": json.loads(json.dumps(record, default=str)),
        "method": "TripletCLIP++: keep top fraction by 1/2 [s(x,y) + s(x',y')]",
        "scored": int(len(score)), "kept": len(kept), "dropped": int(valid.sum()) - len(kept),
        "dropped_no_negative_image": int((~valid).sum()), "threshold": threshold,
        "score_percentiles": {str(q): float(np.percentile(vs, q)) for q in (1, 10, 25, 50, 75, 90, 99)} if len(vs) else {},
        "mean_s_pos": float(np.nanmean([x for t in tables for x in t["s_pos"]])) if keys else float("nan"),
        "mean_s_neg": float(np.nanmean([x for t in tables for x in t["s_neg"]])) if valid.any() else float("nan"),
    }
    write_json_atomic(done, manifest)
    if len(kept) != n_keep:
        raise JobError(f"{out_dir}: kept {len(kept)} samples, expected {n_keep}; duplicate keys inside one shard?")
    return manifest
