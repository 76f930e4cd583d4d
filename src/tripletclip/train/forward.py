"""Batch (data contract) -> features (loss contract) in ONE forward pass over positives and negatives.

The official TripletCLIP code runs two forward passes (real triplet, synthetic triplet); concatenating the
positives with the valid negatives computes the same features in one pass, which is faster and keeps a single
DDP forward per step (docs/methods.md section 2.4). Masked negatives are never encoded: their feature rows stay zero and the
losses ignore them through the masks.
"""
from __future__ import annotations

from typing import Any

import torch

from tripletclip.models.tokens import token_features


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _scatter_rows(flat: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Place encoded rows of the valid negatives back into a zero [B, K, D] tensor (autograd-friendly)."""
    b, k = mask.shape
    out = flat.new_zeros(b * k, dim)
    idx = mask.reshape(-1).nonzero(as_tuple=True)[0]
    out = out.index_copy(0, idx, flat)
    return out.view(b, k, dim)


def forward_features(
    model: torch.nn.Module,
    batch: dict[str, Any],
    use_neg_text: bool,
    use_neg_image: bool,
    autocast_dtype: torch.dtype | None,
) -> dict[str, torch.Tensor]:
    """Encode positives and (optionally) valid negatives with one model call; return the features contract."""
    image, text = batch["image"], batch["text"]
    b = image.shape[0]
    images, texts = [image], [text]
    nt_mask = batch["neg_text_mask"] if use_neg_text else None
    ni_mask = batch["neg_image_mask"] if use_neg_image else None
    if nt_mask is not None:
        texts.append(batch["neg_text"].flatten(0, 1)[nt_mask.reshape(-1)])
    if ni_mask is not None:
        images.append(batch["neg_image"].flatten(0, 1)[ni_mask.reshape(-1)])
    n_neg = sum(t.shape[0] for t in texts[1:])
    pos_text = batch.get("pos_text")  # further positives [B,P,L], made by an objective's batch_transform (CLIC)
    if pos_text is not None:
        texts.append(pos_text.flatten(0, 1))
    device_type = image.device.type
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        out = model(torch.cat(images), torch.cat(texts))
    if isinstance(out, dict):
        img_f, txt_f, scale = out["image_features"], out["text_features"], out["logit_scale"]
    else:
        img_f, txt_f, scale = out[0], out[1], out[2]
    # losses work in fp32: renormalise after the bf16 tower output
    img_f = torch.nn.functional.normalize(img_f.float(), dim=-1)
    txt_f = torch.nn.functional.normalize(txt_f.float(), dim=-1)
    d = img_f.shape[-1]
    feats: dict[str, torch.Tensor] = {
        "image_features": img_f[:b],
        "text_features": txt_f[:b],
        "logit_scale": scale.float().reshape(()),
    }
    if nt_mask is not None:
        feats["neg_text_features"] = _scatter_rows(txt_f[b : b + n_neg], nt_mask, d)
        feats["neg_text_mask"] = nt_mask
        feats["neg_text_type"] = batch["neg_text_type"]
    if ni_mask is not None:
        feats["neg_image_features"] = _scatter_rows(img_f[b:], ni_mask, d)
        feats["neg_image_mask"] = ni_mask
    if pos_text is not None:
        feats["pos_text_features"] = txt_f[b + n_neg :].view(b, pos_text.shape[1], d)
    feats.update(token_features(out, b, nt_mask))  # patch/token features when the forward gives them
    return feats
