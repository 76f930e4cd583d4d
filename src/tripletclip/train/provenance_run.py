"""Run folders: where a run lives, how ``--resume`` finds it, and the provenance record written at start."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from tripletclip.config import RunConfig, config_to_dict
from tripletclip.config.schema import DataConfig
from tripletclip.models.run_model import resolve_checkpoint
from tripletclip.data.source import Source
from tripletclip.utils.provenance import code_version, machine_info


def data_fingerprint(cfg: DataConfig, source: Source) -> dict[str, Any]:
    """The data's identity as the source resolved it (brace patterns, globs, folders, ``::`` lists)."""
    return {"type": cfg.type, "train": cfg.train, **source.fingerprint()}


def resolve_run_dir(cfg: RunConfig, resume: Optional[str], is_main: bool) -> tuple[Path, Optional[Path]]:
    """(run folder, checkpoint to resume from or None). ``resume='latest'`` uses train.name's folder, or the
    newest run in train.output_dir that has a checkpoint."""
    out = Path(cfg.train.output_dir)
    ckpt: Optional[Path] = None
    if resume == "latest":
        if cfg.train.name:
            run_dir = out / cfg.train.name
        else:
            runs = sorted((p for p in out.glob("*") if (p / "checkpoints" / "latest").is_file()), key=lambda p: p.stat().st_mtime)
            if not runs:
                raise FileNotFoundError(f"--resume latest: no run with a checkpoint under {out}; start without --resume")
            run_dir = runs[-1]
        if (run_dir / "checkpoints" / "latest").is_file():
            ckpt = resolve_checkpoint(run_dir)
        # 'latest' with no checkpoint yet starts fresh in that folder (a job killed before its first save)
    elif resume:
        ckpt = resolve_checkpoint(resume)
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    else:
        name = cfg.train.name or f"{cfg.loss.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = out / name
        if is_main and (run_dir / "checkpoints" / "latest").is_file():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume latest to continue it or choose train.name")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, ckpt


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
