"""`tripletclip demo --resume` (demo/resume.py): an interrupted demo completes with only its unfinished runs
trained and the results of an uninterrupted demo; a demo with other settings is refused in one line; the folder
of an earlier demo is refused without --resume or --overwrite; records are verified before they are re-used."""
import dataclasses
import json

import pytest

from tripletclip.demo import run_demo
from tripletclip.errors import ConflictError, InputError

# demo-quick shrunk further: one seed, two objectives, 8 steps, a tiny benchmark and transfer benchmark, a 4-step base
KW = dict(quick=True, methods=["clip", "negclip"], seeds=[0], jobs=2, progress=False,
          overrides=["n_bench=14", "n_retrieval=20", "n_transfer=4", "epochs=1", "run.train.steps=8",
                     "run.train.batch_size=16", "run.train.log_every=2", "base.train.steps=4",
                     "base.optim.warmup_steps=1"])
TIMES = ("train_time_s", "eval_time_s", "wall_time_s", "run_dirs")  # differ between two demos: not compared


def _numbers(doc):
    """results.json without timings and run folders (two demos in two folders)."""
    if isinstance(doc, dict):
        return {k: _numbers(v) for k, v in doc.items() if k not in TIMES}
    if isinstance(doc, list):
        return [_numbers(v) for v in doc]
    return doc


@pytest.mark.slow  # three small demos, a resume of the finished one and four refusals: ~55 s on 2 busy cores
def test_an_interrupted_demo_resumes_training_only_its_unfinished_runs(tmp_path, monkeypatch):
    from tripletclip.demo import run as run_mod

    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    real = run_mod.execute
    trained: list[list[str]] = []

    def recording(jobs, *args, **kwargs):
        trained.append(sorted(j.key for j in jobs))
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(run_mod, "execute", recording)
    lines: list[str] = []
    ref = run_demo(tmp_path / "ref", resume=True, echo=lines.append, **KW)  # --resume on a new folder: a demo
    assert not any("resuming" in line for line in lines) and trained == [["base-seed0", "clip-seed0", "negclip-seed0"]]

    def interrupted(jobs, workers, runs_dir, progress=True):
        """clip-seed0 and the base's evaluation finish; negclip-seed0 is killed partway (Ctrl-C)."""
        real([j for j in jobs if j.key != "negclip-seed0"], workers, runs_dir, progress)
        partial = runs_dir / "negclip-seed0"
        (partial / "checkpoints").mkdir(parents=True)
        (partial / "run.json").write_text("{}")
        (partial / "metrics.jsonl").write_text('{"step": 2, "loss/loss": 3.0}\n')
        (partial / "my_notes.txt").write_text("mine")  # the user's
        (runs_dir / "clip-seed0" / "my_notes.txt").write_text("mine")  # the user's, in a finished run: kept
        raise KeyboardInterrupt

    out = tmp_path / "out"
    monkeypatch.setattr(run_mod, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, echo=lines.append, **KW)
    assert not (out / "results.json").exists() and (out / "demo_plan.json").is_file()
    monkeypatch.setattr(run_mod, "execute", recording)
    trained.clear()
    # the old refusal stays without --resume, and now names it; other settings are refused, naming them
    with pytest.raises(ConflictError, match=r"already holds an unfinished demo \(preset demo-quick\); pass --resume"):
        run_demo(out, echo=lines.append, **KW)
    with pytest.raises(ConflictError, match=r"holds another demo: seeds \(\[0\] there, \[1\] now\); resume with its "
                                            r"settings \(it was started as: --preset demo-quick n_bench=14"):
        run_demo(out, resume=True, echo=lines.append, **{**KW, "seeds": [1]})
    with pytest.raises(ConflictError, match=r"run\.train\.steps \(8 there, 9 now\)"):
        run_demo(out, resume=True, echo=lines.append, **{**KW, "overrides": [*KW["overrides"], "run.train.steps=9"]})
    # the unfinished run starts afresh: not beside the user's file, refused before training, naming it
    with pytest.raises(ConflictError, match=r"negclip-seed0: holds files the demo did not write \(my_notes.txt\)"):
        run_demo(out, resume=True, echo=lines.append, **KW)
    assert trained == [] and (out / "runs" / "negclip-seed0" / "metrics.jsonl").is_file()
    (out / "runs" / "negclip-seed0" / "my_notes.txt").rename(tmp_path / "my_notes.txt")
    lines.clear()
    resumed = run_demo(out, resume=True, echo=lines.append, **KW)
    assert trained == [["negclip-seed0"]]  # only the unfinished run trains again
    assert "[demo] resuming: world, transfer benchmark, base, 2 of 3 runs reused" in lines
    assert (out / "runs" / "clip-seed0" / "my_notes.txt").read_text() == "mine"
    assert _numbers(resumed) == _numbers(ref) and _numbers(json.loads((out / "results.json").read_text())) == \
        _numbers(json.loads((tmp_path / "ref" / "results.json").read_text()))
    assert json.loads((out / "similarities.json").read_text()) == json.loads((tmp_path / "ref" / "similarities.json")
                                                                             .read_text())
    meta = json.loads((out / "demo_meta.json").read_text())["resume"]
    assert meta["resumed"] and meta["runs_reused"] == ["clip-seed0", "base-seed0"]
    # a finished demo resumed: everything re-used, the results written again
    lines.clear()
    again = run_demo(out, resume=True, echo=lines.append, **KW)
    assert trained == [["negclip-seed0"]] and "[demo] resuming: world, transfer benchmark, base, 3 of 3 runs reused" \
        in lines and _numbers(again) == _numbers(ref)


