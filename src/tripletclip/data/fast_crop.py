"""open_clip's training transform on PIL images, made cheaper and kept bitwise exact.

open_clip trains with ``Compose([RandomResizedCrop, MaybeConvertMode("RGB"), MaybeToTensor, Normalize])``. On
small images the torchvision calls cost more than the pixels: ``RandomResizedCrop.get_params`` draws one random
number per torch call and retries often (scale 0.9-1.0 and aspect 3/4-4/3 on a square image: 3.75 attempts per
crop on average, two draws each), and ``to_tensor`` and ``normalize`` go through several wrappers. On the demo's
48 x 48 images the transform was 170-190 us of a 0.36 ms sample (session 9, docs/training.md).

:class:`ExactCropTransform` computes the same tensor from the same generator state:

- the draws: every ``uniform_`` of a float32 tensor and every ``randint`` below 2**32 consumes exactly one
  32-bit number of the CPU generator, element by element. So the k-th attempt's scale is element 2k of one
  20-element ``uniform_(scale)`` drawn from the entry state, its log aspect element 2k+1 of a second one drawn
  again from the entry state, and the accepted crop's row and column elements 2k+2 and 2k+3 of two ``randint``
  calls, each from the entry state with the torchvision call's own arguments. Each value is made by the same
  kernel with the same bounds, so it is bitwise the one torchvision draws; ``exp`` runs on a one-element tensor,
  as in torchvision. The generator is then left where torchvision leaves it (entry + 2k + 4 draws, or + 20 when
  every attempt fails and the centre crop is used).
- the pixels: the same PIL ``crop`` and ``resize`` calls (resize skipped when the crop already has the output
  size, as ``F.resize`` does), then the same float32 element-wise ops (``/ 255``, ``- mean``, ``/ std``), which
  round each element alike whatever the memory layout.

Anything else (another transform list, tensors or arrays as input, a non-float32 default dtype) runs the
original transform. The first calls of every instance run both and compare tensor and generator state; on any
difference (a torch or torchvision release that draws differently) the instance warns once and keeps the
original from then on, so a run is never silently different from what torchvision computes.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

Preprocess = Callable[[Any], torch.Tensor]
ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params tries 10 crops before the centre crop
SELF_CHECKS = 8  # calls per instance that also run the original and compare


def exact_fast_preprocess(preprocess: Preprocess) -> Preprocess:
    """``preprocess``, or an :class:`ExactCropTransform` computing the same tensors faster when ``preprocess`` is
    open_clip's training transform (the four steps above, in that order); see the module docstring."""
    try:
        from torchvision import transforms as T
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return preprocess
    steps = getattr(preprocess, "transforms", None)
    if type(preprocess) is not T.Compose or not isinstance(steps, list) or len(steps) != 4:
        return preprocess
    crop, convert, to_tensor, norm = steps
    if type(crop) is not T.RandomResizedCrop or type(norm) is not T.Normalize or norm.inplace:
        return preprocess
    if type(convert).__name__ != "MaybeConvertMode" or getattr(convert, "mode", None) != "RGB":
        return preprocess
    if type(to_tensor).__name__ not in ("MaybeToTensor", "ToTensor"):
        return preprocess
    size = list(crop.size) if isinstance(crop.size, (list, tuple)) else [crop.size, crop.size]
    mean = torch.as_tensor(norm.mean, dtype=torch.float32)
    std = torch.as_tensor(norm.std, dtype=torch.float32)
    if len(size) != 2 or mean.ndim != 1 or std.ndim != 1 or bool((std == 0).any()):
        return preprocess  # the original raises or broadcasts as it always did
    from torchvision.transforms.functional import pil_modes_mapping

    resample = pil_modes_mapping.get(crop.interpolation)
    if resample is None:
        return preprocess
    return ExactCropTransform(preprocess, size, tuple(crop.scale), tuple(crop.ratio), resample, mean, std)


class ExactCropTransform:
    """Bitwise stand-in for open_clip's training Compose on PIL images (module docstring)."""

    def __init__(self, original: Preprocess, size: list[int], scale: tuple[float, float],
                 ratio: tuple[float, float], resample: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.original = original
        self.transforms = getattr(original, "transforms", [])  # data/decode.check_no_flip walks these
        self.size, self.scale, self.ratio, self.resample = size, scale, ratio, resample
        log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision computes it on every call
        self.log_ratio = (float(log_ratio[0]), float(log_ratio[1]))
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        self.checks_left = SELF_CHECKS
        self.disabled = False

    def __repr__(self) -> str:
        return f"ExactCropTransform({self.original!r})"

    def __call__(self, img: Any) -> torch.Tensor:
        if self.disabled or not isinstance(img, Image.Image) or torch.get_default_dtype() != torch.float32:
            return self.original(img)
        if self.checks_left > 0:
            return self._checked(img)
        return self._fast(img)

    def _checked(self, img: Image.Image) -> torch.Tensor:
        gen = torch.default_generator
        entry = gen.get_state()
        want = self.original(img)
        want_state = gen.get_state()
        gen.set_state(entry)
        got = self._fast(img)
        same = (torch.equal(got, want) and got.stride() == want.stride() and got.dtype == want.dtype
                and torch.equal(gen.get_state(), want_state))
        gen.set_state(want_state)
        if same:
            self.checks_left -= 1
        else:
            self.disabled = True
            log.warning("the fast training transform differs from torchvision's on this install; "
                        "using torchvision's transform (slower, same results)")
        return want

    def _params(self, height: int, width: int) -> tuple[Optional[tuple[int, int, int, int]], int]:
        """(i, j, h, w) of ``RandomResizedCrop.get_params`` (None: its centre-crop fallback) and the number of
        draws it consumed; the generator is at its entry state on return."""
        gen = torch.default_generator
        entry = gen.get_state()
        area = height * width
        scales = torch.empty(2 * ATTEMPTS).uniform_(self.scale[0], self.scale[1]).tolist()
        gen.set_state(entry)
        logs = torch.empty(2 * ATTEMPTS).uniform_(self.log_ratio[0], self.log_ratio[1])
        gen.set_state(entry)
        for k in range(ATTEMPTS):
            target_area = area * scales[2 * k]
            aspect_ratio = torch.exp(logs[2 * k + 1:2 * k + 2]).item()  # one element, as torchvision's
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, size=(2 * k + 3,))[2 * k + 2])
                gen.set_state(entry)
                j = int(torch.randint(0, width - w + 1, size=(2 * k + 4,))[2 * k + 3])
                gen.set_state(entry)
                return (i, j, h, w), 2 * k + 4
        return None, 2 * ATTEMPTS

    def _centre(self, height: int, width: int) -> tuple[int, int, int, int]:
        """torchvision's fallback when no attempt fits."""
        in_ratio = float(width) / float(height)
        if in_ratio < min(self.ratio):
            w = width
            h = int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h = height
            w = int(round(h * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def _fast(self, img: Image.Image) -> torch.Tensor:
        width, height = img.size
        params, used = self._params(height, width)
        torch.empty(used).uniform_()  # leave the generator where torchvision's draws leave it
        i, j, h, w = params if params is not None else self._centre(height, width)
        out = img.crop((j, i, j + w, i + h))
        if [h, w] != self.size:
            out = out.resize((self.size[1], self.size[0]), self.resample)
        if out.mode != "RGB":
            out = out.convert("RGB")
        pixels = torch.from_numpy(np.array(out, np.uint8, copy=True))
        x = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)  # torchvision's order of copies
        return x.sub_(self.mean).div_(self.std)
