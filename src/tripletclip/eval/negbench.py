"""NegBench (Alhamoud et al., arXiv 2501.09425): negation, as multiple choice and as negated retrieval.

``negbench_mcq``, as in the official ``benchmarks/src/evaluation/mcq.py`` ``evaluate_model``: each image is
scored against its 4 captions and the answer is the argmax; reported: accuracy overall and per
``correct_answer_template`` (positive / negative / hybrid), per file and the unweighted mean over files. The
official argmax picks the first of tied captions; here a tie with the correct caption counts as wrong (the
project's strict rule) and ties are counted per subset, so the two differ only on exact ties.

``negbench_retrieval``, as in ``benchmarks/src/evaluation/retrieval.py``: image-text retrieval over the file's
images, 5 (sometimes 6-7) captions per image; reported: text-to-image (the paper's "image retrieval") and
image-to-text Recall@k, k = 1, 5 by default. On the negated file (``*_negated_retrieval_*``) the captions say what is
absent; the paper reports its R@5. Scoring is :mod:`tripletclip.eval.retrieval`'s: a caption whose exact text
also belongs to another image has both images as ground truth (the official code uses the row's image only).

Files (CSV, as on NegBench's Drive): MCQ ``image_path, correct_answer, caption_0..caption_3,
correct_answer_template``; retrieval ``filepath, image_id, captions`` (a Python list literal). Paths are matched by
file name under ``--images`` (COCO val2017, VOC2007 JPEGImages; the CSVs' own path prefixes vary by copy).
"""
from __future__ import annotations

import ast
import csv
import math
from pathlib import Path
from typing import Any

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, run_choice
from tripletclip.eval.images import unique
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, per_row, protocol
from tripletclip.eval.retrieval import rank_items

MCQ_COLUMNS = ("image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer_template")
RETRIEVAL_COLUMNS = ("filepath", "image_id", "captions")
TEMPLATES = ("positive", "negative", "hybrid")


