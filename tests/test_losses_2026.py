"""FSC-CLIP, DeGLA and the composable regularisers (CyCLIP, distillation) against brute-force references.

References are written from the equations in docs/objectives.md: Python loops over rows, tokens and
candidate columns, softmax and log-sum-exp by hand, float64. The losses under test are vectorised fp32.
Gradients are compared for every feature tensor (tokens and logit_scale included) with random masks that
include rows without any valid negative; tests/test_losses.py covers the objectives without extra needs.
"""
from __future__ import annotations

import math

import pytest
import torch

from tripletclip.config import RunConfig
from tripletclip.errors import InputError
from tripletclip.losses import LOSSES, Regularised, build_loss, build_objective, teacher_kind

torch.set_num_threads(1)
KEYS = ["image_features", "text_features", "neg_text_features", "neg_image_features", "image_tokens",
        "text_tokens", "neg_text_tokens", "pos_text_features", "logit_scale"]
EXTRA = [n for n in LOSSES.names()
         if LOSSES.get(n).needs_tokens or LOSSES.get(n).needs_teacher or LOSSES.get(n).needs_pos_text]


def make_features(seed: int, b: int = 4, k: int = 3, m: int = 2, d: int = 8, p: int = 5, L: int = 6,
                  scale: float = 7.0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def unit(*shape):
        return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)

    nt_mask = torch.rand(b, k, generator=g) < 0.6
    nt_mask[0] = False  # a row with no valid negative caption
    nt_mask[1, 0] = True
    lengths = torch.randint(2, L + 1, (b,), generator=g)
    neg_lengths = torch.randint(2, L + 1, (b, k), generator=g)
    return {
        "image_features": unit(b, d), "text_features": unit(b, d),
        "neg_text_features": unit(b, k, d), "neg_image_features": unit(b, m, d),
        "neg_text_mask": nt_mask, "neg_image_mask": torch.rand(b, m, generator=g) < 0.6,
        "neg_text_type": torch.randint(0, 4, (b, k), generator=g),
        "image_tokens": torch.randn(b, p, d, generator=g), "text_tokens": torch.randn(b, L, d, generator=g),
        "text_token_mask": torch.arange(L)[None, :] < lengths[:, None],
        "neg_text_tokens": torch.randn(b, k, L, d, generator=g),
        "neg_text_token_mask": torch.arange(L)[None, None, :] < neg_lengths[..., None],
        "teacher_image_features": unit(b, d), "teacher_text_features": unit(b, d),
        "pos_text_features": unit(b, 1, d), "logit_scale": torch.tensor(scale),
    }


def value_and_grads(fn, f: dict, dtype: torch.dtype):
    leaves = {k: (v.to(dtype).clone().requires_grad_(True) if k in KEYS else
                  (v.to(dtype) if v.is_floating_point() else v.clone())) for k, v in f.items()}
    out = fn(leaves)
    value = out["loss"] if isinstance(out, dict) else out
    grads = torch.autograd.grad(value, [leaves[k] for k in KEYS], allow_unused=True)
    return value.detach(), {k: (gr if gr is not None else torch.zeros_like(leaves[k])) for k, gr in zip(KEYS, grads)}


# ----------------------------------------------------------------------------- brute-force references

def lse(xs):
    mx = max(float(x.detach()) for x in xs)
    return torch.log(sum(torch.exp(x - mx) for x in xs)) + mx


def ce(scores, target):
    return lse(scores) - scores[target]


def norm(v):
    return v / torch.sqrt((v * v).sum()).clamp_min(1e-12)


def ref_clip(f):
    I, T, s = f["image_features"], f["text_features"], f["logit_scale"]
    b = len(I)
    i2t = sum(ce([s * I[i] @ T[j] for j in range(b)], i) for i in range(b)) / b
    t2i = sum(ce([s * T[i] @ I[j] for j in range(b)], i) for i in range(b)) / b
    return 0.5 * (i2t + t2i)


