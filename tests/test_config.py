"""Config: YAML presets, _base_ includes, dotted overrides, unknown keys are errors, round trip."""
from pathlib import Path

import pytest
import yaml

from tripletclip.config import ConfigError, config_from_dict, config_to_dict, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=1e-4", "train.steps=100", "train.precision=fp32",
                             "eval.benchmarks=sugarcrepe,world", "loss.kwargs={cmr_weight: 0.5}"])
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.steps == 100
    assert cfg.eval.benchmarks == ["sugarcrepe", "world"]
    assert cfg.loss.kwargs == {"cmr_weight": 0.5}


def test_overrides_take_the_type_of_their_field(tmp_path):
    """nanoGPT's configurator rule: a str field keeps the text as written, numbers convert, the rest is checked."""
    cfg = load_config(None, ["train.name=1e3", "notes=3.10", "optim.lr=5E-4", "train.seed=1_000", "data.train=007",
                             "loss.kwargs.cmr_weight=1e-2", "model.pretrained="])
    assert (cfg.train.name, cfg.notes, cfg.data.train, cfg.model.pretrained) == ("1e3", "3.10", "007", "")
    assert cfg.optim.lr == 5e-4 and cfg.train.seed == 1000 and cfg.loss.kwargs == {"cmr_weight": 0.01}
    assert load_config(None, ["notes=null"]).notes is None
    save_config(cfg, tmp_path / "c.yaml")  # strings that look like numbers stay strings through a saved config
    again = load_config(tmp_path / "c.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("override, fragment", [
    ("optim.lrr=1", "unknown key 'lrr'"),
    ("nosection.x=1", "unknown key 'nosection'"),
    ("train.steps=abc", "expected an integer"),
    ("train.progress=maybe", "expected true/false"),
    ("train.steps", "expected key=value"),
    ("train.steps=1e3", "expected an integer, got '1e3'"),
    ("train.steps=5.0", "expected an integer, got '5.0'"),
    ("optim.lr=fast", "expected a number, got 'fast'"),
])
def test_bad_overrides_fail_with_a_clear_line(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


def test_base_include_and_round_trip(tmp_path):
    (tmp_path / "base.yaml").write_text("optim: {lr: 0.001, warmup_steps: 5}\ntrain: {steps: 10}\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain: {steps: 20}\nloss: {name: negclip}\n")
    cfg = load_config(tmp_path / "child.yaml", ["optim.warmup_steps=7"])
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.train.steps, cfg.loss.name) == (0.001, 7, 20, "negclip")
    save_config(cfg, tmp_path / "resolved.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "resolved.yaml").read_text()))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_unknown_key_in_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*stepz"):
        load_config(bad)


def test_every_shipped_preset_loads():
    presets = sorted((REPO / "configs").glob("*.yaml"))
    assert presets, "configs/ holds no presets"
    for p in presets:
        load_config(p)
