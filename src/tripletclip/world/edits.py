"""Hard negatives by scene-graph edits, in SugarCrepe's seven categories (arXiv 2306.14610).

Each edit takes a scene x, a caption y of it (meaning, wording and which scene object each described object
is) and proposes a negative caption y' with the same wording plus the edited scene from which the negative
image x' is rendered, so that (x', y') is a true pair: the role an LLM and SDXL-Turbo play in TripletCLIP
(arXiv 2411.02545, Sec. 3). Every proposal is checked with the caption truth checker: y' must be false for x
and true for x' (and x' must be a valid scene); a proposal failing the check is discarded, never kept.

Deliberate difference from the paper: x' is the rendering of the *edited scene graph*, not an independent
generation from y' alone, so x and x' differ only where y and y' differ (a minimal pair). Rendering noise and
background are drawn afresh for x'.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from tripletclip.registry import Registry
from tripletclip.world.caption import ATTRIBUTES, Description, ObjDesc, truth
from tripletclip.world.grammar import Captioned, Surface, add_object_surface
from tripletclip.world.rand import Rand
from tripletclip.world.scene import (
    MAX_SCENE_OBJECTS,
    Obj,
    Scene,
    place,
    relation_value,
    relocate,
    replace_object,
    sample_attributes,
    sample_radius,
    scene_valid,
    with_attribute,
)
from tripletclip.world.vocab import INVERSE_RELATION, RELATIONS, WorldSpec


@dataclass(frozen=True)
class EditContext:
    """What an edit may produce. ``forbid_heldout``: the edited scene must not contain held-out pairs
    (training data and the ``seen`` benchmark split)."""

    spec: WorldSpec
    forbid_heldout: bool = True


@dataclass(frozen=True, slots=True)
class SceneNegative:
    """A verified hard negative: caption y' (meaning + wording), edited scene x', edit type.

    ``positive_true_for_negative``: whether y is also true for x' (always the case for add edits, which only
    add information; never for replace/swap). Winoground-style groups need it False.
    """

    edit_type: str
    desc: Description
    surface: Surface
    scene: Scene
    positive_true_for_negative: bool

    @property
    def text(self) -> str:
        from tripletclip.world.grammar import realise

        return realise(self.desc, self.surface)


Proposal = tuple[Description, Surface, Scene]
EditFn = Callable[[Captioned, Scene, EditContext, Rand], Optional[Proposal]]
SCENE_EDITS: Registry[EditFn] = Registry("world edit")


def _pick(rng: Rand, seq: list):
    return rng.choice(seq)


def _fix_placement(scene: Scene, rng: Rand, moved: list[int]) -> Optional[Scene]:
    """The scene if valid; else new positions for the ``moved`` objects (others stay); else None."""
    if scene_valid(scene):
        return scene
    keep = [k for k in range(len(scene)) if k not in moved]
    return relocate(scene, rng, keep=keep)


@SCENE_EDITS.register("replace_obj")
def replace_obj(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Change the shape of one described object ("a red circle" -> "a red star")."""
    i = rng.randint(len(cap.desc.objects))
    b = cap.binding[i]
    old = cap.desc.objects[i]
    shape = _pick(rng, [s for s in ctx.spec.shapes if s != old.shape])
    new_scene = replace_object(scene, b, replace(scene.objects[b], shape=shape))
    return cap.desc.with_object(i, replace(old, shape=shape)), cap.surface, new_scene


