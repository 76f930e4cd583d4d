"""Scene graphs of the embedded world: objects with attributes and continuous positions, relations from geometry.

A scene holds 1-3 objects (4 after an add-object edit). Each object has a shape, a colour, a texture and a
size (radius drawn from two well separated ranges), and a continuous centre. Spatial relations are derived from
the centres with a margin, never stored: along each axis a pair is either clearly ordered (the centres differ by
at least ``ORDERED``) or level (at most ``LEVEL``); placements in between are rejected, so that every relation
statement about a valid scene is unambiguously true or false (the caption truth checker relies on this).
Coordinates are fractions of the image side, y grows downwards.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from tripletclip.errors import InputError
from tripletclip.world.rand import Rand
from tripletclip.world.vocab import RELATION_AXIS, WorldSpec

# Geometry, in fractions of the image side.
RADIUS_RANGE: dict[str, tuple[float, float]] = {"small": (0.095, 0.115), "large": (0.16, 0.185)}
BORDER = 0.02  # free margin between an object and the image border
GAP = 0.035  # free margin between two objects (centre distance >= r1 + r2 + GAP)
LEVEL = 0.06  # |centre difference| <= LEVEL: level on that axis (neither left nor right)
ORDERED = 0.16  # |centre difference| >= ORDERED: clearly ordered on that axis
MAX_SCENE_OBJECTS = 4


@dataclass(frozen=True, slots=True)
class Obj:
    """One object: categorical attributes plus centre (x, y) and radius r (fractions of the image side)."""

    shape: str
    colour: str
    texture: str
    size: str
    x: float
    y: float
    r: float

    def attr(self, name: str) -> str:
        return getattr(self, name)


@dataclass(frozen=True, slots=True)
class Scene:
    """An ordered tuple of objects (order carries no meaning) on a background (None: plain grey)."""

    objects: tuple[Obj, ...]
    background: Optional[str] = None

    def __len__(self) -> int:
        return len(self.objects)

    def with_objects(self, objects: Sequence[Obj]) -> "Scene":
        return Scene(tuple(objects), self.background)

    def to_json(self) -> dict:
        return {
            "background": self.background,
            "objects": [{"shape": o.shape, "colour": o.colour, "texture": o.texture, "size": o.size,
                         "x": round(o.x, 5), "y": round(o.y, 5), "r": round(o.r, 5)} for o in self.objects],
        }

    @classmethod
    def from_json(cls, d: dict) -> "Scene":
        return cls(tuple(Obj(**row) for row in d["objects"]), d.get("background"))

    def pairs(self) -> set[tuple[str, str]]:
        """The (colour, shape) compositions present."""
        return {(o.colour, o.shape) for o in self.objects}


def relation_value(a: Obj, b: Obj, rel: str) -> Optional[bool]:
    """Truth of "a REL b": True, False, or None when the placement is ambiguous (between LEVEL and ORDERED)."""
    axis = RELATION_AXIS[rel]
    d = (b.x - a.x) if axis == 0 else (b.y - a.y)
    if rel in ("right", "below"):
        d = -d
    # d > 0 means a is on the REL side of b
    if d >= ORDERED:
        return True
    if d <= LEVEL:
        return False
    return None


def true_relations(a: Obj, b: Obj) -> list[str]:
    """Relations that clearly hold for "a REL b" (0, 1 or 2 of them: one per non-level axis)."""
    return [rel for rel in ("left", "right", "above", "below") if relation_value(a, b, rel) is True]


def _valid(xs: Sequence[float], ys: Sequence[float], rs: Sequence[float]) -> bool:
    """Inside the image, no overlap, no ambiguous relation (plain Python: n <= 4 beats numpy overheads)."""
    n = len(xs)
    for i in range(n):
        r = rs[i]
        if xs[i] - r < BORDER or xs[i] + r > 1 - BORDER or ys[i] - r < BORDER or ys[i] + r > 1 - BORDER:
            return False
        for j in range(i):
            dx = abs(xs[i] - xs[j])
            dy = abs(ys[i] - ys[j])
            # NOTE: the ambiguous band (LEVEL, ORDERED) is rejected on both axes, so relations are crisp.
            if LEVEL < dx < ORDERED or LEVEL < dy < ORDERED:
                return False
            gap = r + rs[j] + GAP
            if dx * dx + dy * dy < gap * gap:
                return False
    return True


def scene_valid(scene: Scene) -> bool:
    """Inside the image, no overlaps, no ambiguous relation."""
    objs = scene.objects
    if not 1 <= len(objs) <= MAX_SCENE_OBJECTS:
        return False
    return _valid([o.x for o in objs], [o.y for o in objs], [o.r for o in objs])


def _allowed_intervals(lo: float, hi: float, others: Sequence[float]) -> list[tuple[float, float]]:
    """[lo, hi] minus the ambiguous bands (LEVEL, ORDERED) on both sides of every coordinate in ``others``."""
    intervals = [(lo, hi)]
    for o in others:
        for a, b in ((o - ORDERED, o - LEVEL), (o + LEVEL, o + ORDERED)):
            nxt = []
            for s, e in intervals:
                if b <= s or a >= e:
                    nxt.append((s, e))
                    continue
                if s < a:
                    nxt.append((s, a))
                if b < e:
                    nxt.append((b, e))
            intervals = nxt
    return intervals


def place(radii: Sequence[float], rng: Rand, fixed: Sequence[Obj] = (), tries: int = 60) -> Optional[np.ndarray]:
    """Centres [n, 2] for new objects of the given radii, valid together with the ``fixed`` objects.

    Objects are placed one at a time; each coordinate is drawn uniformly from the positions that keep every
    relation crisp (outside the ambiguous bands of the objects placed so far), then overlaps are rejected.
    None if no valid placement was found within ``tries`` proposals (the caller retries or counts a skip).
    A proposal uses two uniforms (x, then y) and the stream is advanced past the proposals made only.
    """
    xs = [o.x for o in fixed]
    ys = [o.y for o in fixed]
    rs = [o.r for o in fixed]
    n_fixed = len(xs)
    budget = tries
    for r in radii:
        lo, hi = r + BORDER, 1 - r - BORDER
        ix = _allowed_intervals(lo, hi, xs)
        iy = _allowed_intervals(lo, hi, ys)
        tx = sum(e - s for s, e in ix)
        ty = sum(e - s for s, e in iy)
        if tx <= 0 or ty <= 0:
            return None
        if budget <= 0:
            return None
        # NOTE: rejection sampling takes ~30 proposals per scene in the demo world, so the loop is inlined over
        # uniforms read ahead (consumed up to the accepted proposal only). x (and y) is the point at fraction u of
        # the allowed intervals' total length, computed with the float operations of the reference loop in
        # tests/test_shards_tar_writer.py, so scenes and stream are those of one rng.uniforms(2) per proposal.
        others = [(xs[k], ys[k], (r + rs[k] + GAP) * (r + rs[k] + GAP)) for k in range(len(xs))]
        # the allowed positions are the product ix x iy, so the farthest one from an object is a corner of its
        # bounding box: when even that overlaps the object, all proposals are rejected (about 60% of the failed
        # placements of the demo world) and the stream moves past them undrawn. The margin dwarfs rounding.
        xlo, xhi = min(s for s, _ in ix), max(e for _, e in ix)
        ylo, yhi = min(s for s, _ in iy), max(e for _, e in iy)
        for ox, oy, gap2 in others:
            fx, fy = max(ox - xlo, xhi - ox), max(oy - ylo, yhi - oy)
            if fx * fx + fy * fy < gap2 - 1e-9:
                rng.skip(2 * budget)
                return None
        u = rng.peek(2 * budget)
        used = 0
        found = False
        while used < 2 * budget:
            x, y = _at(u[used] * tx, ix), _at(u[used + 1] * ty, iy)
            used += 2
            for ox, oy, gap2 in others:
                dx, dy = x - ox, y - oy
                if dx * dx + dy * dy < gap2:
                    break
            else:
                found = True
                break
        rng.skip(used)
        budget -= used // 2
        if not found:
            return None
        xs.append(x)
        ys.append(y)
        rs.append(r)
    return np.array([xs[n_fixed:], ys[n_fixed:]]).T


def _at(t: float, intervals: list[tuple[float, float]]) -> float:
    """The point at length ``t`` along the concatenated ``intervals`` (the reference loop's float operations)."""
    for s, e in intervals:
        if t <= e - s:
            return s + t
        t -= e - s
    return intervals[-1][1]


def sample_radius(size: str, rng: Rand, scale: float = 1.0) -> float:
    """A radius in the range of ``size``, times the spec's ``object_scale``."""
    lo, hi = RADIUS_RANGE[size]
    return scale * (lo + (hi - lo) * rng.random())


def sample_attributes(spec: WorldSpec, rng: Rand, pairs: Sequence[tuple[str, str]]
                      ) -> tuple[str, str, str, str]:
    """(shape, colour, texture, size) with the colour-shape pair drawn uniformly from ``pairs``."""
    colour, shape = rng.choice(pairs)
    return shape, colour, rng.choice(spec.textures), rng.choice(spec.sizes)


def sample_scene(spec: WorldSpec, rng: Rand, n_objects: Optional[int] = None,
                 heldout: bool = False) -> Scene:
    """A random valid scene.

    ``heldout=False``: only training compositions. ``heldout=True``: object 0 has a held-out colour-shape
    pair (the others are training pairs), for the held-out benchmark split.
    """
    train_pairs = spec.allowed_pairs(heldout=False)
    while True:
        n = n_objects or spec.min_objects + rng.randint(spec.max_objects - spec.min_objects + 1)
        attrs = [sample_attributes(spec, rng, train_pairs) for _ in range(n)]
        if heldout:
            held = spec.allowed_pairs(heldout=True)
            if not held:
                raise InputError("sample_scene(heldout=True): the spec has no held-out pairs")
            attrs[0] = sample_attributes(spec, rng, held)
        radii = [sample_radius(a[3], rng, spec.object_scale) for a in attrs]
        background = rng.choice(spec.backgrounds) if spec.backgrounds else None
        centres = place(radii, rng)
        if centres is not None:
            return Scene(tuple(Obj(*a, x=float(c[0]), y=float(c[1]), r=rad)
                               for a, c, rad in zip(attrs, centres, radii)), background)


def with_attribute(obj: Obj, name: str, value: str, rng: Rand, scale: float = 1.0) -> Obj:
    """A copy of ``obj`` with one attribute changed (a size change redraws the radius)."""
    if name == "size":
        return replace(obj, size=value, r=sample_radius(value, rng, scale))
    return replace(obj, **{name: value})


def replace_object(scene: Scene, index: int, obj: Obj) -> Scene:
    objs = list(scene.objects)
    objs[index] = obj
    return scene.with_objects(objs)


def relocate(scene: Scene, rng: Rand, keep: Sequence[int] = ()) -> Optional[Scene]:
    """The same objects with new valid positions for all objects not in ``keep``; None if impossible."""
    fixed = [scene.objects[i] for i in keep]
    moving = [i for i in range(len(scene)) if i not in set(keep)]
    centres = place([scene.objects[i].r for i in moving], rng, fixed=fixed)
    if centres is None:
        return None
    objs = list(scene.objects)
    for i, c in zip(moving, centres):
        objs[i] = replace(objs[i], x=float(c[0]), y=float(c[1]))
    return scene.with_objects(objs)
