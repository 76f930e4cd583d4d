"""QuickGELU vs GELU: weights are checked against their provenance when loaded, and the outcome is recorded."""
from __future__ import annotations

import pytest
import torch

from tripletclip.models import create_model
from tripletclip.models.activation import provenance, tag_activation, tag_index
from tripletclip.models.weights import WeightsError, WeightsSource


def _openai_layout(tmp_path, filename="clip_openai.pt"):
    """A tiny model's state dict saved as OpenAI's clip package saves one (with its three scalar entries)."""
    torch.manual_seed(0)
    model = create_model("test-vit-tiny").model
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(32), vocab_size=torch.tensor(49408))
    path = tmp_path / filename
    torch.save(state, path)
    return path, model


def test_openai_layout_under_a_gelu_config_is_refused(tmp_path):
    path, ref = _openai_layout(tmp_path)
    with pytest.raises(WeightsError, match=r"trained with QuickGELU \(state dict in OpenAI's layout.*uses GELU.*"
                                           r"-quickgelu.*--force-quick-gelu"):
        create_model("test-vit-tiny", str(path))
    bundle = create_model("test-vit-tiny", str(path), force_quick_gelu=True)
    act = bundle.identity["activation"]
    assert act["status"] == "match" and act["model_uses"] == act["weights_trained_with"] == "QuickGELU"
    for k, v in ref.state_dict().items():  # the weights themselves loaded (the three scalars dropped)
        assert torch.equal(bundle.model.state_dict()[k], v)


def test_plain_state_dict_is_unchecked_and_recorded_in_eval_output(tmp_path, tiny_weights):
    from tripletclip.eval import load_encoder

    enc = load_encoder("test-vit-tiny", str(tiny_weights))
    act = enc.describe()["model"]["activation"]
    assert act["status"] == "unchecked" and act["model_uses"] == "GELU" and act["weights_trained_with"] == "unknown"


def test_weak_evidence_warns_and_strong_hash_evidence_refuses(tmp_path, monkeypatch, tiny_weights):
    # a file named like open_clip's QuickGELU LAION download whose content is not that download: warned only
    sd = {k: v for k, v in create_model("test-vit-tiny").model.state_dict().items()}
    weak = tmp_path / "vit_b_32-quickgelu-laion400m_e32-00000000.pt"
    torch.save(sd, weak)
    with pytest.warns(UserWarning, match="file name"):
        bundle = create_model("test-vit-tiny", str(weak))
    assert bundle.identity["activation"]["status"].startswith("mismatch (warned")
    # content whose sha256 is a known QuickGELU tag's download: refused (the index entry is made to match here)
    src = WeightsSource(tiny_weights, "state-dict")
    sha = src.identity()["weights_sha256"]
    index = {**tag_index(), "sha": {sha: ("ViT-B-32", "openai", True)}}
    monkeypatch.setattr("tripletclip.models.activation.tag_index", lambda: index)
    assert provenance(src, sha).strong and "ViT-B-32:openai" in provenance(src, sha).evidence
    with pytest.raises(WeightsError, match="open_clip tag ViT-B-32:openai"):
        create_model("test-vit-tiny", str(tiny_weights))


def test_known_tags_from_open_clip_metadata():
    index = tag_index()
    assert index["sha"]["40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"] == ("ViT-B-32", "openai", True)
    assert index["prefix"]["46683a32"][2] is True  # vit_b_32-quickgelu-laion400m_e32
    assert tag_activation("ViT-B-32", "openai", False)["status"] == "mismatch"
    assert tag_activation("ViT-B-32-quickgelu", "openai", False)["status"] == "match"
