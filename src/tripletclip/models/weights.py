"""Weights files read without executing pickled code, matched to an architecture with a clear error.

Released CLIP fine-tunes come in a few shapes, all reduced here to one flat ``{name: tensor}`` state dict:
- a bare state dict (``.safetensors``, ``.pt``, ``.bin``, ``.pth``);
- an open_clip training checkpoint ``{"epoch", "state_dict": {"module.visual.conv1.weight": ...}, "optimizer"}``
  as released for NegCLIP (ARO, arXiv 2210.01936) and most open_clip fine-tunes (DDP adds ``module.``);
- a tripletclip run folder or checkpoint folder (``model.safetensors`` + ``meta.json``);
- an open_clip export folder (``open_clip_model.safetensors``, as written by ``tripletclip export``).
Pickle files are read with ``torch.load(weights_only=True)``: a file that needs code to unpickle is refused.
A state dict that does not fit the model is reported with the first missing, unexpected and mis-shaped keys
(open_clip's own loader raises PyTorch's multi-page message instead).
"""
from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from tripletclip.errors import InputError, NotFoundError
from tripletclip.utils.files import sha256_file

# wrappers added by training code around the model's own keys: DDP, torch.compile
_PREFIXES = ("module.", "_orig_mod.")
# file names an open_clip folder (hf-hub layout, our export) keeps its weights under, preferred first
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsError(InputError):
    """A weights file that cannot be read or does not fit the requested architecture (a user error)."""


@dataclass
class WeightsSource:
    """Where weights come from: the file read, its format, and (for tripletclip checkpoints) its meta.json."""

    file: Path
    format: str
    meta: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """Format, source path and sha256 of the weights file, for result records."""
        # a verified checkpoint's meta.json records the sha256 just checked: no second pass over the file
        recorded = (self.meta.get("files") or {}).get(self.file.name) or {}
        ident: dict[str, Any] = {"format": self.format, "source": str(self.file.resolve()),
                                 "weights_sha256": recorded.get("sha256") or sha256_file(self.file)}
        if self.format == "tripletclip-checkpoint":
            ident.update(checkpoint=str(self.file.parent.resolve()), step=self.meta.get("step"),
                         code_version=self.meta.get("code_version"))
        return ident


def read_meta(ckpt: Path) -> dict[str, Any]:
    """A checkpoint's meta.json, or {} when it is missing or unreadable (verification reports why)."""
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _checkpoint_source(ckpt: Path) -> WeightsSource:
    """A tripletclip checkpoint folder, verified against the sizes and hashes its meta.json records."""
    from tripletclip.train.checkpoint import WEIGHTS, verified_checkpoint

    ckpt = verified_checkpoint(ckpt, with_state=False)
    return WeightsSource(ckpt / WEIGHTS, "tripletclip-checkpoint", read_meta(ckpt))


def locate_weights(path: str | Path) -> WeightsSource:
    """The weights file behind a ``pretrained`` path: a file, a tripletclip run/checkpoint folder or an open_clip folder."""
    from tripletclip.train.checkpoint import resolve_checkpoint

    p = Path(path)
    if not p.exists():
        raise WeightsError(f"{p}: no such file or folder")
    if p.is_file():
        if p.name == "model.safetensors" and (p.parent / "meta.json").is_file():
            return _checkpoint_source(p.parent)
        return WeightsSource(p, "state-dict")
    for name in OPEN_CLIP_FILES:
        if (p / name).is_file():
            return WeightsSource(p / name, "open_clip-folder")
    hf_folder = (p / "config.json").is_file() and not (p / "meta.json").is_file()
    if not hf_folder:
        try:
            return _checkpoint_source(resolve_checkpoint(p))
        except NotFoundError:
            pass
    hint = f"; for a transformers folder use --model hf:{p}" if hf_folder else ""
    raise WeightsError(
        f"{p}: no weights found: expected a tripletclip run or checkpoint folder (checkpoints/latest or "
        f"model.safetensors + meta.json), an open_clip folder ({OPEN_CLIP_FILES[0]}) or a weights file{hint}"
    )


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A flat state dict from a weights file, and the wrappers removed to get it (e.g. ``["state_dict", "module."]``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), []
    try:
        # argparse.Namespace: open_clip-style training checkpoints store their args; it holds plain data only
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        if _is_torchscript(path):
            raise WeightsError(f"{path}: a TorchScript archive (OpenAI's original release); use the open_clip tag "
                               f"instead, e.g. --model ViT-B-32-quickgelu --pretrained openai") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: refused: torch.load(weights_only=True) cannot read it without running pickled "
                           f"code ({first}); re-save it as a plain state dict of tensors") from None
    return unwrap_state_dict(obj, path)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def unwrap_state_dict(obj: Any, source: str | Path = "weights") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip training-checkpoint wrappers: a ``state_dict`` / ``model`` entry and ``module.`` / ``_orig_mod.`` prefixes."""
    removed: list[str] = []
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        inner = next((k for k in ("state_dict", "model", "model_state_dict") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            kinds = sorted({type(v).__name__ for v in obj.values()})
            raise WeightsError(f"{source}: not a state dict: top-level keys {list(obj)[:6]} hold {kinds}, and none of "
                               f"'state_dict' / 'model' / 'model_state_dict' holds the weights")
        removed.append(inner)
        obj = obj[inner]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{source}: not a state dict (got {type(obj).__name__})")
    state = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            removed.append(prefix)
    return state, removed


def _all_tensors(d: Mapping) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def check_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, arch: str) -> None:
    """Raise :class:`WeightsError` naming the first missing, unexpected and mis-shaped keys, if any."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{len(shapes)} shapes differ (weights vs model), first: {'; '.join(shapes[:3])}"] if shapes else []
    if missing:
        parts.append(f"{len(missing)} keys missing, first: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first: {', '.join(unexpected[:3])}")
    raise WeightsError(f"{source}: weights do not fit model {arch}: {' | '.join(parts)}; pick the architecture these "
                       f"weights were trained with (`tripletclip models list`)")


def load_open_clip_weights(model: torch.nn.Module, src: WeightsSource, arch: str) -> list[str]:
    """Load ``src`` into an open_clip model, after open_clip's own format fix-ups; returns the wrappers removed."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    state, removed = read_state_dict(src.file)
    # OpenAI's clip package saves three scalars next to the weights; open_clip drops them when it converts
    for key in ("input_resolution", "context_length", "vocab_size"):
        if key in state and key not in model.state_dict():
            state.pop(key)
    # the same fix-ups open_clip.load_checkpoint applies: old scalar logit_scale, image / text size changes
    ls = state.get("logit_scale")
    if ls is not None and getattr(model, "logit_scale", None) is not None and ls.ndim != model.logit_scale.ndim:
        state["logit_scale"] = ls.reshape(model.logit_scale.shape)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        from open_clip.model import convert_to_custom_text_state_dict

        state = convert_to_custom_text_state_dict(state)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    check_fits(model, state, str(src.file), arch)
    model.load_state_dict(state, strict=True)
    return removed


def quick_gelu_of(name: str, force: bool = False) -> Optional[bool]:
    """Whether open_clip model ``name`` uses QuickGELU (None when the name is not an open_clip config)."""
    import open_clip

    cfg = open_clip.get_model_config(name)
    return None if cfg is None else bool(force or cfg.get("quick_gelu", False))
