"""benchmarks/warm_start_summary.py (stage 8's tables) against a hand computation, and warm_start_trainer.py's
argument checks (docs/preregistration.md, stage 8)."""
from __future__ import annotations

import json
import math

import pytest

from _scripts import load_benchmark

COUNTS = {c: {"transfer": 300, "paraphrase": 300} for c in
          ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")}


def _cats(rel: float, obj: float, att: float) -> dict[str, float]:
    return {"replace_obj": 90.0, "replace_att": 99.0, "replace_rel": rel, "swap_obj": obj, "swap_att": att}


def _fixture(tmp_path):
    demo = tmp_path / "r1"
    demo.mkdir()
    (demo / "demo_meta.json").write_text(json.dumps({"transfer_benchmark": {"counts": COUNTS}}))
    r1 = {"clip": {0: _cats(50, 50, 52), 1: _cats(52, 54, 50)}, "negclip": {0: _cats(50, 70, 72), 1: _cats(48, 72, 70)}}
    (demo / "results.json").write_text(json.dumps(
        {m: {"transfer": {"per_seed": {str(s): v for s, v in seeds.items()}}} for m, seeds in r1.items()}))
    warm = {0: {"clip": _cats(49, 51, 51), "negclip": _cats(80, 68, 70)},
            1: {"clip": _cats(51, 53, 49), "negclip": _cats(76, 70, 68)}}
    folders = []
    for seed, methods in warm.items():
        out = tmp_path / f"warm_s{seed}"
        out.mkdir()
        (out / "results.json").write_text(json.dumps({"args": {"seed": seed},
                                                      "methods": {m: {"transfer": v} for m, v in methods.items()}}))
        folders.append(out)
    return demo, folders


def test_summary_per_seed_means_and_the_paired_rule(tmp_path, capsys, monkeypatch):
    summary = load_benchmark("warm_start_summary")
    demo, warm = _fixture(tmp_path)
    monkeypatch.setattr("sys.argv", ["x", "--demo", str(demo), "--warm", *map(str, warm)])
    summary.main()
    out = capsys.readouterr().out
    # NegCLIP warm - R1 on replace-rel: per seed +30 and +28, mean +29; the error of a difference of two means of
    # two seeds, each on 300 rows (binomial variance at the means 78 and 49), times 1.96
    se = 1.96 * math.sqrt((0.78 * 0.22 + 0.49 * 0.51) / 300 / 2)
    line = next(ln for ln in out.splitlines() if ln.startswith("negclip warm - R1"))
    assert "replace_rel +29.0" in line and "(+30.0, +28.0) real" in line
    assert f"± {100 * se:.1f}" in line
    # the swap mean: per seed -2 and -2 on 600 rows: one sign but inside the error, so not real
    assert "swap_mean -2.0" in line and line.rstrip().endswith("(-2.0, -2.0)")
    clip = next(ln for ln in out.splitlines() if ln.startswith("clip warm - R1"))
    assert "real" not in clip  # -1 and -1 on replace-rel: inside the error
    table = [ln.split() for ln in out.splitlines() if ln.startswith("negclip")]
    assert ["negclip", "warm", "mean", "78.0", "69.0", "69.0", "69.0", "90.0"] in table


def test_trainer_script_refuses_a_missing_run(tmp_path, monkeypatch):
    trainer = load_benchmark("warm_start_trainer")
    demo, _ = _fixture(tmp_path)
    (demo / "world").mkdir()
    (demo / "world" / "world.json").write_text("{}")
    monkeypatch.setattr("sys.argv", ["x", "--demo", str(demo), "--out", str(tmp_path / "o"), "--control",
                                     "--methods", "clip"])
    monkeypatch.setattr(trainer, "warm_overlap", lambda *a: {"rows": 0, "rows_with_a_warm_text": 0})
    from tripletclip.errors import InputError

    with pytest.raises(InputError, match="no such demo run"):
        trainer.main()


def _entry(rel: float, swap: float, gain: float = 0.0, real: bool = False) -> dict:
    return {"transfer": {"categories": {"replace_rel": rel}, "swap_mean": swap,
                         "paired": {"clip": {"swap_mean": {"mean": gain, "real": real}}}}}


@pytest.mark.parametrize("clip_swap,gains,rels,want", [
    (60.0, (20.0, 16.0, 15.0), (80.0, 76.0, 75.0), (True, True, True)),  # every bound met, exactly at 15 / 75
    (65.1, (20.0, 16.0, 15.0), (80.0, 76.0, 75.0), (False, True, True)),  # CLIP binds: 65 is the bound
    (60.0, (20.0, 14.9, 30.0), (80.0, 76.0, 75.0), (True, False, True)),  # one gain short of 15
    (60.0, (20.0, 16.0, 15.0), (80.0, 74.9, 90.0), (True, True, False)),  # one objective short of 75
])
def test_demo_targets_reads_item_2_bounds(clip_swap, gains, rels, want):
    targets = load_benchmark("demo_targets").targets
    methods = ("negclip", "ceclip", "tripletclip")
    results = {"clip": _entry(50.0, clip_swap), "base": _entry(49.0, 50.0), "regime": "finetune",
               **{m: _entry(r, clip_swap + g, g, True) for m, g, r in zip(methods, gains, rels)}}
    got = targets(results)
    assert (got["bag of words"][0], got["cure"][0], got["relations"][0]) == want
    results["negclip"]["transfer"]["paired"]["clip"]["swap_mean"]["real"] = False  # a gain that is not real
    assert targets(results)["cure"][0] is False
    del results["ceclip"]  # the relation target needs all three objectives
    assert targets(results)["relations"][0] is False


def test_escape_in_loss_averages_the_last_records_and_reads_phase_one(tmp_path):
    escape = load_benchmark("escape_in_loss")
    run, warm = tmp_path / "runs" / "tripletclip-seed0", tmp_path / "runs" / "tripletclip-seed0-warm"
    run.mkdir(parents=True)
    warm.mkdir()
    losses = [3.0, 2.0, 1.0, 0.5]  # the last 2 records average to 0.75, the last 3 to 7/6
    run.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"step": 10 * (i + 1), "loss/loss": v, "loss/negclip_real": v / 2, "lr": 1.0}) + "\n"
        for i, v in enumerate(losses)))
    warm.joinpath("metrics.jsonl").write_text(json.dumps({"step": 5, "loss/loss": 9.0, "logit_scale": 80.0}) + "\n"
                                              + json.dumps({"step": 10, "loss/loss": 4.0, "logit_scale": 90.0}) + "\n")
    row = escape.run_row(tmp_path, "tripletclip", "0", 77.0, last=2)
    assert row["loss/loss"] == pytest.approx(0.75) and row["loss/negclip_real"] == pytest.approx(0.375)
    assert "lr" not in row and (row["phase1_loss"], row["phase1_logit_scale"]) == (4.0, 90.0)
    assert escape.run_row(tmp_path, "tripletclip", "0", 77.0, last=3)["loss/loss"] == pytest.approx(7 / 6)
    warm.joinpath("metrics.jsonl").unlink()
    warm.rmdir()
    assert "phase1_loss" not in escape.run_row(tmp_path, "tripletclip", "0", 77.0, last=2)  # no warm start
