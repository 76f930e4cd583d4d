"""Symmetric pairs of the transfer benchmark: two scenes, two claims, each claim true of its own scene only.

A pair is made by an edit of a scene that contains a held-out composition (written here, independent of the
training negatives' ``SCENE_EDITS``), in five of SugarCrepe's categories (arXiv 2306.14610):

- ``replace_obj`` / ``replace_att``: one object's shape / colour becomes another value;
- ``replace_rel``: the two objects exchange places, and the claim's relation becomes its inverse;
- ``swap_obj`` / ``swap_att``: the two objects exchange shapes / colours (bindings change, words stay).

Each pair gives two rows, (x, y, y') and (x', y', y), and one Winoground-style group (arXiv 2204.03162). The add
categories are left out: an add foil is its caption plus words, true of the edited image too, so it has no
symmetric row, and a text-only model tells it by length (SugarCrepe's own add categories show this artefact).
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tripletclip.utils.files import sha256_file, write_json_atomic, write_jsonl_atomic
from tripletclip.world.rand import Rand
from tripletclip.world.render import encode_image, get_renderer
from tripletclip.world.scene import Obj, Scene, place, sample_radius, scene_valid
from tripletclip.world.transfer.claims import INVERSE, RELATIONS, Claim, holds, relation_holds
from tripletclip.world.transfer.text import Wording, paraphrase_text, transfer_text
from tripletclip.world.transfer.textonly import BigramScorer, text_only_accuracy, unigram_scorer
from tripletclip.world.vocab import WorldSpec

TRANSFER_FORMAT = "tripletclip-world-transfer/1"
TRANSFER_CATEGORIES = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")
SPLITS = ("transfer", "paraphrase")
COLLAPSED = {"replace_obj": "Object", "swap_obj": "Object", "replace_att": "Attribute", "swap_att": "Attribute",
             "replace_rel": "Relation"}
_MAX_TRIES = 200


@dataclass(frozen=True)
class TransferPair:
    """Scenes a and b, their claims, and the two wordings of both claims (a's caption first)."""

    category: str
    scene_a: Scene
    scene_b: Scene
    claim_a: Claim
    claim_b: Claim
    transfer: tuple[str, str]
    paraphrase: tuple[str, str]


@dataclass
class PairStats:
    """What pair sampling rejected, so that nothing is dropped silently."""

    tries: int = 0
    invalid: int = 0  # placement impossible or the edited scene invalid / ambiguous
    in_training: int = 0  # a caption occurs among the training texts
    by_category: dict[str, int] = field(default_factory=dict)


def _obj(spec: WorldSpec, pair: tuple[str, str], rng: Rand) -> Obj:
    colour, shape = pair
    size = rng.choice(spec.sizes)
    return Obj(shape, colour, rng.choice(spec.textures), size, 0.0, 0.0, sample_radius(size, rng, spec.object_scale))


def _true_relations(a: Obj, b: Obj) -> list[str]:
    return [rel for rel in RELATIONS if relation_holds(a, b, rel) is True]


def _edit(category: str, spec: WorldSpec, a: Scene, rng: Rand) -> Optional[tuple[Scene, Claim, Claim]]:
    """Scene b and the claims of a and b for one category (objects 0 and 1 of ``a`` are the named ones)."""
    o0, o1 = a.objects
    rels = _true_relations(o0, o1)
    if not rels:
        return None
    with_rel = category == "replace_rel" or rng.random() < 0.5
    rel = (0, rng.choice(rels), 1) if with_rel else None
    names = [(o0.colour, o0.shape), (o1.colour, o1.shape)]
    claim_a = Claim(tuple(names), rel)
    if category in ("replace_obj", "replace_att"):
        k = rng.randint(2)
        attr, values = ("shape", spec.shapes) if category == "replace_obj" else ("colour", spec.colours)
        used = {getattr(o0, attr), getattr(o1, attr)}
        value = rng.choice([v for v in values if v not in used])
        objs = [o0, o1]
        objs[k] = replace(objs[k], **{attr: value})
        b = Scene(tuple(objs), a.background)
        names_b = [(o.colour, o.shape) for o in objs]
        return b, claim_a, Claim(tuple(names_b), rel)
    if category == "replace_rel":
        assert rel is not None
        b = Scene((replace(o0, x=o1.x, y=o1.y), replace(o1, x=o0.x, y=o0.y)), a.background)
        return b, claim_a, Claim(tuple(names), (0, INVERSE[rel[1]], 1))
    if category == "swap_att":
        b = Scene((replace(o0, colour=o1.colour), replace(o1, colour=o0.colour)), a.background)
    elif category == "swap_obj":
        b = Scene((replace(o0, shape=o1.shape), replace(o1, shape=o0.shape)), a.background)
    else:
        raise ValueError(f"unknown transfer category {category!r}")
    return b, claim_a, Claim(tuple((o.colour, o.shape) for o in b.objects), rel)


def make_pair(spec: WorldSpec, category: str, rng: Rand, forbidden: frozenset[str] = frozenset(),
              stats: Optional[PairStats] = None) -> TransferPair:
    """One verified symmetric pair: scene a holds a held-out colour-shape pair; both objects differ in colour
    and shape (so that every swap changes the bindings); every caption is checked on both scenes."""
    if not spec.heldout_pairs:
        raise ValueError("make_pair: the world spec holds out no colour-shape pairs")
    stats = stats if stats is not None else PairStats()
    for _ in range(_MAX_TRIES):
        stats.tries += 1
        held = rng.choice(spec.heldout_pairs)
        partner = rng.choice([(c, s) for c in spec.colours for s in spec.shapes if c != held[0] and s != held[1]])
        objs = [_obj(spec, held, rng), _obj(spec, partner, rng)]
        centres = place([o.r for o in objs], rng)
        if centres is None:
            stats.invalid += 1
            continue
        objs = [replace(o, x=float(c[0]), y=float(c[1])) for o, c in zip(objs, centres)]
        a = Scene(tuple(objs), rng.choice(spec.backgrounds) if spec.backgrounds else None)
        edited = _edit(category, spec, a, rng)
        if edited is None or not scene_valid(edited[0]):
            stats.invalid += 1
            continue
        b, ca, cb = edited
        # the oracle reads the scenes: each claim true of its own scene and false of the other
        if not (holds(ca, a) is True and holds(cb, b) is True and holds(ca, b) is False and holds(cb, a) is False):
            stats.invalid += 1
            continue
        w = Wording(opening=rng.randint(5), template=rng.randint(6), phrase=rng.randint(3),
                    flip=rng.random() < 0.5, order=rng.random() < 0.5)
        t = (transfer_text(ca, w), transfer_text(cb, w))
        p = (paraphrase_text(ca, w), paraphrase_text(cb, w))
        if t[0] == t[1] or p[0] == p[1]:
            stats.invalid += 1
            continue
        if any(x in forbidden for x in (*t, *p)):
            stats.in_training += 1
            stats.by_category[category] = stats.by_category.get(category, 0) + 1
            continue
        # NOTE: order carries no meaning in a scene; shuffle so that object 0 is not always the held-out one
        if rng.random() < 0.5:
            a, b = Scene(a.objects[::-1], a.background), Scene(b.objects[::-1], b.background)
        return TransferPair(category, a, b, ca, cb, t, p)
    raise RuntimeError(f"make_pair: no valid {category} pair in {_MAX_TRIES} tries")


def training_texts(shard_dir: str | Path) -> tuple[set[str], set[tuple[str, str]]]:
    """Every caption and negative caption of the training shards in ``shard_dir`` (``*.tar``), and every
    (caption, negative caption) pair."""
    texts: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for tar in sorted(Path(shard_dir).glob("*.tar")):
        with tarfile.open(tar) as tf:
            caps: dict[str, list[str]] = {}
            negs: dict[str, list[str]] = {}
            for m in tf:
                if m.name.endswith(".json"):
                    caps[m.name[:-5]] = json.loads(tf.extractfile(m).read())["captions"]  # type: ignore[union-attr]
                elif m.name.endswith(".neg.txt"):
                    negs[m.name[:-8]] = tf.extractfile(m).read().decode("utf-8").split("\n")  # type: ignore[union-attr]
            for key, cs in caps.items():
                texts.update(cs)
                for n in negs.get(key, []):
                    texts.add(n)
                    pairs.update((c, n) for c in cs)
    return texts, pairs


def _rows(pairs: Sequence[TransferPair], split: str, names: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for p, (na, nb) in zip(pairs, names):
        ya, yb = p.transfer if split == "transfer" else p.paraphrase
        rows.append({"filename": na, "caption": ya, "negative_caption": yb, "split": split})
        rows.append({"filename": nb, "caption": yb, "negative_caption": ya, "split": split})
    return rows


def build_transfer(out_dir: str | Path, spec: WorldSpec, seed: int, image_size: int, n_pairs: int = 150,
                   training: Optional[tuple[set[str], set[tuple[str, str]]]] = None) -> dict[str, Any]:
    """Write the transfer benchmark folder (the world bench layout: ``sugarcrepe/``, ``winoground/``, ``images/``,
    ``manifest.json``) with ``2 * n_pairs`` rows per category and split; returns the manifest.

    ``training``: the training texts and (caption, negative) pairs (:func:`training_texts`); captions found there
    are rejected, and the manifest counts the overlap of the written rows (zero by construction).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    texts, train_pairs = training if training is not None else (set(), set())
    forbidden = frozenset(texts)
    renderer = get_renderer(image_size, ground_contrast=spec.ground_contrast, clutter=spec.clutter)
    stats = PairStats()
    per_cat: dict[str, list[dict[str, Any]]] = {}
    wino: list[dict[str, Any]] = []
    scenes: list[dict[str, Any]] = []
    for ci, cat in enumerate(TRANSFER_CATEGORIES):
        rng = Rand([seed, 0x7A, ci])
        pairs = [make_pair(spec, cat, rng, forbidden, stats) for _ in range(n_pairs)]
        names = [(f"{cat}-{k:05d}-a.png", f"{cat}-{k:05d}-b.png") for k in range(n_pairs)]
        for p, (na, nb) in zip(pairs, names):
            for scene, name in ((p.scene_a, na), (p.scene_b, nb)):
                (out / "images" / name).write_bytes(encode_image(renderer.render(scene, rng), "png"))
                scenes.append({"image": name, "scene": scene.to_json()})
            for split in SPLITS:
                ya, yb = p.transfer if split == "transfer" else p.paraphrase
                wino.append({"id": len(wino), "image_0": na[:-4], "image_1": nb[:-4], "caption_0": ya,
                             "caption_1": yb, "tag": cat, "secondary_tag": "", "num_main_preds": 1,
                             "collapsed_tag": COLLAPSED[cat], "split": split})
        per_cat[cat] = _rows(pairs, "transfer", names) + _rows(pairs, "paraphrase", names)
    (out / "sugarcrepe").mkdir(exist_ok=True)
    (out / "winoground").mkdir(exist_ok=True)
    for cat, rows in per_cat.items():
        write_json_atomic(out / "sugarcrepe" / f"{cat}.json", {str(i): r for i, r in enumerate(rows)})
    write_jsonl_atomic(out / "winoground" / "examples.jsonl", wino)
    write_jsonl_atomic(out / "scenes.jsonl", scenes)
    all_rows = [r for rows in per_cat.values() for r in rows]
    overlap = {"training_texts": len(texts), "training_pairs": len(train_pairs),
               "captions_in_training": sum(r["caption"] in texts for r in all_rows),
               "negative_captions_in_training": sum(r["negative_caption"] in texts for r in all_rows),
               "pairs_in_training": sum((r["caption"], r["negative_caption"]) in train_pairs for r in all_rows)}
    text_only: dict[str, Any] = {}
    if texts:
        scorers = {"bigram": BigramScorer(sorted(texts)), "unigram": unigram_scorer(sorted(texts))}
        text_only = {name: {split: {cat: text_only_accuracy([r for r in rows if r["split"] == split], f)
                                    for cat, rows in per_cat.items()} for split in SPLITS}
                     for name, f in scorers.items()}
    files = sorted(p for p in out.rglob("*.json*") if p.name != "manifest.json")
    img_hash = hashlib.sha256()
    for p in sorted((out / "images").glob("*.png")):
        img_hash.update(f"{p.name} {sha256_file(p)}\n".encode())
    manifest = {
        "format": TRANSFER_FORMAT, "seed": seed, "image_size": image_size, "spec": spec.to_json(),
        "categories": list(TRANSFER_CATEGORIES), "splits": list(SPLITS),
        "counts": {cat: {s: sum(r["split"] == s for r in rows) for s in SPLITS} for cat, rows in per_cat.items()},
        "winoground_counts": {s: sum(g["split"] == s for g in wino) for s in SPLITS},
        "rejected": {"tries": stats.tries, "invalid": stats.invalid, "in_training": stats.in_training,
                     "in_training_by_category": stats.by_category},
        "training_overlap": overlap, "text_only": text_only,
        "files": {str(p.relative_to(out)): sha256_file(p) for p in files},
        "images": {"count": 2 * n_pairs * len(TRANSFER_CATEGORIES), "sha256": img_hash.hexdigest()},
        "protocol": "SugarCrepe: correct iff s(image, caption) > s(image, negative_caption), ties wrong; rows come "
                    "in symmetric pairs, so a text-only scorer is at chance",
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def iter_rows(bench: str | Path, split: str) -> Iterable[dict[str, Any]]:
    """Rows of one split of a written transfer folder, with their category."""
    for cat in TRANSFER_CATEGORIES:
        path = Path(bench) / "sugarcrepe" / f"{cat}.json"
        for r in json.loads(path.read_text()).values():
            if r["split"] == split:
                yield {**r, "category": cat}
