"""The one batch contract and the one features contract of tripletclip.

Every reader (webdataset shards, CSV/parquet tables, the embedded world) produces batches of this shape;
every loss consumes features of the matching shape. Nothing else in the code base defines shapes.

Batch (a plain dict of tensors, produced by :func:`collate`):

=================  ===================  ===========================================================
key                shape / dtype        meaning
=================  ===================  ===========================================================
``image``          [B,3,H,W] float      positive images x_i
``text``           [B,L] long           positive captions y_i (tokenised)
``neg_text``       [B,K,L] long         hard negative captions y'_{i,k}; zeros where masked
``neg_text_mask``  [B,K] bool           v_{i,k}: True where y'_{i,k} exists
``neg_text_type``  [B,K] long           index into ``tripletclip.edit_types.EDIT_TYPES`` (``unknown`` when not known)
``neg_image``      [B,M,3,H,W] float    hard negative images x'_{i,m}; zeros where masked
``neg_image_mask`` [B,M] bool           True where x'_{i,m} exists
``key``            list[str]            sample keys (for traceability, never fed to the model)
=================  ===================  ===========================================================

NOTE: x'_{i,m} is the rendering of y'_{i,m} (TripletData: the T2I model renders the negative caption), so
negative image m and negative caption m form a true pair whenever both masks are set. TripletCLIP's second
term relies on this alignment. K and M are fixed per run (padding + mask) so that all ranks all-gather
tensors of equal shape.

Features (the dict a loss receives, see :mod:`tripletclip.losses`): ``image_features`` [B,D],
``text_features`` [B,D], ``neg_text_features`` [B,K,D], ``neg_text_mask`` [B,K], ``neg_text_type`` [B,K],
``neg_image_features`` [B,M,D], ``neg_image_mask`` [B,M], ``logit_scale`` (scalar, already exponentiated).
All features are L2-normalised by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from tripletclip.edit_types import EDIT_TYPE_INDEX, EDIT_TYPES, edit_type_id  # noqa: F401  (neg_text_type indexes EDIT_TYPES)
from tripletclip.errors import InputError

BATCH_KEYS = ("image", "text", "neg_text", "neg_text_mask", "neg_text_type", "neg_image", "neg_image_mask")


class DataError(InputError):
    """Bad input data; the message is one line naming the file, the row or key, and what to do."""


@dataclass
class Sample:
    """One decoded training sample before batching (what readers yield after transforms).

    ``image`` is a [3,H,W] tensor; texts are token tensors [L]; ``neg_images`` align with ``neg_texts``
    by position (see module docstring). A ``None`` entry is a hole (masked) that keeps the alignment, e.g. a
    negative caption whose rendering is missing.
    """

    key: str
    image: torch.Tensor
    text: torch.Tensor
    neg_texts: list[Optional[torch.Tensor]] = field(default_factory=list)
    neg_types: list[str] = field(default_factory=list)
    neg_images: list[Optional[torch.Tensor]] = field(default_factory=list)


def collate(samples: Sequence[Sample], max_neg_text: int, max_neg_image: int, context_length: int) -> dict[str, Any]:
    """Stack samples into the batch contract, padding negatives to K=max_neg_text and M=max_neg_image.

    Extra negatives beyond K/M are dropped deterministically (the first ones are kept); callers that
    want all of them set K/M accordingly.
    """
    b = len(samples)
    if b == 0:
        raise ValueError("collate: empty batch")
    image = torch.stack([s.image for s in samples])
    text = torch.stack([s.text for s in samples])
    k, m = max_neg_text, max_neg_image
    neg_text = torch.zeros(b, k, context_length, dtype=text.dtype)
    neg_text_mask = torch.zeros(b, k, dtype=torch.bool)
    neg_text_type = torch.full((b, k), EDIT_TYPE_INDEX["unknown"], dtype=torch.long)
    neg_image = torch.zeros(b, m, *image.shape[1:], dtype=image.dtype)
    neg_image_mask = torch.zeros(b, m, dtype=torch.bool)
    for i, s in enumerate(samples):
        for j, t in enumerate(s.neg_texts[:k]):
            if t is None:
                continue
            neg_text[i, j] = t
            neg_text_mask[i, j] = True
            neg_text_type[i, j] = edit_type_id(s.neg_types[j] if j < len(s.neg_types) else None)
        for j, x in enumerate(s.neg_images[:m]):
            if x is None:
                continue
            neg_image[i, j] = x
            neg_image_mask[i, j] = True
    return {
        "image": image,
        "text": text,
        "neg_text": neg_text,
        "neg_text_mask": neg_text_mask,
        "neg_text_type": neg_text_type,
        "neg_image": neg_image,
        "neg_image_mask": neg_image_mask,
        "key": [s.key for s in samples],
    }
