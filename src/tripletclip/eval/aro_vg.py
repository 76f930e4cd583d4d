"""ARO VG-Relation and VG-Attribution (Yuksekgonul et al., arXiv 2210.01936): true vs swapped caption on a box.

Files (user-supplied; Google Drive only): ``visual_genome_relation.json`` / ``visual_genome_attribution.json``,
a JSON list of ``{"image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption", ...}``
with ``relation_name`` (VG-R) or ``attributes`` (a pair, VG-A). The image is cropped to
(x, y, x + w, y + h) before the model's transform; a row is correct iff s(crop, true) > s(crop, false).
The official code puts the false caption first and takes ``argmax``, so a tie is wrong there too.

Macro rules as published (ARO notebook "Replicate ARO"):
- VG-R: accuracy per relation, then the unweighted mean over relations *excluding* the symmetric ones listed
  in :data:`SYMMETRIC_RELATIONS` (taken from that notebook);
- VG-A: accuracy per attribute pair ``"<a>_<b>"``, unweighted mean over pairs with at least 25 rows.
The micro accuracy over all rows is reported next to them. Row ids are positions in the file's list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, run_choice
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_rows, protocol, unweighted_mean

SYMMETRIC_RELATIONS = frozenset("""
adjusting|attached to|between|bigger than|biting|boarding|brushing|chewing|cleaning|climbing|close to|coming from|
coming out of|contain|crossing|dragging|draped over|drinking|drinking from|driving|driving down|driving on|
eating from|eating in|enclosing|exiting|facing|filled with|floating in|floating on|flying|flying above|flying in|
flying over|flying through|full of|going down|going into|going through|grazing in|growing in|growing on|guiding|
hanging from|hanging in|hanging off|hanging over|higher than|holding onto|hugging|in between|jumping off|
jumping on|jumping over|kept in|larger than|leading|leaning over|leaving|licking|longer than|looking in|
looking into|looking out|looking over|looking through|lying next to|lying on top of|making|mixed with|mounted on|
moving|on the back of|on the edge of|on the front of|on the other side of|opening|painted on|parked at|
parked beside|parked by|parked in|parked in front of|parked near|parked next to|perched on|petting|piled on|
playing|playing in|playing on|playing with|pouring|reaching for|reading|reflected on|riding on|running in|
running on|running through|seen through|sitting behind|sitting beside|sitting by|sitting in front of|
sitting near|sitting next to|sitting under|skiing down|skiing on|sleeping in|sleeping on|smiling at|sniffing|
splashing|sprinkled on|stacked on|standing against|standing around|standing behind|standing beside|
standing in front of|standing near|standing next to|staring at|stuck in|surrounding|swimming in|swinging|
talking to|topped with|touching|traveling down|traveling on|tying|typing on|underneath|wading in|waiting for|
walking across|walking by|walking down|walking next to|walking through|working in|working on|worn on|
wrapped around|wrapped in|by|of|near|next to|with|beside|on the side of|around
""".replace("\n", "").split("|"))
MIN_ATTRIBUTE_ROWS = 25
BOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def load_vg(annotations: str | Path, kind: str) -> tuple[list[ChoiceRow], list[dict]]:
    """Rows grouped by relation name (``relation``) or attribute pair (``attribution``)."""
    path = Path(annotations)
    group_field = "relation_name" if kind == "relation" else "attributes"
    data = load_rows(path, ("image_path", "true_caption", "false_caption", group_field, *BOX),
                     f"ARO visual_genome_{kind}.json", keyed=False)
    rows = []
    for i, r in data:
        if kind == "relation":
            group = str(r["relation_name"])
        else:
            attrs = r["attributes"]
            if not isinstance(attrs, (list, tuple)) or len(attrs) < 2:
                raise AnnotationError(f"{path}: row {i} field 'attributes' must be a pair of attribute words")
            group = f"{attrs[0]}_{attrs[1]}"
        box = tuple(float(r[k]) for k in BOX)
        rows.append(ChoiceRow(group, i, r["image_path"], [r["true_caption"], r["false_caption"]], box=box))
    return rows, [file_record(path, len(data))]


def _evaluate_vg(bench: str, kind: str, encoder: Any, annotations: str | Path, images: Any, skip_missing: bool, blind: bool) -> BenchResult:
    cost = Cost(encoder)
    rows, records = load_vg(annotations, kind)
    groups = sorted({r.subset for r in rows})
    run = run_choice(bench, encoder, rows, groups, images, skip_missing, blind, cost)
    tallies = run.tallies
    if kind == "relation":
        included = [g for g in groups if g not in SYMMETRIC_RELATIONS and tallies[g].rows]
        rule = f"unweighted mean over relations, excluding the {len(SYMMETRIC_RELATIONS)} symmetric ones of the ARO notebook"
    else:
        included = [g for g in groups if tallies[g].rows >= MIN_ATTRIBUTE_ROWS]
        rule = f"unweighted mean over attribute pairs with at least {MIN_ATTRIBUTE_ROWS} rows"
    for g, t in tallies.items():
        t.extra["in_macro"] = g in included
    total = sum(t.rows for t in tallies.values())
    micro = sum(t.correct for t in tallies.values()) / total if total else float("nan")
    aggregates = {"macro": unweighted_mean(tallies, included), "micro": micro, "groups_in_macro": len(included)}
    decision = "correct iff s(crop, true_caption) > s(crop, false_caption); crop = (x, y, x + w, y + h)"
    return run.result(protocol(decision, {"macro": rule, "micro": "accuracy over all rows"}, blind), aggregates,
                      {"macro": aggregates["macro"], "micro": micro}, records)


@register_benchmark("aro_vg_relation", summary="ARO VG-Relation: true vs swapped relation on the box crop, macro over relations")
def evaluate_vg_relation(
    encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False, blind: bool = False
) -> BenchResult:
    """VG-Relation (annotations: visual_genome_relation.json; images: the folder holding its image_path files)."""
    return _evaluate_vg("aro_vg_relation", "relation", encoder, annotations, images, skip_missing, blind)


@register_benchmark("aro_vg_attribution", summary="ARO VG-Attribution: true vs swapped attributes on the box crop")
def evaluate_vg_attribution(
    encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False, blind: bool = False
) -> BenchResult:
    """VG-Attribution (annotations: visual_genome_attribution.json; images: the folder of its image_path files)."""
    return _evaluate_vg("aro_vg_attribution", "attribution", encoder, annotations, images, skip_missing, blind)