def ref_scr(scores, gamma, eps):
    """sum_c y_c (1 - p_c)^gamma (-log p_c); scores[0] is the positive."""
    n = len(scores)
    z = lse(scores)
    total = 0.0
    for c, sc in enumerate(scores):
        nll = z - sc
        y = (1 - eps + eps / n) if c == 0 else eps / n
        total = total + y * (1 - torch.exp(-nll)) ** gamma * nll
    return total


def ref_local_score(v, w, n_tokens, s):
    """logsumexp_t s <normalise(sum_p a_tp v_p), normalise(w_t)>, a from detached min-max over patches."""
    per_token = []
    for t in range(n_tokens):
        sims = [float(w[t].detach() @ v[q].detach()) for q in range(len(v))]
        lo, hi = min(sims), max(sims)
        a = [(x - lo) / (hi - lo) for x in sims]
        a = [x / sum(a) for x in a]
        u = norm(sum(a[q] * v[q] for q in range(len(v))))
        per_token.append(s * (u @ norm(w[t])))
    return lse(per_token)


def ref_fscclip(f, gw=0.5, lw=0.2, gamma=2.0, eps=0.02):
    I, T, N, mask, s = (f[k] for k in ("image_features", "text_features", "neg_text_features", "neg_text_mask",
                                        "logit_scale"))
    V, W, NW = f["image_tokens"], f["text_tokens"], f["neg_text_tokens"]
    n_tok, n_neg_tok = f["text_token_mask"].sum(-1), f["neg_text_token_mask"].sum(-1)
    rows = [i for i in range(len(I)) if mask[i].any()]
    glob = loc = 0.0
    for i in rows:
        ks = [k for k in range(mask.shape[1]) if mask[i, k]]
        glob = glob + ref_scr([s * I[i] @ T[i]] + [s * I[i] @ N[i, k] for k in ks], gamma, eps)
        loc = loc + ref_scr([ref_local_score(V[i], W[i], int(n_tok[i]), s)]
                            + [ref_local_score(V[i], NW[i, k], int(n_neg_tok[i, k]), s) for k in ks], gamma, eps)
    return ref_clip(f) + gw * glob / len(rows) + lw * loc / len(rows)


def ref_negclip(f):
    I, T, N, mask, s = (f[k] for k in ("image_features", "text_features", "neg_text_features", "neg_text_mask",
                                        "logit_scale"))
    b = len(I)
    negs = [N[i, k] for i in range(b) for k in range(mask.shape[1]) if mask[i, k]]
    i2t = sum(ce([s * I[i] @ T[j] for j in range(b)] + [s * I[i] @ q for q in negs], i) for i in range(b)) / b
    t2i = sum(ce([s * T[i] @ I[j] for j in range(b)], i) for i in range(b)) / b
    return 0.5 * (i2t + t2i)


def ref_distill(f):
    I, T, TI, TT = (f[k] for k in ("image_features", "text_features", "teacher_image_features",
                                   "teacher_text_features"))
    return sum(((I[i] - TI[i]) ** 2).sum() + ((T[i] - TT[i]) ** 2).sum() for i in range(len(I))) / len(I)


def ref_degla(f, wi=0.1, wt=0.1, wd=1.0, tau=10.0):
    I, T, N, mask, s, TT = (f[k] for k in ("image_features", "text_features", "neg_text_features",
                                            "neg_text_mask", "logit_scale", "teacher_text_features"))
    b = len(I)
    igc = tgc = 0.0
    for i in range(b):
        ks = [k for k in range(mask.shape[1]) if mask[i, k]]
        igc = igc + ce([s * I[i] @ T[i]] + [s * I[i] @ N[i, k] for k in ks], 0)
        tgc = tgc + ce([tau * T[i] @ TT[i]] + [tau * T[i] @ N[i, k] for k in ks], 0)
    return ref_negclip(f) + wi * igc / b + wt * tgc / b + wd * ref_distill(f)


