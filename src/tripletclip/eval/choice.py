"""The shared core of every "pick the true caption for this image" benchmark, and its blind variant.

SugarCrepe (arXiv 2306.14610), SugarCrepe++ ITT (arXiv 2406.11171), VALSE (arXiv 2112.07566), ARO's
COCO/Flickr-Order and VG-Relation/Attribution (arXiv 2210.01936) all score one image against a few captions.
A :class:`ChoiceRow` lists the true caption(s) first; the row is correct iff every true caption scores strictly
higher than every false one, s = cos(image, caption). One true and one false caption is SugarCrepe's rule;
two true captions is SugarCrepe++'s ITT rule (s(I,P1) > s(I,N) and s(I,P2) > s(I,N)); one true among five is
ARO's "the original ranks first".

Images and texts are encoded once each through :class:`~tripletclip.eval.encoder.Encoder` and the scores of all
rows are one gather + dot product, instead of the official row-by-row loop.

Every such benchmark runs the same tail, :func:`run_choice`: score the rows, tally them per subset, then
:meth:`ChoiceRun.result` assembles the record (subset tables, aggregates, image record, cost, per-row records);
:func:`grouped_means` gives the usual summary (unweighted mean over subsets, sample-weighted category means).

Blind baseline (docs/methods.md section 4.1: a text-only scorer should sit near 50% on good hard negatives): the image
embedding is replaced by one image-free query, the renormalised mean embedding of every distinct caption the
run scores (true and false pooled, so it favours neither side), and the same decision rule is applied. A caption
wins when it looks more like a typical caption of the benchmark to the text tower alone, which exposes
ungrammatical or implausible negatives without ever looking at an image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from tripletclip.errors import InputError
from tripletclip.eval.encoder import ImageCrop
from tripletclip.eval.images import ImageResolver, make_resolver, resolve_images, unique
from tripletclip.eval.records import BenchResult, Cost, Tally, per_row, unweighted_mean, weighted_mean


@dataclass
class ChoiceRow:
    """One image, candidate captions with the ``n_true`` true ones first; ``image`` is its annotation name(s)."""

    subset: str
    id: Any
    image: str | tuple[str, ...]
    texts: list[str]
    n_true: int = 1
    box: Optional[tuple[float, float, float, float]] = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scored:
    row: ChoiceRow
    scores: list[float]
    correct: bool
    tie: bool


def decide(scores: Sequence[float], n_true: int) -> tuple[bool, bool]:
    """(correct, tie): every true score strictly above every false one; a row without false captions is correct."""
    pos, neg = scores[:n_true], scores[n_true:]
    if not neg:
        return True, False
    lo, hi = min(pos), max(neg)
    return lo > hi, lo == hi


def blind_query(text_emb: torch.Tensor) -> torch.Tensor:
    """The image-free query of the blind baseline: the renormalised mean of the distinct text embeddings."""
    return F.normalize(text_emb.mean(dim=0, keepdim=True), dim=-1)


def score_rows(
    encoder: Any,
    rows: list[ChoiceRow],
    resolver: Optional[ImageResolver],
    what: str,
    skip_missing: bool = False,
    blind: bool = False,
) -> tuple[list[Scored], dict[str, int], dict[str, Any]]:
    """Score every row; returns (scored rows, skipped-for-missing-image count per subset, image record)."""
    skipped: dict[str, int] = {}
    image_info: dict[str, Any] = {}
    if blind:
        kept = rows
    else:
        if resolver is None:
            raise InputError(f"{what}: no image folder given; pass --images DIR (or --blind for the text-only baseline)")
        names = {r.image: r.image for r in rows}
        found, missing = resolve_images(resolver, names, skip_missing, what)
        kept = []
        for r in rows:
            if r.image in found:
                kept.append(r)
            else:
                skipped[r.subset] = skipped.get(r.subset, 0) + 1
        image_info = {"distinct": len(found), "missing": len(missing), "missing_examples": missing[:5], **resolver.describe()}

    texts = unique(t for r in kept for t in r.texts)
    text_emb = encoder.encode_texts(texts) if texts else torch.zeros(0, 1)
    text_index = {t: i for i, t in enumerate(texts)}
    if blind:
        img_emb = blind_query(text_emb) if texts else torch.zeros(1, 1)
        img_of_row = [0] * len(kept)
    else:
        sources = unique(
            ImageCrop(found[r.image], r.box) if r.box is not None else found[r.image] for r in kept
        )
        src_index = {s: i for i, s in enumerate(sources)}
        img_emb = encoder.encode_images(sources) if sources else torch.zeros(0, 1)
        img_of_row = [src_index[ImageCrop(found[r.image], r.box) if r.box is not None else found[r.image]] for r in kept]
        image_info["encoded_sources"] = len(sources)

    # all (row, candidate) pairs in one gather: s = <image, text>
    flat_img = torch.tensor([img_of_row[i] for i, r in enumerate(kept) for _ in r.texts], dtype=torch.long)
    flat_txt = torch.tensor([text_index[t] for r in kept for t in r.texts], dtype=torch.long)
    flat = (img_emb[flat_img] * text_emb[flat_txt]).sum(-1).tolist() if len(flat_txt) else []
    out: list[Scored] = []
    pos = 0
    for r in kept:
        s = flat[pos : pos + len(r.texts)]
        pos += len(r.texts)
        ok, tie = decide(s, r.n_true)
        out.append(Scored(r, s, ok, tie))
    return out, skipped, image_info


def tally(scored: list[Scored], skipped: dict[str, int], subsets: Sequence[str]) -> dict[str, Tally]:
    """Per-subset tallies in the given subset order (subsets with no row kept still appear)."""
    tallies = {s: Tally() for s in subsets}
    for x in scored:
        tallies.setdefault(x.row.subset, Tally()).add(x.correct, x.tie)
    for s, n in skipped.items():
        tallies.setdefault(s, Tally()).skipped_missing = n
    return tallies


@dataclass
class ChoiceRun:
    """One choice benchmark scored: its rows, per-subset tallies, image record and cost meter."""

    bench: str
    scored: list[Scored]
    skipped: dict[str, int]
    images: dict[str, Any]
    tallies: dict[str, Tally]
    cost: Cost

    def accuracies(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + subset: accuracy}`` of every tallied subset (headline entries)."""
        return {prefix + s: t.accuracy for s, t in self.tallies.items()}

    def rows_out(self, prefix: str = "") -> list[dict[str, Any]]:
        """Per-row records (scores in annotation order: true caption(s) first); subsets as ``prefix + subset``."""
        return [per_row(self.bench, prefix + x.row.subset, x.row.id, x.scores, x.correct) for x in self.scored]

    def result(self, protocol: dict[str, Any], aggregates: dict[str, Any], headline: dict[str, Any],
               annotations: list[dict[str, Any]], subsets: Optional[dict[str, Any]] = None,
               rows: Optional[list[dict[str, Any]]] = None) -> BenchResult:
        """The benchmark record; subsets default to the tallies, rows to :meth:`rows_out`."""
        return BenchResult(
            benchmark=self.bench,
            protocol=protocol,
            subsets=subsets if subsets is not None else {s: t.to_dict() for s, t in self.tallies.items()},
            aggregates=aggregates,
            headline=headline,
            annotations=annotations,
            images=self.images,
            extra={"cost": self.cost.record(), "skipped_missing": sum(self.skipped.values())},
            rows=rows if rows is not None else self.rows_out(),
        )


