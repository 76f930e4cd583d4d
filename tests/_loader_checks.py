"""Shared checks of loader tests: draw batches, and compare two batch lists bitwise."""
from __future__ import annotations

import torch

from tripletclip.data.contract import BATCH_KEYS


def take(loader, n: int) -> list[dict]:
    """The first ``n`` batches of ``loader``, then close it (its workers stop)."""
    out = [next(loader) for _ in range(n)]
    loader.close()
    return out


def same(a: list[dict], b: list[dict]) -> None:
    """Every batch of ``a`` equals that of ``b``: keys and every batch tensor, bitwise."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["key"] == y["key"]
        for k in BATCH_KEYS:
            assert torch.equal(x[k], y[k]), k
