"""``tripletclip report``: report.html from the files a demo or an ``eval`` run left, for one run or several.

One folder: its report, the same page the demo writes (the demo calls :func:`render_folder` on its own output).
Several folders: one page that puts their methods side by side, split by split, where the splits' benchmarks
match (same world spec, seed and sizes; same annotation files); a split whose benchmark differs between runs is
left out with one line naming the difference. Paired per-seed differences exist only within one run and are
left to each run's own report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.edit_types import SUGARCREPE_TYPES
from tripletclip.errors import InputError
from tripletclip.report.html import write_report
from tripletclip.report.inputs import RunInputs, load_run
from tripletclip.report.labels import NON_METHOD_KEYS, method_items, split_name
from tripletclip.report.summary import next_steps

REPORT = "report.html"


def _gallery(world: Optional[dict[str, Any]]) -> list:
    """One triplet per edit type of the run's world (re-rendered from its spec and seed: deterministic)."""
    if not world:
        return []
    from tripletclip.world import WorldSpec
    from tripletclip.world.gallery import gallery_entries

    return gallery_entries(WorldSpec.from_json(world["spec"]), seed=int(world.get("seed", 0)) + 99,
                           image_size=int(world.get("image_size", 64)))


def _title(run: RunInputs) -> str:
    return "tripletclip demo" if run.source == "demo" else f"tripletclip eval: {', '.join(r for r, _ in method_items(run.results))}"


def render_run(run: RunInputs, out: Optional[str | Path] = None) -> Path:
    """The report of one run (default: ``report.html`` in its folder)."""
    sims = {m: v for m, v in (run.sims or {}).items() if isinstance(v, dict) and v}
    return write_report(Path(out) if out else run.folder / REPORT, run.results, SUGARCREPE_TYPES, run.meta,
                        sims=sims or None, curves=run.curves or None, gallery=_gallery(run.world), title=_title(run),
                        notes=run.absent, next_steps=next_steps(run.results, run.meta, run.source), sweep=run.sweep)


def render_folder(path: str | Path, out: Optional[str | Path] = None) -> Path:
    """Read a demo folder (or an eval folder or file) and write its report; returns the report's path."""
    run = load_run(path)
    one_file = Path(path).is_file() and run.source == "eval"  # an eval file: its report beside it, same stem
    return render_run(run, out or (Path(path).with_suffix(".html") if one_file else run.folder / REPORT))


def _labels(runs: Sequence[RunInputs]) -> list[str]:
    """Short, distinct names of the runs: folder names, with the parent added while two collide."""
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.folder.resolve().parent.name}/{r.folder.resolve().name}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"run {i + 1}" for i in range(len(runs))]
    return labels


def compare(runs: Sequence[RunInputs]) -> tuple[dict[str, Any], list[str], list[str]]:
    """(merged results document, opening lines, left-out lines) of several runs: methods renamed
    'label: method', each split kept only where every run that has it measured it on the same benchmark."""
    labels = _labels(runs)
    splits = list(dict.fromkeys(s for r in runs for s in r.benchmarks))  # incl. winoground, retrieval
    kept, notes = [], []
    for s in splits:
        ids = {lab: r.benchmarks[s] for lab, r in zip(labels, runs) if s in r.benchmarks}
        known = {i for i in ids.values() if i is not None}
        if len(known) > 1:
            notes.append(f"Split '{split_name(s)}' not compared: its benchmark differs between runs (" +
                         "; ".join(f"{lab}: {i}" for lab, i in ids.items()) + ").")
        else:
            kept.append(s)
        if None in ids.values() and known:
            notes.append(f"Split '{split_name(s)}': the benchmark of " +
                         ", ".join(lab for lab, i in ids.items() if i is None) + " is not recorded; compared by name.")
    merged: dict[str, Any] = {}
    for lab, r in zip(labels, runs):
        entries = ([("base", r.results["base"])] if isinstance(r.results.get("base"), dict) else []) + \
            method_items(r.results)
        for m, e in entries:
            e = dict(e)
            for s in r.benchmarks:
                if s not in kept:
                    e.pop(s, None)
                    if s == "seen":
                        for k in ("per_seed", "categories", "mean", "spread"):
                            e.pop(k, None)
            merged[f"{lab}: {m}"] = e
    for n in (r.absent for r in runs):
        notes += n
    notes.append("Paired per-seed differences: within one run only; see each run's own report.")
    opening = (f"Side by side: {len(runs)} runs ({', '.join(labels)}), every method of each named 'run: method'. "
               + (f"Compared on: {', '.join(split_name(s) for s in kept)}. " if kept else
                  "No split was measured on the same benchmark in every run, so no accuracy table is shared. ")
               + "Each row keeps its own seeds, steps and spread; rows of different runs are not paired, so only a "
                 "gap larger than both rows' ± and the sampling error of the benchmark means something.")
    return merged, [opening], notes


def render_compare(paths: Sequence[str | Path], out: str | Path) -> Path:
    """One page comparing the runs of several folders side by side."""
    runs = [load_run(p) for p in paths]
    merged, opening, notes = compare(runs)
    if not [k for k in merged if k not in NON_METHOD_KEYS]:
        raise InputError(f"{', '.join(map(str, paths))}: no method entries to compare")
    # similarities and the gallery are of the benchmark's rows: shown only when every run has the same one
    same = len({r.benchmarks.get("seen") for r in runs}) == 1 and runs[0].benchmarks.get("seen") is not None
    sims = {f"{lab}: {m}": v for lab, r in zip(_labels(runs), runs) for m, v in (r.sims or {}).items()
            if isinstance(v, dict) and v} if same else {}
    curves = {f"{lab}: {m}": v for lab, r in zip(_labels(runs), runs) for m, v in r.curves.items()}
    gallery = _gallery(runs[0].world) if same and runs[0].world else []
    if not same:
        notes.append("Similarity histograms and the gallery: left out, the runs were not measured on one benchmark.")
    meta = {"summary": "; ".join(f"{lab}: {r.meta.get('summary', r.folder)}" for lab, r in zip(_labels(runs), runs))}
    return write_report(out, merged, SUGARCREPE_TYPES, meta, sims=sims or None, curves=curves or None,
                        gallery=gallery, title=f"tripletclip: {len(runs)} runs side by side", notes=notes,
                        opening=" ".join(opening))


def report(paths: Sequence[str | Path], out: Optional[str | Path] = None) -> Path:
    """``tripletclip report PATH [PATH ...]``: one run's report, or several side by side (default
    ``compare.html`` in the current folder)."""
    if not paths:
        raise InputError("report: name at least one folder that a demo or eval wrote (e.g. tripletclip report demo_out)")
    if len(paths) == 1:
        return render_folder(paths[0], out)
    return render_compare(paths, out or "compare.html")
