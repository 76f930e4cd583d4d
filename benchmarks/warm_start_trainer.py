"""A small-pool warm start through the real trainer (docs/world_experiments.md, section 15).

Section 12's relation pool left the plateau of relation negatives within 400 steps when the first half of the
steps drew batches from 512 positives only (a warm start); this runs the same schedule through
``tripletclip.train.train`` on a finished ``tripletclip demo`` (its world, run configs, transfer split):

    python benchmarks/warm_start_trainer.py --demo /tmp/h23/r1 --out /tmp/h23/warm200 \\
        [--methods clip,negclip,tripletclip] [--seed 0] [--warm-steps 200] [--warm-n 512] [--warm-seed-offset 20000] \\
        [--control]

For each objective: phase 1 trains the demo run's own ``config.yaml`` (``runs/<method>-seed<seed>``) for
``--warm-steps`` on a warm world of ``--warm-n`` positives (the demo world's spec, edit types, ``n_neg`` and
batch blocks; scene seed ``world seed + --warm-seed-offset``, so its positives are not the main set's); phase 2
starts from phase 1's weights (``model.pretrained`` = phase 1's run folder, ``model.logit_scale=0``: the learned
temperature is kept, not reset to the preset's 100) and trains the rest of the demo run's steps on the demo's
training shards, every other setting as the demo run's. The optimiser state restarts at phase 2, with its
warm-up. The phases and the warm world are the demo's own (``tripletclip.demo.warm``): a demo run with
``warm_start: {rows: N, steps: W, seed_offset: K}`` trains bitwise the same weights as this script's
``--warm-n N --warm-steps W --warm-seed-offset K`` on a demo of the same settings without it (the demo's own
warm-started runs are ``runs/<method>-seed<seed>`` there, so point ``--demo`` at a demo without ``warm_start``).
Both phases together take the demo run's steps x batch (equal compute). Phase 2's model is scored as the demo
scores a run (``demo.jobs.evaluate_run``, ``demo.transfer.evaluate_transfer``); phase 1's on the
transfer split only. Prints per objective transfer replace-rel, swap-obj, swap-att, swap mean and replace-obj,
with the demo's own run beside it; writes ``OUT/results.json``. ``--control``: phase 1 on the demo's own shards
instead of the warm world (the same two phases, optimiser restart and kept temperature, without the small pool).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

COLUMNS = ("replace_rel", "swap_obj", "swap_att", "swap_mean", "replace_obj")


def _warm_world_kwargs(demo: Path, n: int, offset: int) -> dict[str, Any]:
    from tripletclip.demo.warm import world_args

    meta = json.loads((demo / "demo_meta.json").read_text())
    return {"rows": n, "progress": False, **world_args(meta["world"], meta["world_spec"], offset)}


def build_warm_world(demo: Path, out: Path, n: int, offset: int) -> dict[str, Any]:
    """The warm world's training shards: ``n`` positives of the demo world's spec and negatives, new scenes
    (the demo's own builder, demo/warm.py: a demo with ``warm_start`` builds the same bytes)."""
    from tripletclip.demo.warm import build_warm_world as build

    return build(out, **_warm_world_kwargs(demo, n, offset))


def _isolated_world(demo: Path, out: Path, n: int, offset: int) -> dict[str, Any]:
    # NOTE: demo/run.py measured training 7x slower in a process that had just rendered a world: render elsewhere
    # (the library's builder: a function of this script, loaded by path, would not unpickle there)
    from tripletclip.demo.warm import build_warm_world as build

    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(build, out, **_warm_world_kwargs(demo, n, offset)).result()


def transfer_row(scores: dict[str, Any]) -> dict[str, float]:
    """The printed columns from one run's ``transfer_scores['transfer']``."""
    row = {c: float(scores[c]) for c in COLUMNS if c in scores}
    row["swap_mean"] = statistics.fmean([row["swap_obj"], row["swap_att"]])
    return row


def warm_overlap(warm_train: Path, transfer_dir: Path) -> dict[str, int]:
    """Transfer rows whose caption or foil is a text of the warm training set (the demo rejects its own only)."""
    from tripletclip.world.transfer.pairs import iter_rows, training_texts

    texts, _ = training_texts(warm_train)
    rows = list(iter_rows(transfer_dir, "transfer"))
    hit = sum(r["caption"] in texts or r["negative_caption"] in texts for r in rows)
    return {"rows": len(rows), "rows_with_a_warm_text": hit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, help="a finished tripletclip demo output folder (the baseline)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="clip,negclip,tripletclip")
    ap.add_argument("--seed", type=int, default=0, help="the demo run's training seed")
    ap.add_argument("--warm-steps", type=int, default=200)
    ap.add_argument("--warm-n", type=int, default=512, help="positives of the warm world")
    ap.add_argument("--warm-seed-offset", type=int, default=20_000)
    ap.add_argument("--control", action="store_true", help="phase 1 on the demo's shards (no small pool)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from tripletclip.demo.jobs import evaluate_run
    from tripletclip.demo.transfer import evaluate_transfer
    from tripletclip.errors import InputError
    from tripletclip.models import load_run_model
    from tripletclip.config import config_to_dict
    from tripletclip.config.load import load_config
    from tripletclip.demo.jobs import drop_train_state
    from tripletclip.demo.warm import phase_one, phase_two, train_phase
    from tripletclip.world import train_shards

    demo, out = Path(args.demo), Path(args.out)
    transfer_dir, bench = demo / "world" / "transfer", demo / "world" / "bench"
    baseline = json.loads((demo / "results.json").read_text())
    warm_setting = json.loads((demo / "demo_meta.json").read_text()).get("demo_config", {}).get("warm_start") or {}
    if warm_setting.get("rows") and warm_setting.get("steps"):  # its runs are phase 2s: their configs would mislead
        raise InputError(f"--demo {demo}: its runs are warm-started already (warm_start in its preset); point --demo "
                         f"at a demo without warm_start")
    warm_dir = demo / "world" if args.control else out / "warm_world"
    if not (warm_dir / "world.json").is_file():
        t0 = time.perf_counter()
        world = _isolated_world(demo, warm_dir, args.warm_n, args.warm_seed_offset)
        print(f"warm world: {world['train']['samples']} positives, seed {world['seed']}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    overlap = warm_overlap(warm_dir / "train", transfer_dir)
    print(f"transfer rows with a caption or foil of the warm set: {overlap}", flush=True)
    record: dict[str, Any] = {"args": vars(args), "warm_overlap": overlap, "methods": {}}
    for m in args.methods.split(","):
        config = demo / "runs" / f"{m}-seed{args.seed}" / "config.yaml"
        if not config.is_file():
            raise InputError(f"{config}: no such demo run (check --demo, --methods, --seed)")
        total = int(json.loads((demo / "runs" / f"{m}-seed{args.seed}" / "final_metrics.json").read_text())["step"])
        if not 0 < args.warm_steps < total:
            raise InputError(f"--warm-steps={args.warm_steps} must lie between 0 and the demo run's {total} steps")
        run, where = config_to_dict(load_config(config)), f"{config} + warm start"
        t0 = time.perf_counter()  # the demo's two phases (demo/warm.py), in OUT/runs
        warm = train_phase(phase_one(run, train_shards(warm_dir), args.warm_steps, out / "runs", f"{m}-warm"), where)
        drop_train_state(warm)  # nothing resumes a phase; model.pretrained reads the weights only
        t1 = time.perf_counter()
        main_run = train_phase(phase_two(run, warm, total - args.warm_steps, out / "runs", f"{m}-main"), where)
        drop_train_state(main_run)
        t2 = time.perf_counter()
        bundle = load_run_model(main_run)
        scores = evaluate_run(main_run, bench)
        scores.update(evaluate_transfer(bundle, str(transfer_dir)))
        phase1 = evaluate_transfer(load_run_model(warm), str(transfer_dir))
        rec = {"train_s": [t1 - t0, t2 - t1], "logit_scale": [float(load_run_model(r).model.logit_scale.detach().exp())
                                                              for r in (warm, main_run)],
               "transfer": transfer_row(scores["transfer_scores"]["transfer"]),
               "phase1_transfer": transfer_row(phase1["transfer_scores"]["transfer"]),
               "world_bench": scores["scores"], "winoground": scores["winoground"],
               "transfer_winoground": scores.get("transfer_winoground"),
               "baseline_transfer": transfer_row(baseline[m]["transfer"]["categories"])}
        record["methods"][m] = rec
        print(f"{m}: trained {rec['train_s'][0]:.0f} + {rec['train_s'][1]:.0f} s, logit scale after phase 1 / 2 "
              f"{rec['logit_scale'][0]:.1f} / {rec['logit_scale'][1]:.1f}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    first = "the demo's shards (control)" if args.control else f"{args.warm_n} positives"
    print(f"\ntransfer split (demo {demo}, seed {args.seed}; phase 1: {args.warm_steps} steps on {first}, "
          f"then the demo's shards)")
    print(f"{'objective':<12}{'run':<10}" + "".join(f"{c:>13}" for c in COLUMNS))
    for m, rec in record["methods"].items():
        for label, row in (("demo", rec["baseline_transfer"]), ("phase 1", rec["phase1_transfer"]),
                           ("warm", rec["transfer"])):
            print(f"{m:<12}{label:<10}" + "".join(f"{row.get(c, float('nan')):>13.1f}" for c in COLUMNS))


if __name__ == "__main__":
    from tripletclip.errors import InputError

    try:
        main()
    except InputError as e:  # a wrong --demo, --methods, --seed or --warm-steps: one line, no traceback
        raise SystemExit(f"error: {e}") from None
