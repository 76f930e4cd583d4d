"""CLIP: the symmetric InfoNCE of Radford et al. (arXiv 2103.00020; docs/methods.md section 2.1).

L = 1/2 [CE(s I T^T, i) + CE(s T I^T, i)] over the global batch. Hard negatives, if present in the features
dict, are ignored (and not gathered): this is the baseline every other objective is compared against.
"""
from __future__ import annotations

import torch

from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import nce


@LOSSES.register("clip")
class ClipLoss(ContrastiveLoss):
    """Symmetric image-text contrastive loss; terms "i2t" and "t2i"."""

    name = "clip"
    needs_neg_text = False
    needs_neg_image = False

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, labels = inputs.local, inputs.glob, inputs.labels
        i2t = nce(loc.image, glob.text, labels, inputs.scale)
        t2i = nce(loc.text, glob.image, labels, inputs.scale)
        return {"loss": 0.5 * (i2t + t2i), "i2t": i2t, "t2i": t2i}
