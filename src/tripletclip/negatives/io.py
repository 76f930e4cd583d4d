"""Reading caption inputs (CSV/TSV, parquet, JSONL, webdataset) and writing parquet parts atomically.

An input is split into *units* of work: row ranges for tables, one tar file for webdataset shards, so that a
rank of a sharded job reads only its own tars. Each row carries the image key, the caption and, when the
input has one, a reference to the positive image (a path, or ``<tar>#<member>`` for webdataset), which the
image stage uses to pair the positive image with the rendered negative. Patterns, shard keys and tar reading
are the data package's (:mod:`tripletclip.data.patterns`, :mod:`tripletclip.data.shard_reader`), so an input
spec and a sample key mean here what they mean to the trainer.
"""
from __future__ import annotations

import csv
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from tripletclip.data.contract import DataError
from tripletclip.data.decode import BadSample, Blob
from tripletclip.data.manifest import fingerprint_files
from tripletclip.data.patterns import expand_patterns
from tripletclip.data.shard_reader import IMAGE_EXTS, scan_shard
from tripletclip.data.tables import not_utf8
from tripletclip.errors import InputError
from tripletclip.utils.files import temp_path

INPUT_EXTS = ("tar", "parquet", "jsonl", "csv", "tsv")
_AUTO_IMAGE_COLUMNS = ("image", "filepath", "file_path", "filename", "file_name", "image_path", "url_local")


@dataclass
class CaptionColumns:
    """How to read a caption table (``--key-col`` ...) and how many rows make a unit of work."""

    key_col: str = "key"
    caption_col: str = "caption"
    image_col: str = "auto"  # column with the positive image path; "auto" tries common names, "" = none
    chunk_size: int = 10000  # rows per unit (tables; a tar is one unit)


@dataclass
class CaptionRow:
    key: str
    caption: str
    image: str = ""  # path or "<tar>#<member>", "" if the input has no image reference
    extra: dict[str, Any] = field(default_factory=dict)


def expand_paths(spec: str, what: str = "--in") -> list[str]:
    """Input files of a spec: files, a folder (its tars, else parquet, JSONL, CSV or TSV files), globs, braces."""
    return expand_patterns(spec, INPUT_EXTS, what)


def input_kind(paths: Sequence[str]) -> str:
    exts = {Path(p).suffix.lower().lstrip(".") for p in paths}
    if len(exts) != 1:
        raise DataError(f"{paths[0]}: mixed input formats {sorted(exts)}; give one format")
    ext = exts.pop()
    kinds = {"tar": "wds", "parquet": "parquet", "jsonl": "jsonl", "json": "jsonl", "csv": "csv", "tsv": "csv"}
    if ext not in kinds:
        raise DataError(f"{paths[0]}: unknown input format '.{ext}'; use .csv/.tsv, .parquet, .jsonl or .tar")
    return kinds[ext]


def _read_table(path: str, kind: str, sep: Optional[str]) -> list[dict[str, Any]]:
    try:
        return _read_table_utf8(path, kind, sep)
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _read_table_utf8(path: str, kind: str, sep: Optional[str]) -> list[dict[str, Any]]:
    if kind == "parquet":
        return pq.read_table(path).to_pylist()
    if kind == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}, line {n}: not valid JSON ({e}); fix the line") from None
        return rows
    delim = sep or ("\t" if path.endswith(".tsv") else ",")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delim))


