"""Tiny transformers CLIP checkpoints saved locally in the released layouts (shared by the format tests)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from tripletclip.models.export import clip_processor

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=32, vocab_size=49408)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8, hidden_act="gelu")


def features(out) -> torch.Tensor:
    """transformers >= 5 returns a model output with the features in ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def save_clip_folder(folder: Path, eos_token_id: int = 49407, seed: int = 0, text_act: str = "quick_gelu") -> Path:
    """A tiny CLIPModel and its own CLIPProcessor, with a non-default transform (40 px resize, 32 px crop, 0.5 mean)."""
    torch.manual_seed(seed)
    text = {**TEXT, "eos_token_id": eos_token_id, "hidden_act": text_act}
    config = transformers.CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(str(folder))
    proc = clip_processor(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    proc.image_processor.size = {"shortest_edge": 40}
    proc.save_pretrained(str(folder))
    return folder


def save_release_layout(root: Path, seed: int = 0) -> Path:
    """The TripletCLIP release layout: vision-encoder/ and text-encoder/ with remote-code configs, a ``model.``
    wrapper prefix on the transformers tower keys, and a utils.py that must never run."""
    torch.manual_seed(seed)
    towers = {
        "vision-encoder": transformers.CLIPVisionModelWithProjection(
            transformers.CLIPVisionConfig(**VISION, projection_dim=16)),
        "text-encoder": transformers.CLIPTextModelWithProjection(
            transformers.CLIPTextConfig(**{**TEXT, "max_position_embeddings": 77}, projection_dim=16)),
    }
    from safetensors.torch import save_file

    booby = "raise SystemExit('utils.py was executed')\n"
    (root / "utils.py").parent.mkdir(parents=True, exist_ok=True)
    (root / "utils.py").write_text(booby)
    for name, tower in towers.items():
        sub = root / name
        sub.mkdir()
        # fields at the class defaults are left out, as save_pretrained's diff encoding does
        default = type(tower.config)().to_dict()
        cfg = {k: v for k, v in tower.config.to_dict().items() if default.get(k) != v}
        cfg.update(architectures=[f"Custom{type(tower).__name__}"], model_type=f"custom_{name.replace('-', '_')}",
                   auto_map={"AutoConfig": "utils.CustomConfig", "AutoModel": "utils.CustomModel"})
        (sub / "config.json").write_text(json.dumps(cfg))
        (sub / "utils.py").write_text(booby)
        save_file({f"model.{k}": v.contiguous() for k, v in tower.state_dict().items()}, str(sub / "model.safetensors"))
    return root
