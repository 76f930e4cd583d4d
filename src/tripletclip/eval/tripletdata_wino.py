"""Winoground-style scores on TripletData shards: does the model bind (x, y) and (x', y') correctly?

TripletCLIP (arXiv 2411.02545) pairs every real (x, y) with a negative caption y' and its rendering x'. Each
such pair of pairs is a Winoground group (I0, C0) = (x, y), (I1, C1) = (x', y'), scored with the text / image /
group rules of :mod:`tripletclip.eval.winoground`, overall and per negative edit type. Held-out TripletData
shards therefore give an image-side compositional score that caption-only benchmarks cannot.

Shards: any layout :mod:`tripletclip.data.shard_reader` reads (ours: docs/methods.md section 6.1); negative image m
is the rendering of negative caption m. A negative caption without an image gives no group and is counted as
such.

NOTE: add-edits (``add_obj``, ``add_att``) are skipped by default (option ``skip_types``), and counted: y' adds
something to y, so y is still true of x' and the pair is not a Winoground group, where each caption must be false
for the other image (the world's Winoground file leaves them out for the same reason).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.data.shard_reader import read_bytes, read_shard, shard_files
from tripletclip.edit_types import ADD_TYPES
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, protocol
from tripletclip.eval.winoground import WINO_DECISION, Group, score_groups, summarise_groups
from tripletclip.utils.files import sha256_file

SKIP_TYPES = ADD_TYPES


def load_groups(
    annotations: str | Path, limit: Optional[int] = None, skip_types: Sequence[str] = SKIP_TYPES
) -> tuple[list[Group], list[dict], dict[str, int]]:
    """(groups, shard records, counts of samples / negatives without an image / skipped by type)."""
    groups: list[Group] = []
    records = []
    counts = {"samples": 0, "negatives": 0, "negatives_without_image": 0, "skipped_by_type": 0}
    for path in shard_files(annotations, "--annotations"):
        samples = list(read_shard(path))
        records.append({"path": path, "sha256": sha256_file(path), "rows": len(samples)})
        for s in samples:
            counts["samples"] += 1
            for m, (neg, tag) in enumerate(zip(s.neg_captions, s.neg_types)):
                counts["negatives"] += 1
                if m >= len(s.neg_images):
                    counts["negatives_without_image"] += 1
                    continue
                if tag in skip_types:
                    counts["skipped_by_type"] += 1
                    continue
                if limit is not None and len(groups) >= limit:
                    continue
                images = (read_bytes(s.image), read_bytes(s.neg_images[m]))
                groups.append(Group(f"{s.key}:{m}", images, (s.captions[0], neg), {"neg_type": tag}))
    return groups, records, counts


@register_benchmark("tripletdata_wino", blind=False, summary="Winoground-style text/image/group scores on TripletData shards")
def evaluate_tripletdata_wino(
    encoder: Any, annotations: str | Path, images: Any = None, limit: Optional[int] = None,
    skip_types: Any = SKIP_TYPES, skip_missing: bool = False, blind: bool = False,
) -> BenchResult:
    """Text / image / group scores of (x, y) vs (x', y') pairs, overall and per negative edit type."""
    bench = "tripletdata_wino"
    cost = Cost(encoder)
    skip = tuple(skip_types.split(",") if isinstance(skip_types, str) else skip_types or ())
    groups, records, counts = load_groups(annotations, int(limit) if limit is not None else None, skip)
    if not groups:
        raise AnnotationError(f"{annotations}: no sample has a negative image; TripletData groups need x' next to y'")
    scores = score_groups(encoder, groups)
    tables, rows, _ = summarise_groups(bench, groups, scores, ["neg_type"])
    headline = {m: tables["all"][m] for m in ("text", "image", "group")}
    headline.update({f"group/{t}": d["group"] for t, d in tables.get("by_neg_type", {}).items()})
    return BenchResult(
        benchmark=bench,
        protocol=protocol(WINO_DECISION + "; (I0, C0) = (x, y), (I1, C1) = (x', y')",
                          {"all": "fraction of groups (micro)", "by_neg_type": "per negative edit type"}, False,
                          limit=limit, skipped_types=list(skip)),
        subsets=tables,
        aggregates=dict(tables["all"]),
        headline=headline,
        annotations=records,
        images={"source": "inside the shards", **counts},
        extra={"cost": cost.record()},
        rows=rows,
    )
