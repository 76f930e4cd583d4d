"""Run folders: where a run lives, who owns it, how ``--resume`` finds it, and the provenance record written at start.

A run folder is owned by one live process (:class:`~tripletclip.utils.lock.FolderLock`): a second run writing
the same ``train.output_dir`` / ``train.name`` is refused with the holder's PID, while a SIGKILLed run releases
the folder with its death and so never blocks its own ``--resume``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from tripletclip.config import RunConfig, config_to_dict
from tripletclip.config.schema import DataConfig
from tripletclip.data.source import Source
from tripletclip.errors import ConflictError, NotFoundError
from tripletclip.train.checkpoint import newest_intact, remove_partial_writes, step_folders, verified_checkpoint
from tripletclip.utils.lock import FolderLock
from tripletclip.utils.ownership import RUN, claim_output
from tripletclip.utils.provenance import code_version, machine_info


def data_fingerprint(cfg: DataConfig, source: Source) -> dict[str, Any]:
    """The data's identity as the source resolved it (brace patterns, globs, folders, ``::`` lists)."""
    return {"type": cfg.type, "train": cfg.train, **source.fingerprint()}


def _run_dir(cfg: RunConfig, resume: Optional[str]) -> tuple[Path, Optional[Path]]:
    """(run folder, the checkpoint folder ``--resume`` names explicitly or None)."""
    out = Path(cfg.train.output_dir)
    if resume == "latest":
        if cfg.train.name:
            return out / cfg.train.name, None
        runs = sorted((p for p in out.glob("*") if step_folders(p)), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise NotFoundError(f"--resume latest: no run with a checkpoint under {out}; start without --resume")
        return runs[-1], None
    if resume:
        p = Path(resume)
        if not p.exists():
            raise NotFoundError(f"--resume {resume}: no such run or checkpoint folder")
        if p.is_file() or (p / "meta.json").is_file() or (p / "model.safetensors").is_file():
            ckpt = p.parent if p.is_file() else p
            return (ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent), ckpt
        return p, None
    return out / (cfg.train.name or f"{cfg.loss.name}-{time.strftime('%Y%m%d-%H%M%S')}"), None


def open_run(cfg: RunConfig, resume: Optional[str]) -> tuple[Path, Optional[Path], FolderLock]:
    """Claim the run folder (rank 0): (folder, verified checkpoint to resume from or None, the folder's lock).

    ``resume='latest'`` uses train.name's folder, or the newest run in train.output_dir that has a checkpoint;
    a run folder resumes from its newest intact checkpoint (a damaged newer one is moved aside with a warning);
    a checkpoint folder named explicitly must be intact. 'latest' in a folder without a checkpoint yet starts
    fresh there (a job killed before its first save). Leftovers of killed checkpoint writes are removed.
    """
    run_dir, explicit = _run_dir(cfg, resume)
    lock = FolderLock(run_dir, "another training run", "choose another train.name / train.output_dir")
    try:
        claim_output(run_dir, RUN, option="run folder")  # new, or a run: never the user's own files
        if not resume and step_folders(run_dir):
            raise ConflictError(f"{run_dir} already holds a run; pass --resume latest to continue it or choose train.name")
        remove_partial_writes(run_dir)
        ckpt = verified_checkpoint(explicit) if explicit else newest_intact(run_dir)
        if resume and resume != "latest" and ckpt is None:
            raise NotFoundError(f"--resume {resume}: no checkpoint in this run folder; start without --resume")
    except BaseException:
        lock.release()
        raise
    return run_dir, ckpt, lock


def write_run_info(run_dir: Path, cfg: RunConfig, env: Any, model_identity: dict[str, Any], data: dict[str, Any],
                   autocast: str = "fp32") -> None:
    """``run.json``: code version, data hash, model identity, world size, machine: what produced the numbers."""
    info = {
        "code_version": code_version(),
        "data": data,
        "model": model_identity,
        "world_size": env.world_size,
        "global_batch": cfg.train.batch_size * env.world_size,
        "autocast": autocast,
        "machine": machine_info(),
        "config": config_to_dict(cfg),
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=1, default=str))
