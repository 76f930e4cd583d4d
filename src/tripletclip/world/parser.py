"""Parser for captions of the world grammar (:mod:`tripletclip.world.grammar`): text -> Description.

Together with the renderer this turns the world into an offline text-to-image backend: any caption the world
grammar can produce (and any hand-written caption in the same grammar) parses into its meaning, from which a
scene satisfying it is sampled and rendered (:func:`tripletclip.world.render_caption`). Text outside the
grammar parses to None, never to a guess.
"""
from __future__ import annotations

import re
from typing import Optional

from tripletclip.world.caption import Description, ObjDesc, Relation
from tripletclip.world.grammar import ObjSurface, Surface
from tripletclip.world.vocab import (
    BACKGROUND_PHRASES,
    COLOURS,
    PREFIXES,
    RELATION_PHRASES,
    SHAPES,
    SIZE_WORDS,
    TEXTURE_ADJECTIVES,
    TEXTURE_WITH,
)

_SIZE = {w: (v, k) for v, ws in SIZE_WORDS.items() for k, w in enumerate(ws)}
_TEX_ADJ = {w: (v, k) for v, ws in TEXTURE_ADJECTIVES.items() for k, w in enumerate(ws)}
_TEX_WITH = {tuple(w.split()): (v, k) for v, ws in TEXTURE_WITH.items() for k, w in enumerate(ws)}
# longest phrases first so that "to the left of" wins over "left of"
_REL = sorted(((tuple(w.split()), (v, k)) for v, ws in RELATION_PHRASES.items() for k, w in enumerate(ws)),
              key=lambda t: -len(t[0]))
_PREFIX = sorted({tuple(p.split()): i for i, p in reversed(list(enumerate(PREFIXES))) if p}.items(),
                 key=lambda t: -len(t[0]))
_BG = sorted(((tuple(w.split()), (v, k)) for v, ws in BACKGROUND_PHRASES.items() for k, w in enumerate(ws)),
             key=lambda t: -len(t[0]))
_TOKEN = re.compile(r"[a-z]+|,")


class _Fail(Exception):
    pass


class _Tokens:
    def __init__(self, text: str) -> None:
        self.t = _TOKEN.findall(text.lower().strip().rstrip("."))
        self.i = 0

    def peek(self, k: int = 0) -> str:
        return self.t[self.i + k] if self.i + k < len(self.t) else ""

    def match(self, seq: tuple[str, ...]) -> bool:
        if tuple(self.t[self.i:self.i + len(seq)]) == seq:
            self.i += len(seq)
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.t)


class _State:
    """Wording evidence collected while parsing (to rebuild a Surface)."""

    def __init__(self) -> None:
        self.colour_first: Optional[bool] = None
        self.texture_with = False
        self.oxford = False


def _noun_phrase(tk: _Tokens, st: _State) -> tuple[ObjDesc, ObjSurface]:
    if not (tk.match(("a",)) or tk.match(("an",))):
        raise _Fail
    size = colour = texture = None
    size_k = tex_k = 0
    seen_colour_before_texture: Optional[bool] = None
    while True:
        w = tk.peek()
        if w in _SIZE and size is None and colour is None and texture is None:
            size, size_k = _SIZE[w]
        elif w in COLOURS and colour is None:
            colour = w
            if texture is not None:
                seen_colour_before_texture = False
        elif w in _TEX_ADJ and texture is None:
            texture, tex_k = _TEX_ADJ[w]
            if colour is not None:
                seen_colour_before_texture = True
        else:
            break
        tk.i += 1
    shape = tk.peek()
    if shape not in SHAPES:
        raise _Fail
    tk.i += 1
    for seq, (v, k) in _TEX_WITH.items():
        if texture is None and tk.match(seq):
            texture, tex_k = v, k
            st.texture_with = True
            break
    if seen_colour_before_texture is not None:
        if st.colour_first is not None and st.colour_first != seen_colour_before_texture:
            raise _Fail  # the grammar words all objects of a caption with one adjective order
        st.colour_first = seen_colour_before_texture
    return ObjDesc(shape, colour, texture, size), ObjSurface(size_k, tex_k)


def _relation(tk: _Tokens) -> Optional[tuple[str, int]]:
    for seq, val in _REL:
        if tk.match(seq):
            return val
    return None


def _list(tk: _Tokens, st: _State, first: Optional[tuple[ObjDesc, ObjSurface]] = None
          ) -> list[tuple[ObjDesc, ObjSurface]]:
    items = [first if first is not None else _noun_phrase(tk, st)]
    while True:
        if tk.match((",", "and")):
            st.oxford = True
            items.append(_noun_phrase(tk, st))
            return items
        if tk.match((",",)):
            items.append(_noun_phrase(tk, st))
            continue
        if tk.match(("and",)):
            items.append(_noun_phrase(tk, st))
        return items


def parse_caption_full(text: str) -> Optional[tuple[Description, Surface]]:
    """Meaning and wording of a caption of the world grammar; None if the text is outside the grammar."""
    tk = _Tokens(text)
    st = _State()
    try:
        prefix = 0
        for seq, idx in _PREFIX:
            if tk.match(seq):
                prefix = idx
                break
        items = [_noun_phrase(tk, st)]
        relations: list[Relation] = []
        rel_choice: list[int] = []
        is_form = tk.match(("is",))
        rel = _relation(tk)
        if is_form and (rel is None or prefix):
            raise _Fail
        if rel is None:
            form = "list"
            items = _list(tk, st, first=items[0])
        else:
            items.append(_noun_phrase(tk, st))
            relations.append((0, rel[0], 1))
            rel_choice.append(rel[1])
            form = "rel_is" if is_form else "rel"
            if tk.peek() == "and" and _peek_relation(tk, 1):
                tk.i += 1
                rel2 = _relation(tk)
                assert rel2 is not None
                items.append(_noun_phrase(tk, st))
                relations.append((0, rel2[0], 2))
                rel_choice.append(rel2[1])
                form = "shared"
            elif tk.match((",", "which", "is")):
                rel2 = _relation(tk)
                if rel2 is None or is_form:
                    raise _Fail
                items.append(_noun_phrase(tk, st))
                relations.append((1, rel2[0], 2))
                rel_choice.append(rel2[1])
                form = "chain"
            if form in ("shared", "chain") and is_form:
                raise _Fail
            if tk.match((",", "and")) or tk.match(("and",)):
                items += _list(tk, st)
        background, bg_choice = None, 0
        for seq, (v, k) in _BG:
            if tk.match(seq):
                background, bg_choice = v, k
                break
        if not tk.done():
            raise _Fail
    except (_Fail, IndexError):
        return None
    desc = Description(tuple(d for d, _ in items), tuple(relations), background)
    surf = Surface(
        form=form,
        objs=tuple(s for _, s in items),
        order=tuple(range(len(items))),
        rel_choice=tuple(rel_choice),
        prefix=prefix,
        colour_first=True if st.colour_first is None else st.colour_first,
        texture_with=st.texture_with,
        oxford=st.oxford,
        bg_choice=bg_choice,
    )
    return desc, surf


def _peek_relation(tk: _Tokens, offset: int) -> bool:
    for seq, _ in _REL:
        if tuple(tk.t[tk.i + offset:tk.i + offset + len(seq)]) == seq:
            return True
    return False


def parse_caption(text: str) -> Optional[Description]:
    """The meaning of a caption of the world grammar, or None if the text is outside the grammar."""
    parsed = parse_caption_full(text)
    return None if parsed is None else parsed[0]
