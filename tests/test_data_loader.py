"""TrainLoader: rank/worker partition, seeded order, exact resume, validation errors, bad-sample accounting."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.loader import build_train_loader
from tripletclip.data.shards import ShardWriter
from tripletclip.data.source import SOURCES
from tripletclip.data.testing import (
    HashTokenizer, ResizeToTensor, image_bytes, noise_image, write_synthetic_shards, write_tar,
)
from _loader_checks import same as _same, take as _take

L = 16
TOK = HashTokenizer(L)
PRE = ResizeToTensor(16)
JITTER = ResizeToTensor(16, jitter=4)  # random crop from torch's global RNG: resume must reproduce it


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> str:
    """8 shards x 5 samples (s00000..s00039), 16 px, one negative caption and image each (conftest)."""
    return synthetic_shards


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> str:
    """A 42-row open_clip TSV (rows r0..r41)."""
    out = tmp_path_factory.mktemp("table")
    lines = ["filepath\ttitle"]
    for i in range(42):
        Image.new("RGB", (8, 8), (i * 5, 0, 0)).save(out / f"{i}.png")
        lines.append(f"{i}.png\trow {i}")
    (out / "t.tsv").write_text("\n".join(lines) + "\n")
    return str(out / "t.tsv")


@pytest.fixture(scope="module")
def parquet(tmp_path_factory) -> str:
    """A 30-row parquet table with encoded images in the cells and one negative caption per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("parquet") / "t.parquet"
    pq.write_table(pa.table({"filepath": [image_bytes(noise_image(i, 8)) for i in range(30)],
                             "title": [f"row {i}" for i in range(30)], "neg": [f"not row {i}" for i in range(30)]}), out)
    return str(out)


# how each registered source is given its data in the registry-wide tests (a new source needs an entry)
SOURCE_CASES = {
    "wds": lambda d: {"train": d["shards"]},
    "csv": lambda d: {"train": d["table"]},
    "parquet": lambda d: {"train": d["parquet"], "neg_caption_key": "neg"},
    "synthetic": lambda d: {"train": "44"},
}


def _loader(train: str, type_: str = "wds", *, workers: int = 0, batch_size: int = 6, seed: int = 0, rank: int = 0,
            world_size: int = 1, pre=JITTER, **kw):
    cfg = DataConfig(type=type_, train=train, workers=workers, shuffle_buffer=kw.pop("shuffle_buffer", 7), **kw)
    return build_train_loader(cfg, pre, TOK, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                              context_length=L)


def test_every_registered_source_has_a_case():
    assert set(SOURCE_CASES) == set(SOURCES.names())


@pytest.mark.parametrize("source", SOURCES.names())
def test_every_source_gives_the_batch_contract_and_resumes_exactly(source, shards, table, parquet):
    """Batches of 5 from 2 workers over 40-44 samples: the tail after a resume crosses an epoch end."""
    kw = SOURCE_CASES[source]({"shards": shards, "table": table, "parquet": parquet})
    full = _take(_loader(type_=source, workers=2, batch_size=5, **kw), 14)
    b = full[0]
    assert b["image"].shape == (5, 3, 16, 16) and b["text"].shape == (5, L) and len(b["key"]) == 5
    assert b["neg_text"].shape == (5, 1, L) and b["neg_text_mask"].shape == b["neg_text_type"].shape == (5, 1)
    assert b["neg_image"].shape == (5, 1, 3, 16, 16) and b["neg_image_mask"].shape == (5, 1)
    first = _loader(type_=source, workers=2, batch_size=5, **kw)
    head = _take(first, 6)
    resumed = _loader(type_=source, workers=2, batch_size=5, **kw)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    _same(head + _take(resumed, 8), full)
    assert resumed.stats()["epoch"] >= 1 and resumed.stats()["real_pairs"] == 5 * 14


@pytest.mark.parametrize("world_size,workers", [(1, 0), (1, 2), (2, 0), (2, 2)])
def test_shard_partition_covers_each_epoch_once(shards, world_size, workers):
    per_rank = 40 // world_size // 5  # batches of 5 per rank per epoch (every worker gets 8/G whole shards)
    epochs: list[list[str]] = [[], []]
    for rank in range(world_size):
        batches = _take(_loader(shards, workers=workers, batch_size=5, rank=rank, world_size=world_size), 2 * per_rank)
        for e in range(2):
            epochs[e] += [k for b in batches[e * per_rank:(e + 1) * per_rank] for k in b["key"]]
    for keys in epochs:
        assert sorted(keys) == [f"s{i:05d}" for i in range(40)]  # no duplicate, nothing missing
    assert epochs[0] != epochs[1]  # reshuffled each epoch


