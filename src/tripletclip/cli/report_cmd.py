"""``tripletclip report``: report.html from a demo or eval folder, or several runs side by side
(:func:`tripletclip.report.report`)."""
from __future__ import annotations

from typing import Optional

import click


@click.command("report")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", default=None, help="The HTML file to write (default: PATH/report.html for one folder, "
                                          "compare.html for several).")
@click.option("--wise", default=None, metavar="ALPHAS",
              help="WiSE-FT sweep first (one demo folder): interpolate each method's run with its base at these "
                   "alphas, e.g. 0.25,0.5,0.75, score each on the demo's world, write wise_sweep.json; the "
                   "trade-off figure draws them.")
@click.option("--wise-seed", default=0, show_default=True, help="The training seed whose runs --wise sweeps.")
def report(paths: tuple[str, ...], out: Optional[str], wise: Optional[str], wise_seed: int) -> None:
    """Render report.html from the files a demo or `eval --out` left in PATH; several PATHs: side by side.

    Reads results.json (or eval JSON files), and demo_meta.json, similarities.json and runs/*/metrics.jsonl
    where present; a section whose input is absent is left out with one line saying so."""
    from tripletclip.report import report as render

    if wise is not None:
        from tripletclip.errors import InputError
        from tripletclip.report.wise import parse_alphas, wise_sweep

        alphas = parse_alphas(wise)
        if len(paths) != 1:
            raise InputError("--wise sweeps one demo folder; give one PATH")
        click.echo(f"wise: {wise_sweep(paths[0], alphas, seed=wise_seed, echo=click.echo)}")
    click.echo(f"report: {render(list(paths), out)}")
