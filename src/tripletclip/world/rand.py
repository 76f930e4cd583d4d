"""A fast seeded random source for the world generator.

The world draws a few dozen small random numbers per triplet; each call into ``numpy.random.Generator`` costs
microseconds of overhead, which dominated generation time. :class:`Rand` draws uniforms from a numpy Generator
in blocks and serves them from a Python list, so a draw costs a fraction of a microsecond. Streams are fully
determined by the seed (and by the order of draws, which the generator code keeps fixed).
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")
_BLOCK = 4096


class Rand:
    """Blocked uniform stream with the few draws the world needs."""

    __slots__ = ("_gen", "_buf", "_i")

    def __init__(self, seed: int | Sequence[int] | np.random.SeedSequence) -> None:
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._gen = np.random.default_rng(ss)
        self._buf: list[float] = []
        self._i = 0

    def random(self) -> float:
        """One uniform in [0, 1)."""
        if self._i >= len(self._buf):
            self._buf = self._gen.random(_BLOCK).tolist()
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return v

    def uniforms(self, k: int) -> list[float]:
        """``k`` uniforms in [0, 1)."""
        if self._i + k > len(self._buf):
            self._buf = self._buf[self._i:] + self._gen.random(max(_BLOCK, k)).tolist()
            self._i = 0
        out = self._buf[self._i:self._i + k]
        self._i += k
        return out

    def peek(self, k: int) -> list[float]:
        """The next ``k`` uniforms without consuming them (``skip`` consumes; the stream is unchanged)."""
        if self._i + k > len(self._buf):
            self._buf = self._buf[self._i:] + self._gen.random(max(_BLOCK, k)).tolist()
            self._i = 0
        return self._buf[self._i:self._i + k]

    def skip(self, k: int) -> None:
        """Consume ``k`` uniforms unread (as ``uniforms(k)`` would)."""
        if self._i + k > len(self._buf):
            self.peek(k)
        self._i += k

    def randint(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        # NOTE: random() inlined (the world draws ~25 integers per triplet; same values, one call less each)
        if self._i >= len(self._buf):
            self._buf = self._gen.random(_BLOCK).tolist()
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return min(int(v * n), n - 1)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.randint(len(seq))]

    def permutation(self, n: int) -> list[int]:
        """A uniform random permutation of range(n) (Fisher-Yates)."""
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.randint(i + 1)
            p[i], p[j] = p[j], p[i]
        return p

    def spawn(self, key: int) -> "Rand":
        """An independent stream derived from this one's next draws and ``key``."""
        return Rand([self.randint(2**31), self.randint(2**31), key])
