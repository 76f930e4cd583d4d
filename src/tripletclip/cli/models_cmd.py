"""``tripletclip models``: list model names, create tiny random checkpoints for offline tests."""
from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Model configs known to the factory (open_clip's and ours)."""


@models.command("list")
@click.option("--prefix", default="", help="Only names starting with this.")
def list_cmd(prefix: str) -> None:
    """Print every model name the factory accepts."""
    from tripletclip.models import list_models

    for name in list_models(prefix):
        click.echo(name)


@models.command("init")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the weights (.pt or .safetensors).")
@click.option("--seed", default=0, show_default=True)
def init_cmd(name: str, out: str, seed: int) -> None:
    """Save randomly initialised weights of NAME, loadable as `--pretrained OUT` (offline smoke tests)."""
    from tripletclip.models.factory import save_random_weights

    path = save_random_weights(name, out, seed)
    click.echo(f"wrote {path}")
