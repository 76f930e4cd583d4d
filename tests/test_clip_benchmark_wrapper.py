"""The CLIP_benchmark wrapper loads every model spelling tripletclip accepts, and stamps results with its identity."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from tripletclip.eval import clip_benchmark_wrapper as cbw  # noqa: E402
from tripletclip.models.factory import save_random_weights  # noqa: E402
from _hf_folders import save_clip_folder, save_release_layout  # noqa: E402
from conftest import SHARED_BENCHMARKS  # noqa: E402

SMOKE = SHARED_BENCHMARKS / "real_images_smoke"
pytestmark = pytest.mark.shared_benchmarks("real_images_smoke")
IMAGE = SMOKE / "images" / "val2017" / "000000030213.jpg"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[str, str, str]]:
    """name -> (CLIP_benchmark --model, --pretrained, expected identity format)."""
    root = tmp_path_factory.mktemp("formats")
    weights = save_random_weights("test-vit-tiny", root / "w.safetensors", seed=2)
    state = torch.load(save_random_weights("test-vit-tiny", root / "w.pt", seed=2), weights_only=True)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "negclip.pth")
    ckpt = root / "run" / "checkpoints" / "step_00000004"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(weights.read_bytes())
    (ckpt / "meta.json").write_text(json.dumps({"step": 4, "config": {"model": {"name": "test-vit-tiny"}}}))
    (root / "run" / "checkpoints" / "latest").write_text("step_00000004\n")
    (root / "ocdir").mkdir()
    (root / "ocdir" / "open_clip_model.safetensors").write_bytes(weights.read_bytes())
    return {
        "open_clip state dict": ("test-vit-tiny", str(weights), "state-dict"),
        "open_clip training checkpoint": ("test-vit-tiny", str(root / "negclip.pth"), "state-dict"),
        "open_clip folder": ("test-vit-tiny", str(root / "ocdir"), "open_clip-folder"),
        "run folder as model": (str(root / "run"), "", "tripletclip-checkpoint"),
        "run folder as pretrained": ("test-vit-tiny", str(root / "run"), "tripletclip-checkpoint"),
        "transformers CLIPModel": (f"hf:{save_clip_folder(root / 'clip')}", "", "hf-clip"),
        "TripletCLIP release": (f"hf:{save_release_layout(root / 'release')}", "", "hf-tripletclip-towers"),
    }


@pytest.mark.parametrize("name", ["open_clip state dict", "open_clip training checkpoint", "open_clip folder",
                                  "run folder as model", "run folder as pretrained", "transformers CLIPModel",
                                  "TripletCLIP release"])
def test_wrapper_loads_every_format(sources, name):
    model_name, pretrained, fmt = sources[name]
    model, transform, tokenizer = cbw.load_tripletclip(model_name, pretrained)
    assert not model.training
    with torch.no_grad():
        img = model.encode_image(transform(Image.open(IMAGE)).unsqueeze(0))
        txt = model.encode_text(tokenizer(["a dog on a sofa", "a cat"]))
    assert img.shape[0] == 1 and txt.shape[0] == 2 and img.shape[1] == txt.shape[1]
    ident = cbw.LOADED[(model_name, pretrained)]
    assert ident["format"] == fmt and ident["weights_sha256"]


def test_result_files_carry_the_identity(sources, tmp_path, monkeypatch):
    """Through main(), CLIP_benchmark's own result dump gains ``tripletclip_model`` (a stand-in CLIP_benchmark)."""
    models = types.ModuleType("clip_benchmark.models")
    models.TYPE2FUNC, models.MODEL_TYPES = {}, ["open_clip"]
    cli = types.ModuleType("clip_benchmark.cli")
    cli.json = json
    model_name, pretrained, _ = sources["transformers CLIPModel"]

    def fake_main() -> int:  # what clip_benchmark.cli.run does: load by model type, evaluate, json.dump the record
        models.TYPE2FUNC[sys.argv[1]](model_name, pretrained, None, "cpu")
        with open(tmp_path / "r.json", "w") as f:
            cli.json.dump({"model": model_name, "pretrained": pretrained, "metrics": {"acc": 0.5}}, f)
        return 0

    cli.main = fake_main
    monkeypatch.setitem(sys.modules, "clip_benchmark", types.ModuleType("clip_benchmark"))
    monkeypatch.setitem(sys.modules, "clip_benchmark.models", models)
    monkeypatch.setitem(sys.modules, "clip_benchmark.cli", cli)
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    assert cbw.main(["tripletclip"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["metrics"] == {"acc": 0.5} and doc["tripletclip_model"]["format"] == "hf-clip"
    assert doc["tripletclip_model"]["source"] == model_name.removeprefix("hf:")


def test_real_clip_benchmark_sugarcrepe(sources, tmp_path, monkeypatch):
    """With CLIP_benchmark installed: its own SugarCrepe protocol on the smoke rows through ``--model_type tripletclip``."""
    pytest.importorskip("clip_benchmark.cli")
    (tmp_path / "val2017").symlink_to(SMOKE / "images" / "val2017")
    (tmp_path / "swap_obj.json").write_text((SMOKE / "sugar_crepe" / "swap_obj.json").read_text())
    model_name, _, _ = sources["TripletCLIP release"]
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    cbw.main(["eval", "--model_type", "tripletclip", "--model", model_name, "--pretrained", "", "--dataset",
              "sugar_crepe/swap_obj", "--dataset_root", str(tmp_path), "--output", str(tmp_path / "r.json"),
              "--batch_size", "4", "--num_workers", "0"])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert 0.0 <= doc["metrics"]["acc"] <= 1.0 and doc["tripletclip_model"]["format"] == "hf-tripletclip-towers"
