"""Reading benchmark annotation tables as their authors publish them: JSON, JSON lines, CSV or Hugging Face parquet.

Several benchmarks (VisMin, BiVLC, ColorSwap, MMVP-VLM, SPEC) are published on the Hugging Face hub, whose
``datasets`` export is parquet with images embedded as ``{"bytes": ..., "path": ...}`` structs; others as JSON or
CSV with image paths. :func:`read_table` returns a list of row dicts for any of these, and :func:`image_sources`
turns every image cell into something :class:`~tripletclip.eval.encoder.Encoder` encodes (embedded bytes as is,
paths resolved under ``--images``), failing or skipping, counted, on missing files.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Hashable, Optional, Sequence

from tripletclip.eval.images import ImageResolver, resolve_images
from tripletclip.eval.records import AnnotationError, file_record

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def table_files(annotations: str | Path, pattern: str = "*") -> list[Path]:
    """One annotation file, or every supported file of a folder (recursively, sorted) matching ``pattern``."""
    p = Path(annotations)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise AnnotationError(f"{p}: no such file or folder; check --annotations")
    files = sorted(f for f in p.rglob(pattern) if f.suffix in SUFFIXES and f.is_file())
    if not files:
        raise AnnotationError(f"{p}: no {', '.join(SUFFIXES)} file found; pass --annotations with the benchmark's file")
    return files


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of one JSON (a list, or an object holding one list), JSON-lines, CSV or parquet file."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, ValueError) as e:
        raise AnnotationError(f"{path}: cannot be read as {path.suffix[1:]} ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise AnnotationError(f"{path}: expected a JSON list of rows (or an object holding one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of rows")
    return data


def load_table(annotations: str | Path, fields: Sequence[str], fmt: str, pattern: str = "*") -> tuple[list[tuple[Path, int, dict]], list[dict]]:
    """([(file, row index, row)], file records) of every file, each row checked for ``fields``."""
    rows, records = [], []
    for f in table_files(annotations, pattern):
        data = read_table(f)
        for i, r in enumerate(data):
            if not isinstance(r, dict):
                raise AnnotationError(f"{f}: row {i} is {type(r).__name__}, expected an object ({fmt} format)")
            absent = [k for k in fields if k not in r]
            if absent:
                raise AnnotationError(f"{f}: row {i} has no field(s) {', '.join(absent)} ({fmt} format: {', '.join(fields)})")
            rows.append((f, i, r))
        records.append(file_record(f, len(data)))
    return rows, records


def image_key(cell: Any) -> Hashable:
    """A hashable key of an image cell: its path, or its embedded bytes."""
    if isinstance(cell, dict):
        return cell.get("bytes") or cell.get("path")
    return str(cell)


def image_sources(cells: Sequence[Any], resolver: Optional[ImageResolver], skip_missing: bool, what: str
                  ) -> tuple[dict[Hashable, Any], list[str], dict[str, Any]]:
    """(key -> encodable source, missing names, image record): embedded bytes as they are, paths resolved."""
    out: dict[Hashable, Any] = {}
    names: dict[Hashable, str] = {}
    for c in cells:
        key = image_key(c)
        if isinstance(c, dict) and c.get("bytes"):
            out[key] = bytes(c["bytes"])
        elif key is not None:
            names[key] = str(key)
    missing: list[str] = []
    if names:
        if resolver is None:
            raise AnnotationError(f"{what}: the annotations name image files; pass --images DIR with them")
        found, missing = resolve_images(resolver, names, skip_missing, what)
        out.update(found)
    info = {"distinct": len(out), "embedded": len(out) - (len(names) - len(missing)), "missing": len(missing),
            "missing_examples": missing[:5], **(resolver.describe() if resolver is not None else {})}
    return out, missing, info
