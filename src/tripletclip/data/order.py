"""Deterministic data order: seeds, shard/row partition over (rank, worker), shuffle buffer.

Everything here is a pure function of (seed, epoch, rank, worker) so that a run's data order is reproducible
and an interrupted run can be resumed exactly (official TripletCLIP code ignores the seed for its data order,
see docs/methods.md section 5). Seeds are derived with BLAKE2b, never with Python's salted ``hash``.

Partition rules (g = rank * workers + worker, G = world_size * workers logical workers):
- shards: each epoch the shard list is permuted (same permutation on every rank), worker g takes shards
  g, g+G, ...: no sample is dropped or seen twice in an epoch.
- shard groups (fewer shards S than G): worker g reads the one shard at position g mod S of the epoch's shard
  permutation, together with the other workers of its group {g' : g' = g mod S} (ceil or floor of G/S of them);
  the i-th worker of the group (i = g // S) keeps the samples whose index in the shard is i mod (group size).
  So every sample is read once per epoch over all workers, and no worker reads more than one shard per epoch
  (a warning is logged by the source: each worker still reads all bytes of its shard).
- table rows: each epoch the rows are permuted, the remainder n mod G is dropped (a different random
  remainder each epoch, the same on every rank), worker g takes rows g, g+G, ...
- resampled: each worker draws ceil(n/G) shards (rows) per round with replacement, from its own seed.
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of ints / strings (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_rng(*parts: object) -> random.Random:
    return random.Random(derive_seed(*parts))


def permutation(n: int, *parts: object) -> np.ndarray:
    """A seeded permutation of range(n) (numpy PCG64: fast for millions of rows)."""
    return np.random.Generator(np.random.PCG64(derive_seed(*parts))).permutation(n)


def shard_assignment(n_shards: int, epoch: int, seed: int, g: int, n_logical: int) -> list[int] | None:
    """Shard indices of logical worker g in this epoch, or None if there are too few shards to split."""
    if n_shards < n_logical:
        return None
    order = permutation(n_shards, seed, "shards", epoch)
    return [int(i) for i in order[g::n_logical]]


def shard_group(n_shards: int, epoch: int, seed: int, g: int, n_logical: int) -> tuple[int, int, int]:
    """(shard index, member index i, group size m) of logical worker g when shards are fewer than workers:
    g reads that one shard and keeps its samples j with j mod m == i (see the module docstring)."""
    if not 0 < n_shards < n_logical or not 0 <= g < n_logical:
        raise ValueError(f"shard groups need 0 < n_shards={n_shards} < n_logical={n_logical}, 0 <= g={g} < n_logical")
    slot = g % n_shards
    shard = int(permutation(n_shards, seed, "shards", epoch)[slot])
    return shard, g // n_shards, len(range(slot, n_logical, n_shards))


def resampled_indices(n: int, round_: int, seed: int, g: int, n_logical: int) -> list[int]:
    """ceil(n/G) draws with replacement for worker g in one round (open_clip's --dataset-resampled)."""
    rng = make_rng(seed, "resample", round_, g)
    k = max(1, math.ceil(n / n_logical))
    return [rng.randrange(n) for _ in range(k)]


def table_rows(n_rows: int, epoch: int, seed: int, g: int, n_logical: int) -> np.ndarray:
    """Row indices of logical worker g in this epoch; drops n mod G rows (chosen by the permutation)."""
    usable = n_rows - n_rows % n_logical
    order = permutation(n_rows, seed, "rows", epoch)
    return order[:usable][g::n_logical]


def every_nth(items: Iterable[T], g: int, n_logical: int) -> Iterator[T]:
    """Items whose position is g mod G (split by sample index; a shard among its group of workers)."""
    for i, item in enumerate(items):
        if i % n_logical == g:
            yield item


def shuffle_buffer(items: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """Seeded reservoir shuffle over a stream (webdataset's shuffle, made deterministic).

    Fills a buffer of ``size`` items, then emits a random buffered item for each new one; the remainder is
    shuffled and emitted at the end of the stream (so each epoch drains its buffer).
    """
    if size <= 1:
        yield from items
        return
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        out, buf[j] = buf[j], item
        yield out
    rng.shuffle(buf)
    yield from buf


def skip(items: Iterator[T], n: int) -> int:
    """Advance an iterator by n items; returns how many were actually skipped."""
    done = 0
    for _ in range(n):
        try:
            next(items)
        except StopIteration:
            break
        done += 1
    return done


def pick(n: int, k: int, sample: bool, *parts: object) -> list[int]:
    """k of range(n) (all if n <= k): the first ones, or a seeded sample kept in increasing order."""
    if n <= k:
        return list(range(n))
    if not sample:
        return list(range(k))
    return sorted(make_rng(*parts).sample(range(n), k))


def choose(options: Sequence[T], sample: bool, *parts: object) -> T:
    """One of several options (e.g. LaCLIP captions): the first, or a seeded choice."""
    if len(options) == 1 or not sample:
        return options[0]
    return options[derive_seed(*parts) % len(options)]
