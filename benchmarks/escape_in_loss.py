"""Whether a warm-started run left the relation plateau, read from its own training log (world_experiments.md s. 16).

    python benchmarks/escape_in_loss.py warm_ws78 warm_ws79 [--methods tripletclip] [--last 5]

For every run of the given demos (``runs/<method>-seed<s>``, phase 2 of a warm start, and ``...-warm``, phase 1,
when the demo had ``warm_start``): the transfer split's replace-rel (results.json ``transfer.per_seed``), phase 1's
last logged loss and temperature, and the mean of the last ``--last`` logged records of phase 2's loss terms
(``metrics.jsonl``). Sorted by replace-rel, so a gap between the runs that left the plateau and those that did not
shows as a step in a column.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def records(path: Path) -> list[dict[str, Any]]:
    """The logged records of one run (metrics.jsonl, one JSON object per logged step)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_row(demo: Path, method: str, seed: str, rel: float, last: int) -> dict[str, Any]:
    """One run: replace-rel, phase 1's end (if warm-started) and phase 2's last ``last`` records' means."""
    phase2 = records(demo / "runs" / f"{method}-seed{seed}" / "metrics.jsonl")[-last:]
    keys = [k for k in phase2[-1] if k.startswith("loss/")]
    row: dict[str, Any] = {"demo": demo.name, "method": method, "seed": seed, "replace_rel": rel}
    row.update({k: statistics.fmean(r[k] for r in phase2) for k in keys})
    warm = demo / "runs" / f"{method}-seed{seed}-warm" / "metrics.jsonl"
    if warm.is_file():
        end = records(warm)[-1]
        row["phase1_loss"], row["phase1_logit_scale"] = end["loss/loss"], end["logit_scale"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demos", nargs="+", type=Path)
    ap.add_argument("--methods", default="tripletclip")
    ap.add_argument("--last", type=int, default=5, help="phase 2's last logged records to average")
    args = ap.parse_args()
    rows = []
    for demo in args.demos:
        if not (demo / "results.json").is_file():
            raise SystemExit(f"error: {demo / 'results.json'}: not found; give the --out folder of a finished demo")
        results = json.loads((demo / "results.json").read_text())
        for m in args.methods.split(","):
            for seed, cats in results[m]["transfer"]["per_seed"].items():
                rows.append(run_row(demo, m, seed, float(cats["replace_rel"]), args.last))
    columns = sorted({k for r in rows for k in r} - {"demo", "method", "seed", "replace_rel"})
    print(f"{'demo':<16}{'method':<13}{'seed':<6}{'replace_rel':>12}" + "".join(f"{c:>22}" for c in columns))
    for r in sorted(rows, key=lambda r: (r["method"], r["replace_rel"])):
        print(f"{r['demo']:<16}{r['method']:<13}{r['seed']:<6}{r['replace_rel']:>12.1f}"
              + "".join(f"{r[c]:>22.3f}" if c in r else f"{'-':>22}" for c in columns))


if __name__ == "__main__":
    main()
