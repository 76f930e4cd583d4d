"""Load a model trained by tripletclip from its run folder or checkpoint, without executing pickled code.

A checkpoint folder holds ``model.safetensors`` (weights) and ``meta.json`` (the resolved run config and code
version), so evaluation needs neither the optimizer state nor ``torch.load``. The weights are checked against the
size and sha256 recorded in ``meta.json`` first (:mod:`tripletclip.train.checkpoint`): a damaged checkpoint is a
one-line error, never a model with wrong weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tripletclip.models.factory import ModelBundle, create_model, file_sha256
from tripletclip.train.checkpoint import load_weights, resolve_checkpoint, verified_checkpoint

__all__ = ["load_run_model", "resolve_checkpoint"]


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the architecture named in the checkpoint's config and load its weights (safetensors)."""
    ckpt = verified_checkpoint(path, with_state=False)
    meta = json.loads((ckpt / "meta.json").read_text())
    mcfg = meta["config"]["model"]
    bundle = create_model(mcfg["name"], "", device=device, force_quick_gelu=mcfg.get("force_quick_gelu", False))
    state = load_weights(ckpt, device=str(device))
    missing, unexpected = bundle.model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt}: weights do not match model {mcfg['name']} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bundle.identity.update(
        {
            "checkpoint": str(ckpt.resolve()),
            "step": meta.get("step"),
            "weights_sha256": file_sha256(ckpt / "model.safetensors"),
            "code_version": meta.get("code_version"),
            "init_pretrained": mcfg.get("pretrained") or None,
        }
    )
    bundle.model.eval()
    return bundle
