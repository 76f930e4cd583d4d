"""Readers for the benchmarks built of two images and two captions, scored like Winoground (arXiv 2204.03162).

With s(C, I) the cosine similarity, text score: each image prefers its own caption; image score: each caption
prefers its own image; group: both (strict). Each reader maps its official format onto those groups:
- ``eqben`` (Wang et al., arXiv 2303.14465): EqBen's Winoground-style annotation, rows ``image0, image1,
  caption0, caption1`` (a caption list counts by its first entry, as ``src/eqben/eqben_utils.py`` does), broken
  down by ``dataset`` / ``subset`` when present; scores as ``src/eqben/eqben_acc.py`` ``cal_wino_score``.
  Its YouCook2 part stores frames as ``.npy`` arrays, which this reader does not decode.
- ``colorswap`` (Burapacheep et al., arXiv 2402.04492): ``data/test.json`` rows ``id, image_1, image_2,
  caption_1, caption_2, image_source, caption_source`` (or the hub's parquet, images embedded).
- ``vismin`` (Awal et al., arXiv 2407.16772): the hub's ``mair-lab/vismin-bench`` rows ``id, image_0, image_1,
  text_0, text_1, category``; per category as ``vismin-bench/metric.py`` ``compute_contrastive_accuracy``.
- ``bivlc`` (Miranda et al., arXiv 2406.09952): the hub's ``imirandam/BiVLC`` rows ``image, caption,
  negative_image, negative_caption, type, subtype``; I2T is the text score, T2I the image score
  (``main_evaluation_BiVLC.py`` ``evaluate_BiVLC``), per ``type``.
- ``mmvp_vlm`` (Tong et al., arXiv 2401.06209): ``Questions.csv`` (question id, type, statement), consecutive
  rows form a pair, images ``<images>/<type>/<id>.jpg``, text ``"a photo of " + statement``; a statement picks
  the first image iff it scores higher there (a tie picks the second, as the official ``probs > 0.5``); odd ids
  belong to the first image; a pair is correct iff both statements pick theirs (``scripts/evaluate_vlm.py``
  ``benchmark_model``). Reported per visual pattern (the file's type column; the official code assigns
  patterns by row order, 15 pairs each, which is the same on the published file) and the mean over patterns.
None of these files is on this machine: the readers are tested on small files written in the documented formats.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Sequence

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.images import make_resolver
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, per_row, protocol
from tripletclip.eval.tables import image_key, image_sources, load_table
from tripletclip.eval.winoground import WINO_DECISION, Group, score_groups, summarise_groups

Reader = Callable[[dict], tuple[Any, Any, str, str, dict]]


def _first(caption: Any) -> str:
    return caption[0] if isinstance(caption, list) else str(caption)


def run_groups(bench: str, encoder: Any, annotations: Any, images: Any, skip_missing: bool, fields: Sequence[str],
               fmt: str, read: Reader, breakdown: Sequence[str], names: dict[str, str] | None = None) -> BenchResult:
    """Load rows, map each to (image 0, image 1, caption 0, caption 1, tags), score as Winoground groups."""
    cost = Cost(encoder)
    rows, records = load_table(annotations, fields, fmt)
    mapped = [(f"{f.name}:{i}" if len(records) > 1 else i, *read(r)) for f, i, r in rows]
    sources, missing, info = image_sources([c for m in mapped for c in (m[1], m[2])], make_resolver(images),
                                           skip_missing, bench)
    groups = [Group(gid, (sources[image_key(a)], sources[image_key(b)]), (c0, c1), tags)
              for gid, a, b, c0, c1, tags in mapped if image_key(a) in sources and image_key(b) in sources]
    tables, out_rows, _ = summarise_groups(bench, groups, score_groups(encoder, groups), list(breakdown))
    names = names or {"text": "text", "image": "image", "group": "group"}
    headline = {names[m]: tables["all"][m] for m in ("text", "image", "group")}
    for k in breakdown[:1]:
        for v, d in tables.get(f"by_{k}", {}).items():
            headline.update({f"{v}/{names[m]}": d[m] for m in ("text", "image", "group")})
    return BenchResult(
        benchmark=bench,
        protocol=protocol(WINO_DECISION, {"all": "fraction of groups", "by_<field>": "fraction of its groups"}, False,
                          names={v: k for k, v in names.items() if k != v} or None),
        subsets=tables, aggregates=dict(tables["all"]), headline=headline, annotations=records, images=info,
        extra={"cost": cost.record(), "skipped_missing": len(mapped) - len(groups)}, rows=out_rows,
    )


@register_benchmark("eqben", blind=False, summary="EqBen: Winoground-style text / image / group scores per subset")
def evaluate_eqben(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                   blind: bool = False, benchmark: str = "eqben") -> BenchResult:
    """EqBen text, image and group scores, overall and per dataset."""
    def read(r: dict) -> tuple:
        tag = r.get("dataset", r.get("subset"))
        return r["image0"], r["image1"], _first(r["caption0"]), _first(r["caption1"]), ({"dataset": tag} if tag else {})

    return run_groups(benchmark, encoder, annotations, images, skip_missing,
                      ("image0", "image1", "caption0", "caption1"), "EqBen", read, ["dataset"])


@register_benchmark("colorswap", blind=False, summary="ColorSwap: text / image / group scores of colour-swapped pairs")
def evaluate_colorswap(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                       blind: bool = False, benchmark: str = "colorswap") -> BenchResult:
    """ColorSwap text, image and group scores, overall and per image source."""
    def read(r: dict) -> tuple:
        tags = {k: r[k] for k in ("image_source", "caption_source") if r.get(k)}
        return r["image_1"], r["image_2"], r["caption_1"], r["caption_2"], tags

    return run_groups(benchmark, encoder, annotations, images, skip_missing,
                      ("image_1", "image_2", "caption_1", "caption_2"), "ColorSwap", read,
                      ["image_source", "caption_source"])


@register_benchmark("vismin", blind=False, summary="VisMin: text / image / group scores per category")
def evaluate_vismin(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                    blind: bool = False, benchmark: str = "vismin") -> BenchResult:
    """VisMin contrastive text, image and group scores per category (object, attribute, counting, relation)."""
    def read(r: dict) -> tuple:
        return r["image_0"], r["image_1"], r["text_0"], r["text_1"], {"category": r.get("category", "all")}

    return run_groups(benchmark, encoder, annotations, images, skip_missing,
                      ("image_0", "image_1", "text_0", "text_1"), "VisMin", read, ["category"])


@register_benchmark("bivlc", blind=False, summary="BiVLC: I2T / T2I / group scores per type")
def evaluate_bivlc(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                   blind: bool = False, benchmark: str = "bivlc") -> BenchResult:
    """BiVLC I2T (text score), T2I (image score) and group score, overall and per type and subtype."""
    def read(r: dict) -> tuple:
        tags = {k: r[k] for k in ("type", "subtype") if r.get(k)}
        return r["image"], r["negative_image"], r["caption"], r["negative_caption"], tags

    return run_groups(benchmark, encoder, annotations, images, skip_missing,
                      ("image", "negative_image", "caption", "negative_caption"), "BiVLC", read, ["type", "subtype"],
                      names={"text": "i2t", "image": "t2i", "group": "group"})


def load_mmvp(annotations: str | Path) -> tuple[list[tuple[int, int, str, str, str]], dict[str, Any]]:
    """([(qid 1, qid 2, type, statement 1, statement 2)], file record) of MMVP-VLM's Questions.csv."""
    path = Path(annotations)
    if path.is_dir():
        path = path / "Questions.csv"
    if not path.is_file():
        raise AnnotationError(f"{path}: MMVP-VLM Questions.csv not found; check --annotations")
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f)][1:]
    if len(rows) % 2 or any(len(r) < 3 for r in rows):
        raise AnnotationError(f"{path}: expected pairs of rows (question id, type, statement); got {len(rows)} rows")
    pairs = []
    for k in range(0, len(rows), 2):
        (q1, t1, s1), (q2, _t2, s2) = rows[k][:3], rows[k + 1][:3]
        if not (q1.strip().isdigit() and q2.strip().isdigit()):
            raise AnnotationError(f"{path}: rows {k + 2}-{k + 3}: question ids must be integers")
        pairs.append((int(q1), int(q2), t1, s1, s2))
    return pairs, file_record(path, len(rows), pairs=len(pairs))


