"""What you set is what runs: the demo's base takes only what shapes the base, its cache key comes from the
resolved config, the shipped base stays the default demo's, and settings that cannot work are refused in one
line before the world is built (issue 26; the typo case of issue 20)."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tripletclip.config import ConfigError, config_from_dict, config_to_dict
from tripletclip.config.load import deep_merge
from tripletclip.demo.config import ARCHITECTURE_KEYS, RUNTIME_KEYS, load_demo_config, settings_diff
from tripletclip.errors import InputError

FINE_TUNING = ["run.model.lock_image=true", "run.model.lock_image_unlocked_groups=1", "run.model.lock_text=true",
               "run.data.max_neg_text=4", "run.train.steps=600", "run.train.batch_size=16", "run.optim.lr=1e-5",
               "run.optim.warmup_steps=0", "run.loss.name=negclip", "run.train.seed=7"]


def _key(preset, overrides=()):
    from tripletclip.demo.base import base_identity, base_key
    from tripletclip.world import spec_preset

    cfg = load_demo_config(preset, overrides)
    return base_key(base_identity(cfg, spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json(), 48))


@pytest.mark.parametrize("preset", ["demo", "demo-quick"])
def test_fine_tuning_keys_reach_the_runs_and_never_the_base(preset):
    plain, tuned = load_demo_config(preset), load_demo_config(preset, FINE_TUNING)
    assert config_to_dict(tuned.base_config()) == config_to_dict(plain.base_config())
    run = tuned.run_config()
    assert (run.model.lock_image, run.model.lock_image_unlocked_groups, run.model.lock_text) == (True, 1, True)
    assert (run.data.max_neg_text, run.train.steps, run.optim.lr, run.loss.name) == (4, 600, 1e-5, "negclip")
    base = tuned.base_config()
    assert not base.model.lock_image and not base.model.lock_text and base.loss.name == "clip"
    assert not base.data.use_neg_text and not base.data.use_neg_image
    diff = settings_diff(tuned, plain)
    # the default regime already locks the image trunk (demo.yaml): a setting equal to the preset is no difference
    assert diff["base"] == {} and diff["run"]["model.lock_text"] == [False, True]
    assert "model.lock_image" not in diff["run"]
    assert _key(preset, FINE_TUNING) == _key(preset)


def test_base_keys_reach_the_base_and_shared_keys_reach_both():
    base = load_demo_config("demo-quick", ["base.model.lock_image=true", "base.optim.lr=1e-3"]).base_config()
    assert base.model.lock_image and base.optim.lr == 1e-3
    shared = load_demo_config("demo-quick", ["run.model.name=world-vit-tiny", "run.train.threads=2",
                                             "run.train.precision=fp32"])
    assert shared.base_config().model.name == shared.run_config().model.name == "world-vit-tiny"
    assert shared.base_config().train.threads == 2 and shared.base_config().train.precision == "fp32"
    own = load_demo_config("demo-quick", ["run.train.threads=2", "base.train.threads=1"]).base_config()
    assert own.train.threads == 1  # a runtime key given as base.* is the base's own
    assert {k.split(".")[0] for k in ARCHITECTURE_KEYS + RUNTIME_KEYS} <= {"model", "data", "train"}
    with pytest.raises(ConfigError, match=r"^demo preset: base.model.name='world-vit-tiny' differs from run"):
        load_demo_config("demo-quick", ["base.model.name=world-vit-tiny"])
    with pytest.raises(ConfigError, match=r"^demo preset: base.loss=.*always plain CLIP"):
        load_demo_config("demo-quick", ["base.loss.name=negclip"])


def _resolved_base_values():
    """Every scalar of the default demo's resolved base config, as `base.section.key=value` overrides."""
    out = []
    for section, values in config_to_dict(load_demo_config("demo").base_config()).items():
        if section in ("loss", "eval") or not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, bool):
                out.append(f"base.{section}.{name}={str(value).lower()}")
            elif isinstance(value, (int, float)) or (isinstance(value, str) and value and " " not in value):
                out.append(f"base.{section}.{name}={value}")
    return out


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_resolved_base_values()), min_size=1, max_size=8, unique=True))
def test_an_explicit_default_is_the_same_base(explicit):
    """Any of the base's resolved values (run-config defaults, shared runtime keys, preset values) written out as
    base.* overrides: the same cache key as writing none."""
    assert _key("demo", explicit) == _key("demo")


