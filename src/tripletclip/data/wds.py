"""The ``wds`` training source: webdataset shards, partitioned over ranks and workers, shuffled, resumable.

Reading a shard is one sequential pass over its tar stream (:mod:`tripletclip.data.tar_stream`), opened once
per pass, from a local path, a ``pipe:`` command or an fsspec URL (:mod:`tripletclip.data.urls`); layouts and
keys are :mod:`tripletclip.data.shard_reader`'s. This module decides which logical worker reads which shard in
which epoch (:mod:`tripletclip.data.order`): whole shards when there are at least as many shards as workers x
ranks, else groups of workers share a shard, each keeping a disjoint subset of its samples. Raw samples carry
their members' bytes (as webdataset's do), so the shuffle buffer holds bytes, and fast-forwarding on resume
reads the skipped samples' bytes but decodes no image.

A damaged shard (cut: a partial download or copy; or unreadable) gives what it can, and is counted in the
loader's :class:`~tripletclip.data.source.ErrorCounter` as a stream error with the samples it lost (exactly,
when the folder's ``manifest.json`` lists the shard, else the one cut sample). The trainer stops when the lost
and skipped samples pass ``data.max_bad_fraction``. A failing ``pipe:`` command stops it with a one-line error.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tarfile
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import BadSample, Record
from tripletclip.data.elastic import Rule, is_done
from tripletclip.data.manifest import manifest_entries
from tripletclip.data.memo import DecodeMemo
from tripletclip.data.order import every_nth, make_rng, resampled_indices, shard_assignment, shard_group, shuffle_buffer
from tripletclip.data.shard_reader import parse_sample, where
from tripletclip.data.source import SOURCES, ErrorCounter, FileSource
from tripletclip.data.tar_stream import stream_samples
from tripletclip.data.urls import expand_shard_urls, is_url, open_shard

log = logging.getLogger(__name__)

# (shard index, key, {extension: member bytes}, position in the shard's stored order)
RawShardSample = tuple[int, str, dict[str, bytes], int]


class WdsSource(FileSource):
    """Reads webdataset shards (paths, ``pipe:`` commands, fsspec URLs); layouts in
    :mod:`tripletclip.data.shard_reader`."""

    def __init__(self, files: list[str], resampled: bool) -> None:
        self.files = files
        self.resampled = resampled
        self.partition = "resampled" if resampled else "shards"
        self._manifest_counts: dict[str, dict[str, int]] = {}

    def partition_for(self, n_logical: int) -> str:
        """Choose how logical workers split the data; warns when shards are too few to split."""
        if not self.resampled:
            n = len(self.files)
            self.partition = "shards" if n >= n_logical else "shard_groups"
            if self.partition == "shard_groups":
                log.warning("%d shards for %d workers x ranks: each shard is read by %s workers, each keeping a "
                            "disjoint share of its samples (and reading all its bytes)%s; write at least %d shards "
                            "so that each is read once", n, n_logical,
                            n_logical // n if n_logical % n == 0 else f"{n_logical // n}-{n_logical // n + 1}",
                            "" if n_logical % n == 0 else ", so workers' shares differ", n_logical)
        return self.partition

    def fingerprint(self) -> dict[str, Any]:
        """Local files: their manifest, content or sizes; URLs and commands: the list itself (never downloaded
        just to hash it)."""
        if not any(is_url(f) for f in self.files):
            return super().fingerprint()
        h = hashlib.sha256("".join(f + "\n" for f in self.files).encode())
        return {"method": "url-list-sha256", "sha256": h.hexdigest(), "files": len(self.files)}

    def _expected_samples(self, path: str) -> int | None:
        """The shard's sample count from its folder's manifest.json (None when no manifest lists it)."""
        if is_url(path):  # no manifest is read from a command or an object store
            return None
        folder, name = os.path.split(path)
        if folder not in self._manifest_counts:
            entries = manifest_entries(folder or ".")
            self._manifest_counts[folder] = {n: int(e["samples"]) for n, e in entries.items() if "samples" in e}
        return self._manifest_counts[folder].get(name)

    def _shard_error(self, path: str, read: int, error: Exception, errors: ErrorCounter) -> None:
        """Count a cut or unreadable shard and the samples it lost (those the manifest lists beyond ``read``)."""
        expected = self._expected_samples(path)
        if expected is not None:
            lost, how = max(expected - read, 0), f"{max(expected - read, 0)} of its {expected} samples lost"
        else:  # only the cut sample is known to be lost
            lost = getattr(error, "partial", 0)
            how = f"{read} samples read, at least {lost} lost (no manifest.json lists the shard to tell how many)"
        errors.add("stream_errors", f"{path}: damaged shard ({error}); {how}")
        errors.add("samples_lost", n=lost)
        log.warning("%s: damaged shard (%s): %s; re-create or re-download it", path, error, how)

    def attach_memo(self, memo: Optional[DecodeMemo]) -> None:
        """Keep shard passes and parsed samples in ``memo`` (data.cache_decoded_mb, data/memo.py): a later pass
        over a shard read whole then reads memory, not the tar."""
        self._memo = memo

    def _scan(self, shard_ids: Iterable[int], errors: ErrorCounter, count_errors: bool = True) -> Iterator[RawShardSample]:
        memo = getattr(self, "_memo", None)
        for si in shard_ids:
            kept = memo.kept_pass(si) if memo is not None else None
            if kept is not None:
                yield from kept
                continue
            path, read = self.files[si], 0
            rows: list[RawShardSample] = []
            try:
                with open_shard(path) as f:  # the pass's one open
                    for key, members in stream_samples(f):
                        read += 1
                        raw = (si, key, members, read - 1)
                        if memo is not None:
                            rows.append(raw)
                        yield raw
            except FileNotFoundError as e:
                if is_url(path):
                    raise DataError(f"{path}: shard not found ({e}); check data.train") from None
                raise DataError(f"{path}: shard disappeared during training; restore it or drop it from "
                                "data.train") from None
            except (tarfile.TarError, OSError) as e:
                if count_errors:
                    self._shard_error(path, read, e, errors)
            else:  # a damaged shard is read again in every pass, so that its losses are counted every time
                if memo is not None:
                    memo.keep_pass(si, rows, lambda raw: list(raw[2].values()))

    def natural(self, errors: ErrorCounter) -> Iterator[RawShardSample]:
        return self._scan(range(len(self.files)), errors)

    def stream(self, epoch: int, g: int, n_logical: int, seed: int, buffer: int,
               errors: ErrorCounter, done: Optional[Mapping[int, Sequence[Rule]]] = None) -> Iterator[RawShardSample]:
        """Worker g's raw samples of an epoch, shuffled; ``done`` (elastic resume, data/elastic.py): rules per
        shard of samples already emitted in this epoch before a resize, read but left out before the buffer."""
        n = len(self.files)
        if self.partition == "resampled":
            items = self._scan(resampled_indices(n, epoch, seed, g, n_logical), errors)
        elif self.partition == "shards":
            items = self._scan(shard_assignment(n, epoch, seed, g, n_logical) or [], errors)
        else:  # shard groups: the first worker of a group counts a damaged shard's losses for all of them
            shard, i, m = shard_group(n, epoch, seed, g, n_logical)
            items = every_nth(self._scan([shard], errors, count_errors=i == 0), i, m)
        if done:
            items = (r for r in items if r[0] not in done or not is_done(done[r[0]], r[3]))
        return shuffle_buffer(items, buffer, make_rng(seed, "buffer", epoch, g))

    def sample_id(self, raw: RawShardSample) -> tuple[int, int]:
        """(shard index, position in the shard): a sample's name for elastic resume."""
        return raw[0], raw[3]

    def where(self, raw: RawShardSample) -> str:
        return where(self.files[raw[0]], raw[1])

    def load(self, raw: RawShardSample) -> Record:
        si, key, members, pos = raw
        memo = getattr(self, "_memo", None)
        # NOTE: a parsed record holds its sample's bytes; only a kept pass has counted them against the bound
        if memo is None or memo.kept_pass(si) is None:
            return parse_sample(self.files[si], key, members)
        return memo.record((si, pos), lambda: parse_sample(self.files[si], key, members), BadSample)


@SOURCES.register("wds")
def _wds_source(cfg: DataConfig) -> WdsSource:
    return WdsSource(expand_shard_urls(cfg.train, "data.train"), cfg.resampled)
