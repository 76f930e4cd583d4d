"""A one-line progress bar for training (rich), with loss and pairs/s; silent on non-main ranks."""
from __future__ import annotations

from typing import Any

from tripletclip.utils.progress import progress_bar


class StepProgress:
    """Steps done of ``total``, the last loss and the measured pairs/s (started at ``start`` on resume)."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, label: str = "train") -> None:
        self.enabled = enabled
        self._p: Any = None
        if not enabled:
            return
        self._p = progress_bar(fields="loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} pairs/s", elapsed=True)
        self._task = self._p.add_task(label, total=total, completed=start, loss=float("nan"), rate=0.0)
        self._p.start()

    def update(self, step: int, loss: float | None, rate: float) -> None:
        """``loss`` None keeps the last shown value (it is read from the device on logging steps only)."""
        if self._p is not None:
            fields = {"rate": rate} if loss is None else {"rate": rate, "loss": loss}
            self._p.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
