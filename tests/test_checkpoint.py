"""Checkpoints: atomic layout, weights_only loading, RNG round trip, pruning, optimizer schedule."""
import random

import numpy as np
import pytest
import torch

from tripletclip.config.schema import OptimConfig
from tripletclip.models import load_run_model
from tripletclip.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tripletclip.train.optim import build_optimizer, lr_multiplier


def test_rng_round_trip_reproduces_every_generator():
    random.seed(1); np.random.seed(2); torch.manual_seed(3)
    np.random.randn()  # leave numpy with a cached gaussian
    state = rng_state()
    first = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    random.seed(9); np.random.seed(9); torch.manual_seed(9)
    set_rng_state(state)
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == first


def test_checkpoint_is_atomic_pruned_and_loads_without_pickled_code(tmp_path):
    from tripletclip.config import RunConfig, config_to_dict
    from tripletclip.models import create_model

    model = create_model("test-vit-tiny").model
    opt = build_optimizer(model, OptimConfig())
    model(torch.randn(2, 3, 32, 32), torch.randint(0, 100, (2, 32)))[0].sum().backward()
    opt.step()
    meta = {"config": config_to_dict(RunConfig()), "code_version": {"package": "x"}}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, {"step": step, "optimizer": opt.state_dict(), "rng": rng_state()}, meta, keep=2)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["latest", "step_00000002", "step_00000003"]  # no temporary folder left behind
    weights, state, m = load_checkpoint(tmp_path)  # torch.load(weights_only=True) inside
    assert state["step"] == 3 and m["step"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    opt2 = build_optimizer(model, OptimConfig())
    opt2.load_state_dict(state["optimizer"])
    bundle = load_run_model(tmp_path)
    assert bundle.identity["step"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[k], v)


def test_no_weight_decay_on_gains_biases_and_logit_scale():
    from tripletclip.models import create_model

    model = create_model("test-vit-tiny").model
    opt = build_optimizer(model, OptimConfig(weight_decay=0.5))
    no_decay = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[1]["weight_decay"] == 0.5
    for name, p in model.named_parameters():
        excluded = p.ndim < 2 or "bias" in name or "logit_scale" in name
        assert (id(p) in no_decay) == excluded, name


def test_lr_mult_gives_prefixed_parameters_their_rate_and_the_schedule_scales_all():
    from tripletclip.config import ConfigError
    from tripletclip.models import create_model
    from tripletclip.train.optim import build_scheduler

    model = create_model("test-vit-tiny").model
    cfg = OptimConfig(lr=1e-3, weight_decay=0.5, warmup_steps=4, lr_mult={"visual.": 5.0, "visual.proj": 2.0})
    opt = build_optimizer(model, cfg)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    plain = {id(p): g["weight_decay"] for g in build_optimizer(model, OptimConfig(weight_decay=0.5)).param_groups
             for p in g["params"]}
    for name, p in model.named_parameters():  # brute force: the longest prefix, decay as without lr_mult
        want = 2.0 if name.startswith("visual.proj") else 5.0 if name.startswith("visual.") else 1.0
        assert rate[id(p)] == (pytest.approx(1e-3 * want), plain[id(p)]), name
    sched = build_scheduler(opt, cfg, total_steps=20)
    assert [g["lr"] for g in opt.param_groups][:2] == [pytest.approx(2.5e-4)] * 2  # warm-up step 0 of 4
    assert sorted({round(g["lr"] / g["initial_lr"], 9) for g in opt.param_groups}) == [0.25]
    sched.step()
    assert sorted({round(g["lr"] / g["initial_lr"], 9) for g in opt.param_groups}) == [0.5]
    # without lr_mult: exactly open_clip's two groups (the default runs' optimiser state is unchanged)
    assert len(build_optimizer(model, OptimConfig()).param_groups) == 2
    with pytest.raises(ConfigError, match="no trainable parameter starts with"):
        build_optimizer(model, OptimConfig(lr_mult={"vision.": 2.0}))
    with pytest.raises(ConfigError, match="must be > 0"):
        build_optimizer(model, OptimConfig(lr_mult={"visual.": 0.0}))


def test_warmup_then_cosine():
    assert lr_multiplier(0, 100, 10) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, 10) == pytest.approx(1.0)
    assert lr_multiplier(55, 100, 10) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
