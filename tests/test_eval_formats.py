"""Readers of What'sUp, SVO-Probes, SPEC, BLA, EqBen, ColorSwap, VisMin, BiVLC and MMVP-VLM on small files written
in each benchmark's documented format (their real files are not on this machine), with known answers."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from test_eval_rules import FakeEncoder
from tripletclip.eval import AnnotationError, evaluate

A, B = [1.0, 0.0], [0.0, 1.0]  # two images; a caption "of A" is near A
OF_A, OF_B = [1.0, 0.2], [0.2, 1.0]


def img(path: Path, color=(200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def png_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _whatsup(tmp):
    d = tmp / "whatsup"
    d.mkdir()
    (d / "controlled_images_dataset.json").write_text(json.dumps([
        {"image_path": "data/controlled_images/mug_left_of_plate.jpeg", "caption_options": ["a", "b1", "b2", "b3"]},
        {"image_path": "data/controlled_images/cup_on_box.jpeg", "caption_options": ["b1", "a", "b2", "b3"]}]))
    (d / "coco_qa_one_obj.json").write_text(json.dumps([[139, "a", "b1"]]))
    for n in ("mug_left_of_plate.jpeg", "cup_on_box.jpeg", "000000000139.jpg"):
        img(tmp / "wimg" / n)
    enc = FakeEncoder({"a": OF_A, "b1": OF_B, "b2": OF_B, "b3": OF_B}, {}, default_image=lambda k: A)
    # controlled: row 0 true caption "a" wins, row 1 true caption "b1" loses -> 0.5; coco: 1.0; mean 0.75
    return {"annotations": d, "images": tmp / "wimg"}, enc, {"controlled_images_dataset": 0.5, "coco_qa_one_obj": 1.0,
                                                            "mean": 0.75}


def _svo(tmp):
    f = tmp / "svo_probes.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sentence", "pos_triplet", "neg_triplet", "subj_neg", "verb_neg", "obj_neg", "pos_image_id",
                    "neg_image_id", "pos_url", "neg_url"])
        w.writerow(["a", "x", "y", "True", "False", "False", "11", "12", "u", "v"])
        w.writerow(["a", "x", "y", "False", "True", "False", "12", "11", "u", "v"])
        w.writerow(["b", "x", "y", "False", "False", "True", "12", "11", "u", "v"])
    img(tmp / "svo" / "11.jpg"), img(tmp / "svo" / "12.jpg")
    enc = FakeEncoder({"a": OF_A, "b": OF_B}, {"11.jpg": A, "12.jpg": B})
    return {"annotations": f, "images": tmp / "svo"}, enc, {"subj": 1.0, "verb": 0.0, "obj": 1.0, "accuracy": 2 / 3}


def _spec(tmp):
    sub = tmp / "spec" / "absolute_size"
    sub.mkdir(parents=True)
    (sub / "image2text.json").write_text(json.dumps([{"query": "images/p.jpg", "keys": ["b1", "a"], "label": 1},
                                                     {"query": "images/q.jpg", "keys": ["a", "b1"], "label": 1}]))
    (sub / "text2image.json").write_text(json.dumps([{"query": "a", "keys": ["images/q.jpg", "images/p.jpg"], "label": 1}]))
    img(sub / "images" / "p.jpg"), img(sub / "images" / "q.jpg")
    enc = FakeEncoder({"a": OF_A, "b1": OF_B}, {"p.jpg": A, "q.jpg": A})
    return ({"annotations": tmp / "spec"}, enc,
            {"absolute_size/i2t": 0.5, "absolute_size/t2i": 0.0, "i2t": 0.5, "t2i": 0.0, "mean": 0.25})


def _bla(tmp):
    d = tmp / "bla"
    d.mkdir()
    (d / "active_passive_captions.json").write_text(json.dumps([
        {"image_id": "7", "caption_group": [{"True1": "t1", "True2": "t2", "False1": "f1", "False2": "f2"}]},
        {"image_id": "8", "caption_group": [{"True1": "t1", "True2": "f2", "False1": "f1", "False2": "t2"}]}]))
    img(tmp / "blaimg" / "7.jpg"), img(tmp / "blaimg" / "8.jpg")
    enc = FakeEncoder({"t1": [1.0, 0.0], "t2": [0.9, 0.1], "f1": [0.5, 0.5], "f2": [0.0, 1.0]}, {}, default_image=lambda k: A)
    # row 7: ranks t1,t2 top -> 1.0 (strict right); row 8: True2 = "f2" ranked last, False2 = "t2" ranked 2nd -> 0.5
    return {"annotations": d, "images": tmp / "blaimg"}, enc, {"active_passive_captions": 0.75,
                                                               "active_passive_captions/strict": 0.5, "mean": 0.75}


def _eqben(tmp):
    f = tmp / "eqben.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"image0": "kubric/a.png", "image1": "kubric/b.png", "caption0": ["a", "x"], "caption1": ["b1"], "dataset": "kubric"},
        {"image0": "sd/b.png", "image1": "sd/a.png", "caption0": "a", "caption1": "b1", "dataset": "sd"}]))
    for p in ("kubric/a.png", "kubric/b.png", "sd/a.png", "sd/b.png"):
        img(tmp / "eq" / p)
    enc = FakeEncoder({"a": OF_A, "b1": OF_B}, {"a.png": A, "b.png": B})
    return {"annotations": f, "images": tmp / "eq"}, enc, {"group": 0.5, "kubric/group": 1.0, "sd/group": 0.0}


def _colorswap(tmp):
    f = tmp / "test.json"
    f.write_text(json.dumps([{"id": 0, "caption_1": "a", "caption_2": "b1", "image_1": "images/img_0_1.png",
                              "image_2": "images/img_0_2.png", "image_source": "midjourney", "caption_source": "human"}]))
    img(tmp / "cs" / "images" / "img_0_1.png"), img(tmp / "cs" / "images" / "img_0_2.png")
    enc = FakeEncoder({"a": OF_A, "b1": OF_B}, {"img_0_1.png": A, "img_0_2.png": B})
    return {"annotations": f, "images": tmp / "cs"}, enc, {"text": 1.0, "image": 1.0, "group": 1.0, "midjourney/group": 1.0}


def _vismin(tmp):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b = png_bytes((250, 0, 0)), png_bytes((0, 0, 250))
    struct = lambda x: {"bytes": x, "path": None}  # noqa: E731  (the hub's Image feature)
    table = pa.Table.from_pylist([
        {"id": "0", "image_0": struct(a), "image_1": struct(b), "text_0": "a", "text_1": "b1", "category": "object"},
        {"id": "1", "image_0": struct(b), "image_1": struct(a), "text_0": "a", "text_1": "b1", "category": "counting"}])
    d = tmp / "vismin" / "data"
    d.mkdir(parents=True)
    pq.write_table(table, d / "test-00000-of-00001.parquet")
    enc = FakeEncoder({"a": OF_A, "b1": OF_B}, {a: A, b: B})
    return {"annotations": tmp / "vismin"}, enc, {"group": 0.5, "object/group": 1.0, "counting/group": 0.0}


def _bivlc(tmp):
    f = tmp / "bivlc.json"
    f.write_text(json.dumps([{"image": "p.jpg", "caption": "a", "negative_image": "n.jpg", "negative_caption": "b1",
                              "type": "swap", "subtype": "att"},
                             {"image": "p.jpg", "caption": "a3", "negative_image": "n.jpg", "negative_caption": "a2",
                              "type": "add", "subtype": "obj"}]))
    img(tmp / "bi" / "p.jpg"), img(tmp / "bi" / "n.jpg")
    enc = FakeEncoder({"a": OF_A, "b1": OF_B, "a3": [1.0, 0.5], "a2": [0.9, 0.9]}, {"p.jpg": A, "n.jpg": B})
    # row 2: each image prefers its caption (I2T holds) but "a2" ties on both images (T2I fails)
    return {"annotations": f, "images": tmp / "bi"}, enc, {"i2t": 1.0, "t2i": 0.5, "group": 0.5, "swap/group": 1.0,
                                                           "add/group": 0.0}


def _mmvp(tmp):
    d = tmp / "MMVP_VLM"
    d.mkdir()
    (d / "Questions.csv").write_text("Question ID,Type,Statement\n1,Color,a\n2,Color,b1\n3,Texts,a\n4,Texts,a\n")
    for t, q in (("Color", 1), ("Color", 2), ("Texts", 3), ("Texts", 4)):
        img(tmp / "mmvp_img" / t / f"{q}.jpg")
    enc = FakeEncoder({"a photo of a": OF_A, "a photo of b1": OF_B}, {"1.jpg": A, "2.jpg": B, "3.jpg": A, "4.jpg": B})
    return {"annotations": d, "images": tmp / "mmvp_img"}, enc, {"Color": 1.0, "Texts": 0.0, "mean": 0.5}


FORMAT_CASES = {"whatsup": _whatsup, "svo_probes": _svo, "spec": _spec, "bla": _bla, "eqben": _eqben,
                "colorswap": _colorswap, "vismin": _vismin, "bivlc": _bivlc, "mmvp_vlm": _mmvp}


@pytest.mark.parametrize("name", sorted(FORMAT_CASES))
def test_reader_known_answers(name, tmp_path):
    args, enc, expected = FORMAT_CASES[name](tmp_path)
    rows: list = []
    rec = evaluate([name], enc, {name: args}, per_row=rows)[name]
    assert {k: rec["headline"][k] for k in expected} == pytest.approx(expected)
    assert rows and rec["annotations"] and all(len(a["sha256"]) == 64 for a in rec["annotations"])


def test_bad_rows_name_the_file_and_row(tmp_path):
    enc = FakeEncoder({}, {})
    bad = tmp_path / "coco_qa_two_obj.json"
    bad.write_text(json.dumps([[1, "only one caption"]]))
    with pytest.raises(AnnotationError, match="row 0 is neither"):
        evaluate(["whatsup"], enc, {"whatsup": {"annotations": bad, "images": tmp_path}})
    (tmp_path / "v.json").write_text(json.dumps([{"image_0": "a", "text_0": "x"}]))
    with pytest.raises(AnnotationError, match=r"row 0 has no field\(s\) image_1, text_1"):
        evaluate(["vismin"], enc, {"vismin": {"annotations": tmp_path / "v.json"}})
    (tmp_path / "Questions.csv").write_text("Question ID,Type,Statement\n1,Color,a\n")
    with pytest.raises(AnnotationError, match="pairs of rows"):
        evaluate(["mmvp_vlm"], enc, {"mmvp_vlm": {"annotations": tmp_path / "Questions.csv", "images": tmp_path}})
