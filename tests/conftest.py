"""Shared test setup."""
from __future__ import annotations

import os
import re
from collections import Counter
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
# Tests that need ../shared/benchmarks (issues 13, 20): real annotation files of SugarCrepe, SugarCrepe++, VALSE,
# ARO and CLIP_benchmark plus 76 COCO images, checked out next to the repository. A test names the files or
# folders it reads with ``@pytest.mark.shared_benchmarks("real_images_smoke", "sugar_crepe/swap_att.json")`` (or
# calls ``shared_file(...)`` at run time); each one that is missing skips it, naming the path and whether the
# folder is absent, empty or partial, and the suite lists what was missing once, at the end.
# TRIPLETCLIP_SHARED_BENCHMARKS points the tests at another copy (tests/test_listings.py runs the shared tests
# against an empty folder that way).

pytest_plugins = ("pytester",)  # tests/test_listings.py runs a small suite through this hook

SHARED_BENCHMARKS = Path(os.environ.get("TRIPLETCLIP_SHARED_BENCHMARKS")
                         or Path(__file__).resolve().parents[2] / "shared" / "benchmarks")
_SHARED_REASON = re.compile(r"shared[/ ]benchmarks?", re.I)
_MISSING = re.compile(r"^needs shared/benchmarks/(\S+) ")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_benchmarks(*paths): reads these files or folders of ../shared/benchmarks; "
                                       "skips, naming each missing one")


def _present(path: Path) -> bool:
    """A file, or a folder with something in it (an empty checkout of a folder counts as missing)."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def shared_state() -> str:
    """'absent', 'empty' or 'partial': how the folder stands, asked once a path in it is found missing."""
    if not SHARED_BENCHMARKS.is_dir():
        return "absent"
    return "empty" if not any(SHARED_BENCHMARKS.iterdir()) else "partial"


def missing_shared(*rels: str) -> str | None:
    """The skip reason for the first of ``rels`` (paths under shared/benchmarks) that is missing, else None."""
    for rel in rels:
        if not _present(SHARED_BENCHMARKS / rel):
            return (f"needs shared/benchmarks/{rel} (the folder {SHARED_BENCHMARKS} is {shared_state()}; "
                    f"{rel} is not there)")
    return None


def shared_file(*rels: str) -> Path:
    """The path of ``rels[0]`` under shared/benchmarks; skips the calling test if any of ``rels`` is missing."""
    reason = missing_shared(*rels)
    if reason:
        pytest.skip(reason)
    return SHARED_BENCHMARKS / rels[0]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip before any fixture is built when a path named by a shared_benchmarks mark is missing."""
    for mark in item.iter_markers("shared_benchmarks"):
        reason = missing_shared(*mark.args)
        if reason:
            pytest.skip(reason)


def _skip_reason(report) -> str:
    longrepr = getattr(report, "longrepr", None)
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 (pytest hook signature)
    reasons = [_skip_reason(r) for r in terminalreporter.stats.get("skipped", [])]
    skipped = [r.removeprefix("Skipped: ") for r in reasons if _SHARED_REASON.search(r)]
    if not skipped:
        return
    missing = Counter(m.group(1) for r in skipped if (m := _MISSING.match(r)))
    terminalreporter.write_sep("-", "tests that need ../shared/benchmarks")
    terminalreporter.write_line(
        f"{len(skipped)} tests skipped: the real benchmark annotation files and the 76 COCO images were not found "
        f"at {SHARED_BENCHMARKS} (the folder is {shared_state()}). Put the project's shared/ folder "
        "(shared/benchmarks/) next to the repository to run them; the other tests do not need them.")
    if missing:
        terminalreporter.write_line("missing: " + ", ".join(
            f"{rel} ({n} test{'s' if n > 1 else ''})" for rel, n in sorted(missing.items())))
