"""CLIP similarities for filtering and statistics, through the project's model factory.

A thin wrapper over a :class:`tripletclip.models.ModelBundle`: encode PIL images and strings in batches
(bf16 autocast on GPU), return L2-normalised float32 embeddings, and aligned pair cosines.
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from tripletclip.errors import InputError
from tripletclip.negatives.base import local_device


def load_bundle(model: str = "", pretrained: str = "", run: str = "", device: str = "cpu", force_quick_gelu: bool = False) -> Any:
    """A model bundle from an open_clip name (+ pretrained tag or file) or from a tripletclip run folder."""
    if run:
        from tripletclip.models import load_run_model

        return load_run_model(run)
    if not model:
        raise InputError("give --model (an open_clip name, e.g. ViT-B-32-quickgelu with --pretrained openai) or --run")
    if not pretrained and not model.startswith(("hf-hub:", "local-dir:")):  # random weights would score noise
        raise InputError(f"--model {model} without --pretrained would score with random weights; pass --pretrained "
                         "(a tag or a weights file) or --run")
    from tripletclip.models import create_model

    return create_model(model, pretrained=pretrained, device=device, force_quick_gelu=force_quick_gelu)


class ClipScorer:
    """Batched image/text embeddings of a bundle's model (normalised, float32, numpy)."""

    def __init__(self, bundle: Any, device: str = "auto", batch_size: int = 64) -> None:
        device = local_device(device)
        self.device, self.batch_size = device, batch_size
        self.bundle = bundle
        self.model = bundle.model.to(device).eval()
        self.identity = dict(getattr(bundle, "identity", {}) or {})

    def _autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        for b in range(0, len(images), self.batch_size):
            x = torch.stack([self.bundle.preprocess_val(im.convert("RGB")) for im in images[b : b + self.batch_size]])
            with torch.inference_mode(), self._autocast():
                f = self.model.encode_image(x.to(self.device), normalize=True)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for b in range(0, len(texts), self.batch_size):
            t = self.bundle.tokenizer(list(texts[b : b + self.batch_size]))
            with torch.inference_mode(), self._autocast():
                f = self.model.encode_text(t.to(self.device), normalize=True)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def pair_cosines(self, images: Optional[Sequence[Image.Image]], texts_a: Sequence[str],
                     texts_b: Optional[Sequence[str]] = None) -> np.ndarray:
        """cos(image_i, text_i) when images are given, else cos(texts_a_i, texts_b_i)."""
        a = self.encode_images(images) if images is not None else self.encode_texts(texts_a)
        b = self.encode_texts(texts_a if images is not None else texts_b or [])
        return (a * b).sum(-1) if len(a) else np.zeros(0, np.float32)
