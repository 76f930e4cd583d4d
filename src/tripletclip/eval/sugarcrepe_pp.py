"""SugarCrepe++ (Dumpala et al., arXiv 2406.11171): two positives with the same meaning and one negative.

Two tasks per row, both with the strict rule (a tie is wrong):
- ITT (image-to-text): correct iff s(I, P1) > s(I, N) and s(I, P2) > s(I, N);
- TOT (text-only): correct iff s(P1, P2) > s(P1, N) and s(P1, P2) > s(P2, N), no image involved.
Reported per subset (5: no add_*), unweighted means per task, and sample-weighted replace / swap means.

Files: ``<subset>.json``, a JSON list of ``{"id", "filename", "caption" (P1), "caption2" (P2),
"negative_caption" (N)}``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from tripletclip.edit_types import SUGARCREPE_CATEGORIES, SUGARCREPE_PP_TYPES
from tripletclip.eval.base import encoder_delta, make_resolver, protocol, register_benchmark, stats_of
from tripletclip.eval.choice import ChoiceRow, score_rows, tally
from tripletclip.eval.images import unique
from tripletclip.eval.records import (
    AnnotationError, BenchResult, Tally, file_record, load_json, per_row, require, unweighted_mean, weighted_mean,
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
        data = load_json(path)
        if not isinstance(data, list):
            raise AnnotationError(f"{path}: expected a JSON list of rows (SugarCrepe++ format), got {type(data).__name__}")
        for i, r in enumerate(data):
            require(r, FIELDS, path, i)
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
    bench = "sugarcrepe_pp"
    start, before = time.perf_counter(), stats_of(encoder)
    rows, records, names = load_sugarcrepe_pp(annotations, subsets)
    scored, skipped, image_info = score_rows(encoder, rows, make_resolver(images), bench, skip_missing, blind)
    itt = tally(scored, skipped, names)

    # TOT on every row (it needs no image, so rows skipped for a missing image still count here)
    texts = unique(t for r in rows for t in r.texts)
    emb = encoder.encode_texts(texts) if texts else torch.zeros(0, 1)
    idx = {t: i for i, t in enumerate(texts)}
    tot = {s: Tally() for s in names}
    out_rows = [per_row(bench, f"ITT/{x.row.subset}", x.row.id, x.scores, x.correct) for x in scored]
    for r in rows:
        scores, ok, tie = tot_decision(*(emb[idx[t]] for t in r.texts))
        tot[r.subset].add(ok, tie)
        out_rows.append(per_row(bench, f"TOT/{r.subset}", r.id, scores, ok))

    aggregates: dict[str, float] = {"itt_mean": unweighted_mean(itt, names), "tot_mean": unweighted_mean(tot, names)}
    for cat, members in CATEGORIES.items():
        if any(m in names for m in members):
            aggregates[f"itt_{cat}"] = weighted_mean(itt, members)
            aggregates[f"tot_{cat}"] = weighted_mean(tot, members)
    headline = {**aggregates, **{f"itt/{s}": t.accuracy for s, t in itt.items()}, **{f"tot/{s}": t.accuracy for s, t in tot.items()}}
    agg_rules = {
        "itt_mean / tot_mean": f"unweighted mean of the subset accuracies ({len(names)} subsets)",
        **{f"itt_{c} / tot_{c}": f"sample-weighted accuracy over {', '.join(m)}" for c, m in CATEGORIES.items()},
    }
    decision = (
        "ITT: correct iff s(I,P1) > s(I,N) and s(I,P2) > s(I,N); "
        "TOT: correct iff s(P1,P2) > s(P1,N) and s(P1,P2) > s(P2,N)"
    )
    return BenchResult(
        benchmark=bench,
        protocol=protocol(decision, agg_rules, blind, tot_is_text_only=True),
        subsets={"ITT": {s: t.to_dict() for s, t in itt.items()}, "TOT": {s: t.to_dict() for s, t in tot.items()}},
        aggregates=aggregates,
        headline=headline,
        annotations=records,
        images=image_info,
        extra={"cost": encoder_delta(encoder, before, start), "skipped_missing": sum(skipped.values())},
        rows=out_rows,
    )
