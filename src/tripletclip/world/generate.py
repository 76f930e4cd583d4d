"""Triplets of the embedded world: (x, y, [y'_k], [x'_k]) with verified hard negatives, for training and the
benchmark.

One triplet is TripletCLIP's unit of data (arXiv 2411.02545): a positive image x with its caption y, and per
negative k an edit type, a negative caption y'_k false for x and a negative image x'_k rendered from the edited
scene, true for y'_k. Training triplets never contain held-out compositions (neither in x, y, y' nor x');
benchmark triplets come in a ``seen`` split (same rule) and a ``heldout`` split (x contains a held-out
colour-shape pair that y names).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from tripletclip.errors import InputError
from tripletclip.edit_types import SUGARCREPE_TYPES
from tripletclip.world.edits import EditContext, SceneNegative, make_negative
from tripletclip.world.grammar import Captioned, CaptionStyle, sample_description
from tripletclip.world.rand import Rand
from tripletclip.world.render import encode_image, get_renderer
from tripletclip.world.scene import Scene, sample_scene
from tripletclip.world.vocab import WorldSpec

_CAPTIONS_PER_SCENE = 4  # captions tried on one scene before drawing a new scene
_MAX_ATTEMPTS = 40


@dataclass
class Triplet:
    """A positive (scene, caption) and its verified negatives; ``extra`` holds more captions of x."""

    scene: Scene
    caption: Captioned
    negatives: list[SceneNegative]
    extra: list[Captioned] = field(default_factory=list)
    split: str = "train"

    @property
    def captions(self) -> list[str]:
        return [self.caption.text] + [c.text for c in self.extra]

    def meta(self) -> dict:
        """JSON-able record of everything needed to re-check or re-render the triplet."""
        return {
            "split": self.split,
            "scene": self.scene.to_json(),
            "caption": {"desc": self.caption.desc.to_json(), "surface": self.caption.surface.to_json(),
                        "binding": list(self.caption.binding)},
            "negatives": [
                {"edit_type": n.edit_type, "caption": n.text, "desc": n.desc.to_json(),
                 "scene": n.scene.to_json(), "positive_true_for_negative": n.positive_true_for_negative}
                for n in self.negatives
            ],
        }


@dataclass
class GeneratorStats:
    """Counts of what generation skipped, so that nothing is lost silently."""

    attempts: int = 0
    scenes: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # edit type -> triplets missing that negative

    def merge(self, other: "GeneratorStats") -> None:
        self.attempts += other.attempts
        self.scenes += other.scenes
        for k, v in other.failed.items():
            self.failed[k] = self.failed.get(k, 0) + v


class WorldGenerator:
    """Samples triplets of one world spec (no I/O; rendering via :meth:`render`)."""

    def __init__(self, spec: WorldSpec, style: CaptionStyle = CaptionStyle(), image_size: int = 64,
                 edit_types: Sequence[str] = SUGARCREPE_TYPES) -> None:
        bad = [t for t in edit_types if t not in SUGARCREPE_TYPES]
        if bad or not edit_types:
            raise InputError(f"WorldGenerator: edit types must be a non-empty subset of {SUGARCREPE_TYPES}, got {bad}")
        self.spec = spec
        self.style = self.fit_style(style)
        self.edit_types = tuple(edit_types)
        self.renderer = get_renderer(image_size, ground_contrast=spec.ground_contrast, clutter=spec.clutter)
        self.stats = GeneratorStats()
        self._train_ctx = EditContext(spec, forbid_heldout=True)
        self._heldout_ctx = EditContext(spec, forbid_heldout=False)

    def fit_style(self, style: CaptionStyle) -> CaptionStyle:
        """``style`` without the attributes that take a single value in this world (they carry no information,
        so captions never state them)."""
        return replace(style, p_texture=style.p_texture if self.spec.varies("texture") else 0.0,
                       p_size=style.p_size if self.spec.varies("size") else 0.0,
                       p_colour=style.p_colour if self.spec.p_colour is None else self.spec.p_colour)

    def triplet(self, rng: Rand, n_neg: int = 1, n_captions: int = 1, types: Optional[Sequence[str]] = None,
                split: str = "train") -> Triplet:
        """A triplet with ``n_neg`` negatives of distinct edit types (drawn uniformly from the generator's
        types unless ``types`` is given). Types that cannot be realised within the attempt budget are skipped
        and counted in ``stats.failed``; the triplet then has fewer negatives."""
        if split not in ("train", "seen", "heldout"):
            raise ValueError(f"triplet: split must be train, seen or heldout, got '{split}'")
        if types is None:
            order = rng.permutation(len(self.edit_types))[:n_neg]
            types = [self.edit_types[i] for i in order]
        heldout = split == "heldout"
        ctx = self._heldout_ctx if heldout else self._train_ctx
        best: Optional[tuple[Scene, Captioned, list[SceneNegative]]] = None
        scene: Optional[Scene] = None
        for attempt in range(_MAX_ATTEMPTS):
            self.stats.attempts += 1
            if attempt % _CAPTIONS_PER_SCENE == 0:
                scene = sample_scene(self.spec, rng, heldout=heldout)
                self.stats.scenes += 1
            assert scene is not None
            cap = sample_description(scene, rng, self.style)
            if heldout and not _names_heldout(cap, self.spec):
                continue
            negs = []
            for t in types:
                neg = make_negative(cap, scene, t, ctx, rng)
                if neg is not None:
                    negs.append(neg)
            if len(negs) == len(types):
                best = (scene, cap, negs)
                break
            if best is None or len(negs) > len(best[2]):
                best = (scene, cap, negs)
        if best is None:  # only possible for held-out splits whose captions never name the pair
            raise RuntimeError("triplet: no caption naming a held-out pair within the attempt budget")
        scene, cap, negs = best
        got = {n.edit_type for n in negs}
        for t in types:
            if t not in got:
                self.stats.failed[t] = self.stats.failed.get(t, 0) + 1
        extra = [sample_description(scene, rng, self.style) for _ in range(n_captions - 1)]
        return Triplet(scene, cap, negs, extra, split)

    def render(self, triplet: Triplet, rng: Rand) -> tuple[np.ndarray, list[np.ndarray]]:
        """uint8 arrays of x and of every x'_k (fresh rendering noise for each)."""
        return self.renderer.render(triplet.scene, rng), [self.renderer.render(n.scene, rng) for n in triplet.negatives]


