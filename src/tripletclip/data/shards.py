"""Writing TripletData shards: atomically, byte-reproducibly, with their manifest (docs/methods.md section 6.1).

Layout of one sample: ``<key>.png|jpg`` image, ``<key>.txt`` first caption, ``<key>.json`` meta (all captions,
negative edit types, user meta), ``<key>.neg.txt`` negative captions one per line, ``<key>.neg.<m>.png|jpg``
negative image m, the rendering of negative caption m (TripletData, arXiv 2411.02545). Reading them back is
:mod:`tripletclip.data.shard_reader`'s.

Shards are byte-reproducible (member mtime, uid and names fixed), so the same samples give the same sha256.
Members are written by :class:`_TarOut`, which builds the ustar header bytes directly (byte-identical to
:mod:`tarfile` in PAX format, which it still writes the headers of long or non-ASCII names with).
A shard is written under a temporary name and renamed when complete: a reader never sees a partial
``train-000000.tar``. ``manifest.json`` (:mod:`tripletclip.data.manifest`) lists each shard's sample count and
sha256, totals, counts per edit type and the dataset hash, which runs record as their data hash.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from tripletclip.data.manifest import MANIFEST, build_manifest
from tripletclip.edit_types import EDIT_TYPES
from tripletclip.errors import ConflictError
from tripletclip.utils.files import sha256_file, write_json_atomic

# keys of a sample's json that the format owns; everything else is user meta
RESERVED_META = ("key", "captions", "neg_types")
_BAD_KEY_CHARS = re.compile(r"[./\\\s]")
# NOTE: one encoder for all samples: json.dumps with options builds a new JSONEncoder per call (same output)
_META_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)

# A ustar header block (POSIX.1-1988) of a regular file with mode 0644, uid/gid 0, mtime 0 and no user/group names:
# the name (100 bytes), then these fields, then the size (12 bytes), then _USTAR_TAIL; the checksum field (bytes
# 148-155) holds 8 spaces while the checksum is summed, as tarfile's _create_header does.
_TAR_BLOCK = tarfile.BLOCKSIZE
_TAR_RECORD = tarfile.RECORDSIZE
_USTAR_MODE = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid
_USTAR_TAIL = (b"00000000000\0" + b" " * 8 + tarfile.REGTYPE + bytes(100) + tarfile.POSIX_MAGIC
               + bytes(32 + 32 + 8 + 8 + 155 + 12))  # mtime, checksum, type, linkname, magic, names, dev, prefix
_USTAR_FIXED_SUM = sum(_USTAR_MODE) + sum(_USTAR_TAIL)  # the header's byte sum without name and size digits
_USTAR_MTIME, _USTAR_AFTER_CHKSUM = _USTAR_TAIL[:12], _USTAR_TAIL[20:]  # around the checksum field
_USTAR_MAX_SIZE = 8**11  # the 11 octal digits of the size field; larger sizes need a pax record


def tar_member_header(name: str, size: int) -> bytes:
    """The header bytes of a regular file member, exactly as ``tarfile`` writes them in PAX format.

    Short ASCII names (<= 100 characters, the ustar name field) and sizes < 8 GiB take one ustar block built here
    (tarfile took 58 us a member under cProfile, 80% of writing a world's shards); anything else (a pax
    extended header before the block) is built by :meth:`tarfile.TarInfo.tobuf`.
    """
    if name.isascii() and len(name) <= 100 and 0 <= size < _USTAR_MAX_SIZE:
        name_b, size_b = name.encode("ascii"), b"%011o" % size
        # unsigned byte sum with the checksum field as spaces; stored as 6 octal digits, NUL, space
        chksum = _USTAR_FIXED_SUM + sum(name_b) + sum(size_b)
        return b"".join((name_b, bytes(100 - len(name_b)), _USTAR_MODE, size_b, b"\0",
                         _USTAR_MTIME, b"%06o\0 " % chksum, _USTAR_AFTER_CHKSUM))
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


class _TarOut:
    """An append-only tar file, byte-identical to ``tarfile.open(path, "w", format=tarfile.PAX_FORMAT)`` with
    ``addfile`` of members with mtime 0 and mode 0644, then ``close``: header, payload zero-padded to 512 bytes,
    and at the end two zero blocks padded to a whole 10240-byte record."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb")
        self._offset = 0

    def add(self, members: Sequence[tuple[str, bytes]]) -> None:
        """Append (name, payload) members (one write for all of them)."""
        parts: list[bytes] = []
        for name, payload in members:
            head = tar_member_header(name, len(payload))
            pad = -len(payload) % _TAR_BLOCK
            parts += (head, payload, bytes(pad)) if pad else (head, payload)
            self._offset += len(head) + len(payload) + pad
        self._f.write(b"".join(parts))

    def close(self) -> None:
        """Write the end-of-archive blocks and close the file."""
        try:
            end = 2 * _TAR_BLOCK
            end += -(self._offset + end) % _TAR_RECORD
            self._f.write(bytes(end))
        finally:
            self._f.close()

    def discard(self) -> None:
        """Close the file without finishing the archive (an aborted shard)."""
        self._f.close()


