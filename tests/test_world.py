"""The embedded world: truth checker, edits, grammar/parser, held-out split, renderer, oracles (CPU, fast)."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from tripletclip.world import (
    SUGARCREPE_TYPES,
    Description,
    ObjDesc,
    Obj,
    Rand,
    Scene,
    WorldGenerator,
    canonical,
    make_spec,
    parse_caption,
    parse_caption_full,
    realise,
    render_caption,
    sample_description,
    sample_scene,
    truth,
)
from tripletclip.world.grammar import ObjSurface, Surface
from tripletclip.world.oracle import benchmark_scores, bow_inbatch_retrieval
from tripletclip.world.render import Renderer
from tripletclip.world.scene import LEVEL, ORDERED, relation_value, scene_valid
from tripletclip.world.vocab import FUNCTION_WORDS

SPEC = make_spec(8, seed=0)


def _obj(shape: str, colour: str, x: float, y: float, texture: str = "plain", size: str = "small") -> Obj:
    return Obj(shape, colour, texture, size, x, y, 0.1)


def _content_words(text: str) -> Counter:
    return Counter(w for w in text.replace(",", " ").split() if w not in FUNCTION_WORDS)


@pytest.fixture(scope="module")
def triplets_by_type() -> dict[str, list]:
    gen = WorldGenerator(SPEC)
    rng = Rand(11)
    out = {t: [gen.triplet(rng, types=[t], split=split) for split in ("seen", "heldout") for _ in range(30)]
           for t in SUGARCREPE_TYPES}
    assert not gen.stats.failed, gen.stats.failed
    return out


# ------------------------------------------------------------------------------------------- truth checker

def test_truth_relations_against_geometry() -> None:
    left, right = _obj("circle", "red", 0.25, 0.5), _obj("square", "blue", 0.75, 0.5)
    scene = Scene((left, right), "grass")
    red_circle, blue_square = ObjDesc("circle", "red"), ObjDesc("square", "blue")
    assert truth(Description((red_circle, blue_square), ((0, "left", 1),)), scene) is True
    assert truth(Description((blue_square, red_circle), ((0, "right", 1),)), scene) is True  # inverted paraphrase
    assert truth(Description((red_circle, blue_square), ((0, "right", 1),)), scene) is False
    # level on the vertical axis: neither above nor below
    assert truth(Description((red_circle, blue_square), ((0, "above", 1),)), scene) is False
    assert truth(Description((red_circle, blue_square), ((1, "below", 0),)), scene) is False
    # wrong binding, background, missing object
    assert truth(Description((ObjDesc("circle", "blue"),)), scene) is False
    assert truth(Description((red_circle,), (), "snow"), scene) is False
    assert truth(Description((red_circle,), (), "grass"), scene) is True
    assert truth(Description((ObjDesc("star"),)), scene) is False
    # partial descriptions: unstated attributes match anything
    assert truth(Description((ObjDesc("circle"), ObjDesc("square", texture="plain", size="small"))), scene) is True
    assert truth(Description((ObjDesc("square", size="large"),)), scene) is False


def test_truth_is_injective_and_ambiguity_is_none() -> None:
    scene = Scene((_obj("circle", "red", 0.2, 0.2), _obj("square", "red", 0.8, 0.8)))
    two_circles = Description((ObjDesc("circle", "red"), ObjDesc("circle", "red")))
    assert truth(two_circles, scene) is False
    scene2 = Scene(scene.objects + (_obj("circle", "red", 0.2, 0.8),))
    assert truth(two_circles, scene2) is True
    # centres differ by a distance inside the ambiguous band: relation value None, truth None
    mid = (LEVEL + ORDERED) / 2
    a, b = _obj("circle", "red", 0.3, 0.2), _obj("square", "blue", 0.3 + mid, 0.8)
    assert relation_value(a, b, "left") is None
    assert truth(Description((ObjDesc("circle"), ObjDesc("square")), ((0, "left", 1),)), Scene((a, b))) is None
    assert not scene_valid(Scene((a, b)))


def test_sampled_scenes_valid_and_captions_true() -> None:
    rng = Rand(3)
    for _ in range(300):
        scene = sample_scene(SPEC, rng)
        assert scene_valid(scene)
        assert not scene.pairs() & set(SPEC.heldout_pairs)
        cap = sample_description(scene, rng)
        assert truth(cap.desc, scene) is True, cap.text


# ------------------------------------------------------------------------------------------------- edits

def test_every_negative_is_false_for_x_and_true_for_its_image(triplets_by_type) -> None:
    for edit_type, rows in triplets_by_type.items():
        for t in rows:
            assert len(t.negatives) == 1 and t.negatives[0].edit_type == edit_type
            neg = t.negatives[0]
            assert truth(t.caption.desc, t.scene) is True
            assert truth(neg.desc, t.scene) is False, (edit_type, t.caption.text, neg.text)
            assert truth(neg.desc, neg.scene) is True, (edit_type, neg.text)
            assert scene_valid(neg.scene)
            assert neg.positive_true_for_negative == (truth(t.caption.desc, neg.scene) is True)
            if edit_type.startswith("add"):
                assert neg.positive_true_for_negative  # adding information keeps y true for x'
            if edit_type.startswith("swap"):
                assert not neg.positive_true_for_negative


def test_swaps_keep_the_bag_of_words_and_replacements_change_one_word(triplets_by_type) -> None:
    for edit_type in ("swap_obj", "swap_att"):
        for t in triplets_by_type[edit_type]:
            assert _content_words(t.caption.text) == _content_words(t.negatives[0].text)
            assert t.caption.text != t.negatives[0].text
    for edit_type in ("replace_obj", "replace_att"):
        for t in triplets_by_type[edit_type]:
            pos, neg = _content_words(t.caption.text), _content_words(t.negatives[0].text)
            assert sum((pos - neg).values()) == 1 and sum((neg - pos).values()) == 1, (t.caption.text, t.negatives[0].text)
    for edit_type in ("add_obj", "add_att"):
        for t in triplets_by_type[edit_type]:
            pos, neg = _content_words(t.caption.text), _content_words(t.negatives[0].text)
            assert not pos - neg and neg - pos


def test_edit_type_names_are_the_contract_names() -> None:
    from tripletclip.data.contract import EDIT_TYPES

    assert SUGARCREPE_TYPES == EDIT_TYPES[:7]


# ------------------------------------------------------------------------------------------ held-out split

def test_heldout_compositions_never_in_training() -> None:
    held = set(SPEC.heldout_pairs)
    assert len(held) == 8
    # every colour and every shape stays in training
    train_pairs = set(SPEC.allowed_pairs())
    assert {c for c, _ in train_pairs} == set(SPEC.colours) and {s for _, s in train_pairs} == set(SPEC.shapes)
    gen = WorldGenerator(SPEC)
    rng = Rand(5)
    for _ in range(300):
        t = gen.triplet(rng, n_neg=2)
        scenes = [t.scene] + [n.scene for n in t.negatives]
        assert all(not s.pairs() & held for s in scenes)
        for d in [t.caption.desc] + [n.desc for n in t.negatives]:
            assert all((o.colour, o.shape) not in held for o in d.objects if o.colour)


def test_heldout_split_names_a_heldout_pair(triplets_by_type) -> None:
    held = set(SPEC.heldout_pairs)
    for rows in triplets_by_type.values():
        for t in rows:
            named = {(o.colour, o.shape) for o in t.caption.desc.objects if o.colour}
            assert bool(named & held) == (t.split == "heldout")


# ------------------------------------------------------------------------------------- grammar and parser

def test_parser_round_trip() -> None:
    gen = WorldGenerator(SPEC)
    rng = Rand(9)
    forms = Counter()
    for _ in range(400):
        t = gen.triplet(rng, n_neg=2)
        for cap in [t.caption] + list(t.negatives):
            text = cap.text
            parsed = parse_caption_full(text)
            assert parsed is not None, text
            assert canonical(parsed[0]) == canonical(cap.desc), text
            assert realise(*parsed) == text
            forms[parsed[1].form] += 1
    assert set(forms) == {"list", "rel", "rel_is", "shared", "chain"}


def test_inverted_paraphrase_same_meaning() -> None:
    desc = Description((ObjDesc("circle", "red"), ObjDesc("square", "blue", "striped")), ((0, "left", 1),), "sand")
    surf = Surface(form="rel", objs=(ObjSurface(), ObjSurface()), order=(0, 1), rel_choice=(0,))
    plain = realise(desc, surf)
    flipped = realise(desc, Surface(**{**{f: getattr(surf, f) for f in surf.__slots__}, "flip": True}))
    assert plain == "a red circle to the left of a blue striped square on sand"
    assert flipped == "a blue striped square to the right of a red circle on sand"
    assert canonical(parse_caption(plain)) == canonical(parse_caption(flipped)) == canonical(desc)


@pytest.mark.parametrize("text", ["", "hello world", "a red", "a red circle left of", "a red circle and",
                                  "a red blue circle", "a circle is", "a red circle left of a star on the moon"])
def test_parser_rejects_text_outside_the_grammar(text: str) -> None:
    assert parse_caption(text) is None


def test_render_caption_is_faithful_and_deterministic() -> None:
    text = "there is a big green star above a yellow heart with dots, and a small red circle at night"
    a, b = render_caption(text, seed=4), render_caption(text, seed=4)
    assert a.size == (64, 64) and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(render_caption(text, seed=5)))
    assert render_caption(text, seed=1, size=48).size == (48, 48)
    with pytest.raises(ValueError, match="not a caption"):
        render_caption("a photo of a dog")
    # more objects than a scene can hold
    with pytest.raises(ValueError, match="no scene"):
        render_caption("a red circle, a blue square, a green star, a pink heart and a cyan cross")


def test_scene_for_description_satisfies_it() -> None:
    from tripletclip.world import scene_for_description

    rng = Rand(2)
    for text in ("a red circle left of a blue square, which is below a green star",
                 "a small striped cross over a big heart and left of a plain diamond on wood"):
        desc = parse_caption(text)
        for _ in range(20):
            assert truth(desc, scene_for_description(desc, rng)) is True


# ------------------------------------------------------------------------------------- determinism, render

def test_generation_is_deterministic_by_seed() -> None:
    def run(seed: int):
        gen = WorldGenerator(SPEC)
        rng = Rand(seed)
        out = []
        for _ in range(20):
            t = gen.triplet(rng, n_neg=2)
            x, xs = gen.render(t, rng)
            out.append((t.caption.text, [n.text for n in t.negatives], x.tobytes(), [a.tobytes() for a in xs]))
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_renderer_output_and_speed_sanity() -> None:
    r = Renderer(64)
    rng = Rand(0)
    scenes = [sample_scene(SPEC, rng) for _ in range(200)]
    img = r.render(scenes[0], rng)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert img.std() > 5  # textured ground, objects and noise: not a flat image
    t0 = time.perf_counter()
    for s in scenes:
        r.render(s, rng)
    # a loose sanity bound (the benchmark number is ~0.1-0.2 ms per image on one core)
    assert time.perf_counter() - t0 < 4.0
    # objects are drawn where the scene says: the object's colour dominates at its centre on a plain ground
    obj = Obj("square", "blue", "plain", "large", 0.5, 0.5, 0.17)
    arr = r.render(Scene((obj,), "snow"), Rand(1)).astype(int)
    centre = arr[28:36, 28:36].reshape(-1, 3).mean(0)
    assert centre[2] > centre[0] + 80 and centre[2] > centre[1] + 60


def test_png_writer_round_trips_through_pil() -> None:
    import io

    from PIL import Image

    from tripletclip.world.render import png_bytes

    rng = np.random.default_rng(0)
    for shape in ((64, 64, 3), (17, 31, 3)):
        a = rng.integers(0, 256, size=shape, dtype=np.uint8)
        for level in (0, 6):
            im = Image.open(io.BytesIO(png_bytes(a, level)))
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), a)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4, 3), np.float32))


def test_clutter_scatters_specks_on_the_ground_only() -> None:
    from tripletclip.world.rand import Rand as R

    scene = Scene((Obj("square", "blue", "plain", "large", 0.5, 0.5, 0.17),), "snow")
    plain = Renderer(64).render(scene, R(3)).astype(int)
    busy = Renderer(64, clutter=60).render(scene, R(3)).astype(int)
    changed = np.abs(busy - plain).sum(-1) > 30
    assert 20 < changed.sum() < 4 * 60 + 1  # 2x2 specks, some overlapping
    assert not changed[28:36, 28:36].any()  # the object is drawn over the specks
    with pytest.raises(ValueError, match="clutter"):
        make_spec(8, 0, clutter=500)


# -------------------------------------------------------------------------------------------- oracles

def test_bag_of_words_oracle_regime(triplets_by_type) -> None:
    rows = [t for ts in triplets_by_type.values() for t in ts]
    scores = benchmark_scores(rows)["bow"]
    for split in ("seen", "heldout"):
        # swaps keep every word: the oracle ties on each row, i.e. sits exactly at chance
        assert scores[split]["swap_obj"] == scores[split]["swap_att"] == 50.0
        assert scores[f"{split}_ties"]["swap_att"] == 100.0
        assert scores[split]["replace_obj"] > 80.0
    gen = WorldGenerator(SPEC)
    rng = Rand(4)
    train = [gen.triplet(rng) for _ in range(256)]
    r = bow_inbatch_retrieval(train, 32)
    assert r["bind_i2t"] >= r["bow_i2t"] and r["bind_t2i"] >= r["bow_t2i"]
    assert r["bow_i2t"] > 75.0  # in-batch retrieval is largely solvable without binding
