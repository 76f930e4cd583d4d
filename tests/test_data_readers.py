"""Each reader format: our shards, TripletCLIP-HQ shards, open_clip shards and CSVs, parquet, ARO's NegCLIP TSV."""
from __future__ import annotations

import csv
import io

import pytest
import torch
from PIL import Image

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import EDIT_TYPE_INDEX, DataError
from tripletclip.data.loader import build_train_loader
from tripletclip.data.shards import ShardWriter
from tripletclip.data.tables import TableSource, parse_list_cell
from tripletclip.data.testing import HashTokenizer, ResizeToTensor, image_bytes, noise_image, write_tar
from conftest import SHARED_BENCHMARKS

BENCH = SHARED_BENCHMARKS
L = 16
TOK = HashTokenizer(L)
PRE = ResizeToTensor(16)


def _one_batch(cfg: DataConfig, n: int, seed: int = 0, tok=TOK, pre=PRE) -> dict:
    """All n samples in one batch (epoch 0), sorted by key."""
    cfg.workers, cfg.shuffle_buffer = 0, 1
    batch = next(build_train_loader(cfg, pre, tok, batch_size=n, seed=seed, context_length=L))
    order = sorted(range(n), key=lambda i: batch["key"][i])
    return {k: ([v[i] for i in order] if k == "key" else v[order]) for k, v in batch.items()}


def _expect(img: Image.Image) -> torch.Tensor:
    return PRE(img.convert("RGB"))


def test_tripletclip_hq_layout(tmp_path):
    members = []
    for i in range(5):
        members += [(f"{i:04d}.image", image_bytes(noise_image(i), "PNG")), (f"{i:04d}.caption", f"a photo {i}".encode()),
                    (f"{i:04d}.neg_caption", f"a drawing {i}".encode()), (f"{i:04d}.neg_image", image_bytes(noise_image(50 + i), "JPEG"))]
    b = _one_batch(DataConfig(type="wds", train=write_tar(tmp_path / "hq-000.tar", members)), 5)
    assert b["key"] == [f"{i:04d}" for i in range(5)]
    for i in range(5):
        assert torch.equal(b["image"][i], _expect(noise_image(i)))
        assert torch.equal(b["text"][i], TOK([f"a photo {i}"])[0])
        assert torch.equal(b["neg_text"][i, 0], TOK([f"a drawing {i}"])[0])
        neg = Image.open(io.BytesIO(image_bytes(noise_image(50 + i), "JPEG")))
        assert torch.equal(b["neg_image"][i, 0], _expect(neg))
    assert b["neg_text_mask"].all() and b["neg_image_mask"].all()
    assert (b["neg_text_type"] == EDIT_TYPE_INDEX["llm"]).all()


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_open_clip_shards(tmp_path, fmt, ext):
    members = []
    for i in range(4):
        members += [(f"sample{i}.{ext}", image_bytes(noise_image(i), fmt)), (f"sample{i}.txt", f"caption number {i}\n".encode())]
    b = _one_batch(DataConfig(type="wds", train=write_tar(tmp_path / "oc.tar", members)), 4)
    for i in range(4):
        assert torch.equal(b["image"][i], _expect(Image.open(io.BytesIO(members[2 * i][1]))))
        assert torch.equal(b["text"][i], TOK([f"caption number {i}"])[0])
    assert b["neg_text"].shape == (4, 1, L) and not b["neg_text_mask"].any() and not b["neg_image_mask"].any()


def test_several_captions_sampled_per_epoch_deterministically(tmp_path):
    caps = [[f"cap {i} v{j}" for j in range(3)] for i in range(6)]
    with ShardWriter(tmp_path) as w:
        for i in range(6):
            w.write(f"k{i}", noise_image(i), caps[i])

    def chosen(seed: int, sample_one: bool) -> list[list[int]]:
        cfg = DataConfig(type="wds", train=str(tmp_path), workers=0, shuffle_buffer=1, sample_one_caption=sample_one)
        loader = build_train_loader(cfg, PRE, TOK, batch_size=6, seed=seed, context_length=L)
        out = []
        for _ in range(5):  # one epoch per batch
            b = next(loader)
            vocab = {tuple(TOK([c])[0].tolist()): (int(c.split()[1]), int(c[-1])) for cs in caps for c in cs}
            out.append(sorted(vocab[tuple(t.tolist())] for t in b["text"]))
        return out

    a = chosen(0, True)
    assert a == chosen(0, True)  # deterministic
    assert a != chosen(1, True)  # seeded
    versions = {v for epoch in a for _, v in epoch}
    assert versions == {0, 1, 2}
    assert all(v == 0 for epoch in chosen(0, False) for _, v in epoch)