def _job(tmp_path, name="clip-seed0", steps=8):
    from tripletclip.demo.jobs import Job

    runs = tmp_path / "out" / "runs"
    return Job(key=name, method="clip", seed=0, bench_dir=str(tmp_path / "out" / "world" / "bench"),
               cfg={"model": {"name": "world-cnn", "pretrained": None}, "loss": {"name": "clip"},
                    "data": {"train": f"{tmp_path / 'out' / 'world' / 'train' / 'train-000000.tar'}"},
                    "train": {"steps": steps, "output_dir": str(runs), "name": name}})


def _finished(tmp_path, job, sha=None):
    """A finished job's run folder: weights, checkpoint meta and its record, as run_job leaves them."""
    from tripletclip.demo.jobs import record_path, write_record
    from tripletclip.utils.files import sha256_file

    ckpt = record_path(job).parent / "checkpoints" / "step_00000008"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (ckpt / "meta.json").write_text(json.dumps({"step": 8, "config": job.cfg}))
    (record_path(job).parent / "run.json").write_text("{}")
    write_record(job, {"key": job.key, "scores": {"seen": {"mean": 50.0}},
                       "weights_sha256": sha or sha256_file(ckpt / "model.safetensors")})


def _state(out, active=True):
    from tripletclip.demo.resume import Resume

    return Resume(out, {}, active=active)


def test_a_record_is_reused_only_for_the_same_job_and_weights(tmp_path):
    same, other, damaged, missing = (_job(tmp_path, n) for n in ("clip-seed0", "clip-seed1", "clip-seed2", "clip-seed3"))
    _finished(tmp_path, same)
    _finished(tmp_path, _job(tmp_path, "clip-seed1", steps=9))  # recorded with other settings
    _finished(tmp_path, damaged, sha="0" * 64)  # the weights changed since they were evaluated
    (tmp_path / "out" / "runs" / "clip-seed3").mkdir()
    (tmp_path / "out" / "runs" / "clip-seed3" / "metrics.jsonl").write_text("")  # killed before its record
    (tmp_path / "out" / "runs" / "clip-seed0" / "mine.txt").write_text("mine")  # beside a finished run: fine
    state = _state(tmp_path / "out")
    reused, todo = state.partition([same, other, damaged, missing])
    assert [r["key"] for r in reused] == ["clip-seed0"] and [j.key for j in todo] == ["clip-seed1", "clip-seed2",
                                                                                   "clip-seed3"]
    assert reused[0]["run_dir"] == str(tmp_path / "out" / "runs" / "clip-seed0")
    assert state.notes == ["clip-seed1 is run again: its recorded job differs from this demo's",
                           "clip-seed2 is run again: its weights are missing or differ from those it evaluated"]
    # a job run again starts from a folder cleared of what the demo wrote
    assert [list((tmp_path / "out" / "runs" / f"clip-seed{s}").iterdir()) for s in (1, 2, 3)] == [[], [], []]
    # nothing is re-used when not resuming, or once the world (or transfer benchmark, or base) was rebuilt
    fresh, rebuilt = _job(tmp_path, "clip-seed4"), _job(tmp_path, "clip-seed5")
    _finished(tmp_path, fresh)
    _finished(tmp_path, rebuilt)
    assert _state(tmp_path / "out", active=False).partition([fresh]) == ([], [fresh])
    state = _state(tmp_path / "out")
    state.runs_ok = False
    assert state.partition([rebuilt]) == ([], [rebuilt])
    assert list((tmp_path / "out" / "runs" / "clip-seed5").iterdir()) == []


def test_a_moved_demo_folder_still_matches_its_records(tmp_path):
    job = _job(tmp_path)
    _finished(tmp_path, job)
    (tmp_path / "out").rename(tmp_path / "moved")
    moved = _job(tmp_path / "x")  # the same job, its paths under the folder's new name
    moved = dataclasses.replace(moved, bench_dir=str(tmp_path / "moved" / "world" / "bench"), cfg=json.loads(
        json.dumps(moved.cfg).replace(str(tmp_path / "x" / "out"), str(tmp_path / "moved"))))
    reused, todo = _state(tmp_path / "moved").partition([moved])
    assert [r["key"] for r in reused] == ["clip-seed0"] and todo == []


