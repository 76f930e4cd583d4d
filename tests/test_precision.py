"""Precision choice on mocked devices (train/precision.py): bf16 where native, fp16 + GradScaler on older GPUs."""
from __future__ import annotations

import pytest
import torch

from tripletclip.errors import InputError
from tripletclip.train import precision as P


@pytest.mark.filterwarnings("ignore:.*GradScaler is enabled, but CUDA is not available")
@pytest.mark.parametrize("capability,dtype,scaled", [
    ((7, 0), torch.float16, True),   # V100
    ((7, 5), torch.float16, True),   # T4
    ((8, 0), torch.bfloat16, False),  # A100
    ((9, 0), torch.bfloat16, False),  # H100
])
def test_auto_on_cuda_follows_compute_capability(monkeypatch, capability, dtype, scaled):
    monkeypatch.setattr(P, "_cuda_capability", lambda device: capability)
    prec = P.setup_precision("auto", torch.device("cuda", 0), tf32=True)
    assert prec.dtype is dtype and prec.loss_scaling is scaled
    assert torch.backends.cuda.matmul.allow_tf32 is True
    P.setup_precision("auto", torch.device("cuda", 0), tf32=False)
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False


@pytest.mark.parametrize("native,dtype", [(True, torch.bfloat16), (False, None)])
def test_auto_on_cpu_uses_bf16_only_with_native_support(monkeypatch, native, dtype):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    prec = P.setup_precision("auto", torch.device("cpu"))
    assert prec.dtype is dtype and not prec.scaler.is_enabled()
    assert prec.name == ("bf16" if native else "fp32")


def test_explicit_choices_and_unknown():
    cpu = torch.device("cpu")
    assert P.autocast_dtype("fp32", cpu) is None
    assert P.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert P.autocast_dtype("fp16", cpu) is torch.float16
    assert P.setup_precision("fp16", cpu).scaler.is_enabled()
    with pytest.raises(InputError, match="auto, bf16, fp16 or fp32"):
        P.autocast_dtype("fp8", cpu)


def test_fp16_scaler_skips_a_step_with_inf_gradients():
    """The GradScaler path the trainer uses: an overflowing step is skipped and the scale halves."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    scaler = P.setup_precision("fp16", torch.device("cpu")).scaler
    scale0 = scaler.get_scale()
    scaler.scale((w * float("inf")).sum()).backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert torch.equal(w.detach(), torch.ones(3)) and scaler.get_scale() == scale0 / 2