def ref_cyclip(f):
    """(cross, in) = 1/N sum_{j,k} (<I_j,T_k> - <I_k,T_j>)^2 and 1/N sum_{j,k} (<I_j,I_k> - <T_j,T_k>)^2."""
    I, T = f["image_features"], f["text_features"]
    n = len(I)
    cross = sum((I[j] @ T[k] - I[k] @ T[j]) ** 2 for j in range(n) for k in range(n)) / n
    inm = sum((I[j] @ I[k] - T[j] @ T[k]) ** 2 for j in range(n) for k in range(n)) / n
    return cross, inm


def ref_tripletclip_cyclip(f, wc=0.25, wi=0.25):
    from importlib import util
    from pathlib import Path

    spec = util.spec_from_file_location("_tl", Path(__file__).parent / "test_losses.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cross, inm = ref_cyclip(f)
    return module.ref_tripletclip(f) + wc * cross + wi * inm


def ref_clic(f, wc=1.0, ws=1.0, wu=1.0):
    """Eqs. 4-7 of CLIC with positives p_1 = T and p_2 = pos_text[:, 0]."""
    I, N, mask, s = f["image_features"], f["neg_text_features"], f["neg_text_mask"], f["logit_scale"]
    sets = [f["text_features"]] + [f["pos_text_features"][:, m] for m in range(f["pos_text_features"].shape[1])]
    b = len(I)
    cont = sneg = 0.0
    for P in sets:
        i2t = sum(ce([s * I[i] @ P[j] for j in range(b)], i) for i in range(b)) / b
        t2i = sum(ce([s * P[i] @ I[j] for j in range(b)], i) for i in range(b)) / b
        cont = cont + 0.5 * (i2t + t2i)
        sneg = sneg + sum(ce([s * I[i] @ P[i]] + [s * I[i] @ N[i, k] for k in range(mask.shape[1]) if mask[i, k]], 0)
                          for i in range(b)) / b
    uni = sum(((sets[0][i] - sets[1][i]) ** 2).sum() for i in range(b)) / b
    return wc * cont / len(sets) + ws * sneg / len(sets) + wu * uni


REFS = {"fscclip": ref_fscclip, "degla": ref_degla, "clic": ref_clic}


# ----------------------------------------------------------------------------- value and gradient checks

def assert_matches(fn, ref, f):
    got, got_g = value_and_grads(fn, f, torch.float32)
    want, want_g = value_and_grads(ref, f, torch.float64)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    for key in KEYS:
        assert torch.isfinite(got_g[key]).all(), key
        torch.testing.assert_close(got_g[key].double(), want_g[key], rtol=1e-4, atol=1e-5, msg=f"d/d{key}")


def test_every_objective_with_extra_needs_has_a_reference():
    assert set(EXTRA) == set(REFS)


@pytest.mark.parametrize("name", sorted(REFS))
@pytest.mark.parametrize("seed,k", [(0, 3), (1, 1), (2, 2)])
def test_matches_bruteforce_value_and_gradients(name, seed, k):
    assert_matches(build_loss(name), REFS[name], make_features(seed, k=k))


def test_fscclip_options_match_reference():
    f = make_features(5)
    loss = build_loss("fscclip", global_weight=1.0, local_weight=0.7, focal_gamma=0.0, label_smoothing=0.1)
    assert_matches(loss, lambda x: ref_fscclip(x, 1.0, 0.7, 0.0, 0.1), f)


def test_fscclip_scr_with_no_smoothing_and_no_focus_is_cross_entropy():
    f = make_features(6)
    out = build_loss("fscclip", focal_gamma=0.0, label_smoothing=0.0)(f)
    I, T, N, mask, s = (f[k] for k in ("image_features", "text_features", "neg_text_features", "neg_text_mask",
                                        "logit_scale"))
    rows = [i for i in range(len(I)) if mask[i].any()]
    logits = [torch.cat([s * (I[i] @ T[i])[None], s * N[i][mask[i]] @ I[i]]) for i in rows]
    want = sum(torch.nn.functional.cross_entropy(z[None], torch.tensor([0])) for z in logits) / len(rows)
    assert out["hn_global"].item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(REFS))