@SCENE_EDITS.register("replace_att")
def replace_att(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Change one stated attribute of one described object ("a red circle" -> "a blue circle")."""
    options = [(i, a) for i, o in enumerate(cap.desc.objects) for a in o.stated()]
    if not options:
        return None
    i, a = _pick(rng, options)
    b = cap.binding[i]
    old = cap.desc.objects[i]
    value = _pick(rng, [v for v in ctx.spec.attribute_values[a] if v != getattr(old, a)])
    new_scene = _fix_placement(replace_object(scene, b, with_attribute(scene.objects[b], a, value, rng, ctx.spec.object_scale)), rng, [b])
    if new_scene is None:
        return None
    return cap.desc.with_object(i, replace(old, **{a: value})), cap.surface, new_scene


@SCENE_EDITS.register("replace_rel")
def replace_rel(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Change one stated relation to one that is false in x ("left of" -> "right of" / "above")."""
    if not cap.desc.relations:
        return None
    k = rng.randint(len(cap.desc.relations))
    i, rel, j = cap.desc.relations[k]
    a, b = scene.objects[cap.binding[i]], scene.objects[cap.binding[j]]
    options = [r for r in RELATIONS if r != rel and relation_value(a, b, r) is False]
    if not options:
        return None
    new_rel = _pick(rng, options)
    rels = list(cap.desc.relations)
    rels[k] = (i, new_rel, j)
    desc = replace(cap.desc, relations=tuple(rels))
    if new_rel == INVERSE_RELATION[rel]:
        # the minimal edit of the image: the two objects exchange places
        objs = list(scene.objects)
        bi, bj = cap.binding[i], cap.binding[j]
        objs[bi] = replace(a, x=b.x, y=b.y)
        objs[bj] = replace(b, x=a.x, y=a.y)
        swapped = scene.with_objects(objs)
        if scene_valid(swapped) and truth(desc, swapped) is True:
            return desc, cap.surface, swapped
    for _ in range(12):
        moved = relocate(scene, rng)
        if moved is not None and truth(desc, moved) is True:
            return desc, cap.surface, moved
    return None


def _swap_pair(cap: Captioned, rng: Rand, attr: str) -> Optional[tuple[int, int]]:
    objs = cap.desc.objects
    pairs = [(i, j) for i in range(len(objs)) for j in range(i + 1, len(objs))
             if getattr(objs[i], attr) is not None and getattr(objs[j], attr) is not None
             and getattr(objs[i], attr) != getattr(objs[j], attr)]
    return _pick(rng, pairs) if pairs else None


@SCENE_EDITS.register("swap_obj")
def swap_obj(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Exchange the shapes of two described objects; attributes stay in place
    ("a red circle and a blue square" -> "a red square and a blue circle")."""
    pair = _swap_pair(cap, rng, "shape")
    if pair is None:
        return None
    i, j = pair
    oi, oj = cap.desc.objects[i], cap.desc.objects[j]
    desc = cap.desc.with_object(i, replace(oi, shape=oj.shape)).with_object(j, replace(oj, shape=oi.shape))
    bi, bj = cap.binding[i], cap.binding[j]
    si, sj = scene.objects[bi], scene.objects[bj]
    new_scene = replace_object(replace_object(scene, bi, replace(si, shape=sj.shape)), bj, replace(sj, shape=si.shape))
    return desc, cap.surface, new_scene


@SCENE_EDITS.register("swap_att")
def swap_att(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Exchange one attribute between two described objects, words and all
    ("a red circle and a blue square" -> "a blue circle and a red square")."""
    attrs = [a for a in ATTRIBUTES if _swap_pair(cap, rng, a) is not None]
    if not attrs:
        return None
    a = _pick(rng, attrs)
    pair = _swap_pair(cap, rng, a)
    assert pair is not None
    i, j = pair
    oi, oj = cap.desc.objects[i], cap.desc.objects[j]
    vi, vj = getattr(oi, a), getattr(oj, a)
    desc = cap.desc.with_object(i, replace(oi, **{a: vj})).with_object(j, replace(oj, **{a: vi}))
    # NOTE: the synonym choice travels with the value, so the swap is an exact permutation of the words
    surf = cap.surface
    if a in ("size", "texture"):
        field = "size_choice" if a == "size" else "texture_choice"
        objs = list(surf.objs)
        objs[i], objs[j] = replace(objs[i], **{field: getattr(objs[j], field)}), replace(objs[j], **{field: getattr(objs[i], field)})
        surf = replace(surf, objs=tuple(objs))
    bi, bj = cap.binding[i], cap.binding[j]
    si, sj = scene.objects[bi], scene.objects[bj]
    if a == "size":
        ni, nj = replace(si, size=sj.size, r=sj.r), replace(sj, size=si.size, r=si.r)
    else:
        ni, nj = replace(si, **{a: getattr(sj, a)}), replace(sj, **{a: getattr(si, a)})
    new_scene = _fix_placement(replace_object(replace_object(scene, bi, ni), bj, nj), rng, [bi, bj])
    if new_scene is None:
        return None
    return desc, surf, new_scene


@SCENE_EDITS.register("add_obj")
def add_obj(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """Mention one more object, absent from x ("a red circle" -> "a red circle and a green star")."""
    if len(scene) >= MAX_SCENE_OBJECTS:
        return None
    pairs = ctx.spec.allowed_pairs(heldout=False) if ctx.forbid_heldout else \
        [(c, s) for c in ctx.spec.colours for s in ctx.spec.shapes]
    shape, colour, texture, size = sample_attributes(ctx.spec, rng, pairs)
    r = sample_radius(size, rng, ctx.spec.object_scale)
    centre = place([r], rng, fixed=scene.objects)
    if centre is None:
        return None
    obj = Obj(shape, colour, texture, size, x=float(centre[0, 0]), y=float(centre[0, 1]), r=r)
    # state the colour always (an added bare "a star" is too often true already), others at random
    u = rng.uniforms(2)
    new = ObjDesc(shape, colour, texture if u[0] < 0.4 else None, size if u[1] < 0.4 else None)
    desc = replace(cap.desc, objects=cap.desc.objects + (new,))
    return desc, add_object_surface(cap.surface, rng), scene.with_objects(scene.objects + (obj,))


@SCENE_EDITS.register("add_att")
def add_att(cap: Captioned, scene: Scene, ctx: EditContext, rng: Rand) -> Optional[Proposal]:
    """State one more attribute of a described object, with a value it does not have
    ("a circle" -> "a striped circle")."""
    options = [(i, a) for i, o in enumerate(cap.desc.objects) for a in ATTRIBUTES
               if getattr(o, a) is None and ctx.spec.varies(a)]
    if not options:
        return None
    i, a = _pick(rng, options)
    b = cap.binding[i]
    value = _pick(rng, [v for v in ctx.spec.attribute_values[a] if v != scene.objects[b].attr(a)])
    new_scene = _fix_placement(replace_object(scene, b, with_attribute(scene.objects[b], a, value, rng, ctx.spec.object_scale)), rng, [b])
    if new_scene is None:
        return None
    return cap.desc.with_object(i, replace(cap.desc.objects[i], **{a: value})), cap.surface, new_scene


def verify(cap: Captioned, scene: Scene, proposal: Proposal, ctx: EditContext) -> bool:
    """The checks every negative passes: y' false for x, y' true for x', x' valid (and free of held-out pairs
    when forbidden)."""
    desc, _, new_scene = proposal
    if not scene_valid(new_scene):
        return False
    if ctx.forbid_heldout and new_scene.pairs() & set(ctx.spec.heldout_pairs):
        return False
    return truth(desc, scene) is False and truth(desc, new_scene) is True


def make_negative(cap: Captioned, scene: Scene, edit_type: str, ctx: EditContext, rng: Rand,
                  tries: int = 6) -> Optional[SceneNegative]:
    """A verified negative of the given type for (x, y), or None if this caption does not admit one."""
    edit = SCENE_EDITS.get(edit_type)
    for _ in range(tries):
        proposal = edit(cap, scene, ctx, rng)
        if proposal is None:
            return None  # structural: this caption has nothing to edit of this kind
        if verify(cap, scene, proposal, ctx):
            desc, surf, new_scene = proposal
            return SceneNegative(edit_type, desc, surf, new_scene, truth(cap.desc, new_scene) is True)
    return None
