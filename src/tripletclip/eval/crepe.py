"""CREPE productivity (Ma et al., arXiv 2212.07796): image-to-text retrieval of a caption among its hard negatives.

Protocol as in the official code (``crepe_prod_eval_clip.py`` / ``crepe_compo_eval_open_clip.py`` with
``--crop True``, ranks from ``crepe_eval_utils.get_one2many_rank``): the Visual Genome image ``<image_id>.jpg``
is cropped to the row's box (``x, y, width, height``; torchvision ``TF.crop(img, y, x, height, width)``), and
``[caption] + hard_negs`` are ranked by cosine similarity to it. Reported per (type, complexity) file: Recall@1
(the paper's figure), @3, @5, @10 and mean / median rank; per type the unweighted mean of Recall@1 over its
complexities; ``mean`` over the types. Rank, made explicit: the number of hard negatives scoring *at least* as
high as the caption (a tie counts against the caption; the official ``argsort`` breaks ties by position).
Some rows list the caption itself among its hard negatives (an exact copy: 34 of the 6,652 swap rows, none in atom
or negate): that copy is the caption, not a distractor, and is left out of the ranking, which is what the official
ranking gives when its sort keeps the caption (index 0) first among equal scores; the count is recorded per file.

Files: ``<annotations>/<type>/prod_vg_hard_negs_<type>_complexity_<k>.csv`` for type in atom / negate / swap and
k in 4..12 (the official layout); columns ``image_id, caption, hard_negs, x, y, width, height`` (plus ``n`` and
graph statistics). ``hard_negs`` is a Python literal: a list (atom, swap) or a set (negate; scored in sorted
order, which only matters for ties).
"""
from __future__ import annotations

import ast
import csv
import math
import statistics
from pathlib import Path
from typing import Any, Optional

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, run_choice
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, Tally, file_record, per_row, protocol
from tripletclip.eval.sugarcrepe import as_list

TYPES = ("atom", "negate", "swap")
COMPLEXITIES = tuple(range(4, 13))
COLUMNS = ("image_id", "caption", "hard_negs", "x", "y", "width", "height")
KS = (1, 3, 5, 10)


def crepe_file(root: Path, kind: str, k: int) -> Path:
    return root / kind / f"prod_vg_hard_negs_{kind}_complexity_{k}.csv"


def _negatives(text: str, path: Path, line: int) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise AnnotationError(f"{path}: line {line}: hard_negs is not a Python list or set literal") from None
    if not isinstance(value, (list, set, tuple)) or not all(isinstance(v, str) for v in value):
        raise AnnotationError(f"{path}: line {line}: hard_negs must be a list or set of strings")
    return sorted(value) if isinstance(value, set) else list(value)


def load_crepe(
    annotations: str | Path, types: Optional[Any] = None, complexities: Optional[Any] = None
) -> tuple[list[ChoiceRow], list[dict[str, Any]], list[str]]:
    """(rows, file records, subset names ``<type>/<k>``) of the productivity CSVs."""
    root = Path(annotations)
    if not root.is_dir():
        raise AnnotationError(f"{root}: not a folder; pass --annotations with CREPE's prod_hard_negatives folder")
    kinds = as_list(types) or list(TYPES)
    ks = [int(k) for k in (as_list(complexities) or COMPLEXITIES)]
    bad = [t for t in kinds if t not in TYPES]
    if bad:
        raise AnnotationError(f"crepe: unknown type(s) {', '.join(bad)}; use {', '.join(TYPES)}")
    files = {f"{t}/{k}": crepe_file(root, t, k) for t in kinds for k in ks}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise AnnotationError(f"crepe: {len(missing)} file(s) missing, first: {missing[0]}; add them or name the types "
                              f"and complexities to score (options types=..., complexities=...)")
    rows: list[ChoiceRow] = []
    records = []
    for subset, path in files.items():
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise AnnotationError(f"{path}: column(s) {', '.join(absent)} missing (CREPE productivity format)")
            n = copies = 0
            for n, r in enumerate(reader, 1):
                try:
                    box = tuple(float(r[c]) for c in ("x", "y", "width", "height"))
                except ValueError:
                    raise AnnotationError(f"{path}: line {n + 1}: x, y, width, height must be numbers") from None
                caption = str(r["caption"])
                negs = _negatives(r["hard_negs"], path, n + 1)
                # NOTE: some rows list the caption itself among its hard negatives (an exact copy, same score):
                # it is the caption, not a distractor, so it is left out and counted (see the module docstring)
                kept = [t for t in negs if t != caption]
                copies += len(kept) < len(negs)
                rows.append(ChoiceRow(subset, n - 1, f"{r['image_id']}.jpg", [caption] + kept, 1,
                                      box=box))  # type: ignore[arg-type]
        records.append(file_record(path, n, type=subset.split("/")[0], complexity=int(subset.split("/")[1]),
                                   rows_with_caption_among_negatives=copies))
    return rows, records, list(files)


def rank_of(scores: list[float]) -> int:
    """Negatives scoring at least as high as the caption (scores[0]); 0 means retrieved first."""
    return sum(1 for s in scores[1:] if s >= scores[0])


@register_benchmark("crepe", summary="CREPE productivity: image-to-text R@1 of the caption among its hard negatives, on the crop")
def evaluate_crepe(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    types: Any = None,
    complexities: Any = None,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "crepe",
) -> BenchResult:
    """Recall@k per type and complexity; per type the mean Recall@1 over complexities."""
    cost = Cost(encoder)
    rows, records, names = load_crepe(annotations, types, complexities)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    ranks: dict[str, list[int]] = {n: [] for n in names}
    out_rows = []
    for x in run.scored:
        r = rank_of(x.scores)
        ranks[x.row.subset].append(r)
        out_rows.append(per_row(benchmark, x.row.subset, x.row.id, x.scores, r == 0, rank=r))
    subsets: dict[str, Any] = {}
    for n in names:
        rs, t = ranks[n], run.tallies.get(n, Tally())
        subsets[n] = {**t.to_dict(), **{f"r{k}": (sum(r < k for r in rs) / len(rs) if rs else math.nan) for k in KS},
                      "mean_rank": (sum(rs) / len(rs) + 1) if rs else math.nan,
                      "median_rank": (math.floor(statistics.median(rs)) + 1) if rs else math.nan}
    per_type: dict[str, list[float]] = {}
    for n in names:
        if not math.isnan(subsets[n]["r1"]):
            per_type.setdefault(n.split("/")[0], []).append(subsets[n]["r1"])
    aggregates = {t: sum(v) / len(v) for t, v in per_type.items()}
    aggregates["mean"] = sum(aggregates.values()) / len(aggregates) if aggregates else math.nan
    headline = {**aggregates, **{f"{n}/r1": subsets[n]["r1"] for n in names}}
    proto = protocol("Recall@k: the caption ranks in the top k of [caption] + hard_negs on the cropped image",
                     {"<type>": "unweighted mean of Recall@1 over the type's complexities",
                      "mean": "unweighted mean of the types"}, blind,
                     rank="number of hard negatives scoring >= the caption (ties count against it)",
                     crop="box (x, y, width, height) of the row, applied before the model's transform")
    return run.result(proto, aggregates, headline, records, subsets=subsets, rows=out_rows)
