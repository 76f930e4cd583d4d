"""Caption semantics of the embedded world and the caption truth checker over scene graphs.

A caption means a :class:`Description`: some object descriptions (shape always, colour / texture / size
optional, as real captions describe parts of scenes) and some spatial relations between them. A description
is true for a scene iff the described objects can be mapped to *distinct* scene objects whose attributes match
and whose relations hold (existential reading, as in ShapeWorld, arXiv 1704.04517).

The checker is what makes the hard negatives of TripletCLIP (arXiv 2411.02545) verifiable here: every negative
caption y' is checked to be false for the positive image x and true for the rendered negative image x'.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import permutations
from typing import Optional

from tripletclip.world.scene import Obj, Scene, relation_value
from tripletclip.world.vocab import INVERSE_RELATION

ATTRIBUTES: tuple[str, ...] = ("colour", "texture", "size")  # optional attributes (shape is always stated)


@dataclass(frozen=True, slots=True)
class ObjDesc:
    """What a caption says about one object; None means "not mentioned"."""

    shape: str
    colour: Optional[str] = None
    texture: Optional[str] = None
    size: Optional[str] = None

    def matches(self, obj: Obj) -> bool:
        return (
            self.shape == obj.shape
            and (self.colour is None or self.colour == obj.colour)
            and (self.texture is None or self.texture == obj.texture)
            and (self.size is None or self.size == obj.size)
        )

    def stated(self) -> list[str]:
        """Names of the optional attributes this description states."""
        return [a for a in ATTRIBUTES if getattr(self, a) is not None]

    def words(self) -> tuple[str, ...]:
        return tuple(v for v in (self.size, self.colour, self.texture, self.shape) if v is not None)


Relation = tuple[int, str, int]  # (subject index, canonical relation, object index) into Description.objects


@dataclass(frozen=True, slots=True)
class Description:
    """The meaning of one caption."""

    objects: tuple[ObjDesc, ...]
    relations: tuple[Relation, ...] = ()
    background: Optional[str] = None

    def __post_init__(self) -> None:
        n = len(self.objects)
        for i, rel, j in self.relations:
            if not (0 <= i < n and 0 <= j < n and i != j) or rel not in INVERSE_RELATION:
                raise ValueError(f"Description: bad relation ({i}, {rel}, {j}) over {n} objects")

    def with_object(self, index: int, obj: ObjDesc) -> "Description":
        objs = list(self.objects)
        objs[index] = obj
        return replace(self, objects=tuple(objs))

    def to_json(self) -> dict:
        return {
            "objects": [{k: getattr(o, k) for k in ("shape", "colour", "texture", "size")} for o in self.objects],
            "relations": [list(r) for r in self.relations],
            "background": self.background,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Description":
        return cls(tuple(ObjDesc(**o) for o in d["objects"]), tuple(tuple(r) for r in d["relations"]),  # type: ignore[misc]
                   d.get("background"))


def truth(desc: Description, scene: Scene) -> Optional[bool]:
    """True if some injective mapping of described objects to scene objects satisfies everything; False if
    none can; None if the best mapping only fails on an ambiguous relation (never for valid scenes)."""
    objs = scene.objects
    k = len(desc.objects)
    if k > len(objs) or (desc.background is not None and desc.background != scene.background):
        return False
    cands = [[s for s, o in enumerate(objs) if d.matches(o)] for d in desc.objects]
    if any(not c for c in cands):
        return False
    result: Optional[bool] = False
    for assign in permutations(range(len(objs)), k):
        if any(assign[i] not in cands[i] for i in range(k)):
            continue
        values = [relation_value(objs[assign[i]], objs[assign[j]], rel) for i, rel, j in desc.relations]
        if all(v is True for v in values):
            return True
        if all(v is not False for v in values):
            result = None
    return result


def canonical(desc: Description) -> tuple:
    """A key equal for two descriptions iff they mean the same thing up to object order and relation
    direction ("a left of b" == "b right of a")."""
    k = len(desc.objects)
    best: Optional[tuple] = None
    for perm in permutations(range(k)):
        # perm[new] = old: relabel objects, then write every relation in its left/above direction
        inv = {old: new for new, old in enumerate(perm)}
        rels = []
        for i, rel, j in desc.relations:
            a, b = inv[i], inv[j]
            if rel in ("right", "below"):
                a, b, rel = b, a, INVERSE_RELATION[rel]
            rels.append((a, rel, b))
        key = (tuple(_obj_key(desc.objects[old]) for old in perm), tuple(sorted(rels)), desc.background or "")
        if best is None or key < best:
            best = key
    assert best is not None
    return best


def _obj_key(o: ObjDesc) -> tuple[str, str, str, str]:
    return (o.shape, o.colour or "", o.texture or "", o.size or "")


def describe_fully(scene: Scene) -> Description:
    """The description stating every attribute of every object and the background (no relations)."""
    return Description(tuple(ObjDesc(o.shape, o.colour, o.texture, o.size) for o in scene.objects), (),
                       scene.background)


def concept_words(desc: Description) -> list[str]:
    """The bag of concept words of a caption (attribute values, shapes, canonical relation names, background)."""
    words = [w for o in desc.objects for w in o.words()]
    words += [rel for _, rel, _ in desc.relations]
    if desc.background is not None:
        words.append(desc.background)
    return words
