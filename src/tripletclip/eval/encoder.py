"""Batched, cached CLIP encoding shared by every benchmark.

Every evaluator asks this wrapper for embeddings instead of calling the model per row, as the official scripts
do (SugarCrepe, arXiv 2306.14610, ``main_eval.py`` encodes the image and both captions row by row). Here:
- each distinct image is decoded, preprocessed and encoded once, in batches; embeddings are cached under the
  sha256 of the file content (plus the crop box for box-cropped benchmarks), so the same picture under two
  names, or in two benchmarks run with one encoder, is encoded once;
- texts are deduplicated and cached by their string;
- embeddings are L2-normalised in float32 after the forward pass (also under bf16 autocast), which is what
  ``encode_*(normalize=True)`` computes for an fp32 model.

NOTE: the cache belongs to one state of the weights. The trainer builds a fresh ``Encoder`` for each periodic
evaluation; anyone who updates the weights of a live encoder must call :meth:`Encoder.clear_cache`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image

from tripletclip.errors import InputError
from tripletclip.models.trimmed import encode_text_trimmed, supports_trimming
from tripletclip.utils.progress import progress_bar


@dataclass(frozen=True)
class ImageCrop:
    """A box of an image file, ARO style: (x, y, w, h) in pixels; the crop is (x, y, x + w, y + h)."""

    path: Path
    box: tuple[float, float, float, float]


ImageSource = Union[str, Path, bytes, Image.Image, ImageCrop]

PRECISIONS = ("fp32", "bf16")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Loaded:
    """Raw bytes (or a PIL image) of one source plus its cache key."""

    __slots__ = ("key", "data", "pil", "box", "name")

    def __init__(self, key: str, data: Optional[bytes], pil: Optional[Image.Image], box: Optional[tuple] = None, name: str = ""):
        self.key, self.data, self.pil, self.box, self.name = key, data, pil, box, name


def _read(source: ImageSource) -> _Loaded:
    if isinstance(source, ImageCrop):
        data = Path(source.path).read_bytes()
        box = tuple(float(v) for v in source.box)
        return _Loaded(f"{_sha256(data)}:crop{box}", data, None, box, str(source.path))
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
        return _Loaded(_sha256(data), data, None, name=str(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        key = _sha256(data)
        return _Loaded(key, data, None, name=f"<image bytes sha256 {key[:12]}>")
    if isinstance(source, Image.Image):
        h = hashlib.sha256(f"{source.mode}:{source.size}:".encode())
        h.update(source.tobytes())
        return _Loaded("pil:" + h.hexdigest(), None, source)
    raise TypeError(f"image source must be a path, bytes, a PIL image or an ImageCrop, got {type(source).__name__}")


def _decode(item: _Loaded) -> Image.Image:
    img = item.pil if item.pil is not None else Image.open(io.BytesIO(item.data))
    if item.box is not None:
        # ARO crops the RGB image to the relation / attribute box before the model's transform
        x, y, w, h = item.box
        img = img.convert("RGB").crop((x, y, x + w, y + h))
    return img


class Encoder:
    """L2-normalised float32 embeddings of images and texts from any open_clip-style model.

    ``model`` needs ``encode_image`` and ``encode_text``; ``preprocess`` maps a PIL image to a [3, H, W] tensor;
    ``tokenizer`` maps a list of strings to a LongTensor of token ids.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int = 256,
        device: Optional[str | torch.device] = None,
        precision: str = "fp32",
        identity: Optional[dict[str, Any]] = None,
        workers: Optional[int] = None,
        progress: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        # DDP / compiled wrappers keep the CLIP module in .module / ._orig_mod
        while not hasattr(model, "encode_image") and hasattr(model, "module"):
            model = model.module
        if not (hasattr(model, "encode_image") and hasattr(model, "encode_text")):
            raise TypeError(f"{type(model).__name__} has no encode_image/encode_text: not a CLIP model")
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.precision = precision
        self.identity = dict(identity or {})
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.progress = progress
        self._trim = supports_trimming(model)
        self._images: dict[str, torch.Tensor] = {}
        self._texts: dict[str, torch.Tensor] = {}
        self.stats: dict[str, float] = {
            "images_requested": 0, "images_encoded": 0, "texts_requested": 0, "texts_encoded": 0,
            "image_seconds": 0.0, "text_seconds": 0.0,
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(cls, bundle: Any, batch_size: int = 256, **kwargs: Any) -> "Encoder":
        """From a ``tripletclip.models`` bundle (model, preprocess_val, tokenizer, identity)."""
        return cls(
            bundle.model, bundle.preprocess_val, bundle.tokenizer, batch_size=batch_size,
            identity=getattr(bundle, "identity", None), **kwargs,
        )

    def clear_cache(self) -> None:
        """Forget cached embeddings (call after the weights change)."""
        self._images.clear()
        self._texts.clear()

    def describe(self) -> dict[str, Any]:
        """What produced the embeddings, for result records."""
        return {"model": self.identity, "precision": self.precision, "device": str(self.device), "batch_size": self.batch_size}

    # ------------------------------------------------------------------ model calls
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        amp = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16" else contextlib.nullcontext()
        )
        try:
            with torch.no_grad(), amp:
                yield
        finally:
            self.model.train(was_training)

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._inference():
            out = self.model.encode_image(pixels.to(self.device))
        return F.normalize(out.float(), dim=-1).cpu()

    def _forward_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        with self._inference():
            out = encode_text_trimmed(self.model, tokens)
        return F.normalize(out.float(), dim=-1).cpu()

    # ------------------------------------------------------------------ public API
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] embeddings; each distinct string is encoded once per encoder."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, expected str")
        self.stats["texts_requested"] += len(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if todo:
            start = time.perf_counter()
            tokens = self.tokenizer(todo)
            # batches of similar length, so that trimming the padding saves the most
            order = sorted(range(len(todo)), key=lambda i: int((tokens[i] != 0).sum())) if self._trim else range(len(todo))
            order = list(order)
            with self._bar(len(todo), "texts") as advance:
                for i in range(0, len(todo), self.batch_size):
                    idx = order[i : i + self.batch_size]
                    for j, e in zip(idx, self._forward_texts(tokens[idx])):
                        self._texts[todo[j]] = e
                    advance(len(idx))
            self.stats["texts_encoded"] += len(todo)
            self.stats["text_seconds"] += time.perf_counter() - start
        if not texts:
            return torch.zeros(0, 0)
        return torch.stack([self._texts[t] for t in texts])

    def encode_images(self, sources: Sequence[ImageSource]) -> torch.Tensor:
        """[N, D] embeddings; each distinct image content is decoded and encoded once per encoder."""
        sources = list(sources)
        self.stats["images_requested"] += len(sources)
        # the same path or crop named twice is read once
        def ident(s: ImageSource) -> Any:
            if isinstance(s, (str, Path)):
                return ("path", str(Path(s).resolve()))
            if isinstance(s, ImageCrop):
                return ("crop", str(Path(s.path).resolve()), tuple(s.box))
            return ("obj", id(s))

        first: dict[Any, int] = {}
        order = [first.setdefault(ident(s), i) for i, s in enumerate(sources)]
        unique = sorted(set(order))
        keys: dict[int, str] = {}
        start = time.perf_counter()
        encoded_before = self.stats["images_encoded"]
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        try:
            mapper = pool.map if pool is not None else map
            pending: list[_Loaded] = []
            pending_keys: set[str] = set()
            with self._bar(len(unique), "images") as advance:
                for i in range(0, len(unique), self.batch_size):
                    idx = unique[i : i + self.batch_size]
                    for j, item in zip(idx, mapper(_read, [sources[j] for j in idx])):
                        keys[j] = item.key
                        if item.key not in self._images and item.key not in pending_keys:
                            pending.append(item)
                            pending_keys.add(item.key)
                    while len(pending) >= self.batch_size:
                        self._encode_batch(pending[: self.batch_size], mapper)
                        pending_keys.difference_update(p.key for p in pending[: self.batch_size])
                        pending = pending[self.batch_size :]
                    advance(len(idx))
                if pending:
                    self._encode_batch(pending, mapper)
        finally:
            if pool is not None:
                pool.shutdown()
        if self.stats["images_encoded"] > encoded_before:
            self.stats["image_seconds"] += time.perf_counter() - start
        if not sources:
            return torch.zeros(0, 0)
        return torch.stack([self._images[keys[o]] for o in order])

    def _encode_batch(self, items: list[_Loaded], mapper: Callable) -> None:
        def prepare(item: _Loaded) -> torch.Tensor:
            try:
                return self.preprocess(_decode(item))
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
                raise InputError(f"{item.name or 'image'}: cannot be decoded ({e}); replace or remove the file") from None

        pixels = torch.stack(list(mapper(prepare, items)))
        for item, e in zip(items, self._forward_images(pixels)):
            self._images[item.key] = e
        self.stats["images_encoded"] += len(items)

    @contextlib.contextmanager
    def _bar(self, total: int, what: str) -> Iterator[Callable[[int], None]]:
        if not self.progress or total < 2 * self.batch_size:
            yield lambda n: None
            return
        with progress_bar(unit=what, transient=True) as bar:
            task = bar.add_task(f"encoding {what}", total=total)
            yield lambda n: bar.advance(task, n)
