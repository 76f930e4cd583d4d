"""Load a model trained by tripletclip from its run folder or checkpoint, without executing pickled code.

A checkpoint folder holds ``model.safetensors`` (weights) and ``meta.json`` (the resolved run config and code
version), so evaluation needs neither the optimizer state nor ``torch.load``. The architecture comes from the
run's own config; the weights go through the factory's ``pretrained=<checkpoint folder>`` path (which is also how
``train model.pretrained=RUN`` fine-tunes from an earlier run), where they are first checked against the size and
sha256 recorded in ``meta.json`` (:mod:`tripletclip.train.checkpoint`): a damaged checkpoint is a one-line error,
never a model with wrong weights.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tripletclip.models.factory import ModelBundle, create_model
from tripletclip.models.weights import WeightsError, read_meta
from tripletclip.train.checkpoint import resolve_checkpoint, verified_checkpoint

__all__ = ["load_run_model", "resolve_checkpoint"]


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the architecture named in the checkpoint's config and load its weights (safetensors)."""
    ckpt = resolve_checkpoint(path)
    mcfg = read_meta(ckpt).get("config", {}).get("model", {})
    if not mcfg.get("name"):
        verified_checkpoint(ckpt, with_state=False)  # a missing or damaged meta.json: the precise one-line error
        raise WeightsError(f"{ckpt}: meta.json names no model (config.model.name); pass the architecture with "
                           f"--model NAME --pretrained {ckpt}")
    bundle = create_model(mcfg["name"], str(ckpt), device=device, force_quick_gelu=mcfg.get("force_quick_gelu", False))
    bundle.identity["init_pretrained"] = mcfg.get("pretrained") or None
    bundle.model.eval()
    return bundle
