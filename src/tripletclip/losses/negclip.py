"""NegCLIP: CLIP with hard negative captions as extra text columns (Yuksekgonul et al., arXiv 2210.01936).

docs/methods.md section 2.2, NegCLIP(I, T, T'): image-to-text logits s [I T^T | I T'^T] with *every* valid negative
of the global batch as a column for every image (B_glob + B_glob*K columns, masked ones at -inf);
text-to-image logits are the plain s T I^T (negatives are never queries). L = 1/2 (CE_i2t + CE_t2i).
"""
from __future__ import annotations

import torch

from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import negclip_terms


@LOSSES.register("negclip")
class NegClipLoss(ContrastiveLoss):
    """NegCLIP(I, T, T'); terms "i2t" (with negatives) and "t2i"."""

    name = "negclip"
    needs_neg_text = True
    needs_neg_image = False

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b, global_b + global_b * k], "logits_t2i": [local_b, global_b]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob = inputs.local, inputs.glob
        i2t, t2i = negclip_terms(
            loc.image, loc.text, glob.image, glob.text,
            glob.neg_text.flatten(0, 1), glob.neg_text_mask.flatten(), inputs.labels, inputs.scale,
        )
        return {"loss": 0.5 * (i2t + t2i), "i2t": i2t, "t2i": t2i}
