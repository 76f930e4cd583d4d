"""SugarCrepe (Hsieh et al., arXiv 2306.14610): seven image-to-text hard-negative subsets of COCO val2017.

Protocol as in the official ``main_eval.py``: a row is correct iff s(I, caption) > s(I, negative_caption),
strictly (a tie is wrong). Reported: every subset's accuracy and row count; ``mean``, the unweighted mean of
the seven subsets (the TripletCLIP paper's "overall"); ``replace`` / ``swap`` / ``add``, the sample-weighted
means of the SugarCrepe paper's three categories. Current files: 7,511 rows, swap_obj 245 (246 in the paper).

Files: ``<subset>.json``, a JSON object ``{"<id>": {"filename", "caption", "negative_caption", ...}}``; ids may
skip numbers and are kept as the row id. Extra fields are ignored, except ``split`` which ``split=`` filters on
(the embedded world's seen / heldout rows).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.edit_types import SUGARCREPE_CATEGORIES, SUGARCREPE_TYPES
from tripletclip.eval.base import (
    choice_rows_out, encoder_delta, make_resolver, protocol, register_benchmark, stats_of,
)
from tripletclip.eval.choice import ChoiceRow, score_rows, tally
from tripletclip.eval.records import AnnotationError, BenchResult, file_record, load_json, require, unweighted_mean, weighted_mean

SUBSETS = SUGARCREPE_TYPES
CATEGORIES = SUGARCREPE_CATEGORIES
FIELDS = ("filename", "caption", "negative_caption")


def subset_files(annotations: str | Path, known: Sequence[str], subsets: Optional[Sequence[str]], what: str) -> dict[str, Path]:
    """``subset -> file`` from a folder of ``<subset>.json`` (all known subsets required unless named) or one file."""
    ann = Path(annotations)
    if ann.is_file():
        return {ann.stem: ann}
    if not ann.is_dir():
        raise AnnotationError(f"{ann}: no such file or folder; pass --annotations with the {what} folder")
    wanted = list(subsets) if subsets else list(known)
    files = {s: ann / f"{s}.json" for s in wanted}
    missing = [s for s, p in files.items() if not p.is_file()]
    if missing:
        raise AnnotationError(
            f"{ann}: {what} subset file(s) missing: {', '.join(m + '.json' for m in missing)}; "
            f"add them, or name the subsets to evaluate (option subsets=...), the mean is then over those"
        )
    return files


def as_list(value: Any) -> Optional[list[str]]:
    if value is None:
        return None
    return [v for v in value.split(",") if v] if isinstance(value, str) else list(value)


def load_sugarcrepe(
    annotations: str | Path, subsets: Optional[Sequence[str]] = None, split: Optional[str] = None
) -> tuple[list[ChoiceRow], list[dict[str, Any]], list[str]]:
    """(rows, annotation file records, subset names) of SugarCrepe-format files."""
    files = subset_files(annotations, SUBSETS, as_list(subsets), "SugarCrepe")
    rows: list[ChoiceRow] = []
    records = []
    for subset, path in files.items():
        data = load_json(path)
        if not isinstance(data, dict):
            raise AnnotationError(f"{path}: expected a JSON object keyed by row id (SugarCrepe format), got {type(data).__name__}")
        kept = 0
        has_split = False
        for rid, r in data.items():
            require(r, FIELDS, path, rid)
            has_split |= "split" in r
            if split is not None and r.get("split") != split:
                continue
            rows.append(ChoiceRow(subset, rid, r["filename"], [r["caption"], r["negative_caption"]]))
            kept += 1
        if split is not None and not has_split:
            raise AnnotationError(f"{path}: rows have no 'split' field, so split={split!r} selects nothing; drop the split option")
        records.append(file_record(path, len(data), **({"split": split, "rows_in_split": kept} if split else {})))
    return rows, records, list(files)


@register_benchmark("sugarcrepe", summary="SugarCrepe: 7 hard-negative subsets, s(I,pos) > s(I,neg)")
def evaluate_sugarcrepe(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    subsets: Any = None,
    split: Optional[str] = None,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "sugarcrepe",
) -> BenchResult:
    """SugarCrepe accuracy per subset, unweighted mean and sample-weighted category means."""
    start, before = time.perf_counter(), stats_of(encoder)
    rows, records, names = load_sugarcrepe(annotations, subsets, split)
    scored, skipped, image_info = score_rows(encoder, rows, make_resolver(images), benchmark, skip_missing, blind)
    tallies = tally(scored, skipped, names)
    aggregates = {"mean": unweighted_mean(tallies, names)}
    for cat, members in CATEGORIES.items():
        if any(m in tallies for m in members):
            aggregates[cat] = weighted_mean(tallies, members)
    headline = {**aggregates, **{s: t.accuracy for s, t in tallies.items()}}
    agg_rules = {"mean": f"unweighted mean of the subset accuracies ({len(names)} subsets)"}
    agg_rules.update({c: f"sample-weighted accuracy over {', '.join(m)}" for c, m in CATEGORIES.items() if c in aggregates})
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol("correct iff s(I, caption) > s(I, negative_caption)", agg_rules, blind, split=split),
        subsets={s: t.to_dict() for s, t in tallies.items()},
        aggregates=aggregates,
        headline=headline,
        annotations=records,
        images=image_info,
        extra={"cost": encoder_delta(encoder, before, start), "skipped_missing": sum(skipped.values())},
        rows=choice_rows_out(benchmark, scored),
    )
