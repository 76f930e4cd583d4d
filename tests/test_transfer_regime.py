"""world-lit-cnn, the locked-trunk candidate of the demo's regime experiments (docs/world_experiments.md,
section 9): only the image head trains, and world-cnn checkpoints load unchanged."""
from __future__ import annotations

import torch

from tripletclip.models import create_model


def test_lit_tower_trains_only_its_head_and_loads_world_cnn_weights(tmp_path):
    from safetensors.torch import save_file

    src = create_model("world-cnn").model
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    lit = create_model("world-lit-cnn", str(path)).model
    trainable = {n for n, p in lit.named_parameters() if p.requires_grad and n.startswith("visual.")}
    assert trainable == {"visual.trunk.head.weight", "visual.trunk.head.bias"}
    assert any(p.requires_grad for n, p in lit.named_parameters() if not n.startswith("visual."))  # text trains
    for (k, a), (k2, b) in zip(src.state_dict().items(), lit.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # the trunk gets no gradient, the head does
    lit.train()
    lit.encode_image(torch.randn(2, 3, 48, 48)).sum().backward()
    assert lit.visual.trunk.head.weight.grad is not None and lit.visual.trunk.stem[0].weight.grad is None
