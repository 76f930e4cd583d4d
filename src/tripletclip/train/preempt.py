"""Preemption: a signal makes every rank finish its step, save one checkpoint together, and exit cleanly.

SLURM sends SIGTERM before it ends or preempts a job, or a chosen signal ahead of time
(``#SBATCH --signal=USR1@120``: 120 s before the time limit; scripts/slurm/train.sbatch). The handler only sets a
flag; the loop looks at it after a step, so the state saved is that of a finished step and ``--resume latest``
continues bitwise (on CPU). A signal may reach one rank only (``kill`` on one pid, or ranks that see it in a
different step), so the ranks *agree* before stopping: every ``check_every`` steps they all-reduce (MAX) a
one-element flag. The flag is a CPU tensor reduced over a gloo group (a side group when training uses NCCL), so
the agreement never waits for the GPU: one small host-to-host message per check. A single process reads its own
flag and communicates nothing. ``check_every`` trades that message against the delay to the checkpoint
(docs/training.md).
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Optional, Sequence

import torch

from tripletclip.errors import InputError
from tripletclip.utils.distributed import is_dist

log = logging.getLogger(__name__)


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``["SIGTERM", "USR1"]`` -> signal numbers; an unknown name is an InputError naming the key."""
    out = []
    for name in names:
        key = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
        sig = signal.Signals.__members__.get(key)
        if sig is None or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise InputError(f"train.preempt_signals: {name!r} is not a signal that can be caught "
                             "(e.g. SIGTERM, SIGUSR1, SIGUSR2)")
        out.append(sig)
    return out


def ignore_in_workers(signals: Sequence[int]) -> None:
    """Data-loader workers ignore the preemption signals (SLURM signals every process of a step): the main
    process saves and then shuts them down itself."""
    for s in signals:
        signal.signal(s, signal.SIG_IGN)


class Preemption:
    """Installs handlers for ``signals``; :meth:`should_stop` says (on every rank alike) when to checkpoint and exit."""

    def __init__(self, signals: Sequence[str], check_every: int = 1) -> None:
        self.signals = parse_signals(signals)
        self.check_every = max(1, int(check_every))
        self.received: Optional[str] = None
        self._group = None
        if is_dist() and torch.distributed.get_backend() != "gloo":  # collective call: every rank makes it
            self._group = torch.distributed.new_group(backend="gloo")
        self._previous: dict[int, object] = {}
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
            log.warning("received %s: the run saves a checkpoint after this step and exits", self.received)

    def should_stop(self, step: int) -> bool:
        """True on every rank once any rank received a signal (decided every ``check_every`` steps)."""
        if not is_dist():
            return self.received is not None
        if step % self.check_every:
            return False
        flag = torch.tensor([1 if self.received else 0], dtype=torch.int32)  # host memory: no GPU wait
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._group)
        stop = bool(flag[0] > 0)
        if stop and self.received is None:
            self.received = "a signal to another rank"
        return stop

    def restore(self) -> None:
        """Put the previous handlers back (the run is over)."""
        for s, h in self._previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        self._previous.clear()
