"""What the demo shows a person: the printed tables (paper Table 4 style, percent) and the HTML report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from tripletclip.edit_types import SUGARCREPE_TYPES as CATEGORIES

NON_METHOD_KEYS = ("regime", "base", "paired", "units")
PAIRED_METRICS = ("mean", "heldout_mean", "swap_mean", "replace_rel", "wino_image", "wino_group", "i2t_r1")


def method_table(document: Mapping[str, Any]) -> dict[str, Any]:
    """The method entries of results.json (the base first, when there is one, as a row of its own)."""
    table = {k: v for k, v in document.items() if k not in NON_METHOD_KEYS}
    return {"base (before fine-tuning)": document["base"], **table} if document.get("base") else table


def paired_text(paired: Mapping[str, Any]) -> str:
    """One line per (objective, reference, metric): mean difference, per-seed values, real or not."""
    lines = [f"{'objective':<12} {'vs':<8} " + "  ".join(f"{m:>16}" for m in PAIRED_METRICS)]
    for method, refs in paired.items():
        for ref, block in refs.items():
            cells = []
            for m in PAIRED_METRICS:
                d = block.get(m)
                cells.append(f"{'':>16}" if d is None else
                             f"{d['mean']:+6.1f}{' real' if d['real'] else '     '} ±{d['sampling_error']:4.1f}")
            lines.append(f"{method:<12} {ref:<8} " + "  ".join(cells))
    return "\n".join(lines)


def print_tables(document: Mapping[str, Any], echo: Callable[[str], None] = print) -> None:
    from tripletclip.report import text_table

    table = method_table(document)
    echo(f"\n[{document.get('regime', '')} regime] world benchmark, seen compositions "
         "(accuracy %, mean ± half range over seeds)")
    echo(text_table(table, CATEGORIES, "seen"))
    echo("\nheld-out compositions (accuracy %)")
    echo(text_table(table, CATEGORIES, "heldout"))
    if document.get("paired"):
        echo("\npaired per-seed differences (points; 'real' = same sign on every seed and |mean| > the sampling "
             "error shown, 1.96 x binomial SE)")
        echo(paired_text(document["paired"]))


def gallery(world_summary: Mapping[str, Any]) -> list:
    """One triplet per edit type of the demo's world, captions as text and the edited words of y' marked."""
    from tripletclip.world import WorldSpec
    from tripletclip.world.gallery import gallery_entries

    spec = WorldSpec.from_json(world_summary["spec"])
    return gallery_entries(spec, seed=int(world_summary.get("seed", 0)) + 99,
                           image_size=int(world_summary.get("image_size", 64)))


def write_html(out: Path, document: Mapping[str, Any], meta: Mapping[str, Any], sims: Mapping[str, Any],
               curves: Mapping[str, Any], world_summary: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    """report.html next to results.json (the whole document: the report reads regime, base and paired)."""
    from tripletclip.report import write_report

    write_report(out / "report.html", document, CATEGORIES, meta, sims=sims, curves=curves,
                 gallery=gallery(world_summary))