@pytest.mark.parametrize("world_size,workers", [(1, 0), (1, 2), (2, 0), (2, 2)])
def test_table_partition_drops_the_remainder_consistently(table, world_size, workers):
    g = world_size * max(1, workers)
    per_rank = (42 - 42 % g) // world_size
    for epoch in range(2):
        keys = []
        for rank in range(world_size):
            batches = _take(_loader(table, "csv", workers=workers, batch_size=1, rank=rank, world_size=world_size),
                            per_rank * (epoch + 1))
            keys += [b["key"][0] for b in batches[per_rank * epoch:]]
        assert len(keys) == len(set(keys)) == 42 - 42 % g
        assert set(keys) <= {f"t.tsv#{i}" for i in range(42)}


def test_fewer_shards_than_workers_split_by_sample(shards, caplog):
    two = shards.replace("{000000..000007}", "{000000..000001}")
    keys = []
    # logical worker g reads shard g mod 2 of the epoch's order and keeps its samples j = g // 2 mod 2: rank 0
    # (g 0, 1) keeps 3 of each 5-sample shard, rank 1 (g 2, 3) 2 of each (tests/test_shard_urls.py: the rule)
    for rank, n in ((0, 6), (1, 4)):
        keys += [b["key"][0] for b in _take(_loader(two, workers=2, batch_size=1, rank=rank, world_size=2), n)]
    assert sorted(keys) == [f"s{i:05d}" for i in range(10)]
    assert "each shard is read by 2 workers" in caplog.text


def test_seeded_order_is_deterministic(shards):
    a = _take(_loader(shards, workers=0), 8)
    _same(a, _take(_loader(shards, workers=0), 8))
    b = _take(_loader(shards, workers=0, seed=1), 8)
    assert [x["key"] for x in a] != [x["key"] for x in b]
    # with 2 workers: the same data, a different (but again fixed) interleaving
    c = _take(_loader(shards, workers=2), 8)
    _same(c, _take(_loader(shards, workers=2), 8))


@pytest.mark.parametrize("workers,resume_workers,stop", [(0, 0, 5), (1, 1, 6), (2, 2, 5), (2, 2, 8), (0, 1, 7)])
def test_exact_resume(shards, workers, resume_workers, stop):
    # batch 6 over 40 samples: epochs end inside batches 7, 14, ...; every case crosses an epoch after resuming
    total = stop + 8
    full = _take(_loader(shards, workers=workers), total)
    first = _loader(shards, workers=workers)
    head = _take(first, stop)
    state = json.loads(json.dumps(first.state_dict()))  # plain data: survives any checkpoint format
    resumed = _loader(shards, workers=resume_workers)
    resumed.load_state_dict(state)
    tail = _take(resumed, total - stop)
    _same(head + tail, full)
    assert resumed.stats()["real_pairs"] == 6 * total and resumed.stats()["epoch"] >= 1


def test_resume_tables_and_resampled(shards, table):
    for kw in ({"train": table, "type_": "csv", "batch_size": 5}, {"train": shards, "resampled": True}):
        full = _take(_loader(workers=2, **kw), 12)
        first = _loader(workers=2, **kw)
        head = _take(first, 5)
        resumed = _loader(workers=2, **kw)
        resumed.load_state_dict(first.state_dict())
        _same(head + _take(resumed, 7), full)
    assert resumed.stats()["epoch"] == 0  # resampled data has no epochs


def test_fast_forward_decodes_nothing(shards):
    first = _loader(shards, workers=0)
    _take(first, 9)
    calls = []

    def counting(img):
        calls.append(1)
        return PRE(img)

    resumed = _loader(shards, workers=0, pre=counting)
    calls.clear()  # validation decodes at build time
    resumed.load_state_dict(first.state_dict())
    batch = next(resumed)
    assert len(calls) == 2 * len(batch["key"])  # the batch's images and negative images only


def test_resume_refuses_a_different_data_order(shards, table):
    """Tables resume only with their worker count (shards resume elastically: tests/test_wds_elastic.py); no
    source resumes with another seed."""
    saved = _loader(table, "csv", workers=2)
    _take(saved, 2)
    with pytest.raises(DataError, match="workers=2"):
        _loader(table, "csv", workers=0).load_state_dict(saved.state_dict())
    saved = _loader(shards, workers=2)
    _take(saved, 2)
    with pytest.raises(DataError, match="seed"):
        _loader(shards, workers=2, seed=3).load_state_dict(saved.state_dict())