def _names_heldout(cap: Captioned, spec: WorldSpec) -> bool:
    """Whether the caption names a held-out colour-shape pair (colour stated on a held-out object)."""
    held = set(spec.heldout_pairs)
    return any(o.colour is not None and (o.colour, o.shape) in held for o in cap.desc.objects)


def measure_throughput(n: int = 2000, image_size: int = 64, seed: int = 0, n_neg: int = 1,
                       spec: Optional[WorldSpec] = None, fmt: str = "png") -> dict[str, float]:
    """Triplets per second on one core: generation + rendering (arrays), and including image encoding."""
    spec = spec or WorldSpec()
    gen = WorldGenerator(spec, image_size=image_size)
    rng = Rand(seed)
    for _ in range(50):  # warm the mask caches
        gen.render(gen.triplet(rng, n_neg=n_neg), rng)
    t0 = time.perf_counter()
    rendered = []
    for _ in range(n):
        t = gen.triplet(rng, n_neg=n_neg)
        t.caption.text, [x.text for x in t.negatives]
        rendered.append(gen.render(t, rng))
    t1 = time.perf_counter()
    for x, negs in rendered:
        encode_image(x, fmt)
        for a in negs:
            encode_image(a, fmt)
    t2 = time.perf_counter()
    return {
        "triplets": n,
        "image_size": image_size,
        "n_neg": n_neg,
        "triplets_per_s": n / (t1 - t0),
        "triplets_per_s_encoded": n / (t2 - t0),
        "encode_format": fmt,
    }
