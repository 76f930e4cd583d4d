"""``tripletclip demo --resume``: continue an interrupted demo in its folder, re-using what finished.

Right after claiming its folder, before any long work, a demo records its plan in ``demo_plan.json``: the
resolved demo config (preset plus overrides, seeds and world seed included), the preset's name, the methods
and the code version. ``--resume`` compares this invocation's plan with the recorded one and refuses, in one
line naming the settings that differ, to mix two demos in one folder. Then it re-uses, each only when complete
and verified, and rebuilds or reruns the rest from scratch (removing only what the demo wrote,
utils/ownership.py):

- the world: ``world.json`` is written last by a build (and removed first by a rebuild), so its presence with
  the plan's seed, spec, image size and counts means a complete world;
- the transfer benchmark: its ``manifest.json``, written last, with the plan's seed, spec, size and pairs;
- the base: from the cache by its key, as every demo does; its sha256 is recorded in the plan, so that runs
  which started from other weights (a re-pretrained base, a changed ``base_from`` file) are not re-used;
- the warm world of a warm start (``world/warm``, demo/warm.py): its ``world.json`` with the plan's settings;
- every job whose training and evaluation finished: its record (``runs/<key>/demo_job.json``, written
  atomically as the job's last step) must hold the same job (config, benchmark folders; the folder may have
  been moved) and the sha256 of the run's weights file as it is now. A job not re-used runs afresh, a warm
  start from its phase 1 (``runs/<key>-warm`` is cleared with the run's folder).

Runs are re-used only when the world and the transfer benchmark are, since their scores were measured on them.
The resumed results.json equals an uninterrupted demo's but for timings: a run is deterministic given its
config and seed, and a re-used record holds the numbers its evaluation produced (JSON floats round-trip
exactly). ``--resume`` on a finished demo re-uses everything and writes results.json, similarities.json,
demo_meta.json and the report again (seconds); on a new or empty folder it runs the demo.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.demo.jobs import RECORD_FORMAT, Job, job_folders, record_path
from tripletclip.errors import ConflictError, UserError
from tripletclip.utils.files import sha256_file, write_json_atomic
from tripletclip.utils.ownership import RUN, foreign_files, remove_owned

PLAN_FILE = "demo_plan.json"
PLAN_FORMAT = "tripletclip-demo-plan/1"
# what makes two invocations the same demo ("overrides" and "out" are kept for the user, not compared: two
# spellings of one resolved config are one demo, and a moved folder resumes)
COMPARED = ("preset", "methods", "seeds", "world_seed", "demo_config", "code_version")
_UNSET = "(unset)"
_LISTED = 3


def demo_plan(cfg: Any, preset: str, methods: Sequence[Any], overrides: Sequence[str], out: Path) -> dict[str, Any]:
    """What a demo will run, as JSON values (compared with a recorded plan as read back from disk)."""
    from tripletclip.config import config_to_dict
    from tripletclip.utils.provenance import code_version

    plan = {"format": PLAN_FORMAT, "preset": preset, "methods": [m.label for m in methods],
            "method_specs": [{"name": m.label, "objective": m.objective, "run": m.run} for m in methods],
            "seeds": list(cfg.seeds), "world_seed": cfg.world_seed, "demo_config": config_to_dict(cfg),
            "overrides": list(overrides), "code_version": code_version(), "out": str(out)}
    return json.loads(json.dumps(plan, default=str))


def plan_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``setting (value there, value now)`` for every compared setting that differs (demo config keys dotted,
    as overrides name them)."""
    diffs: list[str] = []
    for key in COMPARED:
        diffs += _leaf_diffs(recorded.get(key, _UNSET), now.get(key, _UNSET), "" if key == "demo_config" else key)
    return list(dict.fromkeys(diffs))  # seeds and world_seed are in the demo config too: named once


