"""The rule-based caption edits: SugarCrepe's seven hard-negative types (arXiv 2306.14610, Sec. 3).

Each edit takes a tagged caption and a seeded RNG and returns the edited lower-case tokens plus a short
detail string, or None when the caption offers no site for it. CE-CLIP's four types (arXiv 2306.08832:
swap, replace-attribute, replace-object, replace-relation/verb) are a subset; "swap" tries either swap.

Grammar is kept by construction: a/an is recomputed after replacements and insertions, plurals follow a
count change together with is/are-type verbs, replacements stay within a word group (a transitive verb
for a transitive verb, a colour for a colour, a same-category object), and synonyms/hypernyms are never used
as substitutes (the negative must be false). Swaps move words (or article+word pairs) and never rewrite
any: the bag of words of a swap negative equals the positive's, which is what makes swaps a test of order.

Deliberate deviation: SugarCrepe generated its negatives with ChatGPT and filtered them with adversarial
refinement; these rules are the offline baseline, not a reproduction of its text distribution.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional

from tripletclip.negatives.lexicon import Lexicon, article_for
from tripletclip.negatives.tagger import Span

_AGREE_PLURAL = {"is": "are", "was": "were", "has": "have", "does": "do"}
_AGREE_SINGULAR = {v: k for k, v in _AGREE_PLURAL.items()}
_ARTICLES = ("a", "an")
_ADD_ATT_GROUPS = ("colour", "size", "material", "age", "pattern")
_COUNT_WORDS = ("two", "three", "four", "five", "six")
_NP_END = ("PUNCT", "REL", "PREP", "CONJ", "VERB", "AUX")
_SINGULAR_DETS = ("one", "this", "that", "each", "every", "another")
_PLURAL_DETS = ("these", "those", "several", "many", "both", "seven", "eight", "nine", "ten")


@dataclass(slots=True)
class Parsed:
    """A tagged caption: lower-case tokens and the spans covering them."""

    lower: list[str]
    spans: list[Span]

    def text(self, i: int) -> str:
        s = self.spans[i]
        return " ".join(self.lower[s.start : s.end])

    def pieces(self) -> list[str]:
        return [self.text(i) for i in range(len(self.spans))]


EditResult = Optional[tuple[list[str], str]]  # (span pieces, detail)


def _fix_articles(pieces: list[str]) -> list[str]:
    """Recompute a/an before the next word (pieces may hold several words)."""
    out = list(pieces)
    for i in range(len(out) - 1):
        if out[i] in _ARTICLES and out[i + 1][:1].isalpha():
            out[i] = article_for(out[i + 1])
    return out


def _articles_ok(pieces: list[str]) -> bool:
    return all(pieces[i] == article_for(pieces[i + 1]) for i in range(len(pieces) - 1)
               if pieces[i] in _ARTICLES and pieces[i + 1][:1].isalpha())


def _words_in(p: Parsed) -> set[str]:
    return {s.lemma for s in p.spans if s.lemma} | set(p.lower)


def _nouns(p: Parsed, lex: Lexicon) -> list[int]:
    """Indices of editable object nouns (known, not generic)."""
    return [i for i, s in enumerate(p.spans) if s.tag == "NOUN" and s.lemma not in lex.generic]


def _head_noun(p: Parsed, i: int) -> Optional[int]:
    """The noun an adjective at span i modifies (the next noun after a run of adjectives)."""
    j = i + 1
    while j < len(p.spans) and p.spans[j].tag == "ADJ":
        j += 1
    return j if j < len(p.spans) and p.spans[j].tag == "NOUN" else None


def _later_verb(p: Parsed, j: int, plural: bool) -> bool:
    """Whether a verb after span j would have to agree with a noun of the given number (and would not)."""
    bad = _AGREE_PLURAL if plural else _AGREE_SINGULAR
    for s in p.spans[j + 1 :]:
        w = p.lower[s.start]
        if w in bad or (plural and s.tag == "VERB" and s.group == "s"):
            return True
    return False


def _pick_other(rng: random.Random, pool: list[str], old: str, used: set[str], lex: Lexicon,
                opposite: Optional[str] = None, p_opposite: float = 0.5) -> Optional[str]:
    if opposite and opposite not in used and not lex.same_meaning(old, opposite) and rng.random() < p_opposite:
        return opposite
    cands = [w for w in pool if w not in used and not lex.same_meaning(old, w) and w not in lex.generic]
    return rng.choice(cands) if cands else None


def replace_obj(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    sites = _nouns(p, lex)
    if not sites:
        return None
    i = rng.choice(sites)
    s = p.spans[i]
    used = _words_in(p)
    countable = s.lemma not in lex.uncountable
    pool = [n for n in lex.categories.get(s.group, []) if (n not in lex.uncountable) == countable]
    new = _pick_other(rng, pool, s.lemma, used, lex)
    if new is None:
        return None
    pieces = p.pieces()
    pieces[i] = lex.plural(new) if s.plural else new
    return _fix_articles(pieces), f"{s.lemma}->{new}"


def replace_att(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    adj = [i for i, s in enumerate(p.spans) if s.tag == "ADJ"]
    # count sites: "a dog", "two cats"; not the modifier of a compound ("a banana tree")
    counts = [i for i, s in enumerate(p.spans)
              if (s.tag == "NUM" or p.lower[s.start] in _ARTICLES) and i + 1 < len(p.spans)
              and p.spans[i + 1].tag == "NOUN" and p.spans[i + 1].lemma not in lex.uncountable
              and not (i + 2 < len(p.spans) and p.spans[i + 2].tag in ("NOUN", "X"))]
    sites = adj + counts
    if not sites:
        return None
    i = rng.choice(sites)
    s = p.spans[i]
    pieces = p.pieces()
    used = _words_in(p)
    if s.tag == "ADJ":
        new = _pick_other(rng, lex.attr_groups[s.group], s.lemma, used, lex, lex.attr_opposites[s.group].get(s.lemma))
        if new is None:
            return None
        pieces[i] = new
        return _fix_articles(pieces), f"{s.group}:{s.lemma}->{new}"
    # Count edit: "a dog is" -> "three dogs are", "two cats" -> "five cats", "four cats" -> "a cat".
    noun = p.spans[i + 1]
    old = p.lower[s.start]
    old_value = 1 if old in _ARTICLES else lex.counts.get(old, 0)
    choices = [w for w in _COUNT_WORDS if lex.counts[w] != old_value] + ([] if old_value == 1 else ["a"])
    new = rng.choice(choices)
    plural = new != "a"
    if plural != noun.plural and _later_verb(p, i + 2, plural):  # the verb right after is fixed below
        return None
    pieces[i] = new
    pieces[i + 1] = lex.plural(noun.lemma) if plural else noun.lemma
    if i + 2 < len(pieces):
        agree = _AGREE_PLURAL if plural else _AGREE_SINGULAR
        pieces[i + 2] = agree.get(pieces[i + 2], pieces[i + 2])
    return _fix_articles(pieces), f"count:{old}->{new}"


def replace_rel(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    sites = []
    for i, s in enumerate(p.spans):
        if s.tag == "VERB":
            sites.append(i)
        elif s.tag == "REL":
            # only relations that hold between two objects: "on a table", not "on display"
            nxt = [t.tag for t in p.spans[i + 1 : i + 5]]
            if "NOUN" in nxt and all(t in ("DET", "NUM", "ADJ", "X") for t in nxt[: nxt.index("NOUN")]) and i > 0:
                sites.append(i)
    if not sites:
        return None
    i = rng.choice(sites)
    s = p.spans[i]
    used = _words_in(p)
    pieces = p.pieces()
    if s.tag == "REL":
        new = _pick_other(rng, lex.spatial, s.lemma, used, lex, lex.spatial_opposites.get(s.lemma), 0.6)
        if new is None:
            return None
        pieces[i] = new
        return _fix_articles(pieces), f"spatial:{s.lemma}->{new}"
    nxt = p.spans[i + 1].tag if i + 1 < len(p.spans) else "PUNCT"
    if nxt not in ("DET", "NUM", "ADJ", "NOUN", "PRON", "REL", "PUNCT", "CONJ"):
        return None  # unknown object or a particle ("holding up"): transitivity unclear
    transitive = nxt in ("DET", "NUM", "ADJ", "NOUN", "PRON")
    verbs = lex.verbs_transitive if transitive else lex.verbs_intransitive
    form = 0 if s.group == "ing" else 1
    pool = [v[form] for v in verbs if v[0] != s.lemma]
    new = _pick_other(rng, pool, pieces[i], used, lex)
    if new is None:
        return None
    pieces[i] = new
    return pieces, f"{'transitive' if transitive else 'intransitive'}:{s.lemma}->{new}"


def _swap(p: Parsed, lex: Lexicon, pairs: list[tuple[int, int]], rng: random.Random, kind: str) -> EditResult:
    """Swap the words of span pairs (or determiner+word pairs); keep the first grammatical result."""
    rng.shuffle(pairs)
    base = p.pieces()
    for a, b in pairs:
        if base[a] == base[b]:
            continue
        moved = {a: b, b: a}  # position -> span whose word lands there
        pieces = list(base)
        pieces[a], pieces[b] = base[b], base[a]
        if _articles_ok(pieces) and _agrees(p, lex, pieces, moved, check_prev=True):
            return pieces, f"{kind}:{base[a]}<->{base[b]}"
        if a > 0 and b - 1 > a and p.spans[a - 1].tag in ("DET", "NUM") and p.spans[b - 1].tag in ("DET", "NUM"):
            pieces = list(base)
            pieces[a - 1], pieces[a], pieces[b - 1], pieces[b] = base[b - 1], base[b], base[a - 1], base[a]
            if _articles_ok(pieces) and _agrees(p, lex, pieces, moved, check_prev=False):
                return pieces, f"{kind}:{base[a - 1]} {base[a]}<->{base[b - 1]} {base[b]}"
    return None


def _agrees(p: Parsed, lex: Lexicon, pieces: list[str], moved: dict[int, int], check_prev: bool) -> bool:
    """Number agreement of swapped nouns with the word before (unless it moved along) and the verb after."""
    for i, src in moved.items():
        new, old = p.spans[src], p.spans[i]
        if new.tag != "NOUN":
            continue
        mass = new.lemma in lex.uncountable
        prev = pieces[i - 1] if i > 0 else ""
        nxt = pieces[i + 1] if i + 1 < len(pieces) else ""
        if check_prev:
            if (new.plural or mass) and (prev in _ARTICLES or prev in _SINGULAR_DETS):
                return False
            if not new.plural and (prev in _COUNT_WORDS or prev in _PLURAL_DETS):
                return False
            # a singular countable noun needs a determiner: "with french fries" must not become "with hot dog"
            if not new.plural and not mass and (i == 0 or p.spans[i - 1].tag not in ("DET", "NUM", "ADJ")):
                return False
        if (new.plural and nxt in _AGREE_PLURAL) or (not new.plural and nxt in _AGREE_SINGULAR):
            return False
        # "dogs watches" / "a dog watch": a following -s verb agrees with a singular subject only
        if new.plural != old.plural and i + 1 < len(p.spans) and p.spans[i + 1].tag == "VERB":
            return False
    return True


def swap_obj(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    nouns = [i for i in _nouns(p, lex)
             if not (i + 1 < len(p.spans) and p.spans[i + 1].tag == "NOUN")  # not inside a compound
             and not (i > 0 and p.spans[i - 1].tag == "NOUN")]
    pairs = [(a, b) for k, a in enumerate(nouns) for b in nouns[k + 1 :] if p.spans[a].lemma != p.spans[b].lemma]
    return _swap(p, lex, pairs, rng, kind="obj") if pairs else None


def swap_att(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    adj = [(i, _head_noun(p, i)) for i, s in enumerate(p.spans) if s.tag == "ADJ"]
    adj = [(i, h) for i, h in adj if h is not None]
    pairs = [(a, b) for k, (a, ha) in enumerate(adj) for b, hb in adj[k + 1 :] if ha != hb]
    same = [(a, b) for a, b in pairs if p.spans[a].group == p.spans[b].group]
    # prefer same-group swaps (colour <-> colour): "a red car and a blue bus" -> "a blue car and a red bus"
    return (_swap(p, lex, same, rng, kind="att") if same else None) or \
        (_swap(p, lex, [x for x in pairs if x not in same], rng, kind="att") if pairs else None)


def add_obj(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    nouns = _nouns(p, lex)
    if not nouns:
        return None
    used = _words_in(p)
    pieces = p.pieces()
    # After the last object (no subject-verb agreement to break) "... and a lamp", or after the first "with a".
    options = [(nouns[-1], "and"), (nouns[0], "with")]
    rng.shuffle(options)
    for i, conj in options:
        if i + 1 < len(pieces) and (pieces[i + 1] in _AGREE_PLURAL or pieces[i + 1] in _AGREE_SINGULAR):
            continue
        if i + 1 < len(p.spans) and p.spans[i + 1].tag not in _NP_END:
            continue  # the noun phrase goes on ("the street names"): inserting would split it
        if conj == "and" and not p.spans[i].plural and _later_verb(p, i, plural=True):
            continue  # "a man plays" must not become "a man and an umpire plays"
        anchor = p.spans[i]
        pool = [n for n in lex.categories.get(anchor.group, []) if n not in lex.uncountable]
        new = _pick_other(rng, pool, anchor.lemma, used, lex)
        if new is None:
            continue
        out = pieces[: i + 1] + [conj, article_for(new), new] + pieces[i + 1 :]
        return out, f"{conj}:{new}"
    return None


def add_att(p: Parsed, lex: Lexicon, rng: random.Random) -> EditResult:
    # "a dog" -> "a brown dog", "on benches" -> "on wooden benches"; not a bare singular ("in bed")
    sites = [i for i in _nouns(p, lex) if i > 0 and (p.spans[i - 1].tag in ("DET", "NUM") or (
        p.spans[i].plural and p.spans[i - 1].tag in ("PREP", "REL", "CONJ", "VERB")))]
    if not sites:
        return None
    i = rng.choice(sites)
    s = p.spans[i]
    groups = [g for g in _ADD_ATT_GROUPS if g in lex.attr_groups and lex.allows(g, s.group)
              and not (s.lemma in lex.uncountable and g != "colour")]
    if not groups:
        return None
    g = rng.choice(groups)
    used = _words_in(p)
    cands = [w for w in lex.attr_groups[g] if w not in used]
    if not cands:
        return None
    new = rng.choice(cands)
    pieces = p.pieces()
    pieces.insert(i, new)
    return _fix_articles(pieces), f"{g}:{new}"


CAPTION_EDITS: dict[str, Callable[[Parsed, Lexicon, random.Random], EditResult]] = {
    "replace_obj": replace_obj,
    "replace_att": replace_att,
    "replace_rel": replace_rel,
    "swap_obj": swap_obj,
    "swap_att": swap_att,
    "add_obj": add_obj,
    "add_att": add_att,
}
