"""Negative images with a tiny diffusers pipeline built from configs and loaded from disk, the trainer reading
the shards, resume, the CLIP-score filter against brute force, statistics, and the faithfulness check."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tripletclip.data.manifest import read_manifest
from tripletclip.data.shard_reader import read_shard
from tripletclip.negatives.base import stable_hash
from tripletclip.negatives.images import ImageJobOptions, run_images
from tripletclip.negatives.text_job import TextJobOptions, run_text

CAPTIONS = ["A red car parked next to a blue bus.", "A dog sitting on a couch.", "Two cats sleeping on a bed.",
            "A man riding a horse on a beach.", "A bowl of fruit on a wooden table.", "An orange cat next to a white dog.",
            "A boy throwing a frisbee in a park."]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Stable-Diffusion-layout pipeline with random tiny weights, saved like any hub pipeline."""
    from tripletclip.negatives.tiny import build_tiny_t2i

    return build_tiny_t2i(tmp_path_factory.mktemp("tiny_sd"), CAPTIONS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Positive JPEGs, a captions CSV pointing at them (one image missing), and the rules negatives."""
    root = tmp_path_factory.mktemp("data")
    (root / "img").mkdir()
    rows = []
    for i, c in enumerate(CAPTIONS * 2):
        key = f"s{i:03d}"
        if i != 5:  # image of s005 is missing on disk: counted, not fatal
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "img" / f"{key}.jpg")
        rows.append({"key": key, "caption": c, "image": f"img/{key}.jpg"})
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["key", "caption", "image"])
        w.writeheader()
        w.writerows(rows)
    run_text(TextJobOptions(inp=str(root / "captions.csv"), out=str(root / "neg"),
                            generator_options={"tagger": "lexicon", "per_caption": 2}))
    return {"root": root, "neg": root / "neg"}


def _sd_job(tiny_sd: Path, dataset: dict[str, Path], out: Path, batch_size: int) -> ImageJobOptions:
    """Two negatives per key rendered by the tiny diffusers pipeline, 5 keys per unit, 3 samples per shard."""
    t2i = {"model": str(tiny_sd), "steps": 1, "guidance": 0.0, "size": 32, "device": "cpu"}
    return ImageJobOptions(negatives=str(dataset["neg"]), out=str(out), backend="diffusers", backend_options=t2i,
                           batch_size=batch_size, chunk_size=5, shard_size=3, image_format="png", max_negs_per_key=2)


@pytest.fixture(scope="module")
def shards(tiny_sd: Path, dataset: dict[str, Path]) -> Path:
    out = dataset["root"] / "shards"
    m = run_images(_sd_job(tiny_sd, dataset, out, batch_size=4))
    assert m["complete"] and m["missing_positive"] == 1 and m["missing_positive_examples"] == ["s005"]
    return out


def test_shards_hold_positive_negative_captions_and_seeded_renderings(shards: Path, dataset: dict[str, Path],
                                                                      tiny_sd: Path) -> None:
    from tripletclip.negatives.t2i import DiffusersT2I

    m = read_manifest(shards)  # the data package's manifest format, readable by its tools
    assert m["total_samples"] == 13 and m["total_neg_images"] == m["total_neg_captions"] == 26
    assert sum(m["edit_types"].values()) == 26 and m["config"]["t2i"]["guidance"] == 0.0
    samples = [s for p in sorted(shards.glob("*.tar")) for s in read_shard(p)]
    assert [s.key for s in samples] == [f"s{i:03d}" for i in range(14) if i != 5]
    t2i = DiffusersT2I(str(tiny_sd), steps=1, size=32, device="cpu")
    s = samples[3]
    assert s.image.read() == (dataset["root"] / "img" / f"{s.key}.jpg").read_bytes()  # positive bytes pass unchanged
    assert s.meta["neg_seeds"] == [stable_hash(0, s.key, m, bits=31) for m in range(2)]
    again = t2i.render([s.neg_captions[1]], [s.meta["neg_seeds"][1]])[0]
    stored = Image.open(io.BytesIO(s.neg_images[1].read()))
    assert stored.size == (32, 32) and np.array_equal(np.asarray(stored), np.asarray(again))  # seed reproduces it
    assert len(s.neg_captions) == 2 and all(t != "unknown" for t in s.neg_types)


def test_trainer_reads_the_shards(shards: Path) -> None:
    from tripletclip.config.schema import DataConfig
    from tripletclip.data.loader import build_train_loader
    from tripletclip.data.testing import HashTokenizer, ResizeToTensor

    cfg = DataConfig(type="wds", train=str(shards), workers=0, max_neg_text=2, max_neg_image=2, shuffle_buffer=4)
    loader = build_train_loader(cfg, ResizeToTensor(32), HashTokenizer(16), batch_size=4, seed=0, context_length=16)
    batch = next(iter(loader))
    loader.close()
    assert batch["neg_image"].shape == (4, 2, 3, 32, 32) and bool(batch["neg_image_mask"].all())
    assert bool(batch["neg_text_mask"].all())


def test_images_job_resumes_only_missing_units(shards: Path, dataset: dict[str, Path], tiny_sd: Path) -> None:
    from tripletclip.negatives.images import run_images

    before = {p.name: p.read_bytes() for p in shards.glob("*.tar")}
    (shards / "part-000001.json").unlink()  # as if unit 1 was killed before it was marked done
    for p in shards.glob("part000001-*.tar"):
        p.unlink()
    m = run_images(_sd_job(tiny_sd, dataset, shards, batch_size=2))
    assert m["last_run"]["units_run"] == 1 and m["complete"]
    after = {p.name: p.read_bytes() for p in shards.glob("*.tar")}
    assert after == before  # same bytes although the batch size changed: per-image seeds
    assert read_manifest(shards)["dataset_hash"] == m["dataset_hash"]


def test_clip_score_filter_keeps_the_brute_force_top_half(shards: Path, tmp_path: Path) -> None:
    import torch

    from tripletclip.models import create_model
    from tripletclip.negatives.filter import FilterJobOptions, run_filter

    torch.manual_seed(0)
    bundle = create_model("test-vit-tiny")
    job = FilterJobOptions(shards=str(shards), out=str(tmp_path / "f"), keep=0.5, device="cpu", shard_size=4)
    m = run_filter(job, bundle=bundle)
    f = m["filter"]
    assert f["scored"] == 13 and f["kept"] == 6 and f["dropped"] == 7 and m["total_samples"] == 6
    model = bundle.model.eval()

    def cos(img: bytes, text: str) -> float:
        with torch.no_grad():
            a = model.encode_image(bundle.preprocess_val(Image.open(io.BytesIO(img)).convert("RGB"))[None], normalize=True)
            b = model.encode_text(bundle.tokenizer([text]), normalize=True)
        return float((a * b).sum())

    brute = {}
    for p in sorted(shards.glob("*.tar")):
        for s in read_shard(p):
            neg = np.mean([cos(s.neg_images[k].read(), s.neg_captions[k]) for k in range(len(s.neg_images))])
            brute[s.key] = 0.5 * (cos(s.image.read(), s.captions[0]) + neg)
    top = sorted(brute, key=lambda k: (-brute[k], k))[:6]
    kept = [s.key for p in sorted((tmp_path / "f").glob("train-*.tar")) for s in read_shard(p)]
    assert sorted(kept) == sorted(top)
    assert f["threshold"] == pytest.approx(brute[top[-1]], abs=1e-4)
    again = run_filter(job, bundle=bundle)
    assert again["dataset_hash"] == m["dataset_hash"]  # resumed: scores reused, same selection


def test_stats_writes_numbers_and_plots(shards: Path, dataset: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from tripletclip.models import create_model
    from tripletclip.negatives.stats import compute_stats

    s = compute_stats(str(dataset["neg"]), str(tmp_path / "text"))
    assert s["rows"] == 28 and sum(s["edit_types"].values()) == 28
    assert s["concepts"]["objects_positive"] >= 10 and s["caption_words"]["positive_mean"] > 5
    torch.manual_seed(0)
    s2 = compute_stats(str(shards), str(tmp_path / "img"), bundle=create_model("test-vit-tiny"), device="cpu")
    sim = s2["similarity"]
    assert sim["cos_text_pos_neg"]["n"] == 26 and {"margin_real", "margin_synthetic"} <= set(sim)
    for name in ("edit_types.png", "caption_length.png", "concepts.png", "cosine.png"):
        assert Image.open(tmp_path / "img" / name).size[0] > 100
    assert json.loads((tmp_path / "img" / "stats.json").read_text())["rows"] == 26


def test_faithfulness_with_a_tiny_vqa_model(shards: Path, tmp_path: Path) -> None:
    from tripletclip.negatives.faithfulness import questions_for, run_faithfulness
    from tripletclip.negatives.lexicon import load_lexicon
    from tripletclip.negatives.tagger import LexiconTagger
    from tripletclip.negatives.tiny import build_tiny_vqa

    lex = load_lexicon()
    qs = questions_for("Two red cars parked next to a blue bus.", LexiconTagger(lex), lex)
    assert qs[0] == ("relation", "Are the cars next to the bus?")
    assert questions_for("A man riding a horse.", LexiconTagger(lex), lex)[0] == ("relation", "Is the man riding the horse?")
    assert ("attribute", "Are the cars red?") in qs and ("count", "Are there two cars?") in qs
    assert ("object", "Is there a bus in the image?") in qs and qs[0][0] == "relation"
    d = build_tiny_vqa(tmp_path / "vilt", CAPTIONS)
    r = run_faithfulness(str(shards), str(tmp_path / "faith"), str(d), device="cpu", batch_size=8)
    assert r["pairs"] == 26 and r["questions"] > 26 and 0.0 <= r["faithful_rate"] <= 1.0
    import pyarrow.parquet as pq

    q = pq.read_table(tmp_path / "faith" / "faithfulness_questions.parquet").to_pydict()
    per_pair: dict = {}
    for k, m, y in zip(q["key"], q["neg_index"], q["yes"]):
        per_pair[(k, m)] = per_pair.get((k, m), True) and y
    assert r["faithful_rate"] == pytest.approx(sum(per_pair.values()) / len(per_pair))


def test_unrenderable_captions_are_dropped_with_their_image(dataset: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import tripletclip.world as world
    def fake_render(caption: str, seed: int = 0, size: int = 64):  # stands in for the world's renderer
        if " with " in caption or " and " in caption:
            return None  # outside the grammar
        return Image.fromarray(np.full((size, size, 3), stable_hash(caption, seed) % 256, dtype=np.uint8))

    monkeypatch.setattr(world, "render_caption", fake_render, raising=False)
    m = run_images(ImageJobOptions(negatives=str(dataset["neg"]), out=str(tmp_path / "w"), backend="world",
                                   backend_options={"size": 16}, max_negs_per_key=2, image_format="png"))
    samples = [s for p in sorted((tmp_path / "w").glob("*.tar")) for s in read_shard(p)]
    assert m["render_failed"] > 0 and m["total_neg_images"] == 26 - m["render_failed"]
    for s in samples:
        assert len(s.neg_captions) == len(s.neg_images) == len(s.meta["neg_seeds"]) == len(s.neg_types)
        for k, cap in enumerate(s.neg_captions):  # caption m and image m still belong together
            assert " with " not in cap and " and " not in cap
            want = stable_hash(cap, s.meta["neg_seeds"][k]) % 256
            assert np.asarray(Image.open(io.BytesIO(s.neg_images[k].read())))[0, 0, 0] == want


def test_world_renderer_backend(tmp_path: Path) -> None:
    try:
        import tripletclip.world

        tripletclip.world.render_caption  # noqa: B018  (AttributeError when the world has no renderer yet)
    except (ImportError, AttributeError):
        pytest.skip("tripletclip.world.render_caption is not available in this checkout")
    from tripletclip.negatives.t2i import WorldT2I

    t2i = WorldT2I(size=32)
    a = t2i.render(["a red circle to the left of a blue square"], [1])[0]
    b = t2i.render(["a red circle to the left of a blue square"], [1])[0]
    assert a is not None and a.size == (32, 32) and np.array_equal(np.asarray(a), np.asarray(b))