def test_epoch_and_pair_counters(table, shards):
    loader = _loader(table, "csv", workers=0, batch_size=21)  # 42 rows: 2 batches per epoch
    epochs = []
    for _ in range(5):
        next(loader)
        epochs.append(loader.stats()["epoch"])
    assert epochs == [0, 0, 1, 1, 2]
    st = _loader(shards, workers=0)
    next(st)
    assert st.stats() | {"epoch": 0} == {"samples": 6, "bad_samples": 0, "real_pairs": 6, "synthetic_images": 6,
                                         "neg_texts": 6, "stream_errors": 0, "samples_lost": 0, "batches": 1,
                                         "epoch": 0}
    clip = _loader(shards, workers=0, use_neg_image=False, use_neg_text=False)
    b = next(clip)
    assert b["neg_image"].shape[1] == 0 and b["neg_text"].shape[1] == 0
    assert clip.stats()["synthetic_images"] == 0 and clip.stats()["real_pairs"] == 6


def test_main_process_rng_is_untouched(shards):
    loader = _loader(shards, workers=0)
    torch.manual_seed(123)
    random.seed(123)
    t_state, p_state = torch.get_rng_state(), random.getstate()
    next(loader)
    assert torch.equal(torch.get_rng_state(), t_state) and random.getstate() == p_state


def _png(value: int) -> bytes:
    return image_bytes(Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)))


@pytest.mark.parametrize("members,message", [
    ([("k0.png", b"P")], "sample 'k0': no caption"),
    ([("k0.txt", b"cap")], "sample 'k0': no image member"),
    ([("k0.png", b"\x89PNG\r\n\x1a\nbroken"), ("k0.txt", b"cap")], "sample 'k0': undecodable image k0.png"),
    ([("k0.png", None), ("k0.txt", b"  \n")], "sample 'k0': empty caption"),
])
def test_validation_names_file_and_key(tmp_path, members, message):
    good = [("k1.png", _png(1)), ("k1.txt", b"fine")]
    path = write_tar(tmp_path / "bad.tar", [(n, _png(0) if d is None else d) for n, d in members] + good)
    with pytest.raises(DataError) as e:
        _loader(path)
    text = str(e.value)
    assert f"{path}, {message}" in text and "\n" not in text and "; " in text  # what is wrong; what to do


def test_validation_of_tables(tmp_path):
    (tmp_path / "t.tsv").write_text("filepath\ttitle\nmissing.png\tcap\n")
    with pytest.raises(DataError, match=r"t.tsv, row 0: image file not found: .*missing.png; set data.image_root"):
        _loader(str(tmp_path / "t.tsv"), "csv")
    (tmp_path / "u.tsv").write_text("path\ttitle\nx.png\tcap\n")
    with pytest.raises(DataError, match=r"u.tsv: no column 'filepath' among \['path', 'title'\]"):
        _loader(str(tmp_path / "u.tsv"), "csv")


def test_bad_samples_later_are_skipped_and_counted(tmp_path):
    with ShardWriter(tmp_path, shard_size=10) as w:
        for i in range(30):
            img = b"\x89PNG\r\n\x1a\ncorrupt" if i == 20 else _png(i)
            w.write(f"k{i:02d}", img, f"caption {i}")
    loader = _loader(str(tmp_path), workers=0, batch_size=29, validate_first=8)
    b = next(loader)
    assert sorted(b["key"]) == [f"k{i:02d}" for i in range(30) if i != 20]
    s = loader.stats()
    assert (s["samples"], s["bad_samples"], s["real_pairs"]) == (30, 1, 29)
    assert len(loader.errors.examples) == 1
    assert loader.errors.examples[0].startswith(f"{tmp_path}/train-000002.tar, sample 'k20': undecodable image k20.png")
    loader2 = _loader(str(tmp_path), workers=2, batch_size=5, validate_first=8)
    _take(loader2, 12)  # 60 good samples: about two epochs
    s2 = loader2.stats()
    assert s2["bad_samples"] >= 1 and s2["samples"] == s2["real_pairs"] + s2["bad_samples"] and s2["real_pairs"] == 60


