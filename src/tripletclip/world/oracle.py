"""Brute-force oracles that measure the regime of the world (docs/world_experiments.md, section 2).

The argument of TripletCLIP (arXiv 2411.02545) and ARO (arXiv 2210.01936) is that in-batch contrast on real
data is solvable by bag-of-words features, so CLIP stays a bag of words, while hard negatives force binding.
The world is built to reproduce that regime; this module measures it:

- **bag-of-words oracle**: perfect perception of *which* concepts an image contains (every shape, colour,
  texture, size and relation word present anywhere), no binding. Score(x, y) = number of caption concepts
  present in x minus the number absent. It should solve in-batch retrieval at training batch sizes and sit at
  chance on swaps (and on left/right replacements, whose words are both present whenever two objects are).
- **text-only prior**: a smoothed bigram language model of the training captions, scoring a caption without
  the image (docs/methods.md section 5: near 50% on a good hard-negative set; far above flags artefacts).
- **coverage**: how many distinct caption meanings a training run sees, and how often a benchmark caption's
  meaning was seen in training (near 0: the concept space is far larger than a run covers).
Ties count as half correct (the expectation under random tie breaking) and are reported separately.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from tripletclip.errors import InputError
from tripletclip.world.caption import Description, canonical, concept_words, truth
from tripletclip.world.generate import SUGARCREPE_TYPES, Triplet, WorldGenerator
from tripletclip.world.grammar import CaptionStyle
from tripletclip.world.rand import Rand
from tripletclip.world.scene import Scene, true_relations
from tripletclip.world.vocab import WorldSpec


def scene_concepts(scene: Scene) -> set[str]:
    """Every concept word true of the scene, of some object or of some ordered pair (no binding)."""
    bag = {v for o in scene.objects for v in (o.shape, o.colour, o.texture, o.size)}
    if scene.background is not None:
        bag.add(scene.background)
    for a in scene.objects:
        for b in scene.objects:
            if a is not b:
                bag.update(true_relations(a, b))
    return bag


def bow_score(desc: Description, concepts: set[str]) -> int:
    """Bag-of-words oracle score: caption concepts present minus caption concepts absent."""
    return sum(1 if w in concepts else -1 for w in concept_words(desc))


def _credit(scores: Sequence[float], target: int) -> float:
    """Expected top-1 accuracy under random tie breaking."""
    best = max(scores)
    if scores[target] < best:
        return 0.0
    return 1.0 / sum(1 for s in scores if s == best)


def bow_inbatch_retrieval(triplets: Sequence[Triplet], batch_size: int) -> dict[str, float]:
    """In-batch R@1 (percent), image->text and text->image, of the bag-of-words oracle and of the binding
    oracle (the same score plus a large bonus when the caption is *true* of the image, via the truth checker).

    Partial captions ("a cross") are true of several images of a batch, so even the binding oracle is below
    100%; the gap between the two oracles is all the pressure towards binding that in-batch contrast exerts.
    """
    acc = {"bow_i2t": 0.0, "bow_t2i": 0.0, "bind_i2t": 0.0, "bind_t2i": 0.0}
    n = 0
    for start in range(0, len(triplets) - batch_size + 1, batch_size):
        batch = triplets[start:start + batch_size]
        bags = [scene_concepts(t.scene) for t in batch]
        bow = [[bow_score(t.caption.desc, bag) for t in batch] for bag in bags]  # [image][caption]
        bind = [[bow[i][j] + (1000 if truth(batch[j].caption.desc, batch[i].scene) else 0)
                 for j in range(len(batch))] for i in range(len(batch))]
        for name, s in (("bow", bow), ("bind", bind)):
            for i in range(len(batch)):
                acc[f"{name}_i2t"] += _credit(s[i], i)
                acc[f"{name}_t2i"] += _credit([s[j][i] for j in range(len(batch))], i)
        n += len(batch)
    if n == 0:
        raise InputError(f"bow_inbatch_retrieval: need at least {batch_size} triplets, got {len(triplets)}")
    return {**{k: 100 * v / n for k, v in acc.items()}, "batch_size": batch_size, "pairs": n}


class BigramPrior:
    """Add-one smoothed word bigram model of captions (a text-only scorer that never sees the image)."""

    def __init__(self, captions: Sequence[str]) -> None:
        self.uni: Counter[str] = Counter()
        self.bi: Counter[tuple[str, str]] = Counter()
        for c in captions:
            w = ["<s>"] + _words(c) + ["</s>"]
            self.uni.update(w[:-1])
            self.bi.update(zip(w[:-1], w[1:]))
        self.vocab = len(set(self.uni) | {"</s>"}) + 1

    def logprob(self, caption: str) -> float:
        w = ["<s>"] + _words(caption) + ["</s>"]
        return sum(math.log((self.bi[(a, b)] + 1) / (self.uni[a] + self.vocab)) for a, b in zip(w[:-1], w[1:]))


def _words(text: str) -> list[str]:
    return text.replace(",", " ,").split()


def benchmark_scores(rows: Sequence[Triplet], prior: BigramPrior | None = None) -> dict[str, Any]:
    """Per category and split accuracy (percent) of the bag-of-words oracle (and the text prior)."""
    acc: dict[str, dict[str, dict[str, float]]] = {}
    for scorer in ("bow", "text_prior"):
        if scorer == "text_prior" and prior is None:
            continue
        out: dict[str, dict[str, float]] = {}
        for split in ("seen", "heldout"):
            per: dict[str, float] = {}
            ties: dict[str, float] = {}
            for cat in SUGARCREPE_TYPES:
                sel = [t for t in rows if t.split == split and t.negatives and t.negatives[0].edit_type == cat]
                if not sel:
                    continue
                credit = tie = 0.0
                for t in sel:
                    neg = t.negatives[0]
                    if scorer == "bow":
                        bag = scene_concepts(t.scene)
                        sp, sn = bow_score(t.caption.desc, bag), bow_score(neg.desc, bag)
                    else:
                        assert prior is not None
                        sp, sn = prior.logprob(t.caption.text), prior.logprob(neg.text)
                    credit += 1.0 if sp > sn else 0.5 if sp == sn else 0.0
                    tie += sp == sn
                per[cat] = 100 * credit / len(sel)
                ties[cat] = 100 * tie / len(sel)
            if per:
                per["mean"] = sum(per[c] for c in SUGARCREPE_TYPES if c in per) / len([c for c in SUGARCREPE_TYPES if c in per])
                out[split] = per
                out[f"{split}_ties"] = ties
        acc[scorer] = out
    return acc


def analyse_world(spec: WorldSpec, n_train: int = 20000, n_bench: int = 200, seed: int = 0,
                  batch_sizes: Sequence[int] = (32, 64, 128, 256), style: CaptionStyle = CaptionStyle()
                  ) -> dict[str, Any]:
    """The regime report: bag-of-words oracle in-batch and on the benchmark, text prior, coverage."""
    gen = WorldGenerator(spec, style)
    rng = Rand([seed, 11])
    train = [gen.triplet(rng) for _ in range(n_train)]
    bench: list[Triplet] = []
    for split in ("seen", "heldout") if spec.heldout_pairs else ("seen",):
        for cat in SUGARCREPE_TYPES:
            bench += [gen.triplet(rng, types=[cat], split=split) for _ in range(n_bench)]
    prior = BigramPrior([t.caption.text for t in train])
    train_meanings = {canonical(t.caption.desc) for t in train}
    bench_seen = sum(canonical(t.caption.desc) in train_meanings for t in bench)
    object_types = {(o.shape, o.colour, o.texture, o.size) for t in train for o in t.scene.objects}
    return {
        "n_train": n_train,
        "object_types": {"possible": spec.n_object_types(), "seen_in_train": len(object_types)},
        "distinct_train_caption_meanings": len(train_meanings),
        "bench_caption_meaning_seen_in_train_pct": 100 * bench_seen / len(bench),
        "bow_inbatch": [bow_inbatch_retrieval(train, b) for b in batch_sizes if b <= n_train],
        "bench": benchmark_scores(bench, prior),
    }
