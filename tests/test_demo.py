"""The demo end to end (--quick): world, CLIP base (fine-tuning regime), every objective at equal compute, world
benchmark, results.json, report; the presets; aggregation and paired differences against brute force."""
import dataclasses
import json
import math
import statistics

import pytest

from tripletclip.demo import CATEGORIES, load_demo_config, objectives, preset_names, run_demo
from tripletclip.demo import stats
from tripletclip.errors import InputError


def test_quick_demo_writes_results_in_the_documented_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    run_demo(tmp_path / "out", quick=True, methods=["clip", "tripletclip"], seeds=[0, 1], jobs=2, progress=False,
             echo=lambda s: None)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert json.loads((out / "demo_meta.json").read_text())["preset"] == "demo-quick"  # the preset actually run
    assert [k for k in results if k not in ("regime", "base", "paired", "units")] == ["clip", "tripletclip"]
    assert results["regime"] == "finetune"
    for method, r in list(results.items()):
        if method in ("regime", "paired", "units"):
            continue
        assert set(r["categories"]) == set(CATEGORIES)
        assert all(0.0 <= v <= 100.0 for v in r["categories"].values())  # percent
        assert abs(r["mean"] - sum(r["categories"].values()) / 7) < 1e-9  # unweighted mean of the seven
        assert set(r["heldout"]["categories"]) == set(CATEGORIES)
        assert set(r["winoground"]) >= {"text", "image", "group"} and "i2t_r1" in r["retrieval"]
    for method in ("clip", "tripletclip"):
        r = results[method]
        assert list(r["per_seed"]) == ["0", "1"] and r["steps"] == 12
        assert r["pairs_seen"] == 12 * 32 and r["train_time_s"] > 0
    assert list(results["base"]["per_seed"]) == ["0"]  # the base is evaluated once, untrained further
    # paired per-seed differences against CLIP, checked against the per-seed means
    d = results["paired"]["tripletclip"]["clip"]["mean"]
    per_seed = {s: results["tripletclip"]["per_seed"][s]["mean"] - results["clip"]["per_seed"][s]["mean"] for s in "01"}
    assert d["per_seed"] == pytest.approx(per_seed) and d["mean"] == pytest.approx(statistics.fmean(per_seed.values()))
    # equal compute: same steps, positives and starting weights; only TripletCLIP sees synthetic images
    assert results["clip"]["synthetic_images_seen"] == 0 and results["tripletclip"]["synthetic_images_seen"] > 0
    runs = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/run.json")}
    assert runs["clip-seed0"]["data"]["sha256"] == runs["tripletclip-seed0"]["data"]["sha256"]
    base_path = runs["clip-seed0"]["config"]["model"]["pretrained"]
    assert base_path and base_path == runs["tripletclip-seed1"]["config"]["model"]["pretrained"]
    assert str(tmp_path / "cache") in base_path  # the base lives in the cache, keyed by world and settings
    assert _first_keys(runs["clip-seed0"]["config"]) == _first_keys(runs["tripletclip-seed0"]["config"])
    # batches without mutual swaps (the default): the blocks are fixed by the world and only the shard order
    # changes with the seed; the quick world is one shard, so both seeds read the same blocks in the same order
    assert _first_keys(runs["clip-seed0"]["config"]) == _first_keys(runs["clip-seed1"]["config"])
    assert runs["clip-seed0"]["config"]["train"]["seed"] != runs["clip-seed1"]["config"]["train"]["seed"]
    sims = json.loads((out / "similarities.json").read_text())
    for method in ("clip", "tripletclip"):
        n = len(sims[method]["text"])
        assert n > 0 and all(len(sims[method][k]) == n for k in ("vision", "cross_pos", "cross_neg"))
        assert all(-1.0001 <= v <= 1.0001 for v in sims[method]["vision"])  # cosines
    html = (out / "report.html").read_text()
    assert "tripletclip" in html and html.count("<img") >= 4
    meta = json.loads((out / "demo_meta.json").read_text())
    assert meta["wall_time_s"] > 0 and meta["world"] and len(meta["runs"]) == 5 and meta["base"]["source"]


