"""Many worlds, no crash: ``tripletclip demo --quick`` on several world seeds; per world, whether it completed
(results.json and report.html written, exit 0) and its headline numbers (issue 23).

    nice -n 5 python benchmarks/demo_many_worlds.py --seeds 0-9 --out /tmp/worlds
    python benchmarks/demo_many_worlds.py --seeds 3,17 --out /tmp/worlds --markdown

Each world runs in its own folder ``OUT/world-SEED`` (refused if it already exists: the script never deletes a
demo) with its output in ``OUT/world-SEED.log``. The table (markdown with ``--markdown``) has, per world: exit
status, wall time, the base's perception (replace-obj/att) and swap mean, CLIP's and the best objective's
7-category mean, and TripletCLIP - CLIP on that mean (paired per seed; 'real' or 'noise' as the report says).
The quick preset trains 12 steps on one seed, so the numbers test the pipeline, not the method.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional


def parse_seeds(text: str) -> list[int]:
    """'0-9' or '0,3,7' or '0-4,10' -> seeds in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        for s in (range(int(lo), int(hi) + 1) if hi else [int(lo)]):
            if s not in seeds:
                seeds.append(s)
    return seeds


def _num(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _cat(entry: Any, cat: str) -> Optional[float]:
    cats = (entry or {}).get("categories") or {}
    return _num(cats.get(cat))


def headline(results: dict[str, Any]) -> dict[str, str]:
    """The table's cells of one world from its results.json (every method key, not a fixed list)."""
    skip = {"regime", "base", "paired", "units", "unit", "format"}
    methods = {k: v for k, v in results.items() if k not in skip and isinstance(v, dict)}
    base = results.get("base") if isinstance(results.get("base"), dict) else None
    cells = {"base perceives (r-obj / r-att)": "–", "base swap mean": "–", "CLIP mean": "–", "best (mean)": "–",
             "TripletCLIP - CLIP": "–"}
    if base:
        ro, ra, so, sa = (_cat(base, c) for c in ("replace_obj", "replace_att", "swap_obj", "swap_att"))
        if ro is not None and ra is not None:
            cells["base perceives (r-obj / r-att)"] = f"{ro:.1f} / {ra:.1f}"
        if so is not None and sa is not None:
            cells["base swap mean"] = f"{(so + sa) / 2:.1f}"
    if _num((methods.get("clip") or {}).get("mean")) is not None:
        cells["CLIP mean"] = f"{methods['clip']['mean']:.1f}"
    means = [(v, k) for k, e in methods.items() if (v := _num(e.get("mean"))) is not None]
    if means:
        v, k = max(means)
        cells["best (mean)"] = f"{k} {v:.1f}"
    d = (((results.get("paired") or {}).get("tripletclip") or {}).get("clip") or {}).get("mean")
    if isinstance(d, dict) and _num(d.get("mean")) is not None:
        cells["TripletCLIP - CLIP"] = f"{d['mean']:+.1f} ({'real' if d.get('real') else 'noise'})"
    return cells


def run_world(seed: int, out: Path, timeout: float, extra: list[str]) -> dict[str, str]:
    """One quick demo; its row of the table."""
    folder, log = out / f"world-{seed}", out / f"world-{seed}.log"
    cmd = [sys.executable, "-m", "tripletclip.cli", "demo", "--quick", "--world-seed", str(seed), "--out", str(folder),
           *extra]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                env={**os.environ, "TQDM_DISABLE": "1"}).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    wall = time.perf_counter() - t0
    has_results, has_report = (folder / "results.json").is_file(), (folder / "report.html").is_file()
    status = "ok" if rc == 0 and has_results and has_report else (
        "timeout" if rc == -1 else f"FAILED rc {rc}" + ("" if has_results else ", no results") +
        ("" if has_report else ", no report"))
    row = {"world seed": str(seed), "completed": status, "wall s": f"{wall:.0f}"}
    if has_results:
        row.update(headline(json.loads((folder / "results.json").read_text())))
    if status != "ok":
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        row["last line"] = lines[-1][:160] if lines else "(no output)"
    return row


def table(rows: list[dict[str, str]], markdown: bool) -> str:
    head = list(dict.fromkeys(k for r in rows for k in r))
    body = [[r.get(k, "") for k in head] for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                         ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-9", help="world seeds: '0-9', '0,3,7' (default 0-9)")
    ap.add_argument("--out", required=True, help="folder for the worlds' demo folders and logs")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per world before it counts as failed")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("extra", nargs="*", help="passed on to `tripletclip demo`, e.g. run.train.steps=20")
    args = ap.parse_args()
    out = Path(args.out)
    seeds = parse_seeds(args.seeds)
    taken = [s for s in seeds if (out / f"world-{s}").exists()]
    if taken:
        sys.exit(f"error: {out}/world-{taken[0]} exists; choose another --out (this script never deletes a demo)")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        rows.append(run_world(seed, out, args.timeout, args.extra))
        print(f"[world {seed}] {rows[-1]['completed']} in {rows[-1]['wall s']} s", flush=True)
    (out / "worlds.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows, args.markdown))
    sys.exit(0 if all(r["completed"] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()