def test_plan_differences_name_every_changed_setting():
    from tripletclip.demo.resume import plan_differences

    plan = {"preset": "demo", "methods": ["clip"], "seeds": [0], "world_seed": 1, "code_version": {"git_commit": "a"},
            "demo_config": {"run": {"train": {"steps": 8, "batch_size": 16}}, "n_bench": 14}, "overrides": ["x=1"]}
    assert plan_differences(plan, json.loads(json.dumps(plan))) == []
    assert plan_differences(plan, {**plan, "overrides": []}) == []  # the same resolved config: the same demo
    now = {**plan, "preset": "demo-long", "code_version": {"git_commit": "b"},
           "demo_config": {"run": {"train": {"steps": 9}}, "n_bench": 14, "n_transfer": 4}}
    assert plan_differences(plan, now) == [
        "preset (demo there, demo-long now)", "run.train.steps (8 there, 9 now)",
        "run.train.batch_size (16 there, (unset) now)", "n_transfer ((unset) there, 4 now)",
        "code_version.git_commit (a there, b now)"]


def test_another_demo_is_refused_naming_what_to_repeat(tmp_path):
    from tripletclip.demo.resume import PLAN_FILE, PLAN_FORMAT, Resume

    plan = {"format": PLAN_FORMAT, "preset": "demo-long", "methods": ["clip"], "seeds": [0], "world_seed": 1,
            "demo_config": {"run": {"train": {"steps": 8}}}, "overrides": ["run.train.steps=8"],
            "code_version": {"git_commit": "0123456789abcdef", "git_dirty": True}}
    (tmp_path / PLAN_FILE).write_text(json.dumps(plan))
    with pytest.raises(ConflictError, match=r"code_version.git_commit \(0123456789abcdef there, f+ now\); resume with "
                                            r"the code that started it \(git commit 0123456789ab with uncommitted "
                                            r"changes\), or pass --overwrite to start over$"):
        Resume.begin(tmp_path, {**plan, "code_version": {"git_commit": "f" * 16, "git_dirty": True}}, True, True)
    now = {**plan, "demo_config": {"run": {"train": {"steps": 9}}}, "overrides": []}
    with pytest.raises(ConflictError, match=r"another demo: run.train.steps \(8 there, 9 now\); resume with its "
                                            r"settings \(it was started as: --preset demo-long run.train.steps=8\)"):
        Resume.begin(tmp_path, now, True, True)
    assert json.loads((tmp_path / PLAN_FILE).read_text()) == plan  # a refusal changes nothing
    state = Resume.begin(tmp_path, {**plan, "overrides": []}, True, True)  # the same resolved settings
    assert state.active and json.loads((tmp_path / PLAN_FILE).read_text())["overrides"] == []


def test_a_demo_without_a_recorded_plan_is_not_resumed(tmp_path):
    from tripletclip.demo.resume import Resume

    (tmp_path / "demo_meta.json").write_text("{}")  # a demo of before --resume
    with pytest.raises(ConflictError, match=r"recorded no plan \(demo_plan.json.*pass --overwrite"):
        Resume.begin(tmp_path, {"format": "x"}, held=True, resume=True)


def test_replacing_a_world_removes_its_transfer_benchmark_but_not_the_users_files(tmp_path):
    """`demo --overwrite` (and a resumed demo rebuilding its world) replaced the world but met the transfer
    benchmark inside it as foreign files: the world build refused the folder."""
    from tripletclip.utils.ownership import WORLD, claim_output, remove_owned

    world = tmp_path / "world"
    claim_output(world, WORLD)
    for rel in ("world.json", "bench/manifest.json", "transfer/manifest.json", "transfer/scenes.jsonl",
                "transfer/images/swap_att-00000-a.png", "transfer/sugarcrepe/swap_att.json",
                "transfer/winoground/examples.jsonl", "transfer/mine.txt"):
        (world / rel).parent.mkdir(parents=True, exist_ok=True)
        (world / rel).write_text("x")
    assert remove_owned(world, WORLD) == ["transfer/mine.txt"]
    (world / "world.json").write_text("x")
    assert claim_output(world, WORLD, overwrite=True)  # a world again, the user's file kept


def test_cli_resume_and_overwrite_are_one_or_the_other(tmp_path):
    from click.testing import CliRunner

    from tripletclip.cli import main

    res = CliRunner().invoke(main, ["demo", "--quick", "--resume", "--overwrite", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        "Error: demo: --resume continues the demo in --out, --overwrite replaces it; give one of them"]
    with pytest.raises(InputError, match="give one of them"):
        run_demo(tmp_path / "o", quick=True, resume=True, overwrite=True)
    assert not (tmp_path / "o").exists()
    assert "--resume" in CliRunner().invoke(main, ["demo", "--help"]).output
