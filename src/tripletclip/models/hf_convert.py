"""open_clip <-> transformers CLIP: the architecture check, the config and the key map, in both directions.

open_clip's ``CLIP`` with a ``VisionTransformer`` image tower and its built-in text transformer is the same
network as transformers' ``CLIPModel`` (both follow OpenAI's CLIP, arXiv 2103.00020); only names and the
fused q/k/v projection differ. Anything else (timm or ResNet image towers, attention pooling, layer scale,
SigLIP's logit bias, a non-CLIP tokenizer) has no ``CLIPModel`` form and is refused with the reason.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from tripletclip.errors import InputError


class ExportError(InputError):
    """A model that the requested format cannot express (a user error, reported in one line)."""


_ACT = {"GELU": "gelu", "QuickGELU": "quick_gelu"}


def _block_pairs(oc: str, hf: str) -> Iterator[tuple[str, Any]]:
    """(open_clip key, transformers key or (q, k, v) keys) for one residual block."""
    yield f"{oc}.ln_1.weight", f"{hf}.layer_norm1.weight"
    yield f"{oc}.ln_1.bias", f"{hf}.layer_norm1.bias"
    for part in ("weight", "bias"):
        yield f"{oc}.attn.in_proj_{part}", tuple(f"{hf}.self_attn.{x}_proj.{part}" for x in "qkv")
        yield f"{oc}.attn.out_proj.{part}", f"{hf}.self_attn.out_proj.{part}"
        yield f"{oc}.ln_2.{part}", f"{hf}.layer_norm2.{part}"
        yield f"{oc}.mlp.c_fc.{part}", f"{hf}.mlp.fc1.{part}"
        yield f"{oc}.mlp.c_proj.{part}", f"{hf}.mlp.fc2.{part}"


def key_pairs(vision_layers: int, text_layers: int) -> list[tuple[str, Any]]:
    """Every open_clip key with its transformers name; ``visual.proj`` / ``text_projection`` are transposed."""
    v, t = "vision_model", "text_model"
    pairs: list[tuple[str, Any]] = [
        ("visual.class_embedding", f"{v}.embeddings.class_embedding"),
        ("visual.positional_embedding", f"{v}.embeddings.position_embedding.weight"),
        ("visual.conv1.weight", f"{v}.embeddings.patch_embedding.weight"),
        ("visual.ln_pre.weight", f"{v}.pre_layrnorm.weight"), ("visual.ln_pre.bias", f"{v}.pre_layrnorm.bias"),
        ("visual.ln_post.weight", f"{v}.post_layernorm.weight"), ("visual.ln_post.bias", f"{v}.post_layernorm.bias"),
        ("visual.proj", "visual_projection.weight"),
        ("token_embedding.weight", f"{t}.embeddings.token_embedding.weight"),
        ("positional_embedding", f"{t}.embeddings.position_embedding.weight"),
        ("ln_final.weight", f"{t}.final_layer_norm.weight"), ("ln_final.bias", f"{t}.final_layer_norm.bias"),
        ("text_projection", "text_projection.weight"),
        ("logit_scale", "logit_scale"),
    ]
    for i in range(vision_layers):
        pairs += _block_pairs(f"visual.transformer.resblocks.{i}", f"{v}.encoder.layers.{i}")
    for i in range(text_layers):
        pairs += _block_pairs(f"transformer.resblocks.{i}", f"{t}.encoder.layers.{i}")
    return pairs


_TRANSPOSED = {"visual.proj", "text_projection"}


def open_clip_to_hf(state: dict[str, torch.Tensor], vision_layers: int, text_layers: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for oc, hf in key_pairs(vision_layers, text_layers):
        x = state[oc]
        if isinstance(hf, tuple):
            out.update(zip(hf, (c.contiguous() for c in x.chunk(3, dim=0))))
        else:
            out[hf] = x.t().contiguous() if oc in _TRANSPOSED else x.contiguous()
    return out


def hf_to_open_clip(state: dict[str, torch.Tensor], vision_layers: int, text_layers: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for oc, hf in key_pairs(vision_layers, text_layers):
        if isinstance(hf, tuple):
            out[oc] = torch.cat([state[k] for k in hf], dim=0)
        else:
            out[oc] = state[hf].t().contiguous() if oc in _TRANSPOSED else state[hf].contiguous()
    return out


# ------------------------------------------------------------------------------------------ architecture checks
def _blocks_why_not(blocks: torch.nn.Module, tower: str) -> tuple[str | None, dict[str, Any]]:
    """Reason a residual stack has no transformers form (or None), and its sizes."""
    first = blocks[0]
    if type(first).__name__ != "ResidualAttentionBlock" or not isinstance(first.attn, torch.nn.MultiheadAttention):
        return f"the {tower} tower uses a custom attention ({type(first.attn).__name__})", {}
    if not (isinstance(first.ls_1, torch.nn.Identity) and isinstance(getattr(first, "ln_attn", torch.nn.Identity()), torch.nn.Identity)):
        return f"the {tower} tower uses layer scale or extra norms", {}
    act = _ACT.get(type(first.mlp.gelu).__name__)
    if act is None or getattr(first.mlp.gelu, "approximate", "none") != "none":
        return f"the {tower} tower's activation {first.mlp.gelu} has no transformers name", {}
    return None, {"num_hidden_layers": len(blocks), "num_attention_heads": first.attn.num_heads,
                  "intermediate_size": first.mlp.c_fc.out_features, "hidden_act": act,
                  "layer_norm_eps": first.ln_1.eps}


def _vision_why_not(v: torch.nn.Module) -> tuple[str | None, dict[str, Any]]:
    from open_clip.transformer import VisionTransformer

    if not isinstance(v, VisionTransformer):
        name = getattr(getattr(v, "trunk", None), "default_cfg", {}).get("architecture") or type(v).__name__
        kind = f"the timm model '{name}'" if hasattr(v, "trunk") else type(v).__name__
        return f"its image tower is {kind}, and transformers' CLIPModel has ViT image towers only", {}
    size = tuple(v.image_size) if isinstance(v.image_size, (tuple, list)) else (v.image_size, v.image_size)
    if (v.attn_pool is not None or getattr(v, "pool_type", "tok") != "tok" or v.final_ln_after_pool
            or isinstance(v.ln_pre, torch.nn.Identity) or v.proj is None or v.conv1.bias is not None
            or size[0] != size[1]):
        return "its ViT pools, normalises or projects differently from CLIP's (class token, pre-LN, projection)", {}
    why, cfg = _blocks_why_not(v.transformer.resblocks, "image")
    cfg.update(hidden_size=v.conv1.out_channels, patch_size=v.conv1.kernel_size[0], image_size=size[0],
               projection_dim=v.proj.shape[1], num_channels=v.conv1.in_channels)
    return why, cfg


def _text_why_not(model: torch.nn.Module) -> tuple[str | None, dict[str, Any]]:
    if getattr(model, "text_pool_type", None) != "argmax" or not isinstance(model.text_projection, torch.nn.Parameter):
        return "its text tower pools or projects differently from CLIP's (end-of-text token, bias-free projection)", {}
    why, cfg = _blocks_why_not(model.transformer.resblocks, "text")
    cfg.update(hidden_size=model.token_embedding.embedding_dim, vocab_size=model.token_embedding.num_embeddings,
               max_position_embeddings=model.positional_embedding.shape[0],
               projection_dim=model.text_projection.shape[1])
    return why, cfg


def hf_config_for(model: torch.nn.Module, what: str = "this model") -> Any:
    """transformers ``CLIPConfig`` of an open_clip model, or :class:`ExportError` saying why there is none."""
    import open_clip
    import transformers

    if not isinstance(model, open_clip.CLIP):
        raise ExportError(f"{what} cannot be written as a transformers CLIPModel: its text tower is not CLIP's "
                          f"built-in text transformer ({type(model).__name__})")
    if getattr(model, "logit_bias", None) is not None:
        raise ExportError(f"{what} cannot be written as a transformers CLIPModel: it has SigLIP's logit bias")
    for why, _ in (_vision_why_not(model.visual), _text_why_not(model)):
        if why:
            raise ExportError(f"{what} cannot be written as a transformers CLIPModel: {why}")
    vision, text = _vision_why_not(model.visual)[1], _text_why_not(model)[1]
    if vision["projection_dim"] != text["projection_dim"]:
        raise ExportError(f"{what}: image and text projections differ in size")
    # open_clip's tokenizer ends every caption with <end_of_text> = 49407, the highest id: pooling there is argmax
    text.update(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=text["projection_dim"],
                                   logit_scale_init_value=float(model.logit_scale.detach()))


def open_clip_config_for(config: Any) -> dict[str, Any]:
    """open_clip model config (the JSON of ``models/configs``) of a transformers ``CLIPConfig``."""
    v, t = config.vision_config, config.text_config
    if v.hidden_act != t.hidden_act or v.hidden_act not in ("gelu", "quick_gelu"):
        raise ExportError(f"open_clip needs one activation for both towers (gelu or quick_gelu), got {v.hidden_act} / "
                          f"{t.hidden_act}")
    if v.layer_norm_eps != 1e-5 or t.layer_norm_eps != 1e-5:
        raise ExportError(f"open_clip's CLIP uses LayerNorm eps 1e-5, this model {v.layer_norm_eps} / {t.layer_norm_eps}")
    if t.eos_token_id not in (2, t.vocab_size - 1):  # open_clip pools at the highest token id (argmax)
        raise ExportError(f"open_clip pools text at the highest token id; this model's end-of-text id {t.eos_token_id} "
                          f"is not the last of its {t.vocab_size} tokens")
    cfg: dict[str, Any] = {
        "embed_dim": config.projection_dim,
        "vision_cfg": {"image_size": v.image_size, "layers": v.num_hidden_layers, "width": v.hidden_size,
                       "head_width": v.hidden_size // v.num_attention_heads, "patch_size": v.patch_size,
                       "mlp_ratio": v.intermediate_size / v.hidden_size},
        "text_cfg": {"context_length": t.max_position_embeddings, "vocab_size": t.vocab_size, "width": t.hidden_size,
                     "heads": t.num_attention_heads, "layers": t.num_hidden_layers,
                     "mlp_ratio": t.intermediate_size / t.hidden_size},
    }
    if v.hidden_act == "quick_gelu":
        cfg["quick_gelu"] = True
    return cfg
