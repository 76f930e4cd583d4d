"""The offline ``rules`` negative-caption generator (SugarCrepe / CE-CLIP edit types, no model needed).

Per caption: tokenise, tag (spaCy when installed, else the lexicon tagger), then try the configured edit types
in a seeded order until ``per_caption`` negatives exist. The RNG is seeded by (seed, key), so a caption's
negatives do not depend on batching, sharding or resumption. Presets: ``sugarcrepe`` (the seven types of
arXiv 2306.14610, one negative per caption by default) and ``ceclip`` (swap, replace-attribute,
replace-object, replace-relation: the four of arXiv 2306.08832, one each).
"""
from __future__ import annotations

import random
import re
from typing import Any, Optional, Sequence

from tripletclip.edit_types import CECLIP_TYPES, EDIT_TYPES, SUGARCREPE_TYPES
from tripletclip.errors import InputError
from tripletclip.negatives.base import TEXT_GENERATORS, GenStats, NegativeCaption, stable_hash
from tripletclip.negatives.edits import CAPTION_EDITS, Parsed
from tripletclip.negatives.lexicon import load_lexicon
from tripletclip.negatives.tagger import build_tagger, detokenize, token_offsets, tokenize

# CE-CLIP's "swap" = either swap, whichever applies; its other three types are one of ours each
PSEUDO_TYPES = {"swap": CECLIP_TYPES["swap"]}
PRESETS: dict[str, tuple[str, ...]] = {
    "sugarcrepe": SUGARCREPE_TYPES,
    "ceclip": tuple(name if name in PSEUDO_TYPES else ours[0] for name, ours in CECLIP_TYPES.items()),
}


_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def normalise(text: str) -> str:
    """Lower-case words only: what 'the negative differs from the positive' is judged on."""
    return " ".join(_WORD_RE.findall(text.lower()))


@TEXT_GENERATORS.register("rules")
class RulesGenerator:
    """Rule-based hard negatives; see the module docstring."""

    name = "rules"

    def __init__(self, types: Sequence[str] | str = "sugarcrepe", per_caption: int = 1, seed: int = 0,
                 tagger: str = "auto", wordlists: Optional[str] = None, ordered: bool = False) -> None:
        if isinstance(types, str):
            types = PRESETS[types] if types in PRESETS else tuple(t for t in types.split(",") if t)
        bad = [t for t in types if t not in CAPTION_EDITS and t not in PSEUDO_TYPES]
        if bad or not types:
            raise InputError(f"rules: unknown edit type {bad[0] if bad else '(none)'}; use "
                             f"{', '.join(list(CAPTION_EDITS) + list(PSEUDO_TYPES))} or a preset ({', '.join(PRESETS)})")
        if per_caption < 1:
            raise InputError(f"rules: per_caption must be >= 1, got {per_caption}")
        self.types = tuple(types)
        # ceclip wants every type once, in its order; sugarcrepe picks types at random per caption
        self.ordered = ordered or (tuple(types) == PRESETS["ceclip"])
        self.per_caption = per_caption
        self.seed = seed
        self.wordlists = wordlists
        self.lex = load_lexicon(wordlists)
        self.tagger = build_tagger(self.lex, tagger)
        self.stats = GenStats()

    def info(self) -> dict[str, Any]:
        return {"generator": "rules", "types": list(self.types), "per_caption": self.per_caption, "seed": self.seed,
                "tagger": self.tagger.name, "wordlists": self.wordlists or "shipped", "ordered": self.ordered}

    def parse(self, caption: str, pos: Optional[list] = None) -> tuple[list[str], Parsed]:
        toks = tokenize(caption)
        lower = [t.lower() for t in toks]
        return toks, Parsed(lower, self.tagger.tag(lower, pos))

    def generate(self, items: Sequence[tuple[str, str]]) -> list[list[NegativeCaption]]:
        pos_all: list[Optional[list]] = [None] * len(items)
        if hasattr(self.tagger, "pos_for"):
            offs = [token_offsets(c) for _, c in items]
            pos_all = self.tagger.pos_for([c for _, c in items], offs)
        return [self.negatives_for(k, c, pos) for (k, c), pos in zip(items, pos_all)]

    def negatives_for(self, key: str, caption: str, pos: Optional[list] = None,
                      types: Optional[Sequence[str]] = None) -> list[NegativeCaption]:
        """Up to ``per_caption`` negatives of distinct types (fewer when the caption offers fewer sites)."""
        toks, parsed = self.parse(caption, pos)
        rng = random.Random(stable_hash(self.seed, key, caption))
        order = list(types or self.types)
        if not (self.ordered and types is None):
            rng.shuffle(order)
        src_norm = normalise(caption)
        out: list[NegativeCaption] = []
        seen = {src_norm}
        for t in order:
            if len(out) >= self.per_caption:
                break
            for real in (rng.sample(PSEUDO_TYPES[t], len(PSEUDO_TYPES[t])) if t in PSEUDO_TYPES else (t,)):
                res = CAPTION_EDITS[real](parsed, self.lex, rng)
                if res is None:
                    self.stats.add(f"no_site:{real}")
                    continue
                pieces, detail = res
                text = render(pieces, caption)
                norm = normalise(text)
                if norm in seen:
                    self.stats.add(f"duplicate:{real}")
                    continue
                seen.add(norm)
                assert real in EDIT_TYPES
                out.append(NegativeCaption(text, real, "rules", detail))
                break
        return out


def render(pieces: Sequence[str], original: str) -> str:
    """Detokenise edited lower-case pieces, restoring the original's capitalised first letter."""
    words = " ".join(pieces).split(" ")
    text = detokenize(words)
    if original[:1].isupper():
        text = text[:1].upper() + text[1:]
    return text
