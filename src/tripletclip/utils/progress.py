"""The one progress-bar factory (rich): every long job of the project shows the same columns.

Columns: description (bold), bar, done/total, then optionally the measured rate (``unit``/s from rich's own
speed estimate), a template of task fields (e.g. ``"loss {task.fields[loss]:.4f}"``), elapsed time, and the
time remaining. ``enabled=False`` gives a bar that accepts every call and draws nothing (non-main ranks,
``progress=False``), so callers need no branch of their own. rich is imported on first use only.
"""
from __future__ import annotations

from typing import Any


def progress_bar(*, unit: str = "", fields: str = "", elapsed: bool = False, transient: bool = False,
                 enabled: bool = True) -> Any:
    """A ``rich.progress.Progress`` (a context manager) with the project's columns."""
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "")

    columns: list[Any] = [TextColumn("[bold]{task.description}[/bold]"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(RateColumn())
    if fields:
        columns.append(TextColumn(fields))
    if elapsed:
        columns.append(TimeElapsedColumn())
    columns.append(TimeRemainingColumn())
    from rich.console import Console

    # NOTE: a transient bar on a pipe or file draws nothing but leaves one blank line when it ends (rich prints
    # its last, empty frame): eval printed three before its table (issue 20). Off the terminal it is off.
    interactive = Console().is_terminal
    return Progress(*columns, transient=transient, disable=not enabled or (transient and not interactive))
