"""Training objectives by name: clip, negclip, negimage, tripletclip, ceclip (docs/methods.md section 2), fscclip,
clic, degla, and the regularisers any of them takes (docs/objectives.md; :func:`build_objective`).

Each objective is an ``nn.Module`` registered in :data:`LOSSES`; ``forward(features)`` takes the features
contract of :mod:`tripletclip.data.contract` and returns ``{"loss": total (with graph), <term>: detached}``.
Class attributes ``needs_neg_text`` / ``needs_neg_image`` tell the data side which negatives to decode:
``LOSSES.get(name).needs_neg_image``. The same code runs in one process and under torchrun / SLURM.
"""
from __future__ import annotations

import inspect
from typing import Any

from tripletclip.errors import InputError
from tripletclip.losses.base import LOSSES, ContrastiveLoss, Features, LossInputs
from tripletclip.losses import ceclip, clip, negclip, negimage, tripletclip  # noqa: F401  (registration)
from tripletclip.losses import clic, degla, fscclip  # noqa: F401  (registration)
from tripletclip.losses.regularisers import Regularised, check_regularisers, regularise
from tripletclip.losses.ceclip import CeClipLoss
from tripletclip.losses.clip import ClipLoss
from tripletclip.losses.negclip import NegClipLoss
from tripletclip.losses.negimage import NegImageLoss
from tripletclip.losses.tripletclip import TripletClipLoss


def build_loss(name: str, **kwargs: Any) -> ContrastiveLoss:
    """Instantiate the objective registered as ``name`` with its keyword arguments (LossConfig.kwargs)."""
    cls = LOSSES.get(name)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind in named and p.name != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise InputError(f"loss '{name}' got unknown option(s) {unknown}; it accepts: {accepted or 'none'} "
                         "(fix loss.kwargs in the config)")
    return cls(**kwargs)


def build_objective(cfg: Any) -> ContrastiveLoss:
    """The run's objective from a LossConfig: ``loss.name`` with ``loss.kwargs``, plus the regularisers
    ``loss.cyclip_cross``, ``loss.cyclip_in`` and ``loss.distill_weight`` (docs/objectives.md)."""
    check_regularisers(cfg.cyclip_cross, cfg.cyclip_in, cfg.distill_weight, cfg.teacher, cfg.ema_decay)
    loss = regularise(build_loss(cfg.name, **cfg.kwargs), cfg.cyclip_cross, cfg.cyclip_in, cfg.distill_weight)
    if cfg.teacher and not loss.needs_teacher:  # a setting without effect must not pass silently
        raise InputError(f"loss.teacher={cfg.teacher} has no effect: loss '{cfg.name}' uses no teacher; set "
                         "loss.distill_weight > 0 or drop loss.teacher")
    return loss


def teacher_kind(cfg: Any, loss: ContrastiveLoss) -> str:
    """"base" or "ema" when ``loss`` needs a teacher (loss.teacher, else the objective's default), else ""."""
    return (cfg.teacher or loss.default_teacher) if loss.needs_teacher else ""


__all__ = [
    "build_objective",
    "teacher_kind",
    "Regularised",
    "LOSSES",
    "build_loss",
    "ContrastiveLoss",
    "Features",
    "LossInputs",
    "ClipLoss",
    "NegClipLoss",
    "NegImageLoss",
    "TripletClipLoss",
    "CeClipLoss",
]
