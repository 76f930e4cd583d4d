"""What identifies a dataset: shard manifests and content fingerprints of any data file list.

``manifest.json`` (written by :class:`~tripletclip.data.shards.ShardWriter`, docs/methods.md section 6.2) lists each
shard's sample count, size and sha256 and the dataset hash, sha256 over the ordered shard hashes. Runs record
:func:`fingerprint_files` of the files they read: the manifests' hashes when they cover every file (nothing
is re-read), the content when the files are small, else names and sizes (CC3M is hundreds of GB); the
method is recorded next to the hash.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from tripletclip.data.contract import DataError
from tripletclip.edit_types import EDIT_TYPES
from tripletclip.utils.files import sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tripletclip-shards/1"
# content-hash data up to this size; beyond it names and sizes are hashed (and the method says so)
CONTENT_HASH_LIMIT = 2 << 30


def combine_hashes(hashes: Iterable[str]) -> str:
    """The dataset hash: sha256 over the ordered shard hashes (one per line)."""
    return hashlib.sha256("".join(f"{h}\n" for h in hashes).encode("ascii")).hexdigest()


def build_manifest(shards: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The manifest of a shard list (entries: name, samples, neg_captions, neg_images, edit_types, bytes, sha256)."""
    totals = {k: sum(s[k] for s in shards) for k in ("samples", "neg_captions", "neg_images")}
    edit_types = {t: sum(s["edit_types"].get(t, 0) for s in shards) for t in EDIT_TYPES}
    return {
        "format": MANIFEST_FORMAT,
        "prefix": prefix,
        "shards": shards,
        "num_shards": len(shards),
        "total_samples": totals["samples"],
        "total_neg_captions": totals["neg_captions"],
        "total_neg_images": totals["neg_images"],
        "edit_types": {t: c for t, c in edit_types.items() if c},
        "dataset_hash": combine_hashes(s["sha256"] for s in shards),
    }


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder; DataError if missing or malformed."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest; write shards with tripletclip.data.shards.ShardWriter")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); rewrite the shards") from None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("shards"), list):
        raise DataError(f"{path}: not a {MANIFEST_FORMAT} manifest; rewrite the shards with ShardWriter")
    return manifest


def manifest_entries(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Shard name -> manifest entry of a folder ({} when it has no valid manifest)."""
    try:
        return {s["name"]: s for s in read_manifest(directory)["shards"]}
    except DataError:
        return {}


def dataset_hash(paths: Sequence[str | Path], verify: bool = False) -> str:
    """Content hash of an ordered shard (or table) list.

    Uses the sha256 recorded in a folder's manifest when the file is listed there with the same size, and
    streams the file content otherwise (or always, with ``verify=True``). For the full shard list of a
    manifest this equals the manifest's ``dataset_hash``.
    """
    entries: dict[Path, dict[str, dict[str, Any]]] = {}
    hashes = []
    for p in map(Path, paths):
        if p.parent not in entries:
            entries[p.parent] = manifest_entries(p.parent)
        entry = entries[p.parent].get(p.name)
        if entry is not None and not verify and entry.get("bytes") == p.stat().st_size:
            hashes.append(entry["sha256"])
        else:
            hashes.append(sha256_file(p))
    return combine_hashes(hashes)


def fingerprint_files(files: Iterable[str | Path]) -> dict[str, Any]:
    """``{"method", "sha256", "files"[, "bytes"]}`` of data files; see the module docstring for the methods."""
    paths = [Path(f) for f in files]
    listed = {parent: manifest_entries(parent) for parent in {p.parent for p in paths}}
    if paths and all(p.name in listed[p.parent] for p in paths):
        return {"method": "manifest-sha256", "sha256": dataset_hash(paths), "files": len(paths)}
    total = sum(p.stat().st_size for p in paths)
    h = hashlib.sha256()
    if total <= CONTENT_HASH_LIMIT:
        for p in paths:
            h.update(f"{p.name}:{sha256_file(p)}\n".encode())
        return {"method": "content-sha256", "sha256": h.hexdigest(), "files": len(paths), "bytes": total}
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return {"method": "names-and-sizes", "sha256": h.hexdigest(), "files": len(paths), "bytes": total}
