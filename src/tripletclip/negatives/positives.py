"""Finding the positive image of a key, and reading TripletData shards back (for filtering and analysis).

Positive images come from the reference the text stage carried (a file path, or ``<tar>#<member>`` for
webdataset input), or from ``--positives``: webdataset shards (indexed by key from the tar headers, no image
is decoded) or a folder of ``<key>.<ext>`` files. Bytes are passed through unchanged, so a JPEG stays the
same JPEG in the output shards.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from PIL import Image

from tripletclip.negatives.io import IMAGE_EXTS, expand_paths


class PositiveImages:
    """Resolve (key, reference) to encoded image bytes, or None when not found."""

    def __init__(self, positives: Optional[str] = None, image_root: Optional[str] = None) -> None:
        self.image_root = image_root
        self._tars: dict[str, tarfile.TarFile] = {}
        self._members: dict[str, dict[str, tarfile.TarInfo]] = {}
        self._by_key: dict[str, tuple[str, str]] = {}
        self._folder: Optional[str] = None
        if positives:
            if os.path.isdir(positives) and not any(p.endswith(".tar") for p in os.listdir(positives)):
                self._folder = positives
            else:
                for path in expand_paths(positives):
                    for name in self._index(path):
                        stem = os.path.basename(name).partition(".")[0]
                        key = (os.path.dirname(name).replace("/", "_") + "_" + stem) if os.path.dirname(name) else stem
                        self._by_key.setdefault(key, (path, name))

    def _index(self, path: str) -> dict[str, tarfile.TarInfo]:
        if path not in self._members:
            tar = tarfile.open(path)
            self._tars[path] = tar
            self._members[path] = {m.name: m for m in tar.getmembers()
                                   if m.isfile() and m.name.rpartition(".")[2].lower() in IMAGE_EXTS
                                   and ".neg." not in os.path.basename(m.name)}
        return self._members[path]

    def _from_tar(self, path: str, member: str) -> Optional[bytes]:
        info = self._index(path).get(member)
        if info is None:
            return None
        f = self._tars[path].extractfile(info)
        return f.read() if f else None

    def get(self, key: str, ref: str = "") -> Optional[bytes]:
        if ref:
            if "#" in ref and ref.split("#", 1)[0].endswith(".tar"):
                path, member = ref.split("#", 1)
                return self._from_tar(path, member) if os.path.isfile(path) else None
            path = ref if os.path.isabs(ref) or not self.image_root else os.path.join(self.image_root, ref)
            if os.path.isfile(path):
                return Path(path).read_bytes()
        if key in self._by_key:
            return self._from_tar(*self._by_key[key])
        if self._folder:
            for ext in IMAGE_EXTS:
                p = os.path.join(self._folder, f"{key}.{ext}")
                if os.path.isfile(p):
                    return Path(p).read_bytes()
        return None

    def close(self) -> None:
        for t in self._tars.values():
            t.close()


@dataclass
class TripletSample:
    """One sample of a TripletData shard, raw (images stay encoded)."""

    key: str
    image: bytes = b""
    captions: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    neg_captions: list[str] = field(default_factory=list)
    neg_images: dict[int, bytes] = field(default_factory=dict)

    @property
    def neg_types(self) -> list[str]:
        return list(self.meta.get("neg_types", ["unknown"] * len(self.neg_captions)))

    def extra_meta(self) -> dict:
        return {k: v for k, v in self.meta.items() if k not in ("key", "captions", "neg_types")}


def iter_shard(path: str | Path) -> Iterator[TripletSample]:
    """Samples of one TripletData tar in stored order (layout: tripletclip.data.shards)."""
    cur: Optional[TripletSample] = None
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, _, rest = m.name.partition(".")
            if cur is None or key != cur.key:
                if cur is not None:
                    yield cur
                cur = TripletSample(key)
            data = tar.extractfile(m).read()
            if rest == "txt":
                cur.captions = cur.captions or [data.decode("utf-8")]
            elif rest == "json":
                cur.meta = json.loads(data)
                cur.captions = list(cur.meta.get("captions", cur.captions))
            elif rest == "neg.txt":
                cur.neg_captions = data.decode("utf-8").split("\n") if data else []
            elif rest.startswith("neg.") and rest.count(".") == 2:
                cur.neg_images[int(rest.split(".")[1])] = data
            elif rest.lower() in IMAGE_EXTS:
                cur.image = data
    if cur is not None:
        yield cur


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")
