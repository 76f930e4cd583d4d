"""Helpers of the tests that run evaluators on the real annotation files of ../shared/benchmarks.

The benchmarks' images (Visual Genome, SWiG, HAKE, COCO, VOC) are not on this machine: each test writes a
stand-in image under the exact name the annotations reference, with content that differs per name, and scores
it with the tiny real open_clip model (``test-vit-tiny``), so similarities are real model outputs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import pytest
import torch
from PIL import Image, ImageDraw

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def need(*paths: Path) -> None:
    """Skip the test, naming the first missing path, when ../shared/benchmarks lacks a file it reads."""
    for p in paths:
        if not p.exists():
            pytest.skip(f"needs the shared benchmarks file {p} (not found)")


def standin(path: Path, size: tuple[int, int] = (48, 40)) -> Path:
    """A deterministic picture whose colours and shapes depend on ``path.name``, saved at ``path``."""
    h = hashlib.sha256(path.name.encode()).digest()
    img = Image.new("RGB", size, (h[0], h[1], h[2]))
    draw = ImageDraw.Draw(img)
    w, ht = size
    for i in range(4):
        x0, y0 = h[3 + 4 * i] * w // 256, h[4 + 4 * i] * ht // 256
        draw.rectangle([x0, y0, x0 + w // 3, y0 + ht // 3], fill=(h[5 + 4 * i], h[6 + 4 * i], h[i]))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def standins(root: Path, names: Iterable[str], size: tuple[int, int] = (48, 40)) -> Path:
    for n in set(names):
        standin(root / n, size)
    return root


def tiny_encoder(weights: Path):
    from tripletclip.eval import load_encoder

    torch.set_num_threads(1)
    return load_encoder("test-vit-tiny", str(weights), batch_size=64)


def sim(encoder, image, text: str) -> float:
    """s(I, T) computed for one pair on its own (the brute-force side of a parity test)."""
    return float(encoder.encode_images([image])[0] @ encoder.encode_texts([text])[0])