def run_choice(bench: str, encoder: Any, rows: list[ChoiceRow], subsets: Sequence[str], images: Any,
               skip_missing: bool, blind: bool, cost: Cost) -> ChoiceRun:
    """Score ``rows`` against the images under ``images`` (or blind) and tally them per subset."""
    scored, skipped, image_info = score_rows(encoder, rows, make_resolver(images), bench, skip_missing, blind)
    return ChoiceRun(bench, scored, skipped, image_info, tally(scored, skipped, subsets), cost)


def grouped_means(tallies: dict[str, Tally], names: Sequence[str], groups: dict[str, Sequence[str]],
                  prefix: str = "", unit: str = "subset") -> tuple[dict[str, float], dict[str, str]]:
    """(aggregates, their rules): ``mean``, the unweighted mean over ``names``, and per group present the
    sample-weighted accuracy over its members (SugarCrepe's Replace / Swap / Add, VALSE's phenomena)."""
    aggregates = {f"{prefix}mean": unweighted_mean(tallies, names)}
    rules = {f"{prefix}mean": f"unweighted mean of the {unit} accuracies ({len(names)} {unit}s)"}
    for group, members in groups.items():
        if any(m in names for m in members):
            aggregates[f"{prefix}{group}"] = weighted_mean(tallies, members)
            rules[f"{prefix}{group}"] = f"sample-weighted accuracy over {', '.join(members)}"
    return aggregates, rules
