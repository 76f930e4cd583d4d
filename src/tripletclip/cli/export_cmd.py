"""``tripletclip export``: write a run's model as an open_clip state dict or a transformers CLIPModel folder."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["open_clip", "hf"]), required=True,
              help="open_clip: state dict + model config; hf: transformers CLIPModel folder with its processor.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (new, empty, or an earlier export); not inside RUN.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier export in --out (only the files its manifest lists are removed).")
@click.option("--interpolate", "alpha", type=float, default=None,
              help="WiSE-FT: write (1-ALPHA) * base + ALPHA * run (0 = the base, 1 = the run); needs --base.")
@click.option("--base", default="", help="The model RUN was fine-tuned from (open_clip tag, weights file or run folder).")
def export(run: str, fmt: str, out: str, overwrite: bool, alpha: float | None, base: str) -> None:
    """Export the model of RUN (a run or checkpoint folder) for open_clip or transformers."""
    from tripletclip.models.export import export_model

    manifest = export_model(run, fmt, out, overwrite=overwrite, interpolate=alpha, base=base)  # refusals are UserErrors: one line (tripletclip.cli)
    diff = max(manifest["max_feature_diff"].values())
    click.echo(f"wrote {out} ({fmt}; read back with {'transformers' if fmt == 'hf' else 'open_clip'}: "
               f"features within {diff:.1e} of the checkpoint)")
