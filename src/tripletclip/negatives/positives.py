"""Finding the positive image of a key for the image stage.

Positive images come from the reference the text stage carried (a file path, or ``<tar>#<member>`` for
webdataset input), or from ``--positives``: webdataset shards (indexed by sample key from the tar headers,
with the data package's key convention, :func:`tripletclip.data.shard_reader.member_key`; no image is decoded)
or a folder of ``<key>.<ext>`` files. Bytes are passed through unchanged, so a JPEG stays the same JPEG in the
output shards.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tripletclip.data.decode import BadSample, Blob
from tripletclip.data.shard_reader import IMAGE_EXTS, member_key, tar_members
from tripletclip.negatives.io import expand_paths


class PositiveImages:
    """Resolve (key, reference) to encoded image bytes, or None when not found."""

    def __init__(self, positives: Optional[str] = None, image_root: Optional[str] = None) -> None:
        self.image_root = image_root
        self._members: dict[str, dict[str, tuple[int, int]]] = {}  # tar -> image member name -> (offset, size)
        self._by_key: dict[str, tuple[str, str]] = {}  # sample key -> (tar, member name)
        self._folder: Optional[str] = None
        if positives:
            if os.path.isdir(positives) and not any(p.endswith(".tar") for p in os.listdir(positives)):
                self._folder = positives
            else:
                for path in expand_paths(positives, "--positives"):
                    for name in self._index(path):
                        self._by_key.setdefault(member_key(name)[0], (path, name))

    def _index(self, path: str) -> dict[str, tuple[int, int]]:
        """The positive-image members of a tar (negative images ``<key>.neg.<m>.<ext>`` left out)."""
        if path not in self._members:
            self._members[path] = {name: (off, size) for name, off, size in tar_members(path)[0]
                                   if member_key(name)[1] in IMAGE_EXTS}
        return self._members[path]

    def _from_tar(self, path: str, member: str) -> Optional[bytes]:
        span = self._index(path).get(member)
        if span is None:
            return None
        try:
            return Blob(path, *span, label=member).read()
        except BadSample:
            return None  # a damaged member counts as a missing positive

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
