"""Every objective against an independent brute-force reference (methods.md section 2), values and gradients.

References loop over rows in Python, list candidate columns explicitly and compute log-sum-exp by hand in
float64; the losses under test are vectorised fp32. Gradients are compared w.r.t. every feature tensor and
logit_scale, with random masks that include rows without any valid negative, K > 1 and M > 1.
"""
from __future__ import annotations

import math

import pytest
import torch

from tripletclip.data.contract import EDIT_TYPE_INDEX, EDIT_TYPES
from tripletclip.errors import InputError
from tripletclip.losses import LOSSES, build_loss

torch.set_num_threads(1)
# every registered objective without extra needs; those needing tokens or a teacher: tests/test_losses_2026.py
NAMES = [n for n in LOSSES.names()
         if not (LOSSES.get(n).needs_tokens or LOSSES.get(n).needs_teacher or LOSSES.get(n).needs_pos_text)]
FEATURE_KEYS = ["image_features", "text_features", "neg_text_features", "neg_image_features", "logit_scale"]


# ----------------------------------------------------------------------------- brute-force references

def ce(scores: list[torch.Tensor], target: int) -> torch.Tensor:
    """-log softmax(scores)[target], by hand."""
    m = max(float(s.detach()) for s in scores)
    lse = torch.log(sum(torch.exp(s - m) for s in scores)) + m
    return lse - scores[target]


