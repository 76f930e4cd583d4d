"""ARO's four word-order perturbations (Yuksekgonul et al., arXiv 2210.01936, COCO/Flickr-Order), seeded per row.

The four perturbations of the official ``TextShuffler`` (after O'Connor & Andreas 2021):
1. shuffle the nouns among the noun positions and the adjectives among the adjective positions;
2. shuffle every token that is neither a noun nor an adjective, among those positions;
3. split the word tokens into consecutive trigrams and shuffle inside each trigram;
4. shuffle the order of the trigrams.
Nouns are Penn tags NN, NNS, NNP, NNPS and adjectives JJ, JJR, JJS. Each output is the tokens joined by spaces,
then ``pre_caption`` (lower case, ``.!"()*#:;~`` removed, whitespace collapsed, first 30 words), which is also
applied to the original caption.

Deliberate differences from the official code, each recorded in the result:
- Randomness: the official code draws from the global numpy / random state seeded once, so a caption's
  scrambles depend on every caption before it. Here each caption has its own ``random.Random`` seeded by
  (seed, crc32(image name), caption index): any subset of the file gets exactly the scrambles of the full run.
- Tagger: spaCy ``en_core_web_sm`` when spaCy and that model are installed (as in the official code);
  otherwise :class:`LexiconTagger`, a documented approximation (closed-class word lists, an adjective lexicon,
  suffix rules, "-s verb after a noun" rule; anything else alphabetic is a noun). Its scrambles are not
  bit-identical to spaCy's, so its numbers approximate the published protocol; the tagger name is recorded.
- Trigram tokens: NLTK's Treebank-style word tokenizer when nltk is installed (the official ``word_tokenize``
  without its sentence splitter, which needs downloaded data), else a regex that splits punctuation and clitics.
"""
from __future__ import annotations

import random
import re
import zlib
from typing import Callable, Optional, Protocol

from tripletclip.errors import InputError

PERTURBATIONS = ("shuffle_nouns_and_adj", "shuffle_allbut_nouns_and_adj", "shuffle_within_trigrams", "shuffle_trigrams")
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})

_TOKEN_RE = re.compile(
    r"[A-Za-z0-9]+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|[0-9]+(?:[.,][0-9]+)*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*|[^\sA-Za-z0-9]"
)


