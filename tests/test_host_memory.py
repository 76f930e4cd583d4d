"""utils/host_memory.py: with keep_freed_memory, the large tensors of a repeated step stop costing page faults."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# a "step" that allocates, fills and frees four 40 MiB tensors (above glibc's largest mmap threshold, 32 MiB),
# repeated 10 times; prints the minor page faults of the last 3 (the first steps grow the heap, up to 4 steps
# measured once under memory pressure)
PROBE = """
import json, resource, sys, torch
from tripletclip.utils.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a, b, c = (torch.ones(10 * 2**20) for _ in range(3))
    d = (a + b) * c
    del a, b, c, d
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults[7:]}))
"""
PAGES = 40 * 2**20 // 4096  # pages of one 40 MiB tensor (at 4 KiB pages)


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_stops_page_faults_of_a_repeated_step() -> None:
    default, kept = _probe("default"), _probe("keep")
    if not kept["applied"]:
        pytest.skip("not glibc: keep_freed_memory does not apply")
    # glibc's default maps each large block afresh: every step faults in the pages of its tensors again
    assert min(default["faults"]) > 3 * PAGES, default
    # kept: the freed blocks are reused, their pages are already there
    assert max(kept["faults"]) < PAGES // 10, kept
