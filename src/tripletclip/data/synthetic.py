"""The ``synthetic`` data source: TripletData-like samples made in memory (open_clip's ``--dataset-type
synthetic``), so that the trainer, the loader and the objectives can be tested and timed without any file.

Sample i is a grey image with a coloured square in one of four places, two captions saying where and which
colour, and one hard negative: the same caption with another colour (edit type ``replace_att``) and its
rendering. ``data.train`` holds the number of samples (default 256); the order, partition and resume follow the
table rows' rules of :mod:`tripletclip.data.order`, so this source exercises the same loader paths as files.
"""
from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import Blob, Record
from tripletclip.data.source import SOURCES
from tripletclip.data.tables import RowSource

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
PLACES = ("top left", "top right", "bottom left", "bottom right")
_RGB = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20),
        "purple": (140, 30, 170), "orange": (250, 140, 0)}
DEFAULT_SAMPLES = 256


def square_image(colour: str, position: int, size: int = 32, seed: int = 0) -> Image.Image:
    """A grey image with a coloured square at one of four positions, plus seeded pixel noise."""
    rng = np.random.default_rng(seed)
    arr = np.full((size, size, 3), 128, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
    q = size // 2
    y, x = divmod(position % 4, 2)
    arr[y * q + 2 : (y + 1) * q - 2, x * q + 2 : (x + 1) * q - 2] = _RGB[colour]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def synthetic_sample(i: int, image_size: int = 32, neg_images: bool = True) -> dict[str, Any]:
    """Sample i as :meth:`ShardWriter.write` keyword arguments (key, image, caption, negatives, meta)."""
    colour, other = COLOURS[i % 6], COLOURS[(i + 1 + i // 6) % 6]
    if other == colour:
        other = COLOURS[(i + 2) % 6]
    pos = (i // 36) % 4
    return {
        "key": f"s{i:05d}",
        "image": square_image(colour, pos, image_size, seed=i),
        "caption": [f"a {colour} square {PLACES[pos]}", f"{PLACES[pos]}: a {colour} square"],
        "neg_captions": [f"a {other} square {PLACES[pos]}"],
        "neg_types": ["replace_att"],
        "neg_images": [square_image(other, pos, image_size, seed=i)] if neg_images else [],
        "meta": {"index": i},
    }


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class SyntheticSource(RowSource):
    """``n`` generated samples; raw samples are their indices (ordered like table rows)."""

    def __init__(self, n: int, resampled: bool = False) -> None:
        if n < 1:
            raise DataError(f"synthetic data: {n} samples; set data.train to a positive sample count")
        self.n = n
        self.files = [f"synthetic:{n}"]
        self.partition = "resampled" if resampled else "rows"

    def where(self, raw: int) -> str:
        return f"{self.files[0]}, sample {raw}"

    def fingerprint(self) -> dict[str, Any]:
        """Generated data: the sample count identifies it (the generator is the package code, recorded too)."""
        return {"method": "generated", "sha256": hashlib.sha256(self.files[0].encode()).hexdigest(), "samples": self.n}

    def load(self, raw: int) -> Record:
        s = synthetic_sample(raw)
        return Record(key=s["key"], uid=f"synthetic/{raw}", where=self.where(raw), captions=s["caption"],
                      image=Blob(data=_png(s["image"]), label=s["key"]), neg_captions=s["neg_captions"],
                      neg_types=s["neg_types"], neg_images=[Blob(data=_png(x), label=f"{s['key']}.neg.0")
                                                            for x in s["neg_images"]], meta=s["meta"])


@SOURCES.register("synthetic")
def _synthetic_source(cfg: DataConfig) -> SyntheticSource:
    text = cfg.train.strip() or str(DEFAULT_SAMPLES)
    if not text.isdigit():
        raise DataError(f"data.train={cfg.train!r}: for data.type=synthetic give the number of samples, e.g. 256")
    return SyntheticSource(int(text), cfg.resampled)
