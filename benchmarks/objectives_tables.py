"""The tables of the objectives evidence run (issue 24, docs/preregistration_objectives.md) from finished demos.

    python benchmarks/objectives_tables.py /tmp/h2/obj_ws32 /tmp/h2/obj_ws33 > tables.md

Reads each demo folder's ``results.json`` (and ``wise_sweep.json`` where ``tripletclip report DEMO --wise`` wrote
one) and prints markdown: per world, every method ranked by its transfer mean with per-seed values, half range,
gain over the base, seen-split gain, world zero-shot change (shape / colour) and retrieval change against the
base, and the paired per-seed differences against CLIP and NegCLIP on the transfer mean; then the verdict pooled
over the worlds; then the WiSE-FT sweeps.

The decision rule is the demo's (``tripletclip.demo.stats.paired``): a difference is real on one world iff its
per-seed differences share one sign and |mean| > 1.96 x the binomial standard error of a difference of two
accuracies on that metric's rows (``tripletclip.report.intervals.diff_error``). Pooled over worlds it is real iff
it is real on every world with the same sign. Gains over the base use the same error; the base is one model, so
its per-seed "differences" are the method's seeds against the same base value.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.report.intervals import diff_error, finite, half_range
from tripletclip.report.labels import METHOD_NAMES, method_items

REFS = ("clip", "negclip")
ZS_LIMIT = 1000  # tripletclip.eval.world_zeroshot.MAX_CROPS


def name(method: str) -> str:
    """A display name: 'tripletclip+cyclip' -> 'TripletCLIP+CyCLIP'."""
    return "+".join(METHOD_NAMES.get(p, p) for p in method.split("+"))


def fmt(x: Optional[float], sign: bool = False, digits: int = 1) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def zeroshot_rows(folder: Path) -> int:
    """Objects the world zero-shot task scores (the evaluator's subsampling of the benchmark's scene objects)."""
    path = folder / "world" / "bench" / "scenes.jsonl"
    if not path.is_file():
        return 0
    n = sum(len(json.loads(line)["scene"]["objects"]) for line in path.read_text().splitlines() if line.strip())
    step = max(1, -(-n // ZS_LIMIT))
    return min(ZS_LIMIT, len(range(0, n, step)))


class World:
    """One finished demo: its results, seeds, and the numbers the tables need."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        meta_path = folder / "demo_meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        self.seed = (meta.get("demo_config") or {}).get("world_seed", "?")
        self.wall = meta.get("wall_time_s")
        self.base = self.results["base"]
        self.methods = [m for m, _ in method_items(self.results)]
        rows = self.base["transfer"].get("rows", {})
        self.transfer_rows = list(rows.values()) or [1]
        self.swap_rows = [rows.get("swap_obj", 1), rows.get("swap_att", 1)]
        self.seen_rows = [100] * len(self.base["seen"]["categories"])
        self.zs_rows = zeroshot_rows(folder)
        sweep = folder / "wise_sweep.json"
        self.wise = json.loads(sweep.read_text(encoding="utf-8")) if sweep.is_file() else None

    def seeds(self, method: str) -> list[str]:
        return sorted(self.results[method]["transfer"]["per_seed"], key=int)

    def transfer(self, method: str) -> dict[str, float]:
        return {s: v["mean"] for s, v in self.results[method]["transfer"]["per_seed"].items()}

    def swap(self, method: str) -> dict[str, float]:
        """Transfer swap mean (swap-obj, swap-att; 600 rows) per seed."""
        return {s: 0.5 * (v["swap_obj"] + v["swap_att"])
                for s, v in self.results[method]["transfer"]["per_seed"].items()}

    def seen(self, method: str) -> dict[str, float]:
        return {s: v["mean"] for s, v in self.results[method]["seen"]["per_seed"].items()}

    def zeroshot_change(self, method: str) -> dict[str, dict[str, float]]:
        return self.results[method]["zeroshot"]["change_vs_base"]["per_seed"]

    def retrieval(self, method: str) -> dict[str, float]:
        return {s: v["mean"] for s, v in self.results[method]["retrieval"]["per_seed"].items()}

    def base_value(self, key: str) -> float:
        if key == "transfer":
            return self.base["transfer"]["mean"]
        if key == "seen":
            return self.base["seen"]["mean"]
        if key == "swap":
            return self.base["transfer"]["swap_mean"]
        if key == "retrieval":
            return next(iter(self.base["retrieval"]["per_seed"].values()))["mean"]
        raise KeyError(key)


def rule(diffs: Sequence[float], a: float, b: float, rows: Sequence[int]) -> dict[str, Any]:
    """Mean of per-seed differences, its sampling error, and whether it is real by the demo's rule."""
    vals = finite(diffs)
    mean = math.fsum(vals) / len(vals) if vals else math.nan
    err = diff_error(a, b, rows)
    same = bool(vals) and (all(v > 0 for v in vals) or all(v < 0 for v in vals))
    return {"per_seed": vals, "mean": mean, "err": err, "same_sign": same,
            "real": bool(same and math.isfinite(err) and abs(mean) > err)}


