"""The official per-row protocol, kept as a reference for equality tests and the speed benchmark.

A re-statement of SugarCrepe's ``main_eval.py`` loop (arXiv 2306.14610): for every row, open the image,
preprocess and encode it, encode the positive and the negative caption, and count the row correct iff
pos_score > neg_score. Nothing is batched or cached; this is what the batched evaluators must agree with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image


@torch.no_grad()
def per_row_reference(
    model: Any,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    rows: Sequence[tuple[str | Path, str, str]],
    device: str | torch.device = "cpu",
) -> list[tuple[float, float, bool]]:
    """[(s(I, pos), s(I, neg), pos > neg)] for rows of (image path, positive caption, negative caption)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for path, pos, neg in rows:
            pos_emb = model.encode_text(tokenizer([pos]).to(device), normalize=True)
            neg_emb = model.encode_text(tokenizer([neg]).to(device), normalize=True)
            image = Image.open(path)
            img_emb = model.encode_image(preprocess(image).unsqueeze(0).to(device), normalize=True)
            pos_score = (pos_emb @ img_emb.t()).item()
            neg_score = (neg_emb @ img_emb.t()).item()
            out.append((pos_score, neg_score, pos_score > neg_score))
    finally:
        model.train(was_training)
    return out
