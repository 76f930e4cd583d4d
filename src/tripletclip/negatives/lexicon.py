"""The shipped word lists and the English inflection the rule-based negatives need.

Word lists (``negatives/wordlists/``): objects by category, attribute adjectives by group with opposites,
count words, spatial relations and action verbs, irregular plurals, closed-class words. They drive the
rule generator (SugarCrepe's seven edit types, arXiv 2306.14610; CE-CLIP's four, arXiv 2306.08832) and the
concept-coverage statistics.

Inflection is deliberately small: regular English plural spelling plus the irregular table, and the a/an
choice by the sound of the next word (with the usual exceptions: "a unicorn", "an hour").
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

WORDLIST_DIR = Path(__file__).resolve().parent / "wordlists"

_VOWEL_SOUND_EXCEPTIONS_A = ("uni", "use", "usu", "uti", "ure", "eu", "one", "once", "ubiq", "u-", "euro")
_VOWEL_SOUND_EXCEPTIONS_AN = ("hour", "honest", "honor", "honour", "heir")


def article_for(word: str) -> str:
    """'a' or 'an' for the word that follows the article."""
    w = word.lower()
    if w.startswith(_VOWEL_SOUND_EXCEPTIONS_AN):
        return "an"
    if w.startswith(_VOWEL_SOUND_EXCEPTIONS_A):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def regular_plural(noun: str) -> str:
    """English spelling rules for the plural of a (last) word."""
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


@dataclass
class Lexicon:
    """All word lists, with lookups from surface form to meaning."""

    categories: dict[str, list[str]]  # category -> singular nouns
    plural_of: dict[str, str]  # singular -> plural (surface forms, multi-word allowed)
    singular_of: dict[str, str]  # plural -> singular
    uncountable: frozenset[str]  # nouns whose plural is themselves (water, rice, ...)
    noun_category: dict[str, str]  # singular -> first category listing it
    attr_groups: dict[str, list[str]]  # group -> adjectives
    attr_opposites: dict[str, dict[str, str]]  # group -> adjective -> opposite
    attr_applies: dict[str, frozenset[str]]  # group -> categories ([] = all)
    attr_group_of: dict[str, str]  # adjective -> group
    counts: dict[str, int]  # number word -> value
    spatial: list[str]
    spatial_opposites: dict[str, str]
    verbs_transitive: list[tuple[str, str]]
    verbs_intransitive: list[tuple[str, str]]
    verb_form: dict[str, tuple[str, str]]  # surface -> (ing form, form name "ing"|"s")
    function_words: dict[str, str]  # word -> DET/PRON/AUX/CONJ/PREP
    synonym_group: dict[str, int] = field(default_factory=dict)  # word -> id of its synonym line
    generic: frozenset[str] = frozenset()  # hypernyms never edited ("person", "animal", ...)
    max_phrase_words: int = 1
    phrases: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)  # words -> (tag, canonical)

    def plural(self, noun: str) -> str:
        if noun in self.plural_of:
            return self.plural_of[noun]
        head, _, last = noun.rpartition(" ")
        return (head + " " if head else "") + regular_plural(last)

    def same_meaning(self, a: str, b: str) -> bool:
        """Whether replacing a by b would leave the caption true (same word or listed synonyms)."""
        if a == b:
            return True
        ga = self.synonym_group.get(a)
        return ga is not None and ga == self.synonym_group.get(b)

    def allows(self, group: str, category: str) -> bool:
        """Whether attribute group may describe an object of this category (plausibility of add/replace)."""
        applies = self.attr_applies.get(group, frozenset())
        return not applies or category in applies


def _read_pairs(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


def _nouns(root: Path) -> dict[str, Any]:
    """Object categories, each noun's category, plurals (irregular list, else the regular rule), singulars."""
    objects = json.loads((root / "objects.json").read_text(encoding="utf-8"))
    categories = {k: list(v) for k, v in objects.items() if not k.startswith("_")}
    noun_category: dict[str, str] = {}
    for cat, nouns in categories.items():
        for n in nouns:
            noun_category.setdefault(n, cat)
    irregular: dict[str, str] = {}
    for parts in _read_pairs(root / "plurals.txt"):
        # multi-word entries are written as "w1 w2 w1 w2s": split the line in half
        half = len(parts) // 2
        irregular[" ".join(parts[:half])] = " ".join(parts[half:])
    plural_of: dict[str, str] = {}
    for n in noun_category:
        if n in irregular:
            plural_of[n] = irregular[n]
        else:
            head, _, last = n.rpartition(" ")
            plural_of[n] = (head + " " if head else "") + irregular.get(last, regular_plural(last))
    singular_of: dict[str, str] = {}
    for sing, plur in plural_of.items():
        if plur != sing:
            singular_of.setdefault(plur, sing)
    return {"categories": categories, "noun_category": noun_category, "plural_of": plural_of,
            "singular_of": singular_of, "uncountable": frozenset(n for n, pl in plural_of.items() if pl == n)}


