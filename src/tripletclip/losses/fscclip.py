"""FSC-CLIP: CLIP + global and local hard-negative losses with selective calibrated regularisation
(Oh et al., EMNLP 2024, arXiv 2410.05210, Sec. 3; docs/objectives.md).

    L = L_clip + lambda_g L_hn^global + lambda_l L_hn^local          (lambda_g = 0.5, lambda_l = 0.2)

- L_clip: CLIP on the positives of the global batch (no negatives among its columns: FSC-CLIP keeps hard
  negatives out of the contrastive loss and gives them their own losses).
- L_hn^global, image i: logits z = s [<I_i, T_i>, <I_i, T'_{i,k}> for valid k] (its *own* negatives only).
- L_hn^local, image i: the same with local scores S(i, c) for caption c in {T_i, T'_{i,k}}:
  a_{t,p} = minmax_p(<w_t, v_p>) renormalised to sum 1 over patches (detached), u_t = normalise(sum_p a_{t,p} v_p),
  S(i, c) = logsumexp over the caption's real tokens t of s <u_t, normalise(w_t)>  (v: patch features of
  image i, w: token features of caption c, both projected into the joint space).
- Selective calibrated regularisation (SCR) on both hard-negative losses: focal modulation and label
  smoothing restricted to the hard negatives. With p = softmax(z) over the positive and the n_i valid
  negatives, target y_0 = 1 - eps + eps/(n_i+1), y_k = eps/(n_i+1):
      l_i = sum_c y_c (1 - p_c)^gamma (-log p_c)          (gamma = 2, eps = 0.02)
  averaged over the rows of the global batch that have at least one valid negative.

Follows the official code (ytaek-oh/fsc-clip, ``Local_HNLoss`` and ``_focal_loss_with_nsr``; weights of its
released recipe) with two deliberate differences: masked negatives are removed from the softmax (the
official code keeps zero-feature columns, logit 0, in the denominator), and the hard-negative means are over
the global batch (each rank divides by global_rows / W), so the result does not depend on how rows are spread
over ranks. Tokens are local to each rank: every term pairs an image with its own captions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tripletclip.errors import InputError
from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.functional import nce


def scr_loss(logits: torch.Tensor, valid: torch.Tensor, gamma: float, smoothing: float) -> torch.Tensor:
    """Per-row focal loss with label smoothing over the valid columns; column 0 is the positive (always valid).

    ``logits`` [R,C], ``valid`` [R,C] bool. Invalid columns take no probability mass and no target mass.
    """
    logp = torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)
    # zero -log p where a column is invalid *before* any product: 0 * inf would poison the backward with NaN
    nll = torch.where(valid, -logp, logp.new_zeros(()))
    n = valid.sum(-1, keepdim=True).to(logits.dtype)  # positive + valid negatives
    target = torch.where(valid, smoothing / n, logp.new_zeros(()))
    target = target.clone()
    target[:, 0] = target[:, 0] + (1.0 - smoothing)
    focal = (1.0 - torch.exp(-nll)).pow(gamma) if gamma != 0 else torch.ones_like(nll)
    return (target * focal * nll).sum(-1)


def local_scores(image_tokens: torch.Tensor, text_tokens: torch.Tensor, token_mask: torch.Tensor,
                 scale: torch.Tensor, normalizer: str = "minmax", sparsify: bool = False) -> torch.Tensor:
    """S(i, c) for aligned rows: ``image_tokens`` [R,P,D], ``text_tokens`` [R,L,D], ``token_mask`` [R,L] -> [R].

    Rows without any real token (masked negatives) return a finite dummy score; callers mask them out.
    """
    sim = torch.einsum("rld,rpd->rlp", text_tokens, image_tokens).detach()  # the grouping is not trained
    if normalizer == "minmax":
        lo, hi = sim.min(-1, keepdim=True).values, sim.max(-1, keepdim=True).values
        attn = (sim - lo) / (hi - lo).clamp_min(1e-12)
        if sparsify:
            attn = torch.where(attn < 1.0 / image_tokens.shape[1], attn.new_zeros(()), attn)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
    else:
        attn = sim.softmax(-1)
    grouped = F.normalize(torch.einsum("rlp,rpd->rld", attn, image_tokens), dim=-1)
    per_token = scale * (grouped * F.normalize(text_tokens, dim=-1)).sum(-1)  # [R,L]
    usable = token_mask | ~token_mask.any(-1, keepdim=True)  # keep logsumexp finite on empty rows
    return torch.logsumexp(per_token.masked_fill(~usable, float("-inf")), dim=-1)


@LOSSES.register("fscclip")
class FscClipLoss(ContrastiveLoss):
    """L_clip + global_weight * L_hn^global + local_weight * L_hn^local; terms "clip", "hn_global", "hn_local"."""

    name = "fscclip"
    needs_neg_text = True
    needs_neg_image = False
    needs_tokens = True

    def __init__(self, global_weight: float = 0.5, local_weight: float = 0.2, focal_gamma: float = 2.0,
                 label_smoothing: float = 0.02, normalizer: str = "minmax", sparsify: bool = False) -> None:
        super().__init__()
        if normalizer not in ("minmax", "softmax"):
            raise InputError(f"loss 'fscclip': normalizer={normalizer!r} must be 'minmax' or 'softmax' "
                             "(fix loss.kwargs.normalizer)")
        if not 0.0 <= float(label_smoothing) < 1.0 or float(focal_gamma) < 0:
            raise InputError("loss 'fscclip': label_smoothing must be in [0, 1) and focal_gamma >= 0 (fix loss.kwargs)")
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.gamma, self.smoothing = float(focal_gamma), float(label_smoothing)
        self.normalizer, self.sparsify = normalizer, bool(sparsify)

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b, global_b], "logits_t2i": [local_b, global_b],
                "logits_hn": [local_b, 1 + k]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, labels, scale = inputs.local, inputs.glob, inputs.labels, inputs.scale
        clip = 0.5 * (nce(loc.image, glob.text, labels, scale) + nce(loc.text, glob.image, labels, scale))

        b, k = loc.neg_text_mask.shape
        valid = torch.cat([loc.neg_text_mask.new_ones(b, 1), loc.neg_text_mask], dim=1)
        rows = glob.neg_text_mask.any(1).sum().clamp_min(1).float() / inputs.world_size
        pos = (loc.image * loc.text).sum(-1, keepdim=True)
        neg = torch.einsum("bd,bkd->bk", loc.image, loc.neg_text)
        hn_global = scr_loss(scale * torch.cat([pos, neg], 1), valid, self.gamma, self.smoothing).sum() / rows

        pos_local = local_scores(loc.image_tokens, loc.text_tokens, loc.text_token_mask, scale,
                                 self.normalizer, self.sparsify)
        p, d = loc.image_tokens.shape[1:]
        neg_local = local_scores(loc.image_tokens[:, None].expand(b, k, p, d).flatten(0, 1),
                                 loc.neg_text_tokens.flatten(0, 1), loc.neg_text_token_mask.flatten(0, 1),
                                 scale, self.normalizer, self.sparsify).view(b, k)
        local_logits = torch.cat([pos_local[:, None], neg_local], 1)
        hn_local = scr_loss(local_logits, valid, self.gamma, self.smoothing).sum() / rows

        total = clip + self.global_weight * hn_global + self.local_weight * hn_local
        return {"loss": total, "clip": clip, "hn_global": hn_global, "hn_local": hn_local}
