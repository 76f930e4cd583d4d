"""``tripletclip report``: report.html from a demo or eval folder, or several runs side by side
(:func:`tripletclip.report.report`)."""
from __future__ import annotations

from typing import Optional

import click


@click.command("report")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", default=None, help="The HTML file to write (default: PATH/report.html for one folder, "
                                          "compare.html for several).")
def report(paths: tuple[str, ...], out: Optional[str]) -> None:
    """Render report.html from the files a demo or `eval --out` left in PATH; several PATHs: side by side.

    Reads results.json (or eval JSON files), and demo_meta.json, similarities.json and runs/*/metrics.jsonl
    where present; a section whose input is absent is left out with one line saying so."""
    from tripletclip.report import report as render

    click.echo(f"report: {render(list(paths), out)}")
