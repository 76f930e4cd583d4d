"""The one command line: ``tripletclip <command> ...``.

A thin layer: each command lives in its own module under ``tripletclip.cli`` and calls one library function.
Commands are imported lazily so that ``tripletclip --help`` stays fast and a broken optional dependency of one
command never breaks another. Errors: a :class:`~tripletclip.errors.UserError` anywhere below becomes one line
(``Error: ...``, exit 1); every other exception is a bug and keeps its traceback; click's own exits (``--help``,
usage errors) pass through untouched. Under torchrun the line names the rank and is also handed to torchrun,
whose own failure summary then shows it as the root cause.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

import click

from tripletclip.errors import UserError

# command name -> ("module:attribute" of a click command or group, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tripletclip.cli.demo_cmd:demo", "The whole method offline: world, five objectives, benchmark, report."),
    "train": ("tripletclip.cli.train_cmd:train", "Train or fine-tune CLIP with a named objective."),
    "eval": ("tripletclip.cli.eval_cmd:eval_cmd", "Evaluate a model on compositional, retrieval and zero-shot benchmarks."),
    "world": ("tripletclip.cli.world_cmd:world", "Build the embedded compositional world (shards + benchmark)."),
    "negatives": ("tripletclip.cli.negatives_cmd:negatives", "Generate TripletData: negative captions, images, filters."),
    "models": ("tripletclip.cli.models_cmd:models", "List model configs; write tiny random checkpoints."),
    "export": ("tripletclip.cli.export_cmd:export", "Export a run's model as open_clip weights or a transformers CLIP folder."),
    "report": ("tripletclip.cli.report_cmd:report", "report.html from a demo or eval folder; several folders side by side."),
}


def _rank_prefix() -> str:
    """``[rank r/W] `` under torchrun (or any launcher that sets RANK and WORLD_SIZE), else ''."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"[rank {os.environ.get('RANK', '?')}/{world}] " if world.isdigit() and int(world) > 1 else ""


def _tell_torchrun(message: str) -> None:
    """Under torchrun, hand the error line to its summary: the ChildFailedError it prints after a failed rank
    then names this line as the root cause instead of "To enable traceback see ..." (torch elastic's error file)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError):
            # the layout torch's own ErrorHandler.record_exception writes; the "callstack" is the line itself
            Path(path).write_text(json.dumps({"message": {"message": message, "extraInfo": {
                "py_callstack": message, "timestamp": str(int(time.time()))}}}))


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            message = f"{_rank_prefix()}{e}"
            _tell_torchrun(f"Error: {message}")
            raise click.ClickException(message) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help from the table, so that --help imports no command module (fast, and robust to optional deps).
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tripletclip")
def main() -> None:
    """tripletclip: teach CLIP composition with synthetic hard negatives."""
