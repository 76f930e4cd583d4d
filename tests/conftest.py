"""Shared test setup."""
from __future__ import annotations

import re
from pathlib import Path

import pytest


# ---------------------------------------------------------------------------------------------------------
# Shared fixtures (issue 12). Image, encoding and tar helpers live in tripletclip.data.testing (noise_image,
# image_bytes, write_tar, write_synthetic_shards), so no test file carries its own copy; the fixtures below are
# data and weights more than one test module needs, built once per session.
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """8 shards x 5 samples (s00000..s00039) of the synthetic source, 16 px: a brace pattern over them."""
    from tripletclip.data.testing import write_synthetic_shards

    out = tmp_path_factory.mktemp("synthetic_shards")
    write_synthetic_shards(out, n=40, shard_size=5, image_size=16)
    return str(out / "train-{000000..000007}.tar")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random weights of the ``test-vit-tiny`` model, saved as a pretrained file."""
    import torch

    from tripletclip.models.factory import save_random_weights

    torch.set_num_threads(1)
    return save_random_weights("test-vit-tiny", tmp_path_factory.mktemp("tiny_weights") / "tiny.safetensors", seed=7)


# ------------------------------------------------------------------------------------------------------------
# Tests that need ../shared/benchmarks (issue 13): real annotation files of SugarCrepe, SugarCrepe++, VALSE, ARO
# and CLIP_benchmark plus 76 COCO images, checked out next to the repository. Without them those tests skip;
# the suite says so once, at the end, with what to do, instead of one line per test.

pytest_plugins = ("pytester",)  # tests/test_listings.py runs a small suite through this hook

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
_SHARED_REASON = re.compile(r"shared[/ ]benchmarks?", re.I)


def _skip_reason(report) -> str:
    longrepr = getattr(report, "longrepr", None)
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 (pytest hook signature)
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if _SHARED_REASON.search(_skip_reason(r))]
    if skipped:
        terminalreporter.write_sep("-", "tests that need ../shared/benchmarks")
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: the real benchmark annotation files and the 76 COCO images were not found "
            f"at {SHARED_BENCHMARKS}. Put the project's shared/ folder (shared/benchmarks/) next to the repository "
            "to run them; the other tests do not need them.")

# ------------------------------------------------------------------------------------------------------------
