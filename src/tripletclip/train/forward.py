"""Batch (data contract) -> features (loss contract) in ONE forward pass over positives and negatives.

The official TripletCLIP code runs two forward passes (real triplet, synthetic triplet); concatenating the
positives with the valid negatives computes the same features in one pass, which is faster and keeps a single
DDP forward per step (docs/methods.md section 2.4). Masked negatives are never encoded: their feature rows stay
zero and the losses ignore them through the masks.

NOTE on host syncs (docs/training.md): selecting the valid negatives needs their *number*, and trimming the
text needs the longest caption. Both are read from the batch while it is still in host memory
(:func:`prepare_batch`, before :func:`move_batch`), so the device step never reads a value back; on a GPU a
read-back (``nonzero``, ``int(t.max())``) stalls the stream every step.
"""
from __future__ import annotations

from typing import Any

import torch

from tripletclip.models.tokens import token_features
# keys prepare_batch adds: flat indices of the valid negative slots, and the text length to encode
INDEX_KEYS = {"neg_text": "neg_text_index", "neg_image": "neg_image_index"}
TEXT_LEN = "text_len"


def bucket_length(n: int, context_length: int, bucket: int) -> int:
    """``n`` rounded up to a multiple of ``bucket`` (at most the context length): few distinct text shapes, so
    ``torch.compile`` compiles a handful of graphs instead of one per caption length."""
    if bucket > 1:
        n = -(-n // bucket) * bucket
    return max(1, min(n, context_length))


def text_length(batch: dict[str, Any], use_neg_text: bool) -> int:
    """Positions up to the last non-padding token over captions (and negative captions): trimming the text to
    it is exact for causal end-of-text pooling (models/trimmed.py), with open_clip's padding id 0 (a tokenizer
    padding with another id trims nothing). Host data."""
    texts = [batch["text"]] + ([batch["neg_text"].flatten(0, 1)] if use_neg_text and "neg_text" in batch else [])
    if "pos_text" in batch:  # further positives of a batch_transform (CLIC) are encoded in the same call
        texts.append(batch["pos_text"].flatten(0, 1))
    last = 0
    for t in texts:
        if t.numel():
            nz = (t != 0).any(0)  # positions used by any caption
            idx = nz.nonzero()
            last = max(last, int(idx[-1]) + 1 if idx.numel() else 0)
    return last


def prepare_batch(batch: dict[str, Any], use_neg_text: bool, use_neg_image: bool, text_bucket: int = 1) -> dict[str, Any]:
    """Host-side (CPU) facts the device step needs: valid-negative indices and the trimmed text length."""
    out = dict(batch)
    for kind, use in (("neg_text", use_neg_text), ("neg_image", use_neg_image)):
        if use:
            out[INDEX_KEYS[kind]] = batch[f"{kind}_mask"].reshape(-1).nonzero(as_tuple=True)[0]
    ctx = batch["text"].shape[-1]
    out[TEXT_LEN] = bucket_length(text_length(batch, use_neg_text), ctx, text_bucket)
    return out


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _valid_index(batch: dict[str, Any], kind: str) -> torch.Tensor:
    idx = batch.get(INDEX_KEYS[kind])
    if idx is None:  # not prepared on the host: compute it here (a device read-back)
        idx = batch[f"{kind}_mask"].reshape(-1).nonzero(as_tuple=True)[0]
    return idx


def _scatter_rows(flat: torch.Tensor, idx: torch.Tensor, shape: tuple[int, int], dim: int) -> torch.Tensor:
    """Place encoded rows of the valid negatives back into a zero [B, K, D] tensor (autograd-friendly)."""
    b, k = shape
    out = flat.new_zeros(b * k, dim)
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
    nt_idx = _valid_index(batch, "neg_text") if use_neg_text else None
    ni_idx = _valid_index(batch, "neg_image") if use_neg_image else None
    if nt_idx is not None:
        texts.append(batch["neg_text"].flatten(0, 1).index_select(0, nt_idx))
    if ni_idx is not None:
        images.append(batch["neg_image"].flatten(0, 1).index_select(0, ni_idx))
    n_nt = nt_idx.shape[0] if nt_idx is not None else 0  # valid negative captions (a shape: no read-back)
    pos_text = batch.get("pos_text")  # further positives [B,P,L], made by an objective's batch_transform (CLIC)
    if pos_text is not None:
        texts.append(pos_text.flatten(0, 1))
    device_type = image.device.type
    inner = getattr(model, "module", model)  # DDP wraps the module
    kwargs = {"text_len": batch[TEXT_LEN]} if TEXT_LEN in batch and getattr(inner, "takes_text_len", False) else {}
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        out = model(torch.cat(images), torch.cat(texts), **kwargs)
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
    if nt_idx is not None:
        mask = batch["neg_text_mask"]
        feats["neg_text_features"] = _scatter_rows(txt_f[b : b + n_nt], nt_idx, mask.shape, d)
        feats["neg_text_mask"] = mask
        feats["neg_text_type"] = batch["neg_text_type"]
    if ni_idx is not None:
        mask = batch["neg_image_mask"]
        feats["neg_image_features"] = _scatter_rows(img_f[b:], ni_idx, mask.shape, d)
        feats["neg_image_mask"] = mask
    if pos_text is not None:
        feats["pos_text_features"] = txt_f[b + n_nt :].view(b, pos_text.shape[1], d)
    feats.update(token_features(out, b, batch["neg_text_mask"] if nt_idx is not None else None, nt_idx))
    return feats
