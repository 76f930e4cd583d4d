"""Model factory: our configs registered with open_clip, pretrained local paths through the real loader."""
import pytest
import torch

from tripletclip.models import create_model, list_models
from tripletclip.models.factory import save_random_weights


def test_tiny_config_is_registered_and_runs():
    assert "test-vit-tiny" in list_models("test-")
    b = create_model("test-vit-tiny")
    img = torch.randn(2, 3, b.image_size, b.image_size)
    tok = b.tokenizer(["a red cube left of a blue ball", "a blue cube"])
    assert tok.shape == (2, b.context_length)
    i, t = b.model.encode_image(img, normalize=True), b.model.encode_text(tok, normalize=True)
    assert i.shape == t.shape == (2, 64)
    assert torch.allclose(i.norm(dim=-1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_pretrained_path_loads_the_saved_weights(tmp_path, suffix):
    path = save_random_weights("test-vit-tiny", tmp_path / f"w{suffix}", seed=3)
    torch.manual_seed(99)  # a different random init, overwritten by the loaded weights
    b = create_model("test-vit-tiny", str(path))
    ref = create_model("test-vit-tiny", str(path))
    for (k, v), (_, w) in zip(b.model.state_dict().items(), ref.model.state_dict().items()):
        assert torch.equal(v, w), k
    assert b.identity["weights_sha256"] and b.identity["pretrained"].endswith(suffix)


def test_unknown_model_and_tag_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(ValueError, match="neither a local file nor a tag"):
        create_model("test-vit-tiny", "no-such-tag")


def test_flip_augmentation_is_refused():
    with pytest.raises(ValueError, match="hflip"):
        create_model("test-vit-tiny", aug_cfg={"hflip": 0.5})


def test_trimmed_text_encoding_equals_the_full_context():
    """Causal mask + end-of-text pooling: positions after the longest caption cannot change the features."""
    from tripletclip.models.trimmed import TrimmedClip, encode_text_trimmed, pool_positions, supports_trimming

    torch.manual_seed(0)
    b = create_model("test-vit-tiny")
    tok = b.tokenizer(["a red cube", "a small blue ball to the left of a green cone on grass"])
    assert supports_trimming(b.model)
    assert int(pool_positions(b.model, tok).max()) + 1 == int((tok != 0).sum(1).max()) < b.context_length
    full = b.model.encode_text(tok, normalize=True)
    trimmed = encode_text_trimmed(b.model, tok, normalize=True)
    assert torch.allclose(full, trimmed, atol=1e-5)
    img = torch.randn(2, 3, 32, 32)
    out = TrimmedClip(b.model)(img, tok)
    assert torch.allclose(out[0], b.model.encode_image(img, normalize=True), atol=1e-6)
    # gradients agree too (what training relies on)
    g_full = torch.autograd.grad(b.model.encode_text(tok).sum(), b.model.token_embedding.weight)[0]
    g_trim = torch.autograd.grad(encode_text_trimmed(b.model, tok).sum(), b.model.token_embedding.weight)[0]
    assert torch.allclose(g_full, g_trim, rtol=1e-4, atol=1e-4)
