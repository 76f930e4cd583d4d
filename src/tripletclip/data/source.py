"""The interface every training-data reader implements, and the registry that names them.

A source yields *raw* samples (cheap references: a tar member range, a table row index) in a deterministic
order per (epoch, logical worker); the loader shuffles, partitions and skips raw samples, and only then asks
the source to :meth:`Source.load` one into a :class:`~tripletclip.data.decode.Record`. Keeping raw samples
cheap is what makes exact resume fast: fast-forwarding never reads or decodes an image.

Problems met while reading are counted in an :class:`ErrorCounter` that the loader owns and hands to the
source; a worker process ships the counts of each batch next to it, and the loader sums them.

Registered sources (``data.type``): ``wds`` (webdataset shards), ``csv`` (CSV/TSV), ``parquet``, ``synthetic``
(generated in memory, for tests and benchmarks of the loop). The package ``__init__`` imports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import Record
from tripletclip.data.manifest import fingerprint_files
from tripletclip.registry import Registry


class Source(Protocol):
    """What the loader needs from a reader."""

    #: "shards", "shard_groups" (fewer shards than workers: a shard's samples split in its group), "rows" or
    #: "resampled": how workers partition the data (data/order.py)
    partition: str
    #: files the data come from, in order (for messages and the data hash)
    files: list[str]

    def partition_for(self, n_logical: int) -> str:
        """Fix and return the partition for this many logical workers (world_size * workers)."""

    def natural(self, errors: "ErrorCounter") -> Iterator[Any]:
        """Raw samples in stored order (validation at start); problems not tied to a sample go to ``errors``."""

    def stream(self, epoch: int, g: int, n_logical: int, seed: int, buffer: int, errors: "ErrorCounter") -> Iterator[Any]:
        """Raw samples of logical worker g in this epoch (resampled: this round), shuffled."""

    def load(self, raw: Any) -> Record:
        """Parse one raw sample (raises BadSample)."""

    def where(self, raw: Any) -> str:
        """'<file>, sample <key>' for messages."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data (``method``, ``sha256``, ...), recorded in the run folder."""


class FileSource:
    """Base of the sources that read files: their fingerprint is the files' (manifest, content or sizes)."""

    files: list[str]

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint_files(self.files)


@dataclass
class ErrorCounter:
    """Counts of reading problems by kind (``bad_samples``, ``stream_errors``, ...) and the first messages.

    Kinds are free-form names; the loader reports each count in :meth:`TrainLoader.stats`.
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, kind: str, message: str = "", n: int = 1) -> None:
        """Count ``n`` problems of ``kind``; keep ``message`` ('<where>: <what>') among the first examples."""
        self.counts[kind] = self.counts.get(kind, 0) + n
        if message and len(self.examples) < self.max_examples:
            self.examples.append(message)

    def merge(self, other: "ErrorCounter") -> None:
        """Add another counter's counts and examples (a worker's share of one batch)."""
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        self.examples.extend(other.examples[: max(0, self.max_examples - len(self.examples))])

    def take(self) -> "ErrorCounter":
        """The problems counted since the last take, resetting this counter."""
        out = ErrorCounter(self.counts, self.examples, self.max_examples)
        self.counts, self.examples = {}, []
        return out

    def __getitem__(self, kind: str) -> int:
        return self.counts.get(kind, 0)


SOURCES: Registry[Callable[[DataConfig], Source]] = Registry("data source")


def build_source(cfg: DataConfig) -> Source:
    """The source registered as ``cfg.type`` (the package ``__init__`` imports the built-in ones)."""
    if not cfg.train and cfg.type != "synthetic":
        raise DataError("data.train is empty; give shard patterns (wds) or a table path (csv/parquet)")
    try:
        factory = SOURCES.get(cfg.type)
    except KeyError as e:
        raise DataError(f"data.type: {e.args[0]}") from None
    return factory(cfg)
