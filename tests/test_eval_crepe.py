"""CREPE productivity on the real CSVs: row counts as in the shared README; Recall@k equals the official ranking
(``get_one2many_rank``: argsort of the cropped image's similarities) computed by brute force."""
from __future__ import annotations

import ast
import csv
from collections import Counter

import pytest
import torch
from PIL import Image

from _eval_standins import BENCH, need, sim, standin, tiny_encoder
from tripletclip.eval import AnnotationError, evaluate
from tripletclip.eval.crepe import crepe_file, load_crepe

CREPE = BENCH / "crepe" / "prod_hard_negatives"
ROWS = {
    "atom": (1258, 1454, 1805, 2082, 2241, 1897, 2265, 1724, 2001),
    "negate": (1262, 1312, 1798, 2009, 2244, 1824, 2237, 1660, 1990),
    "swap": (27, 36, 262, 505, 991, 884, 1293, 1076, 1578),
}


def test_all_files_row_counts():
    need(CREPE)
    rows, records, names = load_crepe(CREPE)
    assert {f"{r['type']}/{r['complexity']}": r["rows"] for r in records} == {
        f"{t}/{k}": n for t, ns in ROWS.items() for k, n in zip(range(4, 13), ns)}
    assert Counter(r.subset.split("/")[0] for r in rows) == {"atom": 16727, "negate": 16336, "swap": 6652}
    # caption + 5 hard negatives with its crop, less exact copies of the caption (counted per file)
    copies = sum(r["rows_with_caption_among_negatives"] for r in records)
    assert sum(len(r.texts) == 5 for r in rows) == copies == 34 and all(len(r.texts) in (5, 6) and r.box for r in rows)
    with pytest.raises(AnnotationError, match="unknown type"):
        load_crepe(CREPE, types="systematicity")


def official_rank(enc, image_path, box, texts) -> int:
    """get_one2many_rank on one row: the crop done here with PIL as TF.crop does, then argsort (descending)."""
    x, y, w, h = box
    crop = Image.open(image_path).convert("RGB").crop((x, y, x + w, y + h))
    s = torch.tensor([sim(enc, crop, t) for t in texts])
    # a stable sort keeps the caption (index 0) ahead of an exact copy of it among the negatives
    return int(torch.where(torch.argsort(s, descending=True, stable=True) == 0)[0][0])


def test_swap_rows_equal_the_official_ranking(tmp_path, tiny_weights):
    need(crepe_file(CREPE, "swap", 4), crepe_file(CREPE, "swap", 5))
    rows, _, _ = load_crepe(CREPE, types="swap", complexities="4,5")
    assert len(rows) == 27 + 36
    img = tmp_path / "vg"
    for r in rows:  # stand-ins large enough for every box of the image
        x, y, w, h = r.box
        p = img / "VG_100K" / r.image
        size = max((int(x + w) + 4, int(y + h) + 4), Image.open(p).size if p.exists() else (0, 0))
        standin(p, size)
    enc = tiny_encoder(tiny_weights)
    out: list = []
    res = evaluate(["crepe"], enc, {"crepe": {"annotations": CREPE, "images": img, "types": "swap",
                                              "complexities": "4,5"}}, per_row=out)["crepe"]
    expected = {}
    for k in (4, 5):
        with crepe_file(CREPE, "swap", k).open(newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
                box = tuple(float(r[c]) for c in ("x", "y", "width", "height"))
                texts = [r["caption"]] + list(ast.literal_eval(r["hard_negs"]))
                expected[(f"swap/{k}", i)] = official_rank(enc, img / "VG_100K" / f"{r['image_id']}.jpg", box, texts)
    got = {(r["subset"], r["id"]): r["rank"] for r in out}
    assert got == expected
    for k in (4, 5):
        ranks = [v for (s, _), v in expected.items() if s == f"swap/{k}"]
        for kk in (1, 3, 5):
            assert res["subsets"][f"swap/{k}"][f"r{kk}"] == pytest.approx(sum(r < kk for r in ranks) / len(ranks))
    assert res["headline"]["swap"] == pytest.approx((res["subsets"]["swap/4"]["r1"] + res["subsets"]["swap/5"]["r1"]) / 2)
