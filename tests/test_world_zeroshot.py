"""Zero-shot shape and colour classification on the world (eval/world_zeroshot.py) and its results.json block.

An oracle encoder (object crop -> one-hot of its shape plus one-hot of its colour; prompt -> the same from
its words) must score 100%; a constant encoder ties every class and must score 0% (ties count as wrong)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tripletclip.errors import InputError
from tripletclip.eval.world_zeroshot import attach_zeroshot, object_crops, world_zeroshot
from tripletclip.world import build_world


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zsworld")
    build_world(out, n_train=8, n_bench=8, n_retrieval=40, seed=3, image_size=24, progress=False)
    return out / "bench"


class Oracle:
    def __init__(self, bench: Path, constant: bool = False) -> None:
        spec = json.loads((bench / "manifest.json").read_text())["spec"]
        self.words = list(spec["shapes"]) + list(spec["colours"])
        size = json.loads((bench / "manifest.json").read_text())["image_size"]
        self.labels = {(str(c.path), c.box): (s, col) for c, s, col in object_crops(bench, size)}
        self.constant = constant

    def _vec(self, words) -> torch.Tensor:
        v = torch.zeros(len(self.words))
        for w in words:
            if w in self.words:
                v[self.words.index(w)] = 1.0
        return torch.ones(len(self.words)) if self.constant else v

    def encode_texts(self, texts):
        return torch.stack([self._vec(t.split()) for t in texts])

    def encode_images(self, crops):
        return torch.stack([self._vec(self.labels[(str(c.path), c.box)]) for c in crops])


def test_oracle_scores_everything_and_a_constant_encoder_nothing(bench):
    size = json.loads((bench / "manifest.json").read_text())["image_size"]
    rows = object_crops(bench, size)
    n_objects = sum(len(json.loads(x)["scene"]["objects"]) for x in (bench / "scenes.jsonl").read_text().splitlines())
    assert len(rows) == min(n_objects, 1000) and len(object_crops(bench, size, limit=10)) == 10
    crop = rows[0][0]
    assert crop.box[2] == crop.box[3] > 0  # a square around the object
    res = world_zeroshot(Oracle(bench), bench)
    assert (res["shape"], res["colour"], res["mean"]) == (100.0, 100.0, 100.0)
    assert res["n_objects"] == len(rows)
    flat = world_zeroshot(Oracle(bench, constant=True), bench)
    assert (flat["shape"], flat["colour"]) == (0.0, 0.0)  # every class ties: wrong


def test_missing_scenes_is_a_user_error(tmp_path):
    with pytest.raises(InputError, match="scenes.jsonl"):
        object_crops(tmp_path, 24)


def test_results_block_has_per_seed_values_and_the_change_vs_base():
    def run(method, seed, shape, colour):
        return {"method": method, "seed": seed, "zeroshot": {"shape": shape, "colour": colour, "mean": (shape + colour) / 2}}

    results = [run("base", 0, 50.0, 80.0), run("negclip", 0, 40.0, 80.0), run("negclip", 1, 44.0, 70.0)]
    document = {"base": {"mean": 1.0}, "negclip": {"mean": 2.0}, "regime": "finetune"}
    attach_zeroshot(document, results)
    block = document["negclip"]["zeroshot"]
    assert block["per_seed"] == {"0": {"shape": 40.0, "colour": 80.0, "mean": 60.0},
                                 "1": {"shape": 44.0, "colour": 70.0, "mean": 57.0}}
    assert block["shape"] == 42.0 and block["change_vs_base"]["shape"] == -8.0
    assert block["change_vs_base"]["colour"] == -5.0 and block["change_vs_base"]["mean"] == pytest.approx(-6.5)
    assert block["change_vs_base"]["per_seed"]["1"]["shape"] == -6.0
    assert document["base"]["zeroshot"]["mean"] == 65.0
