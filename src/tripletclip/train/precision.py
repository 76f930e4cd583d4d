"""Choosing the autocast dtype and the loss scaler: bf16 where native, fp16 + GradScaler on older GPUs, fp32 else.

Master weights are always fp32 (docs/methods.md section 3.2: TripletCLIP's pure-bf16 weights degrade training).
``auto`` picks (docs/training.md):
- CUDA with compute capability >= 8.0 (A100, H100, RTX 30xx+): bf16 autocast, no scaler (bf16 has fp32's range);
- older CUDA GPUs (V100 7.0, T4 7.5): bf16 is emulated there, so fp16 autocast with a dynamic GradScaler,
  as open_clip's ``amp`` does;
- CPUs with AVX512-BF16 or AMX: bf16. Other CPUs: fp32, because oneDNN emulates bf16 matmuls: measured on this
  project's 2-core AVX2 machine, a 1024^3 bf16 matmul ran at 0.5 GFLOP/s against 30 GFLOP/s in fp32.
NOTE: the GradScaler reads its inf/NaN check back to the host once per step (inherent to fp16 training).
``tf32``: TF32 tensor cores for fp32 matmuls and convolutions on CUDA (on by default, as in open_clip).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from tripletclip.errors import InputError

BF16_MIN_CAPABILITY = (8, 0)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``bf16``/``fp16`` -> that autocast dtype, ``fp32`` -> none, ``auto`` -> the native choice on ``device``."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if _cuda_capability(device) >= BF16_MIN_CAPABILITY else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "fp32":
        return None
    raise InputError(f"train.precision must be auto, bf16, fp16 or fp32, got '{precision}'")


@dataclass
class Precision:
    """What the step needs: the autocast dtype (None = fp32) and the grad scaler (disabled unless fp16)."""

    dtype: Optional[torch.dtype]
    scaler: torch.amp.GradScaler

    @property
    def loss_scaling(self) -> bool:
        """fp16 needs a dynamic loss scale (the scaler itself is a no-op where its device is missing)."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]


def setup_precision(precision: str, device: torch.device, tf32: bool = True) -> Precision:
    """Autocast dtype, GradScaler (enabled for fp16 only) and the TF32 switch for ``device``."""
    dtype = autocast_dtype(precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Precision(dtype, scaler)
