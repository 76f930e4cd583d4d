"""Every output folder belongs to one command (issue 19 item 1, issue 20 item 1): the failing cases of the issues.

A command writes only into a new folder or one carrying its own kind's marker; ``--overwrite`` removes only what
the tool wrote; a folder of the user's files is refused in one line naming them; ``--out`` apart from ``--in``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tripletclip.cli import main
from tripletclip.errors import ConflictError, InputError
from tripletclip.utils.ownership import EXPORT, WORLD, OWNER_FILE, check_separate, claim_output, foreign_files
from tripletclip.world import build_world

SMALL = dict(n_train=30, n_bench=4, n_retrieval=6, image_size=16, shard_size=20, progress=False)


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("w") / "world"
    build_world(out, seed=7, **SMALL)
    return out


def _bench_images_exist(w: Path) -> bool:
    rows = json.loads((w / "bench" / "sugarcrepe" / "replace_att.json").read_text())
    rows = rows.values() if isinstance(rows, dict) else rows
    return all((w / "bench" / "images" / r["filename"]).is_file() for r in rows)


def test_world_overwrite_never_deletes_the_users_files(tmp_path):
    """`mkdir -p P/train; echo x > P/train/my_train.py; world build --out P --overwrite` deleted my_train.py."""
    p = tmp_path / "P"
    (p / "train").mkdir(parents=True)
    (p / "train" / "my_train.py").write_text("x\n")
    err = _one_line_error(CliRunner().invoke(main, ["world", "build", "--out", str(p), "--overwrite", "--n-train", "10",
                                                    "--n-bench", "2", "--n-retrieval", "2", "--no-progress"]))
    assert "train/my_train.py" in err and "did not write" in err
    assert (p / "train" / "my_train.py").read_text() == "x\n" and not (p / "world.json").exists()


def test_world_overwrite_replaces_only_what_the_build_wrote(world, tmp_path):
    w = tmp_path / "w"
    build_world(w, seed=7, **SMALL)
    (w / "train" / "notes.txt").write_text("mine")
    with pytest.raises(ConflictError, match="already holds a world"):
        build_world(w, seed=8, **SMALL)
    build_world(w, seed=8, **{**SMALL, "n_train": 50}, overwrite=True)
    assert (w / "train" / "notes.txt").read_text() == "mine"
    summary = json.loads((w / "world.json").read_text())
    manifest = json.loads((w / "train" / "manifest.json").read_text())
    assert summary["seed"] == 8 and summary["train"]["dataset_hash"] == manifest["dataset_hash"]
    assert manifest["total_samples"] == 50 and len(list((w / "train").glob("train-*.tar"))) == 3
    assert _bench_images_exist(w)
    assert foreign_files(w, WORLD) == ["train/notes.txt"]  # every other file is one the build wrote


def test_a_world_folder_has_one_builder(tmp_path):
    """Two builds 2 s apart both wrote into W (world.json of one, shards of the other): the second is refused."""
    from tripletclip.utils.lock import FolderLock

    w = tmp_path / "W"
    holder = FolderLock(w, "another world build", "use another --out")  # a build in progress
    try:
        with pytest.raises(ConflictError, match="in use by PID .*another world build"):
            build_world(w, seed=8, overwrite=True, **SMALL)
        assert not (w / "train").exists() and not (w / "world.json").exists()
    finally:
        holder.release()
    build_world(w, seed=8, overwrite=True, **SMALL)
    assert json.loads((w / "world.json").read_text())["seed"] == 8


def test_negatives_out_inside_or_equal_to_in_is_refused(world):
    """`negatives text --in W/train --out W/train` replaced the shards' manifest.json."""
    before = (world / "train" / "manifest.json").read_bytes()
    for out in (world / "train", world / "train" / "negs", world):
        err = _one_line_error(CliRunner().invoke(main, ["negatives", "text", "--in", str(world / "train"), "--out",
                                                        str(out), "--tagger", "lexicon"]))
        assert "--in" in err and "apart from the input" in err
    assert (world / "train" / "manifest.json").read_bytes() == before
    assert not (world / "train" / "job.json").exists()


