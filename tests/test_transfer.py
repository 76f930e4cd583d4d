"""The transfer benchmark (world/transfer): independence from the training-negative path, scene-verified
symmetric pairs, no overlap with training text, no text-only shortcut, and the demo's aggregation of it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import tripletclip
from tripletclip.world import Description, ObjDesc, Rand, build_world, parse_caption, spec_preset, truth
from tripletclip.world.scene import sample_scene
from tripletclip.world.transfer import (FORBIDDEN, TRANSFER_CATEGORIES, BigramScorer, Claim, build_transfer, holds,
                                        make_pair, text_only_accuracy, training_texts)
from tripletclip.world.transfer.textonly import unigram_scorer

SRC = Path(tripletclip.__file__).parent


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for p in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path, module: str) -> set[str]:
    """tripletclip modules imported by a file (absolute and relative imports, also inside functions)."""
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}"))
    return {m for m in found if m.split(".")[0] == "tripletclip" and _module_file(m)}


def import_closure(root: str) -> set[str]:
    """Every tripletclip module reachable from ``root``'s modules by explicit imports (parent packages'
    ``__init__`` re-exports are not followed: importing ``a.b.c`` does not use what ``a.b`` re-exports)."""
    todo = [root] + [f"{root}.{p.stem}" for p in (SRC / Path(*root.split(".")[1:])).glob("*.py") if p.stem != "__init__"]
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        f = _module_file(m)
        if f is not None:
            todo.extend(_imports(f, m) - seen)
    return seen


def _forbidden(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}


def test_transfer_shares_no_module_with_the_training_negative_path():
    closure = import_closure("tripletclip.world.transfer")
    assert "tripletclip.world.scene" in closure and "tripletclip.world.render" in closure  # the walk works
    assert _forbidden(closure) == set()
    # the walker does see the training path where it is used (the test can fail)
    assert "tripletclip.world.edits" in _forbidden(import_closure("tripletclip.world.eval_set"))


def test_scene_oracle_agrees_with_the_training_truth_checker_on_random_claims():
    # the training path's checker is only a reference here; the transfer package never imports it
    spec = spec_preset("demo", seed=0)
    rng = Rand(5)
    agree = 0
    for _ in range(400):
        scene = sample_scene(spec, rng, heldout=rng.random() < 0.5)
        # mostly the scene's own objects (often true), sometimes one changed or swapped (often false)
        objs = [(o.colour, o.shape) for o in scene.objects][::1 if rng.random() < 0.5 else -1]
        if rng.random() < 0.3:
            objs[rng.randint(2)] = (rng.choice(spec.colours), rng.choice(spec.shapes))
        objs = tuple(objs)
        rel = (0, rng.choice(("left", "right", "above", "below")), 1) if rng.random() < 0.6 else None
        claim = Claim(objs, rel)
        ref = truth(Description(tuple(ObjDesc(s, c, None, None) for c, s in objs), (rel,) if rel else ()), scene)
        assert holds(claim, scene) == ref
        agree += ref is True
    assert 50 < agree < 350  # true and false claims are both compared


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    spec = spec_preset("demo", seed=0)
    build_world(out / "world", n_train=400, n_bench=0, n_retrieval=0, seed=0, image_size=48, spec=spec,
                progress=False)
    training = training_texts(out / "world" / "train")
    manifest = build_transfer(out / "transfer", spec, seed=0, image_size=48, n_pairs=12, training=training)
    return spec, training, manifest, out / "transfer"


def _rows(bench: Path) -> dict[str, list[dict]]:
    return {c: list(json.loads((bench / "sugarcrepe" / f"{c}.json").read_text()).values()) for c in TRANSFER_CATEGORIES}


def test_no_transfer_caption_or_pair_occurs_in_training(small):
    spec, (texts, pairs), manifest, bench = small
    rows = [r for rs in _rows(bench).values() for r in rs]
    assert len(texts) > 500 and len(pairs) > 300
    assert sum(r["caption"] in texts for r in rows) == 0
    assert sum(r["negative_caption"] in texts for r in rows) == 0
    assert sum((r["caption"], r["negative_caption"]) in pairs for r in rows) == 0
    ov = manifest["training_overlap"]
    assert ov["captions_in_training"] == ov["pairs_in_training"] == 0 and ov["training_texts"] == len(texts)
    # the rejection is real: a candidate whose caption is a training text is replaced by the next one
    from tripletclip.world.transfer.pairs import PairStats

    first = make_pair(spec, "swap_att", Rand(9))
    stats = PairStats()
    again = make_pair(spec, "swap_att", Rand(9), frozenset({first.transfer[1]}), stats)
    assert stats.in_training == 1 and first.transfer[1] not in (*again.transfer, *again.paraphrase)


def test_rows_are_symmetric_scene_verified_and_hold_out_compositions(small):
    spec, _, manifest, bench = small
    scenes = {json.loads(line)["image"]: json.loads(line)["scene"] for line in (bench / "scenes.jsonl").read_text().splitlines()}
    held = set(spec.heldout_pairs)
    for cat, rows in _rows(bench).items():
        for split in ("transfer", "paraphrase"):
            sel = [r for r in rows if r["split"] == split]
            assert len(sel) == 24 == manifest["counts"][cat][split]
            for a, b in zip(sel[0::2], sel[1::2]):
                assert (a["caption"], a["negative_caption"]) == (b["negative_caption"], b["caption"]) != (b["caption"], a["caption"])
                sa, sb = scenes[a["filename"]], scenes[b["filename"]]
                # a held-out colour-shape pair is in the pair's images (never in any training image)
                assert {(o["colour"], o["shape"]) for o in sa["objects"] + sb["objects"]} & held
    assert manifest["winoground_counts"] == {"transfer": 60, "paraphrase": 60}


def test_text_only_scorers_are_at_chance_on_every_category(small):
    _, (texts, _), manifest, bench = small
    for name, scorer in (("bigram", BigramScorer(sorted(texts))), ("unigram", unigram_scorer(sorted(texts)))):
        for cat, rows in _rows(bench).items():
            for split in ("transfer", "paraphrase"):
                acc = text_only_accuracy([r for r in rows if r["split"] == split], scorer)
                assert abs(acc - 50.0) <= 5.0, (name, cat, split, acc)
                assert manifest["text_only"][name][split][cat] == pytest.approx(acc)
    # the same scorer does find the shortcut of the training path's add foils (the check can fail)
    assert text_only_accuracy([{"caption": "a red star", "negative_caption": "a red star and a blue circle"}] * 4,
                              BigramScorer(sorted(texts))) == 100.0


def test_transfer_wordings_parse_and_paraphrases_do_not():
    # the training grammar's parser reads the transfer split's sentences as their claims, and none of the
    # paraphrase split's structures
    spec = spec_preset("demo", seed=0)
    rng = Rand(3)
    for cat in TRANSFER_CATEGORIES:
        for _ in range(20):
            p = make_pair(spec, cat, rng)
            for claim, text, para in zip((p.claim_a, p.claim_b), p.transfer, p.paraphrase):
                d = parse_caption(text)
                assert d is not None and {(o.colour, o.shape) for o in d.objects} == set(claim.objects)
                assert parse_caption(para) is None


def test_demo_transfer_block_has_rows_errors_and_paired_differences():
    from tripletclip.demo.run import _add_transfer
    from tripletclip.demo.transfer import wilson

    counts = {c: {"transfer": 300, "paraphrase": 300} for c in TRANSFER_CATEGORIES}
    def rec(method, seed, v):
        s = {c: v + i for i, c in enumerate(TRANSFER_CATEGORIES)}
        return {"method": method, "seed": seed,
                "transfer_scores": {sp: {**s, "mean": sum(s.values()) / 5} for sp in ("transfer", "paraphrase")},
                "transfer_winoground": {sp: {"text": v, "image": v, "group": v} for sp in ("transfer", "paraphrase")}}
    results = [rec("clip", 0, 50.0), rec("clip", 1, 52.0), rec("negclip", 0, 70.0), rec("negclip", 1, 74.0)]
    doc = {"clip": {}, "negclip": {}}
    _add_transfer(doc, results, ["clip", "negclip"], {"counts": counts})
    t = doc["negclip"]["transfer"]
    assert t["rows"]["swap_att"] == 300 and list(t["per_seed"]) == ["0", "1"]
    assert t["categories"]["replace_obj"] == pytest.approx(72.0) and t["spread"]["replace_obj"] == pytest.approx(2.0)
    assert t["swap_mean"] == pytest.approx((75.0 + 76.0) / 2)
    assert t["interval"]["replace_obj"] == pytest.approx(wilson(72.0, 300))
    lo, hi = wilson(72.0, 300)
    assert lo < 72.0 < hi and 9.0 < hi - lo < 11.0  # about ±5 points at 300 rows
    d = t["paired"]["clip"]["swap_mean"]
    assert d["mean"] == pytest.approx(21.0) and d["real"]
    assert doc["clip"]["paraphrase"]["winoground"]["groups"] == 750
