"""ShardWriter round trip, manifest and hashes, atomic shard files, URL patterns."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tripletclip.data.contract import DataError
from tripletclip.data.manifest import combine_hashes, dataset_hash, read_manifest
from tripletclip.data.patterns import expand_braces, expand_patterns
from tripletclip.data.shards import ShardWriter, detect_image_ext
from tripletclip.data.source import ErrorCounter
from tripletclip.data.testing import image_bytes, noise_image
from tripletclip.data.wds import WdsSource
from tripletclip.utils.files import sha256_file


def _write(out: Path, n: int = 23, shard_size: int = 10, **kw) -> dict:
    with ShardWriter(out, prefix="train", shard_size=shard_size, **kw) as w:
        for i in range(n):
            negs = [f"neg {i} a", f"neg {i} b"] if i % 2 == 0 else []
            types = ["swap_att", "llm"] if negs else []
            w.write(f"k{i:03d}", noise_image(i), [f"cap {i}", f"other cap {i}"] if i % 3 == 0 else f"cap {i}",
                    neg_captions=negs, neg_types=types, neg_images=[noise_image(1000 + i)] if negs else [],
                    meta={"index": i})
    return w.manifest


def test_round_trip_manifest_counts_and_hashes(tmp_path):
    m = _write(tmp_path)
    assert m == read_manifest(tmp_path)
    assert [s["name"] for s in m["shards"]] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [s["samples"] for s in m["shards"]] == [10, 10, 3]
    assert m["total_samples"] == 23 and m["total_neg_captions"] == 24 and m["total_neg_images"] == 12
    assert m["edit_types"] == {"swap_att": 12, "llm": 12}
    files = sorted(tmp_path.glob("train-*.tar"))
    for s, f in zip(m["shards"], files):
        assert s["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert s["bytes"] == f.stat().st_size
    expected = hashlib.sha256("".join(s["sha256"] + "\n" for s in m["shards"]).encode()).hexdigest()
    assert m["dataset_hash"] == expected == dataset_hash(files) == dataset_hash(files, verify=True)

    # member layout of TEAM.md
    with tarfile.open(files[0]) as tf:
        names = tf.getnames()
    assert names[:6] == ["k000.png", "k000.txt", "k000.json", "k000.neg.txt", "k000.neg.0.png", "k001.png"]

    # read back through the reader: texts, types and lossless pixels
    src = WdsSource([str(f) for f in files], resampled=False)
    recs = [src.load(raw) for raw in src.natural(ErrorCounter())]
    assert [r.key for r in recs] == [f"k{i:03d}" for i in range(23)]
    r0, r1 = recs[0], recs[1]
    assert r0.captions == ["cap 0", "other cap 0"] and r1.captions == ["cap 1"]
    assert r0.neg_captions == ["neg 0 a", "neg 0 b"] and r0.neg_types == ["swap_att", "llm"]
    assert r1.neg_captions == [] and r1.neg_images == []
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r0.image.read()))), np.asarray(noise_image(0)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r0.neg_images[0].read()))), np.asarray(noise_image(1000)))
    meta = json.loads(tarfile.open(files[0]).extractfile("k000.json").read())
    assert meta["index"] == 0 and meta["captions"] == ["cap 0", "other cap 0"]


def test_shards_are_byte_reproducible(tmp_path):
    a = _write(tmp_path / "a")
    b = _write(tmp_path / "b")
    assert a["dataset_hash"] == b["dataset_hash"]
    c = _write(tmp_path / "c", n=22)
    assert c["dataset_hash"] != a["dataset_hash"]


def test_no_partial_shard_is_visible_and_abort_cleans_up(tmp_path):
    w = ShardWriter(tmp_path, shard_size=3)
    w.write("a", noise_image(0), "x")
    w.write("b", noise_image(1), "y")
    # shard 0 is open: only a hidden temporary file exists, never the final name
    assert not (tmp_path / "train-000000.tar").exists()
    assert [p.name.startswith(".train-000000.tar.tmp") for p in tmp_path.iterdir()] == [True]
    w.write("c", noise_image(2), "z")  # completes shard 0
    assert (tmp_path / "train-000000.tar").exists()
    with tarfile.open(tmp_path / "train-000000.tar") as tf:
        assert len(tf.getnames()) == 9
    w.close()

    out = tmp_path / "aborted"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(out, shard_size=2) as w2:
            for i in range(3):
                w2.write(f"s{i}", noise_image(i), "cap")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["train-000000.tar"]  # no tmp file, no manifest


def test_bytes_pass_through_and_jpg_format(tmp_path):
    jpg = image_bytes(noise_image(3), "JPEG")
    with ShardWriter(tmp_path / "a") as w:
        w.write("x", jpg, "cap", neg_captions=["n"], neg_images=[jpg])
    with tarfile.open(tmp_path / "a" / "train-000000.tar") as tf:
        assert tf.extractfile("x.jpg").read() == jpg
        assert tf.extractfile("x.neg.0.jpg").read() == jpg
    with ShardWriter(tmp_path / "b", image_format="jpg") as w:
        w.write("x", noise_image(1), "cap")
    with tarfile.open(tmp_path / "b" / "train-000000.tar") as tf:
        assert tf.getnames()[0] == "x.jpg"
    assert detect_image_ext(jpg) == "jpg"
    with pytest.raises(ValueError, match="unknown image format"):
        detect_image_ext(b"not an image at all")


def test_writer_rejects_bad_input(tmp_path):
    with ShardWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="key"):
            w.write("a.b", noise_image(0), "cap")
        with pytest.raises(ValueError, match="caption"):
            w.write("a", noise_image(0), "  ")
        with pytest.raises(ValueError, match="unknown edit type 'swap'"):
            w.write("a", noise_image(0), "cap", neg_captions=["n"], neg_types=["swap"])
        with pytest.raises(ValueError, match="single-line"):
            w.write("a", noise_image(0), "cap", neg_captions=["two\nlines"])
        with pytest.raises(ValueError, match="reserved"):
            w.write("a", noise_image(0), "cap", meta={"captions": []})
        w.write("a", noise_image(0), "cap")
        with pytest.raises(ValueError, match="twice"):
            w.write("a", noise_image(0), "cap")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ShardWriter(tmp_path)
    ShardWriter(tmp_path, overwrite=True).close()
    assert read_manifest(tmp_path)["total_samples"] == 0


def test_dataset_hash_without_manifest_hashes_content(tmp_path):
    m = _write(tmp_path / "d", n=12)
    files = sorted((tmp_path / "d").glob("*.tar"))
    (tmp_path / "d" / "manifest.json").unlink()
    assert dataset_hash(files) == m["dataset_hash"]
    # same size, same mtime, one byte changed: the hash must change
    f = files[1]
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dataset_hash(files) != m["dataset_hash"]
    assert dataset_hash(files) == combine_hashes([sha256_file(p) for p in files])


def test_read_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_brace_patterns_and_url_lists(tmp_path):
    assert expand_braces("/d/t-{000..002}.tar") == ["/d/t-000.tar", "/d/t-001.tar", "/d/t-002.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("x{9..10}") == ["x9", "x10"]
    _write(tmp_path / "a", n=25)
    _write(tmp_path / "b", n=5)
    spec = f"{tmp_path}/a/train-{{000000..000002}}.tar::{tmp_path / 'b'}"
    files = expand_patterns(spec)
    assert [Path(f).parent.name + "/" + Path(f).name for f in files] == [
        "a/train-000000.tar", "a/train-000001.tar", "a/train-000002.tar", "b/train-000000.tar"]
    with pytest.raises(DataError, match="train-000003.tar: not found .from data.train"):
        expand_patterns(f"{tmp_path}/a/train-{{000000..000003}}.tar")


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_fast_header_scan_matches_tarfile(tmp_path, fmt):
    from tripletclip.data.shard_reader import _fast_members, _tarfile_members

    path = tmp_path / "t.tar"
    names = ["a" * 120 + "/x.txt", "k.png", "dir/sub/k2.txt"] + (["é€.txt", "b" * 300 + ".txt"] if fmt != tarfile.USTAR_FORMAT else [])
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w", format=fmt) as tf:
        d = tarfile.TarInfo("somedir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for i, name in enumerate(names):
            data = rng.integers(0, 256, 100 + 300 * i, dtype=np.uint8).tobytes()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    fast = _fast_members(str(path))
    assert fast is not None and fast == (list(_tarfile_members(str(path))), False)  # (members, cut)
    assert [n for n, _, _ in fast[0]] == names
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file" * 40)
    assert _fast_members(str(tmp_path / "junk.tar")) is None  # falls back to tarfile (which then refuses it)