def test_open_clip_csv_layout_with_defaults(tmp_path):
    (tmp_path / "imgs").mkdir()
    rows = []
    for i in range(5):
        noise_image(i).save(tmp_path / "imgs" / f"{i}.png")
        rows.append([f"imgs/{i}.png", f"a csv caption {i}"])
    table = tmp_path / "train.csv"
    with open(table, "w", newline="") as f:  # exactly what open_clip_train --dataset-type csv reads
        w = csv.writer(f, delimiter="\t")
        w.writerow(["filepath", "title"])
        w.writerows(rows)
    b = _one_batch(DataConfig(type="csv", train=str(table)), 5)
    assert b["key"] == [f"train.csv#{i}" for i in range(5)]
    for i in range(5):
        assert torch.equal(b["image"][i], _expect(noise_image(i)))
        assert torch.equal(b["text"][i], TOK([f"a csv caption {i}"])[0])
    # image_root overrides the table's folder
    moved = tmp_path / "elsewhere"
    (tmp_path / "imgs").rename(moved / "imgs" if moved.mkdir() is None else moved)
    b2 = _one_batch(DataConfig(type="csv", train=str(table), image_root=str(moved)), 5)
    assert torch.equal(b2["image"], b["image"])


def test_table_negative_cells_and_row_index_images(tmp_path):
    for i in range(4):
        noise_image(i).save(tmp_path / f"{i}.png")
        noise_image(100 + i).save(tmp_path / f"neg{i}.png")
    table = tmp_path / "t.tsv"
    table.write_text(
        "\tfilepath\ttitle\tneg_caption\tneg_image\n"
        '0\t0.png\tzero\t["zero neg a", "zero neg b"]\t["neg0.png"]\n'
        "1\t1.png\tone\t['one neg']\t[3, 2]\n"
        "2\t2.png\ttwo\tjust one negative\t\n"
        "3\t3.png\tthree\t\tneg3.png\n")
    cfg = DataConfig(type="csv", train=str(table), neg_caption_key="neg_caption", neg_image_key="neg_image",
                     max_neg_text=2, max_neg_image=2, sample_negatives=False)
    b = _one_batch(cfg, 4)
    assert b["neg_text_mask"].tolist() == [[True, True], [True, False], [True, False], [False, False]]
    assert b["neg_image_mask"].tolist() == [[True, False], [True, True], [False, False], [True, False]]
    assert torch.equal(b["neg_text"][0, 1], TOK(["zero neg b"])[0])
    assert torch.equal(b["neg_text"][2, 0], TOK(["just one negative"])[0])
    assert torch.equal(b["neg_image"][0, 0], _expect(noise_image(100)))
    # NegCLIP: integers are row indices of the same table (nearest-neighbour images)
    assert torch.equal(b["neg_image"][1, 0], _expect(noise_image(3)))
    assert torch.equal(b["neg_image"][1, 1], _expect(noise_image(2)))
    assert (b["neg_text_type"][b["neg_text_mask"]] == EDIT_TYPE_INDEX["unknown"]).all()


