"""The ``wds`` training source: webdataset shards, partitioned over ranks and workers, shuffled, resumable.

Reading a shard (layouts, keys, member byte ranges, cut tars) is :mod:`tripletclip.data.shard_reader`'s; this
module decides which logical worker reads which shard in which epoch (:mod:`tripletclip.data.order`) and keeps
raw samples as (shard index, key, member ranges) so that fast-forwarding on resume never reads an image.

A damaged shard (cut: a partial download or copy; or unreadable) gives what it can, and is counted in the
loader's :class:`~tripletclip.data.source.ErrorCounter` as a stream error with the samples it lost (exactly,
when the folder's ``manifest.json`` lists the shard, else the one cut sample). The trainer stops when the lost
and skipped samples pass ``data.max_bad_fraction``.
"""
from __future__ import annotations

import logging
import os
import tarfile
from typing import Iterable, Iterator

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import Record
from tripletclip.data.manifest import manifest_entries
from tripletclip.data.order import (
    every_nth,
    make_rng,
    resampled_indices,
    shard_assignment,
    shard_order,
    shuffle_buffer,
)
from tripletclip.data.patterns import expand_patterns
from tripletclip.data.shard_reader import Members, parse_sample, scan_shard, where
from tripletclip.data.source import SOURCES, ErrorCounter, FileSource

log = logging.getLogger(__name__)

# (shard index, key, {extension: (data offset, size)})
RawShardSample = tuple[int, str, Members]


class WdsSource(FileSource):
    """Reads local webdataset shards; see :mod:`tripletclip.data.shard_reader` for the layouts."""

    def __init__(self, files: list[str], resampled: bool) -> None:
        self.files = files
        self.resampled = resampled
        self.partition = "resampled" if resampled else "shards"
        self._manifest_counts: dict[str, dict[str, int]] = {}

    def partition_for(self, n_logical: int) -> str:
        """Choose how logical workers split the data; warns when shards are too few to split."""
        if not self.resampled:
            self.partition = "shards" if len(self.files) >= n_logical else "samples"
            if self.partition == "samples":
                log.warning("%d shards for %d workers x ranks: every worker reads every shard and keeps 1/%d of "
                            "the samples; write at least %d shards for efficient loading",
                            len(self.files), n_logical, n_logical, n_logical)
        return self.partition

    def _expected_samples(self, path: str) -> int | None:
        """The shard's sample count from its folder's manifest.json (None when no manifest lists it)."""
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

    def _scan(self, shard_ids: Iterable[int], errors: ErrorCounter, count_errors: bool = True) -> Iterator[RawShardSample]:
        for si in shard_ids:
            path, read = self.files[si], 0
            try:
                for key, members in scan_shard(path):
                    read += 1
                    yield si, key, members
            except FileNotFoundError:
                raise DataError(f"{path}: shard disappeared during training; restore it or drop it from data.train") from None
            except (tarfile.TarError, OSError) as e:
                if count_errors:
                    self._shard_error(path, read, e, errors)

    def natural(self, errors: ErrorCounter) -> Iterator[RawShardSample]:
        return self._scan(range(len(self.files)), errors)

    def stream(self, epoch: int, g: int, n_logical: int, seed: int, buffer: int,
               errors: ErrorCounter) -> Iterator[RawShardSample]:
        n = len(self.files)
        if self.partition == "resampled":
            items = self._scan(resampled_indices(n, epoch, seed, g, n_logical), errors)
        elif self.partition == "shards":
            items = self._scan(shard_assignment(n, epoch, seed, g, n_logical) or [], errors)
        else:
            # every worker reads every shard: one (g = 0) counts a damaged shard's losses for all of them
            items = every_nth(self._scan(shard_order(n, epoch, seed), errors, count_errors=g == 0), g, n_logical)
        return shuffle_buffer(items, buffer, make_rng(seed, "buffer", epoch, g))

    def where(self, raw: RawShardSample) -> str:
        return where(self.files[raw[0]], raw[1])

    def load(self, raw: RawShardSample) -> Record:
        si, key, members = raw
        return parse_sample(self.files[si], key, members)


@SOURCES.register("wds")
def _wds_source(cfg: DataConfig) -> WdsSource:
    return WdsSource(expand_patterns(cfg.train, ("tar",), "data.train"), cfg.resampled)