def sim(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return s * torch.dot(a, b)


def ref_negclip_generic(anchors, positives, negatives, s) -> torch.Tensor:
    """NegCLIP(A, P, N) for explicit lists: A_i picks P_i among all P and all N; P_i picks A_i among all A."""
    n = len(anchors)
    if n == 0:
        return torch.zeros((), dtype=torch.float64)
    a2p = sum(ce([sim(anchors[i], p, s) for p in positives] + [sim(anchors[i], q, s) for q in negatives], i)
              for i in range(n)) / n
    p2a = sum(ce([sim(positives[i], a, s) for a in anchors], i) for i in range(n)) / n
    return 0.5 * (a2p + p2a)


def valid_items(feats: torch.Tensor, mask: torch.Tensor) -> list[tuple[tuple[int, int], torch.Tensor]]:
    return [((i, k), feats[i, k]) for i in range(feats.shape[0]) for k in range(feats.shape[1]) if mask[i, k]]


def ref_clip(f):
    I, T, s = f["image_features"], f["text_features"], f["logit_scale"]
    b = I.shape[0]
    i2t = sum(ce([sim(I[i], T[j], s) for j in range(b)], i) for i in range(b)) / b
    t2i = sum(ce([sim(T[i], I[j], s) for j in range(b)], i) for i in range(b)) / b
    return 0.5 * (i2t + t2i)


def ref_negclip(f):
    negs = [v for _, v in valid_items(f["neg_text_features"], f["neg_text_mask"])]
    return ref_negclip_generic(list(f["image_features"]), list(f["text_features"]), negs, f["logit_scale"])


def ref_negimage(f):
    I, T, s = f["image_features"], f["text_features"], f["logit_scale"]
    b = I.shape[0]
    neg_imgs = [v for _, v in valid_items(f["neg_image_features"], f["neg_image_mask"])]
    t2i = sum(ce([sim(T[i], I[j], s) for j in range(b)] + [sim(T[i], x, s) for x in neg_imgs], i) for i in range(b)) / b
    i2t = sum(ce([sim(I[i], T[j], s) for j in range(b)], i) for i in range(b)) / b
    return 0.5 * (i2t + t2i)


def ref_synthetic_term(f):
    """NegCLIP(I', T', T) with general K, M: anchors are pairs (i, m) with both masks set."""
    T, s = f["text_features"], f["logit_scale"]
    caps = valid_items(f["neg_text_features"], f["neg_text_mask"])
    imgs = valid_items(f["neg_image_features"], f["neg_image_mask"])
    cap_idx = {key: n for n, (key, _) in enumerate(caps)}
    img_idx = {key: n for n, (key, _) in enumerate(imgs)}
    pairs = [key for key in cap_idx if key in img_idx]
    if not pairs:
        return torch.zeros((), dtype=torch.float64)
    i2t = t2i = 0.0
    for key in pairs:
        x, y = imgs[img_idx[key]][1], caps[cap_idx[key]][1]
        i2t = i2t + ce([sim(x, c, s) for _, c in caps] + [sim(x, t, s) for t in T], cap_idx[key])
        t2i = t2i + ce([sim(y, im, s) for _, im in imgs], img_idx[key])
    return 0.5 * (i2t + t2i) / len(pairs)


def ref_tripletclip(f):
    return ref_negclip(f) + ref_synthetic_term(f)


def ref_ceclip(f, thresholds, cmr_weight=0.2, imc_weight=0.3):
    """Returns (loss, thresholds after the update)."""
    I, T, N, mask, types, s = (f[k] for k in ("image_features", "text_features", "neg_text_features",
                                               "neg_text_mask", "neg_text_type", "logit_scale"))
    b, k = mask.shape
    itc = ref_negclip(f)
    cmr = 0.0
    for i in range(b):
        for j in range(k):
            if mask[i, j]:
                cmr = cmr + torch.relu(thresholds[types[i, j]] + sim(I[i], N[i, j], s) - sim(I[i], T[i], s))
    cmr = cmr / (b * k)
    negs = [v for _, v in valid_items(N, mask)]
    imc = sum(ce([sim(I[i], T[i], s)] + [sim(T[i], n, s) for n in negs], 0) for i in range(b)) / b
    new = thresholds.clone()
    with torch.no_grad():
        pos_mean = sum(float(sim(I[i], T[i], s)) for i in range(b)) / b
        for t in range(len(EDIT_TYPES)):
            vals = [float(sim(I[i], N[i, j], s)) for i in range(b) for j in range(k) if mask[i, j] and types[i, j] == t]
            if vals:
                new[t] = min(max(pos_mean - sum(vals) / len(vals), 0.0), 10.0)
    return itc + cmr_weight * cmr + imc_weight * imc, new


REFS = {"clip": ref_clip, "negclip": ref_negclip, "negimage": ref_negimage, "tripletclip": ref_tripletclip,
        "ceclip": lambda f: ref_ceclip(f, torch.zeros(len(EDIT_TYPES), dtype=torch.float64))[0]}


# ----------------------------------------------------------------------------- fixtures

def make_features(seed: int, b: int = 5, k: int = 3, m: int = 2, d: int = 16, scale: float = 7.0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def unit(*shape):
        return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)

    nt_mask = torch.rand(b, k, generator=g) < 0.6
    ni_mask = torch.rand(b, m, generator=g) < 0.6
    nt_mask[0] = False  # a row with no valid negative caption
    ni_mask[1] = False  # a row with no valid negative image
    nt_mask[2, 0] = ni_mask[2, 0] = True  # at least one synthetic pair
    types = torch.randint(0, 4, (b, k), generator=g)  # first four EDIT_TYPES: replace_*, swap_obj
    return {
        "image_features": unit(b, d), "text_features": unit(b, d),
        "neg_text_features": unit(b, k, d), "neg_image_features": unit(b, m, d),
        "neg_text_mask": nt_mask, "neg_image_mask": ni_mask, "neg_text_type": types,
        "logit_scale": torch.tensor(scale),
    }


def with_grad(f: dict, dtype: torch.dtype) -> dict:
    out = {}
    for key, v in f.items():
        out[key] = v.to(dtype).clone().requires_grad_(True) if key in FEATURE_KEYS else v.clone()
    return out


def value_and_grads(fn, f: dict, dtype: torch.dtype):
    leaves = with_grad(f, dtype)
    value = fn(leaves)
    value = value["loss"] if isinstance(value, dict) else value
    grads = torch.autograd.grad(value, [leaves[k] for k in FEATURE_KEYS], allow_unused=True)
    zero = lambda key: torch.zeros_like(leaves[key])  # noqa: E731
    return value.detach(), {k: (g if g is not None else zero(k)) for k, g in zip(FEATURE_KEYS, grads)}


# ----------------------------------------------------------------------------- value and gradient checks

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed,k,m", [(0, 3, 2), (1, 1, 1), (2, 2, 3), (3, 4, 4)])
def test_matches_bruteforce_value_and_gradients(name, seed, k, m):
    f = make_features(seed, k=k, m=m)
    loss = build_loss(name)
    got, got_g = value_and_grads(loss, f, torch.float32)
    want, want_g = value_and_grads(REFS[name], f, torch.float64)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    for key in FEATURE_KEYS:
        torch.testing.assert_close(got_g[key].double(), want_g[key], rtol=1e-4, atol=1e-6, msg=f"{name} d/d{key}")


def test_tripletclip_is_sum_of_two_negclips_k1():
    """K = M = 1, every pair valid (the paper): NegCLIP(I, T, T') + NegCLIP(I', T', T)."""
    f = make_features(7, k=1, m=1)
    f["neg_text_mask"][:] = True
    f["neg_image_mask"][:] = True
    out = build_loss("tripletclip")(f)
    d = {k: (v.double() if v.is_floating_point() else v) for k, v in f.items()}
    s = d["logit_scale"]
    real = ref_negclip_generic(list(d["image_features"]), list(d["text_features"]),
                               list(d["neg_text_features"][:, 0]), s)
    synth = ref_negclip_generic(list(d["neg_image_features"][:, 0]), list(d["neg_text_features"][:, 0]),
                                list(d["text_features"]), s)
    assert out["negclip_real"].item() == pytest.approx(real.item(), rel=1e-5)
    assert out["negclip_synth"].item() == pytest.approx(synth.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((real + synth).item(), rel=1e-5)
    # the first term is exactly what the negclip objective computes
    assert out["negclip_real"].item() == pytest.approx(build_loss("negclip")(f)["loss"].item(), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_masked_negatives_get_zero_gradient_and_nan_padding_is_harmless(name):
    f = make_features(11, k=3, m=3)
    base, _ = value_and_grads(build_loss(name), f, torch.float32)
    poisoned = dict(f)
    poisoned["neg_text_features"] = f["neg_text_features"].masked_fill(~f["neg_text_mask"][..., None], float("nan"))
    poisoned["neg_image_features"] = f["neg_image_features"].masked_fill(~f["neg_image_mask"][..., None], float("nan"))
    value, grads = value_and_grads(build_loss(name), poisoned, torch.float32)
    assert value.item() == base.item()
    for key in FEATURE_KEYS:
        assert torch.isfinite(grads[key]).all(), key
    assert (grads["neg_text_features"][~f["neg_text_mask"]] == 0).all()
    assert (grads["neg_image_features"][~f["neg_image_mask"]] == 0).all()


def test_clip_equals_standard_symmetric_loss():
    f = make_features(5, b=8)
    I, T, s = f["image_features"], f["text_features"], f["logit_scale"]
    logits = s * I @ T.t()
    labels = torch.arange(8)
    xent = torch.nn.functional.cross_entropy
    standard = 0.5 * (xent(logits, labels) + xent(logits.t(), labels))
    only_positives = {k: f[k] for k in ("image_features", "text_features", "logit_scale")}
    assert build_loss("clip")(only_positives)["loss"].item() == pytest.approx(standard.item(), rel=1e-6)
    # negatives in the dict are ignored by clip, and fully masked negatives reduce NegCLIP to CLIP
    assert build_loss("clip")(f)["loss"].item() == pytest.approx(standard.item(), rel=1e-6)
    f["neg_text_mask"][:] = False
    assert build_loss("negclip")(f)["loss"].item() == pytest.approx(standard.item(), rel=1e-6)


def test_masks_default_to_all_valid():
    f = make_features(4)
    full = dict(f, neg_text_mask=torch.ones_like(f["neg_text_mask"]),
                neg_image_mask=torch.ones_like(f["neg_image_mask"]))
    bare = {k: v for k, v in f.items() if k not in ("neg_text_mask", "neg_image_mask")}
    for name in ("negclip", "negimage", "tripletclip"):
        assert build_loss(name)(bare)["loss"].item() == build_loss(name)(full)["loss"].item()


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_no_synthetic_pair_gives_zero_synthetic_term():
    f = make_features(6)
    f["neg_image_mask"][:] = False
    leaves = with_grad(f, torch.float32)
    out = build_loss("tripletclip")(leaves)
    assert out["negclip_synth"].item() == 0.0
    assert out["loss"].item() == pytest.approx(build_loss("negclip")(f)["loss"].item(), rel=1e-6)
    with torch.autograd.detect_anomaly():  # rows of the synthetic term are all invalid: no NaN anywhere
        out["loss"].backward()
    for key in FEATURE_KEYS:
        assert torch.isfinite(leaves[key].grad).all(), key
    assert (leaves["neg_image_features"].grad == 0).all()


# ----------------------------------------------------------------------------- CE-CLIP thresholds

def test_ceclip_thresholds_update_use_and_reset():
    loss = build_loss("ceclip")
    f1, f2 = make_features(21, k=4), make_features(22, k=4)
    f1["neg_text_type"][:, 3] = EDIT_TYPE_INDEX["llm"]  # a type present in step 1 only
    d1 = {k: (v.double() if v.is_floating_point() else v) for k, v in f1.items()}
    d2 = {k: (v.double() if v.is_floating_point() else v) for k, v in f2.items()}
    theta0 = torch.zeros(len(EDIT_TYPES), dtype=torch.float64)

    out1 = loss(f1)  # uses theta = 0, then updates
    want1, theta1 = ref_ceclip(d1, theta0)
    assert out1["loss"].item() == pytest.approx(want1.item(), rel=1e-5)
    torch.testing.assert_close(loss.thresholds.double(), theta1, rtol=1e-5, atol=1e-5)
    assert loss.thresholds[EDIT_TYPE_INDEX["llm"]] > 0  # the random batch has s(I,T) above s(I,T') on average
    assert loss.thresholds[EDIT_TYPE_INDEX["add_att"]] == 0  # absent type keeps its value
    assert (loss.thresholds >= 0).all() and (loss.thresholds <= 10).all()

    out2 = loss(f2)  # uses theta1 (the previous step's), not theta computed on f2
    want2, theta2 = ref_ceclip(d2, theta1)
    assert out2["loss"].item() == pytest.approx(want2.item(), rel=1e-5)
    assert loss.thresholds[EDIT_TYPE_INDEX["llm"]].item() == pytest.approx(theta1[EDIT_TYPE_INDEX["llm"]].item())
    torch.testing.assert_close(loss.thresholds.double(), theta2, rtol=1e-5, atol=1e-5)

    # eval mode freezes; reset zeros; state_dict carries the thresholds (exact resume)
    frozen = loss.thresholds.clone()
    loss.eval()
    loss(f1)
    assert torch.equal(loss.thresholds, frozen)
    loss.train()
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    assert torch.equal(state["thresholds"], frozen)
    resumed = build_loss("ceclip")
    resumed.load_state_dict(state)
    assert resumed(f2)["loss"].item() == loss(f2)["loss"].item()
    assert torch.equal(resumed.thresholds, loss.thresholds)
    loss.on_epoch_start(1)
    assert (loss.thresholds == 0).all()


def test_ceclip_threshold_clamps_at_ten():
    f = make_features(30, k=2, scale=100.0)
    f["neg_text_features"] = -f["image_features"][:, None, :].expand(-1, 2, -1).clone()  # s(I,T') = -100
    f["text_features"] = f["image_features"].clone()  # s(I,T) = 100
    f["neg_text_mask"][:] = True
    loss = build_loss("ceclip")
    loss(f)
    present = torch.unique(f["neg_text_type"])
    assert (loss.thresholds[present] == 10.0).all()


def test_ceclip_weights_are_configurable():
    f = make_features(31)
    out = build_loss("ceclip", cmr_weight=0.0, imc_weight=1.0, adaptive_thresholds=False)(f)
    assert out["loss"].item() == pytest.approx((out["itc"] + out["imc"]).item(), rel=1e-6)


# ----------------------------------------------------------------------------- contract, numerics, errors

def test_needs_flags_and_registry():
    assert set(REFS) == set(NAMES), "a registered objective without a brute-force reference in REFS"
    known = {"clip": (False, False), "negclip": (True, False), "negimage": (False, True),
             "tripletclip": (True, True), "ceclip": (True, False)}
    assert {n: (LOSSES.get(n).needs_neg_text, LOSSES.get(n).needs_neg_image) for n in known} == known


def test_bf16_autocast_features_give_fp32_loss():
    f = make_features(8)
    lowp = {k: (v.bfloat16() if k in FEATURE_KEYS else v) for k, v in f.items()}
    widened = {k: (v.float() if k in FEATURE_KEYS else v) for k, v in lowp.items()}
    for name in NAMES:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = build_loss(name)(lowp)
        assert out["loss"].dtype == torch.float32
        # identical to the fp32 computation on the same (bf16-rounded) inputs: autocast was switched off
        assert out["loss"].item() == build_loss(name)(widened)["loss"].item()


def test_terms_are_detached_and_loss_has_graph():
    f = with_grad(make_features(9), torch.float32)
    out = build_loss("tripletclip")(f)
    assert out["loss"].requires_grad
    assert not out["negclip_real"].requires_grad and not out["negclip_synth"].requires_grad


def test_clear_errors():
    f = make_features(10)
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        build_loss("nope")
    with pytest.raises(InputError, match="cmr_weigth"):
        build_loss("ceclip", cmr_weigth=0.1)
    with pytest.raises(InputError, match=r"loss 'clip' got unknown option\(s\) \['temperature'\]; it accepts: none"):
        build_loss("clip", temperature=0.07)
    with pytest.raises(KeyError, match="neg_image_features"):
        build_loss("tripletclip")({k: v for k, v in f.items() if k != "neg_image_features"})
    with pytest.raises(ValueError, match=r"neg_text_mask has shape \[5,2\], expected \[5,3\]"):
        build_loss("negclip")(dict(f, neg_text_mask=f["neg_text_mask"][:, :2]))
    with pytest.raises(ValueError, match="neg_text_type holds ids outside"):
        build_loss("ceclip")(dict(f, neg_text_type=torch.full_like(f["neg_text_type"], len(EDIT_TYPES))))


def test_logit_scale_gradient_matches_analytic_clip():
    """d/ds of CLIP at s: mean over rows of (E_softmax[cos] - cos_ii), both directions averaged."""
    f = make_features(12, b=6)
    s = torch.tensor(5.0, requires_grad=True)
    build_loss("clip")(dict(f, logit_scale=s))["loss"].backward()
    cos = f["image_features"] @ f["text_features"].t()
    p_i, p_t = torch.softmax(5.0 * cos, 1), torch.softmax(5.0 * cos.t(), 1)
    want = 0.5 * (((p_i * cos).sum(1) - cos.diag()).mean() + ((p_t * cos.t()).sum(1) - cos.diag()).mean())
    assert s.grad.item() == pytest.approx(want.item(), rel=1e-5)
    assert math.isfinite(s.grad.item())
