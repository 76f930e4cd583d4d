"""ARO COCO-Order and Flickr30k-Order (Yuksekgonul et al., arXiv 2210.01936): does the true word order win?

One test case per caption of the Karpathy test file (COCO: 5,000 images, 25,010 captions; Flickr30k: 1,000
images, 5,000 captions): the caption (``pre_caption``-normalised) against its four scrambles from
:mod:`tripletclip.eval.scramble`. Precision@1: correct iff the original scores strictly higher than every
scramble.

NOTE on identical scrambles: a scramble can reproduce the original text (one noun and one adjective, a trigram
shuffle that only moves a period). The official code scores all five options and takes ``argmax``, which
resolves such exact ties in favour of the original (index 0). Here a scramble equal to the original is not a
negative and is left out of the candidates, so those rows are decided the same way while every remaining
comparison follows the strict rule; the count of identical scrambles is recorded. Also recorded: how often the
original beats each kind of scramble, the tagger and tokenizer used, and the seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, run_choice
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_json, protocol, require
from tripletclip.eval.scramble import PERTURBATIONS, load_tagger, load_word_tokenizer, scramble

_CASES: dict[tuple, tuple[list[ChoiceRow], list[dict], dict[str, Any]]] = {}


def load_order_cases(
    annotations: str | Path, subset: str, seed: int = 1, max_words: int = 30, tagger: str = "auto",
    spacy_model: str = "en_core_web_sm",
) -> tuple[list[ChoiceRow], list[dict], dict[str, Any]]:
    """(rows, annotation records, scramble info) from a Karpathy-format ``[{"image", "caption": [...]}]`` file."""
    path = Path(annotations)
    record = file_record(path, 0)
    key = (str(path.resolve()), record["sha256"], seed, max_words, tagger, spacy_model)
    if key in _CASES:  # periodic evaluation during training re-scores the same cases
        return _CASES[key]
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{'image', 'caption'}} (Karpathy / ARO format), got {type(data).__name__}")
    tag = load_tagger(tagger, spacy_model)
    tokenize, tokenizer_name = load_word_tokenizer()
    rows: list[ChoiceRow] = []
    identical = {p: 0 for p in PERTURBATIONS}
    n_captions = 0
    for i, ann in enumerate(data):
        require(ann, ("image", "caption"), path, i)
        captions = [ann["caption"]] if isinstance(ann["caption"], str) else list(ann["caption"])
        for j, cap in enumerate(captions):
            n_captions += 1
            original, perturbed = scramble(cap, ann["image"], j, tag, tokenize, seed, max_words)
            kinds = [k for k, p in zip(PERTURBATIONS, perturbed) if p is not None]
            for k, p in zip(PERTURBATIONS, perturbed):
                identical[k] += p is None
            texts = [original] + [p for p in perturbed if p is not None]
            rows.append(ChoiceRow(subset, f"{i}:{j}", ann["image"], texts, meta={"kinds": kinds}))
    info = {
        "seed": seed, "max_words": max_words, "tagger": tag.name, "word_tokenizer": tokenizer_name,
        "perturbations": list(PERTURBATIONS), "scrambles_identical_to_original": identical,
        "rng": "random.Random seeded by (seed, crc32(image name), caption index) per caption",
    }
    record.update(rows=len(data), captions=n_captions)
    _CASES[key] = (rows, [record], info)
    return _CASES[key]


def _evaluate_order(
    bench: str, subset: str, encoder: Any, annotations: str | Path, images: Any, skip_missing: bool, blind: bool,
    seed: int, max_words: int, tagger: str, spacy_model: str,
) -> BenchResult:
    cost = Cost(encoder)
    rows, records, info = load_order_cases(annotations, subset, seed, max_words, tagger, spacy_model)
    run = run_choice(bench, encoder, rows, [subset], images, skip_missing, blind, cost)
    beats = {k: [0, 0] for k in PERTURBATIONS}
    for x in run.scored:
        for kind, s in zip(x.row.meta["kinds"], x.scores[1:]):
            beats[kind][0] += x.scores[0] > s
            beats[kind][1] += 1
    aggregates = {"precision@1": run.tallies[subset].accuracy}
    aggregates.update({f"beats/{k}": (c / n if n else None) for k, (c, n) in beats.items()})
    rules = {"precision@1": "fraction of captions whose original wins (micro over captions)",
             "beats/<scramble>": "fraction of captions where the original beats that scramble (rows where it differs)"}
    decision = "correct iff s(I, original) > s(I, scramble) for every scramble different from the original"
    return run.result(protocol(decision, rules, blind, scrambles=info), aggregates,
                      {"precision@1": aggregates["precision@1"]}, records)


def _order_benchmark(bench: str, subset: str, dataset: str, doc: str) -> Any:
    """Register the order benchmark of one dataset (the two differ only in their files)."""

    @register_benchmark(bench, summary=f"ARO {dataset}-Order: caption vs its 4 word-order scrambles, precision@1")
    def evaluate(
        encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False, blind: bool = False,
        seed: int = 1, max_words: int = 30, tagger: str = "auto", spacy_model: str = "en_core_web_sm",
    ) -> BenchResult:
        return _evaluate_order(bench, subset, encoder, annotations, images, skip_missing, blind,
                               int(seed), int(max_words), tagger, spacy_model)

    evaluate.__doc__ = doc
    evaluate.__name__ = evaluate.__qualname__ = f"evaluate_{subset}"
    return evaluate


evaluate_coco_order = _order_benchmark(
    "aro_coco_order", "coco_order", "COCO",
    "COCO-Order on ``coco_karpathy_test.json`` (images: the COCO folder; 2017 files are found by id).")
evaluate_flickr_order = _order_benchmark(
    "aro_flickr_order", "flickr_order", "Flickr30k",
    "Flickr30k-Order on ``flickr30k_test.json`` (images: the Flickr30k folder).")
