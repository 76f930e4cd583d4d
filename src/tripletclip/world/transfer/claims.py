"""What a transfer caption claims, and the oracle that checks a claim against the scene graph.

A claim names objects by (colour, shape) and at most one spatial relation between two of them. It is true of a
scene iff distinct scene objects can be assigned to the named ones (matching colour and shape) such that the
relation holds between the assigned objects' centres. The geometry is recomputed here from the coordinates with
the world's margins (``scene.LEVEL`` / ``scene.ORDERED``), not taken from the training path's truth checker.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Optional

from tripletclip.world.scene import LEVEL, ORDERED, Obj, Scene

RELATIONS = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Claim:
    """``objects``: (colour, shape) per named object; ``relation``: (i, rel, j) = "object i is REL object j"."""

    objects: tuple[tuple[str, str], ...]
    relation: Optional[tuple[int, str, int]] = None


def relation_holds(a: Obj, b: Obj, rel: str) -> Optional[bool]:
    """"a REL b" from the centres: True (ordered by >= ORDERED), False (level or the other way), None (ambiguous)."""
    if rel in ("left", "right"):
        d = b.x - a.x if rel == "left" else a.x - b.x
    else:  # y grows downwards: a is above b when a.y < b.y
        d = b.y - a.y if rel == "above" else a.y - b.y
    if d >= ORDERED:
        return True
    if d <= LEVEL:
        return False
    return None


def holds(claim: Claim, scene: Scene) -> Optional[bool]:
    """Truth of ``claim`` on ``scene`` by brute force over assignments; None if some assignment is ambiguous
    and none is true (the benchmark never keeps such rows)."""
    objs = scene.objects
    n = len(claim.objects)
    ambiguous = False
    for assign in permutations(range(len(objs)), n):
        if any((objs[k].colour, objs[k].shape) != claim.objects[i] for i, k in enumerate(assign)):
            continue
        if claim.relation is None:
            return True
        i, rel, j = claim.relation
        v = relation_holds(objs[assign[i]], objs[assign[j]], rel)
        if v is True:
            return True
        ambiguous |= v is None
    return None if ambiguous else False
