"""The world tower's attention block (nn.MultiheadAttention, width 64, 2 heads, 126 captions x 15 tokens, causal
mask) forward and backward under CPU bf16 autocast, per SDPA kernel: torch's choice (flash on CPU) vs math
(``train.attention``). Medians of 30 calls, one thread; then the largest difference between the two. Issue 17.

    PYTHONPATH=src python benchmarks/bench_attention.py [fp32]
"""
from __future__ import annotations

import contextlib
import sys
import time

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from tripletclip.utils.host_memory import keep_freed_memory


def main(dtype: torch.dtype | None) -> None:
    keep_freed_memory()  # as the trainer does (train.keep_host_memory)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(64, 2, batch_first=True)
    mask = torch.full((32, 32), float("-inf")).triu(1)[:15, :15]  # models/trimmed.py slices the causal mask
    x0 = torch.randn(126, 15, 64)
    out = {}
    for label in ("auto", "math", "auto", "math"):
        x = x0.clone().requires_grad_(True)
        times = []
        for _ in range(30):
            x.grad = None
            mha.zero_grad()
            kernel = sdpa_kernel(SDPBackend.MATH) if label == "math" else contextlib.nullcontext()
            t0 = time.perf_counter()
            with kernel, torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                y = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
            t1 = time.perf_counter()
            y.float().pow(2).sum().backward()
            times.append((t1 - t0, time.perf_counter() - t1))
        fwd, bwd = (sorted(t[i] for t in times)[15] for i in (0, 1))
        print(f"{label}: forward {1e3 * fwd:.2f} ms, backward {1e3 * bwd:.2f} ms", flush=True)
        out[label] = (y.detach(), x.grad.clone(), mha.in_proj_weight.grad.clone())
    diffs = [f"{(a - b).abs().max().item():.3g}" for a, b in zip(out["auto"], out["math"])]
    print(f"auto vs math, largest difference (output, input grad, in_proj grad): {', '.join(diffs)}")


if __name__ == "__main__":
    main(None if sys.argv[1:] == ["fp32"] else torch.bfloat16)