class _FailsInWorker:
    def __call__(self, img):
        if torch.utils.data.get_worker_info() is not None:
            raise ValueError("preprocess exploded in a worker")
        return PRE(img)


def test_worker_errors_surface(shards, tmp_path):
    loader = _loader(shards, workers=2, pre=_FailsInWorker())
    with pytest.raises(ValueError, match="preprocess exploded in a worker"):
        next(loader)
    loader.close()
    write_synthetic_shards(tmp_path, n=10, shard_size=5, image_size=16)
    gone = _loader(str(tmp_path / "train-{000000..000001}.tar"), workers=2)
    for p in tmp_path.glob("*.tar"):
        p.unlink()
    with pytest.raises(DataError, match="shard disappeared"):
        next(gone)
    gone.close()


def test_all_bad_data_fails_instead_of_spinning(tmp_path):
    with ShardWriter(tmp_path, shard_size=10) as w:
        for i in range(6):
            w.write(f"k{i}", b"\x89PNG\r\n\x1a\nbad", f"caption {i}")
    loader = _loader(str(tmp_path), workers=0, batch_size=2, validate_first=0)
    with pytest.raises(DataError, match="found no usable sample in epoch 0 .first problem: .*sample 'k"):
        next(loader)


def test_truncated_and_unreadable_shards_are_counted(tmp_path):
    write_synthetic_shards(tmp_path, n=30, shard_size=10, image_size=16)
    last = tmp_path / "train-000002.tar"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a partial download: the second half of the samples is gone
    (tmp_path / "train-000001.tar").write_bytes(b"not a tar" * 100)
    loader = _loader(str(tmp_path / "train-{000000..000002}.tar"), workers=0, batch_size=5, shuffle_buffer=1)
    keys = [k for b in _take(loader, 6) for k in b["key"]]  # 30 samples: more than one epoch (~15)
    s = loader.stats()
    # per epoch: the unreadable shard loses its 10 samples, the cut one 5 (the manifest tells); the cut sample
    # is dropped with the samples after it, not reported as a bad sample
    assert s["stream_errors"] >= 2 and s["samples_lost"] >= 15 and s["bad_samples"] == 0
    assert s["samples"] == s["real_pairs"] == 30
    assert {f"s{i:05d}" for i in range(10)} <= set(keys) and not any("s0001" in k for k in keys)


# ----------------------------------------------------------------------------- global order (elastic resume)

def _global_loaders(world: int, batch: int, workers: int, n: int = 40):
    from tripletclip.config.schema import DataConfig
    from tripletclip.data.loader import build_train_loader
    from tripletclip.models import create_model

    b = create_model("test-vit-tiny")
    cfg = DataConfig(type="synthetic", train=str(n), workers=workers, global_order=True, validate_first=0)
    return [build_train_loader(cfg, b.preprocess_train, b.tokenizer, batch_size=batch, seed=3, rank=r, world_size=world,
                               context_length=b.context_length) for r in range(world)]


def _keys(loaders, steps: int) -> list[str]:
    out = []
    for _ in range(steps):
        for ld in loaders:  # rank order: the global batch
            out += next(ld)["key"]
    return out


@pytest.mark.parametrize("before,after", [((2, 4, 0), (1, 8, 2)), ((1, 8, 2), (2, 4, 0))])
def test_global_order_resumes_on_another_world_size(before, after):
    """Checkpoint at W=2 x batch 4, resume at W=1 x batch 8 (and the reverse, other worker counts): the sample
    keys consumed, in order and across the 40-sample epoch boundary, are those of an uninterrupted run."""
    uninterrupted = _keys(_global_loaders(*after), 9)
    first = _global_loaders(*before)
    keys = _keys(first, 4)
    states = [ld.state_dict() for ld in first]
    assert len({s["consumed"] for s in states}) == 1 and states[0]["consumed"] == 32
    second = _global_loaders(*after)
    for r, ld in enumerate(second):
        ld.load_state_dict(states[r % len(states)])
    keys += _keys(second, 5)
    assert keys == uninterrupted
    assert len(set(keys[:40])) == 40  # one epoch: every sample once
    assert second[0].epoch == 1


def test_global_order_is_refused_for_an_other_order_checkpoint():
    from tripletclip.data.contract import DataError

    ld = _global_loaders(1, 8, 0)[0]
    state = ld.state_dict()
    ld.global_order = False
    with pytest.raises(DataError, match="data.global_order"):
        ld.load_state_dict(state)
