"""Issue 17's item-2 targets, read from finished demos' transfer split (docs/preregistration.md, stage 9 on).

    python benchmarks/demo_targets.py warm_ws78 warm_ws79 [--against primary_ws78 primary_ws79]

Per demo (one world each): every objective's transfer replace-rel and swap mean (mean over its training seeds, per
seed in brackets), and the three targets of item 2, each read on the seeds' mean:

- bag of words: CLIP's swap mean <= 65;
- cure: every objective trained with hard negatives >= 15 points of swap mean over CLIP, the paired difference
  real (results.json ``transfer.paired``: one sign on every seed, |mean| > 1.96 SE of a difference);
- relations: replace-rel >= 75 for NegCLIP, CE-CLIP and TripletCLIP;

then the demo's wall time. A target is met when it is met on every demo given (the registered rule: a claim
holds iff it holds on both worlds). ``--against``: one demo per positional demo, in the same order (the same
world, other settings); prints each objective's paired difference demo - against on replace-rel and the swap
mean, with the same rule (``tripletclip.demo.stats.paired`` over the common seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tripletclip.demo import stats
from tripletclip.demo.transfer import metric_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from warm_start_summary import _show, r1_per_seed  # noqa: E402  (the same per-seed reading and printing)

BOW_MAX, CURE_GAIN, REL_MIN = 65.0, 15.0, 75.0  # issue 17, item 2
RELATION_OBJECTIVES = ("negclip", "ceclip", "tripletclip")
NO_NEGATIVES = ("clip", "base")


def read(demo: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results.json, demo_meta.json) of a finished demo; a folder without them stops with one line."""
    files = [demo / "results.json", demo / "demo_meta.json"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)}: not found; give the --out folder of a finished tripletclip demo")
    return json.loads(files[0].read_text()), json.loads(files[1].read_text())


def targets(results: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """The three targets on one demo: name -> (met, what was read)."""
    methods = [m for m, v in results.items() if isinstance(v, dict) and "transfer" in v]
    swap = {m: results[m]["transfer"]["swap_mean"] for m in methods}
    rel = {m: results[m]["transfer"]["categories"]["replace_rel"] for m in methods}
    out = {"bag of words": (swap["clip"] <= BOW_MAX, f"CLIP swap mean {swap['clip']:.1f}")}
    gains = []
    for m in methods:
        if m in NO_NEGATIVES:
            continue
        d = results[m]["transfer"]["paired"]["clip"]["swap_mean"]
        gains.append((m, d["mean"], d["real"]))
    out["cure"] = (all(g >= CURE_GAIN and real for _, g, real in gains),
                   ", ".join(f"{m} {g:+.1f}{' real' if real else ''}" for m, g, real in gains))
    present = [m for m in RELATION_OBJECTIVES if m in rel]
    out["relations"] = (len(present) == len(RELATION_OBJECTIVES) and all(rel[m] >= REL_MIN for m in present),
                        ", ".join(f"{m} {rel[m]:.1f}" for m in present))
    return out


def _seeds(per: dict[int, dict[str, float]], metric: str) -> str:
    return "(" + " / ".join(f"{v[metric]:.1f}" for v in per.values()) + ")" if per else ""


def print_demo(demo: Path) -> dict[str, tuple[bool, str]]:
    results, meta = read(demo)
    world = meta["world"]["seed"]
    print(f"\n{demo} (world seed {world}, preset {meta.get('preset')}; transfer split, mean over seeds "
          f"{meta.get('demo_config', {}).get('seeds')})")
    print(f"{'objective':<13}{'replace-rel':>28}{'swap mean':>28}")
    for m, v in results.items():
        if not (isinstance(v, dict) and "transfer" in v):
            continue
        per = r1_per_seed(demo, m) if m != "base" else {}  # the base: one model, no seeds
        rel, swp = _seeds(per, "replace_rel"), _seeds(per, "swap_mean")
        print(f"{m:<13}{v['transfer']['categories']['replace_rel']:>8.1f} {rel:<20}{v['transfer']['swap_mean']:>8.1f} {swp}")
    found = targets(results)
    for name, (met, what) in found.items():
        print(f"  {name}: {'met' if met else 'NOT met'} ({what})")
    print(f"  wall time {meta['wall_time_s']:.0f} s (world {meta.get('world_build_s', 0):.0f} s, base "
          f"{meta.get('base_s', 0):.0f} s, training + evaluation {meta.get('train_and_eval_s', 0):.0f} s)")
    return found


def compare(demo: Path, against: Path) -> None:
    """Paired differences demo - against per objective (same world, same seeds)."""
    results, meta = read(demo)
    rows = metric_rows(meta["transfer_benchmark"]["counts"])
    print(f"\n{demo} - {against}, paired (points; real iff one sign on every seed and |mean| > 1.96 SE)")
    for m, v in results.items():
        if not (isinstance(v, dict) and "transfer" in v) or m == "base":
            continue
        both = {"a": r1_per_seed(demo, m), "b": r1_per_seed(against, m)}
        d = stats.paired(both, rows, refs=("b",))["a"]["b"]
        print(f"  {m}: " + "; ".join(_show(c, d[c]) for c in ("replace_rel", "swap_mean")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demos", nargs="+", type=Path)
    ap.add_argument("--against", nargs="*", type=Path, default=[])
    args = ap.parse_args()
    if args.against and len(args.against) != len(args.demos):
        raise SystemExit("error: --against takes one demo per demo given, in the same order")
    found = [print_demo(d) for d in args.demos]
    print(f"\nover {len(found)} demo(s): " + "; ".join(
        f"{name} {'met' if all(f[name][0] for f in found) else 'NOT met'}" for name in found[0]))
    for demo, against in zip(args.demos, args.against):
        compare(demo, against)


if __name__ == "__main__":
    main()
