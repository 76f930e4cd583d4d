"""Small deterministic stand-ins for tests and benchmarks of the data pipeline (no model package needed).

- :class:`HashTokenizer`: list[str] -> LongTensor [N, L], one hashed id per word (0 = padding).
- :class:`ResizeToTensor`: PIL -> [3,S,S] float tensor; with ``jitter`` it crops at a random offset drawn from
  torch's global RNG, like open_clip's RandomResizedCrop, to exercise per-sample seeding.
- :func:`write_synthetic_shards`: a tiny TripletData-like shard set (coloured squares, one negative caption
  and image per sample) written with :class:`~tripletclip.data.shards.ShardWriter`.

All are module-level classes so that they pickle into DataLoader workers under any start method.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tripletclip.data.shards import ShardWriter

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
_RGB = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20),
        "purple": (140, 30, 170), "orange": (250, 140, 0)}


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


def square_image(colour: str, position: int, size: int = 32, seed: int = 0) -> Image.Image:
    """A grey image with a coloured square at one of four positions, plus seeded pixel noise."""
    rng = np.random.default_rng(seed)
    arr = np.full((size, size, 3), 128, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
    q = size // 2
    y, x = divmod(position % 4, 2)
    arr[y * q + 2 : (y + 1) * q - 2, x * q + 2 : (x + 1) * q - 2] = _RGB[colour]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_synthetic_shards(out_dir: str | Path, n: int, shard_size: int, image_size: int = 32,
                           neg_images: bool = True, prefix: str = "train", **writer_kwargs: Any) -> dict[str, Any]:
    """Write n samples ``s00000`` ...; returns the manifest. Negative = the square in another colour."""
    places = ("top left", "top right", "bottom left", "bottom right")
    with ShardWriter(out_dir, prefix=prefix, shard_size=shard_size, overwrite=True, **writer_kwargs) as w:
        for i in range(n):
            colour, other = COLOURS[i % 6], COLOURS[(i + 1 + i // 6) % 6]
            if other == colour:
                other = COLOURS[(i + 2) % 6]
            pos = (i // 36) % 4
            negs = [square_image(other, pos, image_size, seed=i)] if neg_images else []
            w.write(f"s{i:05d}", square_image(colour, pos, image_size, seed=i),
                    [f"a {colour} square {places[pos]}", f"{places[pos]}: a {colour} square"],
                    neg_captions=[f"a {other} square {places[pos]}"], neg_types=["replace_att"],
                    neg_images=negs, meta={"index": i})
    return w.manifest or {}
