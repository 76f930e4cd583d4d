"""What the demo shows a person: the printed tables (paper Table 4 style, percent) and the HTML report.

The report is rendered by the same code as ``tripletclip report DIR`` (:func:`tripletclip.report.render_folder`),
from the files the demo has just written, so the two are the same page. Rendering comes last: when it fails
(a bug) the results are already on disk, and :func:`write_report_or_say` prints the traceback followed by one
line saying where they are and which command renders them.
"""
from __future__ import annotations

import math
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from tripletclip.errors import UserError
from tripletclip.report.labels import method_items, split_categories, split_name, split_names
from tripletclip.report.tables import paired_metrics

NON_METHOD_KEYS = ("regime", "base", "paired", "units")


class ReportFailed(UserError):
    """Rendering the report failed after the results were written. The traceback (a bug) has been printed to
    stderr already; the message is the one line that follows it: where the results are, how to render them.
    A :class:`UserError` only so that the CLI prints that line once and exits 1 without a second traceback."""


def method_table(document: Mapping[str, Any]) -> dict[str, Any]:
    """The method entries of results.json (the base first, when there is one, as a row of its own)."""
    table = dict(method_items(document))
    return {"base (before fine-tuning)": document["base"], **table} if isinstance(document.get("base"), Mapping) \
        else table


def _cell(d: Any) -> str:
    if not isinstance(d, Mapping) or not isinstance(d.get("mean"), (int, float)) or not math.isfinite(d["mean"]):
        return f"{'':>16}"
    err = d.get("sampling_error")
    err_text = f"±{err:4.1f}" if isinstance(err, (int, float)) and math.isfinite(err) else "     "
    return f"{d['mean']:+6.1f}{' real' if d.get('real') else '     '} {err_text}"


def paired_text(paired: Mapping[str, Any]) -> str:
    """One line per (objective, reference): mean difference per metric, 'real' or not, sampling error."""
    blocks = [b for refs in paired.values() if isinstance(refs, Mapping) for b in refs.values() if isinstance(b, Mapping)]
    metrics = paired_metrics(blocks)
    lines = [f"{'objective':<12} {'vs':<8} " + "  ".join(f"{m:>16}" for m in metrics)]
    for method, refs in paired.items():
        for ref, block in (refs.items() if isinstance(refs, Mapping) else ()):
            if isinstance(block, Mapping):
                lines.append(f"{method:<12} {ref:<8} " + "  ".join(_cell(block.get(m)) for m in metrics))
    return "\n".join(lines)


def print_tables(document: Mapping[str, Any], echo: Callable[[str], None] = print) -> None:
    """Every split's table (seen, held-out, and any other split the entries hold) and the paired differences."""
    from tripletclip.report import text_table

    table = method_table(document)
    entries = list(table.values())
    for i, part in enumerate(split_names(entries)):
        head = (f"\n[{document.get('regime', '')} regime] world benchmark, {split_name(part)} (accuracy %, mean ± half "
                "range over seeds)") if i == 0 else f"\n{split_name(part)} (accuracy %)"
        echo(head)
        echo(text_table(table, split_categories(entries, part), part))
    if isinstance(document.get("paired"), Mapping) and document["paired"]:
        echo("\npaired per-seed differences (points; 'real' = same sign on every seed and |mean| > the sampling "
             "error shown, 1.96 x binomial SE)")
        echo(paired_text(document["paired"]))


def write_report_or_say(out: Path) -> Path:
    """Render ``out/report.html`` from the files in ``out``; on failure print the traceback, then raise
    :class:`ReportFailed` whose message is the one line that says where the results are."""
    from tripletclip.report import render_folder

    try:
        return render_folder(out)
    except Exception as err:  # a bug in the report: never hide the results behind it
        traceback.print_exc()
        raise ReportFailed(f"the report failed (a bug: the traceback above); the results are kept in {out}/ "
                           f"(results.json, similarities.json, demo_meta.json): render them with "
                           f"`tripletclip report {out}`") from err