def test_masked_negatives_and_tokens_are_inert(name):
    """NaN in masked negatives, their tokens and padded token positions changes nothing and gets zero gradient."""
    f = make_features(11)
    base, _ = value_and_grads(build_loss(name), f, torch.float32)
    poisoned = dict(f)
    nt = f["neg_text_mask"]
    poisoned["neg_text_features"] = f["neg_text_features"].masked_fill(~nt[..., None], float("nan"))
    pad = ~(f["neg_text_token_mask"] & nt[..., None])
    poisoned["neg_text_tokens"] = f["neg_text_tokens"].masked_fill(pad[..., None], float("nan"))
    value, grads = value_and_grads(build_loss(name), poisoned, torch.float32)
    assert value.item() == pytest.approx(base.item(), rel=1e-6)
    for key in KEYS:
        assert torch.isfinite(grads[key]).all(), key
    assert (grads["neg_text_features"][~nt] == 0).all()
    assert (grads["neg_text_tokens"][pad] == 0).all()


def test_cyclip_on_tripletclip_matches_reference():
    cfg = RunConfig().loss
    cfg.name, cfg.cyclip_cross, cfg.cyclip_in = "tripletclip", 0.25, 0.25
    loss = build_objective(cfg)
    assert isinstance(loss, Regularised) and loss.name == "tripletclip"
    assert (loss.needs_neg_text, loss.needs_neg_image, loss.needs_teacher) == (True, True, False)
    f = make_features(3)
    f["neg_image_mask"][2, 0] = f["neg_text_mask"][2, 0] = True
    assert_matches(loss, ref_tripletclip_cyclip, f)
    out = loss(f)
    d = {k: (v.double() if v.is_floating_point() else v) for k, v in f.items()}
    cross, inm = ref_cyclip(d)
    assert out["cyclip_cross"].item() == pytest.approx(cross.item(), rel=1e-5)
    assert out["cyclip_in"].item() == pytest.approx(inm.item(), rel=1e-5)


