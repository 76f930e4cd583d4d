"""From a parsed record to :class:`~tripletclip.data.contract.Sample`: image decode, transform, tokenisation.

Readers (shards, tables) turn a raw sample into a :class:`Record` (texts parsed, images still encoded and
unread); this module picks the caption (LaCLIP: one of several, seeded by (seed, epoch, sample)), picks the
negatives to keep, decodes only the images the objective uses, applies the model's ``preprocess`` under a
per-sample seed (random crops are then reproducible, whatever worker or position decodes the sample), and
tokenises all texts of a batch in one tokenizer call.

NOTE: horizontal flips are refused (docs/methods.md section 3.3: they swap left and right in captions).
"""
from __future__ import annotations

import io
import os
import random
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from PIL import Image

from tripletclip.data.contract import DataError, Sample
from tripletclip.data.order import choose, derive_seed, pick

if TYPE_CHECKING:
    from tripletclip.data.memo import DecodeMemo

Preprocess = Callable[[Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


class BadSample(Exception):
    """A sample that cannot be used: ``reason`` says what is wrong, ``hint`` what to do."""

    def __init__(self, reason: str, hint: str = "fix or remove the sample") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class Blob:
    """Encoded image bytes, read lazily: a file, a byte range of a file (tar member), or bytes in memory."""

    __slots__ = ("path", "offset", "size", "data", "label")

    def __init__(self, path: str = "", offset: int = 0, size: int = -1, data: bytes | None = None, label: str = "") -> None:
        self.path, self.offset, self.size, self.data, self.label = path, offset, size, data, label

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            with open(self.path, "rb") as f:
                if self.offset:
                    f.seek(self.offset)
                data = f.read(self.size)
        except FileNotFoundError:
            raise BadSample(f"image file not found: {self.path}", "set data.image_root to the folder holding the images") from None
        except OSError as e:
            raise BadSample(f"cannot read {self.label or self.path}: {e}") from None
        if self.size >= 0 and len(data) != self.size:
            raise BadSample(f"{self.label or self.path} is truncated ({len(data)} of {self.size} bytes)", "re-create the shard")
        return data


@dataclass
class Record:
    """A parsed sample: texts known, images not yet read."""

    key: str
    uid: str  # stable identity for per-sample seeds (shard name + key, or table name + row)
    where: str  # for messages: "<file>, sample '<key>'" or "<file>, row <i>"
    captions: list[str]
    image: Blob
    neg_captions: list[str] = field(default_factory=list)
    neg_types: list[str] = field(default_factory=list)
    neg_images: list[Blob] = field(default_factory=list)
    # True when negative image m renders negative caption m (TripletData); False for e.g. NegCLIP's
    # nearest-neighbour images, which are sampled independently of the captions.
    aligned: bool = True
    meta: dict[str, Any] = field(default_factory=dict)  # the sample's user meta (shards' json minus the format's keys)


@dataclass
class DecodeOptions:
    seed: int
    use_neg_text: bool
    use_neg_image: bool
    max_neg_text: int
    max_neg_image: int
    sample_one_caption: bool
    sample_negatives: bool
    max_image_pixels: int = 0  # 0: MAX_IMAGE_PIXELS

    @property
    def k(self) -> int:
        return self.max_neg_text if self.use_neg_text else 0

    @property
    def m(self) -> int:
        return self.max_neg_image if self.use_neg_image else 0


@dataclass
class Decoded:
    """A sample with images transformed but texts not yet tokenised."""

    key: str
    image: torch.Tensor
    caption: str
    neg_captions: list[Optional[str]]
    neg_types: list[str]
    neg_images: list[Optional[torch.Tensor]]


def check_no_flip(preprocess: object) -> None:
    """Refuse transforms containing a horizontal flip (spatial captions would become wrong)."""
    stack, seen = [preprocess], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if "HorizontalFlip" in type(t).__name__:
            raise DataError(f"preprocess contains {type(t).__name__}: flips swap left/right in captions; remove it")
        inner = getattr(t, "transforms", None)
        if isinstance(inner, (list, tuple)):
            stack.extend(inner)


# PIL's own warning threshold (decompression bombs): ~9,460 x 9,460, far above any CLIP training image
MAX_IMAGE_PIXELS = 89_478_485


def open_image(blob: Blob, max_pixels: int = 0) -> Image.Image:
    """Decode encoded bytes to an RGB PIL image (BadSample if undecodable, or if its header declares more than
    ``max_pixels`` pixels: a decompression bomb of a few kB must not be decoded to gigabytes)."""
    data = blob.read()
    cap = max_pixels or MAX_IMAGE_PIXELS
    if Image.MAX_IMAGE_PIXELS is not None and cap > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = cap  # NOTE: data.max_image_pixels is the limit; PIL's own would refuse at 2x its own
    try:
        with warnings.catch_warnings():  # the cap below decides, PIL's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
    except Exception as e:  # PIL raises many types for corrupt data (and DecompressionBombError)
        raise BadSample(f"undecodable image {blob.label or os.path.basename(blob.path)} ({type(e).__name__}: {e})",
                        "re-encode or remove the image") from None
    w, h = img.size
    if w * h > cap:
        raise BadSample(f"image {blob.label or os.path.basename(blob.path)} is {w} x {h} = {w * h:,} pixels, over "
                        f"data.max_image_pixels={cap:,}; not decoded", "downscale it, or raise data.max_image_pixels")
    try:
        img.load()
    except Exception as e:  # PIL raises many types for corrupt data
        raise BadSample(f"undecodable image {blob.label or os.path.basename(blob.path)} ({type(e).__name__}: {e})",
                        "re-encode or remove the image") from None
    return img if img.mode == "RGB" else img.convert("RGB")


def _transform(img: Image.Image, preprocess: Preprocess, seed: int) -> torch.Tensor:
    # NOTE: only the CPU generator: torch.manual_seed also queues CUDA seeding, with a traceback capture
    # that costs more than decoding a small image.
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    out = preprocess(img)
    if not isinstance(out, torch.Tensor) or out.dim() != 3:
        raise DataError(f"preprocess must return a [3,H,W] tensor, got {getattr(out, 'shape', type(out))}")
    return out


def _open(blob: Blob, max_pixels: int, memo: Optional["DecodeMemo"]) -> Image.Image:
    """:func:`open_image`, through ``memo`` (data/memo.py) when given: the same encoded bytes are decoded once
    per run (keyed by the bytes themselves, so a hit is exact whatever the source)."""
    if memo is None:
        return open_image(blob, max_pixels)
    data = blob.read()
    return memo.image(data, lambda: open_image(Blob(blob.path, data=data, label=blob.label), max_pixels))


def decode_record(rec: Record, epoch: int, opts: DecodeOptions, preprocess: Preprocess,
                  memo: Optional["DecodeMemo"] = None) -> Decoded:
    """Pick caption and negatives, decode and transform the images (global RNG must be forked by caller).
    ``memo`` keeps decoded images between passes; the transform runs on every call with the same seed."""
    captions = [c for c in rec.captions if isinstance(c, str) and c.strip()]
    if not captions:
        raise BadSample("empty caption", "give every image a non-empty caption")
    caption = choose(captions, opts.sample_one_caption, opts.seed, epoch, rec.uid, "caption")
    k, m = opts.k, opts.m
    n_txt = len(rec.neg_captions) if k else 0
    n_img = len(rec.neg_images) if m else 0
    if rec.aligned:
        slots = pick(max(n_txt, n_img), max(k, m), opts.sample_negatives, opts.seed, epoch, rec.uid, "neg")
        txt_idx, img_idx = slots[:k], slots[:m]
    else:
        txt_idx = pick(n_txt, k, opts.sample_negatives, opts.seed, epoch, rec.uid, "neg_text")
        img_idx = pick(n_img, m, opts.sample_negatives, opts.seed, epoch, rec.uid, "neg_image")
    neg_caps: list[Optional[str]] = []
    neg_types: list[str] = []
    for i in txt_idx:
        ok = i < n_txt and rec.neg_captions[i].strip()
        neg_caps.append(rec.neg_captions[i] if ok else None)
        neg_types.append(rec.neg_types[i] if i < len(rec.neg_types) else "unknown")
    image = _transform(_open(rec.image, opts.max_image_pixels, memo), preprocess, derive_seed(opts.seed, epoch, rec.uid, "image"))
    neg_imgs: list[Optional[torch.Tensor]] = []
    for i in img_idx:
        if i >= n_img:
            neg_imgs.append(None)
            continue
        seed = derive_seed(opts.seed, epoch, rec.uid, "neg_image", i)
        neg_imgs.append(_transform(_open(rec.neg_images[i], opts.max_image_pixels, memo), preprocess, seed))
    return Decoded(rec.key, image, caption, neg_caps, neg_types, neg_imgs)


def tokenize_batch(items: Sequence[Decoded], tokenizer: Tokenizer, context_length: int,
                   memo: Optional["DecodeMemo"] = None) -> list[Sample]:
    """Tokenise every caption and negative of a batch in one call and build Samples (``memo``: texts tokenised
    before are taken from it; tokenizers tokenise each text on its own, so the rows are the same)."""
    texts = [d.caption for d in items]
    for d in items:
        texts.extend(c for c in d.neg_captions if c is not None)
    tokens = tokenizer(texts) if memo is None else memo.tokenize(texts, tokenizer)
    if not isinstance(tokens, torch.Tensor) or tokens.shape != (len(texts), context_length):
        raise DataError(f"tokenizer returned {getattr(tokens, 'shape', type(tokens))} for {len(texts)} texts; "
                        f"expected [{len(texts)}, {context_length}] (check model.context_length)")
    samples, pos = [], len(items)
    for i, d in enumerate(items):
        negs: list[Optional[torch.Tensor]] = []
        for c in d.neg_captions:
            if c is None:
                negs.append(None)
            else:
                negs.append(tokens[pos])
                pos += 1
        samples.append(Sample(d.key, d.image, tokens[i], negs, d.neg_types, d.neg_images))
    return samples
