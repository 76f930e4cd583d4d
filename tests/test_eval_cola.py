"""COLA multi-object on the real 210-pair file: every pair scored, decisions equal ColaMultiObjAcc by brute force."""
from __future__ import annotations

import json

import pytest

from _eval_standins import BENCH, need, sim, standins, tiny_encoder
from tripletclip.eval import AnnotationError, MissingImagesError, evaluate
from tripletclip.eval.cola import FILE, load_cola

COLA = BENCH / "cola" / FILE


def cola_multi_obj_acc(p) -> bool:
    """The official rule on p[image][caption] (scripts/eval.py): each caption prefers its own image."""
    return p[0][0] > p[1][0] and p[1][1] > p[0][1]


def test_all_pairs_equal_the_official_rule(tmp_path, tiny_weights):
    need(COLA)
    rows, rec = load_cola(COLA)
    assert len(rows) == rec["rows"] == 210 and len(rec["sha256"]) == 64
    img = standins(tmp_path / "vg" / "VG_100K", {n for r in rows for n in (r[1], r[3])})
    enc = tiny_encoder(tiny_weights)
    out: list = []
    res = evaluate(["cola"], enc, {"cola": {"annotations": BENCH / "cola", "images": tmp_path / "vg"}}, per_row=out)["cola"]
    raw = json.loads(COLA.read_text())
    expected = {}
    for i, (u0, c0, u1, c1) in enumerate(raw):
        i0, i1 = img / u0.rsplit("/", 1)[1], img / u1.rsplit("/", 1)[1]
        p = [[sim(enc, i0, c0), sim(enc, i0, c1)], [sim(enc, i1, c0), sim(enc, i1, c1)]]
        expected[i] = cola_multi_obj_acc(p)
    assert {r["id"]: r["correct"] for r in out} == expected and len(out) == 210
    assert res["headline"]["accuracy"] == pytest.approx(sum(expected.values()) / 210)
    assert res["subsets"]["multi_object"]["rows"] == 210 and res["skipped_missing"] == 0


def test_missing_images_and_bad_rows(tmp_path):
    need(COLA)
    from test_eval_rules import FakeEncoder

    standins(tmp_path / "img", ["1.jpg"])
    with pytest.raises(MissingImagesError, match="images not found"):
        evaluate(["cola"], FakeEncoder({}, {}), {"cola": {"annotations": COLA, "images": tmp_path / "img"}})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([["u/1.jpg", "a", "u/2.jpg"]]))
    with pytest.raises(AnnotationError, match="row 0 is not"):
        load_cola(bad)
