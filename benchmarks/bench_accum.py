"""The cost of exact accumulation (train/accum.py) in one process, interleaved: a plain step on the whole batch
vs the same batch in micro-batches, with wall and CPU time (docs/training.md, "Cost, measured").

    PYTHONPATH=src python benchmarks/bench_accum.py --reps 4 --floor          # + the no-graph forward
    PYTHONPATH=src python benchmarks/bench_accum.py --reps 2 --components     # + 4 plain passes of 16
    git show REV:src/tripletclip/train/accum.py > /tmp/accum_old.py
    PYTHONPATH=src python benchmarks/bench_accum.py --before /tmp/accum_old.py  # A/B against another version

Not a test: minutes on a CPU. The trainer-level figure (data loading included) is bench_train_speed.py --accum.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

import numpy as np
import torch

from tripletclip.losses import build_loss
from tripletclip.models import create_model
from tripletclip.models.trimmed import TrimmedClip
from tripletclip.train import accum as after
from tripletclip.train.forward import forward_features, move_batch, prepare_batch



def load_module(path: str):
    spec = importlib.util.spec_from_file_location("accum_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

WORDS = "red blue green yellow cube ball cone ring small large left right above below of a the".split()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--components", action="store_true")
    ap.add_argument("--before", default="", help="another accum.py to time beside this checkout's")
    ap.add_argument("--floor", action="store_true", help="also the no-graph forward of the whole batch")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = create_model(args.model)
    model = bundle.model.train()
    fwd = TrimmedClip(model)
    loss_fn = build_loss("clip")
    rng = np.random.default_rng(0)
    size = bundle.image_size if isinstance(bundle.image_size, int) else bundle.image_size[0]
    caps = [" ".join(rng.choice(WORDS, 8)) for _ in range(args.batch)]
    batch = {"image": torch.randn(args.batch, 3, size, size), "text": bundle.tokenizer(caps)}

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        mb = prepare_batch(batch, False, False)
        loss_fn(forward_features(fwd, mb, False, False, None))["loss"].backward()

    def run_accum(module) -> None:
        model.zero_grad(set_to_none=True)
        micro = [prepare_batch(mb, False, False) for mb in module.split_rows(batch, args.accum)]
        n = max(mb["text_len"] for mb in micro)
        micro = [move_batch({**mb, "text_len": n}, torch.device("cpu")) for mb in micro]
        module.accumulated_step(lambda mb: forward_features(fwd, mb, False, False, None), loss_fn, micro,
                                lambda t: t.backward())

    def nograd_forward() -> None:
        with torch.no_grad():
            forward_features(fwd, prepare_batch(batch, False, False), False, False, None)

    def micro_plain() -> None:  # A independent fwd+bwd of the micro-batches (no cache): the micro-batching cost
        model.zero_grad(set_to_none=True)
        for mb in after.split_rows(batch, args.accum):
            f = forward_features(fwd, prepare_batch(mb, False, False), False, False, None)
            (f["image_features"].sum() + f["text_features"].sum()).backward()

    variants = {"plain": plain, "accum": lambda: run_accum(after)}
    if args.before:
        before = load_module(args.before)
        variants["accum_before"] = lambda: run_accum(before)
    if args.components:
        variants.update({"nograd_forward": nograd_forward, "micro_fwd_bwd": micro_plain})
    elif args.floor:
        variants["nograd_forward"] = nograd_forward
    for f in variants.values():  # warmup
        f()
    # wall time and this process's CPU time: with 1 thread on a shared machine, CPU time does not count the
    # time spent waiting for a core, so it is the steadier measure of the work done
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.reps):
        for k, f in variants.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
        print(r, {k: (round(v[-1], 2), round(cpu[k][-1], 2)) for k, v in times.items()}, flush=True)
    res = {"args": vars(args), "times": times, "cpu": cpu}
    for label, data in (("wall", times), ("cpu", cpu)):
        res[f"median_s_{label}"] = {k: statistics.median(v) for k, v in data.items()}
        # per-rep ratios (each rep's variants ran back to back), then their median
        res[f"median_ratio_{label}"] = {k: statistics.median([a / p for a, p in zip(data[k], data["plain"])])
                                        for k in data}
    print(json.dumps({k: v for k, v in res.items() if k.startswith("median")}, indent=1))
    if args.out:
        open(args.out, "w").write(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
