"""Disk full, file too large and permission errors as one line that names the path and the free space.

Writers (checkpoints, world shards, negatives units) write under temporary names and rename, so a failed write
loses nothing: the previous checkpoint or unit stays intact. What remains is telling the user what happened,
instead of ``SafetensorError ... os error 27`` or torch's ``unexpected pos`` from deep inside a library.
:func:`write_guard` turns such a failure into :class:`WriteError` (a :class:`~tripletclip.errors.UserError`).
"""
from __future__ import annotations

import contextlib
import errno
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional

from tripletclip.errors import UserError

_SPACE = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is larger than allowed (ulimit -f or quota)",
          errno.EDQUOT: "the disk quota is used up"}
_DENIED = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
           errno.EROFS: "the file system is read-only"}
_OS_ERROR_RE = re.compile(r"os error (\d+)|errno (\d+)|\[Errno (\d+)\]", re.I)
# torch.save reports a failed write without its errno (PytorchStreamWriter)
_TORCH_WRITE_RE = re.compile(r"unexpected pos|PytorchStreamWriter failed|file write failed", re.I)


class WriteError(UserError, OSError):
    """A write the file system refused (space, size limit, permissions): path, free space, what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def free_space(path: str | Path) -> str:
    """Free space on the file system holding ``path`` (its nearest existing parent), e.g. '1.2 GB free'."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def write_problem(exc: BaseException) -> Optional[str]:
    """What the file system refused, if ``exc`` is a failed write (None: not a file-system refusal)."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None:
        m = _OS_ERROR_RE.search(str(exc))
        code = int(next(g for g in m.groups() if g)) if m else None
    if code in _SPACE:
        return _SPACE[code]
    if code in _DENIED:
        return _DENIED[code]
    if isinstance(exc, RuntimeError) and _TORCH_WRITE_RE.search(str(exc)):
        limit = _size_limit()
        if limit is not None:
            return f"the write failed: the disk is full or the file is larger than allowed (ulimit -f: {limit:,} bytes)"
        return "the write failed: the disk is full"
    return None


def _size_limit() -> Optional[int]:
    """This process's file size limit in bytes (``ulimit -f``), None when unlimited."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


@contextlib.contextmanager
def write_guard(path: str | Path, what: str, kept: str = "") -> Iterator[None]:
    """Re-raise a file-system refusal inside the block as WriteError naming ``path``, free space and ``kept``."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:  # noqa: BLE001  only refusals of the file system are converted; others re-raise as is
        problem = write_problem(e)
        if problem is None:
            raise
        where = getattr(e, "filename", None) or path
        raise WriteError(f"{where}: cannot write {what}: {problem} ({free_space(where)}); "
                         f"{kept + '; ' if kept else ''}free space or fix the permissions, then run again") from None
