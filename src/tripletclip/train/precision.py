"""Choosing the autocast dtype: bf16 where the hardware computes it natively, fp32 elsewhere.

Master weights are always fp32 (docs/methods.md section 3.2: TripletCLIP's pure-bf16 weights degrade training). On CPUs
without native bf16 (no AVX512-BF16 / AMX), oneDNN emulates bf16 matmuls: measured on this project's
2-core AVX2 machine, a 1024^3 bf16 matmul ran at 0.5 GFLOP/s against 30 GFLOP/s in fp32, so ``auto``
picks fp32 there and bf16 on CUDA or bf16-capable CPUs.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``bf16`` -> bfloat16 autocast, ``fp32`` -> none, ``auto`` -> bf16 when native on ``device``."""
    if precision == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return None
    raise ValueError(f"train.precision must be auto, bf16 or fp32, got '{precision}'")
