"""A single-file HTML report of a comparison of objectives, laid out like a paper's figure page.

Top to bottom: a one-paragraph verdict; provenance folded into a ``<details>`` with a short human summary;
Fig. 1, the bag-of-words regime (perception vs binding; Yuksekgonul et al., ICLR 2023); the paired per-seed
differences against CLIP and NegCLIP; the per-category tables of TripletCLIP's Table 4 (mean ± half the
min..max range over seeds, in %); Winoground-style scores and retrieval; the similarity histograms of
TripletCLIP's Fig. 3; training curves; a gallery of triplets with captions as text and the edit highlighted.
Everything is inline (PNG data URIs, inline CSS): the file opens offline and loads nothing from elsewhere.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report import plots
from tripletclip.report.labels import (
    BAG_OF_WORDS_CEILING, BINDING, CHANCE, PERCEPTION, PERCEPTION_TARGET, RELATION, category_name, method_items,
    method_name, part_of,
)
from tripletclip.report.summary import provenance_json, provenance_rows, verdict
from tripletclip.report.tables import paired_table, scores_and_cost_table, split_table

_CSS = """*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:1.2em 24px 3em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:0.2em 0 0.4em}h2{font-size:1.2em;margin:1.6em 0 0.4em}
.verdict{background:#f4f7fb;border-left:4px solid #3182bd;padding:0.7em 1em;margin:0 0 0.8em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:0.3em 0 1em;font-size:0.85em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap;font-weight:normal}
th{white-space:normal;vertical-align:bottom}
@media (max-width:1100px){table{font-size:0.74em}td,th{padding:2px 4px}}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}td b{font-weight:700}
tr.ref td{font-style:italic;color:#555}
table.paired td{vertical-align:top}table.paired small{color:#666;font-size:0.85em}
.real{color:#1a7f37}.noise{color:#888}
img{max-width:100%;height:auto}
.caption{color:#555;font-size:0.9em;margin:0.1em 0 1em}
details{border:1px solid #ddd;border-radius:4px;padding:0.4em 0.8em;margin:0.6em 0}
summary{cursor:pointer;color:#333}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:0.9em;margin:0.6em 0}
dl.prov dt{color:#555}dl.prov dd{margin:0;overflow-wrap:anywhere}
pre{background:#f7f7f7;padding:0.6em;font-size:0.78em;white-space:pre-wrap;overflow-wrap:anywhere}
.gallery{display:flex;flex-direction:column;gap:10px}
.triplet{display:flex;flex-wrap:wrap;gap:8px 24px;border-bottom:1px solid #eee;padding-bottom:8px}
.pair{display:flex;gap:10px;flex:1 1 380px;min-width:0}
.pair img{width:96px;height:96px;flex:none;image-rendering:pixelated}
.pair p{margin:0.2em 0 0}.tag{font-size:0.8em;color:#2b6a2b}.tag.neg{color:#a02020}
mark{background:#ffd966;padding:0 2px;border-radius:2px}"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{_data_uri(png)}">'


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _per_seed_records(entry: Mapping[str, Any], part: str) -> list[Mapping[str, float]]:
    return list((part_of(entry, part).get("per_seed") or {}).values())


def _provenance(results: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    rows = provenance_rows(results, meta)
    short = "; ".join(f"{k} {v.split(',')[0] if k == 'model' else v}" for k, v in rows
                      if k in ("steps x batch", "model", "seeds"))
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return (f"<details><summary>Provenance: {html.escape(short)} (click to open)</summary>"
            f"<dl class='prov'>{items}</dl><details><summary>full record (JSON)</summary>"
            f"<pre>{html.escape(provenance_json(results, meta))}</pre></details></details>")


def _regime_figure(results: Mapping[str, Any]) -> str:
    models = ([("base", results["base"])] if isinstance(results.get("base"), Mapping) else []) + method_items(results)
    per_seed = {method_name(name): recs for name, e in models if (recs := _per_seed_records(e, "seen"))}
    if not per_seed:
        return ""
    png = plots.regime_chart(per_seed, PERCEPTION, BINDING, RELATION, PERCEPTION_TARGET, BAG_OF_WORDS_CEILING, CHANCE)
    return ("<h2>Fig. 1: the bag-of-words regime</h2>" + _img(png, "perception vs binding per model") +
            "<p class='caption'>Accuracy (%) on the world's SugarCrepe-format benchmark, seen compositions; bars: "
            "mean over seeds, whiskers: min..max. A model in the bag-of-words regime perceives objects and attributes "
            f"(replace-obj and replace-att at or above the {PERCEPTION_TARGET:.0f}% target) but does not bind them "
            f"(swap-obj and swap-att at or below the {BAG_OF_WORDS_CEILING:.0f}% ceiling); chance is "
            f"{CHANCE:.0f}%.</p>")


def _paired_section(results: Mapping[str, Any]) -> str:
    paired = results.get("paired")
    if not isinstance(paired, Mapping) or not paired:
        return ""
    parts = ["<h2>Paired differences (points)</h2>",
             "<p class='caption'>Each cell: the mean over seeds of (method − reference) measured on the same seed, "
             "then <span class='real'>real</span> when the sign is the same on every seed and the mean exceeds "
             "that metric's sampling error, else <span class='noise'>noise</span>; underneath, the sampling error "
             "(±, 1.96 binomial standard errors of the difference) and the per-seed differences.</p>"]
    for against, label in (("clip", "CLIP"), ("negclip", "NegCLIP")):
        table = paired_table(paired, against)
        if table:
            parts += [f"<h3>vs {label}</h3>", table]
    return "\n".join(parts)


def _marked(words: Sequence[str], edited: set[int]) -> str:
    """The words as HTML, each run of consecutive edited words in one <mark>."""
    out, run = [], []
    for i, w in enumerate(list(words) + [None]):
        if w is not None and i in edited:
            run.append(html.escape(w))
            continue
        if run:
            out.append(f"<mark>{' '.join(run)}</mark>")
            run = []
        if w is not None:
            out.append(html.escape(w))
    return " ".join(out)


def _gallery_section(gallery: Sequence[Any]) -> str:
    """Triplets with captions as text; the words of y' that the edit changed are marked."""
    rows = []
    for e in gallery:
        marked = _marked(e.neg_caption.split(), set(e.edited))
        rows.append(
            "<div class='triplet'>"
            f"<div class='pair'><img alt='x: {html.escape(e.caption)}' src='{_data_uri(_png(e.image))}'>"
            f"<div><div class='tag'>x, y (true caption)</div><p>{html.escape(e.caption)}</p></div></div>"
            f"<div class='pair'><img alt=\"x': {html.escape(e.neg_caption)}\" src='{_data_uri(_png(e.neg_image))}'>"
            f"<div><div class='tag neg'>x', y' (hard negative, {html.escape(category_name(e.edit_type))})</div>"
            f"<p>{marked}</p></div></div></div>")
    return ("<h2>Triplets of the world: (x, y) and (x', y')</h2><p class='caption'>Highlighted: the words of y' "
            "that the edit changed. x' is y' rendered.</p><div class='gallery'>" + "\n".join(rows) + "</div>")


def _split_sections(results: Mapping[str, Any], categories: Sequence[str]) -> list[str]:
    parts = []
    for part, label in (("seen", "seen compositions"), ("heldout", "held-out compositions")):
        per_seed = {m: recs for m, e in method_items(results) if (recs := _per_seed_records(e, part))}
        if not per_seed:
            continue
        parts += [f"<h2>SugarCrepe-format world benchmark: {label}</h2>",
                  "<p class='caption'>Accuracy (%), mean over seeds ± half the min..max range; mean: unweighted "
                  "mean of the seven categories; bold: best objective per column.</p>",
                  split_table(results, categories, part),
                  _img(plots.category_bars(per_seed, categories, f"accuracy per category, {label} (bars: mean "
                                                                 "over seeds, whiskers: min..max)"), label)]
    return parts


def write_report(out_path: str | Path, results: Mapping[str, Any], categories: Sequence[str], meta: Mapping[str, Any],
                 sims: Optional[Mapping[str, Any]] = None, curves: Optional[Mapping[str, Any]] = None,
                 gallery: Optional[Sequence[Any]] = None, title: str = "tripletclip demo") -> Path:
    """Write the HTML report; returns its path.

    ``results``: the content of results.json (method keys, plus optional ``regime``, ``base``, ``paired``);
    ``meta``: provenance (``config``, ``world_spec``, ``world``, ``code_version``, ``wall_time_s``, ``summary``,
    ...); ``sims``: similarities.json; ``curves``: {method: {seed: [(step, loss), ...]}}; ``gallery``:
    :class:`tripletclip.world.gallery.GalleryEntry` records.
    """
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='verdict'>{html.escape(verdict(results))}</p>"]
    if meta.get("summary"):
        parts.append(f"<p class='caption'>{html.escape(str(meta['summary']))}</p>")
    parts += [_provenance(results, meta), _regime_figure(results), _paired_section(results)]
    parts += _split_sections(results, categories)
    parts += ["<h2>Winoground-style groups (seen + held-out) and retrieval</h2>",
              "<p class='caption'>Scores in %, mean over seeds ± half range (bold: best per score column); "
              "steps, pairs seen and training time are the compute each objective used.</p>",
              scores_and_cost_table(results)]
    if sims:
        parts += ["<h2>Cosine similarity of positive vs hard-negative pairs (TripletCLIP Fig. 3)</h2>",
                  _img(plots.similarity_histograms(sims), "similarity distributions"),
                  "<p class='caption'>Left: text tower, cos(y, y'); middle: vision tower, cos(x, x'); right: "
                  "image-text similarity of the true caption and of the hard negative. Lower cos(x, x') means the "
                  "vision tower tells the minimal pairs apart.</p>"]
    if curves:
        parts += ["<h2>Training curves</h2>", _img(plots.training_curves(curves), "training curves")]
    if gallery:
        parts.append(_gallery_section(gallery))
    parts.append("</body></html>")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return out
