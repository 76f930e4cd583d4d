"""NegImage: the image-side mirror of NegCLIP (TripletCLIP paper, arXiv 2411.02545, Table 3 ablation).

docs/methods.md section 2.3, NegImage(T, I, I'): each caption picks its image among all images and all valid
negative images of the global batch (masked ones at -inf); each image picks its caption among the
positives only. L = 1/2 (CE_t2i + CE_i2t).
"""
from __future__ import annotations

import torch

from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import negclip_terms


@LOSSES.register("negimage")
class NegImageLoss(ContrastiveLoss):
    """NegCLIP with the modalities swapped; terms "t2i" (with negative images) and "i2t"."""

    name = "negimage"
    needs_neg_text = False
    needs_neg_image = True

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b, global_b], "logits_t2i": [local_b, global_b + global_b * m]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob = inputs.local, inputs.glob
        t2i, i2t = negclip_terms(
            loc.text, loc.image, glob.text, glob.image,
            glob.neg_image.flatten(0, 1), glob.neg_image_mask.flatten(), inputs.labels, inputs.scale,
        )
        return {"loss": 0.5 * (i2t + t2i), "i2t": i2t, "t2i": t2i}
