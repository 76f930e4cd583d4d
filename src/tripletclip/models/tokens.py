"""Patch and token features for objectives that declare ``needs_tokens`` (FSC-CLIP's local loss).

Image: the patch tokens of an open_clip ``VisionTransformer`` (its public ``output_tokens`` switch), projected
with the tower's ``proj`` into the joint space where the pooled feature lives; or, for the world's spatial CNN
(``world-cnn``), each grid cell's share of its linear readout (models/towers.py ``SpatialCNN.forward_tokens``).
Text: every position of the text tower after ``ln_final``, projected with ``text_projection``; the token mask
marks the start token up to and including the end-of-text token (where open_clip pools). The text is trimmed to
the batch's longest caption as in :mod:`tripletclip.models.trimmed` (positions after end-of-text never influence
earlier ones).

:class:`TokenClip` is the training forward for such objectives: one module call (one DDP forward) returning
the pooled features, the scale, and the tokens; :func:`token_features` splits its output into the loss
contract's fields (tripletclip.losses.base.Features).
"""
from __future__ import annotations

from typing import Any, Optional

import open_clip
import torch
import torch.nn.functional as F

from tripletclip.errors import InputError
from tripletclip.models.trimmed import pool_positions, supports_trimming


def token_support_problem(model: torch.nn.Module) -> Optional[str]:
    """Why ``model`` cannot give patch and token features, or None when it can."""
    visual = getattr(model, "visual", None)
    if _cell_tokens_trunk(visual) is None:
        if not isinstance(visual, open_clip.transformer.VisionTransformer):
            return (f"the image tower is {type(visual).__name__}, neither an open_clip VisionTransformer nor a "
                    "tc_spatial_cnn: patch features need one of them (e.g. model.name=world-vit-tiny or world-cnn)")
        if getattr(visual, "attn_pool", None) is not None:
            return "attention-pooled image towers (CoCa-style) have no per-patch features to align with words"
    if not supports_trimming(model):
        return "the text tower is not open_clip's built-in causal tower with end-of-text pooling"
    return None


def _cell_tokens_trunk(visual: Any) -> Optional[torch.nn.Module]:
    """The trunk of an open_clip ``TimmModel`` whose own linear head is the projection and that gives per-cell
    tokens (models/towers.py ``SpatialCNN.forward_tokens``), else None."""
    trunk = getattr(visual, "trunk", None)
    head = getattr(visual, "head", None)
    if not isinstance(visual, open_clip.timm_model.TimmModel) or not hasattr(trunk, "forward_tokens"):
        return None
    if head is not None and len(list(head.children())) > 0:  # an open_clip projection after the trunk
        return None
    return trunk if isinstance(getattr(trunk, "head", None), torch.nn.Linear) else None


def encode_image_tokens(model: torch.nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled [N,D] as ``encode_image``, projected patch tokens [N,P,D]): a ViT's patch tokens, or a spatial
    CNN's per-cell shares of its linear readout."""
    visual = model.visual
    trunk = _cell_tokens_trunk(visual)
    if trunk is not None:
        return trunk.forward_tokens(image)
    before = visual.output_tokens
    visual.output_tokens = True  # open_clip's own switch; restored at once so other callers see no change
    try:
        pooled, tokens = visual(image)
    finally:
        visual.output_tokens = before
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return pooled, tokens


def encode_text_tokens(model: torch.nn.Module, text: torch.Tensor, length: Optional[int] = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pooled [N,D] as ``encode_text``, projected tokens [N,L,D], mask [N,L]) with L the batch's longest caption.

    ``length``: that L known on the host (train/forward.py ``prepare_batch``), so nothing is read back from the
    device (models/trimmed.py ``encode_text_trimmed`` does the same).
    """
    pool_at = pool_positions(model, text)
    if length is None:
        n = int(pool_at.max()) + 1
    else:  # an end-of-text id 0 (= padding) pools at the first padding position, one past the last token
        n = min(int(length) + int(model.text_pool_type == "eos" and model.text_eos_id == 0), text.shape[1])
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(text[:, :n]).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    pooled = x[torch.arange(x.shape[0], device=x.device), pool_at]
    mask = torch.arange(n, device=x.device)[None, :] <= pool_at[:, None]
    return pooled, x, mask


class TokenClip(torch.nn.Module):
    """Training forward returning pooled features, scale and tokens as a dict (wraps, does not copy)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        problem = token_support_problem(model)
        if problem:
            raise InputError(f"this objective needs patch and token features, but {problem}")
        self.model = model

    takes_text_len = True  # train/forward.py passes the host-known text length (no read-back)

    def forward(self, image: torch.Tensor, text: torch.Tensor, text_len: Optional[int] = None
                ) -> dict[str, torch.Tensor]:
        img, img_tokens = encode_image_tokens(self.model, image)
        txt, txt_tokens, mask = encode_text_tokens(self.model, text, text_len)
        return {"image_features": F.normalize(img, dim=-1), "text_features": F.normalize(txt, dim=-1),
                "logit_scale": self.model.logit_scale.exp(), "image_tokens": img_tokens,
                "text_tokens": txt_tokens, "text_token_mask": mask}


def token_features(out: Any, b: int, neg_text_mask: Optional[torch.Tensor],
                   neg_text_index: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The loss contract's token fields from one forward over [positives | valid negatives]; {} without tokens.

    Image tokens of the positives only (the local losses pair an image with its own captions); negative
    captions' tokens are scattered back to [B,K,L,D] with zeros (and a False mask) where a negative is masked.
    """
    if not isinstance(out, dict) or "image_tokens" not in out:
        return {}
    txt, mask = out["text_tokens"], out["text_token_mask"]
    feats = {"image_tokens": out["image_tokens"][:b], "text_tokens": txt[:b], "text_token_mask": mask[:b]}
    if neg_text_mask is not None:
        k = neg_text_mask.shape[1]
        # the host-prepared index where the trainer gives it (no read-back), else from the mask
        idx = neg_text_index if neg_text_index is not None else neg_text_mask.reshape(-1).nonzero(as_tuple=True)[0]
        n = idx.shape[0]  # the valid negatives follow the positives (further positives, if any, come last)
        tokens = txt.new_zeros(b * k, *txt.shape[1:]).index_copy(0, idx, txt[b : b + n])
        token_mask = mask.new_zeros(b * k, mask.shape[1]).index_copy(0, idx, mask[b : b + n])
        feats["neg_text_tokens"] = tokens.view(b, k, *txt.shape[1:])
        feats["neg_text_token_mask"] = token_mask.view(b, k, mask.shape[1])
    return feats