def values(world: World, method: str, key: str) -> tuple[dict[str, float], list[int]]:
    """Per-seed values of the transfer mean, transfer swap mean or seen mean, and the rows they rest on."""
    if key == "transfer":
        return world.transfer(method), world.transfer_rows
    if key == "swap":
        return world.swap(method), world.swap_rows
    return world.seen(method), world.seen_rows


def gain(world: World, method: str, key: str) -> dict[str, Any]:
    """method - base on the transfer, swap or seen mean, per seed, with the rule."""
    vals, rows = values(world, method, key)
    base = world.base_value(key)
    seeds = sorted(vals, key=int)
    return rule([vals[s] - base for s in seeds], math.fsum(vals.values()) / len(vals), base, rows)


def versus(world: World, method: str, ref: str, key: str = "transfer") -> Optional[dict[str, Any]]:
    """method - ref on the transfer, swap or seen mean, paired per seed."""
    if ref not in world.results or ref == method:
        return None
    (a, rows), (b, _) = values(world, method, key), values(world, ref, key)
    seeds = sorted(set(a) & set(b), key=int)
    return rule([a[s] - b[s] for s in seeds], math.fsum(a[s] for s in seeds) / len(seeds),
                math.fsum(b[s] for s in seeds) / len(seeds), rows)


def cell(r: Optional[dict[str, Any]], per_seed: bool = True) -> str:
    """'+1.2 ± 3.5 (+0.9, +1.5) real'."""
    if r is None:
        return "–"
    seeds = f" ({', '.join(fmt(v, True) for v in r['per_seed'])})" if per_seed and len(r["per_seed"]) > 1 else ""
    return f"{fmt(r['mean'], True)} ± {fmt(r['err'])}{seeds}{' **real**' if r['real'] else ''}"


