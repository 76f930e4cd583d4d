"""One live writer per output folder: an OS lock (``flock``) on a file in the folder, held while the process lives.

The kernel releases the lock when the process ends, however it ends (SIGKILL included), so a killed run never
blocks its own resume and there is no stale lock to clean up. A process that finds the folder taken is refused
with one line naming the holder's PID, which the holder writes into its lock file.

Sharded generation jobs have several legitimate writers (rank r of W writes units u with u % W == r): each rank
holds ``.lock`` shared plus its own ``.lock.rank<r>of<W>`` exclusively, while a single-process writer holds
``.lock`` exclusively. So ranks of one job run side by side, and a second copy of a rank, or a single-process
job next to a sharded one, is refused. A lock belongs to the process that took it and to no child: a process
forked after the lock (a data loader worker) would otherwise share the ``flock`` and keep the folder locked
for as long as it outlives its SIGKILLed parent, blocking the run's immediate ``--resume``; so every forked
child closes its copies at once (:func:`os.register_at_fork`; spawned and exec'd children never get them, the
descriptors are not inheritable). NOTE: ``flock`` is per host on some network file systems (Linux maps
it to POSIX locks on NFS, which do cross hosts); the recorded host name makes a cross-host holder visible.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None  # type: ignore[assignment]

from tripletclip.errors import ConflictError

LOCK_NAME = ".lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def _drop_in_child() -> None:
    """In a forked child: close the inherited lock descriptors (the parent's locks stay with the parent)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "unknown"


def is_held(path: Path, by_writer_only: bool = False) -> bool:
    """Whether a live process holds a ``flock`` on ``path`` (False when it does not exist).

    ``by_writer_only``: count only exclusive holders (a shared probe passes readers' shared locks).
    """
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if by_writer_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class FolderLock:
    """Hold ``folder`` for this process (see the module docstring); ``release()`` or process exit frees it.

    ``what`` names the kind of writer and ``hint`` what the refused user can do instead, for the message.
    """

    def __init__(self, folder: str | Path, what: str, hint: str, rank: int = 0, world: int = 1) -> None:
        self.folder = Path(folder)
        self.what, self.hint = what, hint
        self._fds: list[int] = []
        self._pid = os.getpid()
        if fcntl is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            if world == 1:
                self._take(self.folder / LOCK_NAME, exclusive=True)
            else:
                self._take(self.folder / LOCK_NAME, exclusive=False)
                self._take(self.folder / f"{LOCK_NAME}.rank{rank}of{world}", exclusive=True)
        except BaseException:
            self.release()
            raise

    def _take(self, path: Path, exclusive: bool) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConflictError(f"{self.folder} is in use by {self._holders(path)} ({self.what}); wait for it to end, "
                                f"or {self.hint}") from None
        self._fds.append(fd)
        _HELD.add(fd)
        if exclusive:  # the PID a refused process names
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def _holders(self, path: Path) -> str:
        if path.name == LOCK_NAME:  # held shared by the ranks of a sharded job: they name themselves
            ranks = [_holder(p) for p in sorted(self.folder.glob(f"{LOCK_NAME}.rank*")) if is_held(p, by_writer_only=True)]
            if ranks:
                return ", ".join(ranks)
        return _holder(path)

    def release(self) -> None:
        """Free the folder (closing the descriptors drops the locks)."""
        if os.getpid() == self._pid:  # in a forked child the copies are closed already (_drop_in_child)
            for fd in self._fds:
                _HELD.discard(fd)
                os.close(fd)
        self._fds = []

    def __del__(self) -> None:  # an owner dropped without release() frees the folder too
        self.release()

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

