"""data.cache_decoded_mb (data/memo.py): decoded images and token rows kept between epochs, batches bitwise those of
the loader without the cache (every source, with workers, across a resume), and the memory bound holds."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tripletclip.config.schema import DataConfig
from tripletclip.data.loader import build_train_loader
from tripletclip.data.memo import DecodeMemo
from tripletclip.data.testing import HashTokenizer, ResizeToTensor, image_bytes, noise_image
from _loader_checks import same as _same, take as _take

L = 16
TOK = HashTokenizer(L)
JITTER = ResizeToTensor(16, jitter=4)  # a random crop per read: the cache must not freeze it


def _loader(train: str, type_: str = "wds", cache_mb: int = 0, workers: int = 0, **kw):
    cfg = DataConfig(type=type_, train=train, workers=workers, shuffle_buffer=7, cache_decoded_mb=cache_mb, **kw)
    return build_train_loader(cfg, JITTER, TOK, batch_size=6, seed=0, context_length=L)


@pytest.mark.parametrize("type_,global_order,workers", [("wds", False, 0), ("wds", False, 2), ("synthetic", True, 0)])
def test_cached_batches_are_bitwise_the_uncached_ones(synthetic_shards, type_, global_order, workers):
    """Three epochs of 40 samples in batches of 6: later epochs read the cache, crops still differ per epoch."""
    train = synthetic_shards if type_ == "wds" else "40"
    plain = _take(_loader(train, type_, 0, workers, global_order=global_order), 20)
    cached = _take(_loader(train, type_, 64, workers, global_order=global_order), 20)
    _same(plain, cached)
    # the random transform still runs per read: a sample's image differs between its epochs
    first = {k: plain[i]["image"][j] for i in range(6) for j, k in enumerate(plain[i]["key"])}
    again = {k: plain[i]["image"][j] for i in range(7, 13) for j, k in enumerate(plain[i]["key"])}
    common = sorted(set(first) & set(again))
    assert common and any(not torch.equal(first[k], again[k]) for k in common)


def test_cached_loader_resumes_exactly(synthetic_shards):
    full = _take(_loader(synthetic_shards, cache_mb=64), 16)
    first = _loader(synthetic_shards, cache_mb=64)
    head = _take(first, 9)
    resumed = _loader(synthetic_shards, cache_mb=64)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    _same(head + _take(resumed, 7), full)


def test_later_epochs_decode_nothing(synthetic_shards, monkeypatch):
    import tripletclip.data.decode as decode

    short, long = _loader(synthetic_shards, cache_mb=64), _loader(synthetic_shards, cache_mb=64)  # validated here
    real, calls = decode.open_image, []

    def counting(blob, max_pixels=0):
        calls.append(1)
        return real(blob, max_pixels)

    monkeypatch.setattr(decode, "open_image", counting)
    _take(short, 7)  # 42 samples: the first epoch (40 images + 40 negative images) and two from the cache
    assert len(calls) == 80
    _take(long, 20)  # three epochs: a loader of its own, its own cache, each image decoded once
    assert len(calls) == 80 + 80


def test_memo_bound_and_tokens():
    memo = DecodeMemo(max_bytes=2500)
    a, b = image_bytes(noise_image(0, 16)), image_bytes(noise_image(1, 16))
    decoded = []

    def dec(data: bytes):
        def run() -> Image.Image:
            decoded.append(data)
            return Image.open(__import__("io").BytesIO(data)).convert("RGB")
        return run

    x = memo.image(a, dec(a))
    y = memo.image(a, dec(a))
    assert x.tobytes() == y.tobytes() and len(decoded) == 1 and memo.hits == 1
    y.putpixel((0, 0), (1, 2, 3))  # a transform writing into its input does not reach the cache
    assert memo.image(a, dec(a)).getpixel((0, 0)) == x.getpixel((0, 0))
    memo.image(b, dec(b))
    memo.image(b, dec(b))
    assert len(decoded) == 2 + 1  # b did not fit in 2,500 bytes after a (852 PNG + 768 pixel + 400 bytes): not kept
    assert memo.used <= memo.max_bytes
    texts = ["a red cube", "a blue ball", "a red cube"]
    calls: list[list[str]] = []

    def tok(t: list[str]) -> torch.Tensor:
        calls.append(list(t))
        return TOK(t)

    big = DecodeMemo(max_bytes=10**6)
    assert torch.equal(big.tokenize(texts, tok), TOK(texts))
    assert torch.equal(big.tokenize(texts[::-1], tok), TOK(texts[::-1]))
    assert calls == [["a red cube", "a blue ball"]]  # each unknown text once, then none
