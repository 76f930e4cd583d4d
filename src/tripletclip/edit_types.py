"""The one edit vocabulary: what a hard negative changed. Torch-free, so the world, the demo and the CLI can
import it without the training stack.

SugarCrepe (Hsieh et al., arXiv 2306.14610) sorts hard negatives into seven types in three categories;
SugarCrepe++ (arXiv 2406.11171) keeps the replace and swap ones. CE-CLIP (Zhang et al., arXiv 2306.08832) uses
four types that map onto ours (docs/methods.md section 2.5). Every negative the project makes or reads carries one
of :data:`EDIT_TYPES`: the seven, ``llm`` (an LLM rewrite of unknown type) or ``unknown``; the batch contract
stores it as an index into that tuple (:func:`edit_type_id`).
"""
from __future__ import annotations

# SugarCrepe's seven types, in the order of its paper and files
SUGARCREPE_TYPES: tuple[str, ...] = (
    "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att",
)
# its three categories (the paper's Replace / Swap / Add are sample-weighted means over these)
SUGARCREPE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "replace": ("replace_obj", "replace_att", "replace_rel"),
    "swap": ("swap_obj", "swap_att"),
    "add": ("add_obj", "add_att"),
}
# SugarCrepe++ has no add subsets (two positives with the same meaning cannot both add nothing)
SUGARCREPE_PP_TYPES: tuple[str, ...] = SUGARCREPE_CATEGORIES["replace"] + SUGARCREPE_CATEGORIES["swap"]

# An add edit keeps the positive caption true of the negative image (y adds nothing false about x'), so the
# pair (x, y), (x', y') is not a Winoground group: each caption must be false for the other image.
ADD_TYPES: tuple[str, ...] = SUGARCREPE_CATEGORIES["add"]

# CE-CLIP's four negative types expressed in the SugarCrepe vocabulary
CECLIP_TYPES: dict[str, tuple[str, ...]] = {
    "swap": SUGARCREPE_CATEGORIES["swap"],
    "replace_attribute": ("replace_att",),
    "replace_object": ("replace_obj",),
    "replace_relation": ("replace_rel",),
}

# Every edit type the data may carry: the seven, then the generic origins of a negative
EDIT_TYPES: tuple[str, ...] = SUGARCREPE_TYPES + ("llm", "unknown")
EDIT_TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(EDIT_TYPES)}


def edit_type_id(name: str | None) -> int:
    """Index of an edit type in :data:`EDIT_TYPES`; unknown or missing names map to ``unknown``."""
    return EDIT_TYPE_INDEX.get(name or "unknown", EDIT_TYPE_INDEX["unknown"])


def known_edit_type(name: str | None) -> str:
    """``name`` when it is one of :data:`EDIT_TYPES`, else ``unknown``."""
    return name if name in EDIT_TYPE_INDEX else "unknown"
