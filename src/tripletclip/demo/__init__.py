"""The demo: the whole method on the embedded world, every objective at equal compute (demo/run.py), in the
fine-tuning regime (a CLIP base pretrained on the world, demo/base.py) or from scratch (demo/config.py)."""
from __future__ import annotations

from typing import Any

from tripletclip.demo.config import DemoConfig, load_demo_config, preset_names

__all__ = ["CATEGORIES", "DemoConfig", "ensure_base", "load_demo_config", "objectives", "preset_names", "run_demo"]


def __getattr__(name: str) -> Any:
    # NOTE: lazily, so that a preset and its overrides are checked (demo/config.py) without importing torch first
    if name in ("CATEGORIES", "ensure_base", "objectives", "run_demo"):
        from tripletclip.demo import run

        return getattr(run, name)
    raise AttributeError(f"module 'tripletclip.demo' has no attribute {name!r}")