def test_negatives_refuse_a_folder_of_another_kind(world, tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps({"key": "k0", "caption": "a red car next to a blue bus"}) + "\n")
    err = _one_line_error(CliRunner().invoke(main, ["negatives", "text", "--in", str(tmp_path / "in.jsonl"), "--out",
                                                    str(world), "--tagger", "lexicon"]))
    assert "holds a world" in err and not (world / "job.json").exists()


def test_training_into_a_folder_of_the_users_files_is_refused(tmp_path):
    """train.output_dir=U train.name=p with the user's own U/p/config.yaml: overwritten, metrics appended."""
    from tripletclip.config import load_config
    from tripletclip.train.provenance_run import open_run

    run = tmp_path / "U" / "p"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("mine: 1\n")
    (run / "metrics.jsonl").write_text('{"mine": 1}\n')
    cfg = load_config(None, [f"train.output_dir={tmp_path / 'U'}", "train.name=p", "data.train=x.tar"])
    with pytest.raises(ConflictError, match="did not write .*config.yaml"):
        open_run(cfg, None)
    assert (run / "config.yaml").read_text() == "mine: 1\n" and (run / "metrics.jsonl").read_text() == '{"mine": 1}\n'
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".lock")) == ["config.yaml", "metrics.jsonl"]


def test_a_new_run_claims_its_folder_and_a_run_folder_is_its_own(tmp_path):
    from tripletclip.config import load_config
    from tripletclip.train.provenance_run import open_run

    cfg = load_config(None, [f"train.output_dir={tmp_path}", "train.name=r", "data.train=x.tar"])
    run_dir, ckpt, lock = open_run(cfg, None)
    lock.release()
    assert ckpt is None and json.loads((run_dir / OWNER_FILE).read_text())["kind"] == "run"
    (run_dir / "run.json").write_text("{}")
    (run_dir / "notes.txt").write_text("mine")  # a note beside a run does not make it foreign
    open_run(cfg, "latest")[2].release()


def test_export_overwrite_removes_only_the_listed_files(tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    for name in ("config.json", "model.safetensors", "mine.txt"):
        (out / name).write_text(name)
    (out / "tripletclip_export.json").write_text(json.dumps({"files": {"config.json": "", "model.safetensors": ""}}))
    assert claim_output(out, EXPORT, overwrite=False)  # held: the caller refuses without --overwrite
    assert claim_output(out, EXPORT, overwrite=True, listed=["config.json", "model.safetensors"])
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "mine.txt"]


@pytest.mark.parametrize("where", ["equal", "inside", "containing", "apart"])
def test_out_apart_from_in(tmp_path, where):
    inp = tmp_path / "a" / "in"
    inp.mkdir(parents=True)
    out = {"equal": inp, "inside": inp / "o", "containing": tmp_path / "a", "apart": tmp_path / "b"}[where]
    if where == "apart":
        check_separate(out, [inp])
    else:
        with pytest.raises(InputError, match={"equal": "is --in", "inside": "is inside", "containing": "contains"}[where]):
            check_separate(out, [inp])


def _full_demo(out: Path) -> None:
    """What `tripletclip demo` leaves (names as it writes them), plus the user's own files."""
    out.mkdir()
    (out / "demo_meta.json").write_text(json.dumps({"preset": "demo"}))
    for name in ("results.json", "report.html", "similarities.json"):
        (out / name).write_text("{}")
    build_world(out / "world", seed=1, **SMALL)
    for seed in (0, 1, 2):
        run = out / "runs" / f"clip-seed{seed}"
        (run / "checkpoints" / "step_00000012").mkdir(parents=True)
        (run / "checkpoints" / "step_00000012" / "model.safetensors").write_text("w")
        (run / "run.json").write_text("{}")
        (run / "metrics.jsonl").write_text("")
    (out / "my_notes.md").write_text("mine")
    (out / "runs" / "clip-seed1" / "analysis.ipynb").write_text("mine")


def test_a_quick_demo_never_silently_replaces_a_full_one(tmp_path):
    """`demo` then `demo --quick`: the quick run's results beside the full demo's seed1/seed2 runs."""
    from tripletclip.demo import run_demo

    out = tmp_path / "demo_out"
    _full_demo(out)
    def listing() -> list[str]:
        return sorted(str(p) for p in out.rglob("*") if ".lock" not in p.name and p.name != OWNER_FILE)

    before = listing()
    with pytest.raises(ConflictError, match=r"already holds a demo \(preset demo\).*--overwrite"):
        run_demo(out, quick=True, progress=False, echo=lambda s: None)
    assert listing() == before


