"""``tripletclip train``: parse a preset + dotted overrides, call :func:`tripletclip.train.train`.

Around the call, what a user meets when a run does not simply go through (issue 20): ``--resume latest`` on a
run that already reached ``train.steps`` says so instead of training zero steps; Ctrl-C names the checkpoint
that was kept and the command that continues from it; a refused run leaves no folder or lock file it created.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Optional

import click

from tripletclip.errors import UserError
from tripletclip.utils.ownership import OWNER_FILE


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML preset from configs/ (may use _base_ includes).")
@click.option("--resume", default=None, help="'latest' (this run's newest checkpoint) or a checkpoint/run folder.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.argument("overrides", nargs=-1)
def train(config_path: str | None, resume: str | None, print_config: bool, overrides: tuple[str, ...]) -> None:
    """Train or fine-tune CLIP with a named objective.

    OVERRIDES are dotted key=value pairs, e.g. optim.lr=1e-4 train.steps=100 loss.name=tripletclip.
    Ctrl-C keeps the newest checkpoint (every train.save_every steps); continue with --resume latest.
    """
    from tripletclip.config import dump_config, load_config

    cfg = load_config(config_path, overrides)  # a ConfigError is a UserError: one line (tripletclip.cli)
    if print_config:
        click.echo(dump_config(cfg))
        return
    from tripletclip.train import train as run_train
    from tripletclip.train.preflight import preflight

    out = Path(cfg.train.output_dir)
    named = out / cfg.train.name if cfg.train.name else None
    resumed = _stop_if_finished(cfg, resume) if resume else None
    preflight(cfg)  # model, locks, optimiser groups and objective on a dry batch: a bad setting fails in seconds
    before = set(out.iterdir()) if out.is_dir() else None
    had_lock = named is not None and (named / ".lock").exists()
    try:
        result = run_train(cfg, resume=resume)
    except UserError:
        _remove_own_leftovers(out, before, named if not had_lock else None)
        raise
    except KeyboardInterrupt:
        run_dir = resumed or named or _new_run_folder(out, before)
        _report_interrupt(run_dir, out, config_path, overrides)
        raise click.exceptions.Exit(130) from None  # 128 + SIGINT, as a shell reports it
    click.echo(f"run folder: {result['run_dir']} (step {result['step']})")


def _stop_if_finished(cfg, resume: str) -> Optional[Path]:
    """The run folder ``--resume`` continues; if its checkpoint is already at ``train.steps``, say so and exit 0."""
    from tripletclip.train.checkpoint import checkpoint_problem, step_folders
    from tripletclip.train.provenance_run import _run_dir  # the trainer's own rule for which run --resume means

    run_dir, explicit = _run_dir(cfg, resume)
    ckpts = [explicit] if explicit is not None else step_folders(run_dir)
    steps = cfg.train.steps
    if ckpts and _step_of(ckpts[-1]) >= steps and not checkpoint_problem(ckpts[-1]):
        if os.environ.get("RANK", "0") == "0":  # every rank under torchrun stops here; one says why
            click.echo(f"{run_dir} is finished: its checkpoint {ckpts[-1].name} is at step {_step_of(ckpts[-1])} of "
                       f"train.steps={steps}; nothing to resume. To train longer, pass a larger train.steps "
                       f"with --resume {resume}.")
        raise click.exceptions.Exit(0)
    return run_dir


def _step_of(ckpt: Path) -> int:
    try:
        return int(ckpt.name.removeprefix("step_"))
    except ValueError:
        return -1


def _is_lock_file(p: Path) -> bool:
    return p.name == ".lock" or p.name.startswith(".lock.rank")


def _lock_free(p: Path) -> bool:
    """Nobody holds this lock file (a concurrent run that owns the folder keeps it)."""
    from tripletclip.utils.lock import is_held

    return not is_held(p)


def _remove_own_leftovers(out: Path, before: Optional[set[Path]], named_without_lock: Optional[Path]) -> None:
    """After a refused run: remove the run folder (and output folder) it created if they hold only its lock.

    NOTE: only what this process created and nobody holds: a folder that existed before keeps everything but a
    ``.lock`` this run added to it; a folder another live run claimed meanwhile is left alone.
    """
    if named_without_lock is not None and named_without_lock in (before or set()):
        lock = named_without_lock / ".lock"
        if lock.is_file() and _lock_free(lock):
            lock.unlink()
    if not out.is_dir():
        return
    for folder in set(out.iterdir()) - (before or set()):
        entries = list(folder.iterdir()) if folder.is_dir() else [None]
        # only its lock(s), free, and the claim record written with them (utils/ownership.py)
        if all(e is not None and (e.name == OWNER_FILE or (_is_lock_file(e) and _lock_free(e))) for e in entries):
            for e in entries:
                e.unlink()
            folder.rmdir()
    if before is None and not any(out.iterdir()):
        out.rmdir()


def _new_run_folder(out: Path, before: Optional[set[Path]]) -> Optional[Path]:
    new = [p for p in (set(out.iterdir()) if out.is_dir() else set()) - (before or set()) if p.is_dir()]
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


def _report_interrupt(run_dir: Optional[Path], out: Path, config_path: Optional[str],
                      overrides: tuple[str, ...]) -> None:
    """What Ctrl-C kept: the newest checkpoint of the run and the command that continues from it (rank 0 only)."""
    if os.environ.get("RANK", "0") != "0":
        return
    from tripletclip.train.checkpoint import step_folders

    ckpts = step_folders(run_dir) if run_dir is not None else []
    if not ckpts:
        where = f" in {run_dir}" if run_dir is not None else ""
        click.echo(f"Interrupted: no checkpoint was saved yet{where} (one is written every train.save_every steps); "
                   "nothing to resume, run the same command again to start over.", err=True)
        return
    # --resume latest finds the run by train.name under train.output_dir; a run elsewhere is named by its folder
    in_out = run_dir.parent.resolve() == out.resolve()
    words = ["tripletclip", "train"] + (["--config", config_path] if config_path else [])
    words += [o for o in overrides if not (in_out and o.startswith("train.name="))]
    words += [f"train.name={run_dir.name}", "--resume", "latest"] if in_out else ["--resume", str(run_dir)]
    click.echo(f"Interrupted: kept {ckpts[-1]} (step {_step_of(ckpts[-1])}); continue with:\n  {shlex.join(words)}",
               err=True)
