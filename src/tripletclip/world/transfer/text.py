"""Wordings of transfer claims: ``transfer_text`` (the structures of ordinary captions, written here) and
``paraphrase_text`` (structures the training grammar never produces: predicative colours, fronted relations,
possessive relations).

A wording is chosen once per symmetric pair (``Wording``) and applied to both claims of the pair, so that the
two captions differ only where the claims differ, as SugarCrepe's minimal pairs do (arXiv 2306.14610).
"""
from __future__ import annotations

from dataclasses import dataclass

from tripletclip.world.transfer.claims import INVERSE, Claim

OPENINGS = ("", "there is ", "a photo of ", "an image of ", "a picture of ")
REL_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
# paraphrase: "the blue circle has a red star on its left"
REL_POSSESSIVE = {"left": "on its left", "right": "on its right", "above": "above it", "below": "below it"}


@dataclass(frozen=True)
class Wording:
    """Random choices of a wording, applied alike to both captions of a pair."""

    opening: int = 0
    template: int = 0
    phrase: int = 0
    flip: bool = False  # say a relation from its object's side, with the inverse relation
    order: bool = False  # lists: name the second object first


def _np(colour: str, shape: str) -> str:
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"


def _oriented(claim: Claim, flip: bool) -> tuple[int, str, int]:
    assert claim.relation is not None
    i, rel, j = claim.relation
    return (j, INVERSE[rel], i) if flip else (i, rel, j)


def transfer_text(claim: Claim, w: Wording) -> str:
    """"a red star to the left of a blue circle", "there is a red star and a blue circle", "a red star is over ..."."""
    nps = [_np(c, s) for c, s in claim.objects]
    if claim.relation is None:
        order = list(range(len(nps)))[::-1] if w.order else list(range(len(nps)))
        body = " and ".join(nps[k] for k in order) if len(nps) == 2 else ", ".join(nps[k] for k in order)
        return OPENINGS[w.opening % len(OPENINGS)] + body
    i, rel, j = _oriented(claim, w.flip)
    phrase = REL_WORDS[rel][w.phrase % len(REL_WORDS[rel])]
    if w.template % 2:
        return f"{nps[i]} is {phrase} {nps[j]}"
    return f"{OPENINGS[w.opening % len(OPENINGS)]}{nps[i]} {phrase} {nps[j]}"


def paraphrase_text(claim: Claim, w: Wording) -> str:
    """The same claim in a structure the training grammar lacks (predicative colour, fronted or possessive
    relation)."""
    (c0, s0), (c1, s1) = claim.objects[0], claim.objects[1]
    if claim.relation is None:
        first, second = ((c1, s1), (c0, s0)) if w.order else ((c0, s0), (c1, s1))
        if w.template % 2:
            return f"one {first[1]} is {first[0]} and one {second[1]} is {second[0]}"
        return f"the {first[1]} is {first[0]} and the {second[1]} is {second[0]}"
    i, rel, j = _oriented(claim, w.flip)
    (ci, si), (cj, sj) = claim.objects[i], claim.objects[j]
    phrase = REL_WORDS[rel][w.phrase % len(REL_WORDS[rel])]
    t = w.template % 3
    if t == 0:  # "the star to the left of the circle is red, and the circle is blue"
        return f"the {si} {phrase} the {sj} is {ci}, and the {sj} is {cj}"
    if t == 1:  # "to the left of the blue circle is a red star" (the first, full phrase: "left of ..." is odd)
        return f"{REL_WORDS[rel][0]} the {cj} {sj} is {_np(ci, si)}"
    return f"the {cj} {sj} has {_np(ci, si)} {REL_POSSESSIVE[rel]}"  # "the blue circle has a red star on its left"
