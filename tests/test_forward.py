"""train/forward.py: what is read from the host batch (valid-negative indices, trimmed text length) gives the
features of the device-side computation, bucketed lengths included."""
from __future__ import annotations

import torch

from tripletclip.models import create_model
from tripletclip.models.trimmed import TrimmedClip
from tripletclip.train.forward import bucket_length, forward_features, prepare_batch, text_length


def _batch(tokenizer, g):
    caps = ["a red cube", "a small blue ball to the left of a green cone on grass", "a cone", "two rings"]
    negs = [["a blue cube", ""], ["a small red ball to the right of a green cone on grass", "x"],
            ["", ""], ["three rings", "two cubes"]]
    nt_mask = torch.tensor([[True, False], [True, True], [False, False], [True, True]])
    neg_text = torch.stack([tokenizer(n) for n in negs])
    return {"image": torch.randn(4, 3, 32, 32, generator=g), "text": tokenizer(caps),
            "neg_text": neg_text, "neg_text_mask": nt_mask, "neg_text_type": torch.zeros(4, 2, dtype=torch.long),
            "neg_image": torch.randn(4, 1, 3, 32, 32, generator=g), "neg_image_mask": torch.tensor([[True], [False], [True], [False]])}


def test_host_prepared_batch_gives_the_features_of_the_full_context():
    torch.manual_seed(0)
    b = create_model("test-vit-tiny")
    batch = _batch(b.tokenizer, torch.Generator().manual_seed(0))
    prep = prepare_batch(batch, True, True)
    assert torch.equal(prep["neg_text_index"], batch["neg_text_mask"].reshape(-1).nonzero()[:, 0])
    longest = int((torch.cat([batch["text"], batch["neg_text"].flatten(0, 1)]) != 0).sum(1).max())
    assert prep["text_len"] == text_length(batch, True) == longest < b.context_length
    trimmed = forward_features(TrimmedClip(b.model), prep, True, True, None)
    reference = forward_features(b.model, batch, True, True, None)  # open_clip's full 77-token text tower
    for key in ("image_features", "text_features", "neg_text_features", "neg_image_features"):
        torch.testing.assert_close(trimmed[key], reference[key], atol=1e-5, rtol=1e-5)
    assert torch.equal(trimmed["neg_text_features"][2], torch.zeros(2, trimmed["text_features"].shape[1]))
    bucketed = forward_features(TrimmedClip(b.model), prepare_batch(batch, True, True, text_bucket=16), True, True, None)
    torch.testing.assert_close(bucketed["text_features"], reference["text_features"], atol=1e-5, rtol=1e-5)


def test_bucket_length():
    assert [bucket_length(n, 77, 16) for n in (1, 15, 16, 17, 70, 77)] == [16, 16, 16, 32, 77, 77]
    assert bucket_length(13, 77, 1) == 13 and bucket_length(0, 77, 1) == 1
