"""Shared machinery of every objective: the features contract, validation, the global gather, the registry.

Implements the distributed recipe of docs/methods.md section 2.6, used by TripletCLIP
(arXiv 2411.02545), CE-CLIP (arXiv 2306.08832) and NegCLIP (arXiv 2210.01936): each rank computes logits for
its *local* rows against the columns of *all* ranks (positives of all ranks, then negatives of all ranks),
with labels ``arange(B_local) + B_local * rank``. At world size 1 the gather is the identity, so there is one
code path; unlike CE-CLIP's official code there is no single-process branch that can drift from the
distributed one.

NOTE: everything a loss needs (positives, negatives, masks, edit types) is packed into one fp32 matrix and
all-gathered once per step: one collective instead of up to seven. Masks and type ids travel as exact
small floats. The pack is differentiable, so gradients of every rank's columns flow back to their owner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional

import torch
from torch import nn

from tripletclip.edit_types import EDIT_TYPE_INDEX
from tripletclip.registry import Registry
from tripletclip.utils.distributed import all_gather_with_grad, get_rank, get_world_size

LOSSES: Registry[type["ContrastiveLoss"]] = Registry("loss")


@dataclass
class Features:
    """fp32 view of the features contract (see tripletclip.data.contract); masked negatives are zeroed."""

    image: torch.Tensor  # [B,D]
    text: torch.Tensor  # [B,D]
    neg_text: torch.Tensor | None = None  # [B,K,D]
    neg_text_mask: torch.Tensor | None = None  # [B,K] bool
    neg_text_type: torch.Tensor | None = None  # [B,K] long
    neg_image: torch.Tensor | None = None  # [B,M,D]
    neg_image_mask: torch.Tensor | None = None  # [B,M] bool
    pos_text: torch.Tensor | None = None  # [B,P,D] further positive captions of each image (needs_pos_text)
    # local-only fields (never all-gathered: the objectives that use them compute per-sample terms)
    image_tokens: torch.Tensor | None = None  # [B,P,D] projected patch features (needs_tokens)
    text_tokens: torch.Tensor | None = None  # [B,L,D] projected token features (needs_tokens)
    text_token_mask: torch.Tensor | None = None  # [B,L] bool, True on real tokens (start to end-of-text)
    neg_text_tokens: torch.Tensor | None = None  # [B,K,L,D] (needs_tokens and needs_neg_text)
    neg_text_token_mask: torch.Tensor | None = None  # [B,K,L] bool; all False on masked negatives
    teacher_image: torch.Tensor | None = None  # [B,D] teacher's image features (needs_teacher)
    teacher_text: torch.Tensor | None = None  # [B,D] teacher's text features (needs_teacher)

    @property
    def batch_size(self) -> int:
        return self.image.shape[0]


@dataclass
class LossInputs:
    """What :meth:`ContrastiveLoss.compute` works on: this rank's rows (``local``), every rank's columns
    (``glob``), the scale, and where the local rows sit inside the global batch."""

    local: Features
    glob: Features
    scale: torch.Tensor  # scalar fp32, exp(logit_scale)
    rank: int
    world_size: int

    @property
    def labels(self) -> torch.Tensor:
        """Global index of each local positive pair: arange(B_local) + B_local * rank."""
        b = self.local.batch_size
        return torch.arange(b, device=self.local.image.device) + b * self.rank


def _shape(t: torch.Tensor | torch.Size) -> str:
    return "[" + ",".join(str(s) for s in (t if isinstance(t, torch.Size) else t.shape)) + "]"


def parse_features(features: Mapping[str, Any], loss: str, neg_text: bool, neg_image: bool) -> Features:
    """Validate the features dict against the contract, cast to fp32, default the masks, zero masked rows.

    Zeroing masked negatives (torch.where, not multiplication) guarantees that they get exactly zero gradient
    and that padding which encoded to NaN (e.g. a zero image through a normaliser) cannot leak into any sum.
    """
    where = f"losses/{loss}"
    for key in ("image_features", "text_features", "logit_scale"):
        if key not in features:
            raise KeyError(f"{where}: features lack '{key}'; pass the features contract of tripletclip.data.contract")
    image, text = features["image_features"], features["text_features"]
    if image.dim() != 2 or text.shape != image.shape:
        raise ValueError(
            f"{where}: image_features {_shape(image)} and text_features {_shape(text)} must both be [B,D]"
        )
    b, d = image.shape
    out = Features(image=image.float(), text=text.float())

    def negatives(kind: str, wanted: bool, flag: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        key = f"neg_{kind}_features"
        if not wanted:
            return None
        if features.get(key) is None:
            raise KeyError(f"{where}: features lack '{key}' [B,K,D]; this objective needs negative {kind}s "
                           f"({flag}=true)")
        feats = features[key]
        if feats.dim() != 3 or feats.shape[0] != b or feats.shape[2] != d:
            raise ValueError(f"{where}: {key} has shape {_shape(feats)}, expected [B={b},K,D={d}]")
        mask = features.get(f"neg_{kind}_mask")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        elif mask.shape != feats.shape[:2]:
            raise ValueError(f"{where}: neg_{kind}_mask has shape {_shape(mask)}, expected {_shape(feats.shape[:2])}")
        mask = mask.bool()
        feats = torch.where(mask.unsqueeze(-1), feats.float(), feats.new_zeros((), dtype=torch.float32))
        return feats, mask

    got = negatives("text", neg_text, "data.use_neg_text")
    if got is not None:
        out.neg_text, out.neg_text_mask = got
        types = features.get("neg_text_type")
        if types is None:
            types = torch.full_like(out.neg_text_mask, EDIT_TYPE_INDEX["unknown"], dtype=torch.long)
        elif types.shape != out.neg_text_mask.shape:
            raise ValueError(f"{where}: neg_text_type has shape {_shape(types)}, expected {_shape(out.neg_text_mask)}")
        out.neg_text_type = types.long()
    got = negatives("image", neg_image, "data.use_neg_image")
    if got is not None:
        out.neg_image, out.neg_image_mask = got
    return out


def parse_pos_text(features: Mapping[str, Any], out: Features, loss: str) -> None:
    """Attach ``pos_text_features`` [B,P,D] (every slot valid) for objectives that declare ``needs_pos_text``."""
    pos = features.get("pos_text_features")
    if pos is None:
        raise KeyError(f"losses/{loss}: features lack 'pos_text_features' [B,P,D]; this objective declares "
                       "needs_pos_text=True (its batch_transform makes the 'pos_text' batch key)")
    b, d = out.image.shape
    if pos.dim() != 3 or pos.shape[0] != b or pos.shape[2] != d:
        raise ValueError(f"losses/{loss}: pos_text_features has shape {_shape(pos)}, expected [B={b},P,D={d}]")
    out.pos_text = pos.float()


def parse_extras(features: Mapping[str, Any], out: Features, loss: str, tokens: bool, teacher: bool) -> None:
    """Validate and attach the local-only fields an objective declares (``needs_tokens``, ``needs_teacher``).

    Masked token rows are zeroed with torch.where, as masked negatives are in :func:`parse_features`.
    """
    where = f"losses/{loss}"
    b, d = out.image.shape

    def get(key: str, shape: str, flag: str) -> torch.Tensor:
        if features.get(key) is None:
            raise KeyError(f"{where}: features lack '{key}' {shape}; this objective declares {flag}=True "
                           "(the trainer provides it: tripletclip.models.tokens / tripletclip.train.teacher)")
        return features[key]

    if tokens:
        img = get("image_tokens", "[B,P,D]", "needs_tokens")
        txt = get("text_tokens", "[B,L,D]", "needs_tokens")
        mask = get("text_token_mask", "[B,L]", "needs_tokens").bool()
        if img.dim() != 3 or img.shape[0] != b or img.shape[2] != d:
            raise ValueError(f"{where}: image_tokens has shape {_shape(img)}, expected [B={b},P,D={d}]")
        if txt.dim() != 3 or txt.shape[0] != b or txt.shape[2] != d or mask.shape != txt.shape[:2]:
            raise ValueError(f"{where}: text_tokens {_shape(txt)} / text_token_mask {_shape(mask)} must be "
                             f"[B={b},L,D={d}] / [B,L]")
        out.image_tokens, out.text_tokens, out.text_token_mask = img.float(), txt.float(), mask
        if out.neg_text is not None:
            ntok = get("neg_text_tokens", "[B,K,L,D]", "needs_tokens")
            nmask = get("neg_text_token_mask", "[B,K,L]", "needs_tokens").bool()
            k = out.neg_text.shape[1]
            if ntok.dim() != 4 or ntok.shape[:2] != (b, k) or ntok.shape[3] != d or nmask.shape != ntok.shape[:3]:
                raise ValueError(f"{where}: neg_text_tokens {_shape(ntok)} / neg_text_token_mask {_shape(nmask)} "
                                 f"must be [B={b},K={k},L,D={d}] / [B,K,L]")
            nmask = nmask & out.neg_text_mask[..., None]
            out.neg_text_tokens = torch.where(nmask[..., None], ntok.float(), ntok.new_zeros((), dtype=torch.float32))
            out.neg_text_token_mask = nmask
    if teacher:
        for key, attr in (("teacher_image_features", "teacher_image"), ("teacher_text_features", "teacher_text")):
            t = get(key, "[B,D]", "needs_teacher")
            if t.shape != (b, d):
                raise ValueError(f"{where}: {key} has shape {_shape(t)}, expected [B={b},D={d}]")
            setattr(out, attr, t.float().detach())  # a teacher is a target, never trained through


def parse_scale(logit_scale: Any, device: torch.device) -> torch.Tensor:
    """exp(logit_scale) as a 0-dim fp32 tensor, keeping its graph when it is a tensor."""
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"losses: logit_scale must be a scalar, got shape {_shape(logit_scale)}")
        return logit_scale.float().reshape(())
    return torch.tensor(float(logit_scale), dtype=torch.float32, device=device)


def gather_features(local: Features) -> Features:
    """All ranks' features concatenated in rank order, through one differentiable all-gather.

    Every rank must hold the same local batch size and the same K and M (fixed-size batches, drop_last):
    the labels ``arange(B) + B * rank`` and the collective itself rely on it.
    """
    if get_world_size() == 1:
        return local
    parts: list[tuple[str, torch.Tensor]] = [("image", local.image), ("text", local.text)]
    for name in ("neg_text", "neg_image"):
        if getattr(local, name) is not None:
            parts.append((name, getattr(local, name).flatten(1)))
            parts.append((name + "_mask", getattr(local, name + "_mask").float()))
    if local.pos_text is not None:
        parts.append(("pos_text", local.pos_text.flatten(1)))
    if local.neg_text_type is not None:
        parts.append(("neg_text_type", local.neg_text_type.float()))
    packed = all_gather_with_grad(torch.cat([t for _, t in parts], dim=1))
    glob = Features(image=local.image, text=local.text)  # placeholders, overwritten below
    offset = 0
    for name, t in parts:
        chunk = packed[:, offset : offset + t.shape[1]]
        offset += t.shape[1]
        ref = getattr(local, name)
        if name.endswith("_mask"):
            chunk = chunk > 0.5
        elif name == "neg_text_type":
            chunk = chunk.round().long()
        else:
            chunk = chunk.reshape(packed.shape[0], *ref.shape[1:])
        setattr(glob, name, chunk)
    return glob


class ContrastiveLoss(nn.Module):
    """Base of every objective: forward(features dict) -> {"loss": total with graph, <term>: detached}.

    Subclasses set ``needs_neg_text`` / ``needs_neg_image`` (the data side skips decoding what is not needed)
    and implement :meth:`compute` on a :class:`LossInputs`. Logits are computed in fp32 with autocast disabled,
    whatever precision the features arrive in. State that changes during training lives in buffers (saved with
    ``state_dict``); the trainer calls :meth:`on_epoch_start` whenever the data enter a new epoch.
    """

    name: ClassVar[str] = ""
    needs_neg_text: ClassVar[bool] = False
    needs_neg_image: ClassVar[bool] = False
    # What else the model and trainer must provide (docs/objectives.md, "The loss contract"):
    # needs_tokens: patch and token features (tripletclip.models.tokens.TokenClip);
    # needs_teacher: a teacher's features of the positives (tripletclip.train.teacher), whose kind
    # ("base": the frozen starting model, "ema": an exponential moving average of the student) defaults to
    # default_teacher unless loss.teacher says otherwise.
    needs_tokens: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    default_teacher: ClassVar[str] = "base"
    # needs_pos_text: further positives per image ("pos_text_features" [B,P,D], all-gathered like the negatives),
    # which only a batch_transform makes (CLIC)
    needs_pos_text: ClassVar[bool] = False

    def forward(self, features: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        local = parse_features(features, self.name, self.needs_neg_text, self.needs_neg_image)
        parse_extras(features, local, self.name, self.needs_tokens, self.needs_teacher)
        if self.needs_pos_text:
            parse_pos_text(features, local, self.name)
        scale = parse_scale(features["logit_scale"], local.image.device)
        with torch.autocast(device_type=local.image.device.type, enabled=False):
            inputs = LossInputs(local=local, glob=gather_features(local), scale=scale,
                        rank=get_rank(), world_size=get_world_size())
            terms = self.compute(inputs)
        return {k: (v if k == "loss" else v.detach()) for k, v in terms.items()}

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer when the data enter ``epoch`` (>= 1); objectives with per-epoch state reset it."""

    def batch_transform(self, tokenizer: Any) -> Optional[Callable[[dict[str, Any]], dict[str, Any]]]:
        """A function the trainer applies to every batch before the forward (the data contract in and out), or
        None. Objectives that build their own training examples from the batch (CLIC) return one."""
        return None

    def transformed_rows(self, rows: int) -> int:
        """Rows of a batch of ``rows`` samples after :meth:`batch_transform` (exact accumulation splits those)."""
        return rows

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        """Shapes of this objective's logits on one rank (logged: "batch size with negatives" made explicit)."""
        return {"logits_i2t": [local_b, global_b], "logits_t2i": [local_b, global_b]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement compute(inputs)")
