"""Elastic resume of webdataset shards: which samples of the open epochs were already emitted into batches.

A sample is named by (shard index in the URL list, position in the shard's stored order). Each logical worker
reads its shards sequentially, but the shuffle buffer reorders what it emits, so the loader keeps, per logical
worker, a bitmap per shard of the positions it emitted in its current epoch (one bit per sample: about 1 MB
for an epoch of 8.6M samples). On a resume with another world size or worker count, the checkpoints of all
ranks are merged into the *done* rules of every epoch still open somewhere (:func:`merge_done`):

- an old worker already past epoch e did its whole share of e (its shards, or its i mod m positions of a
  shard group, :mod:`tripletclip.data.order`);
- an old worker in epoch e did the positions of its bitmaps;
- an old worker before epoch e did nothing of e.

The new workers all restart at the oldest open epoch and split each open epoch by the normal rule for their own
count, reading but not decoding the done samples (:meth:`tripletclip.data.wds.WdsSource.stream`); later
epochs are not filtered. So every sample is emitted exactly once per epoch over the whole run (the set is exact;
the order is not that of an uninterrupted run at either size).
"""
from __future__ import annotations

import base64
import zlib
from typing import Any, Mapping, Sequence, Union

from tripletclip.data.contract import DataError
from tripletclip.data.order import shard_assignment, shard_group

# (i, m): the positions j with j mod m == i ((0, 1): the whole shard); bytes: a bitmap of positions (bit j % 8 of
# byte j // 8)
Rule = Union[tuple[int, int], bytes]
Done = dict[int, dict[int, list[Rule]]]  # epoch -> shard index -> rules (a sample is done when any rule has it)


def pack(bitmap: bytes) -> str:
    """A bitmap as text for the loader state (which stays JSON-able): zlib (long runs of emitted samples
    compress well), then base64."""
    return base64.b64encode(zlib.compress(bytes(bitmap))).decode("ascii")


def unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def pack_done(done: Done) -> dict[str, dict[str, list[Any]]]:
    """Done rules in the JSON-able form of the loader state ((i, m) as a list, a bitmap as packed text)."""
    return {str(e): {str(s): [pack(r) if isinstance(r, bytes) else list(r) for r in rules]
                     for s, rules in shards.items()} for e, shards in done.items()}


def unpack_done(saved: Mapping[Any, Mapping[Any, Sequence[Any]]] | None) -> Done:
    return {int(e): {int(s): [unpack(r) if isinstance(r, str) else (int(r[0]), int(r[1])) for r in rules]
                     for s, rules in shards.items()} for e, shards in (saved or {}).items()}


def set_bit(bitmap: bytearray, j: int) -> None:
    if j >> 3 >= len(bitmap):
        bitmap.extend(bytes((j >> 3) + 1 - len(bitmap)))
    bitmap[j >> 3] |= 1 << (j & 7)


def is_done(rules: Sequence[Rule], j: int) -> bool:
    """Whether position j of a shard is covered by any of its rules."""
    for r in rules:
        if isinstance(r, (bytes, bytearray)):
            if j >> 3 < len(r) and r[j >> 3] >> (j & 7) & 1:
                return True
        elif j % r[1] == r[0]:
            return True
    return False


def worker_share(n_shards: int, epoch: int, seed: int, g: int, n_logical: int) -> dict[int, Rule]:
    """Logical worker g's whole share of an epoch as rules (the splitting rule of data/order.py)."""
    if n_shards >= n_logical:
        return {s: (0, 1) for s in shard_assignment(n_shards, epoch, seed, g, n_logical) or []}
    shard, i, m = shard_group(n_shards, epoch, seed, g, n_logical)
    return {shard: (i, m)}


def _add(done: Done, epoch: int, shard: int, rule: Rule) -> None:
    rules = done.setdefault(epoch, {}).setdefault(shard, [])
    if rule not in rules:
        rules.append(rule)


def merge_done(states: Sequence[Mapping[str, Any]], n_shards: int, seed: int) -> tuple[int, Done]:
    """(oldest open epoch, done rules of every open epoch) from the loader states of all ranks of a run.

    ``states[r]`` is rank r's :meth:`~tripletclip.data.loader.TrainLoader.state_dict`: its ``positions`` (epoch,
    raw samples) and ``emitted`` bitmaps per logical worker (packed), and the ``done`` rules it was itself
    resumed with (packed, equal on every rank), which still hold for the epochs that are open.
    """
    world, workers = int(states[0]["world_size"]), int(states[0]["workers"])
    if len(states) != world or [int(s["rank"]) for s in states] != list(range(world)):
        raise DataError(f"elastic resume needs the loader states of all {world} ranks of the checkpoint, got "
                        f"{len(states)}; the checkpoint is incomplete: resume with the same world size and "
                        "data.workers")
    n_logical = world * workers
    epochs: list[int] = []  # epoch of each old logical worker g = rank * workers + w
    bitmaps: list[Mapping[int, bytes]] = []
    for s in states:
        for (e, _), (ee, bm) in zip(s["positions"], s["emitted"]):
            epochs.append(int(e))
            # (a bitmap of an earlier epoch: no sample emitted yet in the current one)
            bitmaps.append({int(si): unpack(b) for si, b in bm.items()} if int(ee) == int(e) else {})
    first, last = min(epochs), max(epochs)
    done: Done = {e: {} for e in range(first, last + 1)}  # every open epoch is listed, even with nothing done
    for e, shards in unpack_done(states[0].get("done")).items():
        if first <= e <= last:
            for shard, rules in shards.items():
                for r in rules:
                    _add(done, e, shard, r)
    for g, (eg, bm) in enumerate(zip(epochs, bitmaps)):
        for e in range(first, eg):  # epochs g has finished: its whole share
            for shard, rule in worker_share(n_shards, e, seed, g, n_logical).items():
                _add(done, e, shard, rule)
        for shard, bits in bm.items():
            _add(done, eg, shard, bits)
    return first, done
