"""Reading training shards: one streamed pass per shard (data/tar_stream.py) against the earlier reader (a header
scan, then one open per member read), not a test.

Both read every sample of the same shards and every image byte (no decoding), interleaved A/B; the script prints
the shard file opens per sample and the time of each, and reads the same shards through ``pipe:cat``.

    python benchmarks/bench_shard_read.py --samples 400 --shard-size 100 --image-size 128 --reps 5
"""
from __future__ import annotations

import argparse
import builtins
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from tripletclip.data.shard_reader import parse_sample, scan_shard
from tripletclip.data.source import ErrorCounter
from tripletclip.data.testing import write_synthetic_shards
from tripletclip.data.wds import WdsSource


def _bytes(rec) -> int:
    return len(rec.image.read()) + sum(len(b.read()) for b in rec.neg_images)


def per_member(files: list[str]) -> int:
    """The reader before issue 18 item 6: header scan, then each member read by its own open."""
    return sum(_bytes(parse_sample(p, k, m)) for p in files for k, m in scan_shard(p))


def streamed(files: list[str]) -> int:
    src = WdsSource(files, resampled=False)
    return sum(_bytes(src.load(r)) for r in src.natural(ErrorCounter()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_shards(tmp, n=args.samples, shard_size=args.shard_size, image_size=args.image_size)
        files = sorted(str(p) for p in Path(tmp).glob("*.tar"))
        opens, real_open = [0], builtins.open

        def counting(f, *a, **kw):  # noqa: ANN001
            opens[0] += str(f).endswith(".tar")
            return real_open(f, *a, **kw)

        builtins.open = counting
        runs: dict[str, Callable[[], int]] = {"per-member opens": lambda: per_member(files),
                                              "one streamed pass": lambda: streamed(files),
                                              "pipe:cat, streamed": lambda: streamed([f"pipe:cat {f}" for f in files])}
        times: dict[str, list[float]] = {k: [] for k in runs}
        counts: dict[str, int] = {}
        try:
            for _ in range(args.reps):  # interleaved: machine load hits every reader alike
                for name, fn in runs.items():
                    opens[0] = 0
                    t = time.perf_counter()
                    total = fn()
                    times[name].append(time.perf_counter() - t)
                    counts[name] = opens[0]
        finally:
            builtins.open = real_open
    print(f"{args.samples} samples in {len(files)} shards, {total / 1e6:.1f} MB of image bytes, {args.reps} reps")
    base = statistics.median(times["per-member opens"])
    for name in runs:
        med = statistics.median(times[name])
        print(f"{name:20s} file opens per sample {counts[name] / args.samples:5.2f}   median {med * 1e3:7.1f} ms   "
              f"{base / med:4.2f}x the per-member reader")


if __name__ == "__main__":
    main()
