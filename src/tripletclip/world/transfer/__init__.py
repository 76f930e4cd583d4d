"""The transfer benchmark of the embedded world: compositions and foils the training path never produced.

The seen / held-out benchmark of :mod:`tripletclip.world.eval_set` draws its foils from the same code as the
training negatives (``WorldGenerator.triplet`` -> ``make_negative`` -> ``SCENE_EDITS``, the same grammar), so a
model can score well on it by learning that generator's habits. This package builds a benchmark that shares no
module with that path (docs/world_experiments.md, section 8):

- **held-out compositions**: every row's image pair contains a colour-shape pair of ``spec.heldout_pairs``, which
  no training image or caption (positive or negative) contains;
- **its own edits and captions**: foils come from scene edits written here (:mod:`.pairs`), worded by templates
  written here (:mod:`.text`); a ``paraphrase`` split words the same claims in sentence structures the training
  grammar never produces ("the star to the right of the circle is red");
- **a scene oracle**: every caption is checked against the scene graph (:mod:`.claims`), never against text;
- **no text shortcut**: rows come in symmetric pairs, (x, y, y') and (x', y', y), so any scorer that reads only
  the two captions is right on exactly one row of each pair (chance) — checked with a bigram model of the
  training captions (:mod:`.textonly`);
- **never in training**: a caption (or foil) that occurs among the training texts is rejected and counted.

Modules this package must never import (``FORBIDDEN``; ``tests/test_transfer.py`` walks the imports): the
training-negative path and everything built on it. It may use only the world's primitives: the scene data model
and its geometry (:mod:`tripletclip.world.scene`), the spec and colour table (:mod:`tripletclip.world.vocab`),
the random stream (:mod:`tripletclip.world.rand`) and the renderer (:mod:`tripletclip.world.render`).
"""
from __future__ import annotations

FORBIDDEN: tuple[str, ...] = (
    "tripletclip.world.edits",  # SCENE_EDITS, make_negative: the training negatives
    "tripletclip.world.grammar",  # the training captions' grammar
    "tripletclip.world.caption",  # the training path's descriptions and truth checker
    "tripletclip.world.generate",  # WorldGenerator.triplet
    "tripletclip.world.parser",
    "tripletclip.world.oracle",
    "tripletclip.world.eval_set",
    "tripletclip.world.build",
    "tripletclip.world.t2i",
    "tripletclip.world.gallery",
    "tripletclip.negatives",  # the negative-generation package (rules, LLM, pipeline)
    "tripletclip.edit_types",
)

from tripletclip.world.transfer.claims import Claim, holds  # noqa: E402
from tripletclip.world.transfer.pairs import (  # noqa: E402
    TRANSFER_CATEGORIES, TransferPair, build_transfer, make_pair, training_texts)
from tripletclip.world.transfer.text import paraphrase_text, transfer_text  # noqa: E402
from tripletclip.world.transfer.textonly import BigramScorer, text_only_accuracy  # noqa: E402

__all__ = ["FORBIDDEN", "Claim", "holds", "TRANSFER_CATEGORIES", "TransferPair", "build_transfer", "make_pair",
           "training_texts", "paraphrase_text", "transfer_text", "BigramScorer", "text_only_accuracy"]
