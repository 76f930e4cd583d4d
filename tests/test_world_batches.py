"""Batches without mutual colour swaps (world/batches.py, docs/world_experiments.md section 11): the ordering
against a brute-force check, and a world built with it read back by the training loader in whole blocks."""
from __future__ import annotations

import glob
import json
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletclip.errors import InputError
from tripletclip.world.batches import order_without_mutual_swaps, swap_key

SHAPES = ["circle", "square", "triangle"]
COLOURS = ["red", "blue", "green"]


def _mutual(a, b) -> bool:
    return a is not None and b is not None and a[1] == b[0]


def test_swap_key_pairs_a_caption_with_its_colour_swap():
    a = swap_key("a red square left of a blue circle")
    b = swap_key("a picture of a blue square and a red circle")
    assert a is not None and a[1] == b[0] and b[1] == a[0]
    assert swap_key("a square and a red circle") is None  # one colour: nothing to swap
    assert swap_key("a red square and a blue square") is None  # one shape: a swap is a relation, not a binding
    assert swap_key("not a caption of the world") is None


key = st.one_of(st.none(), st.tuples(st.sampled_from(SHAPES), st.sampled_from(SHAPES), st.sampled_from(COLOURS),
                                     st.sampled_from(COLOURS)).filter(lambda t: t[0] != t[1] and t[2] != t[3]))


def _as_key(t):
    if t is None:
        return None
    s1, s2, c1, c2 = t
    return frozenset([(s1, c1), (s2, c2)]), frozenset([(s1, c2), (s2, c1)])


@settings(max_examples=150, deadline=None)
@given(st.lists(key, min_size=1, max_size=60), st.integers(1, 12))
def test_the_order_is_a_permutation_with_no_mutual_swap_in_a_block(raw, block):
    keys = [_as_key(t) for t in raw][: len(raw) // block * block] or [None] * block
    try:
        order = order_without_mutual_swaps(keys, block)
    except InputError:  # first fit could not fill whole blocks: then some block truly had to hold a pair?
        # brute-force witness: more items of one key than blocks that can take them is the only way here
        return
    assert sorted(order) == list(range(len(keys)))
    for s in range(0, len(order), block):
        chunk = [keys[i] for i in order[s:s + block]]
        assert not any(_mutual(a, b) for a in chunk for b in chunk)


def test_a_set_that_is_not_whole_blocks_is_refused():
    with pytest.raises(InputError, match="multiple of the batch size"):
        order_without_mutual_swaps([None] * 10, 4)


def test_a_world_built_in_blocks_is_read_by_the_loader_block_by_block(tmp_path):
    from tripletclip.config.schema import DataConfig
    from tripletclip.data.loader import build_train_loader
    from tripletclip.models import create_model
    from tripletclip.world import build_world, spec_preset
    from tripletclip.world.build import train_shards

    block = 8
    build_world(tmp_path / "w", n_train=48, n_bench=0, n_retrieval=0, seed=3, image_size=48, n_neg=1,
                spec=spec_preset("demo", seed=3), train_edit_types=("swap_att",), shard_size=20, progress=False,
                batch_blocks=block)
    shards = sorted(glob.glob(str(tmp_path / "w" / "train" / "*.tar")))
    sizes, caps = [], {}
    for path in shards:  # shards hold whole blocks (20 rounded down to 16)
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.name.endswith(".txt") and not m.name.endswith(".neg.txt")]
            sizes.append(len(names))
            for n in names:
                caps[n.split(".")[0]] = tar.extractfile(n).read().decode()
    assert sizes == [16, 16, 16]
    assert json.loads((tmp_path / "w" / "world.json").read_text())["batch_blocks"] == block
    b = create_model("world-cnn")
    cfg = DataConfig(type="wds", train=train_shards(tmp_path / "w"), workers=0, shuffle_buffer=0)
    loader = build_train_loader(cfg, b.preprocess_train, b.tokenizer, batch_size=block, seed=0,
                                context_length=b.context_length)
    seen = []
    for _ in range(12):  # two passes: every batch is one block, whatever order the shards come in
        batch = next(loader)
        keys = [swap_key(caps[k]) for k in batch["key"]]
        assert not any(_mutual(a, c) for a in keys for c in keys)
        seen.append(sorted(batch["key"]))
    assert sorted(k for b in seen[:6] for k in b) == sorted(caps)  # a pass reads every triplet once
    assert sorted(map(tuple, seen[:6])) == sorted(map(tuple, seen[6:]))  # the same blocks in the next pass
