"""Full-state, step-based checkpoints written atomically, loaded without executing pickled code.

Layout: ``<run>/checkpoints/step_00000500/{model.safetensors, train_state.pt, meta.json}`` and a
``<run>/checkpoints/latest`` text file naming the newest complete one. A checkpoint folder is first written
under a temporary name and renamed into place, then ``latest`` is replaced atomically: a kill at any moment
leaves either the previous or the new checkpoint, never a torn one. ``train_state.pt`` holds only tensors,
numbers, strings and containers, so ``torch.load(weights_only=True)`` reads it (no pickled code runs).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tripletclip.models.run_model import resolve_checkpoint


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in weights_only-loadable form."""
    np_state = np.random.get_state()
    return {
        "python": _to_lists(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, train_state: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune older ones beyond ``keep``."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".tmp_{name}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    torch.save(train_state, tmp / "train_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1, default=str))
    _fsync_dir(tmp)
    if final.exists():  # a re-run reaching the same step replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = ckpt_root / f".latest_{os.getpid()}"
    latest_tmp.write_text(name + "\n")
    os.replace(latest_tmp, ckpt_root / "latest")
    _fsync_dir(ckpt_root)
    steps = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model weights, train state, meta) of a checkpoint, a run folder's latest, or a model.safetensors."""
    ckpt = resolve_checkpoint(path)
    weights = load_file(str(ckpt / "model.safetensors"), device=map_location)
    state_file = ckpt / "train_state.pt"
    state = torch.load(state_file, map_location=map_location, weights_only=True) if state_file.is_file() else {}
    meta = json.loads((ckpt / "meta.json").read_text())
    return weights, state, meta
