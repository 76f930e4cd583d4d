"""Models: one factory over open_clip plus our data-only configs in ``models/configs/``."""
from tripletclip.models import towers  # noqa: F401  (registers our timm towers before any config is built)
from tripletclip.models.factory import (
    ModelBundle,
    apply_locks,
    create_model,
    list_models,
    register_model_configs,
)
from tripletclip.models.run_model import load_run_model, resolve_checkpoint

__all__ = [
    "ModelBundle",
    "apply_locks",
    "create_model",
    "list_models",
    "load_run_model",
    "register_model_configs",
    "resolve_checkpoint",
]