_PUNCT_RE = re.compile(r"([.!\"()*#:;~])")
_SPACES_RE = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 30) -> str:
    """ARO / BLIP caption normalisation: lower case, drop ``.!"()*#:;~``, collapse spaces, keep max_words words."""
    caption = _PUNCT_RE.sub(" ", caption.lower())
    caption = _SPACES_RE.sub(" ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def regex_tokenize(text: str) -> list[str]:
    """Words, clitics ("'s", "n't") and punctuation marks as separate tokens."""
    return _TOKEN_RE.findall(text)


class Tagger(Protocol):
    name: str

    def tag(self, text: str) -> list[tuple[str, str]]:
        """(token, Penn tag) pairs."""


class SpacyTagger:
    """spaCy's tokens and fine-grained tags (the official choice)."""

    def __init__(self, model: str = "en_core_web_sm") -> None:
        import spacy

        self.nlp = spacy.load(model)
        self.name = f"spacy:{model}@{spacy.__version__}"

    def tag(self, text: str) -> list[tuple[str, str]]:
        return [(t.text, t.tag_) for t in self.nlp(text)]


def _words(s: str) -> frozenset[str]:
    return frozenset(s.split())


# closed-class words and frequent verbs of COCO / Flickr captions (never nouns or adjectives)
_OTHER = _words(
    "a an the this that these those some any each every no another either neither all both few many several much "
    "more most such what which whose its his her their our my your his its "
    "about above across after against along alongside amid among amongst around as at atop before behind below "
    "beneath beside besides between beyond by down during except for from in inside into like near next of off on "
    "onto opposite out outside over past per since than through throughout till to toward towards under underneath "
    "until up upon via with within without "
    "and or but nor so yet while whereas because although though if when where whether then "
    "i you he she it we they me him us them myself himself herself itself themselves ourselves someone something "
    "somebody anyone anything everyone everything nobody nothing who whom there here "
    "is are was were be been being am has have had having do does did doing can could will would shall should may "
    "might must 's 're 've 'll 'd 'm n't not "
    "sits sit stands stand holds hold rides ride looks look lays lay lies lie walks walk runs run plays play eats "
    "eat flies fly waits wait wears wear carries carry contains contain shows show watches watch hangs hang "
    "leans lean rests rest sleeps sleep stares stare grazes graze swims swim jumps jump throws throw catches "
    "catch uses use talks talk smiles smile drives drive pulls pull pushes push makes make takes take "
    "one two three four five six seven eight nine ten eleven twelve dozen hundred "
    "very together also just too almost nearly away back again still only even well"
)
_ADJ = _words(
    "white black red blue green yellow orange purple pink brown gray grey silver golden tan beige dark light bright "
    "colorful multicolored big large small little tiny huge giant tall short long wide narrow thick thin "
    "young old new elderly empty full open closed wet dry clean dirty fresh ripe hot cold warm cool busy quiet "
    "sunny cloudy snowy grassy sandy rocky wooden electric modern vintage antique clear good bad nice pretty "
    "beautiful cute ugly happy sad funny favorite different same various single double professional male female "
    "fancy plain striped spotted stuffed half whole front left right outdoor indoor lush leafy tiled paved "
    "asian african american italian chinese japanese mexican french healthy delicious tasty huge high low "
    "round square flat shiny fluffy furry hairy calm rough smooth soft hard heavy deep shallow strange unusual "
    "ready busy crowded lone giant adult baby little older younger other"
)
_ADJ_SUFFIXES = ("ous", "ful", "ive", "able", "ible", "less", "ish", "ical")
_ING_NOUNS = _words(
    "building buildings clothing ceiling painting paintings railing ring rings king thing things evening morning "
    "wedding icing frosting topping toppings stuffing pudding sibling awning string wing wings swing sling bedding "
    "parking ping spring kitchen"
)


class LexiconTagger:
    """Rule-based stand-in for spaCy's noun / adjective tags (used when spaCy or its model is absent)."""

    name = "fallback:lexicon-v1"

    def tag(self, text: str) -> list[tuple[str, str]]:
        toks = regex_tokenize(text)
        tags: list[str] = []
        for i, tok in enumerate(toks):
            w = tok.lower()
            nxt = toks[i + 1].lower() if i + 1 < len(toks) else ""
            prev = tags[-1] if tags else ""
            if not w[0].isalpha():
                tags.append("CD" if w[0].isdigit() else "PUNCT")
            elif w in _ADJ:
                tags.append("JJ")
            elif w in _OTHER:
                tags.append("OTHER")
            elif w.endswith("ly") and len(w) > 4:
                tags.append("RB")
            elif w.endswith("ing") and len(w) > 4 and w not in _ING_NOUNS:
                tags.append("VBG")
            elif w.endswith("ed") and len(w) > 4:
                # participles before a content word modify it ("a stuffed bear"); elsewhere they are verbs
                tags.append("JJ" if nxt and nxt[0].isalpha() and nxt not in _OTHER else "VBN")
            elif w.endswith(_ADJ_SUFFIXES) and len(w) > 5:
                tags.append("JJ")
            elif w.endswith("s") and not w.endswith("ss") and prev in ("NN", "NNS") and (nxt in _OTHER or nxt.endswith("ing")):
                tags.append("VBZ")  # "a dog chases a ball": third-person verb between a noun and a function word
            else:
                tags.append("NNS" if w.endswith("s") and not w.endswith("ss") else "NN")
        return list(zip(toks, tags))


def load_tagger(kind: str = "auto", spacy_model: str = "en_core_web_sm") -> Tagger:
    """spaCy when available (``auto``) or required (``spacy``); the lexicon tagger for ``fallback`` or as fallback."""
    if kind not in ("auto", "spacy", "fallback"):
        raise InputError(f"tagger must be auto, spacy or fallback, got {kind!r}")
    if kind != "fallback":
        try:
            return SpacyTagger(spacy_model)
        except (ImportError, OSError) as e:
            if kind == "spacy":
                raise InputError(
                    f"spaCy tagger requested but unavailable ({e}); install spacy and the {spacy_model} model, "
                    "or use tagger=auto"
                ) from None
    return LexiconTagger()


def load_word_tokenizer() -> tuple[Callable[[str], list[str]], str]:
    """NLTK's Treebank-style word tokenizer if nltk is installed, else the regex tokenizer; with its name."""
    try:
        from nltk.tokenize import NLTKWordTokenizer

        tok = NLTKWordTokenizer()
        return tok.tokenize, "nltk:NLTKWordTokenizer"
    except ImportError:
        return regex_tokenize, "fallback:regex"


def _trigrams(tokens: list[str]) -> list[list[str]]:
    return [tokens[i : i + 3] for i in range(0, len(tokens), 3)]


def row_rng(seed: int, image: str, caption_index: int) -> random.Random:
    """The generator of one caption: depends only on (seed, image name, caption index)."""
    return random.Random((int(seed) << 48) | (zlib.crc32(image.encode("utf-8")) << 16) | (caption_index & 0xFFFF))


def _shuffled(tokens: list[str], positions: list[int], rng: random.Random) -> list[str]:
    """``tokens`` with the tokens at ``positions`` permuted among those positions."""
    moved = [tokens[i] for i in positions]
    rng.shuffle(moved)
    out = list(tokens)
    for i, t in zip(positions, moved):
        out[i] = t
    return out


def perturb(caption: str, tagger: Tagger, word_tokenize: Callable[[str], list[str]], rng: random.Random) -> list[str]:
    """The four raw perturbations of ``caption`` in :data:`PERTURBATIONS` order (before pre_caption)."""
    tagged = tagger.tag(caption)
    tokens = [t for t, _ in tagged]
    nouns = [i for i, (_, tag) in enumerate(tagged) if tag in NOUN_TAGS]
    adjs = [i for i, (_, tag) in enumerate(tagged) if tag in ADJ_TAGS]
    others = [i for i, (_, tag) in enumerate(tagged) if tag not in NOUN_TAGS and tag not in ADJ_TAGS]
    t1 = _shuffled(_shuffled(tokens, nouns, rng), adjs, rng)
    t2 = _shuffled(tokens, others, rng)

    tris = _trigrams(word_tokenize(caption))
    within = []
    for tri in tris:
        tri = list(tri)
        rng.shuffle(tri)
        within.extend(tri)
    order = list(range(len(tris)))
    rng.shuffle(order)
    across = [w for j in order for w in tris[j]]
    return [" ".join(t1), " ".join(t2), " ".join(within), " ".join(across)]


def scramble(
    caption: str, image: str, caption_index: int, tagger: Tagger, word_tokenize: Callable[[str], list[str]],
    seed: int = 1, max_words: int = 30,
) -> tuple[str, list[Optional[str]]]:
    """(pre_caption(original), the 4 pre_captioned perturbations, None where it equals the original)."""
    original = pre_caption(caption, max_words)
    outs = [pre_caption(p, max_words) for p in perturb(caption, tagger, word_tokenize, row_rng(seed, image, caption_index))]
    return original, [p if p != original else None for p in outs]
