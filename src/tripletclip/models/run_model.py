"""Load a model trained by tripletclip from its run folder or checkpoint, without executing pickled code.

A checkpoint folder holds ``model.safetensors`` (weights) and ``meta.json`` (the resolved run config and code
version), so evaluation needs neither the optimizer state nor ``torch.load``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tripletclip.models.factory import ModelBundle, create_model, file_sha256


def resolve_checkpoint(path: str | Path) -> Path:
    """Run folder -> its latest checkpoint folder; checkpoint folder or model.safetensors -> that checkpoint."""
    p = Path(path)
    if p.is_file() and p.name == "model.safetensors":
        return p.parent
    if (p / "model.safetensors").is_file():
        return p
    latest = p / "checkpoints" / "latest"
    if latest.is_file():
        target = p / "checkpoints" / latest.read_text().strip()
        if (target / "model.safetensors").is_file():
            return target
    raise FileNotFoundError(
        f"{p}: no tripletclip checkpoint here (expected model.safetensors, or a run folder with checkpoints/latest)"
    )


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the architecture named in the checkpoint's config and load its weights (safetensors)."""
    ckpt = resolve_checkpoint(path)
    meta = json.loads((ckpt / "meta.json").read_text())
    mcfg = meta["config"]["model"]
    bundle = create_model(mcfg["name"], "", device=device, force_quick_gelu=mcfg.get("force_quick_gelu", False))
    state = load_file(str(ckpt / "model.safetensors"), device=str(device))
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