class CaptionInput:
    """Captions to process, split into units; see the module docstring."""

    def __init__(self, spec: str, columns: CaptionColumns = CaptionColumns(), sep: Optional[str] = None,
                 keep_cols: Sequence[str] = ()) -> None:
        chunk_size = columns.chunk_size
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        self.spec, self.paths = spec, expand_paths(spec)
        self.kind = input_kind(self.paths)
        self.columns = columns
        self.key_col, self.caption_col, self.image_col = columns.key_col, columns.caption_col, columns.image_col
        self.keep_cols = tuple(keep_cols)
        self.skipped: dict[str, int] = {}
        self.image_root = os.path.dirname(os.path.abspath(self.paths[0]))
        if self.kind == "wds":
            self.units = [os.path.basename(p) for p in self.paths]
            self._rows: list[CaptionRow] = []
        else:
            self._rows = self._load_tables(sep)
            n = len(self._rows)
            self.units = [f"rows {a}-{min(a + chunk_size, n) - 1}" for a in range(0, n, chunk_size)]
            self._chunk = chunk_size

    def fingerprint(self) -> str:
        """Identifies the input content (:func:`~tripletclip.data.manifest.fingerprint_files`)."""
        return fingerprint_files(self.paths)["sha256"]

    def read(self, unit: int) -> list[CaptionRow]:
        if self.kind == "wds":
            return self._read_tar(self.paths[unit])
        return self._rows[unit * self._chunk : (unit + 1) * self._chunk]

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _load_tables(self, sep: Optional[str]) -> list[CaptionRow]:
        rows: list[CaptionRow] = []
        seen: dict[str, str] = {}
        for path in self.paths:
            table = _read_table(path, self.kind, sep)
            if not table:
                continue
            cols = list(table[0].keys())
            for c in (self.key_col, self.caption_col):
                if c not in table[0]:
                    raise DataError(f"{path}: no column '{c}' (columns: {', '.join(map(str, cols))}); "
                                    "set --key-col / --caption-col")
            img_col = self.image_col
            if img_col == "auto":
                img_col = next((c for c in _AUTO_IMAGE_COLUMNS if c in table[0]), "")
            elif img_col and img_col not in table[0]:
                raise DataError(f"{path}: no image column '{img_col}' (columns: {', '.join(map(str, cols))}); set --image-col")
            root = os.path.dirname(os.path.abspath(path))
            for n, r in enumerate(table):
                key, cap = r.get(self.key_col), r.get(self.caption_col)
                if key is None or str(key).strip() == "":
                    raise DataError(f"{path}, row {n}: empty key; every row needs a unique '{self.key_col}'")
                key = str(key).strip()
                if not isinstance(cap, str) or not cap.strip():
                    self._skip("empty_caption")
                    continue
                if key in seen:
                    raise DataError(f"{path}, row {n}: key '{key}' repeats (first in {seen[key]}); keys must be unique")
                seen[key] = path
                image = str(r.get(img_col) or "") if img_col else ""
                if image and not os.path.isabs(image) and "://" not in image:
                    image = os.path.join(root, image)
                extra = {c: r[c] for c in self.keep_cols if c in r}
                rows.append(CaptionRow(key, " ".join(cap.split()), image, extra))
        return rows

    def _read_tar(self, path: str) -> list[CaptionRow]:
        rows = []
        try:
            for key, members in scan_shard(path):
                cap = _tar_caption(path, key, members, self.caption_col)
                if cap is None:  # skipped and counted, never replaced by U+FFFD
                    self._skip("caption_not_utf8")
                    continue
                if not cap.strip():
                    self._skip("empty_caption")
                    continue
                ext = next((e for e in IMAGE_EXTS if e in members), None)
                image = f"{os.path.abspath(path)}#{key}.{ext}" if ext else ""
                rows.append(CaptionRow(key, " ".join(cap.split()), image))
        except (tarfile.TarError, OSError, BadSample, json.JSONDecodeError) as e:
            raise DataError(f"{path}: unreadable webdataset shard ({e}); re-download or remove it") from None
        return rows


def _tar_caption(path: str, key: str, members: dict[str, tuple[int, int]], caption_col: str) -> Optional[str]:
    """A webdataset sample's caption: its ``.txt`` (or ``.<caption_col>``) member, else its json's field;
    None when the caption is not UTF-8 text."""
    def read(ext: str) -> bytes:
        return Blob(path, *members[ext], label=f"{key}.{ext}").read()

    for ext in ("txt", caption_col):
        if ext in members:
            try:
                return read(ext).decode("utf-8")
            except UnicodeDecodeError:
                return None
    if "json" in members:
        meta = json.loads(read("json") or b"{}")
        if isinstance(meta, dict) and isinstance(meta.get(caption_col), str):
            return meta[caption_col]
    return ""


def write_parquet_atomic(columns: dict[str, list], path: Path, metadata: Optional[dict[str, str]] = None) -> None:
    """Write a parquet file under a temporary name and rename it: readers never see a partial file."""
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = temp_path(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_parquet_rows(spec: str, columns: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
    """All rows of a parquet file, folder of parts (``part-*.parquet`` in order) or table file of another format."""
    paths = expand_paths(spec)
    kind = input_kind(paths)
    rows: list[dict[str, Any]] = []
    for p in paths:
        if kind == "parquet":
            rows.extend(pq.read_table(p, columns=list(columns) if columns else None).to_pylist())
        elif kind in ("csv", "jsonl"):
            rows.extend(_read_table(p, kind, None))
        else:
            raise DataError(f"{p}: expected a table of negatives (parquet/csv/jsonl), got webdataset shards")
    return rows
