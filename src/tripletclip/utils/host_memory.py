"""Keep freed host memory for reuse: large CPU tensors stop costing page faults every step.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB on 64-bit) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so each such tensor is zero-filled page by page by the kernel
again in every step. A CPU training step allocates and frees the same large activations every step (a ViT-B-32
MLP activation at batch 64 is 39 MB; TripletCLIP, which encodes twice the rows in one forward, has twice as
many tensors above the threshold): measured on this project's 2-core VM at batch 64, a step took 0.3-1.1
million minor page faults and seconds of system time (docs/training.md, "Measured speed"). This is the cost
PyTorch's CPU tuning guides avoid by preloading jemalloc or tcmalloc; :func:`keep_freed_memory` gets the same
effect from glibc itself, inside the running process, with two documented ``mallopt`` settings (man 3 mallopt):
``M_MMAP_MAX=0`` (large blocks come from the heap like small ones) and ``M_TRIM_THRESHOLD=-1`` (freed memory
stays with the process). After the first steps a step then reuses the same memory and faults almost never.

The price is that of any caching allocator: the process keeps its peak host memory until it exits. Nothing
changes numerically; CUDA memory is not affected (its own caching allocator already does this).
"""
from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

# mallopt parameter numbers of glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Switch glibc's malloc to keep freed memory (once per process); False where it does not apply (not Linux,
    another C library) or a setting was refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on (no ldconfig lookup)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl and others have no such symbol
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # NOTE: trimming off first, so that no freed block is returned between the two calls; mallopt returns 1 on success
    return mallopt(M_TRIM_THRESHOLD, -1) == 1 and mallopt(M_MMAP_MAX, 0) == 1
