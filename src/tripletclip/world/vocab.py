"""Vocabulary of the embedded compositional world: attribute values, their surface words, relations.

The world is in the spirit of CLEVR (arXiv 1612.06890) and ShapeWorld (arXiv 1704.04517), built for the hard
negatives of TripletCLIP (arXiv 2411.02545) and the seven categories of SugarCrepe (arXiv 2306.14610).
Every word here is a plain lowercase English word that open_clip's default BPE tokenizer splits cleanly.

A :class:`WorldSpec` selects a subset of the vocabulary (fewer shapes or colours for tiny demos) and the
held-out colour-shape pairs; everything else in the world reads the vocabulary only through a spec.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence, Optional

import numpy as np
from tripletclip.errors import InputError

# Attribute values (canonical names). Order matters only for determinism.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "heart", "crescent")
# RGB in [0, 1]; well separated hues so that colour is learnable at 32-64 px under noise.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.96, 0.52, 0.06),
    "yellow": (0.95, 0.86, 0.10),
    "green": (0.12, 0.66, 0.20),
    "cyan": (0.10, 0.78, 0.84),
    "blue": (0.14, 0.26, 0.90),
    "purple": (0.55, 0.20, 0.80),
    "pink": (0.96, 0.46, 0.74),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
SIZES: tuple[str, ...] = ("small", "large")
# Scene-level context (like "on the beach" in real captions): base colour of the ground and its texture kind.
# NOTE: context words let a caption single out its image in a batch without any binding, as on real data.
BACKGROUNDS: dict[str, tuple[tuple[float, float, float], str]] = {
    "grass": ((0.30, 0.48, 0.22), "grain"),
    "sand": ((0.78, 0.68, 0.48), "grain"),
    "snow": ((0.90, 0.91, 0.94), "smooth"),
    "water": ((0.20, 0.38, 0.58), "waves"),
    "wood": ((0.50, 0.34, 0.20), "planks"),
    "stone": ((0.47, 0.47, 0.47), "blotches"),
    "night": ((0.07, 0.08, 0.16), "stars"),
    "brick": ((0.56, 0.28, 0.22), "bricks"),
}
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "grass": ("on grass", "on the grass"),
    "sand": ("on sand", "on the sand"),
    "snow": ("in the snow", "on snow"),
    "water": ("on water", "on the water"),
    "wood": ("on wood", "on a wooden floor"),
    "stone": ("on stone", "on a stone floor"),
    "night": ("at night", "in the night"),
    "brick": ("against a brick wall", "in front of bricks"),
}
# Canonical relation names (subject REL object); image y grows downwards.
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
INVERSE_RELATION: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
RELATION_AXIS: dict[str, int] = {"left": 0, "right": 0, "above": 1, "below": 1}

# Surface forms. Synonyms map to one canonical value, so captions vary while meaning stays checkable.
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}
TEXTURE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "solid"),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted"),
    "checkered": ("checkered",),
}
# Post-nominal forms ("a red circle with stripes"); plain has none.
TEXTURE_WITH: dict[str, tuple[str, ...]] = {
    "striped": ("with stripes",),
    "dotted": ("with dots",),
    "checkered": ("with checks",),
}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
# Caption openings; "" is the bare noun phrase.
PREFIXES: tuple[str, ...] = ("", "", "there is ", "a photo of ", "an image of ", "a picture of ")

# Words that carry no concept (the bag-of-words oracle and the swap tests ignore them).
FUNCTION_WORDS: frozenset[str] = frozenset(
    "a an the and is of to on with which there photo image picture in at against front floor wall wooden".split()
)


@dataclass(frozen=True)
class WorldSpec:
    """Which attribute values exist, how many objects a scene holds and which compositions are held out.

    ``heldout_pairs`` are (colour, shape) pairs that never appear in training images or captions (positives
    and negatives); the benchmark reports them as the ``heldout`` split.
    """

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    textures: tuple[str, ...] = TEXTURES
    sizes: tuple[str, ...] = SIZES
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)  # () = plain grey backgrounds, never named
    min_objects: int = 1
    max_objects: int = 3
    object_scale: float = 1.0  # radii x this (larger objects: easier shapes for tiny models)
    ground_contrast: float = 1.0  # amplitude of the background textures (lower: easier perception)
    clutter: int = 0  # coloured specks scattered over the ground (colour must then be read at the objects)
    # how often a caption states an object's colour (None: the caption style's rate). NOTE: captions that leave
    # colours out can only be matched by shapes (and positions): in-batch contrast then needs shapes, which a
    # model otherwise learns late because colour alone tells most captions apart (docs/world_experiments.md, sections 1-2)
    p_colour: Optional[float] = None
    heldout_pairs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name, values, known in (
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, tuple(COLOURS)),
            ("textures", self.textures, TEXTURES),
            ("sizes", self.sizes, SIZES),
        ):
            bad = [v for v in values if v not in known]
            # NOTE: textures and sizes may have one value (then never stated nor edited); shapes and colours
            # are what the benchmark's object and attribute categories are about
            least = 2 if name in ("shapes", "colours") else 1
            if bad or len(values) < least:
                raise InputError(f"WorldSpec.{name}: need >= {least} values from {known}, got {values}")
        if not 0.5 <= self.object_scale <= 1.5:
            raise InputError(f"WorldSpec.object_scale: {self.object_scale} must be in [0.5, 1.5]")
        if not 0.0 <= self.ground_contrast <= 2.0:
            raise InputError(f"WorldSpec.ground_contrast: {self.ground_contrast} must be in [0, 2]")
        if self.p_colour is not None and not 0.0 <= self.p_colour <= 1.0:
            raise InputError(f"WorldSpec.p_colour: {self.p_colour} must be in [0, 1]")
        if not 0 <= self.clutter <= 200:
            raise InputError(f"WorldSpec.clutter: {self.clutter} must be in [0, 200]")
        if not 1 <= self.min_objects <= self.max_objects <= 3:
            raise InputError(f"WorldSpec: need 1 <= min_objects <= max_objects <= 3, got "
                             f"{self.min_objects}..{self.max_objects}")
        bad = [b for b in self.backgrounds if b not in BACKGROUNDS]
        if bad:
            raise InputError(f"WorldSpec.backgrounds: unknown {bad}; known: {tuple(BACKGROUNDS)}")
        for c, s in self.heldout_pairs:
            if c not in self.colours or s not in self.shapes:
                raise InputError(f"WorldSpec.heldout_pairs: ({c}, {s}) is not a (colour, shape) of this spec")

    @property
    def attribute_values(self) -> dict[str, tuple[str, ...]]:
        return {"shape": self.shapes, "colour": self.colours, "texture": self.textures, "size": self.sizes}

    def varies(self, attribute: str) -> bool:
        """Whether an attribute takes more than one value in this world (else captions never state it)."""
        return len(self.attribute_values[attribute]) > 1

    def allowed_pairs(self, heldout: bool = False) -> tuple[tuple[str, str], ...]:
        """(colour, shape) pairs usable in training (``heldout=False``) or the held-out ones."""
        return _allowed_pairs(self, heldout)

    def n_scene_contexts(self) -> int:
        return max(1, len(self.backgrounds))

    def n_object_types(self) -> int:
        return len(self.shapes) * len(self.colours) * len(self.textures) * len(self.sizes)

    def to_json(self) -> dict:
        return {
            "shapes": list(self.shapes),
            "colours": list(self.colours),
            "textures": list(self.textures),
            "sizes": list(self.sizes),
            "backgrounds": list(self.backgrounds),
            "min_objects": self.min_objects,
            "max_objects": self.max_objects,
            "object_scale": self.object_scale,
            "ground_contrast": self.ground_contrast,
            "clutter": self.clutter,
            "p_colour": self.p_colour,
            "heldout_pairs": [list(p) for p in self.heldout_pairs],
        }

    @classmethod
    def from_json(cls, d: dict) -> "WorldSpec":
        return cls(
            shapes=tuple(d["shapes"]),
            colours=tuple(d["colours"]),
            textures=tuple(d["textures"]),
            sizes=tuple(d["sizes"]),
            backgrounds=tuple(d.get("backgrounds", ())),
            min_objects=int(d["min_objects"]),
            max_objects=int(d["max_objects"]),
            object_scale=float(d.get("object_scale", 1.0)),
            ground_contrast=float(d.get("ground_contrast", 1.0)),
            clutter=int(d.get("clutter", 0)),
            p_colour=None if d.get("p_colour") is None else float(d["p_colour"]),
            heldout_pairs=tuple(tuple(p) for p in d["heldout_pairs"]),  # type: ignore[misc]
        )


@functools.lru_cache(maxsize=64)
def _allowed_pairs(spec: WorldSpec, heldout: bool) -> tuple[tuple[str, str], ...]:
    held = set(spec.heldout_pairs)
    return tuple((c, s) for c in spec.colours for s in spec.shapes if ((c, s) in held) == heldout)


def choose_heldout_pairs(colours: Sequence[str], shapes: Sequence[str], n: int, seed: int) -> tuple[tuple[str, str], ...]:
    """Pick ``n`` (colour, shape) pairs to withhold, spread so that no colour or shape loses more than
    ceil(n / len) pairs: every colour and every shape stays well represented in training.

    A seeded Latin-square diagonal: pair k is (colour[p_c(k)], shape[p_s(k)]) for two random permutations.
    """
    if n < 0 or n > len(colours) * len(shapes) // 2:
        raise InputError(f"heldout pairs: n={n} must be in [0, {len(colours) * len(shapes) // 2}]")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    pc = rng.permutation(len(colours))
    ps = rng.permutation(len(shapes))
    pairs: list[tuple[str, str]] = []
    k = 0
    while len(pairs) < n:
        # diagonal k of a cyclic Latin square: (i, i + shift) over the shorter axis
        shift = k // min(len(colours), len(shapes))
        i = k % min(len(colours), len(shapes))
        pairs.append((colours[pc[i]], shapes[ps[(i + shift) % len(shapes)]]))
        k += 1
    return tuple(pairs)


def article(word: str) -> str:
    """English indefinite article for the next word."""
    return "an" if word[0] in "aeiou" else "a"
