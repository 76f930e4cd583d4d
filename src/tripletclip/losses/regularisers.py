"""Regularisers that compose with any objective: CyCLIP's symmetry terms and distillation toward a teacher.

CyCLIP (Goel et al., arXiv 2205.14459, Sec. 3; docs/objectives.md). With cosine similarities over a batch of N
pairs (the global batch):
    cross-modal  L_C = 1/N sum_{j,k} (<I_j, T_k> - <I_k, T_j>)^2          (Eq. for C-Cyclic)
    in-modal     L_I = 1/N sum_{j,k} (<I_j, I_k> - <T_j, T_k>)^2          (Eq. for I-Cyclic)
    L = L_objective + lambda_C L_C + lambda_I L_I   (lambda = 0.25 in the paper).
The official code (src/train.py) computes ``mean(...) * N`` of the logit differences divided by s^2: the same
value. Each rank sums its local rows j against all k and divides by B_local, so the mean over ranks is the
W=1 value and the gradients match (tests/test_distributed.py).

Distillation (``loss.distill_weight``; DeGLA, arXiv 2504.16801, its self-distillation term): squared L2
distance between the student's and a teacher's normalised features of the positives,
    L_D = 1/B sum_i (||I_i - I^t_i||^2 + ||T_i - T^t_i||^2),
a mean over rows. DeGLA's code sums over the global batch instead (``F.mse_loss(..., reduction='sum')``), so
its weight w corresponds to our w * B_global. The teacher is the frozen starting model ("base") or an EMA of
the student ("ema"); tripletclip.train.teacher provides its features.
"""
from __future__ import annotations

from typing import Any

import torch

from tripletclip.errors import InputError
from tripletclip.losses.base import ContrastiveLoss, Features, LossInputs

TEACHERS = ("base", "ema")


def cyclip_cross(local: Features, glob: Features) -> torch.Tensor:
    """Cross-modal symmetry: this rank's share of 1/N sum_{j,k} (<I_j,T_k> - <I_k,T_j>)^2 (cosines)."""
    it = local.image @ glob.text.t()  # <I_j, T_k>  [B_loc, N]
    ti = local.text @ glob.image.t()  # <T_j, I_k> = <I_k, T_j>
    return (it - ti).square().sum() / local.batch_size


def cyclip_in(local: Features, glob: Features) -> torch.Tensor:
    """In-modal symmetry: this rank's share of 1/N sum_{j,k} (<I_j,I_k> - <T_j,T_k>)^2 (cosines)."""
    ii = local.image @ glob.image.t()
    tt = local.text @ glob.text.t()
    return (ii - tt).square().sum() / local.batch_size


def distill(local: Features) -> torch.Tensor:
    """1/B sum_i ||I_i - I^t_i||^2 + ||T_i - T^t_i||^2 over this rank's rows (teacher features are detached)."""
    d_img = (local.image - local.teacher_image).square().sum(-1)
    d_txt = (local.text - local.teacher_text).square().sum(-1)
    return (d_img + d_txt).mean()


class Regularised(ContrastiveLoss):
    """An objective plus CyCLIP's terms and/or distillation; extra terms "cyclip_cross", "cyclip_in", "distill".

    Wraps (does not copy) the objective: same name, same data needs, its state_dict under ``inner.``. Built
    only when a weight is non-zero, so a plain objective keeps its checkpoint layout.
    """

    def __init__(self, inner: ContrastiveLoss, cyclip_cross: float = 0.0, cyclip_in: float = 0.0,
                 distill_weight: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  (instance value: the wrapped objective's)
        self.needs_neg_text = inner.needs_neg_text  # type: ignore[misc]
        self.needs_neg_image = inner.needs_neg_image  # type: ignore[misc]
        self.needs_tokens = inner.needs_tokens  # type: ignore[misc]
        self.needs_pos_text = inner.needs_pos_text  # type: ignore[misc]
        self.needs_teacher = inner.needs_teacher or distill_weight > 0  # type: ignore[misc]
        self.default_teacher = inner.default_teacher  # type: ignore[misc]
        self.w_cross, self.w_in, self.w_distill = float(cyclip_cross), float(cyclip_in), float(distill_weight)

    def on_epoch_start(self, epoch: int) -> None:
        self.inner.on_epoch_start(epoch)

    def batch_transform(self, tokenizer: Any):  # type: ignore[no-untyped-def]
        return self.inner.batch_transform(tokenizer)

    def transformed_rows(self, rows: int) -> int:
        return self.inner.transformed_rows(rows)

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return self.inner.logits_shapes(local_b, global_b, k, m)

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        terms = dict(self.inner.compute(inputs))
        total = terms["loss"]
        if self.w_cross > 0:
            terms["cyclip_cross"] = cyclip_cross(inputs.local, inputs.glob)
            total = total + self.w_cross * terms["cyclip_cross"]
        if self.w_in > 0:
            terms["cyclip_in"] = cyclip_in(inputs.local, inputs.glob)
            total = total + self.w_in * terms["cyclip_in"]
        if self.w_distill > 0:
            terms["distill"] = distill(inputs.local)
            total = total + self.w_distill * terms["distill"]
        terms["loss"] = total
        return terms


def check_regularisers(cyclip_cross: float, cyclip_in: float, distill_weight: float, teacher: str,
                       ema_decay: float) -> None:
    """InputError naming the loss.* key when a regulariser setting is out of range."""
    for key, value in (("cyclip_cross", cyclip_cross), ("cyclip_in", cyclip_in), ("distill_weight", distill_weight)):
        if not (float(value) >= 0.0 and float(value) < float("inf")):
            raise InputError(f"loss.{key}={value!r}: must be a finite weight >= 0 (0 switches the term off)")
    if teacher not in ("",) + TEACHERS:
        raise InputError(f"loss.teacher={teacher!r}: must be 'base' (the frozen starting model), 'ema' (a moving "
                         "average of the student) or '' (the objective's default)")
    if not 0.0 <= float(ema_decay) < 1.0:
        raise InputError(f"loss.ema_decay={ema_decay!r}: must be in [0, 1) (DeGLA uses 0.999)")


def regularise(loss: ContrastiveLoss, cyclip_cross: float = 0.0, cyclip_in: float = 0.0,
               distill_weight: float = 0.0, **_: Any) -> ContrastiveLoss:
    """``loss`` itself when every weight is 0, else :class:`Regularised` around it."""
    if cyclip_cross == 0 and cyclip_in == 0 and distill_weight == 0:
        return loss
    return Regularised(loss, cyclip_cross, cyclip_in, distill_weight)
