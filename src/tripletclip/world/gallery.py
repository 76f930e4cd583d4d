"""A picture of the data: triplets (x, y) | (x', y') with their edit type, one per SugarCrepe category.

Used by ``tripletclip world gallery`` and the demo report, so that a reader sees what the negatives look like
(TripletCLIP, arXiv 2411.02545, Fig. 2 in spirit). :func:`gallery_entries` returns the images, both captions
and which words of y' the edit changed, so that the HTML report writes captions as text and highlights the
edit; :func:`gallery_image` draws the same entries into one PNG for the command line.
"""
from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from tripletclip.world.build import make_spec
from tripletclip.world.generate import SUGARCREPE_TYPES, Triplet, WorldGenerator
from tripletclip.world.rand import Rand
from tripletclip.world.vocab import WorldSpec


@dataclass(frozen=True)
class GalleryEntry:
    """One triplet as a reader sees it: x with its caption y, x' with its negative caption y'.

    ``edited`` holds the indices (into ``neg_caption.split()``) of the words of y' that are not in y at the
    same place: the replaced, swapped or added words.
    """

    edit_type: str
    split: str
    image: Image.Image
    caption: str
    neg_image: Image.Image
    neg_caption: str
    edited: tuple[int, ...]


def edited_words(caption: str, negative: str) -> tuple[int, ...]:
    """Indices of the words of ``negative`` that a word-level alignment with ``caption`` does not match.

    Swaps show both swapped words ("a *blue* cube and a *red* ball"), replacements the new word(s), additions
    the added ones; a pure deletion marks nothing (no word of y' is new).
    """
    def key(w: str) -> str:  # "star," and "star" are the same word: punctuation moves when words are added
        return w.strip(",.;:").lower()

    old, new = [key(w) for w in caption.split()], [key(w) for w in negative.split()]
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return tuple(j for op, _, _, j1, j2 in matcher.get_opcodes() if op in ("replace", "insert") for j in range(j1, j2))


def gallery_triplets(spec: Optional[WorldSpec] = None, per_type: int = 1, seed: int = 0, image_size: int = 64,
                     types: Sequence[str] = SUGARCREPE_TYPES, split: str = "seen") -> list[tuple[Triplet, Image.Image, Image.Image]]:
    """(triplet, x, x') for ``per_type`` triplets of each edit type."""
    gen = WorldGenerator(spec or make_spec(8, seed), image_size=image_size)
    rng = Rand([seed, 5])
    out = []
    for t in types:
        for _ in range(per_type):
            trip = gen.triplet(rng, types=[t], split=split)
            if not trip.negatives:
                continue
            x, (xn,) = gen.render(trip, rng)
            out.append((trip, Image.fromarray(x), Image.fromarray(xn)))
    return out


def gallery_entries(spec: Optional[WorldSpec] = None, per_type: int = 1, seed: int = 0, image_size: int = 64,
                    types: Sequence[str] = SUGARCREPE_TYPES, split: str = "seen") -> list[GalleryEntry]:
    """:func:`gallery_triplets` as :class:`GalleryEntry` records (images, captions, edited words of y')."""
    entries = []
    for trip, x, xn in gallery_triplets(spec, per_type, seed, image_size, types, split):
        neg = trip.negatives[0]
        entries.append(GalleryEntry(edit_type=neg.edit_type, split=split, image=x, caption=trip.caption.text,
                                    neg_image=xn, neg_caption=neg.text, edited=edited_words(trip.caption.text, neg.text)))
    return entries


def gallery_image(entries: Sequence[GalleryEntry], cell: int = 128, text_width: int = 40, font_size: int = 13
                  ) -> Image.Image:
    """One PIL image: per row the positive image and caption, then the negative image and caption; the edited
    words of y' are drawn in red."""
    font = ImageFont.load_default(size=font_size)
    space = font.getlength(" ")
    line_h = font_size + 4
    text_px = int(text_width * font_size * 0.55) + 8
    row_h = max(cell, line_h * 8) + 8
    canvas = Image.new("RGB", (2 * (cell + text_px) + 16, row_h * len(entries) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    for r, e in enumerate(entries):
        y0 = 4 + r * row_h
        for col, (img, caption, label, marked) in enumerate((
                (e.image, e.caption, "x, y", ()), (e.neg_image, e.neg_caption, f"x', y'  [{e.edit_type}]", e.edited))):
            x0 = 4 + col * (cell + text_px + 8)
            canvas.paste(img.resize((cell, cell), Image.NEAREST), (x0, y0))
            draw.text((x0 + cell + 6, y0), label, fill=(160, 30, 30) if col else (30, 90, 30), font=font)
            k = 0  # index of the word in the caption; words are drawn one by one so that spaces keep their width
            for n, line in enumerate(textwrap.wrap(caption, text_width, break_long_words=False, break_on_hyphens=False)[:7]):
                x = x0 + cell + 6
                for word in line.split():
                    draw.text((x, y0 + (n + 1) * line_h + 2), word, fill=(200, 0, 0) if k in marked else "black", font=font)
                    x += font.getlength(word) + space
                    k += 1
    return canvas
