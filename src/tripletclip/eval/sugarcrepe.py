"""SugarCrepe (Hsieh et al., arXiv 2306.14610): seven image-to-text hard-negative subsets of COCO val2017.

Protocol as in the official ``main_eval.py``: a row is correct iff s(I, caption) > s(I, negative_caption),
strictly (a tie is wrong). Reported: every subset's accuracy and row count; ``mean``, the unweighted mean of
the seven subsets (the TripletCLIP paper's "overall"); ``replace`` / ``swap`` / ``add``, the sample-weighted
means of the SugarCrepe paper's three categories. Current files: 7,511 rows, swap_obj 245 (246 in the paper).

Order-blind rows (sugar-crepe issue 10): in some swap rows the negative uses exactly the caption's words in
another order (572 of the 7,511 rows: swap_att 408, swap_obj 164, words = lowercase ``[a-z0-9']+`` tokens). A
bag-of-words model cannot tell those apart, so the result also reports them separately (``bag_of_words``: rows,
accuracy per subset, on those rows and on the rest) and marks each per-row record (``same_bag_of_words``).

Files: ``<subset>.json``, a JSON object ``{"<id>": {"filename", "caption", "negative_caption", ...}}``; ids may
skip numbers and are kept as the row id. Extra fields are ignored, except ``split`` which ``split=`` filters on
(the embedded world's seen / heldout rows).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.edit_types import SUGARCREPE_CATEGORIES, SUGARCREPE_TYPES
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, grouped_means, run_choice
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, Tally, file_record, load_rows, per_row, protocol

SUBSETS = SUGARCREPE_TYPES
CATEGORIES = SUGARCREPE_CATEGORIES
FIELDS = ("filename", "caption", "negative_caption")
_WORD = re.compile(r"[a-z0-9']+")


def same_bag_of_words(caption: str, negative: str) -> bool:
    """True when the negative uses exactly the caption's words (with counts), in any order."""
    return Counter(_WORD.findall(caption.lower())) == Counter(_WORD.findall(negative.lower()))


def bag_of_words_report(run: Any, names: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the ``bag_of_words`` block, per-row records marked ``same_bag_of_words``) of a scored SugarCrepe run."""
    same: dict[str, Tally] = {}
    rest, same_all, rows = Tally(), Tally(), []
    for x in run.scored:
        flag = same_bag_of_words(x.row.texts[0], x.row.texts[1])
        if flag:
            same.setdefault(x.row.subset, Tally()).add(x.correct, x.tie)
            same_all.add(x.correct, x.tie)
        else:
            rest.add(x.correct, x.tie)
        rows.append(per_row(run.bench, x.row.subset, x.row.id, x.scores, x.correct, same_bag_of_words=flag))
    block = {
        "rule": "the negative's lowercase [a-z0-9']+ words equal the caption's (as a multiset): order-blind rows",
        "rows": same_all.rows, "accuracy": same_all.accuracy,
        "by_subset": {n: same[n].to_dict() for n in names if n in same},
        "other_rows": {"rows": rest.rows, "accuracy": rest.accuracy},
    }
    return block, rows


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
        data = load_rows(path, FIELDS, "SugarCrepe", keyed=True)
        kept = 0
        has_split = False
        for rid, r in data:
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
    cost = Cost(encoder)
    rows, records, names = load_sugarcrepe(annotations, subsets, split)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    aggregates, rules = grouped_means(run.tallies, names, CATEGORIES)
    bow, rows_out = bag_of_words_report(run, names)
    result = run.result(protocol("correct iff s(I, caption) > s(I, negative_caption)", rules, blind, split=split),
                        aggregates, {**aggregates, **run.accuracies()}, records, rows=rows_out)
    result.extra["bag_of_words"] = bow
    return result
