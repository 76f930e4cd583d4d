"""``tripletclip models``: list model names, create tiny random checkpoints for offline tests."""
from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Model configs known to the factory (open_clip's and ours)."""


@models.command("list")
@click.option("--prefix", default="", help="Only names starting with this.")
def list_cmd(prefix: str) -> None:
    """Every model name the factory accepts: ours first, described, then open_clip's (without importing torch)."""
    import shutil

    from tripletclip.catalog import model_catalog

    ours, theirs = model_catalog(prefix)
    click.echo(f"tripletclip's model configs ({len(ours)}; src/tripletclip/models/configs):")
    width = max((len(n) for n, _ in ours), default=0)
    for name, description in ours:
        click.echo(f"  {name:<{width}}  {description}")
    click.echo(f"\nopen_clip's model configs ({len(theirs)}; add --pretrained TAG or a weights file for trained weights):")
    col = max((len(n) for n in theirs), default=0) + 2
    per_line = max(1, (shutil.get_terminal_size((100, 20)).columns - 2) // col)
    for i in range(0, len(theirs), per_line):
        click.echo("  " + "".join(n.ljust(col) for n in theirs[i:i + per_line]).rstrip())


@models.command("init")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the weights (.pt or .safetensors).")
@click.option("--seed", default=0, show_default=True)
def init_cmd(name: str, out: str, seed: int) -> None:
    """Save randomly initialised weights of NAME, loadable as `--pretrained OUT` (offline smoke tests)."""
    from tripletclip.models.factory import save_random_weights

    path = save_random_weights(name, out, seed)
    click.echo(f"wrote {path}")
