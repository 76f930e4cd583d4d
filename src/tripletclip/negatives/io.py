"""Reading caption inputs (CSV/TSV, parquet, JSONL, webdataset) and writing parquet parts atomically.

An input is split into *units* of work: row ranges for tables, one tar file for webdataset shards, so that a
rank of a sharded job reads only its own tars. Each row carries the image key, the caption and, when the
input has one, a reference to the positive image (a path, or ``<tar>#<member>`` for webdataset), which the
image stage uses to pair the positive image with the rendered negative.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from tripletclip.data.contract import DataError
from tripletclip.data.tables import not_utf8
from tripletclip.errors import InputError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
_AUTO_IMAGE_COLUMNS = ("image", "filepath", "file_path", "filename", "file_name", "image_path", "url_local")


@dataclass
class CaptionRow:
    key: str
    caption: str
    image: str = ""  # path or "<tar>#<member>", "" if the input has no image reference
    extra: dict[str, Any] = field(default_factory=dict)


def expand_paths(spec: str) -> list[str]:
    """Files of an input spec: a file, a folder (its tars or parquet/csv/jsonl files), a glob, or a brace range."""
    paths: list[str] = []
    for part in spec.split("::"):
        m = re.search(r"\{(\d+)\.\.(\d+)\}", part)
        if m:
            a, b = m.group(1), m.group(2)
            for i in range(int(a), int(b) + 1):
                paths.append(part[: m.start()] + str(i).zfill(len(a)) + part[m.end():])
        elif os.path.isdir(part):
            for ext in ("tar", "parquet", "jsonl", "csv", "tsv"):
                found = sorted(glob.glob(os.path.join(part, f"*.{ext}")))
                if found:
                    paths.extend(found)
                    break
        elif any(c in part for c in "*?["):
            paths.extend(sorted(glob.glob(part)))
        else:
            paths.append(part)
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise DataError(f"{missing[0] if missing else spec}: no such input file; give a CSV/TSV, parquet, JSONL file, "
                        "a folder, or webdataset shards (a.tar, 'dir/{000..009}.tar', 'dir/*.tar')")
    return paths


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

    def __init__(self, spec: str, key_col: str = "key", caption_col: str = "caption", image_col: str = "auto",
                 chunk_size: int = 10000, sep: Optional[str] = None, keep_cols: Sequence[str] = ()) -> None:
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        self.spec, self.paths = spec, expand_paths(spec)
        self.kind = input_kind(self.paths)
        self.key_col, self.caption_col, self.image_col = key_col, caption_col, image_col
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
        """Identifies the input content (tables: file bytes; webdataset: names and sizes, hashing TBs is too slow)."""
        h = hashlib.sha256()
        for p in self.paths:
            h.update(os.path.basename(p).encode())
            if self.kind == "wds":
                h.update(str(os.path.getsize(p)).encode())
            else:
                with open(p, "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
        return h.hexdigest()

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
        groups: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        try:
            with tarfile.open(path) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    base = os.path.basename(m.name)
                    stem, _, ext = base.partition(".")
                    key = os.path.join(os.path.dirname(m.name), stem) if os.path.dirname(m.name) else stem
                    if key not in groups:
                        groups[key] = {}
                        order.append(key)
                    ext = ext.lower()
                    if ext in ("txt", self.caption_col):
                        try:
                            groups[key]["caption"] = tar.extractfile(m).read().decode("utf-8")
                        except UnicodeDecodeError:  # skipped and counted below, never replaced by U+FFFD
                            groups[key]["not_utf8"] = True
                    elif ext == "json" and "caption" not in groups[key]:
                        meta = json.loads(tar.extractfile(m).read() or b"{}")
                        if isinstance(meta, dict) and isinstance(meta.get(self.caption_col), str):
                            groups[key]["caption"] = meta[self.caption_col]
                    elif ext in IMAGE_EXTS:
                        groups[key]["image"] = f"{os.path.abspath(path)}#{m.name}"
        except (tarfile.TarError, OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: unreadable webdataset shard ({e}); re-download or remove it") from None
        rows = []
        for key in order:
            g = groups[key]
            cap = g.get("caption", "")
            if g.get("not_utf8"):
                self._skip("caption_not_utf8")
                continue
            if not cap.strip():
                self._skip("empty_caption")
                continue
            rows.append(CaptionRow(key.replace("/", "_"), " ".join(cap.split()), g.get("image", "")))
        return rows


def write_parquet_atomic(columns: dict[str, list], path: Path, metadata: Optional[dict[str, str]] = None) -> None:
    """Write a parquet file under a temporary name and rename it: readers never see a partial file."""
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
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
