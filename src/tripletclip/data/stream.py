"""The per-worker batch stream: partition -> shuffle -> skip (resume) -> decode -> tokenise -> collate.

Each logical worker w (of ``workers`` per rank; 1 when loading in the main process) owns an infinite stream
that walks epochs by itself: when its share of an epoch is exhausted it continues with the next epoch, so a
batch may hold the last samples of epoch e and the first of e+1 and no sample is dropped at epoch ends. Its
position is (epoch, raw samples consumed in that epoch), counting bad samples too; a resumed stream rebuilds
the epoch's shuffled raw order and skips that many raw samples without reading their bytes.

The stream yields ``(batch, BatchInfo)``: the batch is exactly the batch contract; the info (worker,
position after the batch, raw samples read, the problems counted while making it) travels next to it from a
worker process to the :class:`~tripletclip.data.loader.TrainLoader`, which checks the round-robin order of
torch's DataLoader with the worker id, keeps the position for :meth:`TrainLoader.state_dict` and adds the
counts to its own :class:`~tripletclip.data.source.ErrorCounter`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tripletclip.data.contract import DataError, collate
from tripletclip.data.decode import BadSample, DecodeOptions, Preprocess, Tokenizer, decode_record, tokenize_batch
from tripletclip.data.elastic import Done
from tripletclip.data.memo import DecodeMemo
from tripletclip.data.order import skip
from tripletclip.data.source import ErrorCounter, Source

_END = object()


def _memo(cache_bytes: int, source: Source) -> Optional[DecodeMemo]:
    """This iterator's cache of decoded images and token rows (data/memo.py), or None when off; a source that
    can keep its passes in it (``attach_memo``: wds) is given it."""
    memo = DecodeMemo(cache_bytes) if cache_bytes > 0 else None
    attach = getattr(source, "attach_memo", None)
    if attach is not None:
        attach(memo)
    return memo


@dataclass
class StreamPlan:
    """Everything that fixes the data order (saved with the loader state)."""

    seed: int
    rank: int
    world_size: int
    workers: int  # logical workers per rank (>= 1)
    batch_size: int
    buffer: int
    context_length: int
    opts: DecodeOptions

    def global_worker(self, w: int) -> int:
        return self.rank * self.workers + w

    @property
    def n_logical(self) -> int:
        return self.world_size * self.workers


@dataclass
class BatchInfo:
    """What the loader learns with each batch: which logical worker made it, where that worker now stands
    (epoch, raw samples consumed in the epoch), how many raw samples it read and the problems it met."""

    worker: int
    epoch: int
    pos: int
    raw: int
    errors: ErrorCounter
    # (epoch, shard, position) of each raw sample of the batch, for sources that name samples so (shards:
    # elastic resume, data/elastic.py); None for the others
    ids: Optional[list[tuple[int, int, int]]] = None


class GlobalBatchStream(IterableDataset):
    """Batches of a job-wide order (``data.global_order``): one raw sequence per epoch, the same for every world
    size and worker count (the source's order for a single logical worker), walked epoch after epoch.

    Starting at global sample ``start``, batch j of the job covers sequence positions
    ``[start + j*GB, start + (j+1)*GB)`` (GB = batch_size * world_size); this rank takes its ``batch_size``
    positions of it, and worker w makes the batches j = w mod workers (torch's round-robin order). So the
    samples consumed after any number of steps are the same set at any world size: a run resumes exactly on
    another number of GPUs or workers. A bad sample is replaced by a copy of the previous good one of the same
    batch (counted as bad), so that the order of everything else stays global.
    """

    def __init__(self, source: Source, plan: StreamPlan, preprocess: Preprocess, tokenizer: Tokenizer,
                 start: int, n_per_epoch: int, cache_bytes: int = 0) -> None:
        self.source, self.plan, self.preprocess, self.tokenizer = source, plan, preprocess, tokenizer
        self.start, self.n_per_epoch = start, n_per_epoch
        self.cache_bytes = cache_bytes  # data.cache_decoded_mb: each worker process keeps its own (data/memo.py)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], BatchInfo]]:
        info = get_worker_info()
        return self.batches(info.id if info is not None else 0)

    def _positions(self, w: int) -> Iterator[tuple[int, int]]:
        """(global batch j, sequence position) of this rank's rows in the batches of worker w, in order."""
        p = self.plan
        gb = p.batch_size * p.world_size
        j = w
        while True:
            first = self.start + j * gb + p.rank * p.batch_size
            for pos in range(first, first + p.batch_size):
                yield j, pos
            j += p.workers

    def batches(self, w: int) -> Iterator[tuple[dict[str, Any], BatchInfo]]:
        p, src, errors = self.plan, self.source, ErrorCounter()
        memo = _memo(self.cache_bytes, src)
        epoch, it, at = -1, iter(()), 0  # the raw iterator of `epoch`, positioned at sequence position `at`
        items: list[Any] = []
        batch_j = None
        for j, pos in self._positions(w):
            e, offset = divmod(pos, self.n_per_epoch)
            if e != epoch:
                epoch, it, at = e, src.stream(e, 0, 1, p.seed, p.buffer, errors), e * self.n_per_epoch
            if pos > at:
                skip(it, pos - at)  # raw samples of other ranks and workers: never loaded
            raw = next(it)
            at = pos + 1
            batch_j = j
            with torch.random.fork_rng(devices=[]):
                py_state = random.getstate()
                try:
                    items.append(decode_record(src.load(raw), epoch, p.opts, self.preprocess, memo))
                except BadSample as e_:
                    errors.add("bad_samples", f"{src.where(raw)}: {e_.reason}")
                    items.append(None)
                random.setstate(py_state)
            if len(items) == p.batch_size:
                good = [x for x in items if x is not None]
                if not good:
                    raise DataError(f"{src.files[0]}: no usable sample in global batch {batch_j} of rank {p.rank}; "
                                    "check the data and data.train")
                prev = good[0]
                for i, x in enumerate(items):
                    items[i] = prev = prev if x is None else x
                batch = collate(tokenize_batch(items, self.tokenizer, p.context_length, memo), p.opts.k, p.opts.m,
                                p.context_length)
                yield batch, BatchInfo(w, epoch, batch_j, p.batch_size, errors.take())
                items = []


class BatchStream(IterableDataset):
    """Infinite batches of one logical worker; physical worker i plays logical worker (i + rotation) mod W."""

    def __init__(
        self,
        source: Source,
        plan: StreamPlan,
        preprocess: Preprocess,
        tokenizer: Tokenizer,
        starts: list[tuple[int, int]],
        rotation: int = 0,
        done: Optional[Done] = None,
        cache_bytes: int = 0,
    ) -> None:
        self.source = source
        self.plan = plan
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.starts = list(starts)
        self.rotation = rotation
        self.done = done or {}  # elastic resume: samples of open epochs emitted before a resize (data/elastic.py)
        self.cache_bytes = cache_bytes  # data.cache_decoded_mb: each worker process keeps its own (data/memo.py)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], BatchInfo]]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        return self.batches((physical + self.rotation) % self.plan.workers)

    def _epoch_stream(self, w: int, epoch: int, errors: ErrorCounter) -> Iterator[Any]:
        p = self.plan
        if epoch in self.done:
            return self.source.stream(epoch, p.global_worker(w), p.n_logical, p.seed, p.buffer, errors,
                                      done=self.done[epoch])
        return self.source.stream(epoch, p.global_worker(w), p.n_logical, p.seed, p.buffer, errors)

    def batches(self, w: int) -> Iterator[tuple[dict[str, Any], BatchInfo]]:
        """The batches of logical worker w from its start position, forever."""
        p, src, errors = self.plan, self.source, ErrorCounter()
        memo = _memo(self.cache_bytes, src)
        epoch, pos = self.starts[w]
        it = self._epoch_stream(w, epoch, errors)
        if pos and skip(it, pos) < pos:
            raise DataError(f"{src.files[0]}: resume position {pos} is past the end of epoch {epoch} of worker {w}; "
                            "the data changed since the checkpoint: resume with the same data.train")
        errors.take()  # problems met while skipping were counted before the checkpoint
        # an epoch finished in part before a resize may leave this worker nothing: not a data problem
        good_in_epoch, full_epoch = 0, pos == 0 and epoch not in self.done
        sample_id = getattr(src, "sample_id", None)
        while True:
            items, raws = [], 0
            ids: Optional[list[tuple[int, int, int]]] = [] if sample_id is not None else None
            with torch.random.fork_rng(devices=[]):  # per-sample seeds must not disturb the trainer's RNG
                py_state = random.getstate()
                while len(items) < p.batch_size:
                    raw = next(it, _END)
                    if raw is _END:
                        if full_epoch and good_in_epoch == 0:
                            first = f" (first problem: {errors.examples[0]})" if errors.examples else ""
                            raise DataError(f"{src.files[0]}: worker {w} of rank {p.rank} found no usable sample in "
                                            f"epoch {epoch}{first}; check the data and data.train")
                        epoch, pos, good_in_epoch = epoch + 1, 0, 0
                        full_epoch = epoch not in self.done
                        it = self._epoch_stream(w, epoch, errors)
                        continue
                    pos += 1
                    raws += 1
                    if ids is not None:
                        ids.append((epoch, *sample_id(raw)))
                    try:
                        items.append(decode_record(src.load(raw), epoch, p.opts, self.preprocess, memo))
                        good_in_epoch += 1
                    except BadSample as e:
                        errors.add("bad_samples", f"{src.where(raw)}: {e.reason}")
                random.setstate(py_state)
            samples = tokenize_batch(items, self.tokenizer, p.context_length, memo)
            try:
                batch = collate(samples, p.opts.k, p.opts.m, p.context_length)
            except RuntimeError as e:  # torch.stack on images of different sizes
                raise DataError(f"{src.files[0]}: preprocess produced images of different shapes ({e}); "
                                "use a preprocess that resizes to a fixed size") from None
            yield batch, BatchInfo(w, epoch, pos, raws, errors.take(), ids)
