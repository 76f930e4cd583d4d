"""A single-file HTML report of a comparison of objectives (the demo's output, TripletCLIP Table 4 style).

Tables give mean ± spread over seeds (spread = half the min..max range); plots are embedded PNGs; the footer
records what produced the numbers (config, world manifest hashes, code version, wall time).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report import plots


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def fmt_pm(values: Sequence[float]) -> str:
    """'mean ± half-range' of per-seed values (one value: just the value)."""
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {(max(values) - min(values)) / 2:.1f}"


def table_rows(results: Mapping[str, Any], categories: Sequence[str], part: str) -> list[list[str]]:
    """Rows [method, per-category 'mean ± spread', mean] of ``results[method][part]`` per-seed records."""
    rows = []
    for method, r in results.items():
        seeds = r[part]["per_seed"]
        cells = [method]
        for c in list(categories) + ["mean"]:
            cells.append(fmt_pm([s[c] for s in seeds.values() if c in s]))
        rows.append(cells)
    return rows


def text_table(results: Mapping[str, Any], categories: Sequence[str], part: str = "seen") -> str:
    """The table printed in the terminal (plain text, aligned)."""
    head = ["method"] + [c.replace("_", "-") for c in categories] + ["mean"]
    rows = table_rows(results, categories, part)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], best_col_from: int = 1) -> str:
    def number(cell: str) -> float:
        try:
            return float(cell.split(" ")[0])
        except ValueError:
            return float("-inf")

    best = {j: max(number(r[j]) for r in rows) for j in range(best_col_from, len(head))} if rows else {}
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            strong = j >= best_col_from and number(c) == best.get(j) and number(c) != float("-inf")
            cells.append(f"<td>{'<b>' if strong else ''}{html.escape(c)}{'</b>' if strong else ''}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:0.9em}pre{background:#f7f7f7;padding:0.6em;font-size:0.8em;overflow-x:auto}"""


def write_report(out_path: str | Path, results: Mapping[str, Any], categories: Sequence[str], meta: Mapping[str, Any],
                 sims: Optional[Mapping[str, Any]] = None, curves: Optional[Mapping[str, Any]] = None,
                 gallery_png: Optional[bytes] = None, title: str = "tripletclip demo") -> Path:
    """Write the HTML report; returns its path."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta.get("summary"):
        parts.append(f"<p>{html.escape(str(meta['summary']))}</p>")
    head = ["method"] + [c.replace("_", "-") for c in categories] + ["mean"]
    for part, label in (("seen", "seen compositions"), ("heldout", "held-out compositions")):
        if all(part in r for r in results.values()):
            parts.append(f"<h2>SugarCrepe-format world benchmark: {label}</h2>")
            parts.append(_html_table(head, table_rows(results, categories, part)))
            per_seed = {m: list(r[part]["per_seed"].values()) for m, r in results.items()}
            parts.append(_img(plots.category_bars(per_seed, categories, f"accuracy per category, {label}"
                                                  " (bars: mean over seeds, whiskers: min..max)"), label))
    extra_head = ["method", "wino text", "wino image", "wino group", "i2t R@1", "t2i R@1", "steps", "pairs seen",
                  "synthetic images seen", "train s"]
    rows = []
    for m, r in results.items():
        w = r.get("winoground", {}).get("per_seed", {})
        ret = r.get("retrieval", {}).get("per_seed", {})
        rows.append([m, fmt_pm([v["text"] for v in w.values()]), fmt_pm([v["image"] for v in w.values()]),
                     fmt_pm([v["group"] for v in w.values()]), fmt_pm([v["i2t_r1"] for v in ret.values()]),
                     fmt_pm([v["t2i_r1"] for v in ret.values()]), str(r.get("steps", "")),
                     str(r.get("pairs_seen", "")), str(r.get("synthetic_images_seen", "")),
                     f"{r.get('train_time_s', 0):.0f}"])
    parts.append("<h2>Winoground-style groups (seen + held-out) and retrieval</h2>")
    parts.append(_html_table(extra_head, rows))
    if sims:
        parts.append("<h2>Cosine similarity of positive vs hard-negative pairs (TripletCLIP Fig. 3)</h2>"
                     "<p class='note'>Left: text tower, cos(y, y'); middle: vision tower, cos(x, x'); right: image-text "
                     "scores of the true caption and of the hard negative. Lower cos(x, x') means the vision tower "
                     "tells the minimal pairs apart.</p>")
        parts.append(_img(plots.similarity_histograms(sims), "similarity distributions"))
    if curves:
        parts.append("<h2>Training curves</h2>")
        parts.append(_img(plots.training_curves(curves), "training curves"))
    if gallery_png:
        parts.append("<h2>Triplets of the world (x, y) | (x', y')</h2>")
        parts.append(_img(gallery_png, "gallery"))
    parts.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(meta, indent=1, default=str)) + "</pre>")
    parts.append("</body></html>")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
