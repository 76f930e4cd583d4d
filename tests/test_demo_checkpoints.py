"""A demo run keeps its weights, not its optimiser state (issue 17 item 5 leftovers: 807 MB for the default demo,
28 MB of each run's 41 MB being ``train_state.pt`` that no demo reads)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tripletclip.demo import jobs
from tripletclip.train.checkpoint import (
    STATE, WEIGHTS, CheckpointError, load_weights, newest_intact, save_checkpoint, step_folders, verified_checkpoint,
)


def _run(root: Path) -> tuple[Path, torch.nn.Module]:
    model = torch.nn.Linear(3, 2)
    state = {"optimizer": {"exp_avg": torch.ones(3, 2)}, "step": 4}
    save_checkpoint(root, 4, model, state, {"config": {"loss": {"name": "clip"}}}, keep=1)
    return root, model


def test_drop_train_state_keeps_usable_weights_and_resume_refuses_in_one_line(tmp_path):
    run, model = _run(tmp_path / "clip-seed0")
    ckpt = step_folders(run)[-1]
    size = (ckpt / STATE).stat().st_size
    assert jobs.drop_train_state(run) == size > 0
    assert not (ckpt / STATE).exists() and (ckpt / WEIGHTS).is_file()
    # evaluation, the report, export and model.pretrained: the weights, verified, identical
    weights = load_weights(verified_checkpoint(run, with_state=False))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    # --resume: one line naming the missing file; the checkpoint stays where it was (not moved aside as damaged)
    with pytest.raises(CheckpointError, match="train_state.pt is missing") as err:
        newest_intact(run)
    assert "\n" not in str(err.value) and step_folders(run) == [ckpt]
    assert jobs.drop_train_state(run) == 0  # nothing left to drop


def test_run_job_drops_the_state_after_training_and_evaluation(tmp_path, monkeypatch):
    import tripletclip.models
    import tripletclip.train.trainer

    run, _ = _run(tmp_path / "negclip-seed1")
    seen = []
    # the loop itself, not the package's lazy name: patching that would leave a concrete attribute behind
    monkeypatch.setattr(tripletclip.train.trainer, "train", lambda cfg: {"run_dir": str(run), "final": {}})
    # evaluation still finds the state: it is dropped only once the job is done with the run
    monkeypatch.setattr(tripletclip.models, "load_run_model", lambda d: seen.append((step_folders(d)[-1] / STATE).is_file()))
    monkeypatch.setattr(jobs, "evaluate_bundle", lambda *a: {"scores": {}})
    job = jobs.Job(key="negclip-seed1", method="negclip", seed=1, bench_dir=str(tmp_path),
                   cfg={"train": {"output_dir": str(tmp_path), "name": "negclip-seed1"}})
    out = jobs.run_job(job)
    assert seen == [True] and out["run_dir"] == str(run) and out["scores"] == {}
    # the job's last step: its record in the run folder, for a resumed demo (demo/resume.py)
    assert jobs.record_path(job) == run / jobs.RECORD_FILE and jobs.record_path(job).is_file()
    assert not (step_folders(run)[-1] / STATE).exists() and (step_folders(run)[-1] / WEIGHTS).is_file()