def world_table(world: World) -> list[str]:
    b = world.base
    zs = b["zeroshot"]
    lines = [f"### World seed {world.seed} (`{world.folder}`)", "",
             f"Base: transfer mean {fmt(b['transfer']['mean'])}, swap mean {fmt(b['transfer'].get('swap_mean'))}, "
             f"replace-obj {fmt(b['transfer']['categories'].get('replace_obj'))}, seen mean {fmt(b['seen']['mean'])}, "
             f"zero-shot shape {fmt(zs['shape'])} / colour {fmt(zs['colour'])} ({world.zs_rows} objects), "
             f"retrieval mean {fmt(world.base_value('retrieval'))}"
             + (f"; demo wall time {world.wall:.0f} s." if isinstance(world.wall, (int, float)) else "."), "",
             "| rank | method | transfer mean per seed | mean ± half range | gain vs base | seen gain vs base | "
             "zero-shot change per seed: mean (shape / colour) | retrieval change | - CLIP | - NegCLIP |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(world.methods, key=lambda m: -world.results[m]["transfer"]["mean"])
    for rank, m in enumerate(order, 1):
        t = world.transfer(m)
        seeds = sorted(t, key=int)
        zc = world.zeroshot_change(m)
        zs_cells = "; ".join(f"{fmt(zc[s]['mean'], True)} ({fmt(zc[s]['shape'], True)} / {fmt(zc[s]['colour'], True)})"
                             for s in sorted(zc, key=int))
        ret = world.retrieval(m)
        rbase = world.base_value("retrieval")
        ret_cell = ", ".join(fmt(ret[s] - rbase, True) for s in sorted(ret, key=int))
        lines.append(f"| {rank} | {name(m)} | {', '.join(fmt(t[s]) for s in seeds)} | "
                     f"{fmt(world.results[m]['transfer']['mean'])} ± {fmt(half_range(list(t.values())))} | "
                     f"{cell(gain(world, m, 'transfer'))} | {cell(gain(world, m, 'seen'))} | {zs_cells} | {ret_cell} | "
                     f"{cell(versus(world, m, 'clip'))} | {cell(versus(world, m, 'negclip'))} |")
    lines += ["", f"Transfer swap mean (secondary; {sum(world.swap_rows)} rows), world seed {world.seed}:", "",
              "| method | swap mean per seed | gain vs base | - CLIP | - NegCLIP |", "|---|---|---|---|---|"]
    for m in order:
        sw = world.swap(m)
        lines.append(f"| {name(m)} | {', '.join(fmt(sw[s]) for s in sorted(sw, key=int))} | "
                     f"{cell(gain(world, m, 'swap'))} | {cell(versus(world, m, 'clip', 'swap'))} | "
                     f"{cell(versus(world, m, 'negclip', 'swap'))} |")
    zerr = diff_error(zs["mean"], zs["mean"], [world.zs_rows, world.zs_rows]) if world.zs_rows else math.nan
    lines += ["", f"(± is 1.96 x the binomial SE of the difference on the metric's rows: transfer "
                  f"{sum(world.transfer_rows)} rows, seen {sum(world.seen_rows)} rows; a zero-shot mean change "
                  f"carries about ± {fmt(zerr)} on {world.zs_rows} objects per task; retrieval change is the "
                  f"mean of R@1/5/10 in both directions, method - base, per seed.)", ""]
    return lines


def pooled(worlds: Sequence[World]) -> list[str]:
    """Claims over all worlds: real iff real on every world with one sign."""
    methods = [m for m in worlds[0].methods if all(m in w.results for w in worlds)]
    lines = ["### Pooled over the worlds (real iff real on every world, one sign)", "",
             "| method | transfer gain vs base | - CLIP | - NegCLIP | swap gain vs base | swap - CLIP | swap - NegCLIP "
             "| zero-shot change (mean over seeds, per world) |",
             "|---|---|---|---|---|---|---|---|"]

    def verdict(rs: Sequence[Optional[dict[str, Any]]]) -> str:
        if any(r is None for r in rs):
            return "–"
        signs = {math.copysign(1, r["mean"]) for r in rs}
        real = all(r["real"] for r in rs) and len(signs) == 1
        return " / ".join(fmt(r["mean"], True) for r in rs) + (" **real**" if real else " tie")

    for m in methods:
        zs = " / ".join(fmt(w.results[m]["zeroshot"]["change_vs_base"]["mean"], True) for w in worlds)
        lines.append(f"| {name(m)} | {verdict([gain(w, m, 'transfer') for w in worlds])} | "
                     f"{verdict([versus(w, m, 'clip') for w in worlds]) if m != 'clip' else '–'} | "
                     f"{verdict([versus(w, m, 'negclip') for w in worlds]) if m != 'negclip' else '–'} | "
                     f"{verdict([gain(w, m, 'swap') for w in worlds])} | "
                     f"{verdict([versus(w, m, 'clip', 'swap') for w in worlds]) if m != 'clip' else '–'} | "
                     f"{verdict([versus(w, m, 'negclip', 'swap') for w in worlds]) if m != 'negclip' else '–'} | {zs} |")
    return lines + [""]


def zeroshot_gain(world: World, method: str, task: str) -> dict[str, Any]:
    """Zero-shot change (method - base) on one task (shape, colour or mean), per seed, with the rule; the rows are
    the objects scored (both tasks for the mean)."""
    change = world.zeroshot_change(method)
    seeds = sorted(change, key=int)
    base = world.base["zeroshot"][task]
    rows = [world.zs_rows] * (2 if task == "mean" else 1)
    return rule([change[s][task] for s in seeds], base + math.fsum(change[s][task] for s in seeds) / len(seeds),
                base, rows)


def zeroshot_table(worlds: Sequence[World]) -> list[str]:
    """Zero-shot shape / colour change against the base per world, with the rule (forgetting)."""
    methods = [m for m in worlds[0].methods if all(m in w.results for w in worlds)]
    head = " | ".join(f"world {w.seed} {t}" for w in worlds for t in ("shape", "colour"))
    lines = ["### World zero-shot change against the base (per task; real by the rule)", "",
             f"| method | {head} |", "|---|" + "---|" * (2 * len(worlds))]
    for m in methods:
        cells = [cell(zeroshot_gain(w, m, t)) for w in worlds for t in ("shape", "colour")]
        lines.append(f"| {name(m)} | " + " | ".join(cells) + " |")
    bases = "; ".join(f"world {w.seed}: shape {fmt(w.base['zeroshot']['shape'])}, colour "
                      f"{fmt(w.base['zeroshot']['colour'])} on {w.zs_rows} objects" for w in worlds)
    return lines + ["", f"(Bases: {bases}.)", ""]


def wise_table(world: World) -> list[str]:
    if not world.wise:
        return [f"World seed {world.seed}: no WiSE-FT sweep (`wise_sweep.json` absent).", ""]
    alphas = [a for a in world.wise["alphas"] if a > 0]
    points = {(p["method"], p["alpha"]): p for p in world.wise["points"]}
    seed = str(world.wise.get("seed", 0))
    if 1.0 not in alphas:  # alpha 1 is the run itself: its seed's numbers in results.json, against the base's
        alphas.append(1.0)
        for m in dict.fromkeys(p["method"] for p in world.wise["points"]):
            r = world.results[m]
            points[(m, 1.0)] = {"compositional_change": r["seen"]["per_seed"][seed]["mean"] - world.base["seen"]["mean"],
                                "zeroshot_change": r["zeroshot"]["change_vs_base"]["per_seed"][seed]["mean"]}
    lines = [f"WiSE-FT, world seed {world.seed}, training seed {world.wise.get('seed', 0)}: seen-split mean change / "
             "zero-shot mean change against the base (alpha 0), points; alpha 1 is the fine-tuned run (results.json)", "",
             "| method | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for m in dict.fromkeys(p["method"] for p in world.wise["points"]):
        cells = []
        for a in alphas:
            p = points.get((m, a))
            cells.append("–" if p is None else
                         f"{fmt(p['compositional_change'], True)} / {fmt(p['zeroshot_change'], True)}")
        lines.append(f"| {name(m)} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="finished demo folders (one per world)")
    args = ap.parse_args(argv)
    worlds = [World(f) for f in args.folders]
    out: list[str] = []
    for w in worlds:
        out += world_table(w)
    if len(worlds) > 1:
        out += pooled(worlds)
    out += zeroshot_table(worlds)
    for w in worlds:
        out += wise_table(w)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
