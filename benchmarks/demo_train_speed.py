"""CPU seconds of one demo training per speed setting, A/B in one process (issue 17: the demo's wall time).

    PYTHONPATH=src python benchmarks/demo_train_speed.py --world DEMO_OUT/world --base BASE.safetensors \\
        --objective tripletclip --steps 400 --reps 1 [--variants off,cache,cache+math]

Each variant trains the default demo's run config (preset ``demo``, seed 0) on the demo's world with one torch
thread, in turn (rep 1 of every variant, then rep 2, ...): ``off`` = ``data.cache_decoded_mb=0``, ``cache`` = the
preset's decoded-image and token cache, ``+math`` adds ``train.attention=math``. Printed per run: wall and CPU
seconds (``time.process_time``: this process only, less sensitive to other jobs on a shared machine than wall
time) and the sha256 of the final weights, so that a pure speedup shows the same weights as ``off``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from tripletclip.config import config_from_dict
from tripletclip.config.load import deep_merge
from tripletclip.demo.config import load_demo_config
from tripletclip.train import train
from tripletclip.utils.files import sha256_file
from tripletclip.world import train_shards

VARIANTS = {"off": {"data": {"cache_decoded_mb": 0}},
            "cache": {"data": {"cache_decoded_mb": 256}},
            "cache+math": {"data": {"cache_decoded_mb": 256}, "train": {"attention": "math"}},
            "math": {"data": {"cache_decoded_mb": 0}, "train": {"attention": "math"}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", required=True, help="a demo's world folder (DEMO_OUT/world)")
    ap.add_argument("--base", required=True, help="the CLIP base's weights file")
    ap.add_argument("--objective", default="tripletclip")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--variants", default="off,cache,cache+math")
    ap.add_argument("--out", default="", help="JSON lines of the results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    preset = load_demo_config("demo").run_dict()
    rows = []
    with tempfile.TemporaryDirectory(prefix="demo-speed-") as tmp:
        for rep in range(a.reps):
            for name in a.variants.split(","):
                run = config_from_dict(deep_merge(deep_merge(preset, VARIANTS[name]), {
                    "loss": {"name": a.objective}, "model": {"pretrained": a.base},
                    "data": {"train": train_shards(a.world)},
                    "train": {"steps": a.steps, "output_dir": tmp, "name": f"{name}-{rep}", "seed": 0}}))
                w0, c0 = time.perf_counter(), time.process_time()
                out = train(run)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                sha = sha256_file(next(iter(sorted(__import__("pathlib").Path(out["run_dir"]).rglob("model.safetensors")))))
                row = {"variant": name, "rep": rep, "objective": a.objective, "steps": a.steps, "wall_s": round(wall, 1),
                       "cpu_s": round(cpu, 1), "weights_sha256": sha[:16]}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
