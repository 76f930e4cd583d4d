"""Metrics sinks: ``metrics.jsonl`` in the run folder always; TensorBoard and W&B when asked (off by default)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

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
            self._wandb = wb.init(project=wandb_project, dir=str(run_dir), config=config, resume="allow" if resume else None)

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


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