def test_what_shapes_the_base_changes_its_key_and_nothing_else_does():
    key = _key("demo")
    for changed in (["base.optim.lr=1e-3"], ["base.train.steps=7"], ["base.train.seed=1"], ["run.model.name=world-vit-tiny"],
                    ["base.model.lock_image=true"], ["run.train.precision=fp32"],
                    # 2 threads sum floats in another order; 2 loader workers split the data differently
                    ["run.train.threads=2"], ["base.data.workers=2"]):
        assert _key("demo", changed) != key, changed
    # 0 and 1 loader workers read the same order (one logical worker): the same weights
    for same in (["base.train.log_every=3"], ["base.data.workers=0"], ["base.data.max_neg_text=5"],
                 ["base.train.progress=true"], ["base.train.name=x"]):
        assert _key("demo", same) == key, same


def test_the_default_demo_still_uses_the_shipped_base(tmp_path, monkeypatch):
    """The shipped base's recorded training config resolves to the default demo's identity, and the default demo
    installs it from the package instead of pretraining."""
    from tripletclip.config import config_from_dict
    from tripletclip.demo import base as base_mod, run as run_mod
    from tripletclip.world import spec_preset

    cfg = load_demo_config("demo")
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json()
    identity = base_mod.base_identity(cfg, spec, 48)
    key = base_mod.base_key(identity)
    # found by the identity its recorded config resolves to today (schema fields added since take their defaults)
    found = base_mod.shipped_for(identity)
    assert found is not None, "the default demo's base is not shipped: run `tripletclip world pretrain --ship`"
    src, meta = found
    assert src.is_file() and src.suffix == ".safetensors"
    assert base_mod.pretrain_identity(config_from_dict(meta["config"])) == identity["pretrain"]
    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(run_mod, "_isolated", lambda *a, **k: pytest.fail("the default demo must not pretrain"))
    got = run_mod.ensure_base(cfg, spec, 48, tmp_path / "work", echo=lambda s: None)
    assert got["source"] == "shipped with the package" and got["key"] == key

    tuned = load_demo_config("demo", FINE_TUNING + ["base.optim.beta1=0.9"])
    again = run_mod.ensure_base(tuned, spec, 48, tmp_path / "work", echo=lambda s: None)
    assert again["source"] == "cache" and again["path"] == got["path"]


def test_a_shipped_base_is_never_reused_for_a_changed_default(monkeypatch):
    """A default that changed since the base was trained differs from the value recorded with it: no match."""
    from tripletclip.demo import base as base_mod
    from tripletclip.world import spec_preset

    cfg = load_demo_config("demo")
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json()
    assert base_mod.shipped_for(base_mod.base_identity(cfg, spec, 48)) is not None
    changed = load_demo_config("demo", ["base.optim.lr=1e-3"])
    assert base_mod.shipped_for(base_mod.base_identity(changed, spec, 48)) is None


def test_a_demo_typo_is_one_line_before_anything_is_built(tmp_path):
    from click.testing import CliRunner

    from tripletclip.cli import main

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out), "run.train.step=5"])
    assert res.exit_code == 1 and not out.exists()
    assert res.output.strip().splitlines() == [res.output.strip()]
    assert "run.train: unknown key 'step'" in res.output and "steps" in res.output
    with pytest.raises(ConfigError, match=r"^run.train.steps: expected an integer"):
        load_demo_config("demo-quick", ["run.train.steps=1e3"])  # typed like `train` overrides


def test_the_demo_checks_its_overrides_before_importing_torch(tmp_path):
    """Issue 20: the typo came after 11 s (world built); now it comes before torch is even imported."""
    import os
    import subprocess
    import sys

    code = ("import sys\nimport click\nfrom tripletclip.cli import main\n"
            "try:\n    main(['demo', '--quick', '--out', sys.argv[1], 'run.train.step=5'], standalone_mode=False)\n"
            "except click.ClickException as e:\n    print(e.format_message())\n"
            "print('torch imported:', 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.stdout.splitlines()[-2].startswith("run.train: unknown key 'step'"), res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "torch imported: False" and not (tmp_path / "out").exists()


def test_a_lock_that_cannot_work_is_refused_before_the_world(tmp_path):
    from tripletclip.demo import run_demo

    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"^run.model.lock_image_unlocked_groups=6: .*nothing is locked"):
        run_demo(out, quick=True, methods=["clip"], progress=False, echo=lambda s: None,
                 overrides=["run.model.lock_image=true", "run.model.lock_image_unlocked_groups=6"])
    assert not out.exists()