def test_demo_overwrite_removes_only_what_the_demo_wrote(tmp_path):
    from tripletclip.demo.run import _claim_demo

    out = tmp_path / "demo_out"
    _full_demo(out)
    _claim_demo(out, "demo-quick", overwrite=True)[0].release()
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".lock" not in p.name)
    assert left == [OWNER_FILE, "my_notes.md", "runs/clip-seed1/analysis.ipynb"]


def test_of_two_concurrent_world_builds_exactly_one_writes(tmp_path):
    """Two `world build --out W --overwrite` 2 s apart both exited 0: world.json of one, shards of the other."""
    import fcntl
    import os
    import subprocess
    import sys

    w = tmp_path / "W"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    first = subprocess.Popen([sys.executable, "-m", "tripletclip.cli", "world", "build", "--out", str(w), "--overwrite",
                              "--seed", "7", "--n-train", "1000", "--n-bench", "4", "--n-retrieval", "6",
                              "--image-size", "16", "--no-progress"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def held() -> bool:
        try:
            fd = os.open(w / ".lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    import time

    deadline = time.time() + 120
    while not held():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.01)
    second = CliRunner().invoke(main, ["world", "build", "--out", str(w), "--overwrite", "--seed", "8", "--n-train",
                                       "10", "--n-bench", "2", "--n-retrieval", "2", "--no-progress"])
    assert first.poll() is None, "the first build ended before the second started: nothing was tested"
    err = _one_line_error(second)
    assert f"PID {first.pid} " in err and "another world build" in err
    out, errs = first.communicate(timeout=300)
    assert first.returncode == 0, errs
    summary = json.loads((w / "world.json").read_text())
    manifest = json.loads((w / "train" / "manifest.json").read_text())
    assert summary["seed"] == 7 and manifest["total_samples"] == 1000
    assert summary["train"]["dataset_hash"] == manifest["dataset_hash"] and _bench_images_exist(w)


# files a world build writes, and look-alikes it never writes (the user's)
_WORLD_FILES = ("world.json", "train/train-000000.tar", "train/manifest.json", "bench/images/sc-000001-pos.png",
                "bench/sugarcrepe/replace_att.json", "bench/winoground/examples.jsonl", "bench/retrieval.json",
                "bench/scenes.jsonl", "bench/manifest.json", "train/.train-000001.tar.tmp-42")
_USER_FILES = ("train/my_train.py", "notes.md", "world.json.bak", "train/train-000000.tar.orig", "bench/images/x.jpg",
               "bench/sugarcrepe/mine/replace_att.json", "train/sub/train-000000.tar", "bench/README")


def test_overwrite_removes_exactly_the_files_the_kind_writes(tmp_path_factory):
    """Any mix of a world's files and look-alikes: --overwrite removes exactly the world's, keeps every other,
    and a folder without any of the world's files is refused, naming the others."""
    from hypothesis import given, settings, strategies as st

    from tripletclip.utils.ownership import remove_owned

    @settings(derandomize=True, max_examples=40, deadline=None)
    @given(st.sets(st.sampled_from(_WORLD_FILES)), st.sets(st.sampled_from(_USER_FILES)))
    def check(ours: set[str], theirs: set[str]) -> None:
        folder = tmp_path_factory.mktemp("mix")
        for rel in ours | theirs:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(rel)
        if "world.json" in ours:  # a world: overwrite removes its files only
            assert claim_output(folder, WORLD, overwrite=True) == bool(ours)
            left = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
            assert left - {OWNER_FILE} == theirs
            assert all((folder / rel).read_text() == rel for rel in theirs)
        elif theirs:  # no marker: the user's folder
            with pytest.raises(ConflictError, match="did not write") as err:
                claim_output(folder, WORLD)
            assert all(rel in str(err.value) for rel in sorted(ours | theirs)[:5])  # named, first five
            assert not (folder / OWNER_FILE).exists()
        assert sorted(remove_owned(folder, WORLD)) == sorted(theirs)

    check()
