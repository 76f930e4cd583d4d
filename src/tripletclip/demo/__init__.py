"""The demo: the whole method on the embedded world, every objective at equal compute (demo/run.py), in the
fine-tuning regime (a CLIP base pretrained on the world, demo/base.py) or from scratch (demo/config.py)."""
from tripletclip.demo.config import DemoConfig, load_demo_config, preset_names
from tripletclip.demo.run import CATEGORIES, ensure_base, objectives, run_demo

__all__ = ["CATEGORIES", "DemoConfig", "ensure_base", "load_demo_config", "objectives", "preset_names", "run_demo"]
