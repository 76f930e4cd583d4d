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


def test_later_epochs_open_no_shard_and_parse_no_sample(synthetic_shards, monkeypatch):
    """wds keeps the raw samples of shards read whole and, once kept, their parsed records (data/memo.py): from
    the second pass on no shard is opened, from the third no sample parsed; batches bitwise those without it."""
    import tripletclip.data.wds as wds

    plain = _take(_loader(synthetic_shards), 20)
    cached = _loader(synthetic_shards, cache_mb=64)  # validated (its natural pass) before the counting starts
    real_open, real_parse, opens, parses = wds.open_shard, wds.parse_sample, [], []
    monkeypatch.setattr(wds, "open_shard", lambda path: (opens.append(path), real_open(path))[1])
    monkeypatch.setattr(wds, "parse_sample", lambda *a: (parses.append(a[1]), real_parse(*a))[1])
    got = _take(cached, 20)  # three epochs of 40 samples
    _same(plain, got)
    assert sorted(opens) == sorted(set(opens)) and len(opens) == 8  # each of the 8 shards once
    # a sample is parsed until its shard's pass is kept (whose bytes the bound counts): all of the first pass but
    # those the shuffle buffer holds back past their shard's end, at most once more in the second, never in the third
    assert 40 <= len(parses) <= 80


def test_a_damaged_shard_is_read_and_counted_in_every_pass(tmp_path):
    """A cut shard is never kept: every pass reads it again, so its losses are counted per pass, as without the
    cache."""
    import tarfile

    from tripletclip.data.testing import write_synthetic_shards

    write_synthetic_shards(tmp_path, n=30, shard_size=10, image_size=16)
    tar = tmp_path / "train-000001.tar"
    with tarfile.open(tar) as tf:
        member = next(m for m in tf.getmembers() if m.name.startswith("s00014.") and m.name.endswith(".png"))
    tar.write_bytes(tar.read_bytes()[: member.offset_data + member.size // 2])
    train = str(tmp_path / "train-{000000..000002}.tar")
    stats = []
    for cache_mb in (0, 64):
        loader = _loader(train, cache_mb=cache_mb, max_bad_fraction=1.0)
        batches = _take(loader, 12)  # 72 samples: three passes over the 24 intact ones
        stats.append((loader.stats()["stream_errors"], loader.stats()["samples_lost"], [b["key"] for b in batches]))
    assert stats[0] == stats[1]
    assert stats[0][0] == 3  # one damaged read per pass


def test_a_bad_sample_is_parsed_once_and_raised_on_every_read():
    from tripletclip.data.decode import BadSample

    memo, calls = DecodeMemo(max_bytes=10**6), []

    def parse():
        calls.append(1)
        raise BadSample("empty caption", "give every image a non-empty caption")

    errors = []
    for _ in range(3):
        with pytest.raises(BadSample) as info:
            memo.record(("shard", 4), parse, BadSample)
        errors.append(info.value)
    assert len(calls) == 1 and len({id(e) for e in errors}) == 3  # a new exception each time
    assert all((e.reason, e.hint) == ("empty caption", "give every image a non-empty caption") for e in errors)
    assert memo.record(("shard", 5), lambda: "record", BadSample) == "record"
    assert memo.record(("shard", 5), lambda: "other", BadSample) == "record"  # kept
