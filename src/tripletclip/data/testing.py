"""Small deterministic stand-ins for tests and benchmarks of the data pipeline (no model package needed).

- :class:`HashTokenizer`: list[str] -> LongTensor [N, L], one hashed id per word (0 = padding).
- :class:`ResizeToTensor`: PIL -> [3,S,S] float tensor; with ``jitter`` it crops at a random offset drawn from
  torch's global RNG, like open_clip's RandomResizedCrop, to exercise per-sample seeding.
- :func:`write_synthetic_shards`: the samples of the ``synthetic`` source (coloured squares, one negative caption
  and image per sample) written as shards with :class:`~tripletclip.data.shards.ShardWriter`.
- :func:`noise_image`, :func:`image_bytes`, :func:`write_tar`: seeded images, their encodings, and hand-made tars
  (any member layout, including broken ones) for reader tests.

All are module-level classes so that they pickle into DataLoader workers under any start method.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from tripletclip.data.shards import ShardWriter
from tripletclip.data.synthetic import synthetic_sample


class HashTokenizer:
    """Word-hash tokenizer: deterministic, vocabulary-free, fixed context length."""

    def __init__(self, context_length: int = 16, vocab: int = 49408) -> None:
        self.context_length = context_length
        self.vocab = vocab

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            for j, word in enumerate(t.lower().split()[: self.context_length]):
                h = hashlib.blake2b(word.encode("utf-8"), digest_size=4).digest()
                out[i, j] = 1 + int.from_bytes(h, "little") % (self.vocab - 1)
        return out


class ResizeToTensor:
    """Resize to ``size`` (plus ``jitter`` pixels, then a random crop) and scale to [0, 1]."""

    def __init__(self, size: int = 32, jitter: int = 0) -> None:
        self.size = size
        self.jitter = jitter

    def __call__(self, img: Image.Image) -> torch.Tensor:
        s = self.size + self.jitter
        arr = np.asarray(img.convert("RGB").resize((s, s), Image.BILINEAR), dtype=np.float32)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).div_(255.0)
        if self.jitter:
            top, left = (int(v) for v in torch.randint(0, self.jitter + 1, (2,)))
            x = x[:, top : top + self.size, left : left + self.size].contiguous()
        return x


def write_synthetic_shards(out_dir: str | Path, n: int, shard_size: int, image_size: int = 32,
                           neg_images: bool = True, prefix: str = "train", **writer_kwargs: Any) -> dict[str, Any]:
    """Write the first n samples of the ``synthetic`` source (``s00000`` ...) as shards; returns the manifest."""
    with ShardWriter(out_dir, prefix=prefix, shard_size=shard_size, overwrite=True, **writer_kwargs) as w:
        for i in range(n):
            w.write(**synthetic_sample(i, image_size, neg_images))
    return w.manifest or {}


def noise_image(seed: int, size: int = 16) -> Image.Image:
    """A seeded RGB image of uniform noise (every pixel differs: a wrong decode or crop shows)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    """``img`` encoded as ``fmt`` (PNG, JPEG at quality 90, lossless WEBP, ...)."""
    buf = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 90} if fmt == "JPEG" else {}
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def write_tar(path: str | Path, members: Sequence[tuple[str, bytes]]) -> str:
    """A tar holding ``members`` (name, bytes) in order; returns its path."""
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return str(path)