def _leaf_diffs(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [d for k in keys for d in _leaf_diffs(a.get(k, _UNSET), b.get(k, _UNSET), f"{path}.{k}" if path else k)]
    return [] if a == b else [f"{path} ({_show(a)} there, {_show(b)} now)"]


def _how_to_resume(recorded: dict[str, Any], diffs: Sequence[str]) -> str:
    """The recorded settings to repeat, or (only the code differs) the code to check out."""
    if all(d.startswith("code_version.") for d in diffs):
        code = recorded.get("code_version") or {}
        dirty = " with uncommitted changes" if code.get("git_dirty") else ""
        return f"resume with the code that started it (git commit {str(code.get('git_commit'))[:12]}{dirty})"
    started = " ".join([f"--preset {recorded.get('preset')}", *recorded.get("overrides", [])])
    return f"resume with its settings (it was started as: {started})"


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_plan(out: Path) -> Optional[dict[str, Any]]:
    try:
        plan = json.loads((out / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and plan.get("format") == PLAN_FORMAT else None


@dataclass
class Resume:
    """What a demo re-uses; ``active`` when it continues a recorded demo (else it re-uses nothing)."""

    out: Path
    plan: dict[str, Any]
    active: bool = False
    reused: list[str] = field(default_factory=list)  # "world", "transfer benchmark", "base"
    runs_ok: bool = True  # False once something the runs were measured on is rebuilt or differs
    notes: list[str] = field(default_factory=list)  # why a run with a record is run again

    @classmethod
    def begin(cls, out: Path, plan: dict[str, Any], held: bool, resume: bool) -> "Resume":
        """Check a held folder's recorded plan (``resume``), then record this demo's plan. Hold the lock."""
        state = cls(out, plan)
        if held and resume:
            recorded = read_plan(out)
            if recorded is None:
                raise ConflictError(f"--resume: {out} holds a demo that recorded no plan ({PLAN_FILE}: written by "
                                    "demos since --resume exists), so it cannot be checked to be this demo; pass "
                                    "--overwrite to start over, or choose another --out")
            diffs = plan_differences(recorded, plan)
            if diffs:
                more = f" and {len(diffs) - _LISTED} more" if len(diffs) > _LISTED else ""
                raise ConflictError(f"--resume: {out} holds another demo: {'; '.join(diffs[:_LISTED])}{more}; "
                                    f"{_how_to_resume(recorded, diffs)}, or pass --overwrite to start over")
            state.active = True
            state.plan = {**plan, **{k: recorded[k] for k in ("base_weights_sha256",) if k in recorded}}
        write_json_atomic(out / PLAN_FILE, state.plan)
        return state

    def world(self, world_dir: Path, expect: dict[str, Any], label: str = "world") -> Optional[dict[str, Any]]:
        """The complete world's summary (world.json) when it matches ``expect``; None: build it (runs rerun, and
        the transfer benchmark, which rejects its training texts). ``label``: "world", or "warm world" for a warm
        start's (demo/warm.py)."""
        summary = _read_json(world_dir / "world.json") if self.active else None
        if summary is not None and all(_get(summary, k) == v for k, v in _jsonable(expect).items()):
            self.reused.append(label)
            return summary
        self.runs_ok = False
        return None

    def transfer(self, transfer_dir: Path, expect: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The complete transfer benchmark's manifest when it matches ``expect`` and the world was re-used."""
        manifest = _read_json(transfer_dir / "manifest.json") if self.active and self.runs_ok else None
        if manifest is not None and all(_get(manifest, k) == v for k, v in _jsonable(expect).items()):
            self.reused.append("transfer benchmark")
            return manifest
        (transfer_dir / "manifest.json").unlink(missing_ok=True)  # written last again by the rebuild
        self.runs_ok = False
        return None

    def base(self, base: dict[str, Any]) -> None:
        """Record the base's sha256 in the plan; runs started from other weights are not re-used."""
        before = self.plan.get("base_weights_sha256")
        if self.active and before and before != base["weights_sha256"]:
            self.runs_ok = False
            self.notes.append("the base's weights differ from those the finished runs started from: every run "
                              "is trained again")
        if self.active and base.get("source") != "pretrained now":
            self.reused.append("base")
        self.plan["base_weights_sha256"] = base["weights_sha256"]
        write_json_atomic(self.out / PLAN_FILE, self.plan)

    def partition(self, jobs: Sequence[Job]) -> tuple[list[dict[str, Any]], list[Job]]:
        """(records of finished jobs re-used, jobs to run): a job to run starts from a folder cleared of what
        the demo wrote (the user's files stay)."""
        reused: list[dict[str, Any]] = []
        todo: list[Job] = []
        for job in jobs:
            record = self._record(job) if self.active and self.runs_ok else None
            if record is not None:
                reused.append(record)
            else:
                todo.append(job)
        folders = [f for job in todo for f in job_folders(job) if f.is_dir()]  # a warm start's phase 1 too
        for folder in folders:  # before anything is removed or trained: the run would refuse them
            mine = foreign_files(folder, RUN)
            if mine:
                raise ConflictError(f"{folder}: holds files the demo did not write ({', '.join(mine[:3])}); the run "
                                    "cannot start afresh beside them: move them away and run the demo again")
        for folder in folders:
            remove_owned(folder, RUN)  # a job not re-used runs afresh
        return reused, todo

    def _record(self, job: Job) -> Optional[dict[str, Any]]:
        """The job's stored result when it is this job's and its weights are the ones it measured."""
        path = record_path(job)
        if not path.is_file():
            return None
        data = _read_json(path)
        why = ""
        if data is None or data.get("format") != RECORD_FORMAT or not isinstance(data.get("result"), dict):
            why = f"{path.name} is unreadable"
        elif _moved(data.get("job"), _demo_folder(data.get("job")), str(self.out)) != \
                _jsonable(dataclasses.asdict(job)):
            why = "its recorded job differs from this demo's"
        else:
            result = data["result"]
            weights = path.parent if job.train else job.cfg["model"]["pretrained"]
            sha = _weights_sha256(weights)
            if sha != result.get("weights_sha256"):
                why = "its weights are missing or differ from those it evaluated" if sha is None or job.train else \
                    "the base it evaluated differs"
            else:
                if job.train:
                    result["run_dir"] = str(path.parent)  # as a fresh run records it (the folder may have moved)
                return result
        self.notes.append(f"{job.key} is run again: {why}")
        return None

    def line(self, n_reused: int, n_jobs: int) -> str:
        """``[demo] resuming: world, base, 7 of 15 runs reused``."""
        return f"[demo] resuming: {', '.join([*self.reused, f'{n_reused} of {n_jobs} runs reused'])}"

    def meta(self, reused_keys: Sequence[str]) -> dict[str, Any]:
        """demo_meta.json's ``resume`` block."""
        return {"resumed": self.active, "reused": list(self.reused), "runs_reused": list(reused_keys),
                "notes": list(self.notes)}


def clear_base_work(work: Path) -> None:
    """Remove an interrupted base pretraining's leftovers in ``work`` (the demo's ``base/``: every file there is
    the demo's), so that pretraining starts afresh instead of meeting its earlier run folder."""
    from tripletclip.utils.ownership import OutputKind

    if work.is_dir():
        remove_owned(work, OutputKind("demo base", "", "the demo's base pretraining", ("**",)))


def _weights_sha256(weights: str | Path) -> Optional[str]:
    from tripletclip.models.weights import locate_weights

    try:
        return sha256_file(locate_weights(weights).file)
    except (UserError, OSError):
        return None


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part, _UNSET) if isinstance(data, dict) else _UNSET
    return data


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _demo_folder(job: Any) -> str:
    """The demo folder a stored job was written in (its runs' parent), as it was spelled then."""
    try:
        return str(Path(job["cfg"]["train"]["output_dir"]).parent)
    except (KeyError, TypeError):
        return ""


def _moved(obj: Any, then: str, now: str) -> Any:
    """``obj`` with paths under the folder as recorded (``then``) written under ``now`` (the folder moved or
    was named another way); "::"-joined path lists (data.train) part by part."""
    if isinstance(obj, dict):
        return {k: _moved(v, then, now) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_moved(v, then, now) for v in obj]
    if isinstance(obj, str) and then and then != now:
        return "::".join(now + p[len(then):] if p == then or p.startswith(then + "/") else p for p in obj.split("::"))
    return obj


def say_notes(state: Resume, echo: Callable[[str], None]) -> None:
    for note in state.notes:
        echo(f"[demo] resuming: {note}")
