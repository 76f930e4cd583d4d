"""Every output folder belongs to one command: a command writes only into a folder that is new or that it wrote.

A folder is *owned* by a kind of output (a training run, a world, a negatives job, an export, a demo) when it
carries that kind's marker: the file the kind always writes (``run.json``, ``world.json``, ``job.json``,
``tripletclip_export.json``, ``demo_meta.json``) or the claim record :data:`OWNER_FILE`, which
:func:`claim_output` writes before any other file (so a folder whose command was killed before its marker is
still recognised). :func:`claim_output` refuses, in one line that names them, a folder holding files of no
command (the user's), and a folder of another kind. ``overwrite`` removes only the files the kind writes (its
:attr:`OutputKind.writes` patterns, plus the files a manifest lists), never other files; nested outputs (the
demo's world and runs) are cleared by their own kind. :func:`check_separate` refuses an output folder equal
to, inside, or containing an input.
"""
from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from tripletclip.errors import ConflictError, InputError

OWNER_FILE = ".tripletclip-owner.json"
_LOCK_PREFIX = ".lock"  # utils/lock.py's files: bookkeeping of a live writer, never the user's
_LISTED = 5


@dataclass(frozen=True)
class OutputKind:
    """One kind of output folder: its marker, the command that writes it, and what it writes.

    ``writes``: slash-separated glob patterns relative to the folder (``*`` stays within one path segment; a
    final ``**`` matches everything below). ``children``: sub-folder patterns owned by another kind.
    """

    name: str
    marker: str
    command: str
    writes: tuple[str, ...]
    children: dict[str, str] = field(default_factory=dict)


KINDS: dict[str, OutputKind] = {}


def register_kind(kind: OutputKind) -> OutputKind:
    KINDS[kind.name] = kind
    return kind


_TMP = (".*.tmp-*", ".*.tmp", ".*.tmp-*/**")
RUN = register_kind(OutputKind(
    "run", "run.json", "a training run (tripletclip train)",
    ("run.json", "config.yaml", "metrics.jsonl", "final_metrics.json", "checkpoints/**", "tensorboard/**",
     "wandb/**", "eval/**", "*.json", *_TMP)))
WORLD = register_kind(OutputKind(
    "world", "world.json", "a world (tripletclip world build)",
    ("world.json", "train/train-*.tar", "train/manifest.json", "train/.train-*.tar.tmp-*", "bench/images/*.png",
     "bench/sugarcrepe/*.json", "bench/winoground/examples.jsonl", "bench/retrieval.json", "bench/scenes.jsonl",
     "bench/manifest.json", "bench/*.json", "bench/**/.*.tmp-*",
     # the demo's transfer benchmark, built inside its world (demo/transfer.py): replaced with the world
     "transfer/images/*.png", "transfer/sugarcrepe/*.json", "transfer/winoground/examples.jsonl",
     "transfer/scenes.jsonl", "transfer/manifest.json", "transfer/.*.tmp-*", "transfer/*/.*.tmp-*", *_TMP),
    children={"warm": "world"}))  # the demo's warm world (demo/warm.py): replaced with the world
NEGATIVES = register_kind(OutputKind(
    "negatives", "job.json", "a negatives job (tripletclip negatives)",
    ("job.json", "manifest.json", "log.jsonl", "*-[0-9][0-9][0-9][0-9][0-9][0-9].*", "scores/**", "*.tar",
     "filter.json", *_TMP)))
EXPORT = register_kind(OutputKind(
    "export", "tripletclip_export.json", "an export (tripletclip export)",
    ("tripletclip_export.json", "*.safetensors", "open_clip_config.json", *_TMP)))
DEMO = register_kind(OutputKind(
    "demo", "demo_meta.json", "a demo (tripletclip demo)",
    ("demo_meta.json", "demo_plan.json", "results.json", "similarities.json", "report.html", "base/**", *_TMP),
    children={"world": "world", "runs/*": "run"}))