def test_cyclip_matches_official_formula():
    """CyCLIP's code: mean((s I T^T - s T I^T)^2) / s^2 * N, and the same with I I^T - T T^T."""
    f = make_features(4, b=6)
    I, T = f["image_features"], f["text_features"]
    s = 7.0
    official_cross = ((s * I @ T.t() - (s * I @ T.t()).t()) ** 2).mean() / s**2 * 6
    official_in = ((s * I @ I.t() - s * T @ T.t()) ** 2).mean() / s**2 * 6
    cfg = RunConfig().loss
    cfg.name, cfg.cyclip_cross, cfg.cyclip_in = "clip", 1.0, 1.0
    out = build_objective(cfg)(f)
    assert out["cyclip_cross"].item() == pytest.approx(official_cross.item(), rel=1e-5)
    assert out["cyclip_in"].item() == pytest.approx(official_in.item(), rel=1e-5)
    # symmetric features (T = I) are perfectly consistent: both terms vanish
    same = dict(f, text_features=f["image_features"].clone())
    out = build_objective(cfg)(same)
    assert out["cyclip_cross"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["cyclip_in"].item() == pytest.approx(0.0, abs=1e-6)


def test_distill_weight_on_any_objective():
    cfg = RunConfig().loss
    cfg.name, cfg.distill_weight = "negclip", 0.5
    loss = build_objective(cfg)
    assert loss.needs_teacher and teacher_kind(cfg, loss) == "base"
    assert_matches(loss, lambda x: ref_negclip(x) + 0.5 * ref_distill(x), make_features(8))
    cfg.teacher = "ema"
    assert teacher_kind(cfg, loss) == "ema"
    # a teacher equal to the student costs nothing
    f = make_features(9)
    f["teacher_image_features"], f["teacher_text_features"] = f["image_features"], f["text_features"]
    assert loss(f)["distill"].item() == 0.0


def test_plain_objective_is_not_wrapped_and_degla_defaults_to_ema():
    cfg = RunConfig().loss
    cfg.name = "ceclip"
    assert type(build_objective(cfg)).__name__ == "CeClipLoss"  # checkpoint layout unchanged
    cfg.name = "degla"
    loss = build_objective(cfg)
    assert teacher_kind(cfg, loss) == "ema"
    cfg.name = "clip"
    assert teacher_kind(cfg, build_objective(cfg)) == ""


@pytest.mark.parametrize("key,value,match", [("cyclip_cross", -1.0, "loss.cyclip_cross"),
                                             ("distill_weight", math.inf, "loss.distill_weight"),
                                             ("teacher", "frozen", "loss.teacher"),
                                             ("ema_decay", 1.0, "loss.ema_decay")])
def test_bad_regulariser_settings_are_user_errors(key, value, match):
    cfg = RunConfig().loss
    setattr(cfg, key, value)
    with pytest.raises(InputError, match=match):
        build_objective(cfg)


def test_a_teacher_without_use_is_refused():
    cfg = RunConfig().loss
    cfg.name, cfg.teacher = "clip", "ema"
    with pytest.raises(InputError, match="loss.teacher=ema has no effect"):
        build_objective(cfg)


def test_missing_tokens_or_teacher_is_a_clear_error():
    f = make_features(10)
    with pytest.raises(KeyError, match="image_tokens.*needs_tokens"):
        build_loss("fscclip")({k: v for k, v in f.items() if k != "image_tokens"})
    with pytest.raises(KeyError, match="teacher_text_features.*needs_teacher"):
        build_loss("degla")({k: v for k, v in f.items() if k != "teacher_text_features"})
    with pytest.raises(InputError, match="normalizer"):
        build_loss("fscclip", normalizer="max")


# ----------------------------------------------------------------------------- CLIC's batch transform

def test_clic_pairs_concatenate_and_swap_like_the_tokenizer():
    from tripletclip.models import create_model

    bundle = create_model("test-vit-tiny")
    tok = bundle.tokenizer
    caps = ["a red cube left of a blue ball", "two green cones", "dog dog", "dog"]
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(4, 3, 8, 6, generator=g), "text": tok(caps),
             "neg_text": torch.zeros(4, 1, tok.context_length, dtype=torch.long),
             "neg_text_mask": torch.ones(4, 1, dtype=torch.bool), "neg_text_type": torch.zeros(4, 1, dtype=torch.long),
             "neg_image": torch.zeros(4, 1, 3, 8, 6), "neg_image_mask": torch.ones(4, 1, dtype=torch.bool),
             "key": ["a", "b", "c", "d"]}
    transform = build_loss("clic").batch_transform(tok)
    out = transform(batch)
    assert out["image"].shape == (2, 3, 8, 6) and out["key"] == ["a+b", "c+d"]
    assert torch.equal(out["text"], tok([caps[0] + " " + caps[1], caps[2] + " " + caps[3]]))
    assert torch.equal(out["pos_text"][:, 0], tok([caps[1] + " " + caps[0], caps[3] + " " + caps[2]]))
    # one word of each caption swapped: same multiset of words as p_1, a different sequence
    words = lambda ids: [tok.decoder[i] for i in ids.tolist() if i not in (0, tok.sot_token_id, tok.eot_token_id)]  # noqa: E731
    neg, pos = words(out["neg_text"][0, 0]), words(out["text"][0])
    assert sorted(neg) == sorted(pos) and neg != pos
    diff = [i for i, (x, y) in enumerate(zip(neg, pos)) if x != y]
    assert len(diff) == 2 and diff[0] < 8 <= diff[1]  # 8 words in caption a: one position in each caption
    assert out["neg_text_mask"][:, 0].tolist() == [True, False]  # one word repeated: no swap changes it
    assert not out["neg_image_mask"].any()
    # the image is the side-by-side pair resized back to the input size
    pair = torch.cat([batch["image"][0], batch["image"][1]], dim=-1)[None]
    want = torch.nn.functional.interpolate(pair, size=(8, 6), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(out["image"][:1], want)
    again = transform(batch)  # deterministic in the data: a resumed run draws the same swaps
    assert torch.equal(again["neg_text"], out["neg_text"])
    with pytest.raises(InputError, match="batch_size must be even"):
        transform({k: v[:3] for k, v in batch.items()})