def _first_keys(cfg_dict, batches=3):
    """Sample keys of a run's first batches, read through the trainer's own loader with the run's config."""
    from tripletclip.config.load import config_from_dict
    from tripletclip.data.loader import build_train_loader
    from tripletclip.models import create_model

    cfg = config_from_dict(cfg_dict, where="test")
    use_nt, use_ni = {"clip": (False, False), "tripletclip": (True, True)}[cfg.loss.name]
    data = dataclasses.replace(cfg.data, use_neg_text=use_nt, use_neg_image=use_ni)
    bundle = create_model(cfg.model.name)
    loader = iter(build_train_loader(data, bundle.preprocess_train, bundle.tokenizer, batch_size=cfg.train.batch_size,
                                     seed=cfg.train.seed, context_length=32))
    return [next(loader)["key"] for _ in range(batches)]


def test_demo_rejects_unknown_objectives(tmp_path):
    with pytest.raises(InputError, match="unknown objective"):
        run_demo(tmp_path, quick=True, methods=["clip", "blip"])


def test_every_registered_objective_is_in_the_demo():
    from tripletclip.losses import LOSSES

    assert sorted(objectives()) == sorted(LOSSES.names()) and objectives()[0] == "clip"


@pytest.mark.parametrize("name", preset_names())
def test_shipped_presets_load_and_build_run_configs(name):
    from tripletclip.config import config_from_dict

    cfg = load_demo_config(name)
    assert cfg.world_seed != 0  # seed 0 is the development seed: reported numbers never come from it
    config_from_dict(cfg.run_dict(), where=name)
    base = config_from_dict(cfg.base_dict(), where=name)
    assert base.loss.name == "clip"


def test_base_key_depends_on_world_and_settings():
    from tripletclip.demo.base import base_identity, base_key
    from tripletclip.world import spec_preset

    cfg = load_demo_config("demo")
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json()
    key = base_key(base_identity(cfg, spec, 48))
    assert key == base_key(base_identity(load_demo_config("demo"), spec, 48))  # deterministic
    other_seed = dataclasses.replace(cfg, world_seed=cfg.world_seed + 1)
    assert key != base_key(base_identity(other_seed, spec, 48))
    longer = load_demo_config("demo", ["base.train.steps=7"])
    assert key != base_key(base_identity(longer, spec, 48))


def _record(method, seed, level):
    seen = {c: level + i + seed for i, c in enumerate(CATEGORIES)}
    seen["mean"] = statistics.fmean(seen[c] for c in CATEGORIES)
    held = {c: v - 5 for c, v in seen.items()}
    return {"method": method, "seed": seed, "scores": {"seen": seen, "heldout": held},
            "winoground": {"text": 10.0 + seed, "image": 5.0, "group": 2.0}, "retrieval": {"i2t_r1": 1.0, "t2i_r1": 3.0},
            "final": {"real_pairs_seen": 640}, "train_s": 2.0, "eval_s": 1.0, "run_dir": f"{method}-{seed}"}


def test_method_entry_matches_brute_force():
    c = stats.method_entry([_record("clip", s, 50.0) for s in (2, 0, 1)], steps=10)
    for i, cat in enumerate(CATEGORIES):
        vals = [50.0 + i + s for s in (0, 1, 2)]
        assert c["categories"][cat] == pytest.approx(sum(vals) / 3)
        assert c["spread"][cat] == pytest.approx((max(vals) - min(vals)) / 2)
        assert c["heldout"]["categories"][cat] == pytest.approx(sum(vals) / 3 - 5)
    assert c["mean"] == pytest.approx(statistics.fmean(c["categories"].values()))
    assert list(c["per_seed"]) == ["0", "1", "2"] and c["seeds"] == [0, 1, 2]
    assert c["winoground"]["text"] == pytest.approx(11.0) and c["train_time_s"] == pytest.approx(6.0)
    assert c["wall_time_s"] == pytest.approx(9.0) and c["pairs_seen"] == 640


