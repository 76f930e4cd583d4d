"""Caption tokenisation and tagging into spans (objects, attributes, counts, relations, verbs).

Two taggers, one output: the lexicon tagger (always available: longest match against the shipped word lists
plus a few context rules for words that are both nouns and adjectives or verbs, e.g. "orange", "glass",
"watches"), and the same tagger vetoed by spaCy's part-of-speech tags when spaCy and an English model are
installed (``en_core_web_sm`` or any model given by name). The rule generator records which one ran.

A span is one unit an edit can touch: a multi-word noun ("hot dog"), a relation ("in front of"), one
adjective, one count word, one verb, or any other single token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from tripletclip.errors import UnavailableError
from tripletclip.negatives.lexicon import Lexicon

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_PUNCT = frozenset(".,!?;:\"()[]'")


@dataclass(slots=True)
class Span:
    """Tokens [start, end) of a caption with a tag and, for lexicon words, the canonical entry."""

    start: int
    end: int
    tag: str  # NOUN ADJ NUM DET REL VERB AUX PRON CONJ PREP PUNCT X
    lemma: str = ""  # canonical word-list entry (singular noun, verb -ing form, relation phrase)
    plural: bool = False  # NOUN: surface form is the plural
    group: str = ""  # ADJ: attribute group; VERB: "ing" | "s"; NOUN: category


def tokenize(caption: str) -> list[str]:
    """Words and punctuation marks."""
    return _TOKEN_RE.findall(caption)


def token_offsets(caption: str) -> list[int]:
    """Character offset of each token of :func:`tokenize` (to align another tagger's tokens)."""
    return [m.start() for m in _TOKEN_RE.finditer(caption)]


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens with single spaces, attaching punctuation to the previous word."""
    out: list[str] = []
    for t in tokens:
        if out and t in _PUNCT and t not in "(\"[":
            out[-1] += t
        elif out and out[-1] in ("(", "[", '"') and len(out[-1]) == 1:
            out[-1] += t
        else:
            out.append(t)
    return " ".join(out)


class LexiconTagger:
    """Longest-match tagging against the word lists, with context rules for ambiguous words."""

    name = "lexicon"

    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex
        self._adj_words = {w for w in lex.attr_group_of if " " not in w}
        self._noun_words = {w for k, (tag, _) in lex.phrases.items() if tag == "NOUN" for w in k if len(k) == 1}
        # longest phrase starting with each word, so most tokens need a single dict lookup
        self._max_from: dict[str, int] = {}
        for k in lex.phrases:
            self._max_from[k[0]] = max(self._max_from.get(k[0], 0), len(k))

    def tag(self, lower: Sequence[str], pos: Optional[Sequence[str]] = None) -> list[Span]:
        """Spans covering the lower-cased tokens; ``pos`` (coarse UD tags per token) vetoes lexicon guesses."""
        lex = self.lex
        n = len(lower)
        spans: list[Span] = []
        i = 0
        max_from = self._max_from
        while i < n:
            w = lower[i]
            if w in _PUNCT or not w[0].isalnum():
                spans.append(Span(i, i + 1, "PUNCT"))
                i += 1
                continue
            hit = None
            for k in range(min(max_from.get(w, 1), n - i), 0, -1):
                entry = lex.phrases.get(tuple(lower[i : i + k]))
                if entry is not None:
                    hit = (k, entry)
                    break
            if hit is not None and hit[0] > 1:
                k, (tag, canon) = hit
                spans.append(self._phrase_span(i, k, tag, canon, lower))
                i += k
                continue
            spans.append(self._word_span(i, w, hit[1] if hit else None, lower, spans, pos))
            i += 1
        return spans

    def _phrase_span(self, i: int, k: int, tag: str, canon: str, lower: Sequence[str]) -> Span:
        if tag == "NOUN":
            surface = " ".join(lower[i : i + k])
            return Span(i, i + k, "NOUN", canon, surface != canon and surface == self.lex.plural_of.get(canon),
                        self.lex.noun_category.get(canon, ""))
        if tag == "ADJ":
            return Span(i, i + k, "ADJ", canon, False, self.lex.attr_group_of[canon])
        return Span(i, i + k, tag, canon)

    def _word_span(self, i: int, w: str, entry, lower: Sequence[str], prev: list[Span], pos) -> Span:
        lex = self.lex
        nxt = lower[i + 1] if i + 1 < len(lower) else ""
        p = pos[i] if pos is not None else None
        fw = lex.function_words.get(w)
        if w in lex.counts:
            return Span(i, i + 1, "NUM", w)
        if fw is not None and not (entry and fw == "PREP"):
            return Span(i, i + 1, fw, w)
        prev_tag = prev[-1].tag if prev else ""
        is_noun = entry is not None and entry[0] == "NOUN"
        is_adj = w in self._adj_words
        is_rel = entry is not None and entry[0] == "REL"
        verb = lex.verb_form.get(w)
        if is_rel and p in (None, "ADP", "ADV", "SCONJ"):
            return Span(i, i + 1, "REL", w)
        if verb is not None:
            # "a dog watches the tv" (verb after its subject) vs "two watches on a table" (noun after a count)
            if p == "VERB" or (p is None and (not is_noun or prev_tag in ("NOUN", "PRON", "AUX", "CONJ"))):
                return Span(i, i + 1, "VERB", verb[0], False, verb[1])
        if is_adj and is_noun:
            # "an orange cat" (adjective before a noun) vs "an orange on a plate" (noun)
            next_is_noun = nxt in self._noun_words or nxt in self._adj_words
            use_adj = p == "ADJ" if p is not None else next_is_noun
            if use_adj:
                return Span(i, i + 1, "ADJ", w, False, lex.attr_group_of[w])
        if is_noun and p is None and i > 0 and lower[i - 1] == "to" and not (prev and prev[-1].tag == "REL"):
            return Span(i, i + 1, "X", w)  # infinitive: "where to park"
        if is_noun and p is None and w != entry[1] and prev_tag == "NOUN" and not prev[-1].plural \
                and lex.function_words.get(nxt) in ("DET", "PRON"):
            return Span(i, i + 1, "X", w)  # "a man purses his lips": an -s verb, not a plural noun
        if is_noun and p in (None, "NOUN", "PROPN"):
            canon = entry[1]
            return Span(i, i + 1, "NOUN", canon, w != canon, lex.noun_category.get(canon, ""))
        if is_adj and p in (None, "ADJ", "VERB"):  # participles like "sliced" are tagged VERB by spaCy
            return Span(i, i + 1, "ADJ", w, False, lex.attr_group_of[w])
        return Span(i, i + 1, "X", w)


class SpacyTagger(LexiconTagger):
    """The lexicon tagger with spaCy's coarse POS tags as a veto (needs spaCy and an installed model)."""

    def __init__(self, lex: Lexicon, model: str = "en_core_web_sm") -> None:
        import spacy  # optional dependency

        super().__init__(lex)
        self.nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])
        self.name = f"spacy:{model}"

    def pos_for(self, captions: Sequence[str], offsets: Sequence[Sequence[int]]) -> list[list[Optional[str]]]:
        """Coarse POS per our token, aligned by character offset (None where tokenisations differ)."""
        out = []
        for doc, offs in zip(self.nlp.pipe(captions, batch_size=256), offsets):
            by_idx = {t.idx: t.pos_ for t in doc}
            out.append([by_idx.get(o) for o in offs])
        return out


def build_tagger(lex: Lexicon, prefer: str = "auto") -> LexiconTagger:
    """spaCy (when ``prefer`` is auto/spacy and a model loads) else the lexicon tagger.

    ``prefer``: "auto", "lexicon", "spacy" (error if unavailable) or "spacy:<model name>".
    """
    if prefer == "lexicon":
        return LexiconTagger(lex)
    model = prefer.split(":", 1)[1] if prefer.startswith("spacy:") else "en_core_web_sm"
    try:
        return SpacyTagger(lex, model)
    except (ImportError, OSError) as e:
        if prefer != "auto":
            raise UnavailableError(f"tagger {prefer!r}: spaCy or its model '{model}' is not installed ({e}); "
                                   "install them or use --tagger lexicon") from None
        return LexiconTagger(lex)