def detect_image_ext(data: bytes) -> str:
    """File extension of encoded image bytes from their magic number."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    raise ValueError("unknown image format (expected PNG, JPEG, WebP, GIF or BMP bytes)")


def encode_image(image: Image.Image | bytes, image_format: str) -> tuple[bytes, str]:
    """(bytes, extension): PIL images are encoded (PNG lossless by default), bytes pass through unchanged."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return data, detect_image_ext(data)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or encoded bytes, got {type(image).__name__}")
    buf = io.BytesIO()
    if image_format == "png":
        image.save(buf, format="PNG", compress_level=1)  # fast; size barely differs on small images
    else:
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        rgb.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), image_format


def safe_key(key: str) -> str:
    """A key the writer accepts (no '.', '/', '\\' or whitespace): those characters become '_'.

    Reader keys of members in sub-folders (``dir/k``) or with odd characters map here; callers keep the original
    in the sample's meta when it differs.
    """
    return _BAD_KEY_CHARS.sub("_", key)


class ShardWriter:
    """Write samples into ``out_dir/<prefix>-000000.tar`` ... plus ``manifest.json`` (context manager).

    On an exception inside the ``with`` block the incomplete shard is deleted and no manifest is written
    (completed shards stay; rerun with ``overwrite=True``).
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "train",
        shard_size: int = 1000,
        image_format: str = "png",
        overwrite: bool = False,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
            raise ValueError(f"prefix {prefix!r}: use letters, digits, '_' or '-'")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.shard_size = shard_size
        self.image_format = image_format
        self.out_dir.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.out_dir.glob(f"{prefix}-*.tar")) + [
            p for p in [self.out_dir / MANIFEST] if p.exists()
        ]
        if existing and not overwrite:
            raise ConflictError(f"{self.out_dir}: already holds {existing[0].name}; pass overwrite=True or use a new folder")
        for p in existing:
            p.unlink()
        self._shards: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._tar: _TarOut | None = None
        self._tmp: Path | None = None
        self._cur: dict[str, Any] = {}
        self._closed = False
        self.manifest: dict[str, Any] | None = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST

    def write(
        self,
        key: str,
        image: Image.Image | bytes,
        caption: str | list[str],
        neg_captions: Sequence[str] = (),
        neg_types: Sequence[str] = (),
        neg_images: Sequence[Image.Image | bytes] = (),
        meta: dict | None = None,
    ) -> None:
        """Add one sample; negative image m is the rendering of negative caption m."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        captions = [caption] if isinstance(caption, str) else list(caption)
        neg_captions, neg_types = list(neg_captions), list(neg_types)
        self._check(key, captions, neg_captions, neg_types, meta)
        if not neg_types:
            neg_types = ["unknown"] * len(neg_captions)
        members: list[tuple[str, bytes]] = []
        data, ext = encode_image(image, self.image_format)
        members.append((f"{key}.{ext}", data))
        members.append((f"{key}.txt", captions[0].encode("utf-8")))
        info = {"key": key, "captions": captions, "neg_types": neg_types, **(meta or {})}
        members.append((f"{key}.json", _META_JSON.encode(info).encode("utf-8")))
        if neg_captions:
            members.append((f"{key}.neg.txt", "\n".join(neg_captions).encode("utf-8")))
        for m, neg in enumerate(neg_images):
            data, ext = encode_image(neg, self.image_format)
            members.append((f"{key}.neg.{m}.{ext}", data))
        if self._tar is None:
            self._open_shard()
        assert self._tar is not None
        self._tar.add(members)
        cur = self._cur
        cur["samples"] += 1
        cur["neg_captions"] += len(neg_captions)
        cur["neg_images"] += len(neg_images)
        for t in neg_types:
            cur["edit_types"][t] = cur["edit_types"].get(t, 0) + 1
        self._keys.add(key)
        if cur["samples"] >= self.shard_size:
            self._finish_shard()

    def close(self) -> dict[str, Any]:
        """Finish the last shard and write the manifest (atomically); returns the manifest."""
        if self._closed:
            assert self.manifest is not None
            return self.manifest
        if self._tar is not None:
            self._finish_shard()
        self.manifest = build_manifest(self._shards, self.prefix)
        write_json_atomic(self.manifest_path, self.manifest)
        self._closed = True
        return self.manifest

    # internals -------------------------------------------------------------------------------------------
    def _check(self, key: str, captions: list[str], negs: list[str], types: list[str], meta: dict | None) -> None:
        if not key or _BAD_KEY_CHARS.search(key):
            raise ValueError(f"sample key {key!r}: must be non-empty without '.', '/', '\\' or whitespace "
                             "(tripletclip.data.shards.safe_key makes one)")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} written twice; keys must be unique")
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ValueError(f"sample {key!r}: every caption must be a non-empty string")
        for c in negs:
            if not isinstance(c, str) or not c.strip() or "\n" in c or "\r" in c:
                raise ValueError(f"sample {key!r}: negative caption {c!r} must be a non-empty single-line string")
        if types and len(types) != len(negs):
            raise ValueError(f"sample {key!r}: {len(types)} neg_types for {len(negs)} neg_captions")
        bad = [t for t in types if t not in EDIT_TYPES]
        if bad:
            raise ValueError(f"sample {key!r}: unknown edit type {bad[0]!r}; use one of {', '.join(EDIT_TYPES)}")
        clash = [k for k in (meta or {}) if k in RESERVED_META]
        if clash:
            raise ValueError(f"sample {key!r}: meta key {clash[0]!r} is reserved; rename it")

    def _open_shard(self) -> None:
        name = f"{self.prefix}-{len(self._shards):06d}.tar"
        self._tmp = self.out_dir / f".{name}.tmp-{os.getpid()}"
        self._tar = _TarOut(self._tmp)
        self._cur = {"name": name, "samples": 0, "neg_captions": 0, "neg_images": 0, "edit_types": {}}

    def _finish_shard(self) -> None:
        assert self._tar is not None and self._tmp is not None
        self._tar.close()
        final = self.out_dir / self._cur["name"]
        self._cur["bytes"] = self._tmp.stat().st_size
        self._cur["sha256"] = sha256_file(self._tmp)
        os.replace(self._tmp, final)
        self._shards.append(self._cur)
        self._tar, self._tmp, self._cur = None, None, {}

    def _abort(self) -> None:
        if self._tar is not None:
            self._tar.discard()
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()
        self._tar, self._tmp = None, None
        self._closed = True
