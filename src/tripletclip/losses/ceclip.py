"""CE-CLIP: ITC with hard negatives + cross-modal rank + intra-modal contrast (Zhang et al., arXiv 2306.08832).

docs/methods.md section 2.5 (s(a, b) = scale * cosine, "logit units"):
- ITC: NegCLIP(I, T, T') over the global batch (see :mod:`tripletclip.losses.negclip`).
- CMR (Eq. 4): mean over all (i, k) slots of v_{i,k} max(0, theta_type(i,k) + s(I_i, T'_{i,k}) - s(I_i, T_i)),
  i.e. divided by B*K including padded slots, as the official ``atr_loss.mean()``.
- IMC (Eq. 5, the paper's intent): caption anchor i, logits [s(I_i, T_i), s(T_i, T'_{j,k}) for every valid
  (j, k) of the global batch], CE with target 0. NOTE: the official repository's version pulls every caption
  towards one fixed negative (its issue 15); not copied.
- Total: ITC + cmr_weight * CMR + imc_weight * IMC (0.2 and 0.3 in the paper).

Thresholds: one per entry of :data:`tripletclip.edit_types.EDIT_TYPES`. CE-CLIP's four types map onto them
(:data:`tripletclip.edit_types.CECLIP_TYPES`: swap = swap_obj | swap_att, replace-attribute = replace_att,
replace-object = replace_obj, replace-relation = replace_rel); our extra types get their own. They live in the
``thresholds`` buffer, so they are saved in ``state_dict`` and a resumed run continues bit for bit. Update rule, applied inside ``forward`` after the loss
is computed, under no_grad, in training mode only (``module.eval()`` freezes them):
    theta_t <- clamp(mean_i s(I_i, T_i) - mean_{valid (i,k) of type t} s(I_i, T'_{i,k}), 0, max_threshold)
over the *global* batch (computed from the all-gathered features, identical bytes on every rank, so all ranks
hold identical thresholds without another collective); a type absent from the batch keeps its value.
The new values are used from the next forward on; :meth:`on_epoch_start` sets them to zero.
Unlike the official code there is a single path for one and many processes (its single-process branch
inverts the hard-negative condition).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tripletclip.edit_types import EDIT_TYPES
from tripletclip.losses.base import LOSSES, ContrastiveLoss, Features, LossInputs
from tripletclip.losses.functional import negclip_terms


@LOSSES.register("ceclip")
class CeClipLoss(ContrastiveLoss):
    """ITC + cmr_weight * CMR + imc_weight * IMC; terms "itc", "cmr", "imc"; buffer ``thresholds``."""

    name = "ceclip"
    needs_neg_text = True
    needs_neg_image = False

    def __init__(self, cmr_weight: float = 0.2, imc_weight: float = 0.3, max_threshold: float = 10.0,
                 adaptive_thresholds: bool = True) -> None:
        super().__init__()
        self.cmr_weight = float(cmr_weight)
        self.imc_weight = float(imc_weight)
        self.max_threshold = float(max_threshold)
        self.adaptive_thresholds = bool(adaptive_thresholds)
        self.register_buffer("thresholds", torch.zeros(len(EDIT_TYPES)))

    def on_epoch_start(self, epoch: int) -> None:
        """Set every theta to 0: CE-CLIP resets its thresholds at the start of each epoch."""
        self.thresholds.zero_()

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b, global_b + global_b * k], "logits_t2i": [local_b, global_b],
                "logits_imc": [local_b, 1 + global_b * k]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, scale = inputs.local, inputs.glob, inputs.scale
        if self.thresholds.device != loc.image.device:
            self.thresholds = self.thresholds.to(loc.image.device)
        n_types = self.thresholds.shape[0]
        in_range = ((loc.neg_text_type >= 0) & (loc.neg_text_type < n_types)).all()
        msg = f"losses/ceclip: neg_text_type holds ids outside 0..{n_types - 1}; use tripletclip.edit_types.edit_type_id"
        try:  # on an accelerator checked without a read-back (a step must not stall): fails at the next sync
            torch._assert_async(in_range, msg)
        except RuntimeError:  # host tensors are checked at once
            raise ValueError(msg) from None
        negs_all, negs_valid = glob.neg_text.flatten(0, 1), glob.neg_text_mask.flatten()
        i2t, t2i = negclip_terms(loc.image, loc.text, glob.image, glob.text, negs_all, negs_valid,
                                 inputs.labels, scale)
        itc = 0.5 * (i2t + t2i)

        pos = scale * (loc.image * loc.text).sum(-1)  # s(I_i, T_i)   [B]
        neg = scale * torch.einsum("bd,bkd->bk", loc.image, loc.neg_text)  # s(I_i, T'_{i,k})  [B,K]
        hinge = torch.relu(self.thresholds[loc.neg_text_type] + neg - pos[:, None])
        cmr = torch.where(loc.neg_text_mask, hinge, hinge.new_zeros(())).sum() / max(hinge.numel(), 1)

        text_negs = ((scale * loc.text) @ negs_all.t()).masked_fill(~negs_valid[None, :], float("-inf"))
        imc_logits = torch.cat([pos[:, None], text_negs], dim=1)
        imc = F.cross_entropy(imc_logits, torch.zeros_like(inputs.labels))

        if self.training and self.adaptive_thresholds:
            with torch.no_grad():
                self._update_thresholds(glob, scale.detach())
        total = itc + self.cmr_weight * cmr + self.imc_weight * imc
        return {"loss": total, "itc": itc, "cmr": cmr, "imc": imc}

    def _update_thresholds(self, glob: Features, scale: torch.Tensor) -> None:
        pos_mean = (scale * (glob.image * glob.text).sum(-1)).mean()
        neg = scale * torch.einsum("bd,bkd->bk", glob.image, glob.neg_text)
        # per-type sums through a one-hot product: deterministic (no atomics), so ranks agree bit for bit;
        # built by comparison, not F.one_hot, which reads the ids' range back to the host every step
        types = torch.arange(self.thresholds.shape[0], device=glob.neg_text_type.device)
        onehot = (glob.neg_text_type[..., None] == types).float() * glob.neg_text_mask[..., None]
        count = onehot.sum(dim=(0, 1))
        neg_mean = (onehot * neg[..., None]).sum(dim=(0, 1)) / count.clamp_min(1)
        new = (pos_mean - neg_mean).clamp(0.0, self.max_threshold)
        self.thresholds.copy_(torch.where(count > 0, new, self.thresholds))
