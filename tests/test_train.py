"""Trainer end to end on the synthetic source: every registered objective, metrics, checkpoints, kill + exact
resume, epoch hooks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tripletclip.config import load_config
from tripletclip.losses import LOSSES, build_loss
from tripletclip.models import load_run_model
from tripletclip.train import train
from conftest import SHARED_BENCHMARKS

# the synthetic source (coloured squares, one negative caption and rendering each): the trainer reads no file
DATA = ["data.type=synthetic", "data.train=96"]


def _cfg(out: Path, loss: str, steps: int = 6, workers: int = 0, **extra: str):
    return load_config(None, [*_overrides(out, loss, steps, workers), *[f"{k}={v}" for k, v in extra.items()]])


def _overrides(out: Path, loss: str, steps: int, workers: int) -> list[str]:
    return [*DATA, f"data.workers={workers}", "model.name=test-vit-tiny", f"loss.name={loss}",
            "train.batch_size=8", f"train.steps={steps}", "train.log_every=2", "train.save_every=3",
            f"train.output_dir={out}", f"train.name={loss}", "train.progress=false", "optim.warmup_steps=2",
            "train.threads=1"]


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_objective_trains_and_records_provenance(tmp_path, loss):
    res = train(_cfg(tmp_path, loss))
    run = Path(res["run_dir"])
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4, 6]
    last = recs[-1]
    assert np.isfinite(last["loss/loss"]) and last["logit_scale"] <= 100.0
    assert last["real_pairs_seen"] == 6 * 8
    objective = LOSSES.get(loss)
    assert last["synthetic_images_seen"] == (6 * 8 if objective.needs_neg_image else 0)  # logged apart from real
    rows = 4 if loss == "clic" else 8  # CLIC's batch transform pairs the 8 samples into 4 examples, one swap each
    assert last["neg_texts_seen"] == (6 * rows if objective.needs_neg_text else 0)
    assert 0.0 <= last["data_wait_frac"] <= 1.0 and last["pairs_per_s"] > 0
    shapes = build_loss(loss).logits_shapes(8, 8, int(objective.needs_neg_text), int(objective.needs_neg_image))
    assert all(last[k] == v for k, v in shapes.items())
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["sha256"] and info["code_version"]["package"] and info["model"]["name"] == "test-vit-tiny"
    assert (run / "config.yaml").is_file()
    bundle = load_run_model(run)
    assert bundle.identity["step"] == 6


def test_objectives_hear_every_epoch_start(tmp_path, monkeypatch):
    """16 samples in batches of 8: the data enter epoch 1 at step 3 and epoch 2 at step 5."""
    heard = []
    monkeypatch.setattr(LOSSES.get("ceclip"), "on_epoch_start", lambda self, epoch: heard.append(epoch))
    train(load_config(None, [*_overrides(tmp_path, "ceclip", 6, 0), "data.train=16"]))
    assert heard == [1, 2]


def test_training_reduces_the_loss(tmp_path):
    res = train(_cfg(tmp_path, "clip", steps=30, **{"optim.lr": "2e-3", "train.log_every": "5"}))
    recs = [json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["loss/loss"] < recs[0]["loss/loss"] - 0.2


def _train_cmd(out: Path, name: str, steps: int, workers: int, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "tripletclip.cli", "train", *DATA, f"data.workers={workers}",
           "model.name=test-vit-tiny", "loss.name=tripletclip", "train.batch_size=8", f"train.steps={steps}",
           "train.log_every=1", "train.save_every=4", f"train.output_dir={out}", f"train.name={name}",
           "train.progress=false", "optim.warmup_steps=2", "train.threads=1", "model.aug={scale: [0.5, 1.0]}"]
    return cmd + (["--resume", "latest"] if resume else [])


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_and_resume_is_bitwise_identical(tmp_path, workers):
    """Kill -9 a run after a checkpoint; --resume latest must end with the same bits as a clean run.

    14 steps of batch 8 cross the 96-sample epoch boundary, so the data position across epochs is covered;
    the random-resized-crop augmentation makes the transform RNG part of what must be restored.
    """
    steps = 14
    subprocess.run(_train_cmd(tmp_path, "clean", steps, workers, False), check=True, capture_output=True)
    proc = subprocess.Popen(_train_cmd(tmp_path, "killed", steps, workers, False),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = latest.read_text().strip()
    assert killed_at.startswith("step_") and int(killed_at[5:]) < steps, "the run finished before it was killed"
    subprocess.run(_train_cmd(tmp_path, "killed", steps, workers, True), check=True, capture_output=True)
    a = load_file(str(tmp_path / "clean" / "checkpoints" / f"step_{steps:08d}" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / f"step_{steps:08d}" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    clean = [json.loads(x) for x in (tmp_path / "clean" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss/loss"] for r in clean] == [r["loss/loss"] for r in resumed]


def test_torchrun_two_processes_train_with_a_global_batch(tmp_path):
    """The same trainer under torchrun (gloo): logits span the global batch, both ranks agree on the result."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "tripletclip.cli", "train", *DATA, "data.workers=0", "model.name=test-vit-tiny",
           "loss.name=tripletclip", "train.batch_size=4", "train.steps=3", "train.log_every=1", "train.save_every=0",
           f"train.output_dir={tmp_path}", "train.name=ddp", "train.progress=false", "train.threads=1"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)
    recs = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["logits_i2t"] == [4, 8 + 8] and recs[-1]["real_pairs_seen"] == 3 * 8
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["world_size"] == 2 and info["global_batch"] == 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHARED = SHARED_BENCHMARKS / "real_images_smoke"


