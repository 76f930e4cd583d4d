"""Throughput of the training loader alone (no model): samples/s after warm-up, per number of workers.

Used to check that data loading stays a small share of step time (the trainer also logs ``data_wait_frac``,
the measured share of each step spent waiting for the next batch).

    python -m tripletclip.data.throughput --train '/d/train-{000000..000007}.tar' --model test-vit-tiny --workers 0 1 2
    python -m tripletclip.data.throughput --type synthetic --train 512     # the loader alone, no files
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import torch

from tripletclip.config.schema import DataConfig
from tripletclip.data.decode import Preprocess, Tokenizer
from tripletclip.data.loader import build_train_loader


def loader_throughput(cfg: DataConfig, preprocess: Preprocess, tokenizer: Tokenizer, *, context_length: int,
                      batch_size: int = 64, batches: int = 40, warmup: int = 3, seed: int = 0) -> dict[str, Any]:
    """Samples/s and seconds per batch of the loader alone, after ``warmup`` batches (worker start, buffer fill)."""
    loader = build_train_loader(cfg, preprocess, tokenizer, batch_size=batch_size, seed=seed, context_length=context_length)
    try:
        for _ in range(warmup):
            next(loader)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(loader)
        dt = time.perf_counter() - t0
    finally:
        loader.close()
    return {"workers": cfg.workers, "batch_size": batch_size, "batches": batches,
            "samples_per_s": batches * batch_size / dt, "s_per_batch": dt / batches,
            "synthetic_images": loader.stats()["synthetic_images"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--type", default="wds")
    ap.add_argument("--model", default="test-vit-tiny")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--no-neg-image", action="store_true")
    args = ap.parse_args(argv)
    from tripletclip.models import create_model

    torch.set_num_threads(1)
    bundle = create_model(args.model)
    base = DataConfig(type=args.type, train=args.train, use_neg_image=not args.no_neg_image)
    for w in args.workers:
        res = loader_throughput(dataclasses.replace(base, workers=w), bundle.preprocess_train, bundle.tokenizer,
                                context_length=bundle.context_length, batch_size=args.batch_size, batches=args.batches)
        print(json.dumps(res))


if __name__ == "__main__":
    main()
