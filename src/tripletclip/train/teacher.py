"""What an objective declares it needs, provided by the trainer: token features and a teacher.

The trainer makes four calls into :class:`LossSupport` and never asks which objective runs: ``transform``
(the objective's ``batch_transform``, e.g. CLIC's concatenated pairs; identity otherwise),
``forward_module`` (the step's forward: token features when the loss ``needs_tokens``), ``features`` (the
teacher's features of the positives when it ``needs_teacher``) and ``after_step`` (the EMA update). Its
``state_dict`` goes into every checkpoint, so an EMA teacher resumes exactly.

Teachers (docs/objectives.md, "Forgetting"): "base" is a frozen copy of the model the run starts from (the
pretrained weights; on resume the copy is made before the checkpoint is loaded, so it is still the base);
"ema" follows the student after every optimiser step, theta_t <- d theta_t + (1 - d) theta_s (DeGLA,
arXiv 2504.16801: d = 0.999), starting from the base.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
import torch.nn.functional as F

from tripletclip.losses import ContrastiveLoss, teacher_kind
from tripletclip.models.tokens import TokenClip
from tripletclip.models.trimmed import TrimmedClip, encode_text_trimmed, supports_trimming


class Teacher:
    """A frozen ("base") or moving-average ("ema") copy of the model that encodes the positives."""

    def __init__(self, model: torch.nn.Module, kind: str, decay: float = 0.999) -> None:
        if kind not in ("base", "ema"):
            raise ValueError(f"teacher kind must be 'base' or 'ema', got {kind!r}")
        self.kind, self.decay = kind, float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.trims = supports_trimming(self.model)  # once: it compares a mask on the device

    @torch.no_grad()
    def features(self, batch: dict[str, Any], autocast_dtype: Optional[torch.dtype]) -> dict[str, torch.Tensor]:
        image, text = batch["image"], batch["text"]
        with torch.autocast(image.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            img = self.model.encode_image(image)
            # the host-known text length of the batch (train/forward.py prepare_batch): no read-back
            txt = encode_text_trimmed(self.model, text, length=batch.get("text_len"), supported=self.trims)
        return {"teacher_image_features": F.normalize(img.float(), dim=-1),
                "teacher_text_features": F.normalize(txt.float(), dim=-1)}

    @torch.no_grad()
    def update(self, student: torch.nn.Module) -> None:
        """EMA step after the optimiser step (a no-op for the frozen base)."""
        if self.kind != "ema":
            return
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.lerp_(s.detach(), 1.0 - self.decay)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        # the base teacher is rebuilt from the starting weights; only the EMA carries state
        return {"kind": self.kind, "weights": self.model.state_dict() if self.kind == "ema" else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("weights") is not None:
            self.model.load_state_dict(state["weights"])


class LossSupport:
    """Provides what ``loss`` declares (tokens, teacher) for a run on ``model`` (the bare, unwrapped model)."""

    def __init__(self, loss: ContrastiveLoss, loss_cfg: Any, model: torch.nn.Module, tokenizer: Any = None) -> None:
        self.needs_tokens = bool(loss.needs_tokens)
        self.transform = loss.batch_transform(tokenizer) or (lambda batch: batch)
        kind = teacher_kind(loss_cfg, loss)
        self.teacher = Teacher(model, kind, loss_cfg.ema_decay) if kind else None

    def forward_module(self, model: torch.nn.Module, trim_text: bool) -> torch.nn.Module:
        """The step's forward: tokens when needed, else text-trimmed pooled features (or the model itself)."""
        if self.needs_tokens:
            return TokenClip(model)
        return TrimmedClip(model) if trim_text else model

    def features(self, batch: dict[str, Any], autocast_dtype: Optional[torch.dtype]) -> dict[str, torch.Tensor]:
        return self.teacher.features(batch, autocast_dtype) if self.teacher is not None else {}

    def after_step(self, model: torch.nn.Module) -> None:
        if self.teacher is not None:
            self.teacher.update(model)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        if state and state.get("teacher") is not None and self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
