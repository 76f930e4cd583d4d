"""``hf:`` models: tiny transformers CLIPs saved locally in both released layouts, against transformers' own forward.

Features are compared on the real COCO smoke images and captions, each side with its own tokenizer and image
transform: ours through ``create_model("hf:DIR")``, the reference through ``CLIPProcessor`` +
``get_image_features`` / ``get_text_features`` (CLIPModel folders) or the towers' own forward with open_clip's
tokenizer and transform (the TripletCLIP two-folder release).
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from tripletclip.eval.sugarcrepe import load_sugarcrepe  # noqa: E402
from tripletclip.models import create_model  # noqa: E402
from tripletclip.models.weights import WeightsError  # noqa: E402
from _hf_folders import features, save_clip_folder, save_release_layout  # noqa: E402
from conftest import SHARED_BENCHMARKS  # noqa: E402

SMOKE = SHARED_BENCHMARKS / "real_images_smoke"
pytestmark = pytest.mark.shared_benchmarks("real_images_smoke")


def smoke_rows():
    rows, _, _ = load_sugarcrepe(SMOKE / "sugar_crepe")
    return rows


def smoke_inputs() -> tuple[list[Image.Image], list[str]]:
    rows = smoke_rows()
    images = sorted({SMOKE / "images" / "val2017" / r.image for r in rows})[:8]
    texts = sorted({t for r in rows for t in r.texts})[:24] + ["A dog's  ball; 3.5kg?", "word " * 60]
    return [Image.open(p) for p in images], texts


@pytest.mark.parametrize("eos", [49407, 2])  # 2: transformers' legacy configs, pooled at the highest token id
def test_clip_folder_features_equal_transformers(tmp_path, eos):
    folder = save_clip_folder(tmp_path / "clip", eos_token_id=eos)
    bundle = create_model(f"hf:{folder}")
    images, texts = smoke_inputs()
    ref = transformers.CLIPModel.from_pretrained(str(folder)).eval()
    proc = transformers.CLIPProcessor.from_pretrained(str(folder))
    with torch.no_grad():
        want_i = features(ref.get_image_features(**proc(images=images, return_tensors="pt")))
        tok = proc.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        want_t = features(ref.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
        got_i = bundle.model.encode_image(torch.stack([bundle.preprocess_val(im) for im in images]))
        got_t = bundle.model.encode_text(bundle.tokenizer(texts))
    assert torch.allclose(got_i, want_i, atol=1e-5) and torch.allclose(got_t, want_t, atol=1e-5)
    assert bundle.identity["format"] == "hf-clip" and bundle.identity["tokenizer"] == bundle.identity["transform"] == "folder"
    from tripletclip.utils.files import sha256_file

    assert bundle.identity["weights_sha256"] == sha256_file(folder / "model.safetensors")


def test_tripletclip_release_layout_loads_without_its_code(tmp_path):
    import open_clip

    root = save_release_layout(tmp_path / "release")
    bundle = create_model(f"hf:{root}")
    assert "hidden_act" not in json.loads((root / "text-encoder" / "config.json").read_text())  # a default, left out
    images, texts = smoke_inputs()
    from safetensors.torch import load_file

    towers = {}  # the reference: each tower's own transformers forward
    for name, cls, cfg_cls in (("vision-encoder", transformers.CLIPVisionModelWithProjection, transformers.CLIPVisionConfig),
                               ("text-encoder", transformers.CLIPTextModelWithProjection, transformers.CLIPTextConfig)):
        cfg = json.loads((root / name / "config.json").read_text())
        m = cls(cfg_cls(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "auto_map")}))
        m.load_state_dict({k.removeprefix("model."): v for k, v in load_file(str(root / name / "model.safetensors")).items()})
        towers[name] = m.eval()
    tokenizer, transform = open_clip.get_tokenizer("ViT-B-32"), open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        tok = tokenizer(texts)
        want_t = towers["text-encoder"](input_ids=tok, attention_mask=(tok != 0).long()).text_embeds
        want_i = towers["vision-encoder"](pixel_values=torch.stack([transform(im) for im in images])).image_embeds
        got_t = bundle.model.encode_text(bundle.tokenizer(texts))
        got_i = bundle.model.encode_image(torch.stack([bundle.preprocess_val(im) for im in images]))
    assert torch.allclose(got_i, want_i, atol=1e-5) and torch.allclose(got_t, want_t, atol=1e-5)
    ident = bundle.identity
    assert ident["format"] == "hf-tripletclip-towers" and set(ident["weights_sha256"]) == {
        "vision-encoder/model.safetensors", "text-encoder/model.safetensors"}
    assert math.isclose(float(bundle.model.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-4)


def test_code_only_and_missing_sources_are_one_line_refusals(tmp_path):
    foreign = tmp_path / "siglip"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "jina_clip", "auto_map": {"AutoModel": "modeling.JinaCLIP"}}))
    with pytest.raises(WeightsError, match="model_type 'jina_clip', which needs the repository's own code"):
        create_model(f"hf:{foreign}")
    (foreign / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(WeightsError, match="model_type 'siglip', which is not a transformers CLIP"):
        create_model(f"hf:{foreign}")
    with pytest.raises(WeightsError, match="not in the local Hugging Face cache"):
        create_model("hf:nobody-here/no-such-model-xyz")
    # a release tower whose keys are not transformers' names
    root = save_release_layout(tmp_path / "rel")
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(1)}, str(root / "vision-encoder" / "model.safetensors"))
    with pytest.raises(WeightsError, match="does not hold transformers CLIP tower weights"):
        create_model(f"hf:{root}")


def test_eval_cli_per_row_equals_transformers(tmp_path):
    """``tripletclip eval --model hf:DIR --per-row``: transformers' own scores and decisions, row by row."""
    from click.testing import CliRunner

    from tripletclip.cli import main

    folder = save_clip_folder(tmp_path / "clip", seed=3)
    out, rows_path = tmp_path / "res.json", tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["eval", "--benchmark", "sugarcrepe", "--annotations", str(SMOKE / "sugar_crepe"),
                                       "--images", str(SMOKE / "images"), "--out", str(out), "--per-row", str(rows_path),
                                       "--model", f"hf:{folder}", "--batch-size", "16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = [json.loads(x) for x in rows_path.read_text().splitlines()]
    model = transformers.CLIPModel.from_pretrained(str(folder)).eval()
    proc = transformers.CLIPProcessor.from_pretrained(str(folder))
    want = []
    with torch.no_grad():
        for r in smoke_rows():  # the official per-row loop, with transformers' model and processor
            img = features(model.get_image_features(**proc(images=Image.open(SMOKE / "images" / "val2017" / r.image),
                                                            return_tensors="pt")))
            txt = features(model.get_text_features(**proc.tokenizer(list(r.texts), padding=True, return_tensors="pt")))
            s = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).t()
            want.append((float(s[0]), float(s[1])))
    assert len(got) == len(want) == 71
    assert torch.allclose(torch.tensor([g["scores"] for g in got]), torch.tensor(want), atol=1e-5)
    assert [g["correct"] for g in got] == [p > n for p, n in want]
    assert 0 < sum(p > n for p, n in want) < 71  # random weights: both outcomes occur, so the check can fail
    ident = json.loads(out.read_text())["model"]["model"]
    assert ident["format"] == "hf-clip" and ident["source"] == str(folder) and len(ident["weights_sha256"]) == 64
