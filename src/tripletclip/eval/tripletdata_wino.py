"""Winoground-style scores on TripletData shards: does the model bind (x, y) and (x', y') correctly?

TripletCLIP (arXiv 2411.02545) pairs every real (x, y) with a negative caption y' and its rendering x'. Each
such pair of pairs is a Winoground group (I0, C0) = (x, y), (I1, C1) = (x', y'), scored with the text / image /
group rules of :mod:`tripletclip.eval.winoground`, overall and per negative edit type. Held-out TripletData
shards therefore give an image-side compositional score that caption-only benchmarks cannot.

Shards: our layout (TEAM.md): ``<key>.png|jpg`` image, ``<key>.txt`` caption, ``<key>.json`` meta with
``neg_types``, ``<key>.neg.txt`` negative captions one per line, ``<key>.neg.<m>.png|jpg`` the rendering of
negative caption m. A negative caption without an image gives no group and is counted as such.

NOTE: add-edits (``add_obj``, ``add_att``) are skipped by default (option ``skip_types``), and counted: y' adds
something to y, so y is still true of x' and the pair is not a Winoground group, where each caption must be false
for the other image (the world's Winoground file leaves them out for the same reason).
"""
from __future__ import annotations

import json
import re
import tarfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.edit_types import ADD_TYPES
from tripletclip.eval.base import encoder_delta, protocol, register_benchmark, stats_of
from tripletclip.eval.records import AnnotationError, BenchResult, sha256_file
from tripletclip.eval.winoground import WINO_DECISION, Group, score_groups, summarise_groups

_IMG = r"(?:png|jpg|jpeg|webp)"
_NEG_IMG = re.compile(rf"^(?P<key>.+)\.neg\.(?P<m>\d+)\.{_IMG}$")
_IMAGE = re.compile(rf"^(?P<key>.+)\.{_IMG}$")


def shard_paths(annotations: str | Path) -> list[Path]:
    """The .tar shards of a folder (sorted) or a single shard."""
    p = Path(annotations)
    if p.is_file() and p.suffix == ".tar":
        return [p]
    if p.is_dir():
        tars = sorted(p.glob("*.tar"))
        if tars:
            return tars
    raise AnnotationError(f"{p}: no .tar shards here; pass --annotations with a TripletData shard folder or .tar file")


def read_samples(path: Path) -> dict[str, dict[str, Any]]:
    """key -> {"image": bytes, "caption": str, "neg_captions": [...], "neg_types": [...], "neg_images": {m: bytes}}."""
    samples: dict[str, dict[str, Any]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if name.endswith(".neg.txt"):
                text = data.decode("utf-8")
                samples.setdefault(name[:-8], {})["neg_captions"] = (text[:-1] if text.endswith("\n") else text).split("\n")
            elif m := _NEG_IMG.match(name):
                samples.setdefault(m["key"], {}).setdefault("neg_images", {})[int(m["m"])] = data
            elif name.endswith(".json"):
                samples.setdefault(name[:-5], {})["meta"] = json.loads(data)
            elif name.endswith(".txt"):
                samples.setdefault(name[:-4], {})["caption"] = data.decode("utf-8")
            elif m := _IMAGE.match(name):
                samples.setdefault(m["key"], {})["image"] = data
    return samples


SKIP_TYPES = ADD_TYPES


def load_groups(
    annotations: str | Path, limit: Optional[int] = None, skip_types: Sequence[str] = SKIP_TYPES
) -> tuple[list[Group], list[dict], dict[str, int]]:
    """(groups, shard records, counts of samples / negatives without an image / skipped by type)."""
    groups: list[Group] = []
    records = []
    counts = {"samples": 0, "negatives": 0, "negatives_without_image": 0, "skipped_by_type": 0}
    for path in shard_paths(annotations):
        samples = read_samples(path)
        records.append({"path": str(path), "sha256": sha256_file(path), "rows": len(samples)})
        for key, s in samples.items():
            if "image" not in s or "caption" not in s:
                raise AnnotationError(f"{path}: sample '{key}' has no image or no .txt caption; rewrite the shard with ShardWriter")
            counts["samples"] += 1
            negs = s.get("neg_captions", [])
            types = (s.get("meta") or {}).get("neg_types") or ["unknown"] * len(negs)
            for m, neg in enumerate(negs):
                counts["negatives"] += 1
                tag = types[m] if m < len(types) else "unknown"
                if m not in s.get("neg_images", {}):
                    counts["negatives_without_image"] += 1
                    continue
                if tag in skip_types:
                    counts["skipped_by_type"] += 1
                    continue
                if limit is not None and len(groups) >= limit:
                    continue
                groups.append(Group(f"{key}:{m}", (s["image"], s["neg_images"][m]), (s["caption"], neg), {"neg_type": tag}))
    return groups, records, counts


@register_benchmark("tripletdata_wino", blind=False, summary="Winoground-style text/image/group scores on TripletData shards")
def evaluate_tripletdata_wino(
    encoder: Any, annotations: str | Path, images: Any = None, limit: Optional[int] = None,
    skip_types: Any = SKIP_TYPES, skip_missing: bool = False, blind: bool = False,
) -> BenchResult:
    """Text / image / group scores of (x, y) vs (x', y') pairs, overall and per negative edit type."""
    bench = "tripletdata_wino"
    start, before = time.perf_counter(), stats_of(encoder)
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
        extra={"cost": encoder_delta(encoder, before, start)},
        rows=rows,
    )
