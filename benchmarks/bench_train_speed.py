"""Training throughput: tripletclip vs ``python -m open_clip_train.main`` on the same CSV, model, batch and
precision, plus the cost of a TripletCLIP step relative to a CLIP step, and MFU against a measured peak.

    pip install pandas   # open_clip_train needs it; tripletclip does not
    python benchmarks/bench_train_speed.py --model ViT-B-32 --batch 64 --steps 12 --out bench_train.json
    python benchmarks/bench_train_speed.py ... --accum 4 --compile   # + CLIP in 4 micro-batches, + compiled

``--accum A`` adds CLIP at the same global batch in A micro-batches (train/accum.py): its time per pair over
the plain run's is the accumulation cost (one extra forward without graph per micro-batch is the floor).
``--compile`` adds CLIP with ``train.compile=true`` (its first steps, which compile, are excluded).

Not a test: it takes minutes. Steps 1..warmup are excluded from the rates (allocator and thread-pool warmup).
open_clip_train cannot see our model configs, so it runs through a two-line launcher that registers them
first (open_clip.add_model_config), then calls its unmodified ``main``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tripletclip.models import create_model
from tripletclip.models.factory import CONFIG_DIR

WORDS = "red blue green yellow cube ball cone ring small large left right above below of a the".split()


def make_csv(root: Path, n: int, size: int, with_negatives: bool) -> Path:
    """n random JPEGs + captions in open_clip's CSV layout (TSV, filepath, title) and optional negatives."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["filepath\ttitle\tneg_caption\tneg_image"]
    for i in range(n):
        for tag in ("", "_neg"):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "img" / f"{i:06d}{tag}.jpg", quality=90)
        cap = " ".join(rng.choice(WORDS, 8))
        neg = " ".join(rng.choice(WORDS, 8))
        rows.append(f"img/{i:06d}.jpg\t{cap}\t{neg}\timg/{i:06d}_neg.jpg")
    path = root / "train.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def train_flops_per_pair(model_name: str, batch: int) -> float:
    """FLOPs of one forward+backward of a CLIP step per pair (torch's flop counter, matmuls and convs).

    NOTE: counted at the full text context, as open_clip computes it. tripletclip trims the text tower to the
    longest caption (models/trimmed.py), so its "MFU" here is full-context-equivalent and can exceed 1.
    """
    from torch.utils.flop_counter import FlopCounterMode

    b = create_model(model_name)
    size = b.image_size
    img = torch.randn(batch, 3, size, size)
    txt = torch.randint(0, 1000, (batch, b.context_length))
    with FlopCounterMode(display=False) as fc:
        out = b.model(img, txt)
        (out[0].sum() + out[1].sum()).backward()
    return fc.get_total_flops() / batch


