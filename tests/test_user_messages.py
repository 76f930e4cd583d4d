"""What a user meets when a command does not simply go through (issue 20, item 5): each case fails on the code
before the issue. Ctrl-C names the kept checkpoint and the resume command; an override typo blames the override;
a refused run leaves nothing; a finished run says so on --resume; eval checks annotations before loading a model."""
from __future__ import annotations

import json
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