@register_benchmark("mmvp_vlm", blind=False, summary="MMVP-VLM: a pair is right when both statements pick their image")
def evaluate_mmvp_vlm(encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False,
                      blind: bool = False, benchmark: str = "mmvp_vlm") -> BenchResult:
    """MMVP-VLM pair accuracy per visual pattern and its mean."""
    from tripletclip.eval.images import resolve_images
    from tripletclip.eval.records import Tally

    cost = Cost(encoder)
    pairs, rec = load_mmvp(annotations)
    resolver = make_resolver(images, extensions=("", ".jpg"))
    if resolver is None:
        raise AnnotationError(f"{benchmark}: no image folder given; pass --images 'MMVP_VLM/MLLM_VLM Images'")
    names = {(t, q): f"{t}/{q}.jpg" for q1, q2, t, _, _ in pairs for q in (q1, q2)}
    found, missing = resolve_images(resolver, names, skip_missing, benchmark)
    kept = [p for p in pairs if (p[2], p[0]) in found and (p[2], p[1]) in found]
    groups = [Group(f"{q1}-{q2}", (found[(t, q1)], found[(t, q2)]), ("a photo of " + s1, "a photo of " + s2), {"type": t})
              for q1, q2, t, s1, s2 in kept]
    tallies: dict[str, Tally] = {}
    out_rows = []
    for (q1, q2, t, _, _), s in zip(kept, score_groups(encoder, groups)):
        pred = [0 if s[c][0] > s[c][1] else 1 for c in (0, 1)]  # image 1 iff it scores higher (probs > 0.5)
        gt = [0 if q % 2 == 1 else 1 for q in (q1, q2)]
        ok = pred == gt
        tallies.setdefault(t, Tally()).add(ok)
        out_rows.append(per_row(benchmark, t, f"{q1}-{q2}", s, ok, picked=pred, expected=gt))
    aggregates = {t: x.accuracy for t, x in tallies.items()}
    aggregates["mean"] = sum(aggregates.values()) / len(aggregates) if aggregates else float("nan")
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol("statement -> image 1 iff s(image 1) > s(image 2); odd ids belong to image 1; "
                          "a pair is correct iff both statements pick their image",
                          {"<pattern>": "pair accuracy", "mean": "unweighted mean of the patterns"}, False,
                          text_prefix="a photo of "),
        subsets={t: x.to_dict() for t, x in tallies.items()}, aggregates=aggregates, headline=dict(aggregates),
        annotations=[rec], images={"distinct": len(found), "missing": len(missing), **resolver.describe()},
        extra={"cost": cost.record(), "skipped_missing": len(pairs) - len(kept)}, rows=out_rows,
    )
