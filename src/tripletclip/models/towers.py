"""Small image towers of our own, registered with timm so that open_clip builds them from a data-only config.

``tc_spatial_cnn``: a CNN for the embedded world whose readout keeps *where* things are. Global average pooling
(every timm/open_clip CNN head) sums local features over the image, which keeps "a red circle is somewhere"
but throws away "left of"; the relations of the world (SugarCrepe's replace-rel, arXiv 2306.14610) then cannot
be represented at all. Here the last feature map is flattened and projected (one weight per position and
channel), so the embedding is a position-aware sum of local colour x shape conjunction features: attribute
binding is local (conv features) and relations are readable from positions (docs/world_experiments.md,
section 1).

GroupNorm, not BatchNorm: BatchNorm statistics would mix x and x' of one forward (TripletCLIP's single
forward over positives and negatives) and differ per rank under DDP.

A config selects it with ``"timm_model_name": "tc_spatial_cnn", "timm_pool": "", "timm_proj": ""``: open_clip
then uses the model's own head as the projection to ``embed_dim``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.models import register_model
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(min(8, cout // 8), cout),
                         nn.ReLU(inplace=True))


class SpatialCNN(nn.Module):
    """Patchify stem (stride ``patch``), conv stages, a ``grid`` x ``grid`` map flattened into the projection.

    At 48 px with patch 4: 12x12 after the stem, 6x6 after the stride-2 stage (receptive field 36 px, larger
    than any object), flattened 6 * 6 * ``reduce`` features -> ``num_classes``.
    """

    def __init__(self, num_classes: int = 64, widths: Sequence[int] = (32, 48, 64), patch: int = 4, grid: int = 6,
                 reduce: int = 32, in_chans: int = 3, global_pool: str = "", **_: Any) -> None:
        super().__init__()
        if global_pool not in ("", None):
            raise ValueError(f"tc_spatial_cnn: global_pool must be '' (the readout is spatial), got {global_pool!r}")
        w1, w2, w3 = widths
        self.num_classes = num_classes
        self.num_features = reduce * grid * grid
        self.stem = nn.Sequential(nn.Conv2d(in_chans, w1, patch, patch, bias=False), nn.GroupNorm(4, w1),
                                  nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_conv(w1, w2), _conv(w2, w3, stride=2), _conv(w3, w3))
        # NOTE: adaptive pooling to a fixed grid is the identity at the design size and keeps other input
        # sizes usable (a different image size changes what each cell covers, not the parameter shapes)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.reduce = nn.Sequential(nn.Conv2d(w3, reduce, 1, bias=False), nn.GroupNorm(4, reduce), nn.ReLU(inplace=True))
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.pool(self.stages(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).flatten(1))

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled [N,D] as :meth:`forward`, one token per grid cell [N,G*G,D]) for local losses (FSC-CLIP).

        The linear readout is a sum over cells, ``head(f) = sum_p W_p f_p + b``; cell p's token is its share
        ``G*G * W_p f_p``, scaled so that the tokens' mean plus the bias is the pooled embedding: a CNN's analogue
        of a ViT's projected patch tokens, in the joint space, with no parameter of its own."""
        feats = self.forward_features(x)
        if not isinstance(self.head, nn.Linear):
            raise ValueError("tc_spatial_cnn: per-cell tokens need the linear head (num_classes > 0)")
        n, c, g, _ = feats.shape
        weight = self.head.weight.view(-1, c, g * g)  # [D, C, P]: flatten(1) orders features channel-major
        tokens = torch.einsum("ncp,dcp->npd", feats.flatten(2), weight) * (g * g)
        return self.head(feats.flatten(1)), tokens

    # timm's interface, used by open_clip's tower locking and classifier resets
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str = "") -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer groups, used by open_clip's ``lock(unlocked_groups=N)``: stem, each stage, the 1x1 reduction,
        then the unmatched ``head`` (the projection to ``embed_dim``) last; N=1 trains the head only.

        NOTE: every capture group of a pattern becomes part of a numeric ordinal in timm (``float(group)``), so
        the reduction's pattern captures nothing (a named alternative gave ``could not convert 'reduce'``)."""
        return {"stem": r"^stem", "blocks": [(r"^stages\.(\d+)", None), (r"^reduce\.", (99,))]}

    def set_grad_checkpointing(self, enable: bool = True) -> None:  # too small to need it
        return None


@register_model
def tc_spatial_cnn_lit(pretrained: bool = False, **kwargs: Any) -> SpatialCNN:
    """``tc_spatial_cnn`` with a locked trunk (stem, stages, reduce) and a trainable head: LiT (arXiv 2111.07991)
    with the projection left free, so fine-tuning can re-read the positions the trunk keeps (the head of the
    world base compresses them; docs/world_experiments.md, section 9). Same parameter names as
    ``tc_spatial_cnn``: its checkpoints load unchanged. Trains what ``world-cnn`` with ``model.lock_image=true
    model.lock_image_unlocked_groups=1`` trains (tests/test_locking.py); kept so the recorded experiments rerun."""
    model = tc_spatial_cnn(pretrained, **kwargs)
    for name, p in model.named_parameters():
        if not name.startswith("head."):
            p.requires_grad_(False)
    return model


@register_model
def tc_spatial_cnn(pretrained: bool = False, **kwargs: Any) -> SpatialCNN:
    """The embedded world's image tower (see module docstring); no pretrained weights exist."""
    if pretrained:
        raise ValueError("tc_spatial_cnn has no pretrained weights; train it, or load a checkpoint by path")
    for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "drop_path_rate", "drop_rate"):
        kwargs.pop(k, None)
    return SpatialCNN(**kwargs)
