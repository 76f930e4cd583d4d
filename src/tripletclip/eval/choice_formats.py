"""Readers for benchmarks that pick one caption for an image, or one image for a caption.

- ``whatsup`` (Kamath et al., arXiv 2310.19785): ``controlled_images_dataset.json`` / ``controlled_clevr_dataset.json``
  (rows ``{image_path, caption_options}``, the first option true) and ``{coco,vg}_qa_{one,two}_obj.json`` (rows
  ``[image_id, true caption, false caption]``, COCO images ``<12-digit id>.jpg``, VG images ``<id>.jpg``); accuracy
  of picking the true caption per file, as ``dataset_zoo/aro_datasets.py`` ``evaluate_scores`` (its pair and set
  accuracies of Controlled-Images are not computed here).
- ``svo_probes`` (Hendricks and Nematzadeh, arXiv 2106.09141): ``svo_probes.csv`` rows ``sentence, pos_image_id,
  neg_image_id, subj_neg, verb_neg, obj_neg`` (images saved as ``<image id>.jpg`` from ``image_urls.txt``); a row is
  correct iff s(sentence, positive image) > s(sentence, negative image); accuracy per negative type.
- ``spec`` (Peng et al., arXiv 2312.00081): per subset folder ``image2text.json`` (``query`` image, ``keys``
  captions, ``label``) and ``text2image.json`` (``query`` caption, ``keys`` images); image paths relative to the
  subset folder; I2T and T2I accuracy per subset and their means over subsets (``spec/eval.py`` ``main``).
- ``bla`` (Chen et al., EMNLP 2023): ``{active_passive,coordination,relative_clause}_captions.json`` rows
  ``{image_id, caption_group: [{True1, True2, False1, False2}]}``, images ``<image_id>.jpg``; the official
  ``evaluation_models/clip/utils.py`` ``get_accuracy`` scores the fraction of the 4 captions ranked in their half
  (trues in the top 2), reported as ``accuracy``; ``strict`` is the share of rows with both trues above both falses.
All decisions strict (a tie is wrong). None of these files is on this machine: the readers are tested on small
files written in the documented formats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, decide, grouped_means, run_choice
from tripletclip.eval.images import make_resolver, resolve_images, unique
from tripletclip.eval.records import (AnnotationError, BenchResult, Cost, Tally, file_record, load_json, per_row,
                                      protocol)
from tripletclip.eval.tables import load_table, table_files


def _acc(tallies: dict[str, Tally]) -> dict[str, float]:
    return {k: t.accuracy for k, t in tallies.items()}


@register_benchmark("whatsup", summary="What'sUp: pick the true spatial caption, accuracy per file")
def evaluate_whatsup(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                     blind: bool = False, benchmark: str = "whatsup") -> BenchResult:
    """What'sUp accuracy per annotation file and their unweighted mean."""
    cost = Cost(encoder)
    rows: list[ChoiceRow] = []
    records, names = [], []
    for f in table_files(annotations, "*.json"):
        data = load_json(f)
        if not isinstance(data, list):
            raise AnnotationError(f"{f}: expected a JSON list (What'sUp format)")
        coco = "coco" in f.name.lower()
        for i, r in enumerate(data):
            if isinstance(r, dict) and "image_path" in r and isinstance(r.get("caption_options"), list):
                rows.append(ChoiceRow(f.stem, i, Path(r["image_path"]).name, list(r["caption_options"])))
            elif isinstance(r, list) and len(r) == 3:
                image = f"{str(r[0]).zfill(12)}.jpg" if coco else f"{r[0]}.jpg"
                rows.append(ChoiceRow(f.stem, i, image, [r[1], r[2]]))
            else:
                raise AnnotationError(f"{f}: row {i} is neither {{image_path, caption_options}} nor "
                                      f"[image_id, true caption, false caption]")
        records.append(file_record(f, len(data)))
        names.append(f.stem)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    aggregates, rules = grouped_means(run.tallies, names, {}, unit="file")
    return run.result(protocol("correct iff the true caption (first option) scores strictly highest", rules, blind),
                      aggregates, {**aggregates, **run.accuracies()}, records)


@dataclass
class TextChoiceRow:
    """One caption and candidate images, the ``n_true`` true ones first."""

    subset: str
    id: Any
    text: str
    images: list[str]
    n_true: int = 1


