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
