"""One training step without the data loader, measured per phase: to compare two checkouts op by op, and to see
where gradient accumulation's extra time goes (docs/training.md, "Measured speed").

    # the ops and CPU seconds of one step per objective, for the checkout on PYTHONPATH (works on old ones too)
    PYTHONPATH=src python benchmarks/profile_train_step.py ops --model ViT-B-32 --batch 8 --out new.json
    PYTHONPATH=/tmp/old/src python benchmarks/profile_train_step.py ops --model ViT-B-32 --batch 8 --out old.json
    python benchmarks/profile_train_step.py diff old.json new.json   # ops whose shapes or counts differ
    # CPU seconds per phase of a CLIP step, plain vs train/accum.py's accumulated_step in A micro-batches
    PYTHONPATH=src python benchmarks/profile_train_step.py accum --model ViT-B-32 --batch 16 --accum 4
    # wall, user and system seconds and minor page faults per step, glibc's default malloc or (--keep) the
    # trainer's train.keep_host_memory (utils/host_memory.py); run once per mode, as the setting is per process
    PYTHONPATH=src python benchmarks/profile_train_step.py faults --model ViT-B-32 --batch 64 --threads 2 [--keep]

The batch is a fixed synthetic one of the data contract (random images, 8-word captions, one valid negative
caption and image per pair); the step is forward_features + the objective + backward + gradient clipping +
AdamW, as in the trainer. Times are ``time.process_time`` with one torch thread: CPU seconds of this process,
less sensitive than wall time to other processes on a shared machine (not insensitive: caches are shared).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

import torch

from tripletclip.losses import build_loss
from tripletclip.models import create_model
from tripletclip.models.trimmed import TrimmedClip
import tripletclip.train.forward as fw

WORDS = "red blue green yellow cube ball cone ring small large left right above below of a the".split()


def synthetic_batch(bundle: Any, b: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    caps = lambda: [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (8,), generator=g).tolist())  # noqa: E731
                    for _ in range(b)]
    s = bundle.image_size
    return {"image": torch.randn(b, 3, s, s, generator=g), "text": bundle.tokenizer(caps()),
            "neg_text": bundle.tokenizer(caps()).view(b, 1, -1), "neg_text_mask": torch.ones(b, 1, dtype=torch.bool),
            "neg_text_type": torch.zeros(b, 1, dtype=torch.long),
            "neg_image": torch.randn(b, 1, 3, s, s, generator=g), "neg_image_mask": torch.ones(b, 1, dtype=torch.bool)}


def _prepare(batch: dict[str, Any], nt: bool, ni: bool) -> dict[str, Any]:
    # checkouts before the host-sync changes have no prepare_batch: their forward reads the masks itself
    return fw.prepare_batch(batch, nt, ni) if hasattr(fw, "prepare_batch") else batch


def ops(a: argparse.Namespace) -> None:
    """CPU seconds per step (first excluded) and the profiled op list of one more step, per objective."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    bundle = create_model(a.model)
    model = bundle.model.train()
    fm, batch = TrimmedClip(model), synthetic_batch(bundle, a.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    res: dict[str, Any] = {}
    for name in a.losses.split(","):
        loss_fn = build_loss(name)
        nt, ni = loss_fn.needs_neg_text, loss_fn.needs_neg_image

        def step() -> None:
            out = loss_fn(fw.forward_features(fm, _prepare(batch, nt, ni), nt, ni, None))
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        times = []
        for _ in range(a.reps + 1):
            t0 = time.process_time()
            step()
            times.append(time.process_time() - t0)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
            step()
        rows = sorted([e.key, str(e.input_shapes), e.count] for e in p.key_averages(group_by_input_shape=True))
        res[name] = {"cpu_s": times[1:], "ops": rows}
        print(f"{name}: CPU s per step {', '.join(f'{t:.2f}' for t in times[1:])}", flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f)


def diff(a: argparse.Namespace) -> None:
    old, new = (json.load(open(p)) for p in (a.old, a.new))
    for name in old:
        x = {(k, s): c for k, s, c in old[name]["ops"]}
        y = {(k, s): c for k, s, c in new.get(name, {"ops": []})["ops"]}
        keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        print(f"{name}: {len(keys)} op/shape rows differ (count old -> new)")
        for k in keys:
            print(f"  {k[0]} {k[1][:120]}: {x.get(k)} -> {y.get(k)}")


def accum(a: argparse.Namespace) -> None:
    """CPU seconds per phase of a CLIP step, plain vs accumulated, interleaved; mean over --reps steps."""
    from tripletclip.train.accum import accumulated_step, split_rows

    torch.manual_seed(0)
    bundle = create_model(a.model)
    model = bundle.model.train()
    fm, batch = TrimmedClip(model), synthetic_batch(bundle, a.batch)
    batch = {k: batch[k] for k in ("image", "text")}
    loss_fn, opt = build_loss("clip"), torch.optim.AdamW(model.parameters(), lr=1e-5)
    acc: dict[str, float] = {}

    def timed(key: Callable[[], str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            t0 = time.process_time()
            out = fn(*args)
            acc[key()] = acc.get(key(), 0.0) + time.process_time() - t0
            return out
        return run

    encode = timed(lambda: "forward with graph" if torch.is_grad_enabled() else "forward without graph",
                   lambda mb: fw.forward_features(fm, mb, False, False, None))
    backward = timed(lambda: "backward", lambda t: t.backward())
    loss = timed(lambda: "loss", loss_fn)
    res: dict[str, list[dict[str, float]]] = {"plain": [], "accum": []}
    for r in range(a.reps + 1):
        for mode in ("plain", "accum"):
            micro = [fw.prepare_batch(mb, False, False) for mb in split_rows(batch, 1 if mode == "plain" else a.accum)]
            n = max(mb[fw.TEXT_LEN] for mb in micro)  # the whole batch's text length, as the trainer uses
            micro = [{**mb, fw.TEXT_LEN: n} for mb in micro]
            acc.clear()
            opt.zero_grad(set_to_none=True)
            t0 = time.process_time()
            if mode == "plain":
                backward(loss(encode(micro[0]))["loss"])
            else:
                accumulated_step(encode, loss, micro, backward)
            acc["step before the update"] = time.process_time() - t0
            t0 = time.process_time()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            acc["clip + AdamW"] = time.process_time() - t0
            if r:  # the first round warms up
                res[mode].append(dict(acc))
    for mode, rows in res.items():
        mean = {k: sum(x.get(k, 0.0) for x in rows) / len(rows) for k in rows[0]}
        print(mode, json.dumps({k: round(v, 3) for k, v in mean.items()}))


def faults(a: argparse.Namespace) -> None:
    """Per step: wall, user and system seconds and minor page faults (glibc maps every block above its mmap
    threshold afresh, so a step of large activations faults their pages in again each time)."""
    import os
    import resource

    from tripletclip.utils.host_memory import keep_freed_memory

    if a.keep:
        print("keep_freed_memory:", keep_freed_memory())
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bundle = create_model(a.model)
    model = bundle.model.train()
    fm, batch = TrimmedClip(model), synthetic_batch(bundle, a.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    for name in a.losses.split(","):
        loss_fn = build_loss(name)
        nt, ni = loss_fn.needs_neg_text, loss_fn.needs_neg_image
        for r in range(a.reps + 1):
            t0, w0, f0 = os.times(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            out = loss_fn(fw.forward_features(fm, _prepare(batch, nt, ni), nt, ni, None))
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            t1, w1, f1 = os.times(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            print(f"{name} step {r}{' (warmup)' if r == 0 else ''}: wall {w1 - w0:.2f} s, user {t1.user - t0.user:.2f} s, "
                  f"system {t1.system - t0.system:.2f} s, minor faults {f1 - f0}, load {os.getloadavg()[0]:.1f}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("ops")
    o.add_argument("--losses", default="clip,tripletclip")
    o.add_argument("--out", required=True)
    d = sub.add_parser("diff")
    d.add_argument("old")
    d.add_argument("new")
    c = sub.add_parser("accum")
    c.add_argument("--accum", type=int, default=4)
    f = sub.add_parser("faults")
    f.add_argument("--losses", default="clip,tripletclip")
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--keep", action="store_true", help="train.keep_host_memory's malloc settings first")
    for p in (o, c, f):
        p.add_argument("--model", default="ViT-B-32")
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--reps", type=int, default=2, help="timed steps after one warmup step")
    a = ap.parse_args()
    torch.set_num_threads(1)  # faults sets its own
    {"ops": ops, "diff": diff, "accum": accum, "faults": faults}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
