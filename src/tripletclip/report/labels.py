"""What a reader sees for each key of ``results.json``: method, category and metric names, and reference lines.

``results.json`` of a comparison has one entry per method (``clip``, ``negclip``, ...) plus non-method keys
(``regime``, ``base``, ``paired``); :func:`method_items` is the one place that tells them apart. Every number
shown to a person is a percentage; :data:`UNIT` labels it.
"""
from __future__ import annotations

from typing import Any, Mapping

UNIT = "%"
NON_METHOD_KEYS = frozenset({"regime", "base", "paired", "units", "unit", "format"})

METHOD_NAMES = {"clip": "CLIP", "negclip": "NegCLIP", "negimage": "NegImage", "tripletclip": "TripletCLIP",
                "ceclip": "CE-CLIP", "base": "base (pretrained CLIP)"}
# the paired differences a reader is shown (results.json may hold more, e.g. per category)
PAIRED_METRICS = ("mean", "heldout_mean", "swap_mean", "replace_rel", "wino_image", "wino_group", "i2t_r1")
METRIC_NAMES = {"mean": "7-category mean", "heldout_mean": "held-out mean", "swap_mean": "swap mean",
                "replace_rel": "replace-rel", "wino_text": "Wino text", "wino_image": "Wino image",
                "wino_group": "Wino group", "i2t_r1": "i2t R@1", "t2i_r1": "t2i R@1"}

# The bag-of-words regime (Yuksekgonul et al., ICLR 2023): CLIP perceives objects and attributes (OpenAI CLIP is
# ~90% on SugarCrepe replace-obj) but binds them no better than a bag of words (swaps ~60-65%).
PERCEPTION = ("replace_obj", "replace_att")
BINDING = ("swap_obj", "swap_att")
RELATION = ("replace_rel",)
PERCEPTION_TARGET = 90.0
BAG_OF_WORDS_CEILING = 65.0
CHANCE = 50.0


def method_name(key: str) -> str:
    return METHOD_NAMES.get(key, key)


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", "-"))


def category_name(key: str) -> str:
    return key.replace("_", "-")


def method_items(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(method, entry) of a results dict, in its order, without the non-method keys."""
    return [(k, v) for k, v in results.items() if k not in NON_METHOD_KEYS and isinstance(v, Mapping)]


def part_of(entry: Mapping[str, Any], part: str) -> Mapping[str, Any]:
    """The ``seen`` or ``heldout`` record of an entry; ``seen`` falls back to the entry itself (its top-level
    ``per_seed`` and ``categories`` are the seen split)."""
    rec = entry.get(part)
    if isinstance(rec, Mapping) and rec.get("per_seed"):
        return rec
    return entry if part == "seen" and entry.get("per_seed") else {}


def seed_values(entry: Mapping[str, Any], part: str, key: str) -> list[float]:
    """Per-seed values of ``key`` in the ``part`` record (``seen``, ``heldout``, ``winoground``, ``retrieval``)."""
    rec = part_of(entry, part) if part in ("seen", "heldout") else entry.get(part, {})
    return [float(s[key]) for s in (rec.get("per_seed") or {}).values() if isinstance(s, Mapping) and key in s]
