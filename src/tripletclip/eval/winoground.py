"""Winoground scores (Thrush et al., arXiv 2204.03162) on its examples.jsonl, and the shared group scorer.

A group is two images and two captions, (I0, C0) and (I1, C1), with s(C, I) the cosine similarity:
- text score: each image prefers its own caption: s(C0,I0) > s(C1,I0) and s(C1,I1) > s(C0,I1);
- image score: each caption prefers its own image: s(C0,I0) > s(C0,I1) and s(C1,I1) > s(C1,I0);
- group score: both. All comparisons strict (a tie is wrong), as in the paper's definition.
The same scorer serves TripletData pairs ((x, y), (x', y')) and the embedded world's benchmark.

Files: ``examples.jsonl`` with ``id, image_0, image_1, caption_0, caption_1, tag, secondary_tag,
num_main_preds, collapsed_tag`` (image names without extension; the files are ``<images>/<name>.png``).
Results: overall, and by ``tag`` / ``collapsed_tag`` (and ``split`` when present).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from tripletclip.errors import InputError
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.encoder import ImageSource
from tripletclip.eval.images import make_resolver, resolve_images, unique
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, per_row, protocol, require
from tripletclip.utils.files import sha256_file

FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1")
WINO_DECISION = (
    "text: s(C0,I0) > s(C1,I0) and s(C1,I1) > s(C0,I1); image: s(C0,I0) > s(C0,I1) and s(C1,I1) > s(C1,I0); "
    "group: text and image"
)


@dataclass
class Group:
    """One Winoground-style group; ``images`` are image sources (paths or bytes), ``tags`` its breakdown keys."""

    id: Any
    images: tuple[ImageSource, ImageSource]
    captions: tuple[str, str]
    tags: dict[str, str] = field(default_factory=dict)


def wino_decide(s: Sequence[Sequence[float]]) -> tuple[bool, bool, bool]:
    """(text, image, group) correctness from s[c][i] = s(C_c, I_i)."""
    text = s[0][0] > s[1][0] and s[1][1] > s[0][1]
    image = s[0][0] > s[0][1] and s[1][1] > s[1][0]
    return text, image, text and image


class WinoTally:
    """Text / image / group correct counts of one slice."""

    def __init__(self) -> None:
        self.n = self.text = self.image = self.group = 0

    def add(self, t: bool, i: bool, g: bool) -> None:
        self.n += 1
        self.text += t
        self.image += i
        self.group += g

    def to_dict(self) -> dict[str, Any]:
        f = (lambda c: c / self.n) if self.n else (lambda c: None)
        return {"text": f(self.text), "image": f(self.image), "group": f(self.group), "rows": self.n}


def score_groups(encoder: Any, groups: list[Group]) -> list[list[list[float]]]:
    """s[c][i] for every group, each distinct image and caption encoded once."""
    if not groups:
        return []
    sources = unique(s for g in groups for s in g.images)
    texts = unique(c for g in groups for c in g.captions)
    si, ti = {s: k for k, s in enumerate(sources)}, {t: k for k, t in enumerate(texts)}
    img, txt = encoder.encode_images(sources), encoder.encode_texts(texts)
    I = torch.tensor([[si[s] for s in g.images] for g in groups])  # [G, 2]
    C = torch.tensor([[ti[c] for c in g.captions] for g in groups])  # [G, 2]
    s = torch.einsum("gcd,gid->gci", txt[C], img[I])
    return s.tolist()


def summarise_groups(
    bench: str, groups: list[Group], scores: list[list[list[float]]], breakdown: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, WinoTally]]:
    """(breakdown tables, per-row records, {"all": tally}) of scored groups."""
    overall = WinoTally()
    by: dict[str, dict[str, WinoTally]] = {k: {} for k in breakdown}
    rows = []
    for g, s in zip(groups, scores):
        t, i, gr = wino_decide(s)
        overall.add(t, i, gr)
        for k in breakdown:
            if k in g.tags:
                by[k].setdefault(str(g.tags[k]), WinoTally()).add(t, i, gr)
        subset = str(g.tags.get(breakdown[0], "all")) if breakdown else "all"
        rows.append(per_row(bench, subset, g.id, {"c0_i0": s[0][0], "c0_i1": s[0][1], "c1_i0": s[1][0], "c1_i1": s[1][1]},
                            gr, text_correct=t, image_correct=i))
    tables = {"all": overall.to_dict(), **{f"by_{k}": {v: x.to_dict() for v, x in sorted(d.items())} for k, d in by.items() if d}}
    return tables, rows, {"all": overall}


def load_winoground(path: str | Path, split: Optional[str] = None) -> tuple[list[dict], dict[str, Any]]:
    """Rows of examples.jsonl (filtered by ``split`` when given) and the file record."""
    path = Path(path)
    if path.is_dir():
        path = path / "examples.jsonl"
    if not path.is_file():
        raise AnnotationError(f"{path}: Winoground examples.jsonl not found; pass --annotations with its path")
    rows, total = [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}: line {n} is not JSON ({e})") from None
        require(r, FIELDS, path, f"at line {n}")
        total += 1
        if split is None or r.get("split") == split:
            rows.append(r)
    rec = {"path": str(path), "sha256": sha256_file(path), "rows": total}
    if split is not None:
        rec.update(split=split, rows_in_split=len(rows))
    return rows, rec


@register_benchmark("winoground", blind=False, summary="Winoground: text / image / group scores from examples.jsonl")
def evaluate_winoground(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    split: Optional[str] = None,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "winoground",
) -> BenchResult:
    """Winoground text, image and group scores, overall and per tag."""
    cost = Cost(encoder)
    rows, rec = load_winoground(annotations, split)
    resolver = make_resolver(images, extensions=("", ".png", ".jpg", ".jpeg"))
    if resolver is None:
        raise InputError(f"{benchmark}: no image folder given; pass --images DIR")
    names = {n: n for r in rows for n in (r["image_0"], r["image_1"])}
    found, missing = resolve_images(resolver, names, skip_missing, benchmark)
    keys = [k for k in ("tag", "collapsed_tag", "split") if any(k in r for r in rows)]
    groups = [
        Group(r["id"], (found[r["image_0"]], found[r["image_1"]]), (r["caption_0"], r["caption_1"]), {k: r[k] for k in keys if k in r})
        for r in rows if r["image_0"] in found and r["image_1"] in found
    ]
    scores = score_groups(encoder, groups)
    tables, out_rows, overall = summarise_groups(benchmark, groups, scores, keys)
    headline = {m: tables["all"][m] for m in ("text", "image", "group")}
    for tag, d in tables.get("by_tag", {}).items():
        headline[f"group/{tag}"] = d["group"]
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol(WINO_DECISION, {"all": "fraction of groups (micro)", "by_<field>": "fraction of the groups with that value"}, False, split=split),
        subsets=tables,
        aggregates=dict(tables["all"]),
        headline=headline,
        annotations=[rec],
        images={"distinct": len(found), "missing": len(missing), "missing_examples": missing[:5], **resolver.describe()},
        extra={"cost": cost.record(), "skipped_missing": len(rows) - len(groups)},
        rows=out_rows,
    )