def _matches(rel: str, pattern: str) -> bool:
    parts, pats = rel.split("/"), pattern.split("/")
    if pats[-1] == "**":
        head = pats[:-1]
        return len(parts) > len(head) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, head))
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def _files(folder: Path) -> list[str]:
    """Every file (and symlink) below ``folder``, relative, slash-separated, sorted; lock files left out."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        rel_root = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            # the claim record and its temporary (another rank of a sharded job may be writing it right now)
            if name.startswith(_LOCK_PREFIX) or (name.startswith(OWNER_FILE) and rel_root == Path(".")):
                continue
            out.append((rel_root / name).as_posix())
    return sorted(out)


def owner_of(folder: str | Path) -> Optional[OutputKind]:
    """The kind whose marker ``folder`` carries (claim record first), or None."""
    folder = Path(folder)
    try:
        kind = json.loads((folder / OWNER_FILE).read_text()).get("kind")
        if kind in KINDS:
            return KINDS[kind]
    except (OSError, ValueError, AttributeError):
        pass
    for kind in KINDS.values():
        if (folder / kind.marker).is_file():
            return kind
    return None


def _owned(rel: str, kind: OutputKind, listed: Sequence[str]) -> bool:
    if rel in listed:
        return True
    for pattern in kind.children:  # a nested output: owned when its own kind owns it
        n = len(pattern.split("/"))
        head = "/".join(rel.split("/")[:n])
        if rel.count("/") >= n and _matches(head, pattern):
            return True
    return any(_matches(rel, p) for p in kind.writes)


def foreign_files(folder: str | Path, kind: OutputKind, listed: Sequence[str] = ()) -> list[str]:
    """Files below ``folder`` that ``kind`` does not write (nested outputs count as written)."""
    return [r for r in _files(Path(folder)) if not _owned(r, kind, listed)]


def _names(files: Sequence[str]) -> str:
    more = f" and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
    return ", ".join(files[:_LISTED]) + more


def claim_output(folder: str | Path, kind: OutputKind, overwrite: bool = False, listed: Sequence[str] = (),
                 option: str = "--out") -> bool:
    """Make ``folder`` this command's: True if it already held output of ``kind`` (removed when ``overwrite``).

    A new or empty folder is claimed (the claim record is written first). A folder of another kind, or one
    holding files no command wrote, is refused with ConflictError naming them. ``listed``: files of the
    previous output that its manifest lists (removed by ``overwrite`` too). Hold the folder's lock first.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConflictError(f"{option} {folder}: is a file, not a folder; choose a folder")
    present = _files(folder) if folder.is_dir() else []
    owner = owner_of(folder) if folder.is_dir() else None
    if owner is not None and owner.name != kind.name:
        raise ConflictError(f"{option} {folder}: holds {owner.command} ({owner.marker}), not {kind.command}; "
                            "choose another folder")
    foreign = foreign_files(folder, kind, listed) if owner is not None else present
    held = len(foreign) < len(present)  # some of the files are this kind's own
    if foreign and not held:
        raise ConflictError(f"{option} {folder}: not empty: holds files tripletclip did not write "
                            f"({_names(foreign)}); choose a new or empty folder, or move them away")
    if held and overwrite:
        remove_owned(folder, kind, listed)
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / OWNER_FILE
    if not record.is_file():
        tmp = folder / f"{OWNER_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps({"kind": kind.name, "command": kind.command, "pid": os.getpid(),
                                   "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        os.replace(tmp, record)
    return held


def remove_owned(folder: str | Path, kind: OutputKind, listed: Sequence[str] = ()) -> list[str]:
    """Delete what ``kind`` wrote in ``folder`` (nested outputs by their own kind); returns the files kept."""
    folder = Path(folder)
    for pattern, child_kind in kind.children.items():
        for sub in sorted(folder.glob(pattern)):
            if sub.is_dir() and not sub.is_symlink():
                child = owner_of(sub) or KINDS[child_kind]
                remove_owned(sub, child)
    kept = []
    for rel in _files(folder):
        if any(_matches(rel, p) for p in kind.writes) or rel in listed:
            (folder / rel).unlink(missing_ok=True)
        else:
            kept.append(rel)
    if not kept:  # nothing of anyone's left: the claim record goes too (a new claim writes its own)
        (folder / OWNER_FILE).unlink(missing_ok=True)
    for root, dirs, _ in sorted(os.walk(folder, topdown=False), key=lambda t: -len(t[0])):
        for d in dirs:  # folders the removal emptied (never a symlink's target)
            p = Path(root) / d
            if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
    return kept


def check_separate(out: str | Path, inputs: Iterable[str | Path], out_option: str = "--out",
                   in_option: str = "--in") -> None:
    """Refuse an output folder equal to, inside, or containing an input (file or folder)."""
    o = Path(os.path.realpath(out))
    for i in inputs:
        p = Path(os.path.realpath(i))
        if o == p or p in o.parents or o in p.parents:
            how = "is" if o == p else ("is inside" if p in o.parents else "contains")
            raise InputError(f"{out_option} {out} {how} {in_option} {i}: writing there would replace the input; "
                             f"choose an {out_option} folder apart from the input")
