"""The interface every training-data reader implements, and the registry that names them.

A source yields *raw* samples (cheap references: a tar member range, a table row index) in a deterministic
order per (epoch, logical worker); the loader shuffles, partitions and skips raw samples, and only then asks
the source to :meth:`Source.load` one into a :class:`~tripletclip.data.decode.Record`. Keeping raw samples
cheap is what makes exact resume fast: fast-forwarding never reads or decodes an image.

Registered sources (``data.type``): ``wds`` (webdataset shards), ``csv`` (CSV/TSV), ``parquet``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import Record
from tripletclip.registry import Registry


class Source(Protocol):
    """What the loader needs from a reader."""

    #: "shards", "samples" (split by sample index), "rows" or "resampled": how workers partition the data
    partition: str
    #: files the data come from, in order (for messages and the data hash)
    files: list[str]
    #: problems found while streaming that are not tied to one sample (e.g. a truncated shard), since reset
    stream_errors: int
    #: samples those problems cost (e.g. the samples of a shard after its cut), since reset
    samples_lost: int

    def partition_for(self, n_logical: int) -> str:
        """Fix and return the partition for this many logical workers (world_size * workers)."""

    def natural(self) -> Iterator[Any]:
        """Raw samples in stored order (validation at start)."""

    def stream(self, epoch: int, g: int, n_logical: int, seed: int, buffer: int) -> Iterator[Any]:
        """Raw samples of logical worker g in this epoch (resampled: this round), shuffled."""

    def load(self, raw: Any) -> Record:
        """Parse one raw sample (raises BadSample)."""

    def where(self, raw: Any) -> str:
        """'<file>, sample <key>' for messages."""


SOURCES: Registry[Callable[[DataConfig], Source]] = Registry("data source")


def build_source(cfg: DataConfig) -> Source:
    """The registered source for ``cfg.type`` (imports the built-in readers so that they register)."""
    import tripletclip.data.tables  # noqa: F401  (registration)
    import tripletclip.data.wds  # noqa: F401

    if not cfg.train:
        raise DataError("data.train is empty; give shard patterns (wds) or a table path (csv/parquet)")
    try:
        factory = SOURCES.get(cfg.type)
    except KeyError as e:
        raise DataError(f"data.type: {e.args[0]}") from None
    return factory(cfg)
