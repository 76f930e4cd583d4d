"""data/fast_crop.py: open_clip's training transform, cheaper and bitwise torchvision's (tensor and generator)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from open_clip.transform import MaybeConvertMode, MaybeToTensor, image_transform
from PIL import Image
from torchvision import transforms as T

from tripletclip.data import fast_crop
from tripletclip.data.fast_crop import ExactCropTransform, exact_fast_preprocess

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _compose(size, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), interpolation=T.InterpolationMode.BICUBIC) -> T.Compose:
    """open_clip's training transform, built as open_clip builds it."""
    return T.Compose([T.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation),
                      MaybeConvertMode(), MaybeToTensor(), T.Normalize(MEAN, STD)])


def _image(seed: int, w: int, h: int, mode: str) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA").convert(mode)


def _both(original, fast, img: Image.Image, seed: int) -> None:
    """From the same generator state: the same tensor (values, dtype, layout) and the same state afterwards."""
    torch.default_generator.manual_seed(seed)
    want, want_state = original(img), torch.default_generator.get_state()
    torch.default_generator.manual_seed(seed)
    got = fast._fast(img)  # the fast path itself, not the self-checked call (which returns the original's)
    assert torch.equal(got, want) and got.dtype == want.dtype and got.stride() == want.stride()
    assert torch.equal(torch.default_generator.get_state(), want_state)


def test_open_clips_train_transform_is_recognised_and_others_are_not():
    assert isinstance(exact_fast_preprocess(image_transform(48, is_train=True)), ExactCropTransform)
    crop, norm = T.RandomResizedCrop(8), T.Normalize(MEAN, STD)
    for other in (image_transform(48, is_train=False),  # no random crop
                  T.Compose([crop, T.RandomHorizontalFlip(), MaybeToTensor(), norm]),
                  T.Compose([crop, MaybeConvertMode(), MaybeToTensor(), T.Normalize(MEAN, STD, True)]),  # in place
                  T.Compose([crop, MaybeConvertMode(), MaybeToTensor()])):
        assert exact_fast_preprocess(other) is other


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**63 - 1), w=st.integers(4, 90), h=st.integers(4, 90),
       mode=st.sampled_from(["RGB", "L", "RGBA", "P"]), size=st.sampled_from([16, 48, (24, 32)]),
       scale=st.sampled_from([(0.9, 1.0), (0.08, 1.0), (1.0, 1.0)]),
       ratio=st.sampled_from([(3 / 4, 4 / 3), (1.0, 1.0), (2.0, 3.0)]),
       interpolation=st.sampled_from([T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR]))
def test_bitwise_torchvision_on_any_image_and_setting(seed, w, h, mode, size, scale, ratio, interpolation):
    """Wide, tall and tiny images (the centre-crop fallback when no attempt fits), every mode, sizes that need no
    resize, and the generator left where torchvision leaves it."""
    original = _compose(size, scale, ratio, interpolation)
    fast = exact_fast_preprocess(original)
    assert isinstance(fast, ExactCropTransform)
    _both(original, fast, _image(seed % 1000, w, h, mode), seed)


def test_the_fallback_and_the_no_resize_paths_are_exercised():
    """The cases the property test must reach: every attempt fails (centre crop) and a crop of the output size."""
    fast = exact_fast_preprocess(_compose(48))
    fallbacks = resized = 0
    for seed in range(300):
        torch.default_generator.manual_seed(seed)
        params, _ = fast._params(48, 48)
        fallbacks += params is None
        resized += params is not None and [params[2], params[3]] != [48, 48]
        _both(_compose(48), fast, _image(seed, 48, 48, "RGB"), seed)
    assert fallbacks > 5 and resized > 100 and 300 - fallbacks - resized > 5


def test_a_difference_disables_the_fast_path_with_one_warning(monkeypatch, caplog):
    original = _compose(16)
    fast = exact_fast_preprocess(original)
    img = _image(0, 20, 20, "RGB")
    for seed in range(fast_crop.SELF_CHECKS):  # the self-checked calls return the original's tensor
        torch.default_generator.manual_seed(seed)
        want = original(img)
        torch.default_generator.manual_seed(seed)
        assert torch.equal(fast(img), want)
    assert fast.checks_left == 0 and not fast.disabled
    fresh = exact_fast_preprocess(original)
    monkeypatch.setattr(ExactCropTransform, "_centre", lambda self, h, w: (0, 0, h // 2, w // 2))
    monkeypatch.setattr(ExactCropTransform, "_params", lambda self, h, w: (None, 20))  # a wrong crop
    with caplog.at_level(logging.WARNING, logger="tripletclip.data.fast_crop"):
        torch.default_generator.manual_seed(1)
        out = fresh(img)
        torch.default_generator.manual_seed(1)
        assert torch.equal(out, original(img)) and fresh.disabled
        torch.default_generator.manual_seed(2)
        again = fresh(img)
    torch.default_generator.manual_seed(2)
    assert torch.equal(again, original(img))
    assert len([r for r in caplog.records if "differs from torchvision" in r.getMessage()]) == 1


def test_tensors_and_other_default_dtypes_take_the_original():
    original = _compose(8)
    fast = exact_fast_preprocess(original)
    t = torch.rand(3, 12, 12)
    torch.default_generator.manual_seed(0)
    a = fast(t)
    torch.default_generator.manual_seed(0)
    assert torch.equal(a, original(t))
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.default_generator.manual_seed(0)
        b = fast(_image(1, 12, 12, "RGB"))
        assert b.dtype == torch.float64
    finally:
        torch.set_default_dtype(prev)


@pytest.mark.parametrize("mb", [0, 64])
def test_the_loader_uses_it_and_batches_equal_torchvisions(synthetic_shards, mb, monkeypatch):
    """The training loader wraps open_clip's transform; its batches equal those of torchvision's own calls."""
    from tripletclip.config.schema import DataConfig
    from tripletclip.data import loader as loader_mod
    from tripletclip.data.testing import HashTokenizer
    from _loader_checks import same, take

    cfg = DataConfig(type="wds", train=synthetic_shards, shuffle_buffer=7, cache_decoded_mb=mb)
    pre = image_transform(16, is_train=True)

    def build():
        return loader_mod.build_train_loader(cfg, pre, HashTokenizer(16), batch_size=6, seed=0, context_length=16)

    fast = take(build(), 8)
    monkeypatch.setattr(loader_mod, "exact_fast_preprocess", lambda p: p)
    same(take(build(), 8), fast)
