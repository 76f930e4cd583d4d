"""Model formats: tripletclip runs and research checkpoints as ``pretrained``, with clear errors on a mismatch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tripletclip.config import load_config
from tripletclip.data.testing import write_synthetic_shards
from tripletclip.models import create_model, load_run_model
from tripletclip.models.factory import save_random_weights
from tripletclip.models.weights import WeightsError
from tripletclip.train import train

MODEL = "test-vit-tiny"


def _equal_weights(a: torch.nn.Module, b: dict[str, torch.Tensor]) -> bool:
    own = a.state_dict()
    return set(own) == set(b) and all(torch.equal(own[k].cpu(), b[k].cpu()) for k in own)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 3-step tripletclip run of the tiny ViT (one checkpoint at step 3)."""
    root = tmp_path_factory.mktemp("run")
    write_synthetic_shards(root / "shards", n=24, shard_size=12)
    cfg = load_config(None, [f"data.train={root / 'shards'}/train-{{000000..000001}}.tar", "data.workers=0",
                             f"model.name={MODEL}", "train.batch_size=8", "train.steps=3", "train.save_every=3",
                             "train.log_every=3", f"train.output_dir={root}", "train.name=base", "train.progress=false",
                             "train.threads=1"])
    torch.manual_seed(0)
    return Path(train(cfg)["run_dir"])


def test_pretrained_accepts_run_checkpoint_folder_and_file(run):
    ckpt = run / "checkpoints" / "step_00000003"
    weights = load_file(str(ckpt / "model.safetensors"))
    for source in (run, ckpt, ckpt / "model.safetensors"):
        torch.manual_seed(123)  # another random init, which the checkpoint must overwrite
        b = create_model(MODEL, str(source))
        assert _equal_weights(b.model, weights), source
        ident = b.identity
        assert ident["format"] == "tripletclip-checkpoint" and ident["step"] == 3
        assert ident["checkpoint"] == str(ckpt.resolve()) and len(ident["weights_sha256"]) == 64
    assert load_run_model(run).identity["weights_sha256"] == ident["weights_sha256"]


def test_fine_tune_from_an_earlier_run(run, tmp_path):
    """``train model.pretrained=RUN`` starts from the run's weights (its step-0 weights equal the checkpoint's)."""
    cfg = load_config(None, [f"data.train={run.parent / 'shards'}/train-{{000000..000001}}.tar", "data.workers=0",
                             f"model.name={MODEL}", f"model.pretrained={run}", "train.batch_size=8", "train.steps=1",
                             "train.log_every=1", f"train.output_dir={tmp_path}", "train.name=ft",
                             "train.progress=false", "train.threads=1", "optim.lr=1e-12"])
    out = Path(train(cfg)["run_dir"])
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["format"] == "tripletclip-checkpoint" and info["model"]["step"] == 3
    # lr 1e-12: one Adam step moves each weight by ~1e-12, so the fine-tune still holds the earlier run's weights
    before = load_file(str(run / "checkpoints" / "step_00000003" / "model.safetensors"))
    after = load_file(str(next((out / "checkpoints").glob("step_*")) / "model.safetensors"))
    assert all(torch.allclose(before[k], after[k], atol=1e-8) for k in before)
    fresh = create_model(MODEL).model.state_dict()
    assert not torch.allclose(fresh["visual.conv1.weight"], after["visual.conv1.weight"], atol=1e-3)


def test_folder_without_weights_and_wrong_architecture_are_one_line_errors(run, tmp_path):
    with pytest.raises(WeightsError, match="no weights found: expected a tripletclip run or checkpoint folder"):
        create_model(MODEL, str(tmp_path))
    with pytest.raises(WeightsError) as e:
        create_model("world-vit-tiny", str(run))
    msg = str(e.value)
    assert "\n" not in msg and "weights do not fit model world-vit-tiny" in msg
    assert "1 shapes differ (weights vs model), first: visual.conv1.weight [64, 3, 8, 8] vs [64, 3, 16, 16]" in msg


def test_damaged_run_and_transformers_folder_as_pretrained(run, tmp_path):
    import shutil

    from tripletclip.errors import UserError

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    weights = copy / "checkpoints" / "step_00000003" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor: the recorded sha256 no longer matches
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged checkpoint: model.safetensors does not match the sha256"):
        create_model(MODEL, str(copy))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="for a transformers folder use --model hf:"):
        create_model(MODEL, str(tmp_path / "hf"))


def test_quick_gelu_swap_of_a_run_is_refused(run):
    with pytest.raises(WeightsError, match="GELU.*different network"):
        create_model(MODEL, str(run), force_quick_gelu=True)


def test_open_clip_training_checkpoint_with_module_prefix(tmp_path):
    """NegCLIP's release layout: {"epoch", "state_dict": {"module.<key>": ...}, "optimizer"}, read with weights_only."""
    plain = save_random_weights(MODEL, tmp_path / "plain.pt", seed=5)
    state = torch.load(plain, weights_only=True)
    wrapped = {"epoch": 5, "name": "negclip", "state_dict": {f"module.{k}": v for k, v in state.items()},
               "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0, 1]}]}}
    torch.save(wrapped, tmp_path / "negclip.pth")
    b = create_model(MODEL, str(tmp_path / "negclip.pth"))
    assert _equal_weights(b.model, state)
    assert b.identity["format"] == "state-dict" and b.identity["unwrapped"] == ["state_dict", "module."]


class Custom:
    """A pickled object that weights_only=True will not construct."""


def test_pickled_code_is_refused_but_argparse_args_are_read(tmp_path):
    import argparse

    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": Custom()}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="weights_only=True.*plain state dict"):
        create_model(MODEL, str(tmp_path / "bad.pt"))
    # open_clip-style training checkpoints often store their argparse Namespace: plain data, accepted
    state = torch.load(save_random_weights(MODEL, tmp_path / "w.pt", seed=1), weights_only=True)
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-5, model="ViT-B-32")}, tmp_path / "ok.pt")
    assert _equal_weights(create_model(MODEL, str(tmp_path / "ok.pt")).model, state)
