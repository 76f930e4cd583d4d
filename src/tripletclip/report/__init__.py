"""Reports of comparisons between objectives: the HTML page, its tables, words and plots (``tripletclip demo``,
``tripletclip report``).

The names below are imported on first use: ``tripletclip.report.intervals`` (used by the demo's statistics in
every training process) must not pull in matplotlib and the page's modules.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"write_report": "html", "method_items": "labels", "render_folder": "render", "report": "render",
          "verdict": "summary", "fmt_pm": "tables", "text_table": "tables"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tripletclip.report.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tripletclip.report' has no attribute '{name}'")
