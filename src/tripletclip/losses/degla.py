"""DeGLA: global hard-negative contrast + self-distillation toward an EMA teacher + image-grounded and
text-grounded local contrast (Hu et al., ACM MM 2025, arXiv 2504.16801, Sec. 3; docs/objectives.md).

    L = NegCLIP(I, T, T') + w_igc L_IGC + w_tgc L_TGC + w_distill L_D       (w_igc = w_tgc = 0.1)

- Global alignment: NegCLIP over the global batch (every negative is a column for every image), as the
  official ``CLIPloss_DeGLA`` computes it.
- Image-grounded contrast, image i against its own captions only:
      L_IGC = mean_i CE(s [<I_i, T_i>, <I_i, T'_{i,k}> for valid k], 0)
- Text-grounded contrast, caption i against the teacher's embedding of itself and its own negatives:
      L_TGC = mean_i CE(tau [<T_i, T^t_i>, <T_i, T'_{i,k}> for valid k], 0),   tau = 10 (fixed, as in the code)
- Self-distillation L_D: tripletclip.losses.regularisers.distill (squared L2 to the teacher's features of the
  positives, mean over rows), with the teacher an EMA of the student (decay 0.999, ``loss.ema_decay``).

Where we differ from the official code (xiaoxing2001/DeGLA, src/open_clip/loss.py): its IGC and TGC masks lay
the negatives out differently (``repeat_interleave`` vs ``repeat``), so one of the two pairs captions with
another image's negatives; we pair each row with its own negatives [B,K] in both. Its distillation sums over
the global batch and includes the negatives' text features (weight 0.005); we average over the positives'
rows, so the default weight here is 1.0 (0.005 * B_global in the official scale is ~1.3 at B = 256).
Rows without a valid negative still count in the IGC/TGC means (their CE is 0), as every row has
negatives in the paper's data.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import negclip_terms
from tripletclip.losses.regularisers import distill


def grounded_contrast(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                      valid: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """mean_i CE(scale [<a_i, p_i>, <a_i, n_{i,k}> for valid k], 0); anchor/positive [B,D], negatives [B,K,D]."""
    pos = (anchor * positive).sum(-1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", anchor, negatives)
    # mask after scaling: scale * -inf would give the scale's gradient 0 * inf = NaN
    drop = torch.cat([valid.new_zeros(valid.shape[0], 1), ~valid], 1)
    logits = (scale * torch.cat([pos, neg], 1)).masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(anchor.shape[0], dtype=torch.long, device=anchor.device))


@LOSSES.register("degla")
class DeglaLoss(ContrastiveLoss):
    """NegCLIP + igc_weight * IGC + tgc_weight * TGC + distill_weight * distill; terms "global", "igc", "tgc", "distill"."""

    name = "degla"
    needs_neg_text = True
    needs_neg_image = False
    needs_teacher = True
    default_teacher = "ema"

    def __init__(self, igc_weight: float = 0.1, tgc_weight: float = 0.1, distill_weight: float = 1.0,
                 tgc_scale: float = 10.0) -> None:
        super().__init__()
        self.igc_weight, self.tgc_weight = float(igc_weight), float(tgc_weight)
        self.distill_weight, self.tgc_scale = float(distill_weight), float(tgc_scale)

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b, global_b + global_b * k], "logits_t2i": [local_b, global_b],
                "logits_igc": [local_b, 1 + k], "logits_tgc": [local_b, 1 + k]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, scale = inputs.local, inputs.glob, inputs.scale
        i2t, t2i = negclip_terms(loc.image, loc.text, glob.image, glob.text, glob.neg_text.flatten(0, 1),
                                 glob.neg_text_mask.flatten(), inputs.labels, scale)
        global_ = 0.5 * (i2t + t2i)
        igc = grounded_contrast(loc.image, loc.text, loc.neg_text, loc.neg_text_mask, scale)
        tgc = grounded_contrast(loc.text, loc.teacher_text, loc.neg_text, loc.neg_text_mask, self.tgc_scale)
        dist = distill(loc)
        total = global_ + self.igc_weight * igc + self.tgc_weight * tgc + self.distill_weight * dist
        return {"loss": total, "global": global_, "igc": igc, "tgc": tgc, "distill": dist}
