"""Caption grammar of the embedded world: partial descriptions sampled from scenes, realised in several surface
forms.

A caption is a :class:`~tripletclip.world.caption.Description` (its meaning) plus a :class:`Surface` (how it
is worded: opening, adjective order, synonyms, which side of a relation is the subject, list or relation
clause). Keeping the two apart is what makes the negatives of SugarCrepe (arXiv 2306.14610) clean: an edit
changes the meaning and keeps the wording, so a swap is an exact permutation of the content words and a
replacement changes one word. Relation-inverted paraphrases ("a blue square to the right of a red circle")
are the same description realised with ``flip``.

Forms (NP = "a [size] [colour] [texture] shape [with stripes]"):
  list     NP | NP and NP | NP, NP(,) and NP
  rel      NP PHRASE NP [, and LIST]              e.g. "a red circle left of a big blue square"
  rel_is   NP is PHRASE NP [, and LIST]
  shared   NP PHRASE NP and PHRASE NP [, and LIST]  (one subject, two relations)
  chain    NP PHRASE NP, which is PHRASE NP [, and LIST]
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from tripletclip.world.caption import Description, ObjDesc, Relation
from tripletclip.world.rand import Rand
from tripletclip.world.scene import Scene, true_relations
from tripletclip.world.vocab import (
    BACKGROUND_PHRASES,
    INVERSE_RELATION,
    PREFIXES,
    RELATION_PHRASES,
    SIZE_WORDS,
    TEXTURE_ADJECTIVES,
    TEXTURE_WITH,
    article,
)

FORMS = ("list", "rel", "rel_is", "shared", "chain")


@dataclass(frozen=True, slots=True)
class ObjSurface:
    """Per-object word choices (indices into the synonym lists, taken modulo their length)."""

    size_choice: int = 0
    texture_choice: int = 0


@dataclass(frozen=True, slots=True)
class Surface:
    """How a description is worded; aligned with ``Description.objects`` / ``.relations``."""

    form: str
    objs: tuple[ObjSurface, ...]
    order: tuple[int, ...]  # mention order of the objects in lists
    rel_choice: tuple[int, ...] = ()  # phrase choice per relation
    prefix: int = 0  # index into PREFIXES
    flip: bool = False  # rel / rel_is: say it from the object's side with the inverse relation
    rel_first: int = 0  # shared / chain: which relation is said first
    colour_first: bool = True  # "red striped circle" vs "striped red circle"
    texture_with: bool = False  # "a red circle with stripes"
    oxford: bool = False  # "a, b, and c"
    bg_choice: int = 0  # background phrase choice

    def to_json(self) -> dict:
        return {
            "form": self.form, "objs": [[o.size_choice, o.texture_choice] for o in self.objs],
            "order": list(self.order), "rel_choice": list(self.rel_choice), "prefix": self.prefix,
            "flip": self.flip, "rel_first": self.rel_first, "colour_first": self.colour_first,
            "texture_with": self.texture_with, "oxford": self.oxford, "bg_choice": self.bg_choice,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Surface":
        return cls(
            form=d["form"], objs=tuple(ObjSurface(*o) for o in d["objs"]), order=tuple(d["order"]),
            rel_choice=tuple(d["rel_choice"]), prefix=d["prefix"], flip=d["flip"], rel_first=d["rel_first"],
            colour_first=d["colour_first"], texture_with=d["texture_with"], oxford=d["oxford"],
            bg_choice=d.get("bg_choice", 0),
        )


@dataclass(frozen=True)
class CaptionStyle:
    """How much of a scene a caption describes (real captions describe parts of scenes)."""

    p_all_objects: float = 0.75
    p_colour: float = 0.95
    p_texture: float = 0.6
    p_size: float = 0.6
    p_relation: float = 0.55
    p_second_relation: float = 0.4
    p_background: float = 0.9


@dataclass(frozen=True, slots=True)
class Captioned:
    """A caption's meaning and wording, plus ``binding``: the scene object each described object came from."""

    desc: Description
    surface: Surface
    binding: tuple[int, ...]

    @property
    def text(self) -> str:
        return realise(self.desc, self.surface)


# --------------------------------------------------------------------------------------------- realisation


def noun_phrase(o: ObjDesc, s: ObjSurface, colour_first: bool, texture_with: bool) -> str:
    words: list[str] = []
    if o.size is not None:
        syn = SIZE_WORDS[o.size]
        words.append(syn[s.size_choice % len(syn)])
    tex_adj: list[str] = []
    tail = ""
    if o.texture is not None:
        if texture_with and o.texture in TEXTURE_WITH:
            syn = TEXTURE_WITH[o.texture]
            tail = " " + syn[s.texture_choice % len(syn)]
        else:
            syn = TEXTURE_ADJECTIVES[o.texture]
            tex_adj.append(syn[s.texture_choice % len(syn)])
    col = [o.colour] if o.colour is not None else []
    words += (col + tex_adj) if colour_first else (tex_adj + col)
    words.append(o.shape)
    return f"{article(words[0])} {' '.join(words)}{tail}"


def _list_text(phrases: Sequence[str], oxford: bool) -> str:
    if len(phrases) == 1:
        return phrases[0]
    head = ", ".join(phrases[:-1])
    return f"{head}{',' if oxford and len(phrases) > 2 else ''} and {phrases[-1]}"


def _phrase(rel: str, choice: int) -> str:
    syn = RELATION_PHRASES[rel]
    return syn[choice % len(syn)]


def _orient(r: Relation, subject: int) -> Relation:
    """The relation written with ``subject`` as its subject."""
    i, rel, j = r
    return r if i == subject else (j, INVERSE_RELATION[rel], i)


