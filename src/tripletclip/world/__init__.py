"""The embedded compositional world: every part of TripletCLIP (arXiv 2411.02545) offline and measurable.

Scenes of 1-3 objects (shape, colour, texture, size, continuous position) on a background; spatial relations
derived from positions; captions from a grammar with several surface forms, relation-inverted paraphrases and
partial descriptions; hard negatives by scene-graph edits in SugarCrepe's seven categories (arXiv 2306.14610),
each verified by a caption truth checker and rendered into a negative image; a held-out split of colour-shape
compositions never seen in training; a fast numpy renderer. Nothing here imports torch.

Public API::

    from tripletclip.world import (
        build_world,        # out_dir/train (TripletData shards) + out_dir/bench (SugarCrepe/Winoground/retrieval)
        render_caption,     # render_caption(text, seed=0, size=64) -> PIL.Image  (offline "T2I" backend)
        parse_caption,      # parse_caption(text) -> Description | None
        truth,              # truth(description, scene) -> True | False | None (ambiguous)
        WorldGenerator,     # .triplet(rng, n_neg=1, types=None, split="train") -> Triplet; .render(triplet, rng)
        Rand, WorldSpec, make_spec, sample_scene, sample_description, realise, make_negative,
        analyse_world,      # bag-of-words / text-prior oracles and coverage: the regime report
        measure_throughput,
    )

    img = render_caption("a red circle to the left of a small blue striped square on grass", seed=3)
    desc = parse_caption("there is a big green star above a yellow heart")
    # Description(objects=(ObjDesc('star', 'green', None, 'large'), ObjDesc('heart', 'yellow', None, None)),
    #             relations=((0, 'above', 1),), background=None)

Command line: ``tripletclip world build --out DIR --n-train N --n-bench M --seed S`` (see ``--help``).
"""
from __future__ import annotations

from tripletclip.world.build import SPEC_PRESETS, WORLD_VERSION, build_world, make_spec, spec_preset, train_shards
from tripletclip.world.caption import Description, ObjDesc, canonical, describe_fully, truth
from tripletclip.world.edits import SCENE_EDITS, EditContext, SceneNegative, make_negative
from tripletclip.world.generate import SUGARCREPE_TYPES, Triplet, WorldGenerator, measure_throughput
from tripletclip.world.grammar import CaptionStyle, Captioned, Surface, realise, sample_description
from tripletclip.world.oracle import analyse_world
from tripletclip.world.parser import parse_caption, parse_caption_full
from tripletclip.world.rand import Rand
from tripletclip.world.render import Renderer, encode_image, get_renderer
from tripletclip.world.scene import Obj, Scene, sample_scene
from tripletclip.world.t2i import render_caption, scene_for_description
from tripletclip.world.vocab import WorldSpec

__all__ = [
    "SPEC_PRESETS", "WORLD_VERSION", "build_world", "make_spec", "spec_preset", "train_shards", "Description", "ObjDesc", "canonical",
    "describe_fully", "truth", "SCENE_EDITS", "EditContext", "SceneNegative", "make_negative", "SUGARCREPE_TYPES",
    "Triplet", "WorldGenerator", "measure_throughput", "CaptionStyle", "Captioned", "Surface", "realise",
    "sample_description", "analyse_world", "parse_caption", "parse_caption_full", "Rand", "Renderer",
    "encode_image", "get_renderer", "Obj", "Scene", "sample_scene", "render_caption", "scene_for_description",
    "WorldSpec",
]
