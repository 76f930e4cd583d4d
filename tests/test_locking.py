"""Tower locking (LiT, TripletCLIP Table 8) on every registered tower: which parameters train, checked against
group lists written out from each architecture (not read back from timm or open_clip)."""
import copy
import functools

import pytest

from tripletclip.errors import InputError
from tripletclip.models import apply_locks, create_model
from tripletclip.models.factory import register_model_configs

# open_clip's VisionTransformer.lock groups: stem, every block but the last, last block + ln_post, projection
_VIT = [["conv1", "class_embedding", "positional_embedding", "ln_pre"], ["transformer.resblocks.0"],
        ["transformer.resblocks.1", "ln_post"], ["proj"]]
# image groups (prefixes under model.visual), and what open_clip never locks (a timm tower's added projection)
IMAGE_GROUPS = {
    "test-vit-tiny": (_VIT, []),
    "world-vit-tiny": (_VIT, []),
    # models/towers.py group_matcher: stem, each stage, the 1x1 reduction, the head (= projection) last
    "world-cnn": ([["trunk.stem"], ["trunk.stages.0"], ["trunk.stages.1"], ["trunk.stages.2"], ["trunk.reduce"],
                   ["trunk.head"]], []),
    # timm ResNet group_matcher (fine): stem, then each block (one per stage here); open_clip's TimmModel locks
    # the trunk only, its linear projection head.proj keeps training
    "world-resnet-tiny": ([["trunk.conv1", "trunk.bn1"], ["trunk.layer1"], ["trunk.layer2"], ["trunk.layer3"],
                           ["trunk.layer4"]], ["head.proj"]),
}
# open_clip's lock_text_tower groups of a 2-layer text transformer
TEXT_GROUPS = [["token_embedding", "positional_embedding"], ["transformer.resblocks.0"],
               ["transformer.resblocks.1", "ln_final"], ["text_projection"]]


def _under(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@functools.lru_cache(maxsize=None)
def _built(name):
    return create_model(name).model


def _fresh(name):
    return copy.deepcopy(_built(name))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


# towers whose locks are part of the model itself, each with the lock settings on a grouped tower it equals
BUILT_LOCKED = {"world-lit-cnn": ("world-cnn", 1)}


def test_every_registered_tower_is_covered():
    assert set(IMAGE_GROUPS) | set(BUILT_LOCKED) == set(register_model_configs())


@pytest.mark.parametrize("name", sorted(BUILT_LOCKED))
def test_a_tower_locked_by_construction_trains_what_its_lock_setting_trains(name):
    """world-lit-cnn (a frozen trunk, a trainable head: the regime experiments of docs/world_experiments.md,
    section 9) trains exactly the parameters of world-cnn with model.lock_image=true and that many unlocked
    groups, so both spellings of the LiT regime are the same run."""
    grouped, unlocked = BUILT_LOCKED[name]
    model = _fresh(grouped)
    apply_locks(model, True, unlocked, model_name=grouped)
    assert _trainable(_fresh(name)) == _trainable(model)


@pytest.mark.parametrize("name", sorted(IMAGE_GROUPS))
def test_lock_image_trains_exactly_the_last_groups(name):
    groups, always = IMAGE_GROUPS[name]
    everything = {n for n, _ in _built(name).named_parameters()}
    image = {n for n in everything if n.startswith("visual.")}
    assert image and all(_under(n[len("visual."):], [p for g in groups for p in g] + always) for n in image)
    for unlocked in range(len(groups)):
        model = _fresh(name)
        apply_locks(model, True, unlocked, model_name=name)
        kept = [p for g in groups[len(groups) - unlocked:] for p in g] + always if unlocked else always
        want = (everything - image) | {n for n in image if _under(n[len("visual."):], kept)}
        assert _trainable(model) == want, (name, unlocked)
    with pytest.raises(InputError, match=r"model.lock_image_unlocked_groups=%d: .*nothing is locked" % len(groups)):
        apply_locks(_fresh(name), True, len(groups), model_name=name)


@pytest.mark.parametrize("name", sorted(IMAGE_GROUPS))
def test_lock_text_trains_exactly_the_last_layers(name):
    everything = {n for n, _ in _built(name).named_parameters()}
    text = {n for n in everything if _under(n, [p for g in TEXT_GROUPS for p in g])}
    assert text and all(not n.startswith("visual.") for n in text)
    for unlocked in range(len(TEXT_GROUPS)):
        model = _fresh(name)
        apply_locks(model, False, 0, True, unlocked, model_name=name)
        kept = [p for g in TEXT_GROUPS[len(TEXT_GROUPS) - unlocked:] for p in g] if unlocked else []
        assert _trainable(model) == (everything - text) | {n for n in text if _under(n, kept)}, (name, unlocked)
    assert "logit_scale" in _trainable(model)


def test_both_towers_locked_with_unlocked_heads():
    """TripletCLIP Table 8's partial setting: trunk and text body frozen, the two projections train."""
    model = _fresh("world-cnn")
    apply_locks(model, True, 1, True, 1, model_name="world-cnn")
    assert _trainable(model) == {"visual.trunk.head.weight", "visual.trunk.head.bias", "text_projection", "logit_scale"}


def test_a_tower_without_groups_is_one_line_naming_the_key(monkeypatch):
    from tripletclip.models.towers import SpatialCNN

    def no_groups(self, coarse=False):
        raise NotImplementedError("no groups")

    monkeypatch.setattr(SpatialCNN, "group_matcher", no_groups)
    with pytest.raises(InputError, match=r"^model.lock_image_unlocked_groups=1: the image tower of world-cnn cannot"):
        apply_locks(_fresh("world-cnn"), True, 1, model_name="world-cnn")
    apply_locks(_fresh("world-cnn"), True, 0, model_name="world-cnn")  # the whole tower needs no groups


def test_transformers_towers_lock_by_the_same_groups(tmp_path):
    """A transformers CLIP folder (models/hf.py): embeddings + pre-LN, each layer, post-LN + projection."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _hf_folders import save_clip_folder

    name = f"hf:{save_clip_folder(tmp_path / 'clip')}"
    built = create_model(name).model
    v = "clip.vision_model"
    groups = [[f"{v}.embeddings", f"{v}.pre_layrnorm"], [f"{v}.encoder.layers.0"], [f"{v}.encoder.layers.1"],
              [f"{v}.post_layernorm", "clip.visual_projection"]]
    everything = {n for n, _ in built.named_parameters()}
    image = {n for n in everything if _under(n, [p for g in groups for p in g])}
    assert image and not any(n.startswith(f"{v}.") and n not in image for n in everything)
    for unlocked in range(len(groups)):
        model = copy.deepcopy(built)
        apply_locks(model, True, unlocked, model_name=name)
        kept = [p for g in groups[len(groups) - unlocked:] for p in g] if unlocked else []
        assert _trainable(model) == (everything - image) | {n for n in image if _under(n, kept)}, unlocked
    with pytest.raises(InputError, match="nothing is locked"):
        apply_locks(copy.deepcopy(built), True, len(groups), model_name=name)