def run_ours(csv: Path, out: Path, model: str, batch: int, steps: int, loss: str, workers: int, precision: str,
             extra: tuple[str, ...] = (), name: str = "") -> dict:
    name = name or loss
    cmd = [sys.executable, "-m", "tripletclip.cli", "train", "data.type=csv", f"data.train={csv}",
           "data.neg_caption_key=neg_caption", "data.neg_image_key=neg_image", f"data.workers={workers}",
           f"model.name={model}", f"loss.name={loss}", f"train.batch_size={batch}", f"train.steps={steps}",
           f"train.precision={precision}", "train.log_every=1", "train.save_every=0", "train.progress=false",
           f"train.output_dir={out}", f"train.name={name}", "optim.warmup_steps=2", *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    recs = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    rates = [r["pairs_per_s"] for r in recs if r["step"] > 2]
    waits = [r["data_wait_frac"] for r in recs if r["step"] > 2]
    return {"pairs_per_s": float(np.median(rates)), "step_s": batch / float(np.median(rates)),
            "data_wait_frac": float(np.mean(waits)), "wall_s": wall, "logits_i2t": recs[-1].get("logits_i2t")}


LAUNCH = "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); from open_clip_train.main import main; main(sys.argv[1:])"


def run_open_clip(csv: Path, out: Path, model: str, batch: int, steps: int, workers: int, precision: str) -> dict:
    n = steps * batch
    cmd = [sys.executable, "-c", LAUNCH, str(CONFIG_DIR), "--train-data", str(csv), "--dataset-type", "csv",
           "--csv-separator", "\t", "--csv-img-key", "filepath", "--csv-caption-key", "title",
           "--train-num-samples", str(n), "--batch-size", str(batch), "--epochs", "1", "--model", model,
           "--precision", {"bf16": "amp_bf16", "fp16": "amp", "fp32": "fp32"}[precision], "--workers", str(workers),
           "--logs", str(out), "--name", "openclip", "--log-every-n-steps", "1", "--lr", "5e-4",
           "--warmup", "2", "--save-frequency", "0", "--report-to", ""]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(csv.parent))
    wall = time.perf_counter() - t
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"open_clip_train failed:\n{log[-3000:]}")
    # "Batch (t): 1.234, 51.87/s, 51.87/s/gpu" per logged step
    rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s", log)]
    rates = rates[2:] if len(rates) > 3 else rates
    return {"pairs_per_s": float(np.median(rates)), "step_s": batch / float(np.median(rates)), "wall_s": wall,
            "logged_steps": len(rates)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["bf16", "fp16", "fp32"],
                    help="fp32 on CPUs without native bf16 (see tripletclip/train/precision.py)")
    ap.add_argument("--image-size", type=int, default=256, help="stored JPEG size (the model resizes)")
    ap.add_argument("--out", default="bench_train.json")
    ap.add_argument("--skip-open-clip", action="store_true")
    ap.add_argument("--accum", type=int, default=0, help="also CLIP in this many micro-batches (0: skip)")
    ap.add_argument("--compile", action="store_true", help="also CLIP with train.compile=true")
    ap.add_argument("--compile-backend", default="inductor")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = make_csv(root / "data", args.batch * args.steps + args.batch, args.image_size, True)
        res: dict = {"args": vars(args), "torch_threads": torch.get_num_threads()}
        # bf16 at a smaller size: on CPUs without native bf16 it is emulated and ~60x slower
        res["peak_flops"] = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, n=512, reps=2)}
        res["train_flops_per_pair"] = train_flops_per_pair(args.model, 8)
        res["ours_clip"] = run_ours(csv, root / "ours", args.model, args.batch, args.steps, "clip", args.workers, args.precision)
        res["ours_tripletclip"] = run_ours(csv, root / "ours", args.model, args.batch, args.steps, "tripletclip", args.workers, args.precision)
        if args.accum > 1:
            res["ours_clip_accum"] = run_ours(csv, root / "ours", args.model, args.batch, args.steps, "clip", args.workers,
                                              args.precision, (f"train.accum_steps={args.accum}",), "clip-accum")
            res["accum_time_per_pair_over_plain"] = res["ours_clip_accum"]["step_s"] / res["ours_clip"]["step_s"]
        if args.compile:
            res["ours_clip_compile"] = run_ours(csv, root / "ours", args.model, args.batch, args.steps, "clip", args.workers,
                                                args.precision, ("train.compile=true",
                                                                 f"train.compile_backend={args.compile_backend}"),
                                                "clip-compile")
            res["compile_pairs_per_s_over_plain"] = (res["ours_clip_compile"]["pairs_per_s"]
                                                     / res["ours_clip"]["pairs_per_s"])
        if not args.skip_open_clip:
            res["open_clip"] = run_open_clip(csv, root / "oc", args.model, args.batch, args.steps, args.workers, args.precision)
            res["speedup_vs_open_clip"] = res["ours_clip"]["pairs_per_s"] / res["open_clip"]["pairs_per_s"]
        res["tripletclip_step_over_clip_step"] = res["ours_tripletclip"]["step_s"] / res["ours_clip"]["step_s"]
        peak = res["peak_flops"][args.precision]
        res["mfu_ours_clip"] = res["ours_clip"]["pairs_per_s"] * res["train_flops_per_pair"] / peak
        if "open_clip" in res:
            res["mfu_open_clip"] = res["open_clip"]["pairs_per_s"] * res["train_flops_per_pair"] / peak
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict) or k.startswith(("ours", "open"))}, indent=1))


if __name__ == "__main__":
    main()
