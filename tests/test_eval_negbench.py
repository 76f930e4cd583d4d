"""NegBench on the real CSVs: row counts as in the shared README; the COCO multiple-choice rows whose images are
among the 76 real COCO images run on them, decisions equal the official argmax; negated retrieval equals a
brute-force Recall@k over the same similarities."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from _eval_standins import BENCH, need, sim, standins, tiny_encoder
from tripletclip.eval import AnnotationError, MissingImagesError, evaluate
from tripletclip.eval.negbench import load_mcq, load_negbench_retrieval

NB = BENCH / "negbench" / "images"
COCO_MCQ = NB / "COCO_val_mcq_llama3.1_rephrased.csv"
VOC_MCQ = NB / "VOC2007_mcq_llama3.1_rephrased.csv"
NEGATED = NB / "COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv"
REAL = BENCH / "real_images_smoke" / "images"


def test_row_counts_of_every_file():
    need(COCO_MCQ, VOC_MCQ, NEGATED, NB / "COCO_val_retrieval.csv")
    rows, records, names = load_mcq(NB)
    assert {r["dataset"]: r["rows"] for r in records} == {"COCO_val": 5914, "VOC2007": 5031}
    assert Counter(r.subset for r in rows) == {"COCO_val/positive": 2032, "COCO_val/hybrid": 2012, "COCO_val/negative": 1870,
                                               "VOC2007/positive": 682, "VOC2007/hybrid": 2228, "VOC2007/negative": 2121}
    for f in (NEGATED, NB / "COCO_val_retrieval.csv"):
        items, rec = load_negbench_retrieval(f)
        assert rec["rows"] == len(items) == 5000 and rec["captions"] == 25014


def _official_mcq(enc, image: Path, row: dict) -> bool:
    """mcq.py evaluate_model on one row: argmax over the 4 captions == correct_answer."""
    s = [sim(enc, image, row[f"caption_{k}"]) for k in range(4)]
    return max(range(4), key=lambda k: s[k]) == int(row["correct_answer"])


def test_coco_mcq_rows_on_the_real_coco_images(tiny_weights):
    need(COCO_MCQ, REAL / "val2017")
    enc = tiny_encoder(tiny_weights)
    with pytest.raises(MissingImagesError, match="skip-missing"):
        evaluate(["negbench_mcq"], enc, {"negbench_mcq": {"annotations": COCO_MCQ, "images": REAL}})
    out: list = []
    res = evaluate(["negbench_mcq"], enc, {"negbench_mcq": {"annotations": COCO_MCQ, "images": REAL,
                                                            "skip_missing": True}}, per_row=out)["negbench_mcq"]
    real = {p.name: p for p in (REAL / "val2017").glob("*.jpg")}
    with COCO_MCQ.open(newline="") as f:
        data = list(csv.DictReader(f))
    expected = {i: _official_mcq(enc, real[Path(r["image_path"]).name], r) for i, r in enumerate(data)
                if Path(r["image_path"]).name in real}
    assert len(expected) == 79 and res["skipped_missing"] == 5914 - 79
    assert {r["id"]: r["correct"] for r in out} == expected
    for t in ("positive", "negative", "hybrid"):
        ids = [i for i in expected if data[i]["correct_answer_template"] == t]
        assert res["subsets"][f"COCO_val/{t}"]["rows"] == len(ids)
        assert res["headline"][f"COCO_val/{t}"] == pytest.approx(sum(expected[i] for i in ids) / len(ids))
    assert res["headline"]["COCO_val"] == pytest.approx(sum(expected.values()) / 79) == res["headline"]["mean"]
    assert all(r["picked"] in range(4) and len(r["scores"]) == 4 for r in out)


def test_voc_mcq_on_standins(tmp_path, tiny_weights):
    need(VOC_MCQ)
    with VOC_MCQ.open(newline="") as f:
        data = list(csv.DictReader(f))[:40]
    small = tmp_path / "VOC2007_mcq_subset.csv"
    with small.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)
    img = standins(tmp_path / "JPEGImages", {Path(r["image_path"]).name for r in data})
    enc = tiny_encoder(tiny_weights)
    out: list = []
    evaluate(["negbench_mcq"], enc, {"negbench_mcq": {"annotations": small, "images": img}}, per_row=out)
    assert {r["id"]: r["correct"] for r in out} == {
        i: _official_mcq(enc, img / Path(r["image_path"]).name, r) for i, r in enumerate(data)}


def test_negated_retrieval_equals_brute_force_recall(tiny_weights):
    need(NEGATED, REAL / "val2017")
    enc = tiny_encoder(tiny_weights)
    out: list = []
    res = evaluate(["negbench_retrieval"], enc, {"negbench_retrieval": {
        "annotations": NEGATED, "images": REAL, "skip_missing": True}}, per_row=out)["negbench_retrieval"]
    items, _ = load_negbench_retrieval(NEGATED)
    real = {p.name: p for p in (REAL / "val2017").glob("*.jpg")}
    kept = [it for it in items if Path(it[1][0]).name in real]
    assert len(kept) == res["images"]["distinct"] > 20
    caps = [(i, c) for i, it in enumerate(kept) for _, c in it[2]]
    # every similarity from one image and one caption encoded on their own, then a plain loop per query
    imgs = [enc.encode_images([real[Path(it[1][0]).name]])[0] for it in kept]
    sims = [[float(enc.encode_texts([c])[0] @ v) for v in imgs] for _, c in caps]
    for k in (1, 5):  # text-to-image: the caption's image among the k most similar images (no ties here)
        hits = 0
        for (i, _), s in zip(caps, sims):
            assert len(set(s)) == len(s)
            hits += sum(x > s[i] for x in s) < k
        assert res["headline"][f"t2i_r{k}"] == pytest.approx(hits / len(caps))
    assert sum(r["subset"] == "t2i" for r in out) == len(caps)


def test_bad_files(tmp_path):
    bad = tmp_path / "X_mcq_y.csv"
    bad.write_text("image_path,correct_answer,caption_0,caption_1,caption_2,caption_3,correct_answer_template\n"
                   "a.jpg,4,a,b,c,d,positive\n")
    with pytest.raises(AnnotationError, match="row 0: correct_answer must be 0-3"):
        load_mcq(bad)
    (tmp_path / "r.csv").write_text("filepath,image_id\n")
    with pytest.raises(AnnotationError, match="column.*captions missing"):
        load_negbench_retrieval(tmp_path / "r.csv")
