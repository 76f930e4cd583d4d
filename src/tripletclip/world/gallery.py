"""A picture of the data: rows of triplets (x, y) | (x', y') with their edit type, one per SugarCrepe category.

Used by ``tripletclip world gallery`` and the demo report, so that a reader sees what the negatives look like
(TripletCLIP, arXiv 2411.02545, Fig. 2 in spirit).
"""
from __future__ import annotations

import textwrap
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from tripletclip.world.build import make_spec
from tripletclip.world.generate import SUGARCREPE_TYPES, Triplet, WorldGenerator
from tripletclip.world.rand import Rand
from tripletclip.world.vocab import WorldSpec


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


def gallery_image(rows: Sequence[tuple[Triplet, Image.Image, Image.Image]], cell: int = 128, text_width: int = 46
                  ) -> Image.Image:
    """One PIL image: per row the positive image and caption, then the negative image and caption."""
    font = ImageFont.load_default()
    line_h = 12
    text_px = text_width * 6 + 8
    row_h = cell + 8
    w = 2 * (cell + text_px) + 16
    canvas = Image.new("RGB", (w, row_h * len(rows) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (trip, x, xn) in enumerate(rows):
        y0 = 4 + r * row_h
        neg = trip.negatives[0]
        for col, (img, caption, label) in enumerate(((x, trip.caption.text, "x, y"),
                                                     (xn, neg.text, f"x', y'  [{neg.edit_type}]"))):
            x0 = 4 + col * (cell + text_px + 8)
            canvas.paste(img.resize((cell, cell), Image.NEAREST), (x0, y0))
            draw.text((x0 + cell + 6, y0), label, fill=(160, 30, 30) if col else (30, 90, 30), font=font)
            for k, line in enumerate(textwrap.wrap(caption, text_width)[:9]):
                draw.text((x0 + cell + 6, y0 + (k + 1) * line_h + 2), line, fill="black", font=font)
    return canvas
