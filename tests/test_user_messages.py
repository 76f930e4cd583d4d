"""What a user meets when a command does not simply go through (issue 20, item 5): each case fails on the code
before the issue. Ctrl-C names the kept checkpoint and the resume command; an override typo blames the override;
a refused run leaves nothing; a finished run says so on --resume; eval checks annotations before loading a model."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from tripletclip.cli import main
from tripletclip.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
SMOKE_PRESET = REPO / "configs" / "smoke" / "clip-cc3m.yaml"


def _run_args(out: Path, name: str = "r", steps: int = 4) -> list[str]:
    return ["data.type=synthetic", "data.train=64", "data.workers=0", "model.name=test-vit-tiny", "loss.name=clip",
            "train.batch_size=8", f"train.steps={steps}", "train.log_every=1", "train.save_every=2",
            f"train.output_dir={out}", f"train.name={name}", "train.progress=false", "optim.warmup_steps=1",
            "train.threads=1"]


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ------------------------------------------------------------------------------------------ config blame
@pytest.mark.parametrize("override, fragment", [
    ("optim.lrr=1e-4", "override 'optim.lrr=1e-4': unknown key 'lrr' in optim (did you mean optim.lr?"),
    ("train.stpes=3", "did you mean train.steps?"),
    ("nosection.x=1", "override 'nosection.x=1': unknown key 'nosection' in the config"),
    ("train.steps=1e3", "override 'train.steps': expected an integer, got '1e3'"),
])
def test_an_override_typo_blames_the_override_not_the_preset(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(SMOKE_PRESET, [override])
    assert fragment in str(e.value) and "clip-cc3m.yaml" not in str(e.value)
    assert fragment in _one_line(_cli("train", "--config", str(SMOKE_PRESET), override))


def test_a_typo_in_the_preset_still_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'lrr'"):
        load_config(bad, ["optim.lr=1e-4", "loss.kwargs.anything=1"])  # valid overrides pass their check


# ------------------------------------------------------------------------------------- refused runs
def test_a_refused_train_leaves_no_folder_or_lock_behind(tmp_path):
    out = tmp_path / "runs"
    args = [a for a in _run_args(out, "b") if not a.startswith("data.")] + ["data.train=/nonexistent/x-{0..1}.tar"]
    err = _one_line(_cli("train", *args))
    assert "/nonexistent" in err
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    # a folder that existed keeps what it held, and gets no .lock from a refused run
    (out / "b").mkdir(parents=True)
    (out / "b" / "notes.txt").write_text("mine")
    _one_line(_cli("train", *args))
    assert sorted(p.name for p in (out / "b").iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------- Ctrl-C and finished
def test_ctrl_c_names_the_kept_checkpoint_and_the_resume_command(tmp_path, monkeypatch):
    import tripletclip.train.trainer as trainer

    real_save = trainer.save_checkpoint

    def save_then_interrupt(run_dir, step, *a, **k):  # Ctrl-C arrives right after the step-2 checkpoint
        path = real_save(run_dir, step, *a, **k)
        if step == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "runs"
    r = CliRunner().invoke(main, ["train", *_run_args(out)])
    assert r.exit_code == 130 and "Aborted!" not in r.output and "Traceback" not in r.output, r.output
    kept = out / "r" / "checkpoints" / "step_00000002"
    assert f"Interrupted: kept {kept} (step 2); continue with:" in r.output
    command = shlex.split(r.output.splitlines()[-1])
    assert command[:2] == ["tripletclip", "train"] and command[-2:] == ["--resume", "latest"]
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    resumed = CliRunner().invoke(main, command[1:])  # the printed command continues the run to the end
    assert resumed.exit_code == 0 and "(step 4)" in resumed.output, resumed.output


def test_resume_latest_on_a_finished_run_says_it_is_finished(tmp_path):
    out = tmp_path / "runs"
    assert _cli("train", *_run_args(out, steps=2)).exit_code == 0
    metrics = (out / "r" / "metrics.jsonl").read_text()
    r = _cli("train", *_run_args(out, steps=2), "--resume", "latest")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (f"{out / 'r'} is finished: its checkpoint step_00000002 is at step 2 of "
                                "train.steps=2; nothing to resume. To train longer, pass a larger train.steps with "
                                "--resume latest.")
    assert (out / "r" / "metrics.jsonl").read_text() == metrics  # nothing trained, nothing logged
    assert json.loads((out / "r" / "final_metrics.json").read_text())["step"] == 2


# ------------------------------------------------------------------------------------------------- eval
def _never(*a, **k):
    raise AssertionError("a model was built before the inputs were checked")


def test_eval_checks_annotation_folders_before_loading_a_model(tmp_path, monkeypatch):
    import open_clip

    monkeypatch.setattr(open_clip, "create_model_and_transforms", _never)
    r = _cli("eval", "--benchmark", "sugarcrepe,valse", "--annotations", "sugarcrepe=SC_DIR", "--annotations",
             f"valse={tmp_path}", "--images", "COCO_DIR", "--model", "ViT-B-32-quickgelu", "--pretrained", "openai",
             "--out", str(tmp_path / "r.json"))
    assert "benchmark 'sugarcrepe': --annotations SC_DIR: no such file or folder" in _one_line(r)
    r = _cli("eval", "--benchmark", "sugarcrepe", "--annotations", str(tmp_path), "--images", str(tmp_path / "no"),
             "--model", "ViT-B-32-quickgelu", "--pretrained", "openai", "--out", str(tmp_path / "r.json"))
    assert f"--images {tmp_path / 'no'}: no such file or folder" in _one_line(r)
    r = _cli("eval", "--benchmark", "sugarcrepe", "--images", str(tmp_path), "--model", "ViT-B-32-quickgelu",
             "--pretrained", "openai", "--out", str(tmp_path / "r.json"))
    assert "benchmark 'sugarcrepe' needs --annotations" in _one_line(r)


def test_an_offline_tag_download_is_one_line_and_immediate(tmp_path, monkeypatch, caplog):
    import logging
    import socket

    import open_clip

    from tripletclip.models import factory

    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(factory, "_cached_tag_file", lambda cfg, cache_dir: None)  # whatever this machine cached
    monkeypatch.setattr(factory.socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", _never)
    r = _cli("eval", "--benchmark", "sugarcrepe", "--annotations", str(tmp_path), "--model", "ViT-B-32-quickgelu",
             "--pretrained", "openai", "--out", str(tmp_path / "r.json"))
    assert _one_line(r) == ("Error: pretrained 'openai' of ViT-B-32-quickgelu: the weights are not in the local cache "
                            "and huggingface.co cannot be reached (no network?); run it once with network access (the "
                            "weights are then cached), or pass a local weights file (see `tripletclip models list`)")

    # the host resolves but the download fails anyway: the hub's retry warnings are silenced, the failure is one line
    def failing_download(*a, **k):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise RuntimeError("Failed to download weights for tag 'openai': Failed to download file (x.bin)\nmore")

    monkeypatch.setattr(factory.socket, "getaddrinfo", lambda *a, **k: [])
    monkeypatch.setattr(open_clip, "create_model_and_transforms", failing_download)
    caplog.set_level(logging.WARNING)
    r = _cli("eval", "--benchmark", "sugarcrepe", "--annotations", str(tmp_path), "--model", "ViT-B-32-quickgelu",
             "--pretrained", "openai", "--out", str(tmp_path / "r.json"))
    assert "the download failed (Failed to download weights for tag 'openai'" in _one_line(r)
    assert not [rec for rec in caplog.records if rec.name.startswith("huggingface_hub")]


def test_a_transient_progress_bar_off_a_terminal_prints_nothing(capsys):
    from tripletclip.utils.progress import progress_bar

    with progress_bar(unit="texts", transient=True) as bar:  # eval's encoding bars: stdout is a pipe here
        task = bar.add_task("encoding texts", total=4)
        bar.advance(task, 4)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------ wrapper, torchrun, demo
@pytest.mark.filterwarnings("ignore:'tripletclip.eval.clip_benchmark_wrapper' found in sys.modules:RuntimeWarning")
def test_the_clip_benchmark_wrapper_names_the_extra_that_installs_it(monkeypatch, capsys):
    import runpy
    import sys

    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'bench = ["clip-benchmark>=1.4"]' in pyproject
    monkeypatch.setitem(sys.modules, "clip_benchmark", None)  # not installed, whatever this machine has
    from tripletclip.errors import UnavailableError
    from tripletclip.eval import clip_benchmark_wrapper as cbw

    with pytest.raises(UnavailableError, match=r"pip install 'tripletclip\[bench\]'"):
        cbw.register()
    # `python -m tripletclip.eval.clip_benchmark_wrapper eval ...`: one line on stderr, exit 1, no traceback
    monkeypatch.setattr(sys, "argv", ["clip_benchmark_wrapper", "eval"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("tripletclip.eval.clip_benchmark_wrapper", run_name="__main__")
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.splitlines() == [
        "Error: CLIP_benchmark is not installed: pip install 'tripletclip[bench]' (the 'bench' extra)"], err


def test_a_user_error_under_torchrun_names_the_rank_and_reaches_its_summary(tmp_path, monkeypatch):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    line = _one_line(_cli("train", "optim.lrr=1"))
    assert line.startswith("Error: [rank 1/2] override 'optim.lrr=1': unknown key 'lrr'")
    # torch elastic's own reader: what torchrun's ChildFailedError prints as this rank's "traceback"
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failure = ProcessFailure(local_rank=1, pid=1, exitcode=1, error_file=str(error_file))
    summary = ChildFailedError("tripletclip.cli", {1: failure}).format_msg()
    assert f"traceback : {line}\n" in summary and "To enable traceback" not in summary
    assert json.loads(error_file.read_text())["message"]["extraInfo"]["py_callstack"] == line  # no traceback


def test_demo_help_lists_every_shipped_preset():
    out = _cli("demo", "--help").output
    presets = sorted(p.stem for p in (REPO / "src" / "tripletclip" / "demo" / "presets").glob("*.yaml"))
    assert "demo-long" in presets
    for name in presets:
        assert re.search(rf"^    {re.escape(name)}\s+\S", out, re.M), (name, out)


# ------------------------------------------------------------------------------------------------ smaller
def test_only_the_diffusers_numpy2_deprecation_is_filtered():
    """pyproject's filterwarnings hides the 12 warnings diffusers' scheduler raises, and nothing of ours."""
    import warnings

    message = "__array__ implementation doesn't accept a copy keyword, so passing copy=False failed."
    with warnings.catch_warnings(record=True) as seen:  # keeps the filters pytest set from pyproject
        for module in ("diffusers.schedulers.scheduling_euler_discrete", "tripletclip.negatives.t2i"):
            warnings.warn_explicit(message, DeprecationWarning, "x.py", 1, module=module)
        warnings.warn_explicit("something else", DeprecationWarning, "x.py", 2,
                               module="diffusers.schedulers.scheduling_euler_discrete")
    assert sorted((w.lineno, str(w.message)[:9]) for w in seen) == [(1, "__array__"), (2, "something")]


def test_the_readme_examples_outputs_are_ignored_but_the_world_package_is_not():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "world/train/x.tar", "tc-smoke.json",
                              "src/tripletclip/world/build.py", "demo_out/x"], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["world/train/x.tar", "tc-smoke.json", "demo_out/x"]


def test_every_readme_table_row_belongs_to_a_table():
    lines = (REPO / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|"):
            header = i + 1 < len(lines) and lines[i + 1].startswith("|---")
            assert header or (i > 0 and lines[i - 1].startswith("|")), f"README.md line {i + 1}: a stray table row"
    rows = [ln for ln in lines if ln.startswith("| `tripletclip")]
    assert len(rows) == len(set(rows)), "a command row appears twice"


def test_demo_quick_with_another_preset_is_refused_not_dropped(tmp_path):
    """`--quick --preset demo-objectives` used to run demo-objectives at full size, silently ignoring --quick."""
    line = _one_line(_cli("demo", "--quick", "--preset", "demo-objectives", "--out", str(tmp_path / "d")))
    assert "--quick" in line and "demo-objectives" in line
    assert not (tmp_path / "d").exists()
