"""What a reader sees for each key of ``results.json``: method, split, category and metric names, and the
thresholds of the bag-of-words regime (one definition, used by the report's words, its figure and the README).

``results.json`` of a comparison has one entry per method (``clip``, ``negclip``, any registered objective)
plus non-method keys (``regime``, ``base``, ``paired``); :func:`method_items` is the one place that tells them
apart. An entry holds one record per benchmark split (``seen``, ``heldout``, and any other split a run adds,
e.g. ``transfer`` or ``paraphrase``): a mapping with ``categories``, ``mean``, ``per_seed`` and ``spread``;
:func:`split_names` finds them without a fixed list. Every number shown to a person is a percentage.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from tripletclip.edit_types import SUGARCREPE_TYPES
from tripletclip.report.intervals import finite

UNIT = "%"
NON_METHOD_KEYS = frozenset({"regime", "base", "paired", "units", "unit", "format"})

METHOD_NAMES = {"clip": "CLIP", "negclip": "NegCLIP", "negimage": "NegImage", "tripletclip": "TripletCLIP",
                "ceclip": "CE-CLIP", "fscclip": "FSC-CLIP", "clic": "CLIC", "degla": "DeGLA", "cyclip": "CyCLIP",
                "distill": "distill", "base": "base (pretrained CLIP)"}
# the paired differences a reader is shown first (results.json may hold more, e.g. per category)
PAIRED_METRICS = ("mean", "heldout_mean", "swap_mean", "replace_rel", "wino_image", "wino_group", "i2t_r1")
METRIC_NAMES = {"mean": "7-category mean", "heldout_mean": "held-out mean", "swap_mean": "swap mean",
                "replace_rel": "replace-rel", "wino_text": "Wino text", "wino_image": "Wino image",
                "wino_group": "Wino group", "i2t_r1": "i2t R@1", "t2i_r1": "t2i R@1"}
SPLIT_NAMES = {"seen": "seen compositions", "heldout": "held-out compositions", "transfer": "transfer",
               "paraphrase": "paraphrased captions"}
# keys of a method entry that are records but not benchmark splits of the SugarCrepe-format table
NOT_SPLITS = frozenset({"winoground", "retrieval", "zeroshot", "spread", "categories", "per_seed", "paired"})

# The bag-of-words regime (Yuksekgonul et al., ICLR 2023). One definition: the report's verdict and figure and
# the README's wording use these numbers (tests/test_report.py checks the README against them). A model
# *perceives* when replace-obj and replace-att are both at or above PERCEIVES_AT, and *does not bind* when the
# mean of swap-obj and swap-att is at or below BAG_OF_WORDS_CEILING. Both are set by OpenAI CLIP ViT-B/32 on
# SugarCrepe, the model the regime was named after (docs/methods.md: replace-obj 90.9, replace-att 80.1,
# swap-obj 61.4, swap-att 64.0): it perceives and does not bind.
PERCEPTION = ("replace_obj", "replace_att")
BINDING = ("swap_obj", "swap_att")
RELATION = ("replace_rel",)
PERCEIVES_AT = 80.0
BAG_OF_WORDS_CEILING = 65.0
CHANCE = 50.0


def regime_definition() -> str:
    """The definition in words, as the report's figure caption and the README state it."""
    return (f"a model perceives when replace-obj and replace-att are both at least {PERCEIVES_AT:.0f}%, and binds "
            f"no better than a bag of words when its swap mean (swap-obj, swap-att) is at most "
            f"{BAG_OF_WORDS_CEILING:.0f}%")


def method_name(key: str) -> str:
    """Display name of a method key; a demo variant ``objective+part`` names each part (``TripletCLIP+CyCLIP``)."""
    if key in METHOD_NAMES:
        return METHOD_NAMES[key]
    return "+".join(METHOD_NAMES.get(part, part) for part in key.split("+"))


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", "-"))


def category_name(key: str) -> str:
    return key.replace("_", "-")


def split_name(key: str) -> str:
    return SPLIT_NAMES.get(key, key.replace("_", " "))


def short(text: str, width: int = 28) -> str:
    """``text`` cut in the middle to at most ``width`` characters (plot labels of very long method names)."""
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width - width // 2):]


def method_items(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(method, entry) of a results dict, in its order, without the non-method keys."""
    return [(k, v) for k, v in results.items() if k not in NON_METHOD_KEYS and isinstance(v, Mapping)]


def _is_split(rec: Any) -> bool:
    return isinstance(rec, Mapping) and (isinstance(rec.get("per_seed"), Mapping) or
                                         isinstance(rec.get("categories"), Mapping))


def split_names(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The benchmark splits any of ``entries`` holds: ``seen`` and ``heldout`` first, then the others in the
    order met. An entry's top-level ``per_seed``/``categories`` is its seen split."""
    found: list[str] = []
    for e in entries:
        if not isinstance(e, Mapping):
            continue
        if part_of(e, "seen"):
            found.append("seen")
        found += [k for k, v in e.items() if k not in NOT_SPLITS and _is_split(v)]
    uniq = list(dict.fromkeys(found))
    return [s for s in ("seen", "heldout") if s in uniq] + [s for s in uniq if s not in ("seen", "heldout")]


def split_categories(entries: Sequence[Mapping[str, Any]], part: str) -> list[str]:
    """The categories of split ``part`` across entries: SugarCrepe's seven in their order, then any others."""
    keys: list[str] = []
    for e in entries:
        rec = part_of(e, part) if isinstance(e, Mapping) else {}
        keys += list((rec.get("categories") or {}) if isinstance(rec.get("categories"), Mapping) else [])
        for s in (rec.get("per_seed") or {}).values() if isinstance(rec.get("per_seed"), Mapping) else []:
            keys += list(s) if isinstance(s, Mapping) else []
    uniq = [k for k in dict.fromkeys(keys) if k != "mean"]
    return [c for c in SUGARCREPE_TYPES if c in uniq] + [c for c in uniq if c not in SUGARCREPE_TYPES]


def part_of(entry: Mapping[str, Any], part: str) -> Mapping[str, Any]:
    """The record of split ``part`` of an entry; ``seen`` falls back to the entry itself (its top-level
    ``per_seed`` and ``categories`` are the seen split). {} when the split is absent."""
    rec = entry.get(part)
    if _is_split(rec):
        return rec
    return entry if part == "seen" and _is_split(entry) else {}


def seed_values(entry: Mapping[str, Any], part: str, key: str) -> list[float]:
    """Finite per-seed values of ``key`` in the ``part`` record (a split, ``winoground``, ``retrieval``); a
    record without ``per_seed`` gives its aggregate (``categories[key]`` or ``key``) as one value. A failed
    seed (NaN, None) is left out."""
    if not isinstance(entry, Mapping):
        return []
    rec = part_of(entry, part) if part not in NOT_SPLITS else entry.get(part)
    if not isinstance(rec, Mapping):
        return []
    per_seed = rec.get("per_seed")
    if isinstance(per_seed, Mapping) and per_seed:
        return finite(s.get(key) for s in per_seed.values() if isinstance(s, Mapping))
    cats = rec.get("categories")
    return finite([cats.get(key) if isinstance(cats, Mapping) and key in cats else rec.get(key)])
