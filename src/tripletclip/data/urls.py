"""Shard locations as webdataset writes them: local paths, ``pipe:CMD`` and fsspec URLs; one open per shard pass.

- ``DIR/{0000..0003}.tar``, folders, globs, ``a::b`` lists: local files (:mod:`tripletclip.data.patterns`);
  ``file:///abs/path.tar`` is a local path too.
- ``pipe:CMD``: the shard is the command's standard output (``pipe:cat DIR/{0000..0003}.tar``,
  ``pipe:aws s3 cp s3://bucket/{0000..0999}.tar -``); braces expand in the whole string first, so each shard
  runs its own command, as in webdataset. A command that fails (non-zero exit status, command not found) is a
  one-line :class:`~tripletclip.data.contract.DataError` naming the shard's command and its last error line.
- ``s3://``, ``gs://``, ``http(s)://`` and any other ``scheme://`` that fsspec knows: read with ``fsspec.open``
  (an optional dependency: ``pip install 'tripletclip[urls]'`` plus the scheme's backend, e.g. ``s3fs``); a
  missing package is a one-line DataError at start, naming the package.

Unlike webdataset, a ``pipe:`` command's exit status is checked when its stream ends, so a failed download is
never read as a short or empty shard.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import unquote, urlparse

from tripletclip.data.contract import DataError
from tripletclip.data.patterns import expand_braces, expand_patterns

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_DRAIN_LIMIT = 1 << 20  # bytes read after a tar's end to see the command exit (tar pads to 10 kB records)
_EXIT_WAIT_S = 60.0


def is_url(location: str) -> bool:
    """A ``pipe:`` command or a ``scheme://`` URL other than ``file://`` (read as a stream, never stat'ed)."""
    if location.startswith("pipe:"):
        return True
    m = _SCHEME.match(location)
    return bool(m) and m.group(1).lower() != "file"


def shard_name(location: str) -> str:
    """The shard's file name (``0003.tar``) for per-sample seeds and messages, whatever form names it, so a
    shard read from a path, ``pipe:cat PATH`` or ``s3://.../0003.tar`` gives the same samples the same seeds."""
    if location.startswith("pipe:"):
        # the last argument that looks like a path or URL: `cat d/0003.tar | zcat`, `aws s3 cp s3://b/0003.tar -`
        args = [a.strip("'\"") for a in location[5:].split() if not a.startswith("-")]
        paths = [a for a in args if "/" in a or "." in a]
        return os.path.basename(paths[-1].rstrip("/")) if paths else location
    if _SCHEME.match(location):
        return os.path.basename(urlparse(location).path.rstrip("/")) or location
    return Path(location).name


def _local_path(file_url: str) -> str:
    return unquote(urlparse(file_url).path)


def _check_fsspec(url: str, what: str) -> None:
    """A one-line DataError when reading ``url`` needs a package that is not installed."""
    scheme = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
    try:
        import fsspec
    except ImportError:
        raise DataError(f"{what} '{url}': reading {scheme}:// URLs needs fsspec; pip install 'tripletclip[urls]' "
                        "(and the scheme's backend, e.g. s3fs, gcsfs)") from None
    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as e:  # fsspec names the backend to install
        raise DataError(f"{what} '{url}': {scheme}:// needs a package that is not installed ({e})") from None
    except ValueError:
        raise DataError(f"{what} '{url}': fsspec knows no scheme '{scheme}://'; check the URL") from None


def expand_shard_urls(spec: str, what: str = "data.train") -> list[str]:
    """Every shard named by ``spec``, in order: local files as :func:`expand_patterns` finds them (checked to
    exist), ``pipe:`` commands and URLs brace-expanded (not checked: a missing one fails when it is read)."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split("::")):
        if not part:
            continue
        if not is_url(part):
            local = _local_path(part) if part.lower().startswith("file://") else part
            out.extend(expand_patterns(local, ("tar",), what))
            continue
        urls = expand_braces(part)
        if not part.startswith("pipe:"):
            if any(c in part for c in "*?["):
                raise DataError(f"{what} '{part}': globs are not expanded in URLs; name the shards with braces, "
                                "e.g. s3://bucket/train-{000000..000099}.tar")
            _check_fsspec(urls[0], what)
        out.extend(urls)
    if not out:
        raise DataError(f"{what} '{spec}' names no file")
    return out


@contextmanager
def open_shard(location: str) -> Iterator[BinaryIO]:
    """A binary stream of one shard, opened once: a local file, a command's stdout or an fsspec file.

    Raises FileNotFoundError / OSError as opening raises them; a ``pipe:`` command's failure is a DataError.
    """
    if location.startswith("pipe:"):
        with _pipe(location) as f:
            yield f
    elif is_url(location):
        import fsspec

        with fsspec.open(location, "rb") as f:
            yield f
    else:
        path = _local_path(location) if location.lower().startswith("file://") else location
        with open(path, "rb", buffering=1 << 16) as f:
            yield f


def _tail(f: BinaryIO, limit: int = 300) -> str:
    f.seek(0)
    lines = [x.strip() for x in f.read().decode("utf-8", "replace").splitlines() if x.strip()]
    return (lines[-1][:limit] if lines else "no error output")


def _drain(out: BinaryIO) -> bool:
    """Read the rest of a command's stdout (at most _DRAIN_LIMIT bytes); True when it reached the end."""
    left = _DRAIN_LIMIT
    while left > 0:
        chunk = out.read(min(left, 1 << 16))
        if not chunk:
            return True
        left -= len(chunk)
    return False


@contextmanager
def _pipe(location: str) -> Iterator[BinaryIO]:
    """stdout of ``pipe:CMD``; when the reader is done (or failed), a non-zero exit is a one-line DataError."""
    cmd = location[len("pipe:"):]
    with tempfile.TemporaryFile() as err:
        # stdin closed: a command waiting for input must not hang the worker; stderr to a file: a pipe could
        # fill up and block the command while we read its stdout
        proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                bufsize=1 << 16)
        assert proc.stdout is not None
        try:
            try:
                yield proc.stdout
            except Exception:  # the reader failed: when the command failed too, that is the cause to report
                if _drain(proc.stdout) and _exit_status(proc) not in (0, None):
                    raise _failed(location, proc, err) from None
                raise
            if _drain(proc.stdout) and _exit_status(proc) not in (0, None):
                raise _failed(location, proc, err)
        finally:  # the reader stopped early (a worker shut down) or the command never ends: stop it
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _exit_status(proc: subprocess.Popen) -> int | None:
    """The command's exit status once its stdout ended (None if it keeps running past _EXIT_WAIT_S)."""
    try:
        return proc.wait(timeout=_EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        return None


def _failed(location: str, proc: subprocess.Popen, err: BinaryIO) -> DataError:
    return DataError(f"{location}: command failed with exit status {proc.returncode} ({_tail(err)}); check the "
                     "command in data.train")
