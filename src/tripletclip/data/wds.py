"""The ``wds`` training source: webdataset shards, partitioned over ranks and workers, shuffled, resumable.

Reading a shard (layouts, keys, member byte ranges) is :mod:`tripletclip.data.shard_reader`'s; this module
decides which logical worker reads which shard in which epoch (:mod:`tripletclip.data.order`) and keeps raw
samples as (shard index, key, member ranges) so that fast-forwarding on resume never reads an image.
"""
from __future__ import annotations

import logging
import tarfile
from typing import Iterable, Iterator

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import Record
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
    """Reads local webdataset shards; see the module docstring for the layouts."""

    def __init__(self, files: list[str], resampled: bool) -> None:
        self.files = files
        self.resampled = resampled
        self.partition = "resampled" if resampled else "shards"

    def partition_for(self, n_logical: int) -> str:
        """Choose how logical workers split the data; warns when shards are too few to split."""
        if not self.resampled:
            self.partition = "shards" if len(self.files) >= n_logical else "samples"
            if self.partition == "samples":
                log.warning("%d shards for %d workers x ranks: every worker reads every shard and keeps 1/%d of "
                            "the samples; write at least %d shards for efficient loading",
                            len(self.files), n_logical, n_logical, n_logical)
        return self.partition

    def _scan(self, shard_ids: Iterable[int], errors: ErrorCounter) -> Iterator[RawShardSample]:
        for si in shard_ids:
            path = self.files[si]
            try:
                for key, members in scan_shard(path):
                    yield si, key, members
            except FileNotFoundError:
                raise DataError(f"{path}: shard disappeared during training; restore it or drop it from data.train") from None
            except (tarfile.TarError, OSError) as e:
                errors.add("stream_errors", f"{path}: unreadable shard ({e})")
                log.warning("%s: unreadable shard (%s); skipped", path, e)

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
            items = every_nth(self._scan(shard_order(n, epoch, seed), errors), g, n_logical)
        return shuffle_buffer(items, buffer, make_rng(seed, "buffer", epoch, g))

    def where(self, raw: RawShardSample) -> str:
        return where(self.files[raw[0]], raw[1])

    def load(self, raw: RawShardSample) -> Record:
        si, key, members = raw
        return parse_sample(self.files[si], key, members)


@SOURCES.register("wds")
def _wds_source(cfg: DataConfig) -> WdsSource:
    return WdsSource(expand_patterns(cfg.train, ("tar",), "data.train"), cfg.resampled)
