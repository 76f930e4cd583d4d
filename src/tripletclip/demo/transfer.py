"""The demo's transfer benchmark: build it next to the world, score every run on it, aggregate with errors.

The transfer benchmark (:mod:`tripletclip.world.transfer`) holds compositions and foils that the training path
never produced; it is the demo's headline, the seen / held-out splits of the world benchmark stay as diagnostics
(docs/world_experiments.md, section 8). Every accuracy comes with its sampling error from the actual row count:
a 95% Wilson interval per category and ±1.96 binomial standard errors for means over categories.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

SPLITS = ("transfer", "paraphrase")
SWAPS = ("swap_obj", "swap_att")


def build_transfer_data(world_dir: str, spec_json: dict[str, Any], seed: int, image_size: int,
                        n_pairs: int, also_trained: Sequence[str] = ()) -> dict[str, Any]:
    """``world_dir/transfer/``, rejecting every caption that occurs in ``world_dir/train`` or in the training
    shard folders ``also_trained`` (a warm start's warm world: demo/warm.py); its manifest."""
    from tripletclip.world import WorldSpec
    from tripletclip.world.transfer import build_transfer, training_texts

    texts, pairs = training_texts(Path(world_dir) / "train")
    for folder in also_trained:  # the manifest's training_overlap then counts every text any phase trained on
        more_texts, more_pairs = training_texts(folder)
        texts, pairs = texts | more_texts, pairs | more_pairs
    return build_transfer(Path(world_dir) / "transfer", WorldSpec.from_json(spec_json), seed, image_size, n_pairs,
                          (texts, pairs))


def evaluate_transfer(bundle: Any, transfer_dir: str, batch_size: int = 256) -> dict[str, Any]:
    """Per split: category accuracies (percent) and their mean; Winoground text / image / group."""
    if not transfer_dir:
        return {}
    from tripletclip.eval import Encoder, evaluate

    enc = Encoder.from_bundle(bundle, batch_size=batch_size)
    head = evaluate(["world"], enc, {"world": {"annotations": transfer_dir}})["world"]["headline"]
    scores: dict[str, Any] = {}
    wino: dict[str, Any] = {}
    for split in SPLITS:
        cats = {k.split("/", 1)[1]: 100.0 * v for k, v in head.items()
                if k.startswith(f"sugarcrepe_{split}/") and not k.endswith("/mean") and "_" in k.split("/", 1)[1]}
        if cats:
            cats["mean"] = statistics.fmean(cats.values())
            scores[split] = cats
        w = {k: 100.0 * head[f"winoground_{split}/{k}"] for k in ("text", "image", "group")
             if f"winoground_{split}/{k}" in head}
        if w:
            wino[split] = w
    return {"transfer_scores": scores, "transfer_winoground": wino}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval (percent) of an accuracy ``p`` (percent) on ``n`` rows."""
    if n <= 0:
        return (float("nan"), float("nan"))
    q = p / 100.0
    centre = (q + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (100.0 * (centre - half), 100.0 * (centre + half))


def mean_error(ps: Sequence[float], ns: Sequence[int]) -> float:
    """±1.96 standard errors (points) of the unweighted mean of accuracies ``ps`` (percent) on ``ns`` rows."""
    k = len(ps)
    var = sum((p / 100) * (1 - p / 100) / max(1, n) for p, n in zip(ps, ns)) / (k * k)
    return 196.0 * math.sqrt(var)


def split_entry(runs: Sequence[Mapping[str, Any]], split: str, counts: Mapping[str, Mapping[str, int]]
                ) -> Optional[dict[str, Any]]:
    """results.json's ``transfer`` / ``paraphrase`` block of one objective: the seen split's fields
    (``mean``, ``categories``, ``spread``, ``per_seed``) plus row counts, errors, swap mean and Winoground."""
    from tripletclip.demo.stats import aggregate_split

    per_seed = {str(r["seed"]): r["transfer_scores"][split] for r in runs
                if split in r.get("transfer_scores", {})}
    if not per_seed:
        return None
    agg = aggregate_split(per_seed)
    cats = agg["categories"]
    rows = {c: int(counts[c][split]) for c in cats}
    swaps = [c for c in SWAPS if c in cats]
    wino_runs = [r["transfer_winoground"][split] for r in runs if split in r.get("transfer_winoground", {})]
    n_groups = sum(rows.values()) // 2  # one group per symmetric pair of rows
    wino = {k: statistics.fmean(w[k] for w in wino_runs) for k in ("text", "image", "group")} if wino_runs else {}
    return {
        **agg, "rows": rows,
        "interval": {c: wilson(p, rows[c]) for c, p in cats.items()},
        "mean_error": mean_error([cats[c] for c in cats], [rows[c] for c in cats]),
        "swap_mean": statistics.fmean(cats[c] for c in swaps) if swaps else None,
        "swap_mean_error": mean_error([cats[c] for c in swaps], [rows[c] for c in swaps]) if swaps else None,
        "winoground": {**wino, "groups": n_groups,
                       "interval": {k: wilson(v, n_groups) for k, v in wino.items()},
                       "per_seed": {str(r["seed"]): r["transfer_winoground"][split] for r in runs
                                    if split in r.get("transfer_winoground", {})}},
    }


def run_metrics(record: Mapping[str, Any], split: str = "transfer") -> dict[str, float]:
    """Headline transfer numbers of one run (for paired differences)."""
    s = record.get("transfer_scores", {}).get(split)
    if not s:
        return {}
    w = record.get("transfer_winoground", {}).get(split, {})
    out = {"mean": s["mean"], "swap_mean": statistics.fmean(s[c] for c in SWAPS if c in s),
           "replace_rel": s.get("replace_rel", float("nan")),
           "wino_image": w.get("image", float("nan")), "wino_group": w.get("group", float("nan"))}
    out.update({f"{split}/{c}": v for c, v in s.items() if c != "mean"})
    return out


def metric_rows(counts: Mapping[str, Mapping[str, int]], split: str = "transfer") -> dict[str, list[int]]:
    """Rows behind each metric of :func:`run_metrics` (a mean of k parts has k entries)."""
    groups = sum(counts[c][split] for c in counts) // 2
    rows = {"mean": [counts[c][split] for c in counts],
            "swap_mean": [counts[c][split] for c in SWAPS if c in counts],
            "replace_rel": [counts["replace_rel"][split]] if "replace_rel" in counts else [1],
            "wino_image": [groups], "wino_group": [groups]}
    rows.update({f"{split}/{c}": [counts[c][split]] for c in counts})
    return rows


def table_lines(document: Mapping[str, Any], methods: Sequence[str], split: str = "transfer") -> list[str]:
    """A plain-text table of one split: category accuracies with their 95% Wilson intervals, swap mean, mean."""
    # an entry may be None (the scratch regime has no base) or lack the split: neither is a row
    entries = {m: document[m][split] for m in methods
               if isinstance(document.get(m), dict) and document[m].get(split)}
    first = next(iter(entries.values()), None)
    if first is None:
        return []
    cats = list(first["categories"])
    lines = [f"\nworld transfer benchmark, split '{split}' (rows per category: "
             + ", ".join(f"{c} {first['rows'][c]}" for c in cats) + "; 95% Wilson interval in brackets)",
             f"{'method':<12}" + "".join(f"{c:>20}" for c in cats) + f"{'swap mean':>16}{'mean':>16}"]
    for m in methods:
        e = entries.get(m)
        if e is None:
            continue
        cells = "".join(f"{e['categories'][c]:>7.1f} [{e['interval'][c][0]:4.1f},{e['interval'][c][1]:5.1f}]"
                        for c in cats)
        lines.append(f"{m:<12}{cells}{e['swap_mean']:>9.1f} ±{e['swap_mean_error']:4.1f}"
                     f"{e['mean']:>9.1f} ±{e['mean_error']:4.1f}")
    return lines
