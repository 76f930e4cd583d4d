"""Aggregation of the demo's runs: per-seed values, mean ± half range, and paired per-seed differences.

A difference between two objectives is called *real* only when (a) its sign agrees on every seed (the runs of
one seed share the world, the positives and their order, so seed-wise differences are paired) and (b) its mean
exceeds the benchmark's sampling error: 1.96 x the standard error of a difference of two binomial accuracies
on the rows that metric is measured on (unpaired, hence conservative). At 100 rows (one category of one split
at the default 200 rows per category) that is about ±13.9 points at 50% accuracy; for the seven-category mean
of one split (700 rows) about ±5.2 points (docs/methods.md section 4.10).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from tripletclip.edit_types import SUGARCREPE_CATEGORIES
from tripletclip.edit_types import SUGARCREPE_TYPES as CATEGORIES
from tripletclip.report import intervals
from tripletclip.report.intervals import diff_error, finite, half_range

# metric -> (how to read it from one run record, how many benchmark rows it rests on)
SWAPS = SUGARCREPE_CATEGORIES["swap"]


def run_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers (percent) of one run record (``jobs.run_job``/``jobs.evaluate_*`` output): the seen
    split's means and categories, ``<split>_mean`` of every other split, Winoground and retrieval."""
    scores = record["scores"]
    seen = scores["seen"]
    swaps = finite(seen.get(c) for c in SWAPS)
    out = {"mean": _num(seen.get("mean")), "heldout_mean": _num(scores.get("heldout", {}).get("mean")),
           "swap_mean": math.fsum(swaps) / len(swaps) if len(swaps) == len(SWAPS) else math.nan,
           "replace_rel": _num(seen.get("replace_rel")),
           "wino_text": _num(record["winoground"].get("text")),
           "wino_image": _num(record["winoground"].get("image")),
           "wino_group": _num(record["winoground"].get("group")),
           "i2t_r1": _num(record["retrieval"].get("i2t_r1")),
           "t2i_r1": _num(record["retrieval"].get("t2i_r1"))}
    out.update({f"{split}_mean": _num(rec.get("mean")) for split, rec in scores.items()
                if split not in ("seen", "heldout") and isinstance(rec, Mapping)})
    out.update({f"seen/{c}": seen[c] for c in CATEGORIES if c in seen})
    return out


def _num(value: Any) -> float:
    return float(value) if finite([value]) else math.nan


def metric_rows(bench: Mapping[str, Any]) -> dict[str, list[int]]:
    """Rows per averaged part of each metric (a mean of k parts has k entries), from the world manifest."""
    counts = bench["counts"]
    splits = list(dict.fromkeys(s for c in CATEGORIES if c in counts for s in counts[c]))
    seen = [counts[c]["seen"] for c in CATEGORIES if c in counts]
    wino = sum(sum(v.values()) for v in bench.get("winoground_counts", {}).values()) or 1
    ret = int((bench.get("retrieval") or {}).get("images", 0) or 0) or 1
    rows = {"mean": seen, "swap_mean": [counts[c]["seen"] for c in SWAPS if c in counts],
            "replace_rel": [counts["replace_rel"]["seen"]] if "replace_rel" in counts else [1],
            "wino_text": [wino], "wino_image": [wino], "wino_group": [wino], "i2t_r1": [ret], "t2i_r1": [ret]}
    rows.update({f"{s}_mean": [counts[c].get(s, 0) for c in CATEGORIES if c in counts] for s in splits if s != "seen"})
    rows.update({f"seen/{c}": [counts[c]["seen"]] for c in CATEGORIES if c in counts})
    return rows


def sampling_error(a: float, b: float, rows: Sequence[int]) -> float:
    """1.96 x the standard error (points) of the difference of two accuracies a, b (percent), each the mean of
    ``len(rows)`` parts measured on ``rows[i]`` rows (binomial variance at the parts' mean accuracy); >= 0, NaN
    only when an accuracy is not finite (:func:`tripletclip.report.intervals.diff_error`)."""
    return diff_error(a, b, rows)


