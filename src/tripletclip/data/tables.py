"""CSV/TSV and parquet table reader (open_clip's ``--dataset-type csv`` layout, NegCLIP's TSVs).

Columns come from :class:`~tripletclip.config.schema.DataConfig`: ``img_key`` (default ``filepath``) and
``caption_key`` (default ``title``), as open_clip_train's ``--csv-img-key`` / ``--csv-caption-key``; the
separator defaults to a tab like ``--csv-separator``. Optional ``neg_caption_key`` / ``neg_image_key`` cells
hold one string, a JSON list or a Python-literal list (NegCLIP/ARO ``valid_neg_clip.tsv``, arXiv 2210.01936).

Negative image entries that are paths are renderings aligned with the negative captions by position
(TripletData); entries that are integers are row indices of the same table, as in NegCLIP's ``neg_image``
column (nearest-neighbour images), and are sampled independently of the captions. A caption cell holding a
list gives several captions per image (LaCLIP); one is sampled per (seed, epoch, row).

Relative image paths are resolved against ``image_root``, or the table's folder when it is empty (a
deliberate difference from open_clip, which resolves them against the working directory). Parquet image
cells may also hold encoded bytes or a ``{"bytes", "path"}`` struct (Hugging Face datasets' image column).
"""
from __future__ import annotations

import ast
import bisect
import csv
import json
import math
import os
import sys
from typing import Any, Iterator

import numpy as np

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.decode import BadSample, Blob, Record
from tripletclip.data.order import derive_seed, table_rows
from tripletclip.data.source import SOURCES, ErrorCounter, FileSource

_MAX_LIST_CELL = 1 << 20  # literal_eval on huge cells is slow; such a cell is a data error anyway


def parse_list_cell(cell: Any) -> list[Any]:
    """A cell as a list: None/NaN/'' -> [], a list stays, '[...]' parsed as JSON or a Python literal, else [cell]."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    if isinstance(cell, (list, tuple)):
        return list(cell)
    if isinstance(cell, np.ndarray):
        return cell.tolist()
    s = str(cell).strip()
    if not s:
        return []
    if s[0] == "[" and s[-1] == "]" and len(s) <= _MAX_LIST_CELL:
        try:
            value = json.loads(s)
        except ValueError:
            try:
                value = ast.literal_eval(s)  # safe: literals only, never code
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return [s]
        if isinstance(value, (list, tuple)):
            return list(value)
    return [s]


def not_utf8(path: str) -> DataError:
    """The one-line error for a text table that is not UTF-8: file, line, column and byte of the first bad byte."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(f"{path}, line {n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                 "tables are read as UTF-8: re-encode the file (e.g. iconv -f cp1252 -t utf-8 for "
                                 "Windows/Latin-1 text)")
    return DataError(f"{path}: not UTF-8 text; re-encode the file as UTF-8")


