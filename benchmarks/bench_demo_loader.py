"""The training loader of one demo run, alone: its time over N batches and a hash of every batch tensor.

    python benchmarks/bench_demo_loader.py DEMO_OUT/runs/tripletclip-seed0/config.yaml --batches 400
    python benchmarks/bench_demo_loader.py ... --profile tottime      # cProfile, top 30 (times inflate ~2x)

The hash covers every tensor of every batch in key order, so two code versions that print the same hash load
bitwise the same batches (docs/training.md, "The training loader and the base (session 9)"). The loader is built
as the trainer builds it (the objective's negatives only, one torch thread, the run's seed); no model runs.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import pstats
import time

import torch
import yaml

from tripletclip.config import config_from_dict
from tripletclip.data.loader import build_train_loader
from tripletclip.losses import build_objective
from tripletclip.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a run's config.yaml (a demo run folder's)")
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--profile", default="", help="a pstats sort key (tottime, cumulative): profile the loop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.config) as f:
        cfg = config_from_dict(yaml.safe_load(f), where=args.config)
    bundle = create_model(cfg.model.name)
    loss = build_objective(cfg.loss)  # what the trainer gives the loader: the negatives the objective uses
    data = dataclasses.replace(cfg.data, use_neg_text=bool(loss.needs_neg_text and cfg.data.use_neg_text),
                               use_neg_image=bool(loss.needs_neg_image and cfg.data.use_neg_image))
    loader = build_train_loader(data, bundle.preprocess_train, bundle.tokenizer, batch_size=cfg.train.batch_size,
                                seed=cfg.train.seed, context_length=bundle.context_length, require_negatives=True)
    digest = hashlib.sha256()
    prof = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(args.batches):
        batch = next(loader)
        for key in sorted(batch):
            if isinstance(batch[key], torch.Tensor):
                digest.update(key.encode())
                digest.update(batch[key].contiguous().numpy().tobytes())
    if prof:
        prof.disable()
    seconds = time.perf_counter() - start
    loader.close()
    print(f"{cfg.loss.name}: {args.batches} batches in {seconds:.2f} s; batches sha256 {digest.hexdigest()[:16]}")
    if prof:
        pstats.Stats(prof).sort_stats(args.profile).print_stats(30)


if __name__ == "__main__":
    main()
