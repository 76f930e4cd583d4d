"""TripletCLIP: NegCLIP on real pairs plus NegCLIP on synthetic pairs (Patel et al., arXiv 2411.02545, Eq. 3).

docs/methods.md section 2.4: L = NegCLIP(I, T, T') + NegCLIP(I', T', T), a *sum*, both terms every step.
Term 2 anchors are the synthetic pairs (x'_{i,m}, y'_{i,m}) whose image and caption masks are both set
(negative image m renders negative caption m, see tripletclip.data.contract). A synthetic image picks its
caption among all valid y' and all real y of the global batch (real captions are its hard negatives); a
synthetic caption picks its image among the valid synthetic images only (never a real image).

Deliberate differences from the official code: one pass over already-encoded features instead of two
separate forward passes (same value, less work); general K and M (the paper uses K = M = 1); term 2 is a mean
over the valid synthetic pairs of the *global* batch (each rank divides its sum by global_count / W), so the
result does not depend on how pairs are spread over ranks.
"""
from __future__ import annotations

import torch

from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import negclip_terms, nce


@LOSSES.register("tripletclip")
class TripletClipLoss(ContrastiveLoss):
    """NegCLIP(I, T, T') + NegCLIP(I', T', T); terms "negclip_real" and "negclip_synth"."""

    name = "tripletclip"
    needs_neg_text = True
    needs_neg_image = True

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        p = min(k, m)
        return {"logits_i2t": [local_b, global_b + global_b * k], "logits_t2i": [local_b, global_b],
                "logits_i2t_synth": [local_b * p, global_b * k + global_b], "logits_t2i_synth": [local_b * p, global_b * m]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, labels, scale = inputs.local, inputs.glob, inputs.labels, inputs.scale
        i2t, t2i = negclip_terms(
            loc.image, loc.text, glob.image, glob.text,
            glob.neg_text.flatten(0, 1), glob.neg_text_mask.flatten(), labels, scale,
        )
        real = 0.5 * (i2t + t2i)

        k, m = loc.neg_text.shape[1], loc.neg_image.shape[1]
        p = min(k, m)  # slots that can hold a synthetic pair
        pair_valid = (loc.neg_text_mask[:, :p] & loc.neg_image_mask[:, :p]).flatten()
        pairs_global = (glob.neg_text_mask[:, :p] & glob.neg_image_mask[:, :p]).sum()
        # per-rank share of a global mean; clamp keeps an all-invalid batch at exactly 0
        denom = pairs_global.clamp_min(1).float() / inputs.world_size
        slot = torch.arange(p, device=labels.device)
        synth_i2t = nce(
            loc.neg_image[:, :p].flatten(0, 1),
            torch.cat([glob.neg_text.flatten(0, 1), glob.text], dim=0),
            (labels[:, None] * k + slot).flatten(),
            scale,
            key_valid=torch.cat([glob.neg_text_mask.flatten(), glob.neg_text_mask.new_ones(glob.text.shape[0])]),
            row_valid=pair_valid,
            denom=denom,
        )
        synth_t2i = nce(
            loc.neg_text[:, :p].flatten(0, 1),
            glob.neg_image.flatten(0, 1),
            (labels[:, None] * m + slot).flatten(),
            scale,
            key_valid=glob.neg_image_mask.flatten(),
            row_valid=pair_valid,
            denom=denom,
        )
        synth = 0.5 * (synth_i2t + synth_t2i)
        return {"loss": real + synth, "negclip_real": real, "negclip_synth": synth}
