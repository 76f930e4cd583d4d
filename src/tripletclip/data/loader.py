"""The trainer's reader: an infinite, deterministic, exactly resumable iterator over batch-contract batches.

Order: a pure function of (seed, epoch, rank, worker) (see :mod:`tripletclip.data.order`); logical workers
are interleaved round-robin, which is the order torch's DataLoader yields for iterable datasets. A resumed
loader starts physical worker 0 on the logical worker that was next, so the interleaving continues exactly.
The state is the position (epoch, raw samples consumed) of each logical worker as of the last batch the main
process handed out, so prefetched but unused batches are produced again after a resume. Unlike official
TripletCLIP code (seed ignored by the data order, no resume; docs/methods.md section 5) a resumed run sees
bitwise the same batches as an uninterrupted one, for any number of workers. Webdataset shards also resume on
another world size or worker count from all ranks' states: every sample once per epoch, in another order
(:mod:`tripletclip.data.elastic`); tables need ``data.global_order`` for that.

The first ``validate_first`` samples are checked in the main process at build time (one-line DataError
naming file and key); later bad samples are skipped and counted in the loader's
:class:`~tripletclip.data.source.ErrorCounter` (``TrainLoader.errors``), reported by :meth:`TrainLoader.stats`.
"""
from __future__ import annotations

import logging
import signal
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import (
    BadSample,
    DecodeOptions,
    Preprocess,
    Tokenizer,
    check_no_flip,
    decode_record,
    tokenize_batch,
)
from tripletclip.data.fast_crop import exact_fast_preprocess
from tripletclip.data.elastic import Done, merge_done, pack, pack_done, set_bit, unpack, unpack_done
from tripletclip.data.source import ErrorCounter, Source, build_source
from tripletclip.data.stream import BatchInfo, BatchStream, GlobalBatchStream, StreamPlan

log = logging.getLogger(__name__)

STATE_VERSION = 1
_STAT_KEYS = ("samples", "real_pairs", "synthetic_images", "neg_texts", "batches")
# problems always reported, even at zero (the ErrorCounter may hold other kinds too): bad samples, damaged
# (cut or unreadable) shards, and the samples those shards lost
_ERROR_KEYS = ("bad_samples", "stream_errors", "samples_lost")


def _identity(x: Any) -> Any:
    return x


def _ignore_preemption_signals(worker_id: int) -> None:
    """Workers leave SIGUSR1/SIGUSR2 to the main process, which saves a checkpoint and then stops them (SLURM's
    ``--signal`` reaches every process of a job step; train/preempt.py). NOTE: SIGTERM keeps its default: it is
    how multiprocessing stops daemonic workers at interpreter exit, and a worker ignoring it hangs the exit."""
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


def validate_source(source: Source, opts: DecodeOptions, preprocess: Preprocess, tokenizer: Tokenizer,
                    context_length: int, n: int, require_negatives: bool = False) -> None:
    """Decode the first n samples in stored order; raise a one-line DataError on the first bad one, and when
    ``require_negatives`` and no sample has a kind of negative the options decode."""
    if n <= 0:
        return
    decoded, negs_t, negs_i, errors = [], 0, 0, ErrorCounter()
    with torch.random.fork_rng(devices=[]):
        for raw in source.natural(errors):
            try:
                d = decode_record(source.load(raw), 0, opts, preprocess)
            except BadSample as e:
                raise DataError(f"{source.where(raw)}: {e.reason}; {e.hint}") from None
            decoded.append(d)
            negs_t += sum(c is not None for c in d.neg_captions)
            negs_i += sum(x is not None for x in d.neg_images)
            if len(decoded) >= n:
                break
    if errors["stream_errors"]:
        raise DataError(f"{errors.examples[0]}; check the shards named by data.train")
    if not decoded:
        raise DataError(f"{source.files[0]}: no sample found; check data.train and data.type")
    tokenize_batch(decoded, tokenizer, context_length)
    for used, found, what in ((opts.k, negs_t, "negative captions"), (opts.m, negs_i, "negative images")):
        if used and not found and require_negatives:  # the objective would quietly train as another one
            raise DataError(f"{source.files[0]}: none of the first {len(decoded)} samples has {what}, which the "
                            "objective needs; give data with them (data.neg_*_key for tables), or choose an objective "
                            "without them (loss.name)")
        if used and not found:
            log.warning("the first %d samples of %s have no %s", len(decoded), source.files[0], what)


