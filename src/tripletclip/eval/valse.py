"""VALSE (Parcalabescu et al., arXiv 2112.07566): caption vs foil for six linguistic phenomena.

Protocol: keep the valid rows, ``mturk.caption >= 2`` (two of three annotators chose the caption and not the
foil; VALSE README), and score a row correct iff s(I, caption) > s(I, foil), strictly (VALSE's pairwise
ranking accuracy acc_r for contrastive models). Reported: accuracy per file (instrument), the unweighted mean
over files, and sample-weighted means per phenomenon (e.g. counting = counting-hard + counting-small-quant +
counting-adversarial). A few rows have caption == foil (e.g. 14 in actant-swap): they are kept, as in the
official data, are necessarily ties (wrong under the strict rule), and are counted per file.

Images come from several datasets (Visual7W, COCO 2017, SWiG, VisDial, COCO 2014 for FOIL-it): pass every
root; each ``image_file`` is looked up under all of them (COCO 2014 names also as their 2017 file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, grouped_means, run_choice
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_rows, protocol
from tripletclip.eval.sugarcrepe import as_list

PHENOMENA = {
    "existence": ("existence",),
    "plurality": ("plurals",),
    "counting": ("counting-hard", "counting-small-quant", "counting-adversarial"),
    "relations": ("relations",),
    "actions": ("action-replacement", "actant-swap"),
    "coreference": ("coreference-standard", "coreference-hard"),
    "foil-it": ("foil-it",),
}
INSTRUMENTS = tuple(f for files in PHENOMENA.values() for f in files)
FIELDS = ("image_file", "caption", "foil", "mturk")


def valid(row: dict) -> bool:
    """VALSE's valid subset: at least two of three annotators chose the caption (and not the foil)."""
    return int(row["mturk"]["caption"]) >= 2


def valse_files(annotations: str | Path, instruments: Optional[list[str]]) -> dict[str, Path]:
    ann = Path(annotations)
    if ann.is_file():
        return {ann.stem: ann}
    if not ann.is_dir():
        raise AnnotationError(f"{ann}: no such file or folder; pass --annotations with the VALSE data folder")
    if instruments:
        files = {i: ann / f"{i}.json" for i in instruments}
        missing = [i for i, p in files.items() if not p.is_file()]
        if missing:
            raise AnnotationError(f"{ann}: VALSE file(s) missing: {', '.join(m + '.json' for m in missing)}")
        return files
    files = {p.stem: p for p in sorted(ann.glob("*.json")) if p.stem in INSTRUMENTS}
    if not files:
        raise AnnotationError(f"{ann}: no VALSE file here (expected some of {', '.join(i + '.json' for i in INSTRUMENTS)})")
    return {i: files[i] for i in INSTRUMENTS if i in files}


def load_valse(annotations: str | Path, instruments: Any = None, valid_only: bool = True) -> tuple[list[ChoiceRow], list[dict], list[str]]:
    """(rows, annotation file records with total and valid counts, instrument names)."""
    files = valse_files(annotations, as_list(instruments))
    rows, records = [], []
    for name, path in files.items():
        data = load_rows(path, FIELDS, "VALSE", keyed=True)
        n_valid = 0
        for rid, r in data:
            if "caption" not in r["mturk"]:
                raise AnnotationError(f"{path}: row {rid} has no mturk.caption vote count")
            ok = valid(r)
            n_valid += ok
            if ok or not valid_only:
                rows.append(ChoiceRow(name, rid, r["image_file"], [r["caption"], r["foil"]], meta={"identical": r["caption"] == r["foil"]}))
        records.append(file_record(path, len(data), valid_rows=n_valid))
    return rows, records, list(files)


@register_benchmark("valse", summary="VALSE: caption vs foil on the valid rows, per instrument and phenomenon")
def evaluate_valse(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    instruments: Any = None,
    valid_only: bool = True,
    skip_missing: bool = False,
    blind: bool = False,
) -> BenchResult:
    """VALSE pairwise accuracy per instrument, unweighted mean and per-phenomenon weighted means."""
    cost = Cost(encoder)
    rows, records, names = load_valse(annotations, instruments, valid_only)
    run = run_choice("valse", encoder, rows, names, images, skip_missing, blind, cost)
    for name, t in run.tallies.items():
        t.extra["caption_equals_foil"] = sum(1 for x in run.scored if x.row.subset == name and x.row.meta["identical"])
    aggregates, rules = grouped_means(run.tallies, names, PHENOMENA, unit="instrument (file)")
    selection = "valid only: mturk.caption >= 2" if valid_only else "all rows (valid_only=False)"
    return run.result(protocol("correct iff s(I, caption) > s(I, foil)", rules, blind, rows=selection),
                      aggregates, {**aggregates, **run.accuracies()}, records)
