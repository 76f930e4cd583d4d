"""A small random-weight open_clip model evaluated end to end on the 76 real COCO images in ../shared/benchmarks.

Random weights are saved to disk and loaded through the real pretrained-weights path; a tripletclip checkpoint
folder is loaded through ``load_run_model``. Batched + cached scoring must give the official per-row
protocol's decisions and scores.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tripletclip.eval import Encoder, evaluate, load_encoder
from tripletclip.eval.clip_benchmark_wrapper import load_tripletclip, register
from tripletclip.eval.reference import per_row_reference
from tripletclip.eval.sugarcrepe import load_sugarcrepe
from conftest import SHARED_BENCHMARKS

SMOKE = SHARED_BENCHMARKS / "real_images_smoke"
pytestmark = pytest.mark.shared_benchmarks("real_images_smoke")
MODEL = "test-vit-tiny"


@pytest.fixture(scope="module")
def weights(tiny_weights) -> Path:
    return tiny_weights  # conftest: seeded test-vit-tiny weights


@pytest.fixture(scope="module")
def encoder(weights) -> Encoder:
    return load_encoder(MODEL, str(weights), batch_size=16)


def smoke_args() -> dict:
    return {
        "sugarcrepe": {"annotations": SMOKE / "sugar_crepe", "images": SMOKE / "images"},
        "sugarcrepe_pp": {"annotations": SMOKE / "sugar_crepe_pp", "images": SMOKE / "images" / "val2017"},
        "valse": {"annotations": SMOKE / "valse", "images": [SMOKE / "images" / "val2017", SMOKE / "images" / "train2017"]},
        "aro_coco_order": {"annotations": SMOKE / "aro" / "coco_karpathy_test.json", "images": SMOKE / "images", "tagger": "fallback"},
        "retrieval": {"annotations": SMOKE / "captions.json", "images": SMOKE},
    }


def test_batched_equals_official_per_row(encoder):
    rows, _, _ = load_sugarcrepe(SMOKE / "sugar_crepe")
    ref = per_row_reference(encoder.model, encoder.preprocess, encoder.tokenizer,
                            [(SMOKE / "images" / "val2017" / r.image, *r.texts) for r in rows])
    enc = Encoder(encoder.model, encoder.preprocess, encoder.tokenizer, batch_size=8)  # fresh cache
    out: list = []
    res = evaluate(["sugarcrepe"], enc, {"sugarcrepe": smoke_args()["sugarcrepe"]}, per_row=out)["sugarcrepe"]
    assert [r["correct"] for r in out] == [c for _, _, c in ref]
    got = torch.tensor([r["scores"] for r in out])
    want = torch.tensor([[p, n] for p, n, _ in ref])
    assert torch.allclose(got, want, atol=1e-5)
    assert res["subsets"]["swap_obj"]["rows"] == 4 and sum(s["rows"] for s in res["subsets"].values()) == 71
    # each of the 15 images encoded once; each distinct caption once
    assert enc.stats["images_encoded"] == 15 and res["images"]["distinct"] == 15
    assert enc.stats["texts_encoded"] == len({t for r in rows for t in r.texts})


def test_smoke_suite_through_cli(weights, tmp_path):
    from tripletclip.cli import main

    args = smoke_args()
    cmd = ["eval", "--benchmark", ",".join(args), "--out", str(tmp_path / "res.json"), "--per-row", str(tmp_path / "rows.jsonl"),
           "--model", MODEL, "--pretrained", str(weights), "--batch-size", "32", "--option", "aro_coco_order.tagger=fallback"]
    for name, a in args.items():
        cmd += ["--annotations", f"{name}={a['annotations']}"]
        roots = a["images"] if isinstance(a["images"], list) else [a["images"]]
        cmd += [x for r in roots for x in ("--images", f"{name}={r}")]
    result = CliRunner().invoke(main, cmd, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "res.json").read_text())
    assert doc["format"] == "tripletclip-eval/1" and doc["model"]["model"]["weights_sha256"]
    b = doc["benchmarks"]
    assert b["valse"]["subsets"]["plurals"]["rows"] == 5 and b["valse"]["subsets"]["relations"]["rows"] == 2
    assert b["aro_coco_order"]["subsets"]["coco_order"]["rows"] == 45
    assert b["aro_coco_order"]["images"]["fallbacks"]["coco2017_id"] == 9  # Karpathy 2014 names -> 2017 files
    assert b["retrieval"]["subsets"] == {"i2t": {"queries": 76}, "t2i": {"queries": 380}}
    assert 0.0 <= doc["scalars"]["retrieval/i2t_r10"] <= 1.0 and "sugarcrepe_pp/tot_mean" in doc["scalars"]
    rows = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert Counter_of(rows) == {"sugarcrepe": 71, "sugarcrepe_pp": 92, "valse": 7, "aro_coco_order": 45, "retrieval": 456}
    assert all({"benchmark", "subset", "id", "scores", "correct"} <= set(r) for r in rows)
    # every headline printed in percent: sugarcrepe's mean as a table row
    mean = 100 * doc["benchmarks"]["sugarcrepe"]["headline"]["mean"]
    assert re.search(rf"^sugarcrepe\s+mean\s+{mean:.2f}$", result.output, re.M), result.output


def Counter_of(rows) -> dict:
    out: dict = {}
    for r in rows:
        out[r["benchmark"]] = out.get(r["benchmark"], 0) + 1
    return out


def test_missing_images_cli_error_then_skip(weights, tmp_path):
    from tripletclip.cli import main

    imgs = tmp_path / "imgs"
    shutil.copytree(SMOKE / "images" / "val2017", imgs)
    (imgs / "000000165518.jpg").unlink()  # 4 rows use it
    base = ["eval", "--benchmark", "sugarcrepe", "--annotations", str(SMOKE / "sugar_crepe"), "--images", str(imgs),
            "--out", str(tmp_path / "r.json"), "--model", MODEL, "--pretrained", str(weights)]
    result = CliRunner().invoke(main, base)
    assert result.exit_code != 0 and "000000165518.jpg" in result.output and "--skip-missing" in result.output
    result = CliRunner().invoke(main, base + ["--skip-missing"])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "r.json").read_text())["benchmarks"]["sugarcrepe"]
    assert rec["skipped_missing"] == 4 and sum(s["rows"] for s in rec["subsets"].values()) + rec["skipped_missing"] == 71
    assert "skipped" in result.output


def test_checkpoint_path_and_clip_benchmark_wrapper(weights, encoder, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "run" / "checkpoints" / "step_00000010"
    ckpt.mkdir(parents=True)
    save_file(load_file(str(weights)), str(ckpt / "model.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"step": 10, "config": {"model": {"name": MODEL}}}))
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_00000010")
    from_ckpt = load_encoder(checkpoint=tmp_path / "run", batch_size=16)
    assert from_ckpt.identity["step"] == 10
    args = {"sugarcrepe": smoke_args()["sugarcrepe"]}
    a = evaluate(["sugarcrepe"], from_ckpt, args)["sugarcrepe"]["subsets"]
    b = evaluate(["sugarcrepe"], encoder, args)["sugarcrepe"]["subsets"]
    assert a == b

    model, transform, tokenizer = load_tripletclip(str(tmp_path / "run"))
    assert not model.training and tokenizer(["a dog"]).shape == (1, 32) and transform.__class__.__name__ == "Compose"
    fake = types.ModuleType("clip_benchmark.models")
    fake.TYPE2FUNC, fake.MODEL_TYPES = {"open_clip": None}, ["open_clip"]
    monkeypatch.setitem(sys.modules, "clip_benchmark", types.ModuleType("clip_benchmark"))
    monkeypatch.setitem(sys.modules, "clip_benchmark.models", fake)
    register()
    assert fake.TYPE2FUNC["tripletclip"] is load_tripletclip and fake.MODEL_TYPES == ["open_clip", "tripletclip"]


def test_encoder_cache_by_content_crops_and_bf16(encoder, tmp_path):
    from tripletclip.eval import ImageCrop

    src = SMOKE / "images" / "val2017" / "000000030213.jpg"
    shutil.copy(src, tmp_path / "copy.jpg")
    enc = Encoder(encoder.model, encoder.preprocess, encoder.tokenizer, batch_size=4)
    e = enc.encode_images([src, tmp_path / "copy.jpg", src, ImageCrop(src, (0, 0, 100, 80))])
    assert enc.stats["images_encoded"] == 2  # same content under two names: once; the crop: once more
    assert torch.equal(e[0], e[1]) and not torch.allclose(e[0], e[3])
    assert torch.allclose(e.norm(dim=-1), torch.ones(4), atol=1e-5)
    t = enc.encode_texts(["a dog", "a cat", "a dog"])
    assert enc.stats["texts_encoded"] == 2 and torch.equal(t[0], t[2])
    bf = Encoder(encoder.model, encoder.preprocess, encoder.tokenizer, batch_size=4, precision="bf16")
    assert torch.allclose(bf.encode_images([src]), e[:1], atol=5e-2)


def test_trimmed_text_tower_equals_full_context(encoder):
    """Skipping the padding after the end-of-text token must not change any text embedding."""
    rows, _, _ = load_sugarcrepe(SMOKE / "sugar_crepe")
    texts = sorted({t for r in rows for t in r.texts})[:40] + ["a", "word " * 60]  # 1 word .. truncated at context
    enc = Encoder(encoder.model, encoder.preprocess, encoder.tokenizer, batch_size=16)
    assert enc._trim
    with torch.no_grad():
        full = torch.nn.functional.normalize(encoder.model.encode_text(encoder.tokenizer(texts)), dim=-1)
    assert torch.allclose(enc.encode_texts(texts), full, atol=1e-6)
