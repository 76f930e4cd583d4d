"""``tripletclip train``: parse a preset + dotted overrides, call :func:`tripletclip.train.train`."""
from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML preset from configs/ (may use _base_ includes).")
@click.option("--resume", default=None, help="'latest' (this run's newest checkpoint) or a checkpoint/run folder.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.argument("overrides", nargs=-1)
def train(config_path: str | None, resume: str | None, print_config: bool, overrides: tuple[str, ...]) -> None:
    """Train or fine-tune CLIP with a named objective.

    OVERRIDES are dotted key=value pairs, e.g. optim.lr=1e-4 train.steps=100 loss.name=tripletclip.
    """
    from tripletclip.config import dump_config, load_config

    cfg = load_config(config_path, overrides)  # a ConfigError is a UserError: one line (tripletclip.cli)
    if print_config:
        click.echo(dump_config(cfg))
        return
    from tripletclip.train import train as run_train
    from tripletclip.train.preflight import preflight

    preflight(cfg)  # model, locks, optimiser groups and objective on a dry batch: a bad setting fails in seconds
    result = run_train(cfg, resume=resume)
    click.echo(f"run folder: {result['run_dir']} (step {result['step']})")
