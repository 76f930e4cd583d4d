"""The demo: the whole method on the embedded world, five objectives at equal compute (demo/run.py)."""
from tripletclip.demo.run import CATEGORIES, METHODS, run_demo

__all__ = ["CATEGORIES", "METHODS", "run_demo"]
