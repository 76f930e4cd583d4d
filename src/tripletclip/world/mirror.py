"""Mirror twins: a positive seen both ways round, for the base's pretraining data.

A caption that states a spatial relation ("a red circle left of a square") is paired with its *mirror twin*: the
same scene reflected across the relation's axis, captioned by the same words with every relation inverted ("a red
circle right of a square"). This is the flip augmentation that referring-expression training uses with its text
corrected (left and right exchanged), with the flipped copy kept in the same batch: each is then the other's
relation negative for plain in-batch contrast, a signal for positions that independent scenes almost never give
(without it a base maps a caption and its relation flip to cosine 0.9986: docs/world_experiments.md section 12).
Nothing but the positions changes: colours and shapes are the same in both. Measured (section 13 and stage 7 of
docs/preregistration.md): a plain CLIP base learns nothing from the twins in 800 steps; in 1,600 it leaves that
plateau, into relations on some worlds and into colour-shape binding on others.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from tripletclip.world.caption import truth
from tripletclip.world.grammar import Captioned
from tripletclip.world.scene import Scene
from tripletclip.world.vocab import INVERSE_RELATION, RELATION_AXIS


def mirror_scene(scene: Scene, flip_x: bool, flip_y: bool) -> Scene:
    """``scene`` reflected across the vertical (``flip_x``) and/or horizontal (``flip_y``) centre line.

    Coordinates are fractions of the image side, so a reflection keeps every object inside the image, every gap
    and every relation crisp (the margins of world/scene.py are symmetric)."""
    return scene.with_objects([replace(o, x=1.0 - o.x if flip_x else o.x, y=1.0 - o.y if flip_y else o.y)
                               for o in scene.objects])


def mirror_twin(scene: Scene, cap: Captioned) -> Optional[tuple[Scene, Captioned]]:
    """The mirror twin of a captioned scene, or None when it would not be a relation contrast.

    None when the caption states no relation, or when the twin's caption is also true of the scene (or the
    caption of the twin's scene), e.g. "a circle left of a circle" over two circles: such a pair would be a false
    in-batch negative, not a contrast.
    """
    axes = {RELATION_AXIS[rel] for _, rel, _ in cap.desc.relations}
    if not axes:
        return None
    twin_scene = mirror_scene(scene, 0 in axes, 1 in axes)
    desc = replace(cap.desc, relations=tuple((i, INVERSE_RELATION[rel], j) for i, rel, j in cap.desc.relations))
    # the oracle reads the scenes: each caption true of its own scene and false of the other's
    if (truth(desc, twin_scene) is not True or truth(desc, scene) is not False
            or truth(cap.desc, twin_scene) is not False):
        return None
    return twin_scene, Captioned(desc, cap.surface, cap.binding)
