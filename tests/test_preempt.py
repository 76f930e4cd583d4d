"""Preemption (train/preempt.py): a signal to ONE rank of a 2-process gloo run makes both ranks finish the
step, write one checkpoint, log one line and exit 0; ``--resume latest`` then ends bitwise equal to an
uninterrupted run. To signal "after step 3" deterministically on a shared machine, both ranks are paused
(SIGSTOP) as soon as step 3 is logged, the signal is sent to rank 1, and both continue (SIGCONT).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tripletclip.errors import InputError
from tripletclip.train.preempt import Preemption, parse_signals

SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 24


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, name: str, resume: bool = False, extra: tuple[str, ...] = ()) -> list[subprocess.Popen]:
    cmd = [sys.executable, "-m", "tripletclip.cli", "train", "data.type=synthetic", "data.train=64", "data.workers=0",
           "model.name=test-vit-tiny", "loss.name=tripletclip", "train.batch_size=4", f"train.steps={STEPS}",
           "train.log_every=1", "train.save_every=0", f"train.output_dir={out}", f"train.name={name}",
           "train.progress=false", "train.threads=1", "optim.warmup_steps=2", *extra]
    cmd += ["--resume", "latest"] if resume else []
    port = _port()
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in launch}
    base.update(PYTHONPATH=os.pathsep.join([str(SRC), base.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    return [subprocess.Popen(cmd, env={**base, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    out = []
    try:
        for p in procs:
            out.append((p.wait(timeout=timeout), p.stdout.read()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


def _clean_run(out: Path) -> Path:
    results = _finish(_launch(out, "clean"), timeout=300)
    assert all(rc == 0 for rc, _ in results), results[0][1][-2000:] + results[1][1][-2000:]
    return out / "clean"


def _signal_after(out: Path, procs: list[subprocess.Popen], lines_before: int, rank: int, sig: int) -> None:
    """Pause both ranks once 3 more steps are logged, signal ``rank`` only, continue both."""
    metrics = out / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines_before + 3:
            break
        time.sleep(0.01)
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    os.kill(procs[rank].pid, sig)  # one rank only: the other hears of it through the ranks' agreement
    for p in procs:
        os.kill(p.pid, signal.SIGCONT)


def _preempted(out: Path, results: list[tuple[int, str]], after: int) -> int:
    """Both ranks exited 0 leaving one new checkpoint; rank 0 logged one line; returns the checkpoint's step."""
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    steps = sorted(int(p.name[5:]) for p in (out / "run" / "checkpoints").glob("step_*"))
    new = [s for s in steps if s > after]
    assert len(new) == 1, steps
    assert after + 3 <= new[0] < STEPS, "the run finished before the signal arrived"
    log = results[0][1]
    assert sum("preempted" in ln for ln in log.splitlines()) == 1 and f"step {new[0]}" in log
    return new[0]


@pytest.mark.slow
def test_a_signal_to_one_rank_checkpoints_both_and_resumes_bitwise(tmp_path):
    """SIGUSR1 to rank 1 after step 3, resume; SIGTERM to rank 0 three steps later, resume to the end:
    bitwise the weights and the logged losses of an uninterrupted 2-rank run."""
    clean = _clean_run(tmp_path)
    procs = _launch(tmp_path, "run")
    _signal_after(tmp_path, procs, 0, 1, signal.SIGUSR1)
    t0 = time.time()
    first = _preempted(tmp_path, _finish(procs, timeout=60), 0)
    assert time.time() - t0 < 60
    procs = _launch(tmp_path, "run", resume=True)
    _signal_after(tmp_path, procs, first, 0, signal.SIGTERM)
    t0 = time.time()
    _preempted(tmp_path, _finish(procs, timeout=60), first)
    assert time.time() - t0 < 60
    results = _finish(_launch(tmp_path, "run", resume=True), timeout=300)
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-2000:]
    a, b = _weights(clean, STEPS), _weights(tmp_path / "run", STEPS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(x)["loss/loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (clean, tmp_path / "run")]
    assert losses[0] == losses[1]


def test_single_process_stops_on_its_own_flag_without_a_collective():
    pre = Preemption(["USR1"])
    try:
        assert not pre.should_stop(1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert pre.should_stop(2) and pre.received == "SIGUSR1"
    finally:
        pre.restore()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_names_are_checked():
    assert parse_signals(["SIGTERM", "usr1", "USR2"]) == [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]
    with pytest.raises(InputError, match="train.preempt_signals"):
        parse_signals(["SIGKILL"])
    with pytest.raises(InputError, match="train.preempt_signals"):
        parse_signals(["NOPE"])
