"""A single-file HTML report of a comparison of objectives, laid out like a paper's figure page.

Top to bottom: a one-paragraph verdict; what each claim shows on the transfer split
(:mod:`tripletclip.report.claims`); provenance folded into a ``<details>`` with a short human summary; Fig. 1,
the bag-of-words regime (perception vs binding; Yuksekgonul et al., ICLR 2023); the paired per-seed differences
against CLIP and NegCLIP, then those of the transfer and paraphrase splits; the per-category tables of
TripletCLIP's Table 4 (mean ± half the min..max range over seeds, in %); Winoground-style scores and retrieval; the similarity histograms of
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
from tripletclip.report.claims import claims_section, split_paired_section
from tripletclip.report.labels import (
    BAG_OF_WORDS_CEILING, BINDING, CHANCE, PERCEIVES_AT, PERCEPTION, RELATION, category_name, method_items,
    method_name, part_of, regime_definition, split_categories, split_name, split_names,
)
from tripletclip.report.summary import provenance_json, provenance_rows, verdict
from tripletclip.report.tables import numbers_table, paired_table, scores_and_cost_table, split_table

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
table.paired td{vertical-align:top}table.claims td,table.claims th{white-space:normal;vertical-align:top;text-align:left}
table.paired small{color:#666;font-size:0.85em}
.real{color:#1a7f37}.noise{color:#888}
.next{margin:0 0 0.8em}.next li{margin:0.15em 0}p.absent{color:#777;font-size:0.85em;margin:0.2em 0}
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
    """The per-seed {category: %} records of a split; one evaluation without seeds gives its aggregate."""
    rec = part_of(entry, part)
    per_seed = rec.get("per_seed")
    if isinstance(per_seed, Mapping) and per_seed:
        return [s for s in per_seed.values() if isinstance(s, Mapping)]
    cats = rec.get("categories")
    return [{**cats, "mean": rec.get("mean")}] if isinstance(cats, Mapping) and cats else []


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
    png = plots.regime_chart(per_seed, PERCEPTION, BINDING, RELATION, PERCEIVES_AT, BAG_OF_WORDS_CEILING, CHANCE)
    return ("<h2>Fig. 1: the bag-of-words regime</h2>" + _img(png, "perception vs binding per model") +
            "<p class='caption'>Accuracy (%) on the SugarCrepe-format benchmark, seen compositions; bars: mean over "
            f"seeds, whiskers: min..max. The bag-of-words regime (Yuksekgonul et al., ICLR 2023): "
            f"{regime_definition()}. Chance is {CHANCE:.0f}%.</p>")


def _paired_section(results: Mapping[str, Any]) -> str:
    paired = results.get("paired")
    if not isinstance(paired, Mapping) or not paired:
        return ""
    parts = ["<h2>Paired differences (points)</h2>",
             "<p class='caption'>Each cell: the mean over seeds of (method − reference) measured on the same seed, "
             "then <span class='real'>real</span> when the sign is the same on every seed and the mean exceeds "
             "that metric's sampling error, else <span class='noise'>noise</span>; underneath, the sampling error "
             "(±, 1.96 binomial standard errors of the difference) and the per-seed differences.</p>"]
    found = list(dict.fromkeys(r for v in paired.values() if isinstance(v, Mapping) for r in v))
    order = [m for m, _ in method_items(results)]  # references in the order of the methods (CLIP first)
    refs = [r for r in order if r in found] + [r for r in found if r not in order]
    for against in refs:
        table = paired_table(paired, against)
        if table:
            parts += [f"<h3>vs {html.escape(method_name(against))}</h3>", table]
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


def _split_sections(results: Mapping[str, Any], categories: Optional[Sequence[str]] = None) -> list[str]:
    """One table and one bar chart per benchmark split found in the entries (seen, held-out, transfer, ...)."""
    parts = []
    entries = [e for _, e in method_items(results)]
    for part in split_names(entries + ([results["base"]] if isinstance(results.get("base"), Mapping) else [])):
        per_seed = {m: recs for m, e in method_items(results) if (recs := _per_seed_records(e, part))}
        cats = split_categories(entries, part)
        if categories and part in ("seen", "heldout"):
            cats = [c for c in categories if c in cats] + [c for c in cats if c not in categories]
        if not per_seed or not cats:
            continue
        label = split_name(part)
        parts += [f"<h2>SugarCrepe-format benchmark: {html.escape(label)}</h2>",
                  "<p class='caption'>Accuracy (%), mean over seeds ± half the min..max range (no ± for one seed; "
                  "a single evaluation that records its rows: [the 95% Wilson interval]); mean: unweighted mean of the "
                  f"{len(cats)} categories; bold: best objective per column.</p>",
                  split_table(results, cats, part),
                  _img(plots.category_bars(per_seed, cats, f"accuracy per category, {label} (bars: mean over seeds, "
                                                           "whiskers: min..max)"), label)]
    return parts


def _zeroshot_section(results: Mapping[str, Any], sweep: Optional[Sequence[Mapping[str, Any]]] = None) -> str:
    table = numbers_table(results, "zeroshot")
    if not table:
        return ""
    from tripletclip.report.tradeoff import tradeoff_figure

    png = tradeoff_figure(results, sweep)  # None without a base that has a zero-shot block
    figure = (_img(png, "compositional gain against zero-shot change per objective") +
              "<p class='caption'>The trade-off the uniform studies draw: compositional change (seven-category "
              "mean) against zero-shot change, both against the base, per objective; whiskers span the seeds."
              + (" Dotted lines: WiSE-FT interpolations of each method's run with the base, one point per alpha "
                 "(`tripletclip report DIR --wise ALPHAS`)." if sweep else "") + "</p>"
              ) if png else ""
    return ("<h2>Zero-shot classification</h2><p class='caption'>Accuracy (%) and, where recorded, its change "
            "against the base (points).</p>" + table + figure)


def write_report(out_path: str | Path, results: Mapping[str, Any], categories: Optional[Sequence[str]],
                 meta: Mapping[str, Any], sims: Optional[Mapping[str, Any]] = None,
                 curves: Optional[Mapping[str, Any]] = None, gallery: Optional[Sequence[Any]] = None,
                 title: str = "tripletclip demo", notes: Sequence[str] = (), next_steps: Sequence[str] = (),
                 opening: Optional[str] = None, sweep: Optional[Sequence[Mapping[str, Any]]] = None) -> Path:
    """Write the HTML report; returns its path.

    ``results``: the content of results.json (method keys, plus optional ``regime``, ``base``, ``paired``);
    ``meta``: provenance (``config``, ``world_spec``, ``world``, ``code_version``, ``wall_time_s``, ``summary``,
    ...); ``sims``: similarities.json; ``curves``: {method: {seed: [(step, loss), ...]}}; ``gallery``:
    :class:`tripletclip.world.gallery.GalleryEntry` records; ``notes``: one line per section left out (its
    input is absent); ``next_steps``: what to run next (HTML allowed: commands in ``<code>``); ``opening``: the
    paragraph at the top instead of :func:`verdict` (a comparison of runs).
    """
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='verdict'>{html.escape(opening if opening is not None else verdict(results))}</p>"]
    if next_steps:
        parts.append("<div class='next'><b>What to run next</b><ul>" +
                     "".join(f"<li>{step}</li>" for step in next_steps) + "</ul></div>")
    if meta.get("summary"):
        parts.append(f"<p class='caption'>{html.escape(str(meta['summary']))}</p>")
    if opening is None:  # one run: what holds where nothing was trained (several runs are not paired)
        parts.append(claims_section(results))
    parts += [_provenance(results, meta), _regime_figure(results), _paired_section(results),
              split_paired_section(results)]
    parts += _split_sections(results, categories)
    parts += ["<h2>Winoground-style groups (seen + held-out) and retrieval</h2>",
              "<p class='caption'>Scores in %, mean over seeds ± half range (bold: best per score column); "
              "steps, pairs seen and training time are the compute each objective used.</p>",
              scores_and_cost_table(results), _zeroshot_section(results, sweep)]
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
    if notes:
        parts += ["<h2>Left out</h2>"] + [f"<p class='absent'>{html.escape(n)}</p>" for n in notes]
    parts.append("</body></html>")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return out
