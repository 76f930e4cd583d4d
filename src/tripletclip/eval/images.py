"""Finding benchmark images on disk, and failing loudly (or skipping, counted) when some are missing.

Annotation files name images relative to the layout their authors had (``val2014/COCO_val2014_<id>.jpg`` in the
Karpathy / ARO files, bare ``<id>.jpg`` in SugarCrepe, ``<name>`` without extension in Winoground). A name is
looked up, in order, as ``root/name``, then by file name in ``root`` and its immediate sub-folders (so a root
holding ``val2017/`` and ``train2017/`` works for every COCO file), then, for COCO-2014 names, as the 2017 file
of the same image id (COCO 2017 re-split the same images under ``<12-digit id>.jpg``). Each extra extension
(Winoground's ``.png``) is tried after the bare name. The result records how many names needed a fallback.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Hashable, Iterable, Optional, Sequence, TypeVar

from tripletclip.errors import NotFoundError

_COCO2014 = re.compile(r"COCO_(?:train|val|test)2014_(\d{12})\.jpg$")
T = TypeVar("T")


class MissingImagesError(NotFoundError):
    """Some images named by an annotation file are not on disk."""


class ImageResolver:
    """Map annotation image names to files under one or more roots (first match wins)."""

    def __init__(self, roots: Path | str | Sequence[Path | str], extensions: Sequence[str] = ("",)) -> None:
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        self.roots = [Path(r) for r in roots]
        for r in self.roots:
            if not r.is_dir():
                raise NotFoundError(f"image root {r} is not a folder; pass --images DIR with the benchmark's images")
        self.extensions = tuple(extensions)
        self._index: Optional[dict[str, Path]] = None
        self.fallbacks = {"by_file_name": 0, "coco2017_id": 0}

    def _by_name(self) -> dict[str, Path]:
        # one listing of each root and its immediate sub-folders instead of a stat per candidate
        if self._index is None:
            index: dict[str, Path] = {}
            for root in self.roots:
                dirs = [root] + sorted(Path(e.path) for e in os.scandir(root) if e.is_dir())
                for d in dirs:
                    for e in sorted(os.scandir(d), key=lambda e: e.name):
                        if e.is_file():
                            index.setdefault(e.name, Path(e.path))
            self._index = index
        return self._index

    def resolve(self, names: str | Sequence[str]) -> Optional[Path]:
        """The file for the first of ``names`` found, or None."""
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            for ext in self.extensions:
                for root in self.roots:
                    p = root / f"{name}{ext}"
                    if p.is_file():
                        return p
        for name in names:
            for ext in self.extensions:
                hit = self._by_name().get(Path(f"{name}{ext}").name)
                if hit is not None:
                    self.fallbacks["by_file_name"] += 1
                    return hit
        for name in names:
            m = _COCO2014.search(name)
            if m:
                hit = self._by_name().get(f"{m.group(1)}.jpg")
                if hit is not None:
                    self.fallbacks["coco2017_id"] += 1
                    return hit
        return None

    def describe(self) -> dict:
        return {"roots": [str(r) for r in self.roots], "fallbacks": dict(self.fallbacks)}


def resolve_images(
    resolver: ImageResolver,
    names: dict[Hashable, str | Sequence[str]],
    skip_missing: bool,
    what: str,
) -> tuple[dict[Hashable, Path], list[str]]:
    """Resolve each distinct image name; returns (name key -> path, missing names).

    Raises :class:`MissingImagesError` naming the first few missing images unless ``skip_missing``.
    """
    found: dict[Hashable, Path] = {}
    missing: list[str] = []
    for key, cand in names.items():
        p = resolver.resolve(cand)
        if p is None:
            missing.append(cand if isinstance(cand, str) else cand[0])
        else:
            found[key] = p
    if missing and not skip_missing:
        shown = ", ".join(missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingImagesError(
            f"{what}: {len(missing)} of {len(names)} images not found under "
            f"{', '.join(map(str, resolver.roots))}: {shown}{more}; point --images at the image folder, "
            f"or pass --skip-missing to drop their rows (the count is recorded)"
        )
    return found, missing


def unique(items: Iterable[T]) -> list[T]:
    """Items in first-seen order without repeats."""
    return list(dict.fromkeys(items))


def make_resolver(images: Any, extensions: Sequence[str] = ("",)) -> Optional[ImageResolver]:
    """An image resolver over one folder or a list of folders; None when no folder is given."""
    if images is None or images == "" or images == []:
        return None
    roots = [images] if isinstance(images, (str, Path)) else list(images)
    return ImageResolver(roots, extensions)
