"""The demo end to end (--quick): world, training at equal compute, world benchmark, results.json, report; and
the aggregation over seeds against a brute-force reference."""
import dataclasses
import json
import statistics

import pytest

from tripletclip.demo import CATEGORIES, run_demo
from tripletclip.demo.run import aggregate


def test_quick_demo_writes_results_in_the_documented_schema(tmp_path):
    run_demo(tmp_path, quick=True, methods=["clip", "tripletclip"], seeds=[0, 1], n_train=384, n_bench=14, jobs=2,
             progress=False, echo=lambda s: None)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["clip", "tripletclip"]  # top-level keys are the method names
    for method, r in results.items():
        assert set(r["categories"]) == set(CATEGORIES)
        assert all(0.0 <= v <= 100.0 for v in r["categories"].values())  # percent
        assert abs(r["mean"] - sum(r["categories"].values()) / 7) < 1e-9  # unweighted mean of the seven
        assert set(r["heldout"]["categories"]) == set(CATEGORIES)
        assert list(r["per_seed"]) == ["0", "1"] and r["steps"] == 12
        assert r["pairs_seen"] == 12 * 32 and r["train_time_s"] > 0
        assert set(r["winoground"]) >= {"text", "image", "group"} and "i2t_r1" in r["retrieval"]
    # equal compute: same steps and positives; only TripletCLIP sees synthetic images
    assert results["clip"]["synthetic_images_seen"] == 0 and results["tripletclip"]["synthetic_images_seen"] > 0
    # the same positives in the same order for every objective (per seed): the runs read identical data
    runs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")}
    assert runs["clip-seed0"]["data"]["sha256"] == runs["tripletclip-seed0"]["data"]["sha256"]
    assert _first_keys(runs["clip-seed0"]["config"]) == _first_keys(runs["tripletclip-seed0"]["config"])
    assert _first_keys(runs["clip-seed0"]["config"]) != _first_keys(runs["clip-seed1"]["config"])
    sims = json.loads((tmp_path / "similarities.json").read_text())
    for method in results:
        n = len(sims[method]["text"])
        assert n > 0 and all(len(sims[method][k]) == n for k in ("vision", "cross_pos", "cross_neg"))
        assert all(-1.0001 <= v <= 1.0001 for v in sims[method]["vision"])  # cosines
    html = (tmp_path / "report.html").read_text()
    assert "tripletclip" in html and html.count("<img") >= 4  # bars, histograms, curves, gallery
    meta = json.loads((tmp_path / "demo_meta.json").read_text())
    assert meta["wall_time_s"] > 0 and meta["world"] and len(meta["runs"]) == 4


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


def test_demo_rejects_unknown_methods(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_demo(tmp_path, quick=True, methods=["clip", "blip"])


def test_aggregate_matches_brute_force():
    def rec(method, seed, base):
        seen = {c: base + i + seed for i, c in enumerate(CATEGORIES)}
        seen["mean"] = statistics.fmean(seen[c] for c in CATEGORIES)
        held = {c: v - 5 for c, v in seen.items()}
        return {"method": method, "seed": seed, "scores": {"seen": seen, "heldout": held},
                "winoground": {"text": 10.0 + seed, "image": 5.0, "group": 2.0}, "retrieval": {"i2t_r1": 1.0, "t2i_r1": 3.0},
                "final": {"real_pairs_seen": 640}, "train_s": 2.0, "eval_s": 1.0, "run_dir": f"{method}-{seed}"}

    results = [rec("clip", s, 50.0) for s in (0, 1, 2)] + [rec("negclip", s, 60.0) for s in (2, 0)]
    table = aggregate(results, ["clip", "negclip", "ceclip"], steps=10)
    assert list(table) == ["clip", "negclip"]  # a method without runs is left out, never reported as zero
    c = table["clip"]
    for i, cat in enumerate(CATEGORIES):
        vals = [50.0 + i + s for s in (0, 1, 2)]
        assert c["categories"][cat] == pytest.approx(sum(vals) / 3)
        assert c["spread"][cat] == pytest.approx((max(vals) - min(vals)) / 2)
        assert c["heldout"]["categories"][cat] == pytest.approx(sum(vals) / 3 - 5)
    assert c["mean"] == pytest.approx(statistics.fmean(c["categories"].values()))
    assert list(c["per_seed"]) == ["0", "1", "2"] and table["negclip"]["seeds"] == [0, 2]
    assert c["winoground"]["text"] == pytest.approx(11.0) and c["train_time_s"] == pytest.approx(6.0)
    assert c["wall_time_s"] == pytest.approx(9.0) and c["pairs_seen"] == 640
