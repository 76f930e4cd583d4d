"""What a report is made from: the files a demo or an ``eval`` run leaves in a folder, read back.

A demo folder holds ``results.json`` (method entries, ``regime``, ``base``, ``paired``), ``demo_meta.json``
(provenance, the world), ``similarities.json`` and ``runs/<method>-seed<s>/metrics.jsonl`` (training curves).
An ``eval`` run leaves one JSON file (``--out``, format ``tripletclip-eval/1``, fractions); a folder of such files
is read as one method per file, converted to the results.json schema (percent, one record per split). Every
input but the results is optional: what is absent is listed in :attr:`RunInputs.absent`, one line each, and the
report leaves that section out. Each split carries the identity of the benchmark it was measured on, so that
runs are compared side by side only where their benchmarks match.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from tripletclip.errors import InputError, NotFoundError
from tripletclip.report.labels import method_items, split_names

RESULTS = "results.json"
META = "demo_meta.json"
SIMS = "similarities.json"
EVAL_FORMAT = "tripletclip-eval/"


@dataclass
class RunInputs:
    """One run's report inputs; ``benchmarks`` maps each split to the identity of its benchmark (None: not
    recorded), ``absent`` says which optional inputs were not found."""

    folder: Path
    label: str
    results: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    sims: Optional[dict[str, Any]] = None
    curves: dict[str, Any] = field(default_factory=dict)
    world: Optional[dict[str, Any]] = None
    benchmarks: dict[str, Optional[str]] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    source: str = "demo"
    sweep: Optional[list[dict[str, Any]]] = None  # WiSE-FT points of wise_sweep.json (report/wise.py)


def looked_for(path: Path) -> str:
    return (f"{path}: no results to report; looked for {RESULTS} (written by `tripletclip demo`) and JSON files "
            f"of `tripletclip eval --out` (format {EVAL_FORMAT}1); pass the folder or file that a demo or eval wrote")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); it was not written by tripletclip, "
                         "or the run that wrote it was cut short") from None


def _is_eval(doc: Any) -> bool:
    return isinstance(doc, Mapping) and str(doc.get("format", "")).startswith(EVAL_FORMAT)


def load_run(path: str | Path) -> RunInputs:
    """The inputs of one run: a demo folder, a folder of eval JSON files, or one such file (or results.json)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder; pass the folder a demo or eval wrote")
    if path.is_file():
        if path.name == RESULTS:
            return _demo(path.parent)
        doc = _read_json(path)
        if not _is_eval(doc):
            raise InputError(f"{path}: not a results file (no '\"format\": \"{EVAL_FORMAT}...\"' of `tripletclip "
                             f"eval --out`, and not named {RESULTS})")
        return _evals(path.parent, {path.stem: doc}, path.stem)
    if (path / RESULTS).is_file():
        return _demo(path)
    docs = {}
    for p in sorted(path.glob("*.json")):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # other JSON files of the folder are not ours to judge
        if _is_eval(doc):
            docs[p.stem] = doc
    if not docs:
        raise NotFoundError(looked_for(path))
    return _evals(path, docs, path.resolve().name)


def _demo(folder: Path) -> RunInputs:
    results = _read_json(folder / RESULTS)
    if not isinstance(results, dict) or not method_items(results):
        raise InputError(f"{folder / RESULTS}: holds no method entry (e.g. \"clip\": {{\"seen\": ...}}); "
                         "it was not written by `tripletclip demo`")
    run = RunInputs(folder, folder.resolve().name, results)
    if (folder / META).is_file():
        run.meta = _read_json(folder / META)
    else:
        run.absent.append(f"Provenance: not recorded (no {META} in {folder}).")
    if (folder / SIMS).is_file():
        run.sims = _read_json(folder / SIMS)
    else:
        run.absent.append(f"Similarity histograms (TripletCLIP Fig. 3): left out, no {SIMS} in {folder}.")
    run.curves = _curves(folder, results)
    from tripletclip.report.wise import load_sweep

    run.sweep = load_sweep(folder)
    if not run.curves:
        run.absent.append(f"Training curves: left out, no runs/*/metrics.jsonl of these methods under {folder}.")
    world = run.meta.get("world")
    if isinstance(world, Mapping) and world.get("spec"):
        run.world = dict(world)
    else:
        run.absent.append(f"Gallery of triplets: left out, {META} in {folder} does not describe the world.")
    ident = (world_identity({**world, "counts": (world.get("bench") or {}).get("counts")})
             if isinstance(world, Mapping) else None)
    entries = [e for _, e in method_items(results)] + ([results["base"]] if isinstance(results.get("base"), Mapping)
                                                       else [])
    run.benchmarks = {s: ident for s in split_names(entries) + ["winoground", "retrieval"]}
    return run


def world_identity(manifest: Mapping[str, Any]) -> Optional[str]:
    """The identity of a world benchmark, from its manifest (or the demo's world summary, which holds the
    same fields): what its rows are drawn from (generator, spec, seed, image size, rows per category)."""
    if "spec" not in manifest or "seed" not in manifest:
        return None
    keys = ("generator_version", "seed", "spec", "image_size", "counts")
    blob = json.dumps({k: manifest.get(k) for k in keys}, sort_keys=True, default=str)
    return f"world seed {manifest.get('seed')} ({hashlib.sha256(blob.encode()).hexdigest()[:12]})"


