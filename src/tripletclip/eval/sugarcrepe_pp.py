"""SugarCrepe++ (Dumpala et al., arXiv 2406.11171): two positives with the same meaning and one negative.

Two tasks per row, both with the strict rule (a tie is wrong):
- ITT (image-to-text): correct iff s(I, P1) > s(I, N) and s(I, P2) > s(I, N);
- TOT (text-only): correct iff s(P1, P2) > s(P1, N) and s(P1, P2) > s(P2, N), no image involved.
Reported per subset (5: no add_*), unweighted means per task, and sample-weighted replace / swap means.

Files: ``<subset>.json``, a JSON list of ``{"id", "filename", "caption" (P1), "caption2" (P2),
"negative_caption" (N)}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tripletclip.edit_types import SUGARCREPE_CATEGORIES, SUGARCREPE_PP_TYPES
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, grouped_means, run_choice
from tripletclip.eval.images import unique
from tripletclip.eval.records import (
    BenchResult, Cost, Tally, file_record, load_rows, per_row, protocol,
)
from tripletclip.eval.sugarcrepe import as_list, subset_files

SUBSETS = SUGARCREPE_PP_TYPES
CATEGORIES = {c: members for c, members in SUGARCREPE_CATEGORIES.items() if set(members) <= set(SUBSETS)}
FIELDS = ("id", "filename", "caption", "caption2", "negative_caption")


def load_sugarcrepe_pp(annotations: str | Path, subsets: Any = None) -> tuple[list[ChoiceRow], list[dict], list[str]]:
    """(ITT rows with texts [P1, P2, N], annotation file records, subset names)."""
    files = subset_files(annotations, SUBSETS, as_list(subsets), "SugarCrepe++")
    rows, records = [], []
    for subset, path in files.items():
        data = load_rows(path, FIELDS, "SugarCrepe++", keyed=False)
        for _, r in data:
            rows.append(ChoiceRow(subset, r["id"], r["filename"], [r["caption"], r["caption2"], r["negative_caption"]], n_true=2))
        records.append(file_record(path, len(data)))
    return rows, records, list(files)


def tot_decision(p1: torch.Tensor, p2: torch.Tensor, n: torch.Tensor) -> tuple[list[float], bool, bool]:
    """([s(P1,P2), s(P1,N), s(P2,N)], correct, tie) of the text-only task."""
    s_pp, s_1n, s_2n = float(p1 @ p2), float(p1 @ n), float(p2 @ n)
    return [s_pp, s_1n, s_2n], s_pp > s_1n and s_pp > s_2n, s_pp == max(s_1n, s_2n)


@register_benchmark("sugarcrepe_pp", summary="SugarCrepe++: ITT (image-to-text) and TOT (text-only) with two positives")
def evaluate_sugarcrepe_pp(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    subsets: Any = None,
    skip_missing: bool = False,
    blind: bool = False,
) -> BenchResult:
    """SugarCrepe++ ITT and TOT accuracy per subset, unweighted means and weighted categories."""
    cost = Cost(encoder)
    rows, records, names = load_sugarcrepe_pp(annotations, subsets)
    run = run_choice("sugarcrepe_pp", encoder, rows, names, images, skip_missing, blind, cost)
    itt = run.tallies
    tot, tot_rows = _text_only(encoder, rows, names)
    itt_agg, itt_rules = grouped_means(itt, names, CATEGORIES, prefix="itt_")
    tot_agg, tot_rules = grouped_means(tot, names, CATEGORIES, prefix="tot_")
    aggregates = {**itt_agg, **tot_agg}
    headline = {**aggregates, **run.accuracies("itt/"), **{f"tot/{s}": t.accuracy for s, t in tot.items()}}
    decision = (
        "ITT: correct iff s(I,P1) > s(I,N) and s(I,P2) > s(I,N); "
        "TOT: correct iff s(P1,P2) > s(P1,N) and s(P1,P2) > s(P2,N)"
    )
    return run.result(
        protocol(decision, {**itt_rules, **tot_rules}, blind, tot_is_text_only=True), aggregates, headline, records,
        subsets={"ITT": {s: t.to_dict() for s, t in itt.items()}, "TOT": {s: t.to_dict() for s, t in tot.items()}},
        rows=run.rows_out("ITT/") + tot_rows,
    )


def _text_only(encoder: Any, rows: list[ChoiceRow], names: list[str]) -> tuple[dict[str, Tally], list[dict[str, Any]]]:
    """TOT tallies and per-row records on every row (no image, so rows skipped for a missing image count here)."""
    texts = unique(t for r in rows for t in r.texts)
    emb = encoder.encode_texts(texts) if texts else torch.zeros(0, 1)
    idx = {t: i for i, t in enumerate(texts)}
    tot = {s: Tally() for s in names}
    out_rows = []
    for r in rows:
        scores, ok, tie = tot_decision(*(emb[idx[t]] for t in r.texts))
        tot[r.subset].add(ok, tie)
        out_rows.append(per_row("sugarcrepe_pp", f"TOT/{r.subset}", r.id, scores, ok))
    return tot, out_rows