def _read_csv(path: str, sep: str, columns: list[str]) -> dict[str, list[Any]]:
    try:
        return _read_csv_utf8(path, sep, columns)
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _read_csv_utf8(path: str, sep: str, columns: list[str]) -> dict[str, list[Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty table; write a header row with {', '.join(columns)}") from None
        missing = [c for c in columns if c not in header]
        if missing:
            hint = " (is data.csv_separator right?)" if len(header) == 1 else ""
            raise DataError(f"{path}: no column '{missing[0]}' among {header}{hint}; set the data.*_key options")
        idx = [header.index(c) for c in columns]
        out: dict[str, list[Any]] = {c: [] for c in columns}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise DataError(f"{path}, line {line}: {len(row)} fields, header has {len(header)}; fix the row")
            for c, i in zip(columns, idx):
                out[c].append(row[i])
    return out


def _read_parquet(path: str, columns: list[str]) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' among {names}; set the data.*_key options")
    return pq.read_table(path, columns=columns).to_pydict()


class RowSource:
    """A source whose raw samples are row indices 0..n-1 (tables, the synthetic source): partitioned, shuffled and
    resampled by the rules of :mod:`tripletclip.data.order` for table rows."""

    n: int
    files: list[str]
    partition: str

    def partition_for(self, n_logical: int) -> str:
        if self.n < n_logical:
            raise DataError(f"{self.files[0]}: {self.n} rows for {n_logical} workers x ranks; use fewer data.workers")
        return self.partition

    def natural(self, errors: ErrorCounter) -> Iterator[int]:
        return iter(range(self.n))

    def stream(self, epoch: int, g: int, n_logical: int, seed: int, buffer: int, errors: ErrorCounter) -> Iterator[int]:
        if self.partition == "resampled":
            gen = np.random.Generator(np.random.PCG64(derive_seed(seed, "rows-resample", epoch, g)))
            rows = gen.integers(0, self.n, size=max(1, math.ceil(self.n / n_logical)))
        else:
            rows = table_rows(self.n, epoch, seed, g, n_logical)
        return iter(rows.tolist())


class TableSource(RowSource, FileSource):
    """Rows of one or more tables (``a.tsv::b.tsv``), concatenated in order."""

    def __init__(self, cfg: DataConfig, fmt: str) -> None:
        self.cfg = cfg
        self.files = [p.strip() for p in cfg.train.split("::") if p.strip()]
        self.partition = "resampled" if cfg.resampled else "rows"
        self.columns = [c for c in (cfg.img_key, cfg.caption_key, cfg.neg_caption_key, cfg.neg_image_key) if c]
        self.data: dict[str, list[Any]] = {c: [] for c in self.columns}
        self.offsets: list[int] = []
        for path in self.files:
            if not os.path.isfile(path):
                raise DataError(f"{path}: table not found; check data.train")
            part = _read_parquet(path, self.columns) if fmt == "parquet" else _read_csv(path, cfg.csv_separator, self.columns)
            self.offsets.append(len(self.data[cfg.img_key]))
            for c in self.columns:
                self.data[c].extend(part[c])
        self.n = len(self.data[cfg.img_key])
        if self.n == 0:
            raise DataError(f"{self.files[0]}: table has no rows")
        self.fmt = fmt

    def _locate(self, row: int) -> tuple[int, int]:
        fi = bisect.bisect_right(self.offsets, row) - 1
        return fi, row - self.offsets[fi]

    def where(self, row: int) -> str:
        fi, local = self._locate(row)
        return f"{self.files[fi]}, row {local}"

    def _image(self, cell: Any, fi: int, what: str) -> Blob:
        if isinstance(cell, dict):  # Hugging Face datasets image struct
            cell = cell.get("bytes") or cell.get("path")
        if isinstance(cell, (bytes, bytearray)):
            return Blob(data=bytes(cell), label=what)
        path = str(cell).strip() if cell is not None else ""
        if not path:
            raise BadSample(f"empty {what}", f"fill the '{self.cfg.img_key}' column")
        if not os.path.isabs(path):
            path = os.path.join(self.cfg.image_root or os.path.dirname(os.path.abspath(self.files[fi])), path)
        return Blob(path=path, label=path)

    def load(self, row: int) -> Record:
        cfg = self.cfg
        fi, local = self._locate(row)
        captions = [str(c).strip() for c in parse_list_cell(self.data[cfg.caption_key][row])]
        rec = Record(key=f"{os.path.basename(self.files[fi])}#{local}", uid=f"{os.path.basename(self.files[fi])}#{local}",
                     where=self.where(row), captions=captions,
                     image=self._image(self.data[cfg.img_key][row], fi, f"image path in column '{cfg.img_key}'"))
        if cfg.neg_caption_key:
            rec.neg_captions = [str(c).strip() for c in parse_list_cell(self.data[cfg.neg_caption_key][row])]
        if cfg.neg_image_key:
            entries = parse_list_cell(self.data[cfg.neg_image_key][row])
            if entries and all(isinstance(e, int) and not isinstance(e, bool) for e in entries):
                # NegCLIP: row indices (of the same table) of nearest-neighbour images
                count = (self.offsets[fi + 1] if fi + 1 < len(self.offsets) else self.n) - self.offsets[fi]
                bad = [e for e in entries if not 0 <= e < count]
                if bad:
                    raise BadSample(f"negative image row {bad[0]} is outside the table (0..{count - 1})")
                rec.neg_images = [self._image(self.data[cfg.img_key][self.offsets[fi] + e], fi, f"row {e} image")
                                  for e in entries]
                rec.aligned = False
            else:
                rec.neg_images = [self._image(e, fi, f"negative image in column '{cfg.neg_image_key}'") for e in entries]
        return rec


@SOURCES.register("csv")
def _csv_source(cfg: DataConfig) -> TableSource:
    return TableSource(cfg, "csv")


@SOURCES.register("parquet")
def _parquet_source(cfg: DataConfig) -> TableSource:
    return TableSource(cfg, "parquet")
