"""Full-state, step-based checkpoints: written atomically, verified before use, loaded without executing pickled code.

Layout: ``<run>/checkpoints/step_00000500/{model.safetensors, train_state.pt, meta.json}`` and a
``<run>/checkpoints/latest`` text file naming the newest complete one. A checkpoint folder is first written
under a temporary name and renamed into place, then ``latest`` is replaced atomically: a kill at any moment
leaves either the previous or the new checkpoint, never a torn one (leftover temporaries are removed at the
next start). ``train_state.pt`` holds only tensors, numbers, strings and containers, so
``torch.load(weights_only=True)`` reads it (no pickled code runs).

``meta.json`` records the size and sha256 of the other two files. A checkpoint damaged later (disk, copy, a
hand edit) is recognised before loading: resume falls back to the newest intact checkpoint with a warning
naming what was wrong, and evaluation refuses it with one line. A load failure is reported as a damaged file,
never with advice to load it unsafely.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tripletclip.errors import NotFoundError, UserError
from tripletclip.utils.diskfull import write_guard
from tripletclip.utils.files import sha256_file
from tripletclip.utils.lock import is_held

try:
    import fcntl
except ImportError:  # Windows: no holds (an export there may race with pruning)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

WEIGHTS, STATE, META = "model.safetensors", "train_state.pt", "meta.json"


class CheckpointError(UserError):
    """A checkpoint that cannot be used: the message names the folder, the file and what is wrong."""


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
    """Write one checkpoint atomically (sizes and sha256 of its files in meta.json) and prune older ones beyond ``keep``."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".tmp_{name}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # disk full / size limit / permissions: one line naming the folder and the free space; the partial write
    # is removed and the previous checkpoint stays as it was
    kept = f"the previous checkpoint ({_newest_name(run_dir)}) is intact" if step_folders(run_dir) else "nothing was lost"
    try:
        with write_guard(ckpt_root, f"checkpoint step {step}", kept):
            tmp.mkdir()
            save_file(weights, str(tmp / WEIGHTS))
            torch.save(train_state, tmp / STATE)
            files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": sha256_file(tmp / f)} for f in (WEIGHTS, STATE)}
            (tmp / META).write_text(json.dumps({"step": step, **meta, "files": files}, indent=1, default=str))
            for f in (WEIGHTS, STATE, META):
                _fsync(tmp / f)
            _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # a re-run reaching the same step replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = ckpt_root / f".latest_{os.getpid()}"
    with write_guard(ckpt_root / "latest", f"the pointer to checkpoint step {step}", f"{name} itself is complete"):
        try:
            latest_tmp.write_text(name + "\n")
            os.replace(latest_tmp, ckpt_root / "latest")
        finally:
            latest_tmp.unlink(missing_ok=True)
    _fsync(ckpt_root)
    if keep > 0:
        with _prune_lock(ckpt_root):  # a checkpoint an export or evaluation holds stays until a later save
            for old in step_folders(run_dir)[:-keep]:
                if not is_held(old):
                    shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def _prune_lock(ckpt_root: Path) -> Iterator[None]:
    """Exclusive ``flock`` on the checkpoints folder itself while pruning, or while a reader places its hold, so
    that no checkpoint is deleted under a new hold (a lock on the folder: no file is left behind)."""
    if fcntl is None or not ckpt_root.is_dir():
        yield
        return
    fd = os.open(ckpt_root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_checkpoint(path: str | Path, tries: int = 5) -> Iterator[Path]:
    """The checkpoint ``path`` resolves to, held against the run's pruning while the block runs.

    A run that saves meanwhile keeps a held checkpoint until a later save; a checkpoint pruned between
    resolving and holding is resolved again (the run's newer one). The hold dies with its process.
    """
    for _ in range(tries):
        ckpt = resolve_checkpoint(path)
        if fcntl is None:
            yield ckpt
            return
        with _prune_lock(ckpt.parent):
            try:
                fd = os.open(ckpt, os.O_RDONLY)
            except FileNotFoundError:  # pruned since it was resolved
                continue
            fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield ckpt
        finally:
            os.close(fd)
        return
    raise CheckpointError(f"{path}: its checkpoints were replaced {tries} times while being opened; try again")


def _newest_name(run_dir: Path) -> str:
    steps = step_folders(run_dir)
    return steps[-1].name if steps else ""


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so that a crash after the rename cannot leave a renamed but empty file."""
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


def step_folders(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (names are zero-padded step numbers)."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if p.is_dir())


def remove_partial_writes(run_dir: str | Path) -> list[str]:
    """Delete what killed checkpoint writes left behind (``.tmp_step_*``, ``.latest_*``); call it holding the run's lock."""
    root = Path(run_dir) / "checkpoints"
    removed = []
    for p in list(root.glob(".tmp_step_*")) + list(root.glob(".latest_*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p.name)
    if removed:
        log.info("removed %d leftover(s) of killed checkpoint writes in %s", len(removed), root)
    return removed


def resolve_checkpoint(path: str | Path) -> Path:
    """Run folder -> its latest checkpoint folder; checkpoint folder or model.safetensors -> that checkpoint."""
    p = Path(path)
    if p.is_file() and p.name == WEIGHTS:
        return p.parent
    if (p / WEIGHTS).is_file() or (p / META).is_file():
        return p
    latest = p / "checkpoints" / "latest"
    named = latest.read_text(errors="replace").strip() if latest.is_file() else ""
    if named and (p / "checkpoints" / named).is_dir():
        return p / "checkpoints" / named
    steps = step_folders(p) if (p / "checkpoints").is_dir() else []
    if steps:  # 'latest' lost or not yet written: the newest folder
        return steps[-1]
    raise NotFoundError(f"{p}: no tripletclip checkpoint here (expected model.safetensors, or a run folder with "
                        "checkpoints/)")


def checkpoint_problem(ckpt: Path, with_state: bool = True) -> str:
    """What is wrong with a checkpoint folder, '' if nothing: meta.json must parse and every file it records must
    have the recorded size and sha256 (``with_state=False``: the weights only, for evaluation)."""
    try:
        meta = json.loads((ckpt / META).read_text())
    except FileNotFoundError:
        return f"{META} is missing"
    except (OSError, ValueError) as e:
        return f"{META} is not valid JSON ({type(e).__name__})"
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        return f"{META} lacks the run config"
    # checkpoints written before checksums existed list no files: only presence is checked, loading tells the rest
    files = meta.get("files") or {WEIGHTS: None, STATE: None}
    for name, rec in files.items():
        if name == STATE and not with_state:
            continue
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if not rec:
            continue
        size = path.stat().st_size
        if size != rec.get("bytes"):
            return f"{name} has {size} bytes, {META} records {rec.get('bytes')} (truncated or replaced)"
        if sha256_file(path) != rec.get("sha256"):
            return f"{name} does not match the sha256 recorded in {META} (damaged)"
    return ""


def verified_checkpoint(path: str | Path, with_state: bool = True) -> Path:
    """:func:`resolve_checkpoint`, then :func:`checkpoint_problem`; a damaged checkpoint raises CheckpointError."""
    ckpt = resolve_checkpoint(path)
    problem = checkpoint_problem(ckpt, with_state)
    if problem:
        raise CheckpointError(f"{ckpt}: damaged checkpoint: {problem}; use another checkpoint of the run")
    return ckpt


def newest_intact(run_dir: str | Path) -> Optional[Path]:
    """The newest checkpoint of a run that passes verification, or None if the run has none.

    Newer damaged ones are moved aside to ``checkpoints/damaged-step_*`` (kept for inspection, out of the way of
    pruning and of the next ``--resume``) with a warning naming what was wrong. No intact one: CheckpointError.
    """
    damaged = []
    for ckpt in reversed(step_folders(run_dir)):
        problem = checkpoint_problem(ckpt)
        if not problem:
            for bad, why in damaged:
                log.warning("checkpoint %s is damaged (%s); moved to %s; resuming from %s", bad.name, why,
                            _move_aside(bad).name, ckpt.name)
            return ckpt
        damaged.append((ckpt, problem))
    if damaged:
        raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: no intact checkpoint ("
                              + "; ".join(f"{c.name}: {why}" for c, why in damaged)
                              + "); start a new run under another train.name")
    return None


def _move_aside(ckpt: Path) -> Path:
    target, n = ckpt.with_name(f"damaged-{ckpt.name}"), 1
    while target.exists():
        target, n = ckpt.with_name(f"damaged-{ckpt.name}.{n}"), n + 1
    os.replace(ckpt, target)
    return target


def load_weights(ckpt: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder; an unreadable file is a CheckpointError."""
    try:
        return load_file(str(ckpt / WEIGHTS), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt / WEIGHTS}: cannot be read ({type(e).__name__}): the file is damaged; "
                              "use another checkpoint of the run") from None


def load_checkpoint(path: str | Path, map_location: str = "cpu",
                    verified: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model weights, train state, meta) of a checkpoint or a run folder's latest, verified first unless
    ``verified`` says the caller just did (:func:`newest_intact`, :func:`verified_checkpoint`)."""
    ckpt = resolve_checkpoint(path) if verified else verified_checkpoint(path)
    weights = load_weights(ckpt, map_location)
    try:
        state = torch.load(ckpt / STATE, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as e:
        # NOTE: torch's own message suggests weights_only=False, which would run code from the file: never.
        raise CheckpointError(f"{ckpt / STATE}: cannot be read ({type(e).__name__}): the file is damaged; "
                              "use another checkpoint of the run") from None
    return weights, state, json.loads((ckpt / META).read_text())
