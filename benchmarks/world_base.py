"""Pretrain plain CLIP on a variant of the embedded world and score it on that world's benchmark: does the base
perceive (replace-obj/att) without binding (swaps)? The experiment behind the demo's world spec.

    python benchmarks/world_base.py --out /tmp/wb --steps 800 --batch 128 --set p_colour=0.5
    python benchmarks/world_base.py --out /tmp/wb6 --set 'colours=["red","yellow","green","cyan","blue","purple"]' \
        --set 'backgrounds=["grass","sand","snow","water"]' --set heldout_pairs=5 --set p_colour=0.5

Steps: ``tripletclip world build`` (pretraining scenes, no negatives, plus a benchmark of ``--n-bench`` rows per
category), ``tripletclip train`` (CLIP, one thread, the demo's model), then the demo's evaluator. Prints one JSON
line and writes ``OUT/result.json``. Design choices were made with ``--seed 0`` (docs/world_experiments.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--spec", default="demo")
    ap.add_argument("--set", action="append", default=[], help="world spec override KEY=VALUE (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="world seed (0: the development seed)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--model", default="world-cnn")
    ap.add_argument("--n-bench", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=48)
    args = ap.parse_args()
    out = Path(args.out)
    cli = [sys.executable, "-m", "tripletclip.cli"]
    sets = [a for kv in args.set for a in ("--set", kv)]
    t0 = time.perf_counter()
    subprocess.run(cli + ["world", "build", "--out", str(out / "world"), "--spec", args.spec, "--seed", str(args.seed),
                          "--n-train", str(args.steps * args.batch), "--n-neg", "0", "--n-bench", str(args.n_bench),
                          "--image-size", str(args.image_size), "--overwrite", "--no-progress", *sets], check=True)
    from tripletclip.world import train_shards

    t1 = time.perf_counter()
    subprocess.run(cli + ["train", "loss.name=clip", f"data.train={train_shards(out / 'world')}", "data.workers=0",
                          f"model.name={args.model}", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
                          "train.threads=1", f"optim.lr={args.lr}", "optim.weight_decay=0.1", "optim.warmup_steps=50",
                          "train.save_every=0", "train.log_every=50", f"train.output_dir={out}", "train.name=run",
                          "train.progress=false"], check=True)
    t2 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from tripletclip.demo.jobs import evaluate_run
    from tripletclip.demo.stats import run_metrics

    rec = evaluate_run(out / "run", out / "world" / "bench", 256, 50)
    result = {"args": vars(args), "seen": rec["scores"]["seen"], "heldout": rec["scores"]["heldout"],
              "winoground": rec["winoground"], "retrieval": rec["retrieval"], "metrics": run_metrics(rec),
              "world_s": t1 - t0, "train_s": t2 - t1}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("seen", "heldout")}))


if __name__ == "__main__":
    main()
