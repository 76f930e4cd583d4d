"""ShardWriter's own tar writer (data/shards.py ``_TarOut``) writes the bytes ``tarfile`` writes, scene placement
matches its one-proposal-at-a-time reference, and world builds are byte-identical to those of the code before the
session 9 speed-ups."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tripletclip.data.shards import _TarOut, tar_member_header
from tripletclip.world import build_world
from tripletclip.world import scene as S
from tripletclip.world.build import spec_preset
from tripletclip.world.rand import Rand


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


def _pick_in(intervals: list[tuple[float, float]], total: float, u: float) -> float:
    """Reference: the point at fraction ``u`` of the total length of ``intervals``."""
    t = u * total
    for s, e in intervals:
        if t <= e - s:
            return s + t
        t -= e - s
    return intervals[-1][1]


def reference_place(radii, rng, fixed=(), tries=60):
    """Reference: scene.place as it was, one rng.uniforms(2) per proposal."""
    xs, ys, rs = [o.x for o in fixed], [o.y for o in fixed], [o.r for o in fixed]
    n_fixed, budget = len(xs), tries
    for r in radii:
        lo, hi = r + S.BORDER, 1 - r - S.BORDER
        ix, iy = S._allowed_intervals(lo, hi, xs), S._allowed_intervals(lo, hi, ys)
        tx, ty = sum(e - s for s, e in ix), sum(e - s for s, e in iy)
        if tx <= 0 or ty <= 0:
            return None
        placed = False
        while budget > 0 and not placed:
            budget -= 1
            u = rng.uniforms(2)
            x, y = _pick_in(ix, tx, u[0]), _pick_in(iy, ty, u[1])
            ok = True
            for k in range(len(xs)):
                gap = r + rs[k] + S.GAP
                dx, dy = x - xs[k], y - ys[k]
                if dx * dx + dy * dy < gap * gap:
                    ok = False
                    break
            if ok:
                xs.append(x), ys.append(y), rs.append(r)
                placed = True
        if not placed:
            return None
    return np.array([xs[n_fixed:], ys[n_fixed:]]).T


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_fixed=st.integers(0, 3), n_new=st.integers(1, 3),
       scale=st.sampled_from([0.6, 1.0, 1.3, 1.6]), tries=st.sampled_from([0, 1, 5, 60]))
def test_place_matches_the_one_proposal_at_a_time_reference(seed, n_fixed, n_new, scale, tries) -> None:
    setup = Rand([seed, 0])
    fixed = [S.Obj("circle", "red", "plain", "large", setup.random(), setup.random(),
                   S.sample_radius("small", setup, scale)) for _ in range(n_fixed)]
    radii = [S.sample_radius(setup.choice(["small", "large"]), setup, scale) for _ in range(n_new)]
    a, b = Rand([seed, 1]), Rand([seed, 1])
    a.uniforms(seed % 4096)  # start anywhere in a block, so that read-ahead crosses block ends
    b.uniforms(seed % 4096)
    got, want = S.place(radii, a, fixed=fixed, tries=tries), reference_place(radii, b, fixed=fixed, tries=tries)
    assert (got is None) == (want is None)
    if got is not None:
        assert got.tolist() == want.tolist()  # exact floats
    assert a.uniforms(3) == b.uniforms(3)  # the stream is left at the same place


def test_place_skips_only_impossible_proposals() -> None:
    """A fixed object swept over the image with large new objects: many placements are impossible (skipped
    without drawing) or possible only in a corner; each must match the reference, stream included."""
    grid = [0.2 + 0.6 * k / 24 for k in range(25)]
    for i, (x, y) in enumerate((x, y) for x in grid for y in grid):
        for r0, r in ((0.21, 0.22), (0.14, 0.24), (0.23, 0.15)):
            fixed = [S.Obj("circle", "red", "plain", "large", x, y, r0)]
            a, b = Rand([i, 7]), Rand([i, 7])
            got, want = S.place([r], a, fixed=fixed), reference_place([r], b, fixed=fixed)
            assert (got is None) == (want is None) and (got is None or got.tolist() == want.tolist())
            assert a.uniforms(2) == b.uniforms(2)
