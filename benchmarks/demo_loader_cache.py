"""The demo's training loader with and without ``data.cache_decoded_mb``, side by side: every batch bitwise equal,
milliseconds per batch of each (interleaved batch by batch, so both meet the same load). Issue 17.

    PYTHONPATH=src python benchmarks/demo_loader_cache.py DEMO_OUT/world 400   # 400 batches = the 4 epochs
"""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from tripletclip.config import config_from_dict
from tripletclip.config.load import deep_merge
from tripletclip.data.loader import build_train_loader
from tripletclip.demo.config import load_demo_config
from tripletclip.models import create_model
from tripletclip.world import train_shards


def main(world: str, n: int, cache_mb: int = 256) -> None:
    torch.set_num_threads(1)
    run = config_from_dict(deep_merge(load_demo_config("demo").run_dict(),
                                      {"loss": {"name": "tripletclip"}, "data": {"train": train_shards(world)}}))
    bundle = create_model(run.model.name, "")

    def make(mb: int):
        cfg = dataclasses.replace(run.data, use_neg_text=True, use_neg_image=True, cache_decoded_mb=mb)
        return build_train_loader(cfg, bundle.preprocess_train, bundle.tokenizer, batch_size=run.train.batch_size,
                                  seed=0, context_length=bundle.context_length)

    off, on = make(0), make(cache_mb)
    t_off = t_on = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        x = next(off)
        t1 = time.perf_counter()
        y = next(on)
        t_off, t_on = t_off + t1 - t0, t_on + time.perf_counter() - t1
        for k in x:
            same = torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k]
            assert same, f"batch {i}: {k} differs"
        if (i + 1) % 100 == 0:
            print(f"batches {i + 1}: off {1e3 * t_off / (i + 1):.1f} ms/batch, cache {1e3 * t_on / (i + 1):.1f} "
                  "ms/batch, every batch bitwise equal", flush=True)
    assert off.state_dict() == on.state_dict()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