@pytest.mark.shared_benchmarks("real_images_smoke")
def test_periodic_eval_logs_compositional_scores_next_to_the_loss(tmp_path):
    args = "{sugarcrepe: {annotations: %s, images: %s}}" % (SHARED / "sugar_crepe", SHARED / "images" / "val2017")
    res = train(_cfg(tmp_path, "negclip", steps=4, **{"eval.benchmarks": "sugarcrepe", "eval.args": args,
                                                              "train.eval_every": "2"}))
    recs = [json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in evals] == [2, 4]
    keys = [k for k in evals[-1] if k.startswith("eval/sugarcrepe")]
    assert keys and all(0.0 <= evals[-1][k] <= 100.0 for k in keys if isinstance(evals[-1][k], float))


def test_fine_tune_from_local_weights_with_a_locked_image_tower(tmp_path, tiny_weights):
    """LiT-style lock (TripletCLIP Table 8): the image tower keeps its pretrained bits, the text tower moves."""
    init = tiny_weights
    res = train(_cfg(tmp_path, "negclip", steps=3, **{"model.pretrained": str(init), "model.lock_image": "true"}))
    before = load_file(str(init))
    after = load_file(str(Path(res["run_dir"]) / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("transformer."))
    assert json.loads((Path(res["run_dir"]) / "run.json").read_text())["model"]["weights_sha256"]


def test_compile_trains_without_recompiling(tmp_path):
    """train.compile=true: 10 steps, text lengths in buckets, at most 2 compilations. Dynamo decides when to
    recompile whatever the backend, so the test uses the 'eager' backend (inductor on this 2-core CPU takes
    minutes to build; docs/training.md gives its measured time)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    res = train(_cfg(tmp_path, "tripletclip", steps=10, **{"train.compile": "true", "train.compile_backend": "eager",
                                                         "train.log_every": "5"}))
    assert res["step"] == 10
    assert 1 <= counters["frames"]["ok"] <= 2 and counters["stats"]["unique_graphs"] <= 2, dict(counters["frames"])


@pytest.mark.parametrize("loss", ["tripletclip", "ceclip"])
def test_accumulation_trains_the_same_run(tmp_path, loss):
    """train.accum_steps=4 (micro-batches of 2) trains the plain run's objective over the same batch of 8,
    through the whole trainer (real model, trimmed text, AdamW): step 1's loss and gradient norm agree to float
    rounding; later steps only closely, as Adam's first updates amplify rounding in near-zero gradients."""
    runs = []
    for accum in (1, 4):
        res = train(_cfg(tmp_path / str(accum), loss, steps=4, **{"train.accum_steps": str(accum), "train.log_every": "1"}))
        runs.append([json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()])
    assert runs[1][0]["loss/loss"] == pytest.approx(runs[0][0]["loss/loss"], rel=1e-6)
    assert runs[1][0]["grad_norm"] == pytest.approx(runs[0][0]["grad_norm"], rel=1e-4)
    for plain, acc in zip(*runs):
        assert acc["loss/loss"] == pytest.approx(plain["loss/loss"], rel=2e-3)
        assert acc["real_pairs_seen"] == plain["real_pairs_seen"]


def test_job_log_lines_and_metrics_fields(tmp_path, capsys):
    """Not a terminal: one plain line per logging step with the fields of the metrics.jsonl record."""
    res = train(_cfg(tmp_path, "negclip", steps=4))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    recs = [json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"] and len(recs) == 2
    for ln, rec in zip(lines, recs):
        assert f"loss {rec['loss/loss']:.4f}" in ln and f"grad_norm {rec['grad_norm']:.3g}" in ln
        assert rec["grad_norm"] > 0 and rec["pairs_per_s_rank"] == rec["pairs_per_s"]  # one rank
        assert rec["peak_memory_bytes"] > 2**20 and 0 <= rec["data_wait_frac"] <= 1
        for key in ("lr", "pairs/s", "(rank", "data_wait", "peak_mem"):
            assert key in ln


@pytest.mark.slow
def test_elastic_resume_from_one_to_two_ranks(tmp_path, monkeypatch):
    """data.global_order: checkpoint at W=1 (batch 8), resume at W=2 (batch 4 per rank, in 2 micro-batches:
    DDP with accumulation) under torchrun: no error; step, optimizer and schedule continue; the data position
    is global (the key sets are checked in tests/test_data_loader.py, W=2 -> 1 as well)."""
    from tripletclip.train.checkpoint import load_checkpoint

    from tripletclip.train import preempt, trainer

    common = {"data.global_order": "true", "train.save_every": "0", "train.log_every": "1"}
    ref = train(_cfg(tmp_path / "ref", "negclip", steps=8, **common))

    class StopAt4(preempt.Preemption):  # as if preempted after step 4 (tests/test_preempt.py sends real signals)
        def should_stop(self, step: int) -> bool:
            return step >= 4

    monkeypatch.setattr(trainer, "Preemption", StopAt4)
    first = train(_cfg(tmp_path, "negclip", steps=8, **common))
    assert first["step"] == 4 and first["preempted"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "tripletclip.cli", "train", *_overrides(tmp_path, "negclip", 8, 0)[:-1], "train.batch_size=4",
           "train.threads=1", "train.accum_steps=2", *[f"{k}={v}" for k, v in common.items()], "--resume", "latest"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    _, state, _ = load_checkpoint(tmp_path / "negclip")
    _, ref_state, _ = load_checkpoint(Path(ref["run_dir"]))
    assert state["step"] == 8 and state["scheduler"]["last_epoch"] == ref_state["scheduler"]["last_epoch"] == 8
    assert state["scheduler"]["_last_lr"] == ref_state["scheduler"]["_last_lr"]
    adam = [s["step"] for s in state["optimizer"]["state"].values()]
    assert adam and all(float(s) == 8 for s in adam)
    assert [d["consumed"] for d in state["data"]] == [64, 64] and state["counters"]["real_pairs_seen"] == 64
    recs = [json.loads(x) for x in (tmp_path / "negclip" / "metrics.jsonl").read_text().splitlines()]
    refs = [json.loads(x) for x in (Path(ref["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 9))
    # the same objective over the same global batches: the losses after the resume agree closely
    for got, want in zip(recs[4:], refs[4:]):
        assert got["loss/loss"] == pytest.approx(want["loss/loss"], rel=1e-3)


@pytest.mark.parametrize("extra", [{"loss.name": "fscclip"}, {"loss.name": "degla"}, {"loss.name": "clic"},
                                   {"loss.name": "negclip", "loss.distill_weight": "1.0"}])
def test_accumulation_trains_objectives_with_tokens_teachers_and_transforms(tmp_path, extra):
    """Tokens, teachers, further positives and CLIC's batch transform accumulate exactly (tests/test_accum.py):
    the config is accepted and the trainer runs them in micro-batches; step 1's loss equals the plain run's."""
    from tripletclip.train.checks import run_problems

    losses = []
    for accum in (1, 2):
        cfg = _cfg(tmp_path / str(accum), "clip", steps=1, **{"train.accum_steps": str(accum), "train.log_every": "1",
                                                               **extra})
        assert not [p for p in run_problems(cfg) if p.startswith("train.accum_steps")]
        res = train(cfg)
        losses.append(json.loads((Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()[0])["loss/loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_a_run_starts_at_the_configured_logit_scale(tmp_path):
    """model.logit_scale sets the starting temperature (docs/world_experiments.md, section 11): with lr 0 nothing
    moves it, so the logged scale is the configured one, not the weights' CLIP init of 1/0.07."""
    recs = []
    for scale in ("0", "50"):
        res = train(_cfg(tmp_path / scale, "clip", steps=2, **{"model.logit_scale": scale, "optim.lr": "1e-12"}))
        recs.append(json.loads((Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1]))
    assert recs[0]["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-4)
    assert recs[1]["logit_scale"] == pytest.approx(50.0, rel=1e-4)


def test_a_starting_logit_scale_above_the_clamp_is_refused():
    from tripletclip.config.validate import config_problems

    cfg = load_config(None, [*DATA, "model.logit_scale=150"])
    assert any("model.logit_scale=150" in p and "optim.max_logit_scale" in p for p in config_problems(cfg))
    assert not config_problems(load_config(None, [*DATA, "model.logit_scale=100"]))


def test_fscclip_local_loss_trains_on_the_spatial_cnn(tmp_path):
    """FSC-CLIP's local hard-negative loss takes the world CNN's per-cell tokens (models/towers.py), so the world's
    shape-perceiving tower runs it (issue 24), not only a ViT."""
    res = train(_cfg(tmp_path, "fscclip", steps=2, **{"model.name": "world-cnn"}))
    last = json.loads((Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(last["loss/loss"]) and np.isfinite(last["loss/hn_local"]) and last["loss/hn_local"] > 0
