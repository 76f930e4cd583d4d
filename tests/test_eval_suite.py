"""``tripletclip eval --suite``: missing files reported one line each before any model loads; two real tiny
models side by side, the table equals the single-benchmark results, the macro average and the change vs base."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from _eval_standins import standins
from tripletclip.cli import main
from tripletclip.eval.suite import ModelSpec, build_table, format_table


def test_missing_files_are_listed_before_any_model_loads(tmp_path, monkeypatch):
    import tripletclip.eval.api as api

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(api, "load_encoder", no_load)
    (tmp_path / "here.json").write_text("[]")
    cfg = tmp_path / "paths.yaml"
    cfg.write_text(yaml.safe_dump({
        "cola": {"annotations": "here.json", "images": "vg_images"},
        "crepe": {"annotations": str(tmp_path / "no_crepe"), "images": ["vg_images", "vg2"]},
    }))
    res = CliRunner().invoke(main, ["eval", "--suite", "compositionality", "--suite-config", str(cfg), "--out",
                                    str(tmp_path / "o.json"), "--model", "test-vit-tiny", "--pretrained", "x.pt"])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert "4 path(s) not found" in lines[0]
    assert lines[1:] == [f"  cola.images: {tmp_path / 'vg_images'} not found",
                         f"  crepe.annotations: {tmp_path / 'no_crepe'} not found",
                         f"  crepe.images: {tmp_path / 'vg_images'} not found",
                         f"  crepe.images: {tmp_path / 'vg2'} not found"]
    cfg.write_text(yaml.safe_dump({"sugarcrepe_x": {"annotations": "here.json"}}))
    res = CliRunner().invoke(main, ["eval", "--suite", "compositionality", "--suite-config", str(cfg), "--out",
                                    str(tmp_path / "o.json"), "--base", "ViT-B-32:openai"])
    assert res.exit_code == 1 and "not in suite 'compositionality'" in res.output


def test_two_models_side_by_side_with_base(tmp_path, tiny_weights):
    from tripletclip.eval import evaluate, load_encoder
    from tripletclip.models.factory import save_random_weights

    other = save_random_weights("test-vit-tiny", tmp_path / "w2.safetensors", seed=3)
    pairs = [[f"u/{i}.jpg", f"a red cube {i}", f"u/{i + 10}.jpg", f"a blue ball {i}"] for i in range(6)]
    (tmp_path / "cola.json").write_text(json.dumps(pairs))
    standins(tmp_path / "img", [f"{i}.jpg" for i in range(6)] + [f"{i + 10}.jpg" for i in range(6)])
    (tmp_path / "V_mcq_x.csv").write_text(
        "image_path,correct_answer,caption_0,caption_1,caption_2,caption_3,correct_answer_template\n"
        + "".join(f"d/{i}.jpg,0,a cube {i},no cube,a ball,no ball {i},{t}\n"
                  for i, t in zip(range(6), ["positive", "negative", "hybrid"] * 2)))
    for c in ("cube", "ball"):
        standins(tmp_path / "zs" / c, [f"{c}{i}.png" for i in range(2)])
    (tmp_path / "t.json").write_text(json.dumps(["a photo of a {c}."]))
    config = {"cola": {"annotations": "cola.json", "images": "img"},
              "negbench_mcq": {"annotations": "V_mcq_x.csv", "images": "img"},
              "zeroshot": {"images": "zs", "templates": "t.json"}}
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "suite.json"
    res = CliRunner().invoke(main, ["eval", "--suite", "compositionality", "--suite-config", str(tmp_path / "paths.yaml"),
                                    "--out", str(out), "--model", "test-vit-tiny", "--pretrained", str(tiny_weights),
                                    "--base", f"base=test-vit-tiny:{other}"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    table = doc["table"]
    main_label = f"test-vit-tiny:{tiny_weights.stem}"
    assert table["columns"] == [main_label, "base"] and table["base"] == "base"
    args = {"cola": {"annotations": tmp_path / "cola.json", "images": tmp_path / "img"},
            "negbench_mcq": {"annotations": tmp_path / "V_mcq_x.csv", "images": tmp_path / "img"}}
    single = {lab: evaluate(list(args), load_encoder("test-vit-tiny", str(w)), args)
              for lab, w in ((main_label, tiny_weights), ("base", other))}
    rows = {r["benchmark"]: r for r in table["rows"]}
    assert list(rows) == ["cola", "negbench_mcq"]
    for lab in (main_label, "base"):
        assert rows["cola"]["values"][lab] == pytest.approx(single[lab]["cola"]["headline"]["accuracy"])
        assert rows["negbench_mcq"]["values"][lab] == pytest.approx(single[lab]["negbench_mcq"]["headline"]["mean"])
        assert table["macro"]["values"][lab] == pytest.approx(
            (rows["cola"]["values"][lab] + rows["negbench_mcq"]["values"][lab]) / 2)
    assert rows["cola"]["delta"][main_label] == pytest.approx(rows["cola"]["values"][main_label] - rows["cola"]["values"]["base"])
    zs = table["zero_shot"][0]
    assert zs["values"]["base"] == doc["results"]["base"]["zeroshot"]["headline"]["acc1"]
    assert "crepe" in table["not_run"] and "zeroshot" not in table["macro"]["benchmarks"]
    assert doc["text"] in res.output and f"{main_label} vs base" in res.output.splitlines()[0]
    # every model's identity is recorded (the activation check included)
    assert set(doc["models"]) == {main_label, "base"}


def test_table_text_and_specs():
    results = {"a": {"cola": {"headline": {"accuracy": 0.5}}, "crepe": {"headline": {"mean": 0.25}}},
               "b": {"cola": {"headline": {"accuracy": 0.75}}}}
    results["a"]["crepe"]["skipped_missing"] = 3
    table = build_table("compositionality", results, "b")
    assert table["skipped_missing"] == {"crepe": 3}
    assert table["macro"]["values"] == {"a": 0.5, "b": 0.75} and table["macro"]["benchmarks"] == ["cola"]
    text = format_table(table)
    assert "crepe: 3 rows skipped" in text
    assert "+25.00" not in text and "-25.00" in text and " - " in text.splitlines()[3] + " "
    assert ModelSpec.parse("ft=ViT-B-32-quickgelu:openai") == ModelSpec("ft", "ViT-B-32-quickgelu", "openai")
    assert ModelSpec.parse("ViT-B-32-quickgelu:openai").label == "ViT-B-32-quickgelu:openai"
    with pytest.raises(ValueError, match="MODEL:PRETRAINED"):
        ModelSpec.parse("ViT-B-32")
