"""The world as an offline text-to-image backend: caption -> scene satisfying it -> image.

TripletCLIP (arXiv 2411.02545) renders negative captions with SDXL-Turbo; on a machine without model weights,
captions of the world grammar are rendered exactly instead: the caption is parsed into its meaning, a scene is
sampled whose objects carry the stated attributes (unstated ones drawn at random) at positions satisfying the
stated relations, and the renderer draws it. The result is checked with the caption truth checker, so the
image is always faithful (unlike the ~76% VQA faithfulness the paper reports for SDXL-Turbo).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from PIL import Image

from tripletclip.errors import InputError
from tripletclip.world.caption import Description, truth
from tripletclip.world.parser import parse_caption
from tripletclip.world.rand import Rand
from tripletclip.world.render import get_renderer
from tripletclip.world.scene import MAX_SCENE_OBJECTS, Obj, Scene, place, sample_radius
from tripletclip.world.vocab import BACKGROUNDS, COLOURS, SHAPES, SIZES, TEXTURES, WorldSpec

_FULL = WorldSpec(SHAPES, tuple(COLOURS), TEXTURES, SIZES, tuple(BACKGROUNDS))


def scene_for_description(desc: Description, rng: Rand, spec: WorldSpec = _FULL, extra_objects: int = 0,
                          tries: int = 200) -> Optional[Scene]:
    """A valid scene for which ``desc`` is true (None if none was found, e.g. contradictory relations).

    ``extra_objects`` unmentioned distractors are added when room allows (they never make the caption false,
    since captions are existential).
    """
    n = len(desc.objects)
    if n + extra_objects > MAX_SCENE_OBJECTS:
        extra_objects = max(0, MAX_SCENE_OBJECTS - n)
    if n > MAX_SCENE_OBJECTS:
        return None
    for _ in range(tries):
        attrs = []
        for d in desc.objects:
            attrs.append((d.shape, d.colour or rng.choice(spec.colours), d.texture or rng.choice(spec.textures),
                          d.size or rng.choice(spec.sizes)))
        for _ in range(extra_objects):
            attrs.append((rng.choice(spec.shapes), rng.choice(spec.colours), rng.choice(spec.textures),
                          rng.choice(spec.sizes)))
        radii = [sample_radius(a[3], rng, spec.object_scale) for a in attrs]
        centres = place(radii, rng)
        if centres is None:
            continue
        background = desc.background or (rng.choice(spec.backgrounds) if spec.backgrounds else None)
        scene = Scene(tuple(Obj(*a, x=float(c[0]), y=float(c[1]), r=r) for a, c, r in zip(attrs, centres, radii)),
                      background)
        if truth(desc, scene) is True:
            return scene
    return None


def render_caption(text: str, seed: int = 0, size: int = 64, extra_objects: int = 0) -> Image.Image:
    """Render a caption of the world grammar to a ``size`` x ``size`` RGB image, deterministically by seed.

    Raises ValueError if the text is not a caption of the grammar or describes an impossible scene.
    """
    desc = parse_caption(text)
    if desc is None:
        raise InputError(f"render_caption: {text!r} is not a caption of the world grammar "
                         "(e.g. 'a red circle to the left of a small blue striped square'); see tripletclip.world.grammar")
    rng = Rand([seed, 7])
    scene = scene_for_description(desc, rng, extra_objects=extra_objects)
    if scene is None:
        raise InputError(f"render_caption: no scene satisfies {text!r} (contradictory relations or > "
                         f"{MAX_SCENE_OBJECTS} objects)")
    return get_renderer(size).render_pil(scene, rng)


def canonical_text(desc: Description) -> str:
    """A plain wording of a description (list or first relation form) for displays."""
    from tripletclip.world.grammar import ObjSurface, Surface, realise

    k = len(desc.objects)
    form = "list" if not desc.relations else ("rel" if len(desc.relations) == 1 else "shared")
    surf = Surface(form=form, objs=tuple(ObjSurface() for _ in range(k)), order=tuple(range(k)),
                   rel_choice=tuple(0 for _ in desc.relations))
    try:
        return realise(desc, surf)
    except (ValueError, KeyError):
        return realise(replace(desc, relations=()), replace(surf, form="list", rel_choice=()))
