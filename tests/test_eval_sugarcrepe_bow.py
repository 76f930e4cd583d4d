"""SugarCrepe's order-blind rows (the negative has exactly the caption's words) are reported on their own."""
from __future__ import annotations

from collections import Counter

import pytest

from _eval_standins import BENCH, need, tiny_encoder
from tripletclip.eval import evaluate
from tripletclip.eval.sugarcrepe import load_sugarcrepe, same_bag_of_words

SMOKE = BENCH / "real_images_smoke"


def test_572_rows_of_the_full_files():
    """sugar-crepe issue 10 counts 572 of 7,511 rows."""
    need(BENCH / "sugar_crepe")
    rows, _, _ = load_sugarcrepe(BENCH / "sugar_crepe")
    flagged = Counter(r.subset for r in rows if same_bag_of_words(*r.texts))
    assert flagged == {"swap_att": 408, "swap_obj": 164}
    assert same_bag_of_words("A dog, on a mat.", "a mat on a Dog")
    assert not same_bag_of_words("a dog on a mat", "a dog on a dog mat")  # counts matter


def test_reported_separately_on_real_images(tiny_weights):
    need(SMOKE / "sugar_crepe", SMOKE / "images" / "val2017")
    out: list = []
    rec = evaluate(["sugarcrepe"], tiny_encoder(tiny_weights), {"sugarcrepe": {
        "annotations": SMOKE / "sugar_crepe", "images": SMOKE / "images" / "val2017"}}, per_row=out)["sugarcrepe"]
    rows, _, _ = load_sugarcrepe(SMOKE / "sugar_crepe")
    flags = {(r.subset, r.id): same_bag_of_words(*r.texts) for r in rows}
    assert {(r["subset"], r["id"]): r["same_bag_of_words"] for r in out} == flags
    bow = rec["bag_of_words"]
    same = [r["correct"] for r in out if r["same_bag_of_words"]]
    other = [r["correct"] for r in out if not r["same_bag_of_words"]]
    assert bow["rows"] == len(same) > 0 and bow["other_rows"]["rows"] == len(other) == 71 - len(same)
    assert bow["accuracy"] == pytest.approx(sum(same) / len(same))
    assert bow["other_rows"]["accuracy"] == pytest.approx(sum(other) / len(other))
    assert set(bow["by_subset"]) <= {"swap_att", "swap_obj"}
