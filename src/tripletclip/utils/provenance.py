"""What produced a number: code version and machine, recorded in every run folder and result.

The data side of provenance (manifests, dataset hashes, fingerprints) is :mod:`tripletclip.data.manifest`'s.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import tripletclip


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
