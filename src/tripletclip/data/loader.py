"""The trainer's reader: an infinite, deterministic, exactly resumable iterator over batch-contract batches.

Order: a pure function of (seed, epoch, rank, worker) (see :mod:`tripletclip.data.order`); logical workers
are interleaved round-robin, which is the order torch's DataLoader yields for iterable datasets. A resumed
loader starts physical worker 0 on the logical worker that was next, so the interleaving continues exactly.
The state is the position (epoch, raw samples consumed) of each logical worker as of the last batch the main
process handed out, so prefetched but unused batches are produced again after a resume. Unlike official
TripletCLIP code (seed ignored by the data order, no resume; docs/methods.md section 5) a resumed run sees
bitwise the same batches as an uninterrupted one, for any number of workers.

The first ``validate_first`` samples are checked in the main process at build time (one-line DataError
naming file and key); later bad samples are skipped and counted in :meth:`TrainLoader.stats`.
"""
from __future__ import annotations

import logging
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
from tripletclip.data.shards import dataset_hash
from tripletclip.data.source import Source, build_source
from tripletclip.data.stream import BatchStream, StreamPlan

log = logging.getLogger(__name__)

STATE_VERSION = 1
_STAT_KEYS = ("samples", "bad_samples", "real_pairs", "synthetic_images", "neg_texts", "stream_errors", "samples_lost",
              "batches")


def _identity(x: Any) -> Any:
    return x


def validate_source(source: Source, opts: DecodeOptions, preprocess: Preprocess, tokenizer: Tokenizer,
                    context_length: int, n: int, require_negatives: bool = False) -> None:
    """Decode the first n samples in stored order; raise a one-line DataError on the first bad one, and when
    ``require_negatives`` and no sample has a kind of negative the options decode."""
    if n <= 0:
        return
    decoded, negs_t, negs_i = [], 0, 0
    with torch.random.fork_rng(devices=[]):
        for raw in source.natural():
            try:
                d = decode_record(source.load(raw), 0, opts, preprocess)
            except BadSample as e:
                raise DataError(f"{source.where(raw)}: {e.reason}; {e.hint}") from None
            decoded.append(d)
            negs_t += sum(c is not None for c in d.neg_captions)
            negs_i += sum(x is not None for x in d.neg_images)
            if len(decoded) >= n:
                break
    if source.stream_errors:
        raise DataError(f"{getattr(source, 'last_error', source.files[0])}; check the shards named by data.train")
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
        self._next = 0
        self._stats = {k: 0 for k in _STAT_KEYS}
        self.bad_examples: list[str] = []  # the first few skipped samples, for the run log
        self._it: Optional[Any] = None
        self._hash: Optional[str] = None

    # iteration -------------------------------------------------------------------------------------------
    def __iter__(self) -> "TrainLoader":
        return self

    def _start(self) -> None:
        stream = BatchStream(self.source, self.plan, self.preprocess, self.tokenizer, self._positions, self._next)
        if self.cfg.workers <= 0:
            self._it = iter(stream)
            return
        dl = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.cfg.workers,
            collate_fn=_identity,
            persistent_workers=True,
            prefetch_factor=max(1, self.cfg.prefetch_factor),
            pin_memory=torch.cuda.is_available(),
        )
        self._it = iter(dl)

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._start()
        batch = next(self._it)
        meta = batch.pop("_meta")
        w = meta["worker"]
        if w != self._next:  # would break exact resume; torch changed its round-robin order
            raise RuntimeError(f"data loader order broken: got a batch of worker {w}, expected worker {self._next}")
        self._positions[w] = (meta["epoch"], meta["pos"])
        self._next = (w + 1) % self.plan.workers
        s = self._stats
        s["batches"] += 1
        s["samples"] += meta["raw"]
        s["bad_samples"] += meta["bad"]
        s["stream_errors"] += meta["stream_errors"]
        s["samples_lost"] += meta["samples_lost"]
        s["real_pairs"] += int(batch["image"].shape[0])
        s["synthetic_images"] += int(batch["neg_image_mask"].sum())
        s["neg_texts"] += int(batch["neg_text_mask"].sum())
        for ex in meta["bad_examples"]:
            if len(self.bad_examples) < 20:
                self.bad_examples.append(ex)
                log.warning("skipped bad sample: %s", ex)
        return batch

    @property
    def epoch(self) -> int:
        """Epochs completed by every worker of this rank (0 for resampled data: no epochs)."""
        if self.source.partition == "resampled":
            return 0
        return min(e for e, _ in self._positions)

    def stats(self) -> dict[str, int]:
        """Counts over consumed batches: samples (raw, incl. bad), bad_samples, real_pairs (positives),
        synthetic_images (valid negative images), neg_texts, stream_errors (cut or unreadable shards), samples_lost
        (their samples that were never read), batches, epoch."""
        return {**self._stats, "epoch": self.epoch}

    def close(self) -> None:
        """Stop worker processes (a new iteration starts them again)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # resume ----------------------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        p = self.plan
        return {"seed": p.seed, "rank": p.rank, "world_size": p.world_size, "workers": p.workers,
                "partition": self.source.partition, "files": len(self.source.files)}

    def state_dict(self) -> dict[str, Any]:
        """Position of every logical worker as of the last batch returned, plus the counters."""
        return {
            "version": STATE_VERSION,
            **self._identity(),
            "positions": [list(p) for p in self._positions],
            "next_worker": self._next,
            "stats": dict(self._stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken (same data, seed, ranks and data.workers required)."""
        if state.get("version") != STATE_VERSION:
            raise DataError(f"loader state version {state.get('version')} is not {STATE_VERSION}; cannot resume the data order")
        mine = self._identity()
        for k, v in mine.items():
            if state.get(k) != v:
                hint = " (data.workers 0 and 1 are interchangeable)" if k == "workers" else ""
                raise DataError(f"loader state has {k}={state.get(k)!r}, this run has {v!r}; resume with the same "
                                f"setting for an exact data order{hint}")
        self.close()
        self._positions = [(int(e), int(p)) for e, p in state["positions"]]
        self._next = int(state["next_worker"])
        self._stats = {k: int(state["stats"].get(k, 0)) for k in _STAT_KEYS}

    # provenance ------------------------------------------------------------------------------------------
    def data_hash(self) -> str:
        """Content hash of the data files (manifest hashes when available, else streamed sha256)."""
        if self._hash is None:
            self._hash = dataset_hash(self.source.files)
        return self._hash

    def describe(self) -> dict[str, Any]:
        return {"type": self.cfg.type, "files": len(self.source.files), "partition": self.source.partition,
                "workers": self.cfg.workers, "batch_size": self.plan.batch_size, "K": self.plan.opts.k,
                "M": self.plan.opts.m}


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
    source = build_source(cfg)
    opts = DecodeOptions(seed=seed, use_neg_text=cfg.use_neg_text, use_neg_image=cfg.use_neg_image,
                         max_neg_text=cfg.max_neg_text, max_neg_image=cfg.max_neg_image,
                         sample_one_caption=cfg.sample_one_caption, sample_negatives=cfg.sample_negatives)
    plan = StreamPlan(seed=seed, rank=rank, world_size=world_size, workers=max(1, cfg.workers),
                      batch_size=batch_size, buffer=cfg.shuffle_buffer, context_length=context_length, opts=opts)
    source.partition_for(plan.n_logical)
    validate_source(source, opts, preprocess, tokenizer, context_length, cfg.validate_first, require_negatives)
    source.stream_errors = source.samples_lost = 0
    return TrainLoader(cfg, source, plan, preprocess, tokenizer)