def score_text_rows(bench: str, encoder: Any, rows: list[TextChoiceRow], images: Any, skip_missing: bool
                    ) -> tuple[list[tuple[TextChoiceRow, list[float], bool, bool]], int, dict[str, Any]]:
    """([(row, scores, correct, tie)], rows skipped for missing images, image record) of text-to-image rows."""
    resolver = make_resolver(images)
    if resolver is None:
        raise AnnotationError(f"{bench}: no image folder given; pass --images DIR")
    found, missing = resolve_images(resolver, {n: n for r in rows for n in r.images}, skip_missing, bench)
    kept = [r for r in rows if all(n in found for n in r.images)]
    paths = unique(found[n] for r in kept for n in r.images)
    texts = unique(r.text for r in kept)
    pi, ti = {p: i for i, p in enumerate(paths)}, {t: i for i, t in enumerate(texts)}
    img = encoder.encode_images(paths) if paths else torch.zeros(0, 1)
    txt = encoder.encode_texts(texts) if texts else torch.zeros(0, 1)
    out = []
    for r in kept:
        s = [float(txt[ti[r.text]] @ img[pi[found[n]]]) for n in r.images]
        ok, tie = decide(s, r.n_true)
        out.append((r, s, ok, tie))
    info = {"distinct": len(found), "missing": len(missing), "missing_examples": missing[:5], **resolver.describe()}
    return out, len(rows) - len(kept), info


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


@register_benchmark("svo_probes", blind=False, summary="SVO-Probes: the sentence picks its image over the negative, per type")
def evaluate_svo_probes(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                        blind: bool = False, benchmark: str = "svo_probes") -> BenchResult:
    """SVO-Probes accuracy overall and by negative type (subject, verb, object)."""
    cost = Cost(encoder)
    table, records = load_table(annotations, ("sentence", "pos_image_id", "neg_image_id"), "SVO-Probes")
    rows = []
    for _, i, r in table:
        kind = next((k for k in ("subj", "verb", "obj") if _truthy(r.get(f"{k}_neg"))), "unknown")
        rows.append(TextChoiceRow(kind, i, r["sentence"], [f"{r['pos_image_id']}.jpg", f"{r['neg_image_id']}.jpg"]))
    scored, skipped, info = score_text_rows(benchmark, encoder, rows, images, skip_missing)
    tallies: dict[str, Tally] = {}
    for r, _, ok, tie in scored:
        tallies.setdefault(r.subset, Tally()).add(ok, tie)
    total = Tally(correct=sum(t.correct for t in tallies.values()), rows=sum(t.rows for t in tallies.values()))
    aggregates = {"accuracy": total.accuracy, **_acc(tallies)}
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol("correct iff s(sentence, positive image) > s(sentence, negative image)",
                          {"accuracy": "over all rows", "<type>": "over the rows of that negative type"}, False),
        subsets={k: t.to_dict() for k, t in tallies.items()}, aggregates=aggregates, headline=dict(aggregates),
        annotations=records, images=info, extra={"cost": cost.record(), "skipped_missing": skipped},
        rows=[per_row(benchmark, r.subset, r.id, s, ok) for r, s, ok, _ in scored],
    )


def _spec_subsets(root: Path) -> list[Path]:
    subs = sorted(p.parent for p in root.rglob("image2text.json"))
    if not subs:
        raise AnnotationError(f"{root}: no <subset>/image2text.json; pass --annotations with the SPEC data folder")
    return subs


