"""Shared test setup."""
from __future__ import annotations

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