class TrainLoader:
    """Infinite iterator over training batches with ``state_dict`` / ``load_state_dict`` and ``stats``."""

    def __init__(self, cfg: DataConfig, source: Source, plan: StreamPlan, preprocess: Preprocess,
                 tokenizer: Tokenizer) -> None:
        self.cfg = cfg
        self.source = source
        self.plan = plan
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self._positions: list[tuple[int, int]] = [(0, 0)] * plan.workers
        # shards: per logical worker, (epoch, {shard: bitmap of positions emitted in that epoch}); and the samples
        # of open epochs emitted before an elastic resume (data/elastic.py)
        self._emitted: list[tuple[int, dict[int, bytearray]]] = [(0, {}) for _ in range(plan.workers)]
        self._done: Done = {}
        self._next = 0
        self.global_order = bool(getattr(cfg, "global_order", False))
        self._consumed = 0  # global order: samples of the job's sequence consumed (all ranks)
        self._start_at = 0
        self._stats = {k: 0 for k in _STAT_KEYS}
        self.errors = ErrorCounter()  # problems of every worker, summed over the batches handed out
        self._it: Optional[Any] = None
        # data.cache_decoded_mb: decoded images and token rows kept for later passes, per process (data/memo.py)
        self.cache_bytes = int(getattr(cfg, "cache_decoded_mb", 0) or 0) * 2**20

    # iteration -------------------------------------------------------------------------------------------
    def __iter__(self) -> "TrainLoader":
        return self

    def _start(self) -> None:
        if self.global_order:
            self._start_at = self._consumed
            self._next = 0
            stream: Any = GlobalBatchStream(self.source, self.plan, self.preprocess, self.tokenizer, self._consumed,
                                            self.source.n, cache_bytes=self.cache_bytes)
        else:
            stream = BatchStream(self.source, self.plan, self.preprocess, self.tokenizer, self._positions, self._next,
                                 self._done, cache_bytes=self.cache_bytes)
        if self.cfg.workers <= 0:
            self._it = iter(stream)
            return
        dl = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.cfg.workers,
            collate_fn=_identity,
            worker_init_fn=_ignore_preemption_signals,
            # the one iterator owns the workers: dropping it (close) shuts them down
            persistent_workers=False,
            prefetch_factor=max(1, self.cfg.prefetch_factor),
            pin_memory=torch.cuda.is_available(),
        )
        self._it = iter(dl)

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._start()
        try:
            batch, info = next(self._it)
        except Exception as e:
            self.close()  # the stream is dead: stop its workers now, not when the traceback is collected
            text = str(e)
            if not isinstance(e, DataError) or "Original Traceback" not in text:
                raise
            # from a worker process torch adds its traceback to the message: keep the one-line message
            last = text.rstrip().splitlines()[-1]
            raise DataError(last.split("DataError: ", 1)[1] if "DataError: " in last else last) from None
        self._account(batch, info)
        return batch

    def _account(self, batch: dict[str, Any], info: BatchInfo) -> None:
        w = info.worker
        if w != self._next:  # would break exact resume; torch changed its round-robin order
            raise RuntimeError(f"data loader order broken: got a batch of worker {w}, expected worker {self._next}")
        if self.global_order:  # info.pos is the global batch index j since the stream started
            self._consumed = self._start_at + (info.pos + 1) * self.plan.batch_size * self.plan.world_size
            self._positions[w] = (info.epoch, 0)
        else:
            self._positions[w] = (info.epoch, info.pos)
        if info.ids is not None:
            self._track(w, info.ids)
        self._next = (w + 1) % self.plan.workers
        s = self._stats
        s["batches"] += 1
        s["samples"] += info.raw
        s["real_pairs"] += int(batch["image"].shape[0])
        s["synthetic_images"] += int(batch["neg_image_mask"].sum())
        s["neg_texts"] += int(batch["neg_text_mask"].sum())
        for ex in info.errors.examples[: max(0, self.errors.max_examples - len(self.errors.examples))]:
            log.warning("skipped: %s", ex)
        self.errors.merge(info.errors)

    def _track(self, w: int, ids: list[tuple[int, int, int]]) -> None:
        """Mark the samples of a batch as emitted by logical worker w (a batch may end one epoch and start the next)."""
        epoch, bitmaps = self._emitted[w]
        for e, shard, j in ids:
            if e != epoch:
                epoch, bitmaps = e, {}
                self._emitted[w] = (epoch, bitmaps)
            set_bit(bitmaps.setdefault(shard, bytearray()), j)

    @property
    def epoch(self) -> int:
        """Epochs completed by every worker of this rank (0 for resampled data: no epochs)."""
        if self.source.partition == "resampled":
            return 0
        if self.global_order:  # the job's sequence: epoch e is positions [e*n, (e+1)*n)
            return self._consumed // self.source.n
        return min(e for e, _ in self._positions)

    def stats(self) -> dict[str, int]:
        """Counts over consumed batches: samples (raw, incl. bad), real_pairs (positives), synthetic_images
        (valid negative images), neg_texts, batches, epoch, and every problem kind of :attr:`errors`
        (bad_samples, stream_errors = cut or unreadable shards, samples_lost = their samples never read, ...)."""
        return {**self._stats, **{k: self.errors[k] for k in _ERROR_KEYS}, **self.errors.counts, "epoch": self.epoch}

    def close(self) -> None:
        """Stop worker processes (a new iteration starts them again): dropping the DataLoader iterator, which
        owns them, shuts them down (torch documents this for non-persistent workers)."""
        it, self._it = self._it, None
        # NOTE: explicitly, not in torch's __del__: an iterator kept alive by an exception's traceback (a worker's
        # error) is finalized by the cycle collector after its queues, and then waits 5 s per worker to join
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # resume ----------------------------------------------------------------------------------------------
    def _plan_identity(self) -> dict[str, Any]:
        p = self.plan
        return {"seed": p.seed, "rank": p.rank, "world_size": p.world_size, "workers": p.workers,
                "partition": self.source.partition, "files": len(self.source.files)}

    def state_dict(self) -> dict[str, Any]:
        """Position of every logical worker as of the last batch returned, plus the counters (global order: the
        samples of the job's sequence consumed, the same on every rank)."""
        if self.global_order:
            return {"version": STATE_VERSION, "order": "global", "seed": self.plan.seed,
                    "partition": self.source.partition, "files": len(self.source.files), "consumed": self._consumed,
                    "stats": dict(self._stats), "errors": dict(self.errors.counts)}
        return {
            "version": STATE_VERSION,
            **self._plan_identity(),
            "positions": [list(p) for p in self._positions],
            "next_worker": self._next,
            "emitted": [[e, {str(s): pack(b) for s, b in bm.items()}] for e, bm in self._emitted],
            "done": pack_done(self._done),
            "stats": dict(self._stats),
            "errors": dict(self.errors.counts),
        }

    def load_state_dict(self, state: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Continue where ``state`` was taken: this rank's state, or the list of every rank's (rank ``rank mod W``'s
        is used). Exactly (bitwise) with the same data, seed, world size and data.workers; with another world
        size or worker count only with data.global_order (csv, parquet, synthetic) or from all ranks' states of
        webdataset shards (:meth:`_resume_elastic`)."""
        states = state if isinstance(state, list) else [state]
        state = states[self.plan.rank % len(states)]
        if state.get("version") != STATE_VERSION:
            raise DataError(f"loader state version {state.get('version')} is not {STATE_VERSION}; cannot resume the data order")
        if (state.get("order") == "global") != self.global_order:
            raise DataError("the checkpoint's data order (data.global_order) differs from this run's; resume with "
                            f"data.global_order={str(state.get('order') == 'global').lower()}")
        mine = self._plan_identity()
        if not self.global_order and self._elastic(state, mine):
            self._resume_elastic(states)
            return
        if self.global_order:  # world size and workers may change: the order does not depend on them
            mine = {k: mine[k] for k in ("seed", "partition", "files")}
        for k, v in mine.items():
            if state.get(k) != v:
                hint = " (data.workers 0 and 1 are interchangeable)" if k == "workers" else ""
                raise DataError(f"loader state has {k}={state.get(k)!r}, this run has {v!r}; resume with the same "
                                f"setting for an exact data order{hint}")
        self.close()
        if self.global_order:
            self._consumed = int(state["consumed"])
        else:
            self._positions = [(int(e), int(p)) for e, p in state["positions"]]
            self._next = int(state["next_worker"])
            emitted = state.get("emitted") or [[e, {}] for e, _ in self._positions]
            self._emitted = [(int(e), {int(s): bytearray(unpack(b)) for s, b in bm.items()}) for e, bm in emitted]
            self._done = unpack_done(state.get("done"))
        self._restore_counts(state)

    def _elastic(self, state: dict[str, Any], mine: dict[str, Any]) -> bool:
        """Whether ``state`` is of webdataset shards read with another world size or worker count (the same
        seed and shard list), so that :meth:`_resume_elastic` applies."""
        if self.source.partition == "resampled" or not hasattr(self.source, "sample_id"):
            return False
        if state.get("partition") == "resampled" or any(state.get(k) != mine[k] for k in ("seed", "files")):
            return False
        return (state.get("world_size"), state.get("workers")) != (mine["world_size"], mine["workers"])

    def _resume_elastic(self, states: list[dict[str, Any]]) -> None:
        """Resume shards at another world size or worker count: every logical worker restarts at the oldest
        epoch still open in the checkpoint and skips the samples all ranks had emitted (data/elastic.py)."""
        if any("emitted" not in s for s in states):
            raise DataError("the checkpoint's loader state has no record of the samples emitted (written before "
                            "elastic resume of shards existed); resume with its world size and data.workers")
        first, done = merge_done(states, len(self.source.files), self.plan.seed)
        self.close()
        self._positions = [(first, 0)] * self.plan.workers
        self._next = 0
        self._emitted = [(first, {}) for _ in range(self.plan.workers)]
        self._done = done
        log.info("elastic resume: %d ranks x %s workers -> %d x %d; epochs %d-%d continue without the samples "
                 "already emitted", len(states), states[0]["workers"], self.plan.world_size, self.plan.workers,
                 first, max(done))
        # counters (samples, bad samples, ...): old rank r's go to new rank r mod W', so the job's sums carry on
        self._restore_counts(*[s for r, s in enumerate(states) if r % self.plan.world_size == self.plan.rank])

    def _restore_counts(self, *states: dict[str, Any]) -> None:
        """This rank's counters: the sum of those of ``states``."""
        self._stats = {k: 0 for k in _STAT_KEYS}
        counts: dict[str, int] = {}
        for state in states:
            for k in _STAT_KEYS:
                self._stats[k] += int(state["stats"].get(k, 0))
            # (states written before the counter existed kept the two problem counts among the stats)
            errors = state.get("errors") or {k: state["stats"][k] for k in _ERROR_KEYS if k in state["stats"]}
            for k, v in errors.items():
                counts[k] = counts.get(k, 0) + int(v)
        self.errors = ErrorCounter(counts)


def build_train_loader(
    cfg: DataConfig,
    preprocess: Preprocess,
    tokenizer: Tokenizer,
    *,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    context_length: int,
    require_negatives: bool = False,
) -> TrainLoader:
    """Validate the data and return the infinite, resumable training loader of this rank.

    ``require_negatives``: the negatives ``cfg.use_neg_*`` turn on are needed (the trainer turns on only what its
    objective uses), so data without any in the first ``cfg.validate_first`` samples is refused.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    check_no_flip(preprocess)
    preprocess = exact_fast_preprocess(preprocess)  # open_clip's train transform: same tensors, cheaper
    source = build_source(cfg)
    opts = DecodeOptions(seed=seed, use_neg_text=cfg.use_neg_text, use_neg_image=cfg.use_neg_image,
                         max_neg_text=cfg.max_neg_text, max_neg_image=cfg.max_neg_image,
                         sample_one_caption=cfg.sample_one_caption, sample_negatives=cfg.sample_negatives,
                         max_image_pixels=cfg.max_image_pixels)
    plan = StreamPlan(seed=seed, rank=rank, world_size=world_size, workers=max(1, cfg.workers),
                      batch_size=batch_size, buffer=cfg.shuffle_buffer, context_length=context_length, opts=opts)
    if cfg.global_order:
        if not hasattr(source, "n"):
            raise DataError(f"data.global_order=true needs a source of known length (csv, parquet, synthetic); "
                            f"data.type={cfg.type} is not one: use data.global_order=false"
                            + (" (shards resume on another world size or data.workers without it)"
                               if cfg.type == "wds" else ""))
        source.partition_for(1)
    else:
        source.partition_for(plan.n_logical)
    validate_source(source, opts, preprocess, tokenizer, context_length, cfg.validate_first, require_negatives)
    return TrainLoader(cfg, source, plan, preprocess, tokenizer)