def _eval_identity(bench: str, rec: Mapping[str, Any]) -> Optional[str]:
    """A world benchmark: its manifest's identity (the one a demo records) when the manifest is still there;
    any benchmark: the sha256 of its annotation files."""
    man = rec.get("manifest")
    if isinstance(man, Mapping) and man.get("path") and Path(str(man["path"])).is_file():
        try:
            found = world_identity(json.loads(Path(str(man["path"])).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            found = None
        if found:
            return found
    shas = sorted(str(a.get("sha256")) for a in rec.get("annotations") or [] if isinstance(a, Mapping))
    return f"{bench} ({hashlib.sha256(''.join(shas).encode()).hexdigest()[:12]})" if shas else None


def _run_dir(folder: Path, recorded: Any, method: str, seed: Any) -> Path:
    """A run's folder: as recorded when it exists, else under this folder's runs/ (a moved demo folder)."""
    if recorded and Path(str(recorded)).is_dir():
        return Path(str(recorded))
    return folder / "runs" / (Path(str(recorded)).name if recorded else f"{method}-seed{seed}")


def _curves(folder: Path, results: Mapping[str, Any]) -> dict[str, Any]:
    """{method: {seed: [(step, loss), ...]}} read from the runs' metrics.jsonl (as the demo recorded them)."""
    from tripletclip.demo.jobs import read_curve

    curves: dict[str, Any] = {}
    for method, entry in method_items(results):
        seeds = entry.get("seeds") or list((entry.get("per_seed") or {}).keys())
        dirs = entry.get("run_dirs") or [None] * len(seeds)
        for seed, recorded in zip(seeds, dirs):
            run_dir = _run_dir(folder, recorded, method, seed)
            try:
                pts = read_curve(run_dir)
            except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                pts = []  # a run cut short mid-line: its curve is left out, the rest is shown
            if pts:
                curves.setdefault(method, {})[str(seed)] = pts
    return curves


# ------------------------------------------------------------------------------------------- eval documents


def _pct(value: Any) -> float:
    return 100.0 * float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _parts(name: str, rec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The parts of one benchmark record: a composed one (``world``: sugarcrepe_seen, winoground_seen,
    retrieval, ...) gives its sub-records, any other is one part named after the benchmark."""
    subs = rec.get("subsets")
    if isinstance(subs, Mapping) and subs and all(isinstance(v, Mapping) and "headline" in v for v in subs.values()):
        return dict(subs)
    return {name: rec}


def eval_entry(doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Optional[str]]]:
    """(a method entry in the results.json schema, split -> benchmark identity) of one eval document.

    SugarCrepe-like parts (subsets with an accuracy) become splits (``sugarcrepe_seen`` of the world: ``seen``),
    Winoground parts average into ``winoground`` (as the demo does), ``retrieval`` and ``zeroshot`` keep their
    headline numbers; fractions become percent. One evaluation: no per-seed values, so no spread."""
    entry: dict[str, Any] = {}
    idents: dict[str, Optional[str]] = {}
    wino: dict[str, list[float]] = {}
    for bench, rec in (doc.get("benchmarks") or {}).items():
        if not isinstance(rec, Mapping):
            continue
        ident = _eval_identity(bench, rec)
        for part, sub in _parts(bench, rec).items():
            head = sub.get("headline") or {}
            subsets = sub.get("subsets") or {}
            accs = {k: v for k, v in subsets.items() if isinstance(v, Mapping) and "accuracy" in v}
            if part.startswith("winoground"):
                for k in ("text", "image", "group"):
                    if k in head:
                        wino.setdefault(k, []).append(_pct(head[k]))
                idents["winoground"] = ident
            elif accs:
                split = part[len("sugarcrepe_"):] if part.startswith("sugarcrepe_") and bench == "world" else part
                cats = {k: _pct(v["accuracy"]) for k, v in accs.items()}
                finite = [v for v in cats.values() if math.isfinite(v)]
                mean = _pct(head["mean"]) if "mean" in head else (math.fsum(finite) / len(finite) if finite else math.nan)
                entry[split] = {"categories": cats, "mean": mean, "rows": {k: v.get("rows") for k, v in accs.items()}}
                idents[split] = ident
            elif head:
                key = "retrieval" if part.startswith("retrieval") else "zeroshot" if part.startswith("zeroshot") else part
                entry.setdefault(key, {}).update({k: _pct(v) for k, v in head.items()})
                idents[key] = ident
    if wino:
        entry["winoground"] = {k: math.fsum(v) / len(v) for k, v in wino.items()}
    if isinstance(entry.get("seen"), Mapping):
        entry["mean"], entry["categories"] = entry["seen"]["mean"], entry["seen"]["categories"]
    return entry, idents


def _evals(folder: Path, docs: Mapping[str, Mapping[str, Any]], label: str) -> RunInputs:
    results: dict[str, Any] = {}
    idents: dict[str, Optional[str]] = {}
    for name, doc in docs.items():
        entry, ids = eval_entry(doc)
        if entry:
            results[name] = entry
            for split, ident in ids.items():
                idents.setdefault(split, ident)
    if not results:
        raise InputError(f"{folder}: the eval files ({', '.join(docs)}) hold no benchmark scores")
    first = next(iter(docs.values()))
    model = (first.get("model") or {}).get("model") or {}
    meta = {"summary": f"tripletclip eval: {len(results)} result file(s) in {folder}, one method per file.",
            "config": {"model": {k: model.get(k) for k in ("name", "pretrained") if model.get(k)}},
            "code_version": first.get("code_version")}
    run = RunInputs(folder, label, results, meta=meta, benchmarks=idents, source="eval")
    run.absent = ["Similarity histograms, training curves and the gallery: left out (an eval run records "
                  "none of them; `tripletclip demo` does)."]
    return run