def test_paired_differences_and_the_real_rule():
    per = {"clip": {s: stats.run_metrics(_record("clip", s, 50.0)) for s in (0, 1, 2)},
           "negclip": {s: stats.run_metrics(_record("negclip", s, 50.0 + 20 * (s != 1) + 1)) for s in (0, 1, 2)}}
    rows = {m: [100] * 7 if m in ("mean", "heldout_mean") else [100] for m in per["clip"][0]}
    p = stats.paired(per, rows)
    d = p["negclip"]["clip"]["mean"]
    assert d["per_seed"] == pytest.approx({"0": 21.0, "1": 1.0, "2": 21.0}) and d["same_sign"]
    # brute force: 1.96 x sqrt(sum over the 7 parts of (pa(1-pa) + pb(1-pb)) / n) / 7 at the seed-mean accuracies
    pa, pb = (statistics.fmean(per[m][s]["mean"] for s in (0, 1, 2)) / 100 for m in ("negclip", "clip"))
    want = 196 * math.sqrt(7 * (pa * (1 - pa) + pb * (1 - pb)) / 100) / 7
    assert d["sampling_error"] == pytest.approx(want, rel=1e-6)
    assert d["real"] == (abs(d["mean"]) > want)
    assert not p["negclip"]["clip"]["wino_text"]["same_sign"]  # identical values: no sign, never real
    assert not p["negclip"]["clip"]["wino_text"]["real"]
    assert "clip" not in p["clip"] and "negclip" not in p["negclip"]  # never against itself
    assert p["clip"]["negclip"]["mean"]["mean"] == pytest.approx(-d["mean"])


def test_shipped_base_keeps_every_token_of_the_world_and_round_trips(tmp_path, monkeypatch):
    """The compact base stores only the token rows world captions use: captions of every edit type and form
    encode exactly as with the full model, and install_shipped rebuilds it into the cache."""
    import torch
    from safetensors.torch import save_file

    from tripletclip.demo import base as base_mod
    from tripletclip.models import create_model
    from tripletclip.world import Rand, WorldGenerator, spec_preset

    torch.manual_seed(0)
    bundle = create_model("world-cnn")
    keep = set(base_mod.world_token_ids(bundle.tokenizer))
    gen, rng = WorldGenerator(spec_preset("full")), Rand(3)  # the full grammar: every word the world can say
    texts = []
    for _ in range(300):
        t = gen.triplet(rng, n_neg=2)
        texts += [t.caption.text] + [n.text for n in t.negatives]
    assert set(bundle.tokenizer(texts).flatten().tolist()) <= keep
    # a fake cached base -> ship -> install: features of world captions are unchanged
    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    cfg = load_demo_config("demo")
    identity = base_mod.base_identity(cfg, spec_preset("demo").to_json(), 48)
    key = base_mod.base_key(identity)
    cached = tmp_path / "cached"
    cached.mkdir()
    save_file({k: v.contiguous() for k, v in bundle.model.state_dict().items()}, str(cached / base_mod.BASE_FILE))
    (cached / "base.json").write_text(json.dumps({"key": key, "weights_sha256": "x", "config": {"model": {"name": "world-cnn"}}}))
    monkeypatch.setattr(base_mod, "shipped_dir", lambda: tmp_path / "bases")
    shipped = base_mod.ship_base(cached)
    assert shipped.stat().st_size < 2_000_000  # about a megabyte, not the 13.7 MB of the full embedding
    folder = base_mod.install_shipped(identity)
    assert folder is not None and base_mod.cached_base(identity) == folder
    restored = create_model("world-cnn", str(folder / base_mod.BASE_FILE)).model.eval()
    tokens = bundle.tokenizer(texts[:64])
    with torch.no_grad():
        assert torch.allclose(restored.encode_text(tokens), bundle.model.eval().encode_text(tokens), atol=1e-6)


def test_a_scratch_demo_finishes_its_tables_and_report(tmp_path, monkeypatch):
    """The scratch regime has no base (results.json "base": null): its transfer tables and report must still be
    written. The registered demo-scratch run on world seed 2 crashed at its last table on that null."""
    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    lines: list[str] = []
    run_demo(tmp_path / "out", preset="demo-scratch", methods=["clip", "negclip"], seeds=[0], jobs=1,
             progress=False, echo=lines.append,
             overrides=["n_bench=28", "n_retrieval=40", "n_transfer=20", "run.train.steps=8",
                        "run.train.batch_size=32", "run.optim.warmup_steps=2", "run.train.log_every=4"])
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["regime"] == "scratch" and results["base"] is None
    assert results["clip"]["transfer"]["rows"] and results["negclip"]["transfer"]["rows"]
    text = "\n".join(lines)
    assert "world transfer benchmark, split 'transfer'" in text
    assert not any(line.startswith("base ") for line in text.splitlines())  # no base row in the scratch regime
    assert (out / "report.html").is_file() and "[demo] wall time" in lines[-1]
