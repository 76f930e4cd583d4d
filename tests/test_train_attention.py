"""train.attention: the training forward's SDPA kernel ("auto" = torch's choice, "math" = the plain kernel)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tripletclip.config import config_from_dict, config_problems
from tripletclip.train.trainer import attention_kernel


def _qkv() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(6, 2, 9, 16, generator=g) for _ in range(3))


def test_math_runs_the_math_kernel_and_auto_leaves_the_choice_to_torch():
    q, k, v = _qkv()
    mask = torch.full((9, 9), float("-inf")).triu(1)
    ref = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=mask)[0]
    with attention_kernel("math"):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out, ref)
    with attention_kernel("auto"):
        auto = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(auto, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))  # no context: the same
    assert torch.allclose(auto, ref, atol=1e-5)  # the same function, up to rounding


def test_unknown_attention_is_refused():
    problems = config_problems(config_from_dict({"train": {"attention": "fast"}, "data": {"train": "x.tar"}}))
    assert problems == ["train.attention='fast': must be one of auto, math"]
