"""ShardWriter's own tar writer (data/shards.py ``_TarOut``) writes the bytes ``tarfile`` writes, and world builds
are byte-identical to those of the tarfile-based writer and the world code before the session 9 speed-ups."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tripletclip.data.shards import _TarOut, tar_member_header
from tripletclip.world import build_world
from tripletclip.world.build import spec_preset


def tarfile_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """Reference: the tarfile calls ShardWriter made before it had its own writer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(payload), 0, 0o644
            tar.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


def tarout_bytes(path: Path, members: list[tuple[str, bytes]], split: int) -> bytes:
    out = _TarOut(path)
    out.add(members[:split])  # members come in per-sample groups
    out.add(members[split:])
    out.close()
    return path.read_bytes()


_ascii = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=130)
_unicode = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=110)
_edge_sizes = st.sampled_from([0, 1, 511, 512, 513, 1023, 1024, 1025, 9215, 9216, 9217, 10240])
_payload = st.one_of(st.binary(max_size=1200), _edge_sizes.map(lambda n: bytes(range(256)) * (n // 256)
                                                               + bytes(n % 256)))
_members = st.lists(st.tuples(st.one_of(_ascii, _unicode, st.sampled_from(["k.png", "0" * 100, "0" * 101])),
                              _payload), min_size=0, max_size=8)


@settings(max_examples=300, deadline=None)
@given(members=_members, data=st.data())
def test_tarout_writes_the_bytes_of_tarfile(tmp_path_factory, members, data) -> None:
    split = data.draw(st.integers(0, len(members)))
    path = tmp_path_factory.mktemp("tar") / "t.tar"
    assert tarout_bytes(path, members, split) == tarfile_bytes(members)


@pytest.mark.parametrize("name", ["a.png", "x" * 100, "x" * 101, "é.txt", "k" * 60 + "€" * 50, "a\x7fb"])
@pytest.mark.parametrize("size", [0, 1, 512, 8**11 - 1, 8**11, 10**12])
def test_member_header_matches_tarfile_for_any_size(name, size) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o644
    assert tar_member_header(name, size) == ti.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def test_written_members_read_back_with_tarfile(tmp_path) -> None:
    members = [("00000001.png", b"\x89PNG" + bytes(700)), ("00000001.txt", b"a red circle"), ("é" * 80, b"")]
    path = tmp_path / "t.tar"
    tarout_bytes(path, members, 1)
    with tarfile.open(path) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()] == members
        assert all(m.mtime == 0 and m.mode == 0o644 and m.uid == 0 for m in tar.getmembers())


# sha256 over (path, sha256) of every file a build writes (shards, manifest, benchmark; not world.json, which
# holds timings), from the code before the session 9 changes (commit 7649957): the world's random streams,
# scenes, renderings and shard bytes must not change when its build gets faster.
GOLDEN = {
    "demo_base": (dict(n_train=120, n_neg=0, seed=10074, image_size=48, shard_size=50, spec=("demo", 10074)),
                  "9ce01c1d56f58e65bd9c2f4032a9f11976e71faf7fc551ac8bdb8dee8b27f25f"),
    "demo_mirror": (dict(n_train=60, n_neg=0, seed=3, image_size=48, mirror_pairs=1.0, spec=("demo", 3)),
                    "4d0c2aadf077bb3c5afa562134e41d11051878d55090385c4e7aad0ccaab9240"),
    "demo_finetune": (dict(n_train=64, n_neg=1, seed=5, image_size=48, batch_blocks=16, n_bench=4, n_retrieval=6,
                           spec=("demo", 5)), "1e66f42a5351967ceebb7c3585595a2d8fcf5677d6716e22de389b2a6a26d8d2"),
    "full_neg2_jpg": (dict(n_train=30, n_neg=2, seed=7, image_size=32, image_format="jpg", n_bench=4,
                           n_retrieval=6), "8e6fcb9ff980ef82b518c4433f1f0c8ab8497259e5cb6835430c7d4efaa49c83"),
}


def world_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "world.json" and not p.name.startswith("."):  # dot files: lock, owner
            h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_world_build_bytes_are_unchanged(tmp_path, case) -> None:
    kw, expected = GOLDEN[case]
    kw = {"n_bench": 0, "n_retrieval": 0, **kw}
    if "spec" in kw:
        kw["spec"] = spec_preset(kw["spec"][0], seed=kw["spec"][1])
    build_world(tmp_path, progress=False, **kw)
    assert world_digest(tmp_path) == expected
