"""``build_world`` / ``tripletclip world build``: shard and benchmark formats, hashes, determinism across workers."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tripletclip.world import SUGARCREPE_TYPES, build_world, make_spec, parse_caption, truth
from tripletclip.world.scene import Scene
from conftest import SHARED_BENCHMARKS

BENCHMARKS = SHARED_BENCHMARKS
WINOGROUND_FIELDS = {"id", "image_0", "image_1", "caption_0", "caption_1", "tag", "secondary_tag",
                     "num_main_preds", "collapsed_tag"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    summary = build_world(out, n_train=60, n_bench=8, n_retrieval=12, seed=3, n_neg=2, workers=1, shard_size=25,
                          progress=False)
    return out, summary


def test_train_shards_follow_the_shard_layout(world) -> None:
    out, summary = world
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["total_samples"] == summary["train"]["samples"] == 60
    assert manifest["num_shards"] == 3 and manifest["total_neg_images"] == manifest["total_neg_captions"] == 120
    assert set(manifest["edit_types"]) <= set(SUGARCREPE_TYPES)
    held = {tuple(p) for p in summary["spec"]["heldout_pairs"]}
    with tarfile.open(out / "train" / "train-000000.tar") as tar:
        names = tar.getnames()
        key = names[0].split(".")[0]
        assert {f"{key}.png", f"{key}.txt", f"{key}.json", f"{key}.neg.txt", f"{key}.neg.0.png",
                f"{key}.neg.1.png"} <= set(names)
        meta = json.loads(tar.extractfile(f"{key}.json").read())
        negs = tar.extractfile(f"{key}.neg.txt").read().decode().split("\n")
    world_meta = meta["world"]
    scene = Scene.from_json(world_meta["scene"])
    assert truth(parse_caption(meta["captions"][0]), scene) is True
    for text, rec in zip(negs, world_meta["negatives"]):
        assert truth(parse_caption(text), scene) is False
        assert truth(parse_caption(text), Scene.from_json(rec["scene"])) is True
        assert not Scene.from_json(rec["scene"]).pairs() & held
    assert meta["neg_types"] == [r["edit_type"] for r in world_meta["negatives"]]


def test_bench_is_sugarcrepe_format_with_splits(world) -> None:
    out, _ = world
    bench = out / "bench"
    for cat in SUGARCREPE_TYPES:
        rows = json.loads((bench / "sugarcrepe" / f"{cat}.json").read_text())
        assert isinstance(rows, dict) and len(rows) == 8
        splits = [r["split"] for r in rows.values()]
        assert splits.count("seen") == splits.count("heldout") == 4
        for r in rows.values():
            assert set(r) == {"filename", "caption", "negative_caption", "split"}
            assert (bench / "images" / r["filename"]).is_file()
            assert r["caption"] != r["negative_caption"]


@pytest.mark.shared_benchmarks("sugar_crepe/swap_att.json")
def test_bench_fields_match_real_sugarcrepe_files(world) -> None:
    real = BENCHMARKS / "sugar_crepe" / "swap_att.json"
    real_row = next(iter(json.loads(real.read_text()).values()))
    ours = json.loads((world[0] / "bench" / "sugarcrepe" / "swap_att.json").read_text())
    assert all(k.isdigit() for k in ours)
    assert set(real_row) <= set(next(iter(ours.values())))  # same fields, plus "split"


def test_winoground_retrieval_and_manifest(world) -> None:
    out, _ = world
    bench = out / "bench"
    groups = [json.loads(line) for line in (bench / "winoground" / "examples.jsonl").read_text().splitlines()]
    assert groups and all(WINOGROUND_FIELDS | {"split"} == set(g) for g in groups)
    assert {g["tag"] for g in groups} <= set(SUGARCREPE_TYPES) - {"add_obj", "add_att"}
    for g in groups:
        assert (bench / "images" / f"{g['image_0']}.png").is_file() and (bench / "images" / f"{g['image_1']}.png").is_file()
    retrieval = json.loads((bench / "retrieval.json").read_text())
    assert len(retrieval) == 12 and all(len(r["caption"]) == 3 for r in retrieval)
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["counts"]["swap_obj"] == {"seen": 4, "heldout": 4}
    for rel, sha in manifest["files"].items():
        assert hashlib.sha256((bench / rel).read_bytes()).hexdigest() == sha
    assert manifest["images"]["count"] == len(list((bench / "images").glob("*.png"))) == 7 * 8 * 2 + 12


def test_build_is_identical_for_any_worker_count(world, tmp_path) -> None:
    out, summary = world
    other = build_world(tmp_path / "w2", n_train=60, n_bench=8, n_retrieval=12, seed=3, n_neg=2, workers=2,
                        shard_size=25, progress=False)
    assert other["train"]["dataset_hash"] == summary["train"]["dataset_hash"]
    m1 = json.loads((out / "bench" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "w2" / "bench" / "manifest.json").read_text())
    assert m1["files"] == m2["files"] and m1["images"] == m2["images"]


def test_cli_build_refuses_to_overwrite_and_renders(tmp_path) -> None:
    from tripletclip.cli import main

    runner = CliRunner()
    args = ["world", "build", "--out", str(tmp_path / "w"), "--n-train", "10", "--n-bench", "2",
            "--n-retrieval", "2", "--no-progress"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "10 training triplets" in first.output
    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    png = tmp_path / "x.png"
    ok = runner.invoke(main, ["world", "render", "a red circle left of a blue square", "--out", str(png)])
    assert ok.exit_code == 0 and png.is_file()
    bad = runner.invoke(main, ["world", "render", "a dog on a skateboard", "--out", str(png)])
    assert bad.exit_code != 0 and "not a caption" in bad.output
    assert make_spec(8, 0) == make_spec(8, 0)


def test_cli_build_with_the_demo_spec(tmp_path) -> None:
    from tripletclip.cli import main
    from tripletclip.world import SPEC_PRESETS, WorldSpec, spec_preset

    runner = CliRunner()
    res = runner.invoke(main, ["world", "build", "--out", str(tmp_path / "w"), "--spec", "demo", "--n-train", "8",
                               "--n-bench", "2", "--n-retrieval", "2", "--image-size", "48", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "w" / "world.json").read_text())
    spec = WorldSpec.from_json(summary["spec"])
    assert spec == spec_preset("demo", 0) and spec.shapes == SPEC_PRESETS["demo"]["shapes"]
    assert len(spec.heldout_pairs) == SPEC_PRESETS["demo"]["heldout_pairs"]
    bad = runner.invoke(main, ["world", "build", "--out", str(tmp_path / "v"), "--spec", "tiny", "--n-train", "2"])
    assert bad.exit_code != 0 and "unknown world spec 'tiny'" in bad.output
