"""Teachers (train/teacher.py): the EMA formula, the frozen base, and an exact resume of an EMA-teacher run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tripletclip.config import load_config
from tripletclip.train import train
from tripletclip.train.teacher import Teacher

torch.set_num_threads(1)


def test_ema_update_and_frozen_base():
    student = torch.nn.Linear(3, 2)
    ema, base = Teacher(student, "ema", decay=0.9), Teacher(student, "base")
    start = student.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    ema.update(student)
    base.update(student)
    torch.testing.assert_close(ema.model.weight, 0.9 * start + 0.1 * (start + 1.0))
    assert torch.equal(base.model.weight, start)  # the base never moves
    assert not any(p.requires_grad for p in ema.model.parameters())
    assert base.state_dict()["weights"] is None  # rebuilt from the starting weights, not saved
    fresh = Teacher(torch.nn.Linear(3, 2), "ema")
    fresh.load_state_dict(ema.state_dict())
    assert torch.equal(fresh.model.weight, ema.model.weight)
    with pytest.raises(ValueError):
        Teacher(student, "median")


def _cfg(out: Path, name: str):
    return load_config(None, ["data.type=synthetic", "data.train=64", "data.workers=0", "model.name=test-vit-tiny",
                              "loss.name=degla", "loss.ema_decay=0.5", "train.batch_size=8", "train.steps=4",
                              "train.save_every=2", "train.keep_checkpoints=3", "train.log_every=1",
                              f"train.output_dir={out}", f"train.name={name}", "train.progress=false",
                              "train.threads=1", "optim.warmup_steps=1", "optim.lr=1e-3"])


def test_ema_teacher_run_resumes_exactly(tmp_path):
    """Resume at step 2 of a DeGLA run: without the EMA teacher's state the last steps would differ."""
    run = Path(train(_cfg(tmp_path, "full"))["run_dir"])
    again = tmp_path / "again"
    shutil.copytree(run, again)
    shutil.rmtree(again / "checkpoints" / "step_00000004")
    (again / "checkpoints" / "latest").write_text("step_00000002\n")
    train(_cfg(tmp_path, "again"), resume="latest")
    a = load_file(str(run / "checkpoints" / "step_00000004" / "model.safetensors"))
    b = load_file(str(again / "checkpoints" / "step_00000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(run / "checkpoints" / "step_00000004" / "train_state.pt", weights_only=False)
    assert state["support"]["teacher"]["kind"] == "ema" and state["support"]["teacher"]["weights"]
