"""The demo's small-pool warm start (demo/warm.py; docs/world_experiments.md sections 14-15): the setting's checks,
its place in the resume plan, and bitwise the same weights as benchmarks/warm_start_trainer.py on a tiny demo."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scripts import load_benchmark
from tripletclip.config.load import ConfigError
from tripletclip.demo import load_demo_config, run_demo
from tripletclip.utils.files import sha256_file

TINY = ["n_transfer=5", "n_bench=14", "n_retrieval=10", "base.train.steps=8"]  # the quick demo, smaller still
WARM = ["warm_start.rows=64", "warm_start.steps=4"]  # quick: 12 steps x batch 32 in blocks of 32


def test_warm_start_is_off_by_default_and_set_by_dotted_overrides():
    assert not load_demo_config("demo").warm_start.on and not load_demo_config("demo-quick").warm_start.on
    warm = load_demo_config("demo-warm")
    assert (warm.warm_start.rows, warm.warm_start.steps, warm.warm_start.seed_offset) == (512, 200, 20000)
    assert warm.train_edit_types == ["swap_att", "replace_rel"] and warm.n_neg == 2
    assert load_demo_config("demo-warm", ["warm_start.rows=1024"]).warm_start.rows == 1024
    assert load_demo_config("demo-quick", WARM).warm_start.on


@pytest.mark.parametrize("overrides, message", [
    (["regime=scratch", "run.train.steps=20", "warm_start.rows=64", "warm_start.steps=4"], "fine-tuning regime only"),
    (["warm_start.rows=32", "warm_start.steps=12"], "warm_start.steps: must lie between 0 and run.train.steps=12"),
    (["warm_start.rows=16", "warm_start.steps=4"], "warm_start.rows: must be >= run.train.batch_size=32"),
    (["warm_start.rows=48", "warm_start.steps=4"], "multiple of run.train.batch_size=32"),
    (["warm_start.rows=-1"], "rows and steps must be >= 0"),
])
def test_unusable_warm_starts_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_demo_config("demo-quick", overrides)
    assert "\n" not in str(err.value)


def test_a_resume_with_other_warm_settings_is_refused():
    from tripletclip.demo.resume import demo_plan, plan_differences
    from tripletclip.demo.run import select_methods

    def plan(overrides):
        cfg = load_demo_config("demo-quick", overrides)
        return demo_plan(cfg, "demo-quick", select_methods(cfg, ["clip"]), overrides, Path("out"))

    assert plan_differences(plan(WARM), plan(WARM)) == []
    assert plan_differences(plan(WARM), plan(["warm_start.rows=128", "warm_start.steps=4"])) == \
        ["warm_start.rows (64 there, 128 now)"]
    assert plan_differences(plan([]), plan(WARM)) == ["warm_start.rows (0 there, 64 now)",
                                                      "warm_start.steps (0 there, 4 now)"]


def _shards_sha(folder: Path) -> list[str]:
    return [sha256_file(p) for p in sorted(folder.glob("train-*.tar"))]


def _weights(run: Path) -> str:
    from tripletclip.models.weights import locate_weights

    return sha256_file(locate_weights(run).file)


def test_the_demo_trains_the_scripts_warm_start_bitwise(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    quiet = {"quick": True, "methods": ["clip"], "seeds": [0], "jobs": 1, "progress": False, "echo": lambda s: None}
    plain, warm, script = tmp_path / "plain", tmp_path / "warm", tmp_path / "script"
    run_demo(plain, overrides=TINY, **quiet)
    trainer = load_benchmark("warm_start_trainer")
    monkeypatch.setattr("sys.argv", ["x", "--demo", str(plain), "--out", str(script), "--methods", "clip",
                                     "--warm-steps", "4", "--warm-n", "64"])
    trainer.main()
    doc = run_demo(warm, overrides=TINY + WARM, **quiet)
    # the same warm world (one builder call) and the same two phases: bitwise the same weights
    assert _shards_sha(warm / "world" / "warm" / "train") == _shards_sha(script / "warm_world" / "train") != []
    assert _shards_sha(warm / "world" / "train") == _shards_sha(plain / "world" / "train")
    assert _weights(warm / "runs" / "clip-seed0-warm") == _weights(script / "runs" / "clip-warm")
    for run in (warm / "runs" / "clip-seed0-warm", script / "runs" / "clip-warm", script / "runs" / "clip-main"):
        assert list(run.rglob("train_state.pt")) == [], run  # both drop the optimiser state of every phase
    assert _weights(warm / "runs" / "clip-seed0") == _weights(script / "runs" / "clip-main") != \
        _weights(plain / "runs" / "clip-seed0")
    # equal compute, both phases recorded; the transfer split holds no text of either training set
    entry = doc["clip"]
    assert entry["pairs_seen"] == 12 * 32 and entry["warm_start"]["phases_by_seed"]["0"]["steps"] == [4, 8]
    meta = json.loads((warm / "demo_meta.json").read_text())
    assert meta["warm_start"]["rows"] == 64 and meta["warm_start"]["world"]["train"]["samples"] == 64
    assert meta["warm_world_s"] > 0 and meta["runs"][0]["warm_start"]["steps"] == [4, 8]
    overlap = meta["transfer_benchmark"]["training_overlap"]
    plain_overlap = json.loads((plain / "demo_meta.json").read_text())["transfer_benchmark"]["training_overlap"]
    assert overlap["training_texts"] > plain_overlap["training_texts"]
    assert overlap["captions_in_training"] == overlap["negative_captions_in_training"] == 0
    assert trainer.warm_overlap(warm / "world" / "warm" / "train", warm / "world" / "transfer")[
        "rows_with_a_warm_text"] == 0
    # a resumed warm demo re-uses its warm world and finished runs, and reports the same numbers
    again = run_demo(warm, overrides=TINY + WARM, resume=True, **quiet)
    resumed = json.loads((warm / "demo_meta.json").read_text())["resume"]
    assert "warm world" in resumed["reused"] and resumed["runs_reused"] == ["clip-seed0", "base-seed0"]
    assert again["clip"]["transfer"] == doc["clip"]["transfer"]


def test_an_interrupted_warm_job_runs_again_from_phase_one(tmp_path):
    """A job killed after its phase 1 (no record) is run afresh: both run folders are cleared of what it wrote,
    the user's files stay; the progress bar counts both phases' steps."""
    from tripletclip.demo.jobs import Job, job_folders, job_steps
    from tripletclip.demo.resume import Resume
    from tripletclip.demo.warm import warm_jobs

    runs = tmp_path / "out" / "runs"
    run = {"model": {"name": "world-cnn", "logit_scale": 100.0}, "loss": {"name": "clip"},
           "data": {"train": str(tmp_path / "out" / "world" / "train" / "train-000000.tar")},
           "train": {"steps": 12, "batch_size": 32, "output_dir": str(runs), "name": "clip-seed0"}}
    first, second = warm_jobs(run, str(tmp_path / "out" / "world" / "warm" / "train" / "train-000000.tar"), 4)
    assert (first["train"]["steps"], second["train"]["steps"]) == (4, 8)
    assert second["model"]["pretrained"] == str(runs / "clip-seed0-warm") and second["model"]["logit_scale"] == 0.0
    assert first["data"]["train"].endswith("warm/train/train-000000.tar") and first["model"]["logit_scale"] == 100.0
    job = Job(key="clip-seed0", method="clip", seed=0, cfg=second, bench_dir="", warm_cfg=first)
    assert job_steps(job) == 12 and job_folders(job) == [runs / "clip-seed0-warm", runs / "clip-seed0"]
    for folder in job_folders(job):
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("")
        (folder / "run.json").write_text("{}")
    (runs / "clip-seed0-warm" / "checkpoints" / "step_00000004").mkdir(parents=True)
    (runs / "clip-seed0-warm" / "checkpoints" / "step_00000004" / "model.safetensors").write_bytes(b"w")
    assert Resume(tmp_path / "out", {}, active=True).partition([job]) == ([], [job])
    assert not (runs / "clip-seed0-warm").exists() or not any((runs / "clip-seed0-warm").iterdir())
    assert not any((runs / "clip-seed0").iterdir())


def test_the_script_refuses_a_warm_started_demo(tmp_path, monkeypatch):
    from tripletclip.errors import InputError

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "results.json").write_text("{}")
    (demo / "demo_meta.json").write_text(json.dumps({"demo_config": {"warm_start": {"rows": 64, "steps": 4}}}))
    monkeypatch.setattr("sys.argv", ["x", "--demo", str(demo), "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="warm-started already"):
        load_benchmark("warm_start_trainer").main()
