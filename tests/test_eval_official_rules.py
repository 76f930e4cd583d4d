"""The decision rules of the new benchmarks against literal re-implementations of the official code, on many
score vectors (ties included: scores are drawn from a few values)."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletclip.eval.choice import decide
from tripletclip.eval.choice_formats import bla_accuracy
from tripletclip.eval.crepe import rank_of
from tripletclip.eval.vl_checklist import max_rule

SCORES = st.sampled_from([0.1, 0.2, 0.3, 0.35, 0.5])
PROFILE = settings(max_examples=100, derandomize=True, deadline=None)


@PROFILE
@given(st.lists(SCORES, min_size=2, max_size=8))
def test_crepe_rank_is_official_rank_without_ties(scores):
    """get_one2many_rank: position of index 0 in argsort(descending); ours counts ties against the caption."""
    s = torch.tensor(scores)
    official = int(torch.where(torch.argsort(s, descending=True, stable=True) == 0)[0][0])
    ours = rank_of(scores)
    tied = sum(x == scores[0] for x in scores[1:])
    assert ours == official + tied  # equal whenever no negative ties the caption


@PROFILE
@given(st.lists(SCORES, min_size=1, max_size=3), st.lists(SCORES, min_size=1, max_size=3))
def test_vl_checklist_rules(pos, neg):
    first_ok, _ = decide([pos[0], neg[0]], 1)
    assert first_ok == (pos[0] > neg[0])  # evaluate.py itc: result_pos > result_neg
    ok, tie = max_rule(pos + neg, len(pos))
    assert ok == (max(pos) > max(neg)) and tie == (max(pos) == max(neg))


@PROFILE
@given(st.lists(SCORES, min_size=4, max_size=4))
def test_bla_accuracy_is_get_accuracy_of_rank_captions(scores):
    """utils.py: ranks from topk (descending), then the share of captions in their half; without ties equal."""
    if len(set(scores)) < 4:
        return  # topk orders ties arbitrarily; both sides are defined only up to that
    _, idx = torch.tensor(scores).topk(4)
    rank = [0] * 4
    for pos, k in enumerate(idx.tolist()):
        rank[k] = pos + 1
    official = sum((i < 2 and r <= 2) or (i >= 2 and r > 2) for i, r in enumerate(rank)) / 4
    assert bla_accuracy(scores) == official


@PROFILE
@given(st.lists(SCORES, min_size=4, max_size=4))
def test_negbench_mcq_is_argmax_without_ties(scores):
    """mcq.py: argmax over the 4 captions == correct answer (index 0 after our reordering)."""
    ok, tie = decide(scores, 1)
    official = int(torch.argmax(torch.tensor(scores))) == 0
    assert ok == (official and not tie)