def paired(per_method: Mapping[str, Mapping[int, dict[str, float]]], rows: Mapping[str, list[int]],
           refs: Sequence[str] = ("clip", "negclip")) -> dict[str, Any]:
    """``paired[method][ref][metric]``: per-seed differences method - ref (points) and whether it is real.

    Antisymmetric: swapping method and ref negates every difference exactly (IEEE subtraction and ``fsum``
    are sign-symmetric) and keeps the sampling error. A metric that is NaN on a common seed is left out."""
    out: dict[str, Any] = {}
    for method, seeds in per_method.items():
        for ref in refs:
            if ref == method or ref not in per_method:
                continue
            common = sorted(set(seeds) & set(per_method[ref]))
            if not common:
                continue
            block: dict[str, Any] = {}
            for metric in seeds[common[0]]:
                if any(metric not in seeds[s] or metric not in per_method[ref][s] for s in common):
                    continue
                diffs = {str(s): seeds[s][metric] - per_method[ref][s][metric] for s in common}
                vals = list(diffs.values())
                if len(finite(vals)) < len(vals):
                    continue
                mean = math.fsum(vals) / len(vals)
                err = sampling_error(math.fsum(seeds[s][metric] for s in common) / len(common),
                                     math.fsum(per_method[ref][s][metric] for s in common) / len(common),
                                     rows.get(metric, [1]))
                same_sign = all(v > 0 for v in vals) or all(v < 0 for v in vals)
                block[metric] = {"per_seed": diffs, "mean": mean, "min": min(vals), "max": max(vals),
                                 "same_sign": same_sign, "sampling_error": err,
                                 "real": bool(same_sign and math.isfinite(err) and abs(mean) > err)}
            out.setdefault(method, {})[ref] = block
    return out


def spread(values: Sequence[float]) -> float:
    """Half the min..max range of the finite values (0 for one value or none); never negative."""
    return half_range(values)


def aggregate_split(per_seed: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Mean over seeds (inside [min, max]; a failed seed's NaN left out), half range, and the per-seed values
    of one split's category scores."""
    keys = list(dict.fromkeys(k for v in per_seed.values() for k in v))
    values = {k: [v[k] for v in per_seed.values() if k in v] for k in keys}
    mean = {k: intervals.mean(vals) for k, vals in values.items()}
    half = {k: spread(vals) for k, vals in values.items()}
    return {"mean": mean.get("mean"), "categories": {k: mean[k] for k in CATEGORIES if k in mean},
            "spread": {k: half[k] for k in sorted(half)}, "per_seed": dict(per_seed)}


def method_entry(runs: Sequence[Mapping[str, Any]], steps: int) -> dict[str, Any]:
    """results.json's entry of one objective (or of the base) from its runs, one per seed."""
    runs = sorted(runs, key=lambda r: r["seed"])
    seen = aggregate_split({str(r["seed"]): r["scores"]["seen"] for r in runs})
    held = aggregate_split({str(r["seed"]): r["scores"]["heldout"] for r in runs if "heldout" in r["scores"]})
    others = list(dict.fromkeys(k for r in runs for k in r["scores"] if k not in ("seen", "heldout")))
    final = runs[0].get("final", {})

    def block(key: str, names: Sequence[str]) -> dict[str, Any]:
        return {"per_seed": {str(r["seed"]): r[key] for r in runs},
                **{k: intervals.mean([r[key].get(k, math.nan) for r in runs]) for k in names}}

    return {
        "mean": seen["mean"], "categories": seen["categories"], "spread": seen["spread"],
        "per_seed": seen["per_seed"], "seen": seen, "heldout": held,
        **{k: aggregate_split({str(r["seed"]): r["scores"][k] for r in runs if isinstance(r["scores"].get(k), Mapping)})
           for k in others},
        "winoground": block("winoground", ("text", "image", "group")),
        "retrieval": block("retrieval", ("i2t_r1", "t2i_r1")),
        "steps": steps, "pairs_seen": final.get("real_pairs_seen"),
        "synthetic_images_seen": final.get("synthetic_images_seen"), "neg_texts_seen": final.get("neg_texts_seen"),
        "train_time_s": sum(r.get("train_s", 0.0) for r in runs),
        "eval_time_s": sum(r.get("eval_s", 0.0) for r in runs),
        # process time of this method's runs (trainings run side by side, so these do not add up to the wall)
        "wall_time_s": sum(r.get("train_s", 0.0) + r.get("eval_s", 0.0) for r in runs),
        "seeds": [r["seed"] for r in runs], "run_dirs": [r.get("run_dir") for r in runs],
    }