def realise(desc: Description, surf: Surface) -> str:
    """The caption text of a description in a given wording."""
    text = _realise_objects(desc, surf)
    if desc.background is not None:
        syn = BACKGROUND_PHRASES[desc.background]
        text += " " + syn[surf.bg_choice % len(syn)]
    return text


def _realise_objects(desc: Description, surf: Surface) -> str:
    nps = [noun_phrase(o, s, surf.colour_first, surf.texture_with) for o, s in zip(desc.objects, surf.objs)]
    rels = desc.relations
    if surf.form == "list" or not rels:
        text = _list_text([nps[i] for i in surf.order], surf.oxford)
        return PREFIXES[surf.prefix] + text
    if len(rels) == 1:
        i, rel, j = rels[0]
        if surf.flip:
            i, rel, j = j, INVERSE_RELATION[rel], i
        verb = " is" if surf.form == "rel_is" else ""
        text = f"{nps[i]}{verb} {_phrase(rel, surf.rel_choice[0])} {nps[j]}"
    elif len(rels) == 2:
        first, second = (0, 1) if surf.rel_first == 0 else (1, 0)
        a, b = rels[first], rels[second]
        common = ({a[0], a[2]} & {b[0], b[2]}).pop()
        ca, cb = surf.rel_choice[first], surf.rel_choice[second]
        if surf.form == "shared":
            _, ra, oa = _orient(a, common)
            _, rb, ob = _orient(b, common)
            text = f"{nps[common]} {_phrase(ra, ca)} {nps[oa]} and {_phrase(rb, cb)} {nps[ob]}"
        else:  # chain: X ra common, which is rb Y
            xa, ra, _ = _orient(a, a[0] if a[0] != common else a[2])
            _, rb, ob = _orient(b, common)
            text = f"{nps[xa]} {_phrase(ra, ca)} {nps[common]}, which is {_phrase(rb, cb)} {nps[ob]}"
    else:
        raise ValueError(f"realise: at most 2 relations per caption, got {len(rels)}")
    related = {k for r in rels for k in (r[0], r[2])}
    rest = [nps[k] for k in surf.order if k not in related]
    if rest:
        text += ", and " + _list_text(rest, surf.oxford)
    prefix = "" if surf.form == "rel_is" else PREFIXES[surf.prefix]
    return prefix + text


# ------------------------------------------------------------------------------------------------ sampling


def _sample_obj_desc(o, style: CaptionStyle, rng: Rand) -> ObjDesc:
    u = rng.uniforms(3)
    return ObjDesc(
        shape=o.shape,
        colour=o.colour if u[0] < style.p_colour else None,
        texture=o.texture if u[1] < style.p_texture else None,
        size=o.size if u[2] < style.p_size else None,
    )


def random_obj_surface(rng: Rand) -> ObjSurface:
    return ObjSurface(rng.randint(2), rng.randint(2))


def sample_surface(desc: Description, rng: Rand) -> Surface:
    """A random wording for a description (any form its relations allow)."""
    k = len(desc.objects)
    n_rel = len(desc.relations)
    u = rng.uniforms(7)
    bits = [v < 0.5 for v in u[:4]]
    bg_choice = int(u[6] * 2)
    prefix = rng.randint(len(PREFIXES))
    if n_rel == 0:
        form = "list"
    elif n_rel == 1:
        form = "rel_is" if (PREFIXES[prefix] == "" and bits[0]) else "rel"
    else:
        form = "shared" if bits[0] else "chain"
    return Surface(
        form=form,
        objs=tuple(random_obj_surface(rng) for _ in range(k)),
        order=tuple(rng.permutation(k)),
        rel_choice=tuple(rng.randint(6) for _ in range(n_rel)),
        prefix=prefix,
        flip=bits[1],
        rel_first=int(bits[2]),
        colour_first=u[4] < 0.75,  # the common English order ("red striped") is the more frequent
        texture_with=u[5] < 0.25,
        oxford=bits[3],
        bg_choice=bg_choice,
    )


def sample_description(scene: Scene, rng: Rand, style: CaptionStyle = CaptionStyle(),
                       n_objects: Optional[int] = None) -> Captioned:
    """A random partial description of a scene (always true for it) with a random wording."""
    n = len(scene)
    if n_objects is None:
        n_objects = n if (n == 1 or rng.random() < style.p_all_objects) else 1 + rng.randint(n - 1)
    binding = tuple(rng.permutation(n)[:n_objects])
    objs = tuple(_sample_obj_desc(scene.objects[b], style, rng) for b in binding)
    relations: list[Relation] = []
    if n_objects >= 2 and rng.random() < style.p_relation:
        pairs = [(i, j) for i in range(n_objects) for j in range(i + 1, n_objects)]
        order = rng.permutation(len(pairs))
        n_rel = 2 if (n_objects >= 3 and rng.random() < style.p_second_relation) else 1
        for p in order[:n_rel]:
            i, j = pairs[p]
            if rng.random() < 0.5:
                i, j = j, i
            rels = true_relations(scene.objects[binding[i]], scene.objects[binding[j]])
            # NOTE: non-overlapping objects are always ordered on at least one axis, so rels is never empty
            relations.append((i, rng.choice(rels), j))
    background = scene.background if (scene.background is not None and rng.random() < style.p_background) else None
    desc = Description(objs, tuple(relations), background)
    return Captioned(desc, sample_surface(desc, rng), binding)


def add_object_surface(surf: Surface, rng: Rand) -> Surface:
    """The wording of a description after one more object is appended (inserted at a random list position)."""
    new = len(surf.objs)
    order = list(surf.order)
    order.insert(rng.randint(len(order) + 1), new)
    return replace(surf, objs=surf.objs + (random_obj_surface(rng),), order=tuple(order))
