"""What produced a number: code version, data fingerprint, machine. Recorded in every run folder and result."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

import tripletclip

# Content-hash data up to this size at start; beyond it (CC3M is hundreds of GB) names and sizes are hashed
# and the method says so, unless a manifest written by our ShardWriter already carries a content hash.
CONTENT_HASH_LIMIT = 2 << 30


def code_version() -> dict[str, Any]:
    """Package version plus git commit and dirty flag of the source tree, when it is a checkout."""
    src = Path(tripletclip.__file__).resolve().parent
    info: dict[str, Any] = {"package": tripletclip.__version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=src, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(files: Iterable[str | Path]) -> dict[str, Any]:
    """A hash over data files: the ShardWriter manifests' hashes when they cover every file, the content when
    the files are small, else names and sizes (the method is recorded next to the hash)."""
    from tripletclip.data.shards import dataset_hash

    paths = [Path(f) for f in files]
    if paths and all((p.parent / "manifest.json").is_file() for p in paths):
        try:
            return {"method": "manifest-sha256", "sha256": dataset_hash(paths), "files": len(paths)}
        except (KeyError, ValueError):
            pass  # a manifest that does not list these files: hash them ourselves
    total = sum(p.stat().st_size for p in paths)
    h = hashlib.sha256()
    if total <= CONTENT_HASH_LIMIT:
        for p in paths:
            h.update(f"{p.name}:{sha256_file(p)}\n".encode())
        return {"method": "content-sha256", "sha256": h.hexdigest(), "files": len(paths), "bytes": total}
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return {"method": "names-and-sizes", "sha256": h.hexdigest(), "files": len(paths), "bytes": total}


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