def test_parquet_with_list_and_binary_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({
        "image": [image_bytes(noise_image(i), "PNG") for i in range(3)],
        "caption": [["first a", "first b"], ["second"], ["third"]],
        "negs": [["n0"], [], ["n2 x", "n2 y"]],
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    cfg = DataConfig(type="parquet", train=str(path), img_key="image", caption_key="caption", neg_caption_key="negs",
                     use_neg_image=False, sample_one_caption=False, sample_negatives=False)
    b = _one_batch(cfg, 3)
    assert torch.equal(b["image"][1], _expect(noise_image(1)))
    assert torch.equal(b["text"][0], TOK(["first a"])[0])
    assert b["neg_text_mask"][:, 0].tolist() == [True, False, True]
    assert torch.equal(b["neg_text"][2, 0], TOK(["n2 x"])[0])
    assert b["neg_image"].shape == (3, 0, 3, 16, 16)


def test_list_cells():
    assert parse_list_cell("['a', \"b's\"]") == ["a", "b's"]
    assert parse_list_cell('["a", "b"]') == ["a", "b"]
    assert parse_list_cell("[1, 2]") == [1, 2]
    assert parse_list_cell("[sic] not a list]") == ["[sic] not a list]"]
    assert parse_list_cell("[__import__('os')]") == ["[__import__('os')]"]  # never evaluated
    assert parse_list_cell("") == [] and parse_list_cell(None) == [] and parse_list_cell(float("nan")) == []
    assert parse_list_cell("plain") == ["plain"]


@pytest.mark.shared_benchmarks("aro/valid_neg_clip.tsv")
def test_aro_valid_neg_clip_tsv_parses():
    path = BENCH / "aro" / "valid_neg_clip.tsv"
    cfg = DataConfig(type="csv", train=str(path), neg_caption_key="neg_caption", neg_image_key="neg_image",
                     image_root="/coco_root")
    src = TableSource(cfg, "csv")
    # 4,847 lines after the header, 4,839 records: 8 captions are quoted and span two lines (pandas agrees)
    assert src.n == 4839
    assert src.load(1203).captions == ["A bunch of people are sitting around while a guy plays a video game"]
    rec = src.load(0)
    assert rec.captions == ["A child holding a flowered umbrella and petting a yak."]
    assert rec.neg_captions == ["A umbrella holding a flowered child and petting a yak .",
                                "A child petting a flowered umbrella and holding a yak ."]
    assert rec.image.path == "/coco_root/coco/val2014/COCO_val2014_000000184613.jpg"
    assert not rec.aligned and len(rec.neg_images) == 3
    assert rec.neg_images[0].path == "/coco_root/" + src.data["filepath"][2973]
    for row in range(50):  # the first rows: every negative cell parses to a non-empty list of strings / ints
        r = src.load(row)
        assert r.captions and r.captions[0] and r.image.path.endswith(".jpg")
        assert r.neg_captions and all(isinstance(c, str) and c for c in r.neg_captions)
        assert r.neg_images and src.where(row) == f"{path}, row {row}"


def test_unused_negatives_are_never_read(tmp_path):
    with ShardWriter(tmp_path) as w:
        for i in range(4):
            w.write(f"k{i}", noise_image(i), f"cap {i}", neg_captions=["neg"], neg_images=[b"\x89PNG\r\n\x1a\n garbage"])
    calls = []

    def pre(img):
        calls.append(img.size)
        return PRE(img)

    cfg = DataConfig(type="wds", train=str(tmp_path), use_neg_image=False, validate_first=4)
    b = _one_batch(cfg, 4, pre=pre)
    assert b["neg_image"].shape == (4, 0, 3, 16, 16) and b["neg_text_mask"].all()
    assert len(calls) == 4 + 4  # validation + the batch; no negative image decoded
    with pytest.raises(DataError, match=r"train-000000.tar, sample 'k0': undecodable image k0.neg.0.png"):
        _one_batch(DataConfig(type="wds", train=str(tmp_path)), 4)


def test_horizontal_flip_is_refused(tmp_path):
    from torchvision import transforms as T

    with ShardWriter(tmp_path) as w:
        w.write("k", noise_image(0), "cap")
    pre = T.Compose([T.Resize(16), T.RandomHorizontalFlip(), T.ToTensor()])
    with pytest.raises(DataError, match="RandomHorizontalFlip"):
        build_train_loader(DataConfig(train=str(tmp_path)), pre, TOK, batch_size=1, seed=0, context_length=L)


def test_aligned_negative_sampling_keeps_caption_image_pairs(tmp_path):
    with ShardWriter(tmp_path) as w:
        for i in range(4):
            w.write(f"k{i}", noise_image(i), f"cap {i}", neg_captions=[f"neg {i} {m}" for m in range(3)],
                    neg_types=["swap_att", "replace_obj", "add_att"], neg_images=[noise_image(10 * i + m) for m in range(3)])
    cfg = DataConfig(type="wds", train=str(tmp_path), workers=0, shuffle_buffer=1)
    loader = build_train_loader(cfg, PRE, TOK, batch_size=4, seed=0, context_length=L)
    picked = set()
    for _ in range(6):
        b = next(loader)
        for j, key in enumerate(b["key"]):
            i = int(key[1:])
            m = next(m for m in range(3) if torch.equal(b["neg_text"][j, 0], TOK([f"neg {i} {m}"])[0]))
            assert torch.equal(b["neg_image"][j, 0], _expect(noise_image(10 * i + m)))
            assert int(b["neg_text_type"][j, 0]) == EDIT_TYPE_INDEX[["swap_att", "replace_obj", "add_att"][m]]
            picked.add(m)
    assert picked == {0, 1, 2}
