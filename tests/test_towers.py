"""Our image towers (models/towers.py), built through the real factory path from their data-only configs."""
import torch

from tripletclip.models import create_model


def _square(left: bool) -> torch.Tensor:
    x = torch.zeros(1, 3, 48, 48)
    cols = slice(8, 20) if left else slice(28, 40)
    x[0, :, 8:20, cols] = 2.0
    return x


def test_spatial_readout_keeps_where_things_are():
    """The same object on the left and on the right: the spatial tower embeds them far apart, a global-average-
    pooling tower (world-resnet-tiny) almost identically. Relations ("left of") need the former."""
    torch.manual_seed(0)
    cos = {}
    for name in ("world-cnn", "world-resnet-tiny"):
        model = create_model(name).model.eval()
        with torch.no_grad():
            a, b = (model.encode_image(_square(side), normalize=True) for side in (True, False))
        cos[name] = float((a * b).sum())
    assert cos["world-resnet-tiny"] > 0.99 and cos["world-cnn"] < 0.8, cos


def test_spatial_tower_has_no_batch_statistics_and_loads_by_path(tmp_path):
    """GroupNorm only (x and x' of one forward, or two ranks, never share statistics), and random weights saved to
    disk load back through the real pretrained path."""
    from tripletclip.models.factory import save_random_weights

    bundle = create_model("world-cnn")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in bundle.model.modules())
    assert bundle.image_size == 48 and bundle.model.encode_image(torch.zeros(2, 3, 48, 48)).shape == (2, 128)
    path = save_random_weights("world-cnn", tmp_path / "w.safetensors", seed=3)
    loaded = create_model("world-cnn", str(path)).model.eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        one, two = loaded.encode_image(x), create_model("world-cnn", str(path)).model.eval().encode_image(x)
    assert torch.equal(one, two)


def test_spatial_cells_are_tokens_whose_mean_is_the_embedding():
    """The world CNN's per-cell tokens (FSC-CLIP / DeGLA local losses): cell p's token is G*G times its share of the
    linear readout, checked against a loop over cells; their mean plus the head's bias is the pooled embedding."""
    from tripletclip.models.tokens import encode_image_tokens, token_support_problem

    torch.manual_seed(0)
    model = create_model("world-cnn").model.eval()
    assert token_support_problem(model) is None
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        pooled, tokens = encode_image_tokens(model, x)
        trunk = model.visual.trunk
        feats = trunk.forward_features(x)  # [N, C, G, G]
        n, c, g, _ = feats.shape
        weight = trunk.head.weight  # [D, C*G*G], inputs channel-major
        ref = torch.stack([torch.stack([weight[:, [ch * g * g + p for ch in range(c)]] @ feats[i, :, p // g, p % g]
                                        for p in range(g * g)]) for i in range(n)]) * (g * g)
    assert tokens.shape == (3, 36, 128)
    torch.testing.assert_close(tokens, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, model.encode_image(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens.mean(1) + trunk.head.bias, pooled, rtol=1e-4, atol=1e-5)


def test_a_pooling_cnn_has_no_tokens():
    """A global-average-pooling tower has no per-position features to give: the objective says so."""
    from tripletclip.models.tokens import token_support_problem

    problem = token_support_problem(create_model("world-resnet-tiny").model)
    assert problem is not None and "world-cnn" in problem