@register_benchmark("spec", blind=False, summary="SPEC: I2T and T2I accuracy per subset, averaged over subsets")
def evaluate_spec(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                  blind: bool = False, benchmark: str = "spec") -> BenchResult:
    """SPEC image-to-text and text-to-image accuracy per subset and their means; images default to the subsets."""
    cost = Cost(encoder)
    root = Path(annotations)
    i2t_rows: list[ChoiceRow] = []
    t2i_rows: list[TextChoiceRow] = []
    records, names = [], []
    for sub in _spec_subsets(root):
        name = sub.relative_to(root).as_posix() if sub != root else sub.name
        for kind in ("image2text", "text2image"):
            f = sub / f"{kind}.json"
            data = load_json(f)
            for i, r in enumerate(data if isinstance(data, list) else []):
                if not (isinstance(r, dict) and {"query", "keys", "label"} <= set(r) and isinstance(r["label"], int)
                        and isinstance(r["keys"], list) and 0 <= r["label"] < len(r["keys"])):
                    raise AnnotationError(f"{f}: row {i} needs query, keys and a label indexing keys")
                keys, lab = list(r["keys"]), int(r["label"])
                order = [keys[lab]] + keys[:lab] + keys[lab + 1:]
                if kind == "image2text":
                    i2t_rows.append(ChoiceRow(name, i, f"{name}/{r['query']}", order))
                else:
                    t2i_rows.append(TextChoiceRow(name, i, r["query"], [f"{name}/{k}" for k in order]))
            records.append(file_record(f, len(data) if isinstance(data, list) else 0, subset=name))
        names.append(name)
    roots = images if images not in (None, "", []) else root
    run = run_choice(benchmark, encoder, i2t_rows, names, roots, skip_missing, False, cost)
    scored, skipped, _ = score_text_rows(benchmark, encoder, t2i_rows, roots, skip_missing)
    t2i: dict[str, Tally] = {n: Tally() for n in names}
    for r, _, ok, tie in scored:
        t2i[r.subset].add(ok, tie)
    agg: dict[str, float] = {}
    for n in names:
        agg[f"{n}/i2t"], agg[f"{n}/t2i"] = run.tallies[n].accuracy, t2i[n].accuracy
    valid = lambda xs: [x for x in xs if not math.isnan(x)]  # noqa: E731
    for d in ("i2t", "t2i"):
        vals = valid([agg[f"{n}/{d}"] for n in names])
        agg[d] = sum(vals) / len(vals) if vals else math.nan
    agg["mean"] = (agg["i2t"] + agg["t2i"]) / 2
    rows = run.rows_out("i2t/") + [per_row(benchmark, f"t2i/{r.subset}", r.id, s, ok) for r, s, ok, _ in scored]
    return run.result(protocol("correct iff the labelled key scores strictly highest (I2T: captions for the image; "
                               "T2I: images for the caption)", {"i2t / t2i": "unweighted mean over subsets",
                                                                "mean": "mean of i2t and t2i"}, False),
                      agg, dict(agg), records, subsets={"i2t": {n: t.to_dict() for n, t in run.tallies.items()},
                                                        "t2i": {n: t.to_dict() for n, t in t2i.items()}}, rows=rows)


def bla_accuracy(scores: list[float]) -> float:
    """The official per-item accuracy: the share of the 4 captions (True1, True2, False1, False2) ranked in their
    half, ranks from a descending sort (utils.py ``rank_captions`` + ``get_accuracy``)."""
    order = sorted(range(4), key=lambda k: -scores[k])
    rank = {k: pos + 1 for pos, k in enumerate(order)}
    return sum((rank[k] <= 2) == (k < 2) for k in range(4)) / 4


@register_benchmark("bla", summary="BLA: two true vs two false captions per image, per phenomenon")
def evaluate_bla(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                 blind: bool = False, benchmark: str = "bla") -> BenchResult:
    """BLA accuracy (official per-item share of captions ranked in their half) and strict accuracy per phenomenon."""
    cost = Cost(encoder)
    rows: list[ChoiceRow] = []
    records, names = [], []
    for f in table_files(annotations, "*_captions.json"):
        data = load_json(f)
        for i, r in enumerate(data if isinstance(data, list) else [None]):
            group = (r or {}).get("caption_group") if isinstance(r, dict) else None
            g = group[0] if isinstance(group, list) and group else None
            if not (isinstance(g, dict) and {"True1", "True2", "False1", "False2"} <= set(g) and "image_id" in r):
                raise AnnotationError(f"{f}: row {i} needs image_id and caption_group[0] with True1, True2, False1, False2")
            rows.append(ChoiceRow(f.stem, i, f"{r['image_id']}.jpg", [g["True1"], g["True2"], g["False1"], g["False2"]], 2))
        records.append(file_record(f, len(data)))
        names.append(f.stem)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    shares: dict[str, list[float]] = {n: [] for n in names}
    out = []
    for x in run.scored:
        a = bla_accuracy(x.scores)
        shares[x.row.subset].append(a)
        out.append(per_row(benchmark, x.row.subset, x.row.id, x.scores, x.correct, accuracy=a))
    agg: dict[str, Optional[float]] = {}
    for n in names:
        agg[n] = sum(shares[n]) / len(shares[n]) if shares[n] else math.nan
        agg[f"{n}/strict"] = run.tallies[n].accuracy
    vals = [agg[n] for n in names if not math.isnan(agg[n])]
    agg["mean"] = sum(vals) / len(vals) if vals else math.nan
    return run.result(protocol("accuracy: share of the 4 captions ranked in their half (trues top 2); strict: both "
                               "trues score strictly above both falses", {"mean": "unweighted mean over phenomena"},
                               blind), agg, dict(agg), records, rows=out)
