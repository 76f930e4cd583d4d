"""Known-answer tests of every benchmark's decision rule and aggregation, with hand-made embeddings.

A fake encoder maps each caption and image to a chosen vector, so which rows are correct, which are ties and
what every mean must be is known in advance.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tripletclip.eval import EVALUATORS, AnnotationError, ImageCrop, MissingImagesError, evaluate, headline_scalars
from tripletclip.eval.api import build_args
from tripletclip.eval.choice import decide
from tripletclip.eval.winoground import wino_decide


class FakeEncoder:
    """Embeddings from lookup tables; records every image source it is asked for."""

    def __init__(self, texts: dict, images: dict, default_text=None, default_image=None):
        self.texts, self.images, self.default_text, self.default_image = texts, images, default_text, default_image
        self.image_requests: list = []
        self.stats = {"images_encoded": 0, "texts_encoded": 0}

    def encode_texts(self, texts):
        return torch.tensor([self.texts.get(t) or self.default_text(t) for t in texts], dtype=torch.float32)

    def _key(self, s):
        if isinstance(s, ImageCrop):
            return (Path(s.path).name, s.box)
        return s if isinstance(s, bytes) else Path(s).name

    def encode_images(self, sources):
        self.image_requests.extend(sources)
        return torch.tensor([self.images[self._key(s)] if self.default_image is None else self.default_image(self._key(s))
                             for s in sources], dtype=torch.float32)

    def describe(self):
        return {"model": {"name": "fake"}}


def touch_images(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 8), (len(n) * 20 % 255, 10, 10)).save(folder / n)
    return folder


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ---------------------------------------------------------------- decision rules
def test_decide_strict_rule():
    assert decide([0.5, 0.4], 1) == (True, False)
    assert decide([0.5, 0.5], 1) == (False, True)  # a tie is wrong
    assert decide([0.6, 0.7, 0.5], 2) == (True, False)  # ITT: both positives above the negative
    assert decide([0.6, 0.4, 0.5], 2) == (False, False)
    assert decide([0.1], 1) == (True, False)  # no negative left (identical scrambles removed)
    assert wino_decide([[1, 0], [0, 1]]) == (True, True, True)
    assert wino_decide([[1, 0.9], [0, 1]]) == (True, True, True)
    assert wino_decide([[1, 1], [0, 2]]) == (True, False, False)  # C0 ties between images: image score fails
    assert wino_decide([[0.5, 0.2], [0.6, 0.9]]) == (False, True, False)


SC_ROWS = {  # subset -> [(id, pos score, neg score)]; image vector is e0, text vector (score, rest)
    "replace_obj": [("0", 0.9, 0.1), ("2", 0.5, 0.5)],  # ids skip numbers; second row is a tie
    "replace_att": [("0", 0.8, 0.2)],
    "replace_rel": [("0", 0.1, 0.7)],
    "swap_obj": [("0", 0.6, 0.3)],
    "swap_att": [("0", 0.2, 0.4)],
    "add_obj": [("0", 0.9, 0.1), ("1", 0.7, 0.2), ("5", 0.1, 0.8)],
    "add_att": [("0", 0.5, 0.4)],
}


def sugarcrepe_fixture(tmp_path: Path):
    texts, ann = {}, tmp_path / "sc"
    for subset, rows in SC_ROWS.items():
        data = {}
        for rid, p, n in rows:
            pos, neg = f"{subset} {rid} pos", f"{subset} {rid} neg"
            texts[pos], texts[neg] = [p, 0.0], [n, 0.0]
            data[rid] = {"filename": "a.jpg", "caption": pos, "negative_caption": neg, "extra": 1}
        write_json(ann / f"{subset}.json", data)
    touch_images(tmp_path / "img", ["a.jpg"])
    return ann, tmp_path / "img", FakeEncoder(texts, {"a.jpg": [1.0, 0.0]})


def test_sugarcrepe_rule_and_aggregation(tmp_path):
    ann, img, enc = sugarcrepe_fixture(tmp_path)
    rows: list = []
    res = evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "images": img}}, per_row=rows)["sugarcrepe"]
    sub = res["subsets"]
    assert sub["replace_obj"] == {"accuracy": 0.5, "correct": 1, "rows": 2, "ties": 1, "skipped_missing": 0}
    assert [sub[s]["accuracy"] for s in SC_ROWS] == [0.5, 1.0, 0.0, 1.0, 0.0, 2 / 3, 1.0]
    agg = res["aggregates"]
    assert agg["mean"] == pytest.approx((0.5 + 1 + 0 + 1 + 0 + 2 / 3 + 1) / 7)  # unweighted over subsets
    assert agg["replace"] == pytest.approx(2 / 4)  # sample-weighted: (1 + 1 + 0) / (2 + 1 + 1)
    assert agg["swap"] == pytest.approx(1 / 2)
    assert agg["add"] == pytest.approx(3 / 4)
    assert res["protocol"]["tie_rule"].startswith("strict")
    assert all(len(a["sha256"]) == 64 for a in res["annotations"]) and sum(a["rows"] for a in res["annotations"]) == 10
    assert len(rows) == 10 and {r["id"] for r in rows if r["subset"] == "add_obj"} == {"0", "1", "5"}
    tie = next(r for r in rows if r["subset"] == "replace_obj" and r["id"] == "2")
    assert tie["scores"] == [0.5, 0.5] and tie["correct"] is False
    assert enc.image_requests == [img / "a.jpg"]  # one image, requested once for all 10 rows
    assert json.loads(json.dumps(res)) == res  # JSON-serialisable as returned
    scal = headline_scalars({"sugarcrepe": res})
    assert scal["sugarcrepe/mean"] == agg["mean"] and scal["sugarcrepe/swap_obj"] == 1.0


def test_sugarcrepe_missing_images_error_and_skip(tmp_path):
    ann, img, enc = sugarcrepe_fixture(tmp_path)
    data = json.loads((ann / "swap_att.json").read_text())
    data["9"] = {"filename": "gone.jpg", "caption": "x", "negative_caption": "y"}
    data["10"] = {"filename": "gone2.jpg", "caption": "x", "negative_caption": "y"}
    write_json(ann / "swap_att.json", data)
    args = {"sugarcrepe": {"annotations": ann, "images": img}}
    with pytest.raises(MissingImagesError, match=r"2 of 3 images not found.*gone\.jpg, gone2\.jpg.*--skip-missing"):
        evaluate(["sugarcrepe"], enc, args)
    res = evaluate(["sugarcrepe"], enc, args, skip_missing=True)["sugarcrepe"]
    assert res["skipped_missing"] == 2 and res["subsets"]["swap_att"]["skipped_missing"] == 2
    assert res["subsets"]["swap_att"]["rows"] == 1 and res["images"]["missing"] == 2


def test_sugarcrepe_bad_input_errors(tmp_path):
    ann, img, enc = sugarcrepe_fixture(tmp_path)
    (ann / "add_att.json").unlink()
    with pytest.raises(AnnotationError, match=r"add_att\.json"):
        evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "images": img}})
    res = evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "images": img, "subsets": "swap_obj,swap_att"}})
    assert list(res["sugarcrepe"]["subsets"]) == ["swap_obj", "swap_att"] and res["sugarcrepe"]["aggregates"]["mean"] == 0.5
    write_json(ann / "swap_obj.json", {"0": {"filename": "a.jpg", "caption": "x"}})
    with pytest.raises(AnnotationError, match=r"swap_obj\.json: row 0 has no field 'negative_caption'"):
        evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "images": img, "subsets": ["swap_obj"]}})
    with pytest.raises(ValueError, match="unknown option"):
        evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "imgs": img}})


def test_blind_baseline(tmp_path):
    # the blind query is the renormalised mean of all distinct captions: here (1, 1)/sqrt(2) direction
    texts = {"p1": [1.0, 1.0], "n1": [1.0, -1.0], "p2": [-1.0, 1.0], "n2": [0.9, 0.9]}
    write_json(tmp_path / "sc" / "swap_obj.json", {
        "0": {"filename": "none.jpg", "caption": "p1", "negative_caption": "n1"},
        "1": {"filename": "none.jpg", "caption": "p2", "negative_caption": "n2"},
    })
    enc = FakeEncoder(texts, {})
    res = evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": tmp_path / "sc", "subsets": "swap_obj"}}, blind=True)
    # mean = (0.9, 1.9)/4 -> scores: p1 2.8 > n1 -1.0 (right); p2 1.0 < n2 2.52 (wrong)
    assert res["sugarcrepe"]["subsets"]["swap_obj"]["correct"] == 1
    assert res["sugarcrepe"]["protocol"]["blind"] is True and enc.image_requests == []  # no image needed
    with pytest.raises(ValueError, match="no blind"):
        evaluate(["retrieval"], enc, {"retrieval": {"annotations": tmp_path}}, blind=True)


def test_sugarcrepe_pp_itt_and_tot(tmp_path):
    t = {"P1a": [1.0, 0.0, 0.0], "P2a": [0.9, 0.1, 0.0], "Na": [0.0, 1.0, 0.0],   # ITT right, TOT right
         "P1b": [1.0, 0.0, 0.0], "P2b": [0.0, 0.0, 1.0], "Nb": [0.5, 0.5, 0.0]}    # ITT wrong (P2 < N), TOT wrong
    rows = [{"id": 3, "filename": "a.jpg", "caption": "P1a", "caption2": "P2a", "negative_caption": "Na"},
            {"id": 7, "filename": "a.jpg", "caption": "P1b", "caption2": "P2b", "negative_caption": "Nb"}]
    write_json(tmp_path / "pp" / "swap_obj.json", rows)
    touch_images(tmp_path / "img", ["a.jpg"])
    out: list = []
    enc = FakeEncoder(t, {"a.jpg": [1.0, 0.0, 0.0]})
    res = evaluate(["sugarcrepe_pp"], enc, {"sugarcrepe_pp": {"annotations": tmp_path / "pp", "images": tmp_path / "img", "subsets": "swap_obj"}}, per_row=out)
    r = res["sugarcrepe_pp"]
    assert r["subsets"]["ITT"]["swap_obj"]["correct"] == 1 and r["subsets"]["TOT"]["swap_obj"]["correct"] == 1
    assert r["aggregates"]["itt_mean"] == 0.5 and r["aggregates"]["tot_swap"] == 0.5
    tot = {x["id"]: x for x in out if x["subset"] == "TOT/swap_obj"}
    assert tot[3]["scores"][0] == pytest.approx(0.9) and tot[7]["correct"] is False


def test_valse_valid_rows_and_phenomena(tmp_path):
    def row(cap, foil, votes):
        return {"image_file": "v.jpg", "caption": cap, "foil": foil, "mturk": {"caption": votes, "foil": 0, "other": 0}, "dataset": "x"}

    write_json(tmp_path / "valse" / "counting-hard.json", {"a": row("good", "bad", 3), "b": row("good", "bad", 1), "c": row("same", "same", 2)})
    write_json(tmp_path / "valse" / "counting-small-quant.json", {"a": row("good", "bad", 2), "b": row("bad", "good", 2)})
    write_json(tmp_path / "valse" / "existence.json", {"a": row("good", "bad", 2)})
    touch_images(tmp_path / "img", ["v.jpg"])
    enc = FakeEncoder({"good": [1.0, 0.0], "bad": [0.0, 1.0], "same": [0.5, 0.5]}, {"v.jpg": [1.0, 0.0]})
    r = evaluate(["valse"], enc, {"valse": {"annotations": tmp_path / "valse", "images": tmp_path / "img"}})["valse"]
    hard = r["subsets"]["counting-hard"]
    assert hard["rows"] == 2 and hard["correct"] == 1 and hard["caption_equals_foil"] == 1 and hard["ties"] == 1
    assert r["subsets"]["counting-small-quant"]["accuracy"] == 0.5
    assert r["aggregates"]["counting"] == pytest.approx(2 / 4)  # weighted over the counting files
    assert r["aggregates"]["mean"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert {a["path"].rsplit("/", 1)[-1]: a["valid_rows"] for a in r["annotations"]}["counting-hard.json"] == 2


def test_aro_order_rule(tmp_path):
    ann = write_json(tmp_path / "k.json", [
        {"image": "val2014/COCO_val2014_000000000001.jpg", "caption": ["A big red dog chases a small cat on the grass.", "dog"]},
    ])
    touch_images(tmp_path / "img" / "val2017", ["000000000001.jpg"])  # found through the COCO 2017 id fallback
    original = "a big red dog chases a small cat on the grass"
    enc = FakeEncoder({original: [1.0, 0.0]}, {"000000000001.jpg": [1.0, 0.0]}, default_text=lambda t: [0.5, 0.5])
    out: list = []
    r = evaluate(["aro_coco_order"], enc, {"aro_coco_order": {"annotations": ann, "images": tmp_path / "img"}}, per_row=out)["aro_coco_order"]
    # caption 1: the original beats all four scrambles; caption 2 ("dog"): every scramble is the original itself,
    # so it has no negative and counts as correct, as ARO's argmax would
    assert r["aggregates"]["precision@1"] == 1.0 and len(out) == 2
    assert len(out[0]["scores"]) == 5 and len(out[1]["scores"]) == 1
    ident = r["protocol"]["scrambles"]["scrambles_identical_to_original"]
    assert all(v >= 1 for v in ident.values())
    assert r["images"]["fallbacks"]["coco2017_id"] == 1
    # all texts equal scores: ties everywhere -> wrong under the strict rule
    enc2 = FakeEncoder({}, {"000000000001.jpg": [1.0, 0.0]}, default_text=lambda t: [0.5, 0.5])
    r2 = evaluate(["aro_coco_order"], enc2, {"aro_coco_order": {"annotations": ann, "images": tmp_path / "img"}})["aro_coco_order"]
    assert r2["subsets"]["coco_order"]["correct"] == 1 and r2["subsets"]["coco_order"]["ties"] == 1


def test_aro_vg_macro_rules(tmp_path):
    rows = []
    # "on" (kept): 2 of 3 right; "next to" (symmetric, excluded): 0 of 2; "behind" (kept): 1 of 1
    for rel, outcomes in (("on", [1, 1, 0]), ("next to", [0, 0]), ("behind", [1])):
        for k, ok in enumerate(outcomes):
            rows.append({"image_path": "vg.jpg", "bbox_x": k, "bbox_y": 1, "bbox_w": 4, "bbox_h": 5, "relation_name": rel,
                         "true_caption": "T" if ok else "F", "false_caption": "F" if ok else "T"})
    ann = write_json(tmp_path / "visual_genome_relation.json", rows)
    touch_images(tmp_path / "img", ["vg.jpg"])
    boxes = {("vg.jpg", (float(k), 1.0, 4.0, 5.0)): [1.0, 0.0] for k in range(3)}
    enc = FakeEncoder({"T": [1.0, 0.0], "F": [0.0, 1.0]}, boxes)
    r = evaluate(["aro_vg_relation"], enc, {"aro_vg_relation": {"annotations": ann, "images": tmp_path / "img"}})["aro_vg_relation"]
    assert r["aggregates"]["macro"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert r["aggregates"]["micro"] == pytest.approx(3 / 6)
    assert r["subsets"]["next to"]["in_macro"] is False and r["subsets"]["on"]["in_macro"] is True
    assert all(isinstance(s, ImageCrop) for s in enc.image_requests) and len(enc.image_requests) == 3

    rows = [{"image_path": "vg.jpg", "bbox_x": 0, "bbox_y": 1, "bbox_w": 4, "bbox_h": 5, "attributes": ["red", "big"],
             "true_caption": "T" if k < 20 else "F", "false_caption": "F" if k < 20 else "T", "relation_name": ""} for k in range(25)]
    rows += [{**rows[0], "attributes": ["small", "blue"], "true_caption": "F", "false_caption": "T"} for _ in range(3)]
    ann = write_json(tmp_path / "visual_genome_attribution.json", rows)
    r = evaluate(["aro_vg_attribution"], enc, {"aro_vg_attribution": {"annotations": ann, "images": tmp_path / "img"}})["aro_vg_attribution"]
    assert r["aggregates"]["macro"] == pytest.approx(20 / 25)  # the 3-row pair is below the 25-row threshold
    assert r["aggregates"]["groups_in_macro"] == 1 and r["aggregates"]["micro"] == pytest.approx(20 / 28)


def test_winoground_scores(tmp_path):
    lines = [
        {"id": 0, "image_0": "i0", "image_1": "i1", "caption_0": "c0", "caption_1": "c1", "tag": "Object", "collapsed_tag": "Object"},
        {"id": 1, "image_0": "i0", "image_1": "i2", "caption_0": "c0", "caption_1": "c2", "tag": "Relation", "collapsed_tag": "Relation"},
    ]
    (tmp_path / "examples.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    touch_images(tmp_path / "images", ["i0.png", "i1.png", "i2.png"])
    # group 0: identity -> all right; group 1: c2 prefers i0 over i2 (image fails), i0 prefers c0 over c2 (text ok)
    texts = {"c0": [1.0, 0.0, 0.0], "c1": [0.0, 1.0, 0.0], "c2": [0.6, 0.0, 0.5]}
    imgs = {"i0.png": [1.0, 0.0, 0.0], "i1.png": [0.0, 1.0, 0.0], "i2.png": [0.0, 0.0, 0.5]}
    r = evaluate(["winoground"], FakeEncoder(texts, imgs), {"winoground": {"annotations": tmp_path / "examples.jsonl", "images": tmp_path / "images"}})["winoground"]
    assert r["aggregates"] == {"text": 1.0, "image": 0.5, "group": 0.5, "rows": 2}
    assert r["subsets"]["by_tag"]["Relation"]["group"] == 0.0 and r["headline"]["group/Object"] == 1.0


def test_retrieval_multi_caption_and_ties(tmp_path):
    ann = write_json(tmp_path / "r.json", [
        {"image": "a.jpg", "caption": ["a1", "a2"]},
        {"image": "b.jpg", "caption": ["b1", "shared"]},
        {"image": "c.jpg", "caption": "c1"},
    ])
    touch_images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    imgs = {"a.jpg": [1.0, 0.0, 0.0], "b.jpg": [0.0, 1.0, 0.0], "c.jpg": [0.0, 0.0, 1.0]}
    texts = {"a1": [0.2, 0.9, 0.0],   # a's first caption is closer to b
             "a2": [0.8, 0.0, 0.0],   # ... but its second caption makes a's i2t top-1 a hit
             "b1": [0.0, 0.5, 0.0], "shared": [0.9, 0.5, 0.0],
             "c1": [0.0, 0.0, 0.9]}
    out: list = []
    r = evaluate(["retrieval"], FakeEncoder(texts, imgs), {"retrieval": {"annotations": ann, "images": tmp_path / "img", "ks": [1, 2]}}, per_row=out)["retrieval"]
    # i2t: a -> best gt a2 (0.8) vs shared 0.9 -> rank 1; b -> a1 0.9 > b1/shared 0.5 -> rank 1; c -> rank 0
    assert r["aggregates"]["i2t_r1"] == pytest.approx(1 / 3) and r["aggregates"]["i2t_r2"] == 1.0
    # t2i: a1 -> b (0.9) beats a (0.2): rank 1; a2 -> a; b1 -> b; shared -> a (0.9) beats b (0.5): rank 1; c1 -> c
    assert r["aggregates"]["t2i_r1"] == pytest.approx(3 / 5)
    ranks = {x["id"]: x["scores"]["rank"] for x in out if x["subset"] == "t2i"}
    assert ranks == {"0:0": 1, "0:1": 0, "1:0": 0, "1:1": 1, "2:0": 0}
    # a distractor tying the ground truth ranks first (no hit at 1)
    texts["c1"] = [0.0, 0.9, 0.9]
    r = evaluate(["retrieval"], FakeEncoder(texts, imgs), {"retrieval": {"annotations": ann, "images": tmp_path / "img"}})["retrieval"]
    assert r["aggregates"]["t2i_r1"] == pytest.approx(2 / 5)


def test_zeroshot_known_answer_imagefolder_and_wds(tmp_path):
    classes = ["cat", "dog", "hot_dog"]
    root = tmp_path / "folder"
    for c in classes:
        touch_images(root / c, [f"{c}1.png", f"{c}2.png"])
    templates = write_json(tmp_path / "t.json", ["a {c}.", "the {c}!"])
    # class weights: cat -> e0, dog -> e1 (templates differ, mean renormalised), hot dog -> e2
    texts = {"a cat.": [1.0, 0.0, 0.0], "the cat!": [1.0, 0.0, 0.0], "a dog.": [0.0, 1.0, 0.1], "the dog!": [0.0, 1.0, -0.1],
             "a hot dog.": [0.0, 0.0, 1.0], "the hot dog!": [0.0, 0.0, 1.0]}
    imgs = {"cat1.png": [1.0, 0.0, 0.0], "cat2.png": [0.0, 1.0, 0.0],        # cat2 looks like a dog
            "dog1.png": [0.0, 1.0, 0.0], "dog2.png": [0.1, 0.9, 0.0],
            "hot_dog1.png": [0.0, 0.0, 1.0], "hot_dog2.png": [0.5, 0.0, 0.5]}  # tie between cat and hot dog
    r = evaluate(["zeroshot"], FakeEncoder(texts, imgs), {"zeroshot": {"images": root, "templates": templates}})["zeroshot"]
    agg = r["aggregates"]
    assert agg["acc1"] == pytest.approx(4 / 6) and agg["acc5"] == 1.0  # cat2 wrong, hot_dog2 a tie (wrong)
    assert r["subsets"]["per_class_recall"] == {"cat": 0.5, "dog": 1.0, "hot dog": 0.5}
    assert agg["mean_per_class_recall"] == pytest.approx(2 / 3)

    # the same images in CLIP_benchmark's webdataset layout give the same numbers
    import tarfile

    wds = tmp_path / "wds"
    (wds / "test").mkdir(parents=True)
    (wds / "classnames.txt").write_text("cat\ndog\nhot dog\n")
    (wds / "zeroshot_classification_templates.txt").write_text("a {c}.\nthe {c}!\n")
    by_bytes = {}
    with tarfile.open(wds / "test" / "0.tar", "w") as tar:
        for i, p in enumerate(sorted(root.rglob("*.png"))):
            data = p.read_bytes() + bytes([i])  # distinct bytes per sample (PNG readers ignore trailing bytes)
            by_bytes[data] = imgs[p.name]
            for name, payload in ((f"s{i:04d}.png", data), (f"s{i:04d}.cls", str(classes.index(p.parent.name)).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    r2 = evaluate(["zeroshot"], FakeEncoder(texts, by_bytes), {"zeroshot": {"images": wds}})["zeroshot"]
    assert r2["aggregates"] == agg and r2["images"]["layout"] == "webdataset"


def png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def test_tripletdata_wino_on_shards(tmp_path):
    from tripletclip.data.shards import ShardWriter

    x, x_good, x_bad, x_free = png((255, 0, 0)), png((0, 255, 0)), png((0, 0, 255)), png((9, 9, 9))
    with ShardWriter(tmp_path / "shards", prefix="eval", shard_size=2) as w:
        w.write("k0", x, "y", neg_captions=["y good", "y bad"], neg_types=["swap_att", "replace_obj"], neg_images=[x_good, x_bad])
        w.write("k1", x, "y", neg_captions=["y bad", "y free"], neg_types=["replace_obj", "swap_att"], neg_images=[x_bad])
        w.write("k2", x, "y", neg_captions=["y and more"], neg_types=["add_obj"], neg_images=[x_free])  # y true of x'
    texts = {"y": [1.0, 0.0], "y good": [0.0, 1.0], "y bad": [0.9, 0.1], "y free": [0.5, 0.5]}
    imgs = {x: [1.0, 0.0], x_good: [0.0, 1.0], x_bad: [0.0, 1.0], x_free: [0.5, 0.5]}
    r = evaluate(["tripletdata_wino"], FakeEncoder(texts, imgs), {"tripletdata_wino": {"annotations": tmp_path / "shards"}})["tripletdata_wino"]
    # k0:0 binds both ways; k0:1 and k1:0: each image still prefers its own caption (text score right), but
    # "y bad" is closer to x than to its own rendering x' (image score wrong)
    assert r["aggregates"] == {"text": 1.0, "image": pytest.approx(1 / 3), "group": pytest.approx(1 / 3), "rows": 3}
    assert r["subsets"]["by_neg_type"]["swap_att"]["group"] == 1.0 and r["subsets"]["by_neg_type"]["replace_obj"]["group"] == 0.0
    assert r["images"]["negatives_without_image"] == 1 and r["images"]["skipped_by_type"] == 1
    assert [a["rows"] for a in r["annotations"]] == [2, 1]


def test_world_bench_composition(tmp_path):
    bench = tmp_path / "bench"
    touch_images(bench / "images", ["s0.png", "s1.png", "n0.png"])
    rows = {"0": {"filename": "s0.png", "caption": "p0", "negative_caption": "q0", "split": "seen"},
            "1": {"filename": "s1.png", "caption": "p1", "negative_caption": "q1", "split": "heldout"}}
    for s in ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att"):
        write_json(bench / "sugarcrepe" / f"{s}.json", rows)
    (bench / "winoground").mkdir()
    (bench / "winoground" / "examples.jsonl").write_text(json.dumps(
        {"id": 0, "image_0": "s0", "image_1": "n0", "caption_0": "p0", "caption_1": "q0", "tag": "swap_att", "split": "heldout"}) + "\n")
    write_json(bench / "retrieval.json", [{"image": "s0.png", "caption": ["p0"]}, {"image": "s1.png", "caption": ["p1"]}])
    texts = {"p0": [1.0, 0.0], "q0": [0.0, 1.0], "p1": [0.0, 1.0], "q1": [1.0, 0.0]}
    enc = FakeEncoder(texts, {"s0.png": [1.0, 0.0], "s1.png": [1.0, 0.0], "n0.png": [0.0, 1.0]})
    r = evaluate(["world"], enc, {"world": {"annotations": bench}})["world"]
    h = r["headline"]
    assert h["sugarcrepe_seen/mean"] == 1.0 and h["sugarcrepe_heldout/mean"] == 0.0
    assert h["winoground_heldout/group"] == 1.0 and "winoground_seen/group" not in h
    assert h["retrieval/i2t_r1"] == 0.5
    assert set(r["subsets"]) == {"sugarcrepe_seen", "sugarcrepe_heldout", "winoground_heldout", "retrieval"}


def test_evaluate_frequency_build_args_and_registry(tmp_path):
    ann, img, enc = sugarcrepe_fixture(tmp_path)
    args = {"sugarcrepe": {"annotations": ann, "images": img, "every": 10}}
    assert evaluate(["sugarcrepe"], enc, args, step=15) == {}
    assert evaluate("sugarcrepe", enc, args, step=20)["sugarcrepe"]["step"] == 20
    assert set(EVALUATORS.names()) >= {"sugarcrepe", "sugarcrepe_pp", "valse", "aro_coco_order", "aro_flickr_order",
                                       "aro_vg_relation", "aro_vg_attribution", "winoground", "tripletdata_wino",
                                       "retrieval", "zeroshot", "world"}
    built = build_args("sugarcrepe,retrieval:coco", ["sugarcrepe=/a", "retrieval:coco=/b"], ["/img1", "/img2"],
                       ["retrieval:coco.ks=[1,5]", "skip_missing=true"])
    assert built["sugarcrepe"] == {"annotations": "/a", "images": ["/img1", "/img2"], "skip_missing": True}
    assert built["retrieval:coco"]["ks"] == [1, 5] and built["retrieval:coco"]["annotations"] == "/b"
    with pytest.raises(ValueError, match="not among --benchmark"):
        build_args("sugarcrepe", [], [], ["valse.x=1"])
    with pytest.raises(KeyError, match="unknown benchmark 'nope'"):
        evaluate(["nope"], enc, {})
    with pytest.raises(ValueError, match="needs 'annotations'"):
        evaluate(["valse"], enc, {})


def test_quick_gelu_mismatch_is_refused():
    from tripletclip.eval.api import check_quick_gelu

    with pytest.raises(ValueError, match="trained with QuickGELU.*ViT-B-32-quickgelu"):
        check_quick_gelu("ViT-B-32", "openai")  # checked from metadata, before any download
    check_quick_gelu("ViT-B-32", "openai", force_quick_gelu=True)
    check_quick_gelu("ViT-B-32-quickgelu", "openai")


# ---------------------------------------------------------------- every registered benchmark
def _vec(x) -> list[float]:
    """A deterministic unit-ish 3-vector for any caption or image key (registry-wide runs need no known answer)."""
    h = sum(map(ord, str(x)))
    return [1.0 + h % 3, 1.0 + h % 5, 1.0 + h % 7]


def _case_sugarcrepe(tmp):
    ann, img, _ = sugarcrepe_fixture(tmp)
    return {"annotations": ann, "images": img}


def _case_sugarcrepe_pp(tmp):
    write_json(tmp / "pp" / "swap_obj.json", [{"id": 0, "filename": "a.jpg", "caption": "p1", "caption2": "p2",
                                               "negative_caption": "n"}])
    return {"annotations": tmp / "pp", "images": touch_images(tmp / "img", ["a.jpg"]), "subsets": "swap_obj"}


def _case_valse(tmp):
    write_json(tmp / "v" / "existence.json", {"a": {"image_file": "v.jpg", "caption": "c", "foil": "f",
                                                    "mturk": {"caption": 3}}})
    return {"annotations": tmp / "v", "images": touch_images(tmp / "img", ["v.jpg"])}


def _case_order(tmp):
    ann = write_json(tmp / "k.json", [{"image": "o.jpg", "caption": ["A big red dog chases a small cat."]}])
    return {"annotations": ann, "images": touch_images(tmp / "img", ["o.jpg"])}


def _case_vg(kind):
    def case(tmp):
        row = {"image_path": "g.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 4, "bbox_h": 4, "relation_name": "on",
               "attributes": ["red", "big"], "true_caption": "t", "false_caption": "f"}
        return {"annotations": write_json(tmp / f"vg_{kind}.json", [row]), "images": touch_images(tmp / "img", ["g.jpg"])}
    return case


def _case_winoground(tmp):
    (tmp / "examples.jsonl").write_text(json.dumps({"id": 0, "image_0": "i0", "image_1": "i1", "caption_0": "c0",
                                                    "caption_1": "c1", "tag": "Object"}) + "\n")
    return {"annotations": tmp / "examples.jsonl", "images": touch_images(tmp / "im", ["i0.png", "i1.png"])}


def _case_tripletdata_wino(tmp):
    from tripletclip.data.shards import ShardWriter

    with ShardWriter(tmp / "shards", prefix="eval") as w:
        w.write("k0", png((255, 0, 0)), "y", neg_captions=["y'"], neg_types=["swap_att"], neg_images=[png((0, 0, 9))])
    return {"annotations": tmp / "shards"}


def _case_retrieval(tmp):
    ann = write_json(tmp / "r.json", [{"image": "a.jpg", "caption": ["x", "y"]}, {"image": "b.jpg", "caption": "z"}])
    return {"annotations": ann, "images": touch_images(tmp / "img", ["a.jpg", "b.jpg"])}


def _case_zeroshot(tmp):
    for c in ("cat", "dog"):
        touch_images(tmp / "f" / c, [f"{c}.png"])
    return {"images": tmp / "f", "templates": write_json(tmp / "t.json", ["a {c}."])}


def _case_world(tmp):
    bench = tmp / "bench"
    touch_images(bench / "images", ["s0.png"])
    write_json(bench / "sugarcrepe" / "swap_att.json",
               {"0": {"filename": "s0.png", "caption": "p", "negative_caption": "q", "split": "seen"}})
    write_json(bench / "retrieval.json", [{"image": "s0.png", "caption": ["p"]}])
    return {"annotations": bench}


def _case_vl_checklist(tmp):
    (tmp / "vlc/corpus/v1/Relation/spatial").mkdir(parents=True)
    (tmp / "vlc/corpus/v1/Relation/spatial/vg.yaml").write_text('ANNO_PATH: "data/s.json"\nIMG_ROOT: "vg"\n')
    write_json(tmp / "vlc/data/s.json", [["a.jpg", {"POS": ["p"], "NEG": ["n"]}]])
    return {"annotations": tmp / "vlc", "images": touch_images(tmp / "img" / "vg", ["a.jpg"]).parent}


def _case_cola(tmp):
    ann = write_json(tmp / "c.json", [["u/1.jpg", "a red cube", "u/2.jpg", "a blue ball"]])
    return {"annotations": ann, "images": touch_images(tmp / "img", ["1.jpg", "2.jpg"])}


def _case_crepe(tmp):
    (tmp / "cr/swap").mkdir(parents=True)
    (tmp / "cr/swap/prod_vg_hard_negs_swap_complexity_4.csv").write_text(
        'image_id,caption,hard_negs,x,y,width,height\n7,a b,"[\'b a\', \'a c\']",0,0,4,4\n')
    return {"annotations": tmp / "cr", "images": touch_images(tmp / "img", ["7.jpg"]), "types": "swap", "complexities": "4"}


def _case_negbench_mcq(tmp):
    (tmp / "V_mcq_x.csv").write_text("image_path,correct_answer,caption_0,caption_1,caption_2,caption_3,"
                                     "correct_answer_template\nd/m.jpg,1,a,b,c,d,hybrid\n")
    return {"annotations": tmp / "V_mcq_x.csv", "images": touch_images(tmp / "img", ["m.jpg"])}


def _case_negbench_retrieval(tmp):
    (tmp / "r.csv").write_text('filepath,image_id,captions\nd/a.jpg,1,"[\'x\', \'y\']"\nd/b.jpg,2,"[\'z\']"\n')
    return {"annotations": tmp / "r.csv", "images": touch_images(tmp / "img", ["a.jpg", "b.jpg"])}


def _case_format(name):
    def case(tmp):
        from test_eval_formats import FORMAT_CASES

        return FORMAT_CASES[name](tmp)[0]
    return case


# how each registered benchmark is run on a tiny case (a new benchmark needs an entry)
BENCHMARK_CASES = {
    "sugarcrepe": _case_sugarcrepe, "sugarcrepe_pp": _case_sugarcrepe_pp, "valse": _case_valse,
    "aro_coco_order": _case_order, "aro_flickr_order": _case_order, "aro_vg_relation": _case_vg("relation"),
    "aro_vg_attribution": _case_vg("attribution"), "winoground": _case_winoground,
    "tripletdata_wino": _case_tripletdata_wino, "retrieval": _case_retrieval, "zeroshot": _case_zeroshot,
    "world": _case_world, "vl_checklist": _case_vl_checklist, "cola": _case_cola, "crepe": _case_crepe,
    "negbench_mcq": _case_negbench_mcq, "negbench_retrieval": _case_negbench_retrieval,
    **{n: _case_format(n) for n in ("whatsup", "svo_probes", "spec", "bla", "eqben", "colorswap", "vismin", "bivlc",
                                    "mmvp_vlm")},
}


def test_every_registered_benchmark_has_a_case():
    assert set(BENCHMARK_CASES) == set(EVALUATORS.names())


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_every_benchmark_writes_the_full_record(name, tmp_path):
    """The record every result file and metric logger relies on; blind exactly where the benchmark allows it."""
    args = {name: BENCHMARK_CASES[name](tmp_path)}
    enc = FakeEncoder({}, {}, default_text=_vec, default_image=_vec)
    rows: list = []
    rec = evaluate([name], enc, args, per_row=rows)[name]
    assert rec["benchmark"] == name and json.loads(json.dumps(rec)) == rec
    assert rec["protocol"] and rec["cost"]["seconds"] >= 0 and rec["model"] == {"model": {"name": "fake"}}
    assert rec["annotations"] and all(len(a["sha256"]) == 64 for a in rec["annotations"] if "sha256" in a)
    assert rec["headline"] and all(v is None or 0.0 <= v <= 1.0 for v in rec["headline"].values())
    assert rows and all(r["benchmark"] == name for r in rows)
    if getattr(EVALUATORS.get(name), "supports_blind"):
        assert evaluate([name], enc, args, blind=True)[name]["protocol"]["blind"] is True
    else:
        with pytest.raises(ValueError, match="no blind"):
            evaluate([name], enc, args, blind=True)