def _attributes(root: Path) -> dict[str, Any]:
    """Attribute word groups, their opposites, the categories each applies to, and each word's group."""
    attrs = json.loads((root / "attributes.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"attr_groups": {}, "attr_opposites": {}, "attr_applies": {}, "attr_group_of": {}}
    for g, spec in attrs.items():
        if g.startswith("_"):
            continue
        out["attr_groups"][g] = list(spec["words"])
        out["attr_opposites"][g] = dict(spec.get("opposites", {}))
        out["attr_applies"][g] = frozenset(spec.get("applies_to", []))
        for w in spec["words"]:
            out["attr_group_of"].setdefault(w, g)
    return out


def _relations(root: Path) -> dict[str, Any]:
    """Spatial relations and their opposites, transitive / intransitive verbs and each verb form's lemma."""
    rel = json.loads((root / "relations.json").read_text(encoding="utf-8"))
    vt = [tuple(v) for v in rel["transitive"]]
    vi = [tuple(v) for v in rel["intransitive"]]
    verb_form: dict[str, tuple[str, str]] = {}
    for ing, third in vt + vi:
        verb_form.setdefault(ing, (ing, "ing"))
        verb_form.setdefault(third, (ing, "s"))
    return {"spatial": list(rel["spatial"]), "spatial_opposites": dict(rel.get("opposites", {})),
            "verbs_transitive": vt, "verbs_intransitive": vi, "verb_form": verb_form}


def _synonyms(root: Path) -> dict[str, Any]:
    """Synonym groups (a word's group id: never a substitute for another member) and generic words."""
    syn_group: dict[str, int] = {}
    generic: set[str] = set()
    for line_no, line in enumerate((root / "synonyms.txt").read_text(encoding="utf-8").splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("generic:"):
            generic.update(w.strip() for w in line[len("generic:"):].split(",") if w.strip())
            continue
        for w in line.split(","):
            syn_group.setdefault(w.strip(), line_no)
    return {"synonym_group": syn_group, "generic": frozenset(generic)}


@lru_cache(maxsize=4)
def load_lexicon(folder: str | None = None) -> Lexicon:
    """Load the word lists from ``folder`` (default: the shipped ones); cached."""
    root = Path(folder) if folder else WORDLIST_DIR
    function_words: dict[str, str] = {}
    for parts in _read_pairs(root / "function_words.txt"):
        for w in parts[1:]:
            function_words.setdefault(w, parts[0])
    lex = Lexicon(**_nouns(root), **_attributes(root), **_relations(root), **_synonyms(root),
                  counts={w: int(v) for w, v in _read_pairs(root / "counts.txt")}, function_words=function_words)
    # Multi-word phrases for longest-match tagging. Single words are looked up directly by the tagger.
    for rel_phrase in lex.spatial:
        lex.phrases[tuple(rel_phrase.split())] = ("REL", rel_phrase)
    for n in lex.noun_category:
        lex.phrases.setdefault(tuple(n.split()), ("NOUN", n))
        lex.phrases.setdefault(tuple(lex.plural_of[n].split()), ("NOUN", n))
    for w in lex.attr_group_of:
        lex.phrases.setdefault(tuple(w.split()), ("ADJ", w))
    lex.max_phrase_words = max(len(k) for k in lex.phrases)
    return lex
