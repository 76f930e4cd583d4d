"""``tripletclip export``: train -> export -> load with the target library -> the checkpoint's features.

Round trips for an open_clip-architecture run (to transformers and to open_clip) and for a run fine-tuned from a
transformers CLIP folder (``model.name=hf:DIR``), plus the one-line refusal for a tower transformers cannot express.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

transformers = pytest.importorskip("transformers")

from tripletclip.cli import main  # noqa: E402
from tripletclip.config import load_config  # noqa: E402
from tripletclip.data.testing import write_synthetic_shards  # noqa: E402
from tripletclip.models import create_model, load_run_model  # noqa: E402
from tripletclip.models.factory import save_random_weights  # noqa: E402
from tripletclip.train import train  # noqa: E402
from _hf_folders import features, save_clip_folder  # noqa: E402
from conftest import SHARED_BENCHMARKS  # noqa: E402

SMOKE = SHARED_BENCHMARKS / "real_images_smoke"
pytestmark = pytest.mark.shared_benchmarks("real_images_smoke")
CAPTIONS = ["a red cube left of a blue ball", "Two dogs playing in the snow.", "A Dog's  ball; 3.5kg?"]


def images(n: int = 6) -> list[Image.Image]:
    return [Image.open(p) for p in sorted((SMOKE / "images" / "val2017").glob("*.jpg"))[:n]]


def train_run(root: Path, model: str, name: str) -> Path:
    """5 steps of CLIP training on tiny synthetic shards."""
    shards = root / "shards"
    if not shards.is_dir():
        write_synthetic_shards(shards, n=24, shard_size=12)
    cfg = load_config(None, [f"data.train={shards}/train-{{000000..000001}}.tar", "data.workers=0", f"model.name={model}",
                             "train.batch_size=8", "train.steps=5", "train.save_every=5", "train.log_every=5",
                             f"train.output_dir={root}", f"train.name={name}", "train.progress=false", "train.threads=1"])
    torch.manual_seed(0)
    return Path(train(cfg)["run_dir"])


def export(run: Path, fmt: str, out: Path) -> dict:
    result = CliRunner().invoke(main, ["export", str(run), "--format", fmt, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "tripletclip_export.json").read_text())


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("runs"), "test-vit-tiny", "vit")


def test_open_clip_run_to_transformers(vit_run, tmp_path):
    ours = load_run_model(vit_run)
    manifest = export(vit_run, "hf", tmp_path / "hf")
    assert manifest["source"]["step"] == 5 and max(manifest["max_feature_diff"].values()) < 1e-5
    model = transformers.CLIPModel.from_pretrained(str(tmp_path / "hf"), local_files_only=True).eval()
    proc = transformers.CLIPProcessor.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    pixels = torch.stack([ours.preprocess_val(im) for im in images()])
    tok = proc.tokenizer(CAPTIONS, padding="max_length", max_length=ours.context_length, return_tensors="pt")
    # the exported tokenizer is open_clip's: the same ids (open_clip pads with 0, transformers with end-of-text)
    ids = ours.tokenizer(CAPTIONS)
    assert torch.equal(torch.where(tok["attention_mask"].bool(), tok["input_ids"], 0), ids)
    with torch.no_grad():
        assert torch.allclose(features(model.get_image_features(pixel_values=pixels)), ours.model.encode_image(pixels), atol=1e-5)
        assert torch.allclose(features(model.get_text_features(**tok)), ours.model.encode_text(ids), atol=1e-5)
    # and tripletclip reads the export back as hf:DIR, with the exported processor
    back = create_model(f"hf:{tmp_path / 'hf'}")
    with torch.no_grad():
        assert torch.allclose(back.model.encode_image(pixels), ours.model.encode_image(pixels), atol=1e-5)


def test_open_clip_run_to_open_clip(vit_run, tmp_path):
    import open_clip

    ours = load_run_model(vit_run)
    export(vit_run, "open_clip", tmp_path / "oc")
    open_clip.add_model_config(tmp_path / "oc" / "test-vit-tiny.json")
    model, _, preprocess = open_clip.create_model_and_transforms(
        "test-vit-tiny", pretrained=str(tmp_path / "oc" / "open_clip_model.safetensors"))
    tokenizer = open_clip.get_tokenizer("test-vit-tiny")
    model.eval()
    with torch.no_grad():  # open_clip's own transform and tokenizer on both sides: the same features
        theirs_i = model.encode_image(torch.stack([preprocess(im) for im in images()]))
        ours_i = ours.model.encode_image(torch.stack([ours.preprocess_val(im) for im in images()]))
        assert torch.allclose(theirs_i, ours_i, atol=1e-5)
        assert torch.allclose(model.encode_text(tokenizer(CAPTIONS)), ours.model.encode_text(ours.tokenizer(CAPTIONS)), atol=1e-5)
    local = open_clip.create_model(f"local-dir:{tmp_path / 'oc'}").eval()
    with torch.no_grad():
        assert torch.allclose(local.encode_image(torch.stack([preprocess(im) for im in images()])), ours_i, atol=1e-5)


def test_run_from_a_transformers_folder_round_trips(tmp_path):
    """train model.name=hf:DIR -> checkpoint -> export hf (transformers) and open_clip (reverse key map)."""
    import open_clip

    folder = save_clip_folder(tmp_path / "clip", seed=1, text_act="gelu")
    run = train_run(tmp_path, f"hf:{folder}", "hfrun")
    ours = load_run_model(run)
    assert ours.identity["format"] == "tripletclip-checkpoint" and ours.identity["name"] == f"hf:{folder}"
    start = create_model(f"hf:{folder}")
    pixels = torch.stack([ours.preprocess_val(im) for im in images()])
    ids = ours.tokenizer(CAPTIONS)
    with torch.no_grad():
        want_i, want_t = ours.model.encode_image(pixels), ours.model.encode_text(ids)
        assert not torch.allclose(want_i, start.model.encode_image(pixels), atol=1e-4)  # training changed the weights
    export(run, "hf", tmp_path / "hf")
    model = transformers.CLIPModel.from_pretrained(str(tmp_path / "hf"), local_files_only=True).eval()
    export(run, "open_clip", tmp_path / "oc")
    oc = open_clip.create_model(f"local-dir:{tmp_path / 'oc'}").eval()
    with torch.no_grad():
        assert torch.allclose(features(model.get_image_features(pixel_values=pixels)), want_i, atol=1e-5)
        assert torch.allclose(features(model.get_text_features(input_ids=ids)), want_t, atol=1e-5)
        assert torch.allclose(oc.encode_image(pixels), want_i, atol=1e-5)
        assert torch.allclose(oc.encode_text(open_clip.get_tokenizer("ViT-B-32", context_length=32)(CAPTIONS)), want_t, atol=1e-5)


def test_mixed_activations_to_open_clip_are_refused(tmp_path):
    """open_clip has one activation for both towers; transformers allows one per tower."""
    folder = save_clip_folder(tmp_path / "clip")  # image tower GELU, text tower QuickGELU
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in create_model(f"hf:{folder}").model.state_dict().items()},
              str(ckpt / "model.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"step": 1, "config": {"model": {"name": f"hf:{folder}"}}}))
    result = CliRunner().invoke(main, ["export", str(ckpt), "--format", "open_clip", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "one activation for both towers" in result.output and "gelu / quick_gelu" in result.output


def test_cnn_tower_to_transformers_is_refused_in_one_line(tmp_path):
    ckpt = tmp_path / "cnn" / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    save_random_weights("world-resnet-tiny", ckpt / "model.safetensors")
    (ckpt / "meta.json").write_text(json.dumps({"step": 1, "config": {"model": {"name": "world-resnet-tiny"}}}))
    (tmp_path / "cnn" / "checkpoints" / "latest").write_text("step_00000001\n")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "cnn"), "--format", "hf", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and result.output.count("\n") == 1, result.output
    assert "image tower is the timm model 'test_resnet'" in result.output and "ViT image towers only" in result.output
    (tmp_path / "o" / "x").write_text("keep me")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "cnn"), "--format", "open_clip", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "not empty" in result.output and (tmp_path / "o" / "x").read_text() == "keep me"


def test_export_records_the_source(vit_run, tmp_path):
    manifest = export(vit_run, "open_clip", tmp_path / "oc")
    assert manifest["format"] == "open_clip" and manifest["source"]["format"] == "tripletclip-checkpoint"
    assert set(manifest["files"]) == {"open_clip_model.safetensors", "test-vit-tiny.json", "open_clip_config.json"}