def _csv_rows(path: Path, columns: tuple[str, ...], fmt: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found; check --annotations")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        absent = [c for c in columns if c not in (reader.fieldnames or [])]
        if absent:
            raise AnnotationError(f"{path}: column(s) {', '.join(absent)} missing ({fmt} format)")
        return list(reader)


def mcq_files(annotations: str | Path) -> list[Path]:
    """One MCQ CSV, or every ``*_mcq_*.csv`` of a folder (sorted)."""
    p = Path(annotations)
    files = sorted(p.glob("*_mcq_*.csv")) if p.is_dir() else [p]
    if not files:
        raise AnnotationError(f"{p}: no *_mcq_*.csv file; pass --annotations with a NegBench MCQ CSV or its folder")
    return files


def dataset_of(path: Path) -> str:
    """``COCO_val_mcq_llama3.1_rephrased.csv`` -> ``COCO_val``; the subset prefix of a file's rows."""
    return path.name.split("_mcq")[0]


def load_mcq(annotations: str | Path) -> tuple[list[ChoiceRow], list[dict[str, Any]], list[str]]:
    """(rows with the correct caption first, file records, subset names ``<dataset>/<template>``)."""
    rows: list[ChoiceRow] = []
    records, names = [], []
    for path in mcq_files(annotations):
        data = _csv_rows(path, MCQ_COLUMNS, "NegBench MCQ")
        ds = dataset_of(path)
        for i, r in enumerate(data):
            caps = [r[f"caption_{k}"] for k in range(4)]
            answer = int(r["correct_answer"]) if r["correct_answer"].strip() in ("0", "1", "2", "3") else -1
            if answer < 0:
                raise AnnotationError(f"{path}: row {i}: correct_answer must be 0-3, got {r['correct_answer']!r}")
            template = r["correct_answer_template"]
            if template not in TEMPLATES:
                raise AnnotationError(f"{path}: row {i}: correct_answer_template {template!r} is not one of {TEMPLATES}")
            order = [answer] + [k for k in range(4) if k != answer]
            rows.append(ChoiceRow(f"{ds}/{template}", i, r["image_path"], [caps[k] for k in order], 1,
                                  meta={"order": order}))
        records.append(file_record(path, len(data), dataset=ds))
        names += [f"{ds}/{t}" for t in TEMPLATES]
    return rows, records, names


@register_benchmark("negbench_mcq", summary="NegBench multiple choice: argmax of 4 captions, per template type")
def evaluate_negbench_mcq(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "negbench_mcq",
) -> BenchResult:
    """MCQ accuracy per file, overall and per template type (positive / negative / hybrid)."""
    cost = Cost(encoder)
    rows, records, names = load_mcq(annotations)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    aggregates: dict[str, float] = {}
    for ds in unique(n.split("/")[0] for n in names):
        ts = [run.tallies[f"{ds}/{t}"] for t in TEMPLATES]
        n = sum(t.rows for t in ts)
        aggregates[ds] = sum(t.correct for t in ts) / n if n else math.nan
        aggregates.update({f"{ds}/{t}": run.tallies[f"{ds}/{t}"].accuracy for t in TEMPLATES})
    datasets = [k for k in aggregates if "/" not in k and not math.isnan(aggregates[k])]
    aggregates["mean"] = sum(aggregates[d] for d in datasets) / len(datasets) if datasets else math.nan
    # per-row scores back in the file's caption order, with the answer the model picked
    out_rows = []
    for x in run.scored:
        order = x.row.meta["order"]
        scores = [0.0] * 4
        for pos, k in enumerate(order):
            scores[k] = x.scores[pos]
        out_rows.append(per_row(benchmark, x.row.subset, x.row.id, scores, x.correct, answer=order[0],
                                picked=max(range(4), key=lambda k: scores[k])))
    proto = protocol("correct iff the correct caption scores strictly above the 3 others (argmax; a tie is wrong)",
                     {"<dataset>": "accuracy over the file's rows", "<dataset>/<template>": "accuracy over its rows",
                      "mean": "unweighted mean of the files"}, blind)
    return run.result(proto, aggregates, dict(aggregates), records, rows=out_rows)


def load_negbench_retrieval(annotations: str | Path) -> tuple[list[tuple[Any, tuple[str, ...], list[tuple[Any, str]]]], dict]:
    """Retrieval items ``(image id, (file path,), [(caption id, caption)])`` and the file record."""
    path = Path(annotations)
    data = _csv_rows(path, RETRIEVAL_COLUMNS, "NegBench retrieval")
    items = []
    for i, r in enumerate(data):
        try:
            caps = ast.literal_eval(r["captions"])
        except (ValueError, SyntaxError):
            raise AnnotationError(f"{path}: row {i}: captions is not a Python list literal") from None
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            raise AnnotationError(f"{path}: row {i}: captions must be a non-empty list of strings")
        items.append((r["image_id"], (r["filepath"],), [(f"{i}:{j}", c) for j, c in enumerate(caps)]))
    return items, file_record(path, len(data), captions=sum(len(it[2]) for it in items))


@register_benchmark("negbench_retrieval", blind=False, summary="NegBench (negated) retrieval: R@k both directions")
def evaluate_negbench_retrieval(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    ks: Any = (1, 5),
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "negbench_retrieval",
) -> BenchResult:
    """Text-to-image and image-to-text Recall@k on one NegBench retrieval CSV."""
    ks = tuple(int(k) for k in (ks.split(",") if isinstance(ks, str) else ks))
    cost = Cost(encoder)
    items, rec = load_negbench_retrieval(annotations)
    r = rank_items(encoder, items, annotations, images, skip_missing, benchmark)  # --images DIR: COCO val2017
    kept, queries, i2t, t2i = r.kept, r.queries, r.i2t, r.t2i
    metrics = {f"t2i_r{k}": int((t2i < k).sum()) / len(t2i) for k in ks}
    metrics.update({f"i2t_r{k}": int((i2t < k).sum()) / len(i2t) for k in ks})
    rows = [per_row(benchmark, "t2i", cid, {"rank": int(r)}, int(r) < 1) for (cid, _), r in zip(queries, t2i)]
    rows += [per_row(benchmark, "i2t", it[0], {"rank": int(r)}, int(r) < 1) for it, r in zip(kept, i2t)]
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol("hit@k iff some ground-truth item ranks in the top k",
                          {"t2i_r<k>": "fraction of caption queries whose image is in the top k (NegBench's "
                                       "image retrieval)", "i2t_r<k>": "fraction of images with a caption in the top k"},
                          False, tie_rule_retrieval="rank = number of distractors scoring >= the best ground truth"),
        subsets={"t2i": {"queries": len(queries)}, "i2t": {"queries": len(kept)}},
        aggregates=metrics,
        headline=dict(metrics),
        annotations=[rec],
        images=r.images_record(),
        extra={"cost": cost.record(), "skipped_missing": len(items) - len(kept)},
        rows=rows,
    )
