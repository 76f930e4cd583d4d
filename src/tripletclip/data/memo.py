"""In-memory caches of a loader's pure per-sample work, for runs that read a fixed training set several times.

A run that sees its training set ``epochs`` times (the demo: 6,400 triplets, 4 passes) decodes every image and
tokenises every caption once per pass. Both are pure functions: the decoded RGB image of the encoded bytes, and
the token row of a caption string. This module
keeps them, up to a memory bound (``data.cache_decoded_mb``), so that later passes skip the work.

What is cached is what comes *before* the random transform: the transform (random crop) still runs on every
read with the same per-sample seed (data/decode.py), so every batch is bitwise the batch the loader makes without
the cache, and exact resume is unchanged (the cache holds no state of the data order; a resumed loader starts
empty and fills again). Once the bound is reached nothing new is added (no eviction: under a shuffled order an
evicted entry is as likely to be needed next as any other, so filling once and keeping is as good and simpler).

Sources that read files sequentially (``wds``) also keep, within the same bound, the raw samples of every shard
they have read whole (a later pass over that shard reads memory instead of scanning the tar again) and, for the
samples of such a kept shard, the parsed :class:`~tripletclip.data.decode.Record` (or the reason it is bad, raised
again on every read, so the loader counts it in every pass as before). Both are pure functions of the shard's bytes; a shard changed on
disk during a run is read as it was at the run's first pass.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image

Tokenizer = Callable[[list[str]], torch.Tensor]

# a cache entry's bookkeeping beside its payload (dict slot, key tuple, PIL object): counted, so that many small
# images do not overrun the bound
_OVERHEAD = 400


class DecodeMemo:
    """Decoded images (keyed by their encoded bytes) and token rows (keyed by text) within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.used = 0
        self._images: dict[bytes, Image.Image] = {}
        self._tokens: dict[str, torch.Tensor] = {}
        self._passes: dict[Any, list[Any]] = {}  # a shard's raw samples in stored order, by shard
        self._records: dict[Any, Any] = {}  # a sample's Record, or (reason, hint) of its BadSample, by sample id
        self._counted: set[int] = set()  # ids of the encoded images counted by _images (a kept pass shares them)
        self.hits = 0
        self.misses = 0

    def _room(self, size: int) -> bool:
        if self.used + size + _OVERHEAD > self.max_bytes:
            return False
        self.used += size + _OVERHEAD
        return True

    def image(self, data: bytes, decode: Callable[[], Image.Image]) -> Image.Image:
        """The decoded image of the encoded bytes ``data`` (from the cache, else ``decode()``, kept while there is
        room). Keyed by the bytes themselves (a dict compares them on a hash match): a hit is exact for any source.
        Returns a copy, so that a transform that writes into its input cannot change what a later pass reads."""
        img = self._images.get(data)
        if img is not None:
            self.hits += 1
            return img.copy()
        self.misses += 1
        img = decode()
        if self._room(len(data) + img.width * img.height * len(img.getbands())):
            self._images[data] = img.copy()
            self._counted.add(id(data))
        return img

    def kept_pass(self, shard: Any) -> Optional[list[Any]]:
        """The raw samples of ``shard`` kept from a complete earlier pass (None: read it)."""
        return self._passes.get(shard)

    def keep_pass(self, shard: Any, samples: list[Any], members: Callable[[Any], Sequence[bytes]]) -> None:
        """Keep a complete pass's raw samples while there is room (``members``: a sample's byte strings; those
        the image cache already counts, the same objects, are not counted again)."""
        size = sum(len(b) for raw in samples for b in members(raw) if id(b) not in self._counted)
        if self._room(size + _OVERHEAD * len(samples)):
            self._passes[shard] = samples

    def record(self, sample: Any, parse: Callable[[], Any], bad: type) -> Any:
        """``parse()`` of the sample named ``sample`` (a hashable id), from the cache when parsed before. ``bad``:
        the caller's bad-sample exception (``reason``, ``hint``), raised again, as a new exception, on every read."""
        hit = self._records.get(sample)
        if hit is None:
            try:
                hit = parse()
            except bad as e:
                hit = (e.reason, e.hint)
            if self._room(_OVERHEAD):
                self._records[sample] = hit
        if isinstance(hit, tuple):
            raise bad(*hit)
        return hit

    def tokenize(self, texts: Sequence[str], tokenizer: Tokenizer) -> torch.Tensor:
        """``tokenizer(texts)`` with every text's row taken from the cache where known (the tokenizer runs once,
        on the unknown texts only, so its errors and shape checks stay the caller's)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._tokens))
        fresh = tokenizer(missing) if missing else None
        if fresh is not None:
            if not isinstance(fresh, torch.Tensor) or fresh.dim() != 2 or fresh.shape[0] != len(missing):
                return fresh  # malformed: the caller's check names it
            new = dict(zip(missing, fresh))
            for text, row in new.items():
                if self._room(row.numel() * row.element_size() + len(text)):
                    self._tokens[text] = row.clone()  # not a view: a view would keep the whole batch alive
        else:
            new = {}
        return torch.stack([self._tokens[t] if t in self._tokens else new[t] for t in texts]) if texts else \
            tokenizer([])
