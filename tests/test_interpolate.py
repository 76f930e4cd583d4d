"""WiSE-FT (models/interpolate.py): alpha 0 is the base and alpha 1 the fine-tuned run, bit for bit, through
``tripletclip export --interpolate``; values in between are the weight-space line; bad requests are one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from tripletclip.cli import main
from tripletclip.config import load_config
from tripletclip.errors import InputError
from tripletclip.models.interpolate import interpolate_state, sweep
from tripletclip.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, tiny_weights) -> Path:
    """3 steps of NegCLIP from the tiny base weights on the synthetic source."""
    out = tmp_path_factory.mktemp("wise")
    cfg = load_config(None, ["data.type=synthetic", "data.train=48", "data.workers=0", "model.name=test-vit-tiny",
                             f"model.pretrained={tiny_weights}", "loss.name=negclip", "train.batch_size=8",
                             "train.steps=3", "train.save_every=3", "train.log_every=3", f"train.output_dir={out}",
                             "train.name=tuned", "train.progress=false", "train.threads=1", "optim.lr=1e-3",
                             "optim.warmup_steps=1"])
    return Path(train(cfg)["run_dir"])


def export(run: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["export", str(run), "--format", "open_clip", "--out", str(out), *extra])


def test_end_points_are_exact_and_the_middle_is_the_line(tuned_run, tiny_weights, tmp_path):
    base = load_file(str(tiny_weights))
    tuned = load_file(str(tuned_run / "checkpoints" / "step_00000003" / "model.safetensors"))
    got = {}
    for alpha in ("0", "1", "0.25"):
        res = export(tuned_run, tmp_path / alpha, "--interpolate", alpha, "--base", str(tiny_weights))
        assert res.exit_code == 0, res.output
        got[alpha] = load_file(str(tmp_path / alpha / "open_clip_model.safetensors"))
    assert got["0"].keys() == base.keys() == tuned.keys()
    moved = [k for k in tuned if not torch.equal(tuned[k], base[k])]
    assert moved, "fine-tuning changed nothing: the test would not see a wrong end point"
    for k in tuned:
        assert torch.equal(got["0"][k], base[k]), k
        assert torch.equal(got["1"][k], tuned[k]), k
        if tuned[k].is_floating_point():
            torch.testing.assert_close(got["0.25"][k], 0.75 * base[k] + 0.25 * tuned[k], rtol=1e-6, atol=1e-7)


def test_sweep_yields_one_model_per_alpha(tuned_run, tiny_weights):
    base = load_file(str(tiny_weights))
    seen = []
    for alpha, bundle in sweep(tuned_run, str(tiny_weights), [0.0, 0.5, 0.0]):
        state = bundle.model.state_dict()
        seen.append(alpha)
        assert bundle.identity["wise_ft"]["alpha"] == alpha
        if alpha == 0.0:  # also after an alpha in between: the sweep never drifts from its inputs
            assert all(torch.equal(state[k], base[k]) for k in base)
    assert seen == [0.0, 0.5, 0.0]


def test_refusals_are_one_line(tuned_run, tiny_weights, tmp_path):
    res = export(tuned_run, tmp_path / "a", "--interpolate", "0.5")
    assert res.exit_code != 0 and "--interpolate needs --base" in res.output
    res = export(tuned_run, tmp_path / "b", "--interpolate", "1.5", "--base", str(tiny_weights))
    assert res.exit_code != 0 and "alpha must be in [0, 1]" in res.output
    with pytest.raises(InputError, match="different tensors"):
        interpolate_state({"a": torch.zeros(2)}, {"b": torch.zeros(2)}, 0.5)
    with pytest.raises(InputError, match="shape"):
        interpolate_state({"a": torch.zeros(2)}, {"a": torch.zeros(3)}, 0.5)


def test_sweep_points_are_changes_against_the_base_on_the_world(tuned_run, tiny_weights, tmp_path):
    from tripletclip.demo.jobs import evaluate_bundle
    from tripletclip.models import create_model, load_run_model
    from tripletclip.report.tradeoff import sweep_points
    from tripletclip.world import build_world

    build_world(tmp_path / "w", n_train=4, n_bench=4, n_retrieval=8, seed=2, image_size=32, progress=False)
    bench = tmp_path / "w" / "bench"
    points = sweep_points(str(tuned_run), str(tiny_weights), [1.0], str(bench), method="negclip")
    assert [p["alpha"] for p in points] == [0.0, 1.0]  # the base is always a point
    assert points[0]["compositional_change"] == 0.0 and points[0]["zeroshot_change"] == 0.0
    base = evaluate_bundle(create_model("test-vit-tiny", str(tiny_weights)), bench, sim_rows=1)
    tuned = evaluate_bundle(load_run_model(tuned_run), bench, sim_rows=1)
    assert points[-1]["compositional_change"] == pytest.approx(tuned["scores"]["seen"]["mean"] - base["scores"]["seen"]["mean"])
    assert points[-1]["zeroshot_change"] == pytest.approx(tuned["zeroshot"]["mean"] - base["zeroshot"]["mean"])


def test_report_wise_sweeps_a_demo_folder_and_draws_it(tuned_run, tmp_path):
    """`tripletclip report DEMO --wise 0.5`: every method's seed-0 run against the base it records, scored on the
    demo's own benchmark; wise_sweep.json holds the points and the trade-off figure's caption names them."""
    import json
    import shutil

    from tripletclip.world import build_world

    demo = tmp_path / "demo"
    build_world(demo / "world", n_train=4, n_bench=4, n_retrieval=8, seed=2, image_size=32, progress=False)
    shutil.copytree(tuned_run, demo / "runs" / "negclip-seed0")
    entry = {"mean": 60.0, "categories": {"replace_obj": 60.0}, "per_seed": {"0": {"mean": 60.0}},
             "zeroshot": {"mean": 40.0, "per_seed": {"0": 40.0}}}
    (demo / "results.json").write_text(json.dumps({"negclip": entry, "base": {**entry, "mean": 58.0}}))
    r = CliRunner().invoke(main, ["report", str(demo), "--wise", "0.5,1"])
    assert r.exit_code == 0, r.output
    sweep = json.loads((demo / "wise_sweep.json").read_text())
    assert sweep["alphas"] == [0.0, 0.5, 1.0] and [p["alpha"] for p in sweep["points"]] == [0.0, 0.5, 1.0]
    assert {p["method"] for p in sweep["points"]} == {"negclip"} and sweep["points"][0]["zeroshot_change"] == 0.0
    assert "WiSE-FT interpolations" in (demo / "report.html").read_text()
    bad = CliRunner().invoke(main, ["report", str(demo), "--wise", "1.5"])
    assert bad.exit_code == 1 and "must lie in [0, 1]" in bad.output
    none = CliRunner().invoke(main, ["report", str(demo), "--wise", "0.5", "--wise-seed", "3"])
    assert none.exit_code == 1 and "negclip-seed3" in none.output
