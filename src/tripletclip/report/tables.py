"""Tables of a comparison of objectives, for the terminal and the HTML report (TripletCLIP Table 4 style).

Cells are percentages: mean over seeds ± half the min..max range. Only score columns are ever bold, the best
method per column (all tied cells when several share it, none when the column is constant); a reference row
(the pretrained base) is shown but never competes.
"""
from __future__ import annotations

import html
from typing import Any, Collection, Mapping, Optional, Sequence

from tripletclip.report.intervals import finite, half_range, mean, wilson
from tripletclip.report.labels import (
    PAIRED_METRICS, category_name, method_items, method_name, metric_name, part_of, seed_values,
)


def fmt_pm(values: Sequence[float]) -> str:
    """'mean ± half-range' of the finite per-seed values (one value: just the value; none: '–')."""
    vals = finite(values)
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{mean(vals):.1f} ± {half_range(vals):.1f}"


def fmt_diff(value: float) -> str:
    return f"{value:+.1f}"


def _rows_with_base(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    base = results.get("base")
    return ([("base", base)] if isinstance(base, Mapping) else []) + method_items(results)


def table_rows(results: Mapping[str, Any], categories: Sequence[str], part: str) -> list[list[str]]:
    """Rows [method, per-category 'mean ± spread', mean] of the ``part`` split (the base first, if any). A single
    evaluation (no per-seed values) that records its rows per category shows the 95% Wilson interval instead."""
    rows = []
    for key, entry in _rows_with_base(results):
        if seed_values(entry, part, "mean") or any(seed_values(entry, part, c) for c in categories):
            rows.append([key] + [_cell(entry, part, c) for c in list(categories) + ["mean"]])
    return rows


def _cell(entry: Mapping[str, Any], part: str, key: str) -> str:
    vals = seed_values(entry, part, key)
    rec = part_of(entry, part)
    n = (rec.get("rows") or {}).get(key) if isinstance(rec.get("rows"), Mapping) else None
    ci = wilson(vals[0], int(n)) if len(vals) == 1 and not rec.get("per_seed") and finite([n]) else None
    return f"{vals[0]:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else fmt_pm(vals)


def text_table(results: Mapping[str, Any], categories: Sequence[str], part: str = "seen") -> str:
    """The table printed in the terminal (plain text, aligned; accuracy in %)."""
    head = ["method"] + [category_name(c) for c in categories] + ["mean"]
    rows = table_rows(results, categories, part)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _number(cell: str) -> Optional[float]:
    try:
        return float(cell.split(" ")[0].replace("+", ""))
    except ValueError:
        return None


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], score_cols: Collection[int],
               reference_rows: Collection[int] = (), row_labels: bool = True) -> str:
    """An HTML table; in ``score_cols`` the highest value among the non-reference rows is bold."""
    best: dict[int, float] = {}
    for j in score_cols:
        values = [v for i, r in enumerate(rows) if i not in reference_rows and (v := _number(r[j])) is not None]
        if values and max(values) != min(values):
            best[j] = max(values)
    out = ["<div class='scroll'><table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) +
           "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cells = []
        for j, c in enumerate(r):
            text = html.escape(method_name(c) if j == 0 and row_labels else c)
            if j in best and i not in reference_rows and _number(c) == best[j]:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        out.append(f"<tr{' class=ref' if i in reference_rows else ''}>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table></div>"


def split_table(results: Mapping[str, Any], categories: Sequence[str], part: str) -> str:
    """The per-category table of one split (seen, held-out, or any other split of the entries) as HTML."""
    head = ["method"] + [category_name(c) for c in categories] + ["mean"]
    rows = table_rows(results, categories, part)
    ref = {0} if rows and rows[0][0] == "base" else set()
    return html_table(head, rows, score_cols=range(1, len(head)), reference_rows=ref)


def scores_and_cost_table(results: Mapping[str, Any]) -> str:
    """Winoground-style scores and retrieval (score columns) next to training cost (never bold)."""
    head = ["method", "Wino text", "Wino image", "Wino group", "i2t R@1", "t2i R@1", "steps", "pairs seen",
            "synthetic images seen", "train s"]
    rows = []
    for key, entry in _rows_with_base(results):
        scores = [fmt_pm(seed_values(entry, "winoground", k)) for k in ("text", "image", "group")]
        scores += [fmt_pm(seed_values(entry, "retrieval", k)) for k in ("i2t_r1", "t2i_r1")]
        cost = [entry.get("steps"), entry.get("pairs_seen"), entry.get("synthetic_images_seen")]
        train_s = entry.get("train_time_s")
        rows.append([key] + scores + [f"{v:,.0f}" if finite([v]) else "–" for v in cost] +
                    [f"{train_s:.0f}" if finite([train_s]) else "–"])
    ref = {0} if rows and rows[0][0] == "base" else set()
    return html_table(head, rows, score_cols=range(1, 6), reference_rows=ref)


def paired_table(paired: Mapping[str, Any], against: str, names: Optional[Mapping[str, str]] = None) -> str:
    """Per-seed paired differences (points) of each method against ``against`` (clip or negclip), per metric.

    A cell shows the mean difference and 'real' (its sign is the same on every seed and it exceeds the sampling
    error) or 'noise'; underneath, the sampling error and the per-seed differences. ``names``: column headings
    that differ from :func:`metric_name` (a transfer split's ``mean`` is over its own five categories).
    """
    methods = [m for m, refs in paired.items() if isinstance(refs, Mapping) and isinstance(refs.get(against), Mapping)]
    metrics = paired_metrics([paired[m][against] for m in methods])
    if not methods or not metrics:
        return ""
    names = names or {}
    out = ["<div class='scroll'><table class='paired'><thead><tr><th>method</th>" +
           "".join(f"<th>{html.escape(names.get(k, metric_name(k)))}</th>" for k in metrics) + "</tr></thead><tbody>"]
    for m in methods:
        cells = [f"<td>{html.escape(method_name(m))}</td>"]
        for k in metrics:
            d = paired[m][against].get(k)
            if not isinstance(d, Mapping) or not finite([d.get("mean")]):
                cells.append("<td>–</td>")
                continue
            verdict = "<span class='real'>real</span>" if d.get("real") else "<span class='noise'>noise</span>"
            err = f"<br><small>±{d['sampling_error']:.1f}</small>" if finite([d.get("sampling_error")]) else ""
            seeds = ", ".join(fmt_diff(v) for v in finite((d.get("per_seed") or {}).values()))
            cells.append(f"<td>{fmt_diff(d['mean'])} {verdict}{err}<br><small>{html.escape(seeds)}</small></td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table></div>"


def paired_metrics(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics of paired blocks a reader is shown: PAIRED_METRICS first, then the mean of any other split
    (``transfer_mean``, ...); the rest (per-category ``seen/swap_obj``, ``t2i_r1``) stays in results.json."""
    keys = [k for b in blocks for k in b if isinstance(b.get(k), Mapping)]
    return [k for k in PAIRED_METRICS if k in keys] + [k for k in dict.fromkeys(keys) if k not in PAIRED_METRICS
                                                       and k.endswith("_mean") and "/" not in k]


def flat_numbers(record: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested record as {'a.b': value} (per-seed values and row counts left out)."""
    out: dict[str, float] = {}
    if isinstance(record, Mapping):
        for k, v in record.items():
            if k in ("per_seed", "rows", "seeds"):
                continue
            out.update(flat_numbers(v, f"{prefix}{k}."))
    elif isinstance(record, (int, float)) and not isinstance(record, bool):
        out[prefix.rstrip(".")] = float(record)
    return out


def numbers_table(results: Mapping[str, Any], key: str) -> str:
    """The ``key`` block of every entry (e.g. ``zeroshot``: accuracy and its change against the base), one
    column per numeric leaf; '' when no entry has one."""
    rows_in = [(m, flat_numbers(e.get(key))) for m, e in _rows_with_base(results) if isinstance(e.get(key), Mapping)]
    cols = list(dict.fromkeys(c for _, nums in rows_in for c in nums))
    if not cols:
        return ""
    rows = [[m] + [f"{nums[c]:.1f}" if c in nums and finite([nums[c]]) else "–" for c in cols] for m, nums in rows_in]
    ref = {0} if rows and rows[0][0] == "base" else set()
    return html_table(["method"] + [c.replace("_", " ") for c in cols], rows, score_cols=(), reference_rows=ref)
