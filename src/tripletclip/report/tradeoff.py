"""The trade-off view of the uniform study (arXiv 2602.23906): compositional gain against zero-shot change.

One point per objective (and per WiSE-FT alpha, when a sweep is given): x = change of the zero-shot mean
(shape and colour on the world, or any zero-shot score) against the base, y = change of the compositional
mean (SugarCrepe-style accuracy on the seen split) against the base, both in points; whiskers span the
per-seed values. Up is more compositional, right is less forgetting: the top right is what a recipe wants.
Inputs are results.json as the demo writes it (entries with ``mean``, ``per_seed`` and the ``zeroshot`` block
of tripletclip.eval.world_zeroshot). Returns PNG bytes like tripletclip.report.plots.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report.intervals import whiskers
from tripletclip.report.plots import _colour, _png, plt

# the objectives of docs/objectives.md, in colours the 2024 methods of report/plots.py do not use
COLOURS = {"fscclip": "#ff7f0e", "degla": "#8c564b", "clic": "#e377c2"}


def colour(method: str, i: int) -> str:
    return COLOURS.get(method) or _colour(method, i)


def tradeoff_points(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(method, compositional change, zero-shot change, per-seed ranges) for every entry with a zero-shot block.

    Changes are against ``results["base"]``; without a base there is no change to draw and the list is empty.
    """
    def number(v: Any) -> Optional[float]:  # a failed or absent value is no point (never a crash, issue 23)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None

    def seeds(block: Any) -> dict[str, float]:
        per_seed = block.get("per_seed") if isinstance(block, Mapping) else None
        out = {}
        for seed, v in (per_seed or {}).items():
            f = number(v.get("mean")) if isinstance(v, Mapping) else None
            if f is not None:
                out[str(seed)] = f
        return out

    base = results.get("base")
    if not isinstance(base, Mapping) or not isinstance(base.get("zeroshot"), Mapping):
        return []
    base_comp, base_zs = number(base.get("mean")), number(base["zeroshot"].get("mean"))
    if base_comp is None or base_zs is None:
        return []
    points = []
    for method, entry in results.items():
        if method == "base" or not isinstance(entry, Mapping) or not isinstance(entry.get("zeroshot"), Mapping):
            continue
        comp, zs = number(entry.get("mean")), number(entry["zeroshot"].get("mean"))
        if comp is None or zs is None:
            continue
        points.append({"method": method, "compositional_change": comp - base_comp, "zeroshot_change": zs - base_zs,
                       "compositional_per_seed": [v - base_comp for v in seeds(entry).values()],
                       "zeroshot_per_seed": [v - base_zs for v in seeds(entry["zeroshot"]).values()]})
    return points


def tradeoff_figure(results: Mapping[str, Any], sweep: Optional[Sequence[Mapping[str, Any]]] = None,
                    title: str = "compositional gain vs zero-shot change (points vs the base)") -> Optional[bytes]:
    """PNG of the trade-off, or None when ``results`` has no base with a zero-shot block.

    ``sweep``: optional WiSE-FT points ``{"method", "alpha", "compositional_change", "zeroshot_change"}`` drawn
    as a line per method, labelled with alpha.
    """
    points = tradeoff_points(results)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for i, p in enumerate(points):
        colour_ = colour(p["method"], i)
        x, y = p["zeroshot_change"], p["compositional_change"]
        # whiskers from report/intervals.py: never negative by rounding (equal seeds at 25/26, issue 23)
        _, x_lo, x_hi = whiskers(p["zeroshot_per_seed"] or [x])
        _, y_lo, y_hi = whiskers(p["compositional_per_seed"] or [y])
        ax.errorbar([x], [y], xerr=[[x_lo], [x_hi]], yerr=[[y_lo], [y_hi]],
                    fmt="o", color=colour_, capsize=2, label=p["method"])
        ax.annotate(p["method"], (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color=colour_)
    for i, method in enumerate(sorted({s["method"] for s in sweep or ()})):
        line = sorted((s for s in sweep or () if s["method"] == method), key=lambda s: s["alpha"])
        ax.plot([s["zeroshot_change"] for s in line], [s["compositional_change"] for s in line], ":",
                color=colour(method, i), linewidth=1)
        for s in line:
            ax.annotate(f"a={s['alpha']:g}", (s["zeroshot_change"], s["compositional_change"]), fontsize=6)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("zero-shot change vs base (points; right = less forgetting)")
    ax.set_ylabel("compositional change vs base (points)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def sweep_points(run: str, base: str, alphas: Sequence[float], bench_dir: str, method: str = "",
                 batch_size: int = 256) -> list[dict[str, Any]]:
    """WiSE-FT points for :func:`tradeoff_figure`: each alpha's world scores (tripletclip.demo.jobs) as changes
    against alpha = 0, the base itself (added to ``alphas`` when missing)."""
    from pathlib import Path

    from tripletclip.demo.jobs import evaluate_bundle
    from tripletclip.models.interpolate import sweep

    alphas = sorted({0.0, *map(float, alphas)})
    scores = {}
    for alpha, bundle in sweep(run, base, alphas):
        rec = evaluate_bundle(bundle, Path(bench_dir), batch_size=batch_size, sim_rows=1)  # similarities unused
        scores[alpha] = (rec["scores"]["seen"]["mean"], rec["zeroshot"]["mean"])
    comp0, zs0 = scores[0.0]
    name = method or Path(run).name
    return [{"method": name, "alpha": a, "compositional_change": c - comp0, "zeroshot_change": z - zs0}
            for a, (c, z) in sorted(scores.items())]
