"""Sharded, resumable generation jobs: units of work, per-unit atomic outputs, a manifest.

A job's input is split into units (row ranges or tar files). Rank r of W (``--shard r/W``, torchrun's
RANK/WORLD_SIZE or SLURM's SLURM_PROCID/SLURM_NTASKS) takes units u with u % W == r. A unit's outputs are
written under temporary names and renamed; then its stats file ``<prefix>-<u>.json`` is written, which marks
the unit done. A re-run skips done units and redoes any other (a killed unit leaves at most temporary
files, which are removed), so no row is ever duplicated or dropped. ``job.json`` pins the configuration:
re-running into the same folder with different settings is an error instead of a silent mix. The folder is
locked (:class:`~tripletclip.utils.lock.FolderLock`): the ranks of one sharded job share it, a second copy of
a rank or a second single-process job is refused with the holder's PID; a killed job's lock dies with it.
The folder must be new or a negatives job's (:mod:`tripletclip.utils.ownership`): a folder with files no job
wrote (a world's shards, the user's own) is refused, naming them.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from tripletclip.errors import UserError
from tripletclip.utils.diskfull import write_guard
from tripletclip.utils.files import write_json_atomic
from tripletclip.utils.lock import FolderLock
from tripletclip.utils.ownership import NEGATIVES, claim_output
from tripletclip.utils.progress import progress_bar

JOB_FILE = "job.json"
MANIFEST = "manifest.json"


class JobError(UserError, RuntimeError):
    """A job cannot run as asked (one line: folder, problem, what to do)."""


@dataclass(kw_only=True)
class JobOptions:
    """What every generation job is told: its output folder, this process's share, whether to start over.

    The options of each job (:class:`~tripletclip.negatives.text_job.TextJobOptions`, ...) extend it.
    """

    out: str
    shard: Optional[str] = None  # "i/N"; default: torchrun's or SLURM's variables, else 0/1
    overwrite: bool = False  # start over in a folder that holds a job with other settings


def resolve_shard(shard: Optional[str] = None, env: Optional[dict[str, str]] = None) -> tuple[int, int]:
    """(rank, world): from ``"i/N"``, else torchrun's RANK/WORLD_SIZE, else SLURM's, else (0, 1)."""
    env = os.environ if env is None else env
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise JobError(f"--shard {shard!r}: expected i/N, e.g. 0/8") from None
    elif "WORLD_SIZE" in env and "RANK" in env:
        i, n = int(env["RANK"]), int(env["WORLD_SIZE"])
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        i, n = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    else:
        i, n = 0, 1
    if not (n >= 1 and 0 <= i < n):
        raise JobError(f"shard {i}/{n}: need 0 <= i < N")
    return i, n


def _diff(a: Any, b: Any, path: str = "") -> str:
    """The first differing key path of two JSON-like values ('' if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return ""
    return "" if a == b else (path or "(root)")


class ShardedJob:
    """One stage's job folder; see the module docstring."""

    def __init__(self, out_dir: str | Path, stage: str, config: dict[str, Any], units: list[str], prefix: str = "part",
                 overwrite: bool = False, world: int = 1, rank: int = 0) -> None:
        self.out = Path(out_dir)
        self.stage, self.prefix, self.units = stage, prefix, units
        self._lock = FolderLock(self.out, f"another {stage} job", "use another --out", rank, world)
        try:  # a new folder or a negatives job's: never the user's files, a world's or a run's
            claim_output(self.out, NEGATIVES)
        except BaseException:
            self._lock.release()
            raise
        spec = json.loads(json.dumps({"stage": stage, "config": config, "units": units}, default=str))
        path = self.out / JOB_FILE
        if path.exists():
            old = json.loads(path.read_text())
            diff = _diff(old, spec)
            if diff and not overwrite:
                raise JobError(f"{self.out}: holds a different {old.get('stage')} job ({diff} differs); "
                               "use a new --out, or --overwrite to start over")
            if diff and overwrite:
                if world > 1:
                    raise JobError(f"{self.out}: --overwrite with {world} ranks would race; delete the folder once, "
                                   "then start the ranks")
                self._clear()
        write_json_atomic(path, spec)
        if world == 1:
            # Leftovers of a killed run. With several ranks another rank may be writing its temp files right now,
            # so they stay (hidden, pid-named, never read) until a single-process run.
            for tmp in self.out.glob(".*.tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)

    def _clear(self) -> None:
        for p in list(self.out.glob(f"{self.prefix}-*")) + list(self.out.glob(f"{self.prefix}*.tar")) + \
                [self.out / MANIFEST]:
            if p.is_file():
                p.unlink()

    def unit_stats_path(self, u: int) -> Path:
        return self.out / f"{self.prefix}-{u:06d}.json"

    def is_done(self, u: int) -> bool:
        return self.unit_stats_path(u).exists()

    def todo(self, rank: int, world: int) -> list[int]:
        return [u for u in range(len(self.units)) if u % world == rank and not self.is_done(u)]

    def run(self, rank: int, world: int, work: Callable[[int], dict[str, Any]], what: str = "units",
            rows_of: Callable[[dict[str, Any]], int] = lambda s: int(s.get("rows", 0))) -> dict[str, Any]:
        """Run ``work(u)`` (which writes the unit's outputs atomically and returns its stats) on this rank's
        pending units, marking each done; then write the manifest. Logs one JSON line per unit to log.jsonl.
        A failure frees the folder at once (the caller may still hold this object, e.g. in a traceback)."""
        try:
            return self._run(rank, world, work, what, rows_of)
        except BaseException:
            self._lock.release()
            raise

    def _run(self, rank: int, world: int, work: Callable[[int], dict[str, Any]], what: str,
             rows_of: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
        todo = self.todo(rank, world)
        skipped = sum(1 for u in range(len(self.units)) if u % world == rank) - len(todo)
        t_start, rows_total = time.perf_counter(), 0
        with progress_bar(fields="{task.fields[rate]}", transient=True) as bar:
            task = bar.add_task(f"{self.stage} rank {rank}/{world}", total=len(todo), rate="")
            for u in todo:
                t0 = time.perf_counter()
                with write_guard(self.out, f"unit {u} ({self.units[u]})",
                                 "finished units are intact and a re-run does only the rest"):
                    stats = work(u)
                dt = time.perf_counter() - t0
                rows = rows_of(stats)
                rows_total += rows
                stats = {**stats, "unit": u, "name": self.units[u], "seconds": round(dt, 3), "rank": rank}
                write_json_atomic(self.unit_stats_path(u), stats)
                rate = rows_total / max(1e-9, time.perf_counter() - t_start)
                self.log({"event": "unit_done", "unit": u, "rows": rows, "seconds": round(dt, 3),
                          "rows_per_s": round(rows / max(dt, 1e-9), 2), "rank": rank})
                bar.update(task, advance=1, rate=f"{rate:.1f} {what}/s")
        elapsed = time.perf_counter() - t_start
        summary = {"rank": rank, "world": world, "units_run": len(todo), "units_skipped_done": skipped,
                   "rows": rows_total, "seconds": round(elapsed, 3),
                   "rows_per_s": round(rows_total / elapsed, 2) if elapsed > 0 and rows_total else 0.0}
        self.log({"event": "rank_done", **summary})
        return summary

    def log(self, record: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), "stage": self.stage, **record}) + "\n")

    def unit_stats(self) -> list[dict[str, Any]]:
        out = []
        for u in range(len(self.units)):
            p = self.unit_stats_path(u)
            if p.exists():
                out.append(json.loads(p.read_text()))
        return out

    def write_manifest(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Sum the counters of all done units (of every rank) into manifest.json."""
        stats = self.unit_stats()
        manifest: dict[str, Any] = {
            "stage": self.stage,
            "complete": len(stats) == len(self.units),
            "units_total": len(self.units),
            "units_done": len(stats),
            "units_missing": [u for u in range(len(self.units)) if not self.is_done(u)][:50],
            "config": json.loads((self.out / JOB_FILE).read_text())["config"],
            **sum_counters(stats),
            **extra,
        }
        write_json_atomic(self.out / MANIFEST, manifest)
        return manifest


def sum_counters(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up ints and dicts of ints over unit stats (keys 'unit', 'rank', 'name' excluded)."""
    total: dict[str, Any] = {}
    for s in stats:
        for k, v in s.items():
            if k in ("unit", "rank", "name"):
                continue
            if isinstance(v, bool):
                continue
            if isinstance(v, (int, float)):
                total[k] = round(total.get(k, 0) + v, 3)
            elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
                d = total.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
    return total
