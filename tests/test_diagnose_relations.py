"""benchmarks/diagnose_relations.py: relation facts read from captions, the inverse / other split of replace-rel
negatives, and batches without mirrored relations (docs/world_experiments.md, section 12)."""
from __future__ import annotations

import random

import pytest

from _scripts import load_benchmark


@pytest.fixture(scope="module")
def rel():
    return load_benchmark("diagnose_relations")


def test_facts_are_the_same_for_both_sides_of_a_relation(rel):
    a = rel.relation_facts("a red circle to the left of a blue square")
    b = rel.relation_facts("a blue square right of a red circle")
    assert a == b == {(("circle", "red"), "left", ("square", "blue"))}
    # the inverse relation names the same objects the other way round: a mirror, not the same fact
    c = rel.relation_facts("a red circle right of a blue square")
    assert c == {(("square", "blue"), "left", ("circle", "red"))}
    assert rel.relation_facts("a red circle and a blue square") == set()
    assert rel.relation_facts("not a caption of the world") == set()


def test_relation_kind(rel):
    assert rel.relation_kind("a red circle left of a blue square", "a red circle right of a blue square") == "inverse"
    assert rel.relation_kind("a star over a cross", "a star beneath a cross") == "inverse"
    assert rel.relation_kind("a star over a cross", "a star to the left of a cross") == "other"


def test_batches_hold_no_mirror_and_keep_the_order(rel):
    objs = [(s, c) for s in ("circle", "square", "star") for c in ("red", "blue")]
    rng = random.Random(0)
    facts = []
    for _ in range(300):
        a, b = rng.sample(objs, 2)
        facts.append({(a, rng.choice(("left", "above")), b)})
    order = list(range(300))
    rng.shuffle(order)
    batch = rel.batch_without_mirrors(order, facts, 32)
    assert len(batch) == 32 and len(set(batch)) == 32
    # brute force: no two items of the batch mirror each other
    for i in batch:
        for j in batch:
            assert not ({(b, r, a) for a, r, b in facts[i]} & facts[j])
    # greedy in the given order: every item before the last kept one was kept or meets a mirror among the kept
    last = order.index(batch[-1])
    kept = set(batch)
    for k in order[:last]:
        if k not in kept:
            earlier = {f for j in order[:order.index(k)] if j in kept for f in facts[j]}
            assert {(b, r, a) for a, r, b in facts[k]} & earlier
