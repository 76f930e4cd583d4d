"""Mirror twins of the base's pretraining data (world/mirror.py, docs/world_experiments.md section 13): the twin
checked against the scene by the truth oracle and by geometry, the pairs' layout in built shards, and the demo's
checks of the option."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletclip.config.load import ConfigError
from tripletclip.errors import InputError
from tripletclip.world.build import build_world, spec_preset
from tripletclip.world.caption import truth
from tripletclip.world.grammar import sample_description
from tripletclip.world.mirror import mirror_scene, mirror_twin
from tripletclip.world.rand import Rand
from tripletclip.world.scene import relation_value, sample_scene
from tripletclip.world.vocab import INVERSE_RELATION

SPEC = spec_preset("full", seed=0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9))
def test_the_twin_is_true_of_its_scene_and_a_relation_contrast(seed: int) -> None:
    rng = Rand([seed])
    scene = sample_scene(SPEC, rng)
    cap = sample_description(scene, rng)
    twin = mirror_twin(scene, cap)
    if not cap.desc.relations:
        assert twin is None
        return
    if twin is None:  # refused only when the pair would not be a contrast (e.g. two identical descriptions)
        from dataclasses import replace

        from tripletclip.world.vocab import RELATION_AXIS
        axes = {RELATION_AXIS[r] for _, r, _ in cap.desc.relations}
        t_scene = mirror_scene(scene, 0 in axes, 1 in axes)
        t_desc = replace(cap.desc, relations=tuple((i, INVERSE_RELATION[r], j) for i, r, j in cap.desc.relations))
        assert (truth(t_desc, t_scene) is not True or truth(t_desc, scene) is not False
                or truth(cap.desc, t_scene) is not False)
        return
    t_scene, t_cap = twin
    assert truth(t_cap.desc, t_scene) is True and truth(cap.desc, scene) is True
    assert truth(cap.desc, t_scene) is False and truth(t_cap.desc, scene) is False
    # only the relations change, each to its inverse; the words around them and the objects stay
    assert t_cap.desc.objects == cap.desc.objects and t_cap.surface == cap.surface
    assert [(i, INVERSE_RELATION[r], j) for i, r, j in cap.desc.relations] == list(t_cap.desc.relations)
    for a, b in zip(scene.objects, t_scene.objects):
        assert (a.shape, a.colour, a.texture, a.size, a.r) == (b.shape, b.colour, b.texture, b.size, b.r)
    # brute force: every stated relation holds between the bound scene objects, inverted in the twin
    for i, rel, j in cap.desc.relations:
        a, b = cap.binding[i], cap.binding[j]
        assert relation_value(scene.objects[a], scene.objects[b], rel) is True
        assert relation_value(t_scene.objects[a], t_scene.objects[b], INVERSE_RELATION[rel]) is True


def test_mirror_scene_reflects_coordinates() -> None:
    scene = sample_scene(SPEC, Rand([3]))
    m = mirror_scene(scene, True, False)
    assert [o.x for o in m.objects] == pytest.approx([1 - o.x for o in scene.objects])
    assert [o.y for o in m.objects] == [o.y for o in scene.objects]
    back = mirror_scene(mirror_scene(scene, True, True), True, True)
    coords = [c for o in scene.objects for c in (o.x, o.y)]
    assert [c for o in back.objects for c in (o.x, o.y)] == pytest.approx(coords)


def _samples(folder: Path) -> list[dict]:
    out = []
    for shard in sorted((folder / "train").glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    out.append(json.loads(tar.extractfile(m).read()))
    return out


def test_built_pairs_fill_aligned_units_and_even_shards(tmp_path) -> None:
    spec = spec_preset("demo", seed=2)
    summary = build_world(tmp_path / "w", n_train=400, n_bench=0, n_retrieval=0, seed=2, image_size=32, n_neg=0,
                          spec=spec, mirror_pairs=1.0, shard_size=101, progress=False)
    metas = _samples(tmp_path / "w")
    assert len(metas) == 400
    twins = [(i, m) for i, m in enumerate(metas) if "mirror_twin_of" in m]
    assert summary["train"]["mirror_twins"] == len(twins) > 40  # about a third of demo captions state a relation
    for i, m in twins:
        assert i % 2 == 1 and metas[i - 1]["key"] == m["mirror_twin_of"]
        first, second = metas[i - 1]["world"]["caption"]["desc"], m["world"]["caption"]["desc"]
        assert first["objects"] == second["objects"] and first["relations"] != second["relations"]
    sizes = [len(list(tarfile.open(p).getmembers())) for p in sorted((tmp_path / "w" / "train").glob("*.tar"))]
    assert len(sizes) > 1  # shard_size 101 was rounded to an even size, so no pair spans two shards
    # without the option, no twin
    build_world(tmp_path / "plain", n_train=100, n_bench=0, n_retrieval=0, seed=2, image_size=32, n_neg=0,
                spec=spec, progress=False)
    assert not any("mirror_twin_of" in m for m in _samples(tmp_path / "plain"))


def test_mirror_pairs_are_refused_with_negatives() -> None:
    with pytest.raises(InputError, match="positives only"):
        build_world("/nonexistent/never-written", n_train=10, n_neg=1, mirror_pairs=0.5, progress=False)


def test_demo_checks_the_base_reads_pairs_in_order() -> None:
    from tripletclip.demo import load_demo_config
    from tripletclip.demo.base import base_identity

    with pytest.raises(ConfigError, match="base_mirror_pairs"):
        load_demo_config("demo", ["base_mirror_pairs=0.5"])  # the base's shuffle buffer would split the pairs
    cfg = load_demo_config("demo", ["base_mirror_pairs=0.5", "base.data.shuffle_buffer=0"])
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json()
    assert base_identity(cfg, spec, 48)["mirror_pairs"] == 0.5
    plain = load_demo_config("demo", ["base_mirror_pairs=0"])
    assert "mirror_pairs" not in base_identity(plain, spec, 48)  # keys of earlier bases unchanged


def test_probe_scores_against_a_brute_force_loop(tmp_path) -> None:
    """benchmarks/probe_mirror_pairs.py on a random world-cnn saved to disk, against a per-pair loop."""
    import torch

    from tests._scripts import load_benchmark
    from tripletclip.models import create_model

    probe = load_benchmark("probe_mirror_pairs")
    caps, ims = probe.build_pairs(tmp_path / "pairs", 6, world_seed=0)
    assert len(caps) == 12 and all(a != b for a, b in zip(caps[::2], caps[1::2]))
    torch.manual_seed(0)
    bundle = create_model("world-cnn")
    from safetensors.torch import save_file

    save_file(bundle.model.state_dict(), str(tmp_path / "w.safetensors"))
    got = probe.score("world-cnn", str(tmp_path / "w.safetensors"), caps, ims)
    model = create_model("world-cnn", str(tmp_path / "w.safetensors")).model.eval()
    hits_i2t = hits_t2i = 0
    with torch.no_grad():
        for p in range(6):
            x = torch.stack([bundle.preprocess_val(ims[2 * p + k]) for k in range(2)])
            fi = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
            ft = torch.nn.functional.normalize(model.encode_text(bundle.tokenizer(caps[2 * p:2 * p + 2])), dim=-1)
            s = fi @ ft.T
            hits_i2t += int(s[0, 0] > s[0, 1]) + int(s[1, 1] > s[1, 0])
            hits_t2i += int(s[0, 0] > s[1, 0]) + int(s[1, 1] > s[0, 1])
    assert got["pairs"] == 6
    assert got["i2t"] == pytest.approx(100 * hits_i2t / 12) and got["t2i"] == pytest.approx(100 * hits_t2i / 12)
    assert -1.0 <= got["image_cos"] <= 1.0 and -1.0 <= got["text_cos"] <= 1.0
