"""Training throughput in one run: tripletclip's CLIP and TripletCLIP steps, CLIP with exact gradient
accumulation (same global batch), CLIP with ``train.compile=true``, and ``python -m open_clip_train.main`` on the
same CSV, model, batch and precision; a markdown table of pairs/s and the ratios issue 18 sets targets for, plus
MFU against a measured matmul peak.

    pip install pandas   # open_clip_train needs it; tripletclip does not
    python benchmarks/bench_train_speed.py --model ViT-B-32 --batch 64 --steps 12 --out bench_train.json
    python benchmarks/bench_train_speed.py ... --repeats 3 --md bench_train.md   # 3 interleaved rounds, medians
    python benchmarks/bench_train_speed.py ... --accum 0 --no-compile --skip-open-clip   # CLIP and TripletCLIP only

Runs (each a separate training process; one round runs each once, in this order, so that rounds interleave):
``clip``, ``tripletclip`` (one negative caption and image per pair), ``clip-accum`` (``train.accum_steps=A``:
the global batch in A micro-batches, train/accum.py), ``open_clip_train`` (its unmodified ``main``) and
``clip-compile`` (``train.compile=true``; last, as its compilation takes longest); with ``--ab-host-memory`` also
``clip-malloc`` and ``tripletclip-malloc`` (``train.keep_host_memory=false``: glibc's default malloc, which maps
and zero-fills every large tensor afresh each step; utils/host_memory.py), and with ``--open-clip-keep-memory``
``open_clip-keep`` (open_clip_train with the same malloc settings through GLIBC_TUNABLES). Ratios, each the median
over rounds of the round's ratio: ours / open_clip_train pairs/s; TripletCLIP step / CLIP step;
accumulation's time per pair / the plain step's (one extra forward without graph per micro-batch is the
floor); compiled / eager pairs/s.

Not a test: it takes minutes (every run trains ``--steps`` steps of the full model on the CPU). Steps
1..warmup of every run are excluded from its rate (allocator and thread-pool warmup; compilation, which
train.compile's text-length buckets keep to at most 2 graphs). The 1-minute load average is recorded
before and after every run: on a shared machine compare only ratios of one run, and repeat. open_clip_train
cannot see our model configs, so it runs through a two-line launcher that registers them first
(open_clip.add_model_config), then calls its unmodified ``main``.
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
from typing import Any, Callable
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


def matmul_peak(dtype: torch.dtype, device: str, n: int = 1024, reps: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul (the MFU denominator: what this machine actually reaches)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
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


def _load() -> float:
    return os.getloadavg()[0]


def _rate(rates: list[float], batch: int, wall: float, load0: float) -> dict[str, Any]:
    if not rates:
        raise RuntimeError("no step after the warmup steps: raise --steps")
    med = float(np.median(rates))
    return {"pairs_per_s": med, "step_s": batch / med, "rates": rates, "wall_s": wall, "load_before": load0,
            "load_after": _load()}


def run_ours(csv: Path, out: Path, a: argparse.Namespace, loss: str, extra: tuple[str, ...], name: str) -> dict:
    """One tripletclip training process; its metrics.jsonl gives pairs/s per step (log_every=1)."""
    cmd = [sys.executable, "-m", "tripletclip.cli", "train", "data.type=csv", f"data.train={csv}",
           "data.neg_caption_key=neg_caption", "data.neg_image_key=neg_image", f"data.workers={a.workers}",
           f"model.name={a.model}", f"loss.name={loss}", f"train.batch_size={a.batch}", f"train.steps={a.steps}",
           f"train.precision={a.precision}", "train.log_every=1", "train.save_every=0", "train.progress=false",
           f"train.threads={a.threads}", f"train.output_dir={out}", f"train.name={name}", "optim.warmup_steps=2",
           *extra]
    load0, t = _load(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    recs = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    res = _rate([r["pairs_per_s"] for r in recs if r["step"] > a.warmup], a.batch, wall, load0)
    res["data_wait_frac"] = float(np.mean([r["data_wait_frac"] for r in recs if r["step"] > a.warmup]))
    res["peak_rss_gb"] = max(r["peak_memory_bytes"] for r in recs) / 1e9  # CPU: the process's peak resident set
    return res


LAUNCH = "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); from open_clip_train.main import main; main(sys.argv[1:])"


# glibc's malloc told by environment what train.keep_host_memory tells it through mallopt (utils/host_memory.py)
KEEP_MEMORY_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615"


def run_open_clip(csv: Path, out: Path, a: argparse.Namespace, name: str, tunables: str = "") -> dict:
    """``open_clip_train.main`` on the same CSV; pairs/s per step parsed from its log lines. ``tunables``: a
    GLIBC_TUNABLES value for its process (its code unchanged)."""
    cmd = [sys.executable, "-c", LAUNCH, str(CONFIG_DIR), "--train-data", str(csv), "--dataset-type", "csv",
           "--csv-separator", "\t", "--csv-img-key", "filepath", "--csv-caption-key", "title",
           "--train-num-samples", str(a.steps * a.batch), "--batch-size", str(a.batch), "--epochs", "1",
           "--model", a.model, "--precision", {"bf16": "amp_bf16", "fp16": "amp", "fp32": "fp32"}[a.precision],
           "--workers", str(a.workers), "--logs", str(out), "--name", name, "--log-every-n-steps", "1",
           "--lr", "5e-4", "--warmup", "2", "--save-frequency", "0", "--report-to", ""]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if a.threads > 0:  # open_clip_train takes torch's default: set it through the environment
        env["OMP_NUM_THREADS"] = str(a.threads)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    load0, t = _load(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(csv.parent))
    wall = time.perf_counter() - t
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"open_clip_train failed:\n{log[-3000:]}")
    # "Batch (t): 1.234, 51.87/s, 51.87/s/gpu" per logged step, the first at step 1
    rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s", log)]
    return _rate(rates[a.warmup:], a.batch, wall, load0)


# name -> (label, how to run it); ratios name the runs they divide
def plan_runs(a: argparse.Namespace) -> dict[str, tuple[str, Callable[[Path, Path, str], dict]]]:
    runs: dict[str, tuple[str, Callable[[Path, Path, str], dict]]] = {
        "clip": ("tripletclip trainer, CLIP", lambda csv, out, n: run_ours(csv, out, a, "clip", (), n)),
        "tripletclip": ("tripletclip trainer, TripletCLIP (one negative caption and image per pair)",
                        lambda csv, out, n: run_ours(csv, out, a, "tripletclip", (), n)),
    }
    if a.ab_host_memory:  # the same two runs with glibc's default malloc (train.keep_host_memory, utils/host_memory.py)
        runs["clip-malloc"] = ("tripletclip trainer, CLIP, train.keep_host_memory=false", lambda csv, out, n: run_ours(
            csv, out, a, "clip", ("train.keep_host_memory=false",), n))
        runs["tripletclip-malloc"] = ("tripletclip trainer, TripletCLIP, train.keep_host_memory=false",
                                      lambda csv, out, n: run_ours(csv, out, a, "tripletclip",
                                                                   ("train.keep_host_memory=false",), n))
    if a.accum > 1:
        runs["clip-accum"] = (f"tripletclip trainer, CLIP in {a.accum} micro-batches of {a.batch // a.accum} "
                              "(same global batch)",
                              lambda csv, out, n: run_ours(csv, out, a, "clip", (f"train.accum_steps={a.accum}",), n))
    if not a.skip_open_clip:
        runs["open_clip"] = ("`open_clip_train` (unmodified `main`, same CSV, model, batch, precision)",
                             lambda csv, out, n: run_open_clip(csv, out, a, n))
        if a.open_clip_keep_memory:
            runs["open_clip-keep"] = ("`open_clip_train` with glibc keeping freed memory (GLIBC_TUNABLES, as "
                                      "train.keep_host_memory)",
                                      lambda csv, out, n: run_open_clip(csv, out, a, n, KEEP_MEMORY_TUNABLES))
    if a.compile:
        runs["clip-compile"] = (f"tripletclip trainer, CLIP, train.compile=true ({a.compile_backend})",
                                lambda csv, out, n: run_ours(csv, out, a, "clip", (
                                    "train.compile=true", f"train.compile_backend={a.compile_backend}"), n))
    return runs


# (key, numerator run, denominator run, quantity, target text, target test)
RATIOS = [
    ("speedup_vs_open_clip", "clip", "open_clip", "pairs_per_s", "ours / open_clip_train pairs/s",
     ">= 1.70 (earlier 1.70-1.76)", lambda r: r >= 1.70),
    ("speedup_vs_open_clip_same_malloc", "clip", "open_clip-keep", "pairs_per_s",
     "ours / open_clip_train pairs/s, both keeping freed memory", "(reported)", None),
    ("tripletclip_step_over_clip_step", "tripletclip", "clip", "step_s", "TripletCLIP step / CLIP step",
     "<= 1.95", lambda r: r <= 1.95),
    ("accum_time_per_pair_over_plain", "clip-accum", "clip", "step_s", "accumulation's time per pair / plain",
     "<= 1.4", lambda r: r <= 1.4),
    ("host_memory_clip_speedup", "clip", "clip-malloc", "pairs_per_s", "CLIP pairs/s, keep_host_memory / glibc default",
     "(reported)", None),
    ("host_memory_tripletclip_speedup", "tripletclip", "tripletclip-malloc", "pairs_per_s",
     "TripletCLIP pairs/s, keep_host_memory / glibc default", "(reported)", None),
    ("tripletclip_step_over_clip_step_malloc", "tripletclip-malloc", "clip-malloc", "step_s",
     "TripletCLIP step / CLIP step, both glibc default", "(reported)", None),
    ("compile_pairs_per_s_over_eager", "clip-compile", "clip", "pairs_per_s", "compiled / eager pairs/s",
     "(reported)", None),
]


def summarise(rounds: list[dict[str, dict]], labels: dict[str, str]) -> dict[str, Any]:
    """Medians over rounds per run, and each ratio as the median of its per-round values."""
    runs = {}
    for name in labels:
        rs = [r[name] for r in rounds]
        runs[name] = {"label": labels[name], "pairs_per_s": float(np.median([r["pairs_per_s"] for r in rs])),
                      "step_s": float(np.median([r["step_s"] for r in rs])),
                      "data_wait_frac": (float(np.median([r["data_wait_frac"] for r in rs]))
                                         if "data_wait_frac" in rs[0] else None),
                      "peak_rss_gb": float(np.median([r["peak_rss_gb"] for r in rs])) if "peak_rss_gb" in rs[0] else None,
                      "pairs_per_s_rounds": [r["pairs_per_s"] for r in rs],
                      "load": [[r["load_before"], r["load_after"]] for r in rs]}
    ratios = {}
    for key, num, den, q, what, target, ok in RATIOS:
        if num in labels and den in labels:
            per_round = [r[num][q] / r[den][q] for r in rounds]
            med = float(np.median(per_round))
            ratios[key] = {"what": what, "median": med, "rounds": per_round, "target": target,
                           "met": None if ok is None else bool(ok(med))}
    return {"runs": runs, "ratios": ratios}


def markdown(summary: dict[str, Any], a: argparse.Namespace, mfu: dict[str, float]) -> str:
    n = a.repeats
    lines = [f"{a.model}, batch {a.batch}, {a.precision}, {a.steps} steps (rates of steps > {a.warmup}), "
             f"{a.workers} data workers, torch threads {a.threads or torch.get_num_threads()}, {n} round(s); "
             "medians over rounds", "",
             "| run | pairs/s | s per step | data wait | peak RSS GB | pairs/s per round | load avg (1 min) before-after |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["runs"].values():
        wait = "-" if r["data_wait_frac"] is None else f"{r['data_wait_frac']:.2f}"
        per = ", ".join(f"{x:.2f}" for x in r["pairs_per_s_rounds"])
        load = ", ".join(f"{b:.1f}-{e:.1f}" for b, e in r["load"])
        rss = "-" if r["peak_rss_gb"] is None else f"{r['peak_rss_gb']:.2f}"
        lines.append(f"| {r['label']} | {r['pairs_per_s']:.2f} | {r['step_s']:.2f} | {wait} | {rss} | {per} | {load} |")
    lines += ["", "| ratio | median | per round | target | met |", "|---|---|---|---|---|"]
    for r in summary["ratios"].values():
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        per = ", ".join(f"{x:.2f}" for x in r["rounds"])
        lines.append(f"| {r['what']} | {r['median']:.2f} | {per} | {r['target']} | {met} |")
    if mfu:
        lines += ["", "MFU (full-context-equivalent for ours, see train_flops_per_pair): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in mfu.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2, help="first steps of every run excluded from its rate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--precision", default="fp32", choices=["bf16", "fp16", "fp32"],
                    help="fp32 on CPUs without native bf16 (see tripletclip/train/precision.py)")
    ap.add_argument("--image-size", type=int, default=256, help="stored JPEG size (the model resizes)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all runs, interleaved; medians reported")
    ap.add_argument("--out", default="bench_train.json")
    ap.add_argument("--md", default="", help="also write the markdown table to this file")
    ap.add_argument("--skip-open-clip", action="store_true")
    ap.add_argument("--accum", type=int, default=4, help="CLIP in this many micro-batches (0 or 1: skip)")
    ap.add_argument("--ab-host-memory", action="store_true",
                    help="also run CLIP and TripletCLIP with train.keep_host_memory=false (glibc's default malloc)")
    ap.add_argument("--open-clip-keep-memory", action="store_true",
                    help="also run open_clip_train with GLIBC_TUNABLES that keep freed memory, as ours does by default")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip CLIP with train.compile=true")
    ap.add_argument("--compile-backend", default="inductor")
    args = ap.parse_args()
    if args.accum > 1 and args.batch % args.accum:
        ap.error(f"--batch {args.batch} does not split into --accum {args.accum} equal micro-batches")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = plan_runs(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = make_csv(root / "data", args.batch * args.steps + args.batch, args.image_size, True)
        res: dict = {"args": vars(args), "device": device, "torch_threads": args.threads or torch.get_num_threads()}
        # bf16 at a smaller size on CPU: without native bf16 it is emulated and ~60x slower
        n_peak = 8192 if device == "cuda" else 1024
        res["peak_flops"] = {"fp32": matmul_peak(torch.float32, device, n_peak),
                             "bf16": matmul_peak(torch.bfloat16, device, n_peak if device == "cuda" else 512, 2)}
        res["train_flops_per_pair"] = train_flops_per_pair(args.model, 8)
        rounds: list[dict[str, dict]] = []
        for i in range(args.repeats):
            done = {}
            for name, (_, run) in runs.items():
                done[name] = run(csv, root / "runs", f"{name}-{i}")
                print(f"round {i + 1}/{args.repeats} {name}: {done[name]['pairs_per_s']:.2f} pairs/s "
                      f"(load {done[name]['load_before']:.1f}-{done[name]['load_after']:.1f})", flush=True)
                # an interrupted benchmark (a long compile on a busy machine) keeps what it measured
                Path(args.out).write_text(json.dumps({**res, "partial": True, "rounds": rounds + [done]}, indent=1))
            rounds.append(done)
    res["rounds"] = rounds
    res.update(summarise(rounds, {k: v[0] for k, v in runs.items()}))
    peak = res["peak_flops"]["bf16" if args.precision == "bf16" else "fp32"]
    mfu = {k: res["runs"][k]["pairs_per_s"] * res["train_flops_per_pair"] / peak
           for k in ("clip", "clip-compile", "open_clip") if k in res["runs"]}
    res["mfu"] = mfu
    table = markdown(res, args, mfu)
    Path(args.out).write_text(json.dumps(res, indent=1))
    if args.md:
        Path(args.md).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
