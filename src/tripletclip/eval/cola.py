"""COLA multi-object matching (Ray et al., arXiv 2305.03689): two images, two captions of attribute-object binds.

Protocol as in the official ``scripts/eval.py`` ``ColaMultiObjAcc``: with s(C, I) the cosine similarity, a pair
is correct iff each caption picks its own image, s(C0, I0) > s(C0, I1) and s(C1, I1) > s(C1, I0) (strict;
Winoground's image score). Reported: that accuracy over the 210 pairs (``accuracy``, the paper's number), and
for reference the text score (each image picks its caption) and the group score (both).

File: ``COLA_multiobjects_matching_benchmark.json``, a JSON list of ``[image_1_url, caption_1, image_2_url,
caption_2]``; the URLs end in ``<Visual Genome id>.jpg``, looked up by that file name under ``--images`` (the
Visual Genome / GQA image folder, ``VG_100K`` and ``VG_100K_2`` as sub-folders work). The single-object
setting (per-label mAP) needs files that are not published on GitHub and is not implemented.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tripletclip.errors import InputError
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.images import make_resolver, resolve_images
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_json, per_row, protocol
from tripletclip.eval.winoground import Group, WinoTally, score_groups, wino_decide

FILE = "COLA_multiobjects_matching_benchmark.json"
DECISION = "correct iff s(C0,I0) > s(C0,I1) and s(C1,I1) > s(C1,I0) (each caption picks its own image)"


def image_name(url: str) -> str:
    """The file name at the end of an image URL or path (``.../vg_gqa_images/2390970.jpg`` -> ``2390970.jpg``)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def load_cola(annotations: str | Path) -> tuple[list[tuple[int, str, str, str, str]], dict[str, Any]]:
    """([(row, image 0 name, caption 0, image 1 name, caption 1)], file record) of the multi-object file."""
    path = Path(annotations)
    if path.is_dir():
        path = path / FILE
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of [image_1_url, caption_1, image_2_url, caption_2]")
    rows = []
    for i, r in enumerate(data):
        if not (isinstance(r, list) and len(r) == 4 and all(isinstance(v, str) for v in r)):
            raise AnnotationError(f"{path}: row {i} is not [image_1_url, caption_1, image_2_url, caption_2]")
        rows.append((i, image_name(r[0]), r[1], image_name(r[2]), r[3]))
    return rows, file_record(path, len(data))


@register_benchmark("cola", blind=False, summary="COLA multi-object: a pair is right when each caption picks its own image")
def evaluate_cola(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "cola",
) -> BenchResult:
    """COLA multi-object accuracy (text-to-image), with text and group scores for reference."""
    cost = Cost(encoder)
    rows, rec = load_cola(annotations)
    resolver = make_resolver(images)
    if resolver is None:
        raise InputError(f"{benchmark}: no image folder given; pass --images DIR (the Visual Genome images)")
    found, missing = resolve_images(resolver, {n: n for r in rows for n in (r[1], r[3])}, skip_missing, benchmark)
    groups = [Group(r[0], (found[r[1]], found[r[3]]), (r[2], r[4])) for r in rows if r[1] in found and r[3] in found]
    scores = score_groups(encoder, groups)
    tally, out_rows = WinoTally(), []
    for g, s in zip(groups, scores):
        t, i, gr = wino_decide(s)
        tally.add(t, i, gr)
        out_rows.append(per_row(benchmark, "multi_object", g.id, {"c0_i0": s[0][0], "c0_i1": s[0][1], "c1_i0": s[1][0],
                                                                  "c1_i1": s[1][1]}, i, text_correct=t, group_correct=gr))
    table = tally.to_dict()
    aggregates = {"accuracy": table["image"], "text": table["text"], "group": table["group"]}
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol(DECISION, {"accuracy": "fraction of pairs (the paper's multi-object accuracy)",
                                     "text / group": "Winoground text and group scores, for reference"}, False),
        subsets={"multi_object": {"accuracy": table["image"], "correct": tally.image, "rows": tally.n}},
        aggregates=aggregates,
        headline=dict(aggregates),
        annotations=[rec],
        images={"distinct": len(found), "missing": len(missing), "missing_examples": missing[:5], **resolver.describe()},
        extra={"cost": cost.record(), "skipped_missing": len(rows) - len(groups)},
        rows=out_rows,
    )
