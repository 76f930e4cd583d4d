"""WiSE-FT sweeps of a finished demo (Wortsman et al., arXiv 2109.01903; docs/objectives.md, "Forgetting").

``tripletclip report DEMO --wise 0.25,0.5,0.75`` interpolates every method's run of one training seed with the
base it was fine-tuned from, ``(1 - alpha) base + alpha run``, scores each model on the demo's own world benchmark
and zero-shot task, and writes ``DEMO/wise_sweep.json``. The report draws the points as one line per method in the
trade-off figure (compositional change against zero-shot change, both against alpha = 0, the base): the view
of the uniform study (arXiv 2602.23906) in which a forgetting control is judged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.errors import InputError, NotFoundError
from tripletclip.report.labels import method_items

WISE = "wise_sweep.json"


def parse_alphas(text: str) -> list[float]:
    """``"0.25,0.5"`` -> [0.25, 0.5]; each alpha in [0, 1] (a one-line error otherwise)."""
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise InputError(f"--wise {text!r}: expected comma-separated numbers in [0, 1], e.g. 0.25,0.5,0.75") from None
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise InputError(f"--wise {text!r}: every alpha must lie in [0, 1] (0 = the base, 1 = the fine-tuned run)")
    return alphas


def _base_of(run_dir: Path) -> str:
    """The starting weights a run was fine-tuned from, as its run.json records them."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    base = ((record.get("config") or {}).get("model") or {}).get("pretrained")
    if not base:
        raise InputError(f"{run_dir}: trained from random weights (no model.pretrained); WiSE-FT interpolates a "
                         "fine-tuned run with its base, so a scratch-regime demo has nothing to sweep")
    return str(base)


def wise_sweep(folder: str | Path, alphas: Sequence[float], seed: int = 0, methods: Optional[Sequence[str]] = None,
               echo: Callable[[str], None] = print) -> Path:
    """Sweep every method (or ``methods``) of the demo in ``folder`` at training seed ``seed``; returns the JSON's
    path. Points: ``{"method", "alpha", "compositional_change", "zeroshot_change"}`` (tradeoff.sweep_points)."""
    from tripletclip.report.tradeoff import sweep_points

    folder = Path(folder)
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise NotFoundError(f"{folder}: no results.json; --wise needs the folder a finished `tripletclip demo` wrote")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    known = [m for m, _ in method_items(results)]
    chosen = list(methods) if methods else known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise InputError(f"--wise: {folder} has no method {', '.join(unknown)}; it has {', '.join(known)}")
    bench = folder / "world" / "bench"
    if not bench.is_dir():
        raise NotFoundError(f"{bench}: the demo's benchmark is missing; the sweep scores each alpha on it")
    runs = {m: folder / "runs" / f"{m}-seed{seed}" for m in chosen}
    missing = [str(p) for p in runs.values() if not (p / "run.json").is_file()]
    if missing:
        raise NotFoundError(f"--wise-seed {seed}: no run folder {missing[0]}; choose a seed the demo trained")
    points: list[dict[str, Any]] = []
    bases = {}
    for i, (method, run_dir) in enumerate(runs.items(), 1):
        bases[method] = _base_of(run_dir)
        echo(f"[wise] {i}/{len(runs)} {method}: alphas {', '.join(f'{a:g}' for a in sorted({0.0, *alphas}))}")
        points += sweep_points(str(run_dir), bases[method], alphas, str(bench), method=method)
    out = folder / WISE
    tmp = out.with_suffix(".json.tmp")  # written whole, then renamed: a killed sweep leaves no half file
    tmp.write_text(json.dumps({"alphas": sorted({0.0, *alphas}), "seed": seed, "bases": bases, "bench": str(bench),
                               "points": points}, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def load_sweep(folder: Path) -> Optional[list[dict[str, Any]]]:
    """The points of ``folder/wise_sweep.json``, or None when the demo has no sweep."""
    path = folder / WISE
    if not path.is_file():
        return None
    points = json.loads(path.read_text(encoding="utf-8")).get("points")
    return points if isinstance(points, list) else None
