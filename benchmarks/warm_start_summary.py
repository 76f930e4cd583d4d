"""Stage 8's tables (docs/preregistration.md): R1 (a finished demo) against its warm-start runs, per world.

    python benchmarks/warm_start_summary.py --demo r1_ws76 --warm warm_ws76_s0 warm_ws76_s1

For every objective: transfer replace-rel, swap mean (swap-obj / swap-att) and replace-obj per training seed and
their mean, for R1 (the demo's own runs) and the warm start (``benchmarks/warm_start_trainer.py``'s
``results.json``, one per seed); then the paired differences with the demo's own rule
(``tripletclip.demo.stats.paired``: per-seed differences on the same rows, real iff they share one sign and the
mean exceeds 1.96 binomial standard errors of a difference): warm - R1 of the same objective, and each warm
objective - warm CLIP.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from tripletclip.demo import stats
from tripletclip.demo.transfer import metric_rows

METRICS = ("replace_rel", "swap_mean", "transfer/swap_obj", "transfer/swap_att", "transfer/replace_obj")


def r1_per_seed(demo: Path, method: str) -> dict[int, dict[str, float]]:
    """The demo's per-seed transfer numbers of ``method`` (results.json's ``transfer.per_seed``)."""
    entry = json.loads((demo / "results.json").read_text())[method]["transfer"]["per_seed"]
    return {int(s): _metrics(v) for s, v in entry.items()}


def _metrics(cats: dict[str, Any]) -> dict[str, float]:
    out = {"replace_rel": float(cats["replace_rel"]),
           "swap_mean": statistics.fmean([float(cats["swap_obj"]), float(cats["swap_att"])])}
    out.update({f"transfer/{c}": float(cats[c]) for c in ("swap_obj", "swap_att", "replace_obj")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, type=Path)
    ap.add_argument("--warm", required=True, nargs="+", type=Path, help="warm_start_trainer.py outputs, one per seed")
    args = ap.parse_args()
    warm: dict[str, dict[int, dict[str, float]]] = {}
    for folder in args.warm:
        rec = json.loads((folder / "results.json").read_text())
        for m, r in rec["methods"].items():
            warm.setdefault(m, {})[int(rec["args"]["seed"])] = _metrics(r["transfer"])
    methods = list(warm)
    r1 = {m: r1_per_seed(args.demo, m) for m in methods}
    # the transfer benchmark's rows per category and split, as the demo recorded them
    rows = metric_rows(json.loads((args.demo / "demo_meta.json").read_text())["transfer_benchmark"]["counts"])
    print(f"transfer split of {args.demo} (rows: {rows['replace_rel'][0]} per category)")
    print(f"{'objective':<12}{'run':<6}{'seed':<6}" + "".join(f"{c.split('/')[-1]:>13}" for c in METRICS))
    for m in methods:
        for label, table in (("R1", r1[m]), ("warm", warm[m])):
            for s in sorted(table):
                print(f"{m:<12}{label:<6}{s:<6}" + "".join(f"{table[s][c]:>13.1f}" for c in METRICS))
            means = {c: statistics.fmean(table[s][c] for s in table) for c in METRICS}
            print(f"{m:<12}{label:<6}{'mean':<6}" + "".join(f"{means[c]:>13.1f}" for c in METRICS))
    print("\npaired differences (points; real iff one sign on every seed and |mean| > 1.96 SE of a difference)")
    for m in methods:
        both = {f"{m}-warm": warm[m], m: r1[m]}
        d = stats.paired(both, rows, refs=(m,))[f"{m}-warm"][m]
        print(f"{m} warm - R1: " + "; ".join(_show(c, d[c]) for c in METRICS[:2]))
    d = stats.paired(warm, rows, refs=("clip",))
    for m in methods:
        if m != "clip":
            print(f"{m} warm - CLIP warm: " + "; ".join(_show(c, d[m]["clip"][c]) for c in METRICS[:2]))


def _show(metric: str, d: dict[str, Any]) -> str:
    seeds = ", ".join(f"{v:+.1f}" for v in d["per_seed"].values())
    return f"{metric} {d['mean']:+.1f} ± {d['sampling_error']:.1f} ({seeds}){' real' if d['real'] else ''}"


if __name__ == "__main__":
    main()
