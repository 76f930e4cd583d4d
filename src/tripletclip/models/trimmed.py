"""Text encoding trimmed to the batch's longest caption: the same features, a fraction of the text compute.

open_clip's CLIP text tower always runs the full context (77 tokens) although CC3M-style captions use ~15.
With a causal mask and end-of-text pooling (``argmax`` / ``eos``), positions after the last real token never
influence the pooled feature: token t attends only to tokens <= t and LayerNorm is per token. Running the
transformer on the first L = max caption length positions (positional embedding and mask sliced to L) is
therefore the same function; outputs agree to float rounding (tests/test_models.py checks it). Models this
does not cover (custom text towers, other pooling) fall back to their own ``encode_text``.
"""
from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F


def supports_trimming(model: torch.nn.Module) -> bool:
    """True for open_clip's built-in text tower: batch-first, a causal mask, end-of-text pooling."""
    if not isinstance(model, open_clip.CLIP) or getattr(model, "attn_mask", None) is None:
        return False
    if getattr(model, "text_pool_type", None) not in ("argmax", "eos"):
        return False
    if not getattr(model.transformer, "batch_first", False):  # older open_clip permutes to [L, N, D] itself
        return False
    if model.text_pool_type == "eos" and getattr(model, "text_eos_id", None) is None:
        return False
    mask = model.attn_mask
    causal = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return mask.dim() == 2 and bool(torch.equal(torch.isneginf(mask), causal)) and bool((mask[~causal] == 0).all())


def pool_positions(model: torch.nn.Module, text: torch.Tensor) -> torch.Tensor:
    """Index of the end-of-text token of each caption (where open_clip pools the text feature)."""
    if model.text_pool_type == "argmax":
        return text.argmax(dim=-1)
    return (text == model.text_eos_id).int().argmax(dim=-1)


def encode_text_trimmed(model: torch.nn.Module, text: torch.Tensor, normalize: bool = False,
                        length: int | None = None, supported: bool | None = None) -> torch.Tensor:
    """``model.encode_text`` computed on the positions up to the last end-of-text token of the batch.

    ``length``: the number of positions to encode, known on the host (train/forward.py ``prepare_batch``), so
    that no value is read back from the device; it must cover every end-of-text position. ``supported``: a
    cached :func:`supports_trimming` (it reads the mask back, so the trainer asks once).
    """
    if not (supports_trimming(model) if supported is None else supported):
        return model.encode_text(text, normalize=normalize)
    pool_at = pool_positions(model, text)
    if length is None:
        n = int(pool_at.max()) + 1
    else:  # an end-of-text id 0 (= padding) pools at the first padding position, one past the last token
        n = min(int(length) + int(model.text_pool_type == "eos" and model.text_eos_id == 0), text.shape[1])
    text = text[:, :n]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(x.shape[0], device=x.device), pool_at]
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return F.normalize(x, dim=-1) if normalize else x


class TrimmedClip(torch.nn.Module):
    """The training forward: ``(image_features, text_features, logit_scale)`` with trimmed text encoding.

    One module call per step, so DDP sees a single forward; wraps (does not copy) the open_clip model.
    ``text_len`` (from the host) trims without reading the batch back from the device.
    """

    takes_text_len = True

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.supported = supports_trimming(model)  # once: it compares the mask on the device

    def forward(self, image: torch.Tensor, text: torch.Tensor,
                text_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.model.encode_image(image, normalize=True),
            encode_text_trimmed(self.model, text, normalize=True, length=text_len, supported=self.supported),
            self.model.logit_scale.exp(),
        )
