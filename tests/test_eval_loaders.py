"""Every loader on the full real annotation files in ../shared/benchmarks (row counts as in its README)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tripletclip.eval import AnnotationError
from tripletclip.eval.aro_order import load_order_cases
from tripletclip.eval.retrieval import load_retrieval
from tripletclip.eval.scramble import LexiconTagger, load_word_tokenizer, pre_caption, regex_tokenize
from tripletclip.eval.sugarcrepe import load_sugarcrepe
from tripletclip.eval.sugarcrepe_pp import load_sugarcrepe_pp
from tripletclip.eval.valse import load_valse
from tripletclip.eval.zeroshot import _from_json
from conftest import SHARED_BENCHMARKS

BENCH = SHARED_BENCHMARKS
SMOKE = BENCH / "real_images_smoke"

SC_ROWS = {"add_att": 692, "add_obj": 2062, "replace_att": 788, "replace_obj": 1652, "replace_rel": 1406, "swap_att": 666, "swap_obj": 245}
VALSE_ROWS = {  # file: (rows, valid rows with mturk.caption >= 2)
    "existence": (534, 505), "plurals": (1000, 851), "counting-hard": (1000, 868), "counting-small-quant": (1000, 900),
    "counting-adversarial": (756, 691), "relations": (614, 535), "action-replacement": (779, 648),
    "actant-swap": (1042, 949), "coreference-standard": (916, 708), "coreference-hard": (141, 104), "foil-it": (1000, 943),
}


@pytest.mark.shared_benchmarks("sugar_crepe", "real_images_smoke/sugar_crepe")
def test_sugarcrepe_full_files():
    rows, records, names = load_sugarcrepe(BENCH / "sugar_crepe")
    assert len(rows) == 7511 and names[0] == "replace_obj" and len(names) == 7
    assert Counter(r.subset for r in rows) == SC_ROWS
    assert len({r.image for r in rows}) == 1560
    swap_obj_ids = {r.id for r in rows if r.subset == "swap_obj"}
    assert "108" not in swap_obj_ids and "107" in swap_obj_ids  # ids skip numbers and are kept as written
    assert {Path(a["path"]).stem: a["rows"] for a in records} == SC_ROWS and all(len(a["sha256"]) == 64 for a in records)
    smoke, _, _ = load_sugarcrepe(SMOKE / "sugar_crepe")
    assert Counter(r.subset for r in smoke) == {"add_att": 5, "add_obj": 20, "replace_att": 6, "replace_obj": 16,
                                                "replace_rel": 12, "swap_att": 8, "swap_obj": 4}
    assert len({r.image for r in smoke}) == 15
    with pytest.raises(AnnotationError, match="no 'split' field"):
        load_sugarcrepe(SMOKE / "sugar_crepe", split="heldout")


@pytest.mark.shared_benchmarks("sugar_crepe_pp", "real_images_smoke/sugar_crepe_pp")
def test_sugarcrepe_pp_full_files():
    rows, records, names = load_sugarcrepe_pp(BENCH / "sugar_crepe_pp")
    assert Counter(r.subset for r in rows) == {k: v for k, v in SC_ROWS.items() if not k.startswith("add")}
    assert all(r.n_true == 2 and len(r.texts) == 3 for r in rows)
    assert len(load_sugarcrepe_pp(SMOKE / "sugar_crepe_pp")[0]) == 46


@pytest.mark.shared_benchmarks("valse", "real_images_smoke/valse")
def test_valse_full_files():
    rows, records, names = load_valse(BENCH / "valse")
    assert {Path(a["path"]).stem: (a["rows"], a["valid_rows"]) for a in records} == VALSE_ROWS
    assert Counter(r.subset for r in rows) == {k: v[1] for k, v in VALSE_ROWS.items()}
    all_rows, _, _ = load_valse(BENCH / "valse", valid_only=False)
    assert len(all_rows) == sum(v[0] for v in VALSE_ROWS.values())
    smoke, smoke_rec, _ = load_valse(SMOKE / "valse")
    assert {Path(a["path"]).stem: (a["rows"], a["valid_rows"]) for a in smoke_rec} == {"plurals": (6, 5), "relations": (3, 2)}


@pytest.mark.shared_benchmarks("aro/coco_karpathy_test.json", "real_images_smoke/aro/coco_karpathy_test.json")
def test_aro_coco_order_full_file_and_subset_stability():
    rows, records, info = load_order_cases(BENCH / "aro" / "coco_karpathy_test.json", "coco_order", tagger="fallback")
    assert records[0]["rows"] == 5000 and records[0]["captions"] == 25010 and len(rows) == 25010
    assert info["tagger"] == "fallback:lexicon-v1" and info["seed"] == 1
    data = json.loads((BENCH / "aro" / "coco_karpathy_test.json").read_text())
    tokenize, _ = load_word_tokenizer()
    for r in rows[:: 997]:  # every scramble only moves tokens: same words as the original
        i, j = map(int, r.id.split(":"))
        cap = data[i]["caption"][j]
        assert r.texts[0] == pre_caption(cap)
        by_tag = sorted(pre_caption(" ".join(regex_tokenize(cap))).split())
        by_word = sorted(pre_caption(" ".join(tokenize(cap))).split())
        for kind, text in zip(r.meta["kinds"], r.texts[1:]):
            assert sorted(text.split()) == (by_tag if "nouns" in kind else by_word), (kind, cap, text)
            assert text != r.texts[0]
    # the 9-image smoke file gets exactly the scrambles of the full file for the same images
    smoke, _, _ = load_order_cases(SMOKE / "aro" / "coco_karpathy_test.json", "coco_order", tagger="fallback")
    full = {(data[int(r.id.split(":")[0])]["image"], r.id.split(":")[1]): r.texts for r in rows}
    sdata = json.loads((SMOKE / "aro" / "coco_karpathy_test.json").read_text())
    assert len(smoke) == 45
    for r in smoke:
        i, j = r.id.split(":")
        assert r.texts == full[(sdata[int(i)]["image"], j)]


def test_lexicon_tagger_known_tags():
    tags = dict(LexiconTagger().tag("A large brown dog chases a ball on the wooden bench."))
    assert [w for w, t in tags.items() if t.startswith("NN")] == ["dog", "ball", "bench"]
    assert [w for w, t in tags.items() if t.startswith("JJ")] == ["large", "brown", "wooden"]
    assert tags["chases"] == "VBZ"


@pytest.mark.shared_benchmarks("aro/coco_karpathy_test.json", "real_images_smoke/captions.json")
def test_retrieval_files():
    items, rec = load_retrieval(BENCH / "aro" / "coco_karpathy_test.json")
    assert rec["rows"] == 5000 and rec["captions"] == 25010 and len(items) == 5000
    items, rec = load_retrieval(SMOKE / "captions.json")
    assert rec["rows"] == 76 and rec["captions"] == 380 and all(len(c) == 5 for _, _, c in items)
    assert items[0][1][0].startswith("images/")  # COCO entries try file_path first, then file_name


@pytest.mark.shared_benchmarks("clip_benchmark/en_classnames.json", "clip_benchmark/en_zeroshot_classification_templates.json")
def test_clip_benchmark_class_names_and_templates():
    folder = BENCH / "clip_benchmark"
    names, rec = _from_json(folder, "en_classnames.json", "imagenet1k", "class names")
    templates, trec = _from_json(folder, "en_zeroshot_classification_templates.json", "imagenet1k", "templates")
    assert len(names) == 1000 and len(templates) == 80 and rec["key"] == "imagenet1k" and len(trec["sha256"]) == 64
    assert _from_json(folder, "en_zeroshot_classification_templates.json", "cifar10", "templates")[0][0] == "a photo of a {c}."
    with pytest.raises(AnnotationError, match="no class names for dataset 'cifar10'"):
        _from_json(folder, "en_classnames.json", "cifar10", "class names")
