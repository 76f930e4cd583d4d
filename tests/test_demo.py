"""The demo end to end (--quick): world, training at equal compute, world benchmark, results.json, report."""
import json

from tripletclip.demo import CATEGORIES, run_demo


def test_quick_demo_writes_results_in_the_documented_schema(tmp_path):
    run_demo(tmp_path, quick=True, methods=["clip", "tripletclip"], n_train=384, n_bench=14)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["clip", "tripletclip"]  # top-level keys are the method names
    for method, r in results.items():
        assert set(r["categories"]) == set(CATEGORIES)
        assert all(0.0 <= v <= 100.0 for v in r["categories"].values())  # percent
        assert abs(r["mean"] - sum(r["categories"].values()) / 7) < 1e-9  # unweighted mean of the seven
        assert set(r["heldout"]["categories"]) == set(CATEGORIES)
        assert list(r["per_seed"]) == ["0"] and r["steps"] == 12
        assert r["pairs_seen"] == 12 * 32 and r["train_time_s"] > 0
    # equal compute: same steps and positives; only TripletCLIP sees synthetic images
    assert results["clip"]["synthetic_images_seen"] == 0 and results["tripletclip"]["synthetic_images_seen"] > 0
    html = (tmp_path / "report.html").read_text()
    assert "tripletclip" in html and "<img" in html
    meta = json.loads((tmp_path / "demo_meta.json").read_text())
    assert meta["wall_time_s"] > 0 and meta["world"]
