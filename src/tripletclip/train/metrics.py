"""Metrics sinks: ``metrics.jsonl`` in the run folder always; TensorBoard and W&B when asked (off by default);
one plain line per logging step for job logs (:func:`log_line`).

W&B: the run id is kept in ``<run>/wandb_id``, so a resumed (e.g. requeued) run continues the same W&B run.
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from tripletclip.errors import UnavailableError


def _step_of(line: str) -> float:
    """The step of a metrics line; a torn or empty line counts as past every step (it is dropped)."""
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class MetricsLogger:
    """Append-only JSON lines (one object per log step), mirrored to optional sinks on the main rank."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False, wandb: bool = False,
                 wandb_project: str = "tripletclip", config: dict[str, Any] | None = None, resume: bool = False) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise UnavailableError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from e
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if wandb:
            try:
                import wandb as wb
            except ImportError as e:
                raise UnavailableError("train.wandb=true needs wandb: pip install wandb") from e
            id_file = Path(run_dir) / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else wb.util.generate_id()
            if not id_file.is_file():
                id_file.write_text(run_id + "\n")
            self._wandb = wb.init(project=wandb_project, dir=str(run_dir), config=config, id=run_id, resume="allow")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint step so the file reads as one uninterrupted run
        (and a last line torn by a kill mid-write); rewritten atomically, so a kill here loses nothing."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, self.path)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **{k: _jsonable(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated CUDA memory on a GPU, the peak resident set on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def log_line(step: int, total: int, rec: dict[str, Any]) -> str:
    """The plain job-log line of a metrics record: step, loss, lr, gradient norm (before clipping), pairs/s
    global and per rank, data-wait fraction, peak memory."""
    mem = rec.get("peak_memory_bytes")
    return (f"step {step}/{total} loss {_fmt(rec.get('loss/loss'), '.4f')} lr {_fmt(rec.get('lr'), '.3g')} "
            f"grad_norm {_fmt(rec.get('grad_norm'), '.3g')} pairs/s {_fmt(rec.get('pairs_per_s'), '.1f')} "
            f"(rank {_fmt(rec.get('pairs_per_s_rank'), '.1f')}) data_wait {_fmt(rec.get('data_wait_frac'), '.1%')} "
            f"peak_mem {_fmt(None if mem is None else mem / 2**30, '.2f')} GiB")


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