def test_train_preflight_refuses_in_one_line_and_creates_nothing(tmp_path):
    from click.testing import CliRunner

    from tripletclip.cli import main

    res = CliRunner().invoke(main, ["train", "model.name=world-cnn", "model.lock_image=true",
                                    "model.lock_image_unlocked_groups=9", "data.train=missing.tar",
                                    f"train.output_dir={tmp_path / 'runs'}"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert res.output.startswith("Error: model.lock_image_unlocked_groups=9:") and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method", ["clip", "negclip", "negimage", "tripletclip", "ceclip"])
def test_preflight_steps_every_objective_with_a_partly_locked_tower(method):
    from tripletclip.config import config_from_dict
    from tripletclip.config.load import deep_merge
    from tripletclip.train.preflight import preflight, with_placeholder_data

    cfg = load_demo_config("demo-quick", ["run.model.lock_image=true", "run.model.lock_image_unlocked_groups=1",
                                          "run.data.max_neg_text=3", "run.data.max_neg_image=2"])
    run = with_placeholder_data(config_from_dict(deep_merge(cfg.run_dict(), {"loss": {"name": method}})), "x")
    seen = preflight(run, where="run")
    # world-cnn's trunk has 15 parameter tensors; with one unlocked group only its head (weight, bias) trains
    assert seen["frozen"] == 15 and seen["with_gradient"] == seen["trainable"] and seen["loss"] > 0


def test_locked_runs_fine_tune_an_unlocked_base_end_to_end(tmp_path, monkeypatch):
    """The acceptance case in small: `demo --quick run.model.lock_image=true run.model.lock_image_unlocked_groups=1`:
    the base pretrained for it has no locked tower, the fine-tuning run does (read from the saved configs), its
    frozen weights are the base's, and another spelling of the same base reuses the cached one."""
    import torch
    from safetensors.torch import load_file

    from tripletclip.config import config_from_dict
    from tripletclip.config.load import deep_merge
    from tripletclip.demo import base as base_mod, run as run_mod
    from tripletclip.train import train
    from tripletclip.world import spec_preset, train_shards

    monkeypatch.setenv("TRIPLETCLIP_CACHE", str(tmp_path / "cache"))
    small = ["base.train.steps=2", "base.train.batch_size=8", "run.train.steps=2", "run.train.batch_size=8"]
    cfg = load_demo_config("demo-quick", small + ["run.model.lock_image=true", "run.model.lock_image_unlocked_groups=1"])
    spec = spec_preset(cfg.world_spec, seed=cfg.world_seed).to_json()
    identity = base_mod.base_identity(cfg, spec, 48)

    def build(out, n, seed, mirror_pairs=0.0):
        return run_mod.build_world_data(out, n, seed, spec, 48, 1, n_neg=0, progress=False)

    threads = torch.get_num_threads()
    try:
        folder = base_mod.pretrain_base(cfg, identity, tmp_path / "work", build, echo=lambda s: None, progress=False)
        base_cfg = json.loads((folder / "base.json").read_text())["config"]["model"]
        assert base_cfg["lock_image"] is False and base_cfg["lock_text"] is False
        run_mod.build_world_data(tmp_path / "world", 16, 5, spec, 48, 1, n_neg=1, progress=False)
        run_base = deep_merge(cfg.run_dict(), {"model": {"pretrained": str(folder / base_mod.BASE_FILE)}})
        job = run_mod._job(run_base, "negclip", 0, train_shards(tmp_path / "world"), tmp_path / "world" / "bench",
                           tmp_path / "runs")
        result = train(config_from_dict(job.cfg))
    finally:
        torch.set_num_threads(threads)
    import yaml

    saved = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())["model"]
    assert saved["lock_image"] is True and saved["lock_image_unlocked_groups"] == 1
    from tripletclip.models.run_model import resolve_checkpoint

    before = load_file(str(folder / base_mod.BASE_FILE))
    after = load_file(str(resolve_checkpoint(result["run_dir"]) / base_mod.BASE_FILE))
    assert torch.equal(before["visual.trunk.stem.0.weight"], after["visual.trunk.stem.0.weight"])  # locked
    assert not torch.equal(before["visual.trunk.head.weight"], after["visual.trunk.head.weight"])  # the head trains
    # the same base spelled otherwise (no run lock, explicit defaults): the cached base, no pretraining
    monkeypatch.setattr(run_mod, "_isolated", lambda *a, **k: pytest.fail("the same base must not be pretrained again"))
    other = load_demo_config("demo-quick", small + ["base.model.lock_image_unlocked_groups=0", "base.model.lock_image=false"])
    got = run_mod.ensure_base(other, spec, 48, tmp_path / "work2", echo=lambda s: None)
    assert got["source"] == "cache" and Path(got["path"]).parent == folder


def test_preflight_leaves_the_callers_random_stream_and_threads_alone():
    """`train` seeds before its preflight: the run must draw the numbers it would have drawn without it."""
    import torch

    from tripletclip.config import load_config
    from tripletclip.train.preflight import preflight

    threads = torch.get_num_threads()
    torch.manual_seed(3)
    want = torch.rand(4)
    torch.manual_seed(3)
    seen = preflight(load_config(None, ["model.name=world-cnn", "loss.name=tripletclip", "data.train=x.tar",
                                        "model.lock_text=true", "model.lock_text_unlocked_layers=1"]))
    assert torch.equal(torch.rand(4), want) and torch.get_num_threads() == threads
    assert seen["frozen"] > 0 and seen["with_gradient"] == seen["trainable"]


# ---------------------------------------------------------------------------------- methods: objectives and variants

def test_methods_are_objectives_or_labelled_variants_with_their_own_run_overrides():
    from tripletclip.demo.config import Method, parse_method

    assert parse_method("negclip") == Method("negclip", "negclip", {})
    variant = parse_method({"name": "tripletclip+cyclip", "objective": "tripletclip",
                            "run": {"loss": {"cyclip_cross": 0.25, "cyclip_in": 0.25}}})
    cfg = load_demo_config("demo-quick", ["run.optim.lr=1e-3"])
    run = cfg.method_run_dict(variant)
    assert run["loss"] == {"name": "tripletclip", "cyclip_cross": 0.25, "cyclip_in": 0.25}
    assert run["optim"]["lr"] == 1e-3 and run["train"] == cfg.run_dict()["train"]  # the rest is the preset's
    assert cfg.run_dict().get("loss") is None  # the preset's block is not modified


@pytest.mark.parametrize("entry, message", [
    ({"name": "fast", "objective": "clip", "run": {"train": {"steps": 9}}}, r"run.train.steps is the same for every"),
    ({"name": "big", "objective": "clip", "run": {"train": {"batch_size": 9}}}, r"run.train.batch_size is the same"),
    ({"name": "vit", "objective": "clip", "run": {"model": {"name": "world-vit-tiny"}}}, r"run.model.name is the same"),
    ({"name": "own", "objective": "clip", "run": {"data": {"train": "x.tar"}}}, r"run.data.train is the same"),
    ({"name": "n", "objective": "clip", "run": {"loss": {"name": "negclip"}}}, r"or the method's objective"),
    ({"name": "Bad Name"}, r"lower-case letters"),
    ({"name": "x", "objetive": "clip"}, r"unknown key\(s\) \['objetive'\]"),
    (3, r"neither an objective name nor a mapping"),
])
def test_a_variant_that_changes_the_compute_or_is_malformed_is_one_line(entry, message):
    from tripletclip.demo.config import parse_method

    with pytest.raises(ConfigError, match=message) as err:
        parse_method(entry)
    assert "\n" not in str(err.value)


def test_preset_methods_are_checked_on_load(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("_base_: " + str(Path(__file__).parents[1] / "src/tripletclip/demo/presets/demo-quick.yaml")
                    + "\nmethods: [clip, {name: clip, objective: negclip}]\n")
    with pytest.raises(ConfigError, match="a name occurs twice"):
        load_demo_config(str(path))
    path.write_text(path.read_text().replace("{name: clip, objective: negclip}",
                                             "{name: n, objective: negclip, run: {loss: {distil_weight: 1}}}"))
    with pytest.raises(ConfigError, match=r"methods: n: run.*distil_weight"):
        load_demo_config(str(path))


def test_select_methods_takes_cli_names_then_the_preset_then_the_registry():
    from tripletclip.demo.run import OPT_IN, objectives, select_methods

    cfg = load_demo_config("demo-objectives")
    labels = [m.label for m in select_methods(cfg)]
    assert labels == ["clip", "negclip", "tripletclip", "ceclip", "fscclip", "clic", "degla",
                      "tripletclip+cyclip", "negclip+distill"]
    picked = select_methods(cfg, ["clip", "tripletclip+cyclip", "negimage"])  # a preset label, an objective
    assert [(m.label, m.objective) for m in picked] == [("clip", "clip"), ("tripletclip+cyclip", "tripletclip"),
                                                        ("negimage", "negimage")]
    assert picked[1].run == {"loss": {"cyclip_cross": 0.25, "cyclip_in": 0.25}}
    default = [m.label for m in select_methods(load_demo_config("demo"))]
    assert default == [m for m in objectives() if m not in OPT_IN]
    with pytest.raises(InputError, match=r"unknown objective\(s\) \['blip'\].*or a method of the preset"):
        select_methods(cfg, ["clip", "blip"])
    with pytest.raises(InputError, match="names a method twice"):
        select_methods(cfg, ["clip", "clip"])


def test_demo_objectives_is_equal_compute_and_every_method_builds_its_job(tmp_path):
    """Same tower, start, steps, batch and seed for every method; only the loss (and CLIC's text-only lock) differ;
    each job trains its method's objective under its own label."""
    from tripletclip.demo import run as run_mod

    cfg = load_demo_config("demo-objectives")
    start = {"model": {"pretrained": str(tmp_path / "base.safetensors")}}
    jobs = {m.label: run_mod._job(deep_merge(cfg.method_run_dict(m), start), m.label, 1, "shards/{0..1}.tar",
                                  tmp_path / "bench", tmp_path / "runs") for m in run_mod.select_methods(cfg)}
    fixed = {(j.cfg["model"]["name"], j.cfg["model"]["pretrained"], j.cfg["train"]["steps"],
              j.cfg["train"]["batch_size"], j.cfg["train"]["seed"], j.cfg["data"]["train"]) for j in jobs.values()}
    assert fixed == {("world-vit-tiny", str(tmp_path / "base.safetensors"), 60, 64, 1, "shards/{0..1}.tar")}
    assert {k: j.cfg["loss"]["name"] for k, j in jobs.items()}["tripletclip+cyclip"] == "tripletclip"
    assert jobs["tripletclip+cyclip"].cfg["loss"]["cyclip_in"] == 0.25 == jobs["tripletclip+cyclip"].cfg["loss"]["cyclip_cross"]
    assert jobs["tripletclip"].cfg["loss"]["cyclip_in"] == 0.0
    assert jobs["negclip+distill"].cfg["loss"]["distill_weight"] == 1.0 and jobs["negclip"].cfg["loss"]["distill_weight"] == 0
    assert [k for k, j in jobs.items() if j.cfg["model"]["lock_image"]] == ["clic"]
    assert jobs["negclip+distill"].cfg["train"]["name"] == "negclip+distill-seed1"


def test_every_method_of_demo_objectives_passes_the_preflight_the_trainer_would():
    """Tokens (FSC-CLIP), a teacher (DeGLA, distillation), a batch transform (CLIC) and the regularisers are
    provided on the dry batch as in training: the demo's preflight runs each method's real objective."""
    from tripletclip.demo.run import select_methods
    from tripletclip.train.preflight import preflight_all, with_placeholder_data

    cfg = load_demo_config("demo-objectives", ["run.data.max_neg_text=1"])
    seen = preflight_all([(m.label, with_placeholder_data(config_from_dict(cfg.method_run_dict(m)), "x"))
                          for m in select_methods(cfg)])
    assert len(seen) == 9 and all(v["with_gradient"] == v["trainable"] for v in seen.values())
    assert seen["clic"]["frozen"] > seen["clip"]["frozen"]  # the image tower is locked for CLIC only


def test_batches_without_swaps_need_the_loader_to_read_in_order():
    cfg = load_demo_config("demo-binding")
    assert cfg.batch_without_swaps and cfg.run_config().data.shuffle_buffer == 0
    with pytest.raises(ConfigError, match="batch_without_swaps: .*shuffle_buffer=0"):
        load_demo_config("demo-binding", ["run.data.shuffle_buffer=1000"])
