"""The embedded world's benchmark folder, scored with the real benchmarks' evaluators.

``tripletclip world build --out DIR`` writes ``DIR/bench/`` (docs/methods.md section 4.9): ``sugarcrepe/<category>.json`` in
SugarCrepe's format plus a ``split`` field (seen / heldout compositions), ``winoground/examples.jsonl`` in
Winoground's format plus ``split``, ``retrieval.json`` in the Karpathy format, ``images/`` and ``manifest.json``.
This evaluator runs :mod:`sugarcrepe` and :mod:`winoground` once per split and :mod:`retrieval` once, with
one encoder, so each image is encoded once across all of them. Held-out compositions next to seen ones are the
point of the world: a gap between the two is what the objectives are compared on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.records import AnnotationError, BenchResult, Cost
from tripletclip.utils.files import sha256_file
from tripletclip.eval.retrieval import evaluate_retrieval
from tripletclip.edit_types import SUGARCREPE_CATEGORIES, SUGARCREPE_TYPES
from tripletclip.eval.sugarcrepe import evaluate_sugarcrepe
from tripletclip.eval.winoground import evaluate_winoground

SPLITS = ("seen", "heldout")


def _splits_in(paths: list[Path], jsonl: bool) -> list[str]:
    found: set[str] = set()
    for p in paths:
        text = p.read_text(encoding="utf-8")
        rows = [json.loads(x) for x in text.splitlines() if x.strip()] if jsonl else list(json.loads(text).values())
        found.update(str(r["split"]) for r in rows if "split" in r)
    return [s for s in SPLITS if s in found] + sorted(found - set(SPLITS))


@register_benchmark("world", summary="Embedded world: SugarCrepe + Winoground per split (seen/heldout) + retrieval")
def evaluate_world(
    encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False, blind: bool = False,
    splits: Optional[Any] = None,
) -> BenchResult:
    """SugarCrepe and Winoground scores per split and retrieval on a world ``bench/`` folder."""
    cost = Cost(encoder)
    bench = Path(annotations)
    sc_dir, wino, ret = bench / "sugarcrepe", bench / "winoground" / "examples.jsonl", bench / "retrieval.json"
    if not sc_dir.is_dir():
        raise AnnotationError(f"{bench}: no sugarcrepe/ folder; pass --annotations DIR/bench of `tripletclip world build --out DIR`")
    images = images if images else bench / "images"
    subsets = [s for s in SUGARCREPE_TYPES if (sc_dir / f"{s}.json").is_file()]
    if not subsets:
        raise AnnotationError(f"{sc_dir}: none of the SugarCrepe category files ({', '.join(SUGARCREPE_TYPES)}) is there")
    wanted = [s for s in (splits.split(",") if isinstance(splits, str) else splits)] if splits else None
    parts: dict[str, BenchResult] = {}
    sc_splits = wanted or _splits_in([sc_dir / f"{s}.json" for s in subsets], jsonl=False) or [None]
    for split in sc_splits:
        parts[f"sugarcrepe_{split or 'all'}"] = evaluate_sugarcrepe(
            encoder, sc_dir, images, subsets=subsets, split=split, skip_missing=skip_missing, blind=blind,
            benchmark="world",
        )
    if wino.is_file() and not blind:
        for split in wanted or _splits_in([wino], jsonl=True) or [None]:
            parts[f"winoground_{split or 'all'}"] = evaluate_winoground(
                encoder, wino, images, split=split, skip_missing=skip_missing, benchmark="world",
            )
    if ret.is_file() and not blind:
        parts["retrieval"] = evaluate_retrieval(encoder, ret, images, skip_missing=skip_missing, benchmark="world")

    headline: dict[str, float] = {}
    for name, r in parts.items():
        keys = ("mean", *SUGARCREPE_CATEGORIES, *SUGARCREPE_TYPES) if name.startswith("sugarcrepe") else tuple(r.headline)
        for k in keys:
            if k in r.headline:
                headline[f"{name}/{k}"] = r.headline[k]
    manifest = bench / "manifest.json"
    rows = []
    for name, r in parts.items():
        for row in r.rows:
            rows.append({**row, "subset": f"{name}/{row['subset']}"})
    return BenchResult(
        benchmark="world",
        protocol={"composed_of": {n: r.protocol for n, r in parts.items()}, "blind": blind},
        subsets={n: r.to_dict() for n, r in parts.items()},
        aggregates={n: r.aggregates for n, r in parts.items()},
        headline=headline,
        annotations=[a for r in parts.values() for a in r.annotations],
        images={"root": str(images)},
        extra={
            "cost": cost.record(),
            "manifest": ({"path": str(manifest), "sha256": sha256_file(manifest),
                          **{k: v for k, v in json.loads(manifest.read_text()).items() if k in ("seed", "generator_version", "version", "counts")}}
                         if manifest.is_file() else None),
            "skipped_missing": sum(r.extra.get("skipped_missing", 0) for r in parts.values()),
        },
        rows=rows,
    )
