"""Faithfulness of rendered negatives: yes/no questions about each negative caption, asked of its image.

TripletCLIP (arXiv 2411.02545, appendix) checked x' against y' with LLM-written yes/no questions answered
by a VQA model and found about 76% of the images faithful; analysis, not a filter. Here the questions come
from the tagged negative caption (one per object, per attribute-object pair, per count, per relation between
two objects; all answered "yes" by a faithful image), and any transformers VQA model answers them:
classification heads (ViLT: p(yes) vs p(no)) or generative ones (BLIP: the decoded answer starts with yes).

Deliberate deviation: rule-written questions instead of LLM-written ones (offline, deterministic); they
cover the edited words, which is what decides whether x' shows y' rather than y.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from tripletclip.data.shard_reader import load_image, read_shard, shard_files
from tripletclip.errors import InputError
from tripletclip.negatives.base import local_device

from tripletclip.negatives.io import write_parquet_atomic
from tripletclip.negatives.lexicon import Lexicon, load_lexicon
from tripletclip.negatives.tagger import LexiconTagger, tokenize
from tripletclip.utils.files import write_json_atomic


def questions_for(caption: str, tagger: LexiconTagger, lex: Lexicon, max_questions: int = 6) -> list[tuple[str, str]]:
    """(kind, question) pairs a faithful image of ``caption`` answers with yes."""
    low = [w.lower() for w in tokenize(caption)]
    spans = tagger.tag(low)
    qs: list[tuple[str, str]] = []
    nouns = [i for i, s in enumerate(spans) if s.tag == "NOUN"]
    for i in nouns:
        s = spans[i]
        if s.plural:
            qs.append(("object", f"Are there {lex.plural(s.lemma)} in the image?"))
        else:
            qs.append(("object", f"Is there {'an' if s.lemma[0] in 'aeiou' else 'a'} {s.lemma} in the image?"))
        j = i - 1
        while j >= 0 and spans[j].tag == "ADJ":
            verb = "Are" if s.plural else "Is"
            qs.append(("attribute", f"{verb} the {lex.plural(s.lemma) if s.plural else s.lemma} {spans[j].lemma}?"))
            j -= 1
        if j >= 0 and spans[j].tag == "NUM" and s.plural:
            qs.append(("count", f"Are there {spans[j].lemma} {lex.plural(s.lemma)}?"))
    for a, b in zip(nouns, nouns[1:]):
        between = [spans[k] for k in range(a + 1, b)]
        # "parked next to": the spatial relation; "riding a": the (transitive) verb
        rel = [s for s in between if s.tag == "REL"] or [s for s in between if s.tag == "VERB"]
        if rel:
            r = rel[-1].lemma
            verb = "Are" if spans[a].plural else "Is"
            qs.append(("relation", f"{verb} the {' '.join(low[spans[a].start:spans[a].end])} {r} the "
                                   f"{' '.join(low[spans[b].start:spans[b].end])}?"))
    seen, out = set(), []
    for q in qs:  # relations and attributes first: they carry the edit
        if q[1] not in seen:
            seen.add(q[1])
            out.append(q)
    order = {"relation": 0, "attribute": 1, "count": 2, "object": 3}
    return sorted(out, key=lambda q: order[q[0]])[:max_questions]


class VqaAnswerer:
    """Yes/no answers from a transformers VQA model (local folder or cached hub id)."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16) -> None:
        from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

        device = local_device(device)
        self.device, self.batch_size, self.model_id = device, batch_size, model
        self.processor = AutoProcessor.from_pretrained(model)
        self.model = AutoModelForVisualQuestionAnswering.from_pretrained(model).to(device).eval()
        labels = {str(v).lower(): int(k) for k, v in (getattr(self.model.config, "id2label", None) or {}).items()}
        self.classify = "yes" in labels and "no" in labels
        self.yes_id, self.no_id = labels.get("yes"), labels.get("no")

    def answer(self, images: Sequence[Image.Image], questions: Sequence[str]) -> list[bool]:
        import torch

        out: list[bool] = []
        for b in range(0, len(questions), self.batch_size):
            ims = [im.convert("RGB") for im in images[b : b + self.batch_size]]
            qs = list(questions[b : b + self.batch_size])
            enc = self.processor(images=ims, text=qs, return_tensors="pt", padding=True)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                if self.classify:
                    logits = self.model(**enc).logits
                    out.extend((logits[:, self.yes_id] > logits[:, self.no_id]).tolist())
                else:
                    ids = self.model.generate(**enc, max_new_tokens=4)
                    texts = self.processor.batch_decode(ids, skip_special_tokens=True)
                    out.extend(t.strip().lower().startswith("yes") for t in texts)
        return out


def run_faithfulness(shards: str, out: str, model: str = "", device: str = "auto", batch_size: int = 16,
                     max_samples: Optional[int] = None, answerer: Any = None) -> dict[str, Any]:
    """Ask every negative image its caption's questions; write faithfulness.json and per-question parquet."""
    if answerer is None:
        if not model:
            raise InputError("faithfulness: give --model (a transformers VQA model folder, e.g. a ViLT or BLIP VQA)")
        answerer = VqaAnswerer(model, device, batch_size)
    lex = load_lexicon()
    tagger = LexiconTagger(lex)
    rows: dict[str, list] = {k: [] for k in ("key", "neg_index", "edit_type", "neg_caption", "kind", "question", "yes")}
    images, n_pairs, no_questions = [], 0, 0
    for path in shard_files(shards):
        for s in read_shard(path):
            for m, blob in enumerate(s.neg_images):
                if max_samples is not None and n_pairs >= max_samples:
                    break
                if m >= len(s.neg_captions):
                    continue
                n_pairs += 1
                qs = questions_for(s.neg_captions[m], tagger, lex)
                if not qs:
                    no_questions += 1
                img = load_image(blob)
                for kind, q in qs:
                    for k, v in (("key", s.key), ("neg_index", m), ("edit_type", s.neg_types[m]),
                                 ("neg_caption", s.neg_captions[m]), ("kind", kind), ("question", q)):
                        rows[k].append(v)
                    images.append(img)
    rows["yes"] = answerer.answer(images, rows["question"]) if images else []
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(rows, out_dir / "faithfulness_questions.parquet")
    per_pair: dict[tuple[str, int], bool] = {}
    pair_type: dict[tuple[str, int], str] = {}
    for k, m, t, y in zip(rows["key"], rows["neg_index"], rows["edit_type"], rows["yes"]):
        per_pair[(k, m)] = per_pair.get((k, m), True) and bool(y)
        pair_type[(k, m)] = t
    by_type: dict[str, list[bool]] = collections.defaultdict(list)
    for p, ok in per_pair.items():
        by_type[pair_type[p]].append(ok)
    by_kind: dict[str, list[bool]] = collections.defaultdict(list)
    for kind, y in zip(rows["kind"], rows["yes"]):
        by_kind[kind].append(bool(y))
    result = {
        "model": getattr(answerer, "model_id", type(answerer).__name__), "pairs": n_pairs,
        "pairs_with_questions": len(per_pair), "pairs_without_questions": no_questions,
        "questions": len(rows["question"]),
        "faithful_rate": sum(per_pair.values()) / len(per_pair) if per_pair else None,
        "faithful_rate_by_edit_type": {t: sum(v) / len(v) for t, v in sorted(by_type.items())},
        "yes_rate_by_question_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "rule": "a pair is faithful iff every question about its negative caption is answered yes",
    }
    write_json_atomic(out_dir / "faithfulness.json", result)
    return result
