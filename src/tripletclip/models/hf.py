"""``hf:PATH_OR_ID``: transformers-format CLIP checkpoints, loaded without running any code from the checkpoint.

Two layouts (CLIP, arXiv 2103.00020, as implemented by transformers' ``CLIPModel``):
- a ``CLIPModel`` folder: ``config.json`` (model_type ``clip``) + ``model.safetensors`` / ``pytorch_model.bin``
  (sharded with an index or not), e.g. ``openai/clip-vit-base-patch32``. Tokenizer and image processor come
  from the folder's own files when present (exactly what ``CLIPProcessor.from_pretrained`` builds);
- the released TripletCLIP checkpoints (arXiv 2411.02545, ``TripletCLIP/CC3M_*_ViTB12``): ``vision-encoder/``
  and ``text-encoder/`` folders holding ``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection``
  weights behind a ``utils.py`` meant for ``trust_remote_code``. We never import that file: the tower weights
  keep transformers' key names (any wrapper prefix such as ``model.`` is stripped) and are loaded into one
  ``CLIPModel``. Config fields absent from their ``config.json`` take transformers' CLIP defaults, which is
  what ``save_pretrained``'s diff encoding means; every shape is then checked against the weights. These
  models were trained with open_clip's ViT-B-32 tokenizer and image transform, so those are used. The release
  has no ``logit_scale``: it starts at CLIP's init (log 1/0.07), which only matters when fine-tuning.
A hub id is resolved through the local Hugging Face cache only (offline). Anything that would need the
checkpoint's own code (``model_type`` other than CLIP) is refused with one line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from tripletclip.models.bundle import ModelBundle
from tripletclip.models.weights import WeightsError, check_fits, locate_weights, read_state_dict
from tripletclip.utils.files import sha256_file

TOWERS = ("vision-encoder", "text-encoder")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CLIP_TYPES = {"clip", "clip_vision_model", "clip_text_model"}


class HFClip(torch.nn.Module):
    """open_clip's model interface over a transformers ``CLIPModel``: ``encode_image`` / ``encode_text`` /
    ``logit_scale`` / tower locks, so the trainer and evaluators use it unchanged."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.clip = clip
        self.eos_token_id = int(clip.config.text_config.eos_token_id)
        size = clip.config.vision_config.image_size
        self.visual = torch.nn.Module()  # image_size where ModelBundle.image_size looks for it
        self.visual.image_size = size

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        return self.clip.logit_scale

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.clip.visual_projection(self.clip.vision_model(pixel_values=image).pooler_output)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Projected end-of-text feature. Runs only up to the batch's last pooled position: with a causal mask
        later positions cannot change it (same argument as models/trimmed.py), so no attention mask is needed."""
        if self.eos_token_id == 2:  # transformers' legacy configs pool at the highest token id
            pool_at = text.argmax(dim=-1)
        else:
            pool_at = (text == self.eos_token_id).int().argmax(dim=-1)
        n = int(pool_at.max()) + 1
        x = self.clip.text_projection(self.clip.text_model(input_ids=text[:, :n]).pooler_output)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode_image(image, normalize=True), self.encode_text(text, normalize=True), self.logit_scale.exp()

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the image tower except its last ``unlocked_groups`` groups (LiT; groups as open_clip counts them:
        embeddings + pre-LN, each layer, post-LN + projection)."""
        v = self.clip.vision_model
        groups = [[v.embeddings, v.pre_layrnorm], *[[layer] for layer in v.encoder.layers],
                  [v.post_layernorm, self.clip.visual_projection]]
        _freeze(groups[: len(groups) - unlocked_groups] if unlocked_groups else groups)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        t = self.clip.text_model
        groups = [[t.embeddings], *[[layer] for layer in t.encoder.layers], [t.final_layer_norm, self.clip.text_projection]]
        _freeze(groups[: len(groups) - unlocked_layers] if unlocked_layers else groups)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.clip.gradient_checkpointing_enable()
        else:
            self.clip.gradient_checkpointing_disable()


def _freeze(groups: list[list[torch.nn.Module]]) -> None:
    for group in groups:
        for module in group:
            for p in module.parameters():
                p.requires_grad = False


# ---------------------------------------------------------------------------------------------- locating a source
def resolve_source(spec: str, cache_dir: Optional[str] = None) -> Path:
    """A local folder, or a hub id found in the local Hugging Face cache (never downloaded here)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise WeightsError(f"hf:{spec}: expected a folder (config.json + weights), got a file; for a weights file use "
                           f"--model NAME --pretrained {spec}")
    if spec.count("/") != 1 or spec.startswith((".", "/")):
        raise WeightsError(f"hf:{spec}: no such folder, and not a hub id of the form org/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, cache_dir=cache_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 - every failure here means the same thing: not in the local cache
        raise WeightsError(f"hf:{spec}: not a local folder and not in the local Hugging Face cache (offline); "
                           f"download it first (`huggingface-cli download {spec}`) or pass its folder") from None


def _read_config(folder: Path, spec: str) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(f"hf:{spec}: {folder} has no config.json (expected a transformers CLIPModel folder, or "
                           f"vision-encoder/ + text-encoder/ folders)")
    return json.loads(path.read_text())


def _weight_files(folder: Path, spec: str) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    raise WeightsError(f"hf:{spec}: {folder} has no weights ({' or '.join(WEIGHT_FILES)})")


def _read_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(read_state_dict(f)[0])
    return state


def _refuse_foreign(cfg: dict[str, Any], spec: str, where: str) -> None:
    kind = cfg.get("model_type")
    if kind not in _CLIP_TYPES:
        code = cfg.get("auto_map")
        why = f"needs the repository's own code ({next(iter(code.values()))})" if code else "is not a transformers CLIP"
        raise WeightsError(f"hf:{spec}: {where}config.json has model_type '{kind}', which {why}; tripletclip loads "
                           f"CLIPModel folders and the TripletCLIP vision-encoder/ + text-encoder/ layout only")


# --------------------------------------------------------------------------------------------- building the model
def _tower_config(cfg: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fields of a tower's config.json that transformers' CLIP{Vision,Text}Config knows (the rest is wrapper)."""
    import transformers

    cls = transformers.CLIPVisionConfig if kind == "vision" else transformers.CLIPTextConfig
    nested = cfg.get(f"{kind}_config")
    src = nested if isinstance(nested, dict) else cfg
    known = set(cls().to_dict()) - {"architectures", "auto_map", "model_type", "transformers_version", "_name_or_path"}
    return {k: v for k, v in src.items() if k in known}


def _strip_tower_prefix(state: dict[str, torch.Tensor], anchor: str, spec: str, folder: Path) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (e.g. ``model.``) found in front of the transformers key ``anchor``."""
    hit = next((k for k in state if k.endswith(anchor)), None)
    if hit is None:
        raise WeightsError(f"hf:{spec}: {folder} does not hold transformers CLIP tower weights (no '*{anchor}'; "
                           f"first keys: {', '.join(list(state)[:3])})")
    prefix = hit[: -len(anchor)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if prefix else state


def _build(config: Any, state: dict[str, torch.Tensor], source: str, keep_logit_scale: bool) -> HFClip:
    import transformers

    with torch.device("meta"):
        probe = transformers.CLIPModel(config)  # shapes only, no init cost
    own = probe.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}  # old buffers
    if not keep_logit_scale:
        state["logit_scale"] = torch.tensor(float(config.logit_scale_init_value))
    check_fits(probe, state, source, "transformers CLIPModel")
    clip = transformers.CLIPModel(config)
    clip.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return HFClip(clip)


def _clip_folder(folder: Path, spec: str) -> tuple[HFClip, list[Path]]:
    import transformers

    cfg = _read_config(folder, spec)
    _refuse_foreign(cfg, spec, "")
    if cfg.get("model_type") != "clip":
        raise WeightsError(f"hf:{spec}: config.json describes a single {cfg['model_type']} tower; expected a CLIPModel "
                           f"folder or vision-encoder/ + text-encoder/ folders")
    config = transformers.CLIPConfig.from_dict({k: v for k, v in cfg.items() if k != "auto_map"})
    files = _weight_files(folder, spec)
    return _build(config, _read_weights(files), str(folder), keep_logit_scale=True), files


def _two_folder(folder: Path, spec: str) -> tuple[HFClip, list[Path]]:
    import transformers

    parts: dict[str, dict[str, Any]] = {}
    state: dict[str, torch.Tensor] = {}
    files: list[Path] = []
    for tower, kind, anchor in (("vision-encoder", "vision", "vision_model.embeddings.patch_embedding.weight"),
                                ("text-encoder", "text", "text_model.embeddings.token_embedding.weight")):
        sub = folder / tower
        cfg = _read_config(sub, spec)
        if cfg.get("model_type") in _CLIP_TYPES or "auto_map" in cfg:  # a CLIP config or a thin wrapper of one
            parts[kind] = _tower_config(cfg, kind)
        else:
            _refuse_foreign(cfg, spec, f"{tower}/")
        tower_files = _weight_files(sub, spec)
        files += tower_files
        state.update(_strip_tower_prefix(_read_weights(tower_files), anchor, spec, sub))
    proj = {parts[k].get("projection_dim") for k in parts} - {None}
    if len(proj) > 1:
        raise WeightsError(f"hf:{spec}: the towers project to different sizes {sorted(proj)}: not one CLIP space")
    config = transformers.CLIPConfig(text_config=parts["text"], vision_config=parts["vision"],
                                     projection_dim=proj.pop() if proj else 512)
    return _build(config, state, str(folder), keep_logit_scale="logit_scale" in state), files


# ------------------------------------------------------------------------------------ tokenizer and image transform
class HFTokenizer:
    """list[str] -> LongTensor [N, context_length] with a transformers tokenizer (padded, truncated like open_clip)."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self.tokenizer(texts, padding="max_length", max_length=self.context_length, truncation=True,
                             return_tensors="pt")
        return out["input_ids"]


class HFImageTransform:
    """PIL image -> [3, H, W] pixel tensor with the folder's own transformers image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def _auto(kind: str, folder: Path, spec: str) -> Any:
    """``AutoTokenizer`` / ``AutoImageProcessor`` from the folder, never with remote code."""
    import transformers

    cls = transformers.AutoTokenizer if kind == "tokenizer" else transformers.AutoImageProcessor
    try:
        return cls.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"hf:{spec}: its {kind} files cannot be loaded without running the repository's code "
                           f"or are incomplete ({first})") from None


def _feeders(folder: Path, clip: HFClip, spec: str, own_files: bool, aug_cfg: Optional[dict[str, Any]]
             ) -> tuple[Callable, Callable, Callable, int, dict[str, str]]:
    """(train transform, eval transform, tokenizer, context length, which ones came from the folder)."""
    import open_clip

    ctx = int(clip.clip.config.text_config.max_position_embeddings)
    size = int(clip.clip.config.vision_config.image_size)
    used = {"tokenizer": "open_clip CLIP BPE", "transform": "open_clip CLIP (bicubic, OpenAI mean/std)"}
    tokenizer: Callable = open_clip.SimpleTokenizer(context_length=ctx)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    preprocess_val: Callable = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
    if own_files and any((folder / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json", "vocab.json")):
        tokenizer = HFTokenizer(_auto("tokenizer", folder, spec), ctx)
        used["tokenizer"] = "folder"
    # transformers < 5 writes preprocessor_config.json, >= 5 processor_config.json
    if own_files and any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        processor = _auto("image processor", folder, spec)
        preprocess_val = HFImageTransform(processor)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        used["transform"] = "folder"
    # training augmentation: open_clip's random resized crop (never a flip) with the folder's normalisation
    aug = {k: v for k, v in (aug_cfg or {}).items() if k not in ("hflip", "horizontal_flip")} or None
    preprocess_train = open_clip.image_transform(size, is_train=True, mean=mean, std=std, aug_cfg=aug)
    return preprocess_train, preprocess_val, tokenizer, ctx, used


def create_hf_model(
    spec: str,
    pretrained: str = "",
    device: str | torch.device = "cpu",
    image_size: Optional[int] = None,
    aug_cfg: Optional[dict[str, Any]] = None,
    cache_dir: Optional[str] = None,
) -> Any:
    """A :class:`~tripletclip.models.factory.ModelBundle` for ``hf:spec``; ``pretrained`` (optional) is a tripletclip
    run or checkpoint folder fine-tuned from this model, whose weights replace the folder's."""

    if image_size:
        raise WeightsError(f"hf:{spec}: a different image size is not supported for transformers models")
    folder = resolve_source(spec, cache_dir)
    two = all((folder / t).is_dir() for t in TOWERS)
    model, files = _two_folder(folder, spec) if two else _clip_folder(folder, spec)
    train_tf, val_tf, tokenizer, ctx, used = _feeders(folder, model, spec, own_files=not two, aug_cfg=aug_cfg)
    shas = {str(f.relative_to(folder)): sha256_file(f) for f in files}
    identity: dict[str, Any] = {
        "name": f"hf:{spec}", "format": "hf-tripletclip-towers" if two else "hf-clip", "source": spec,
        "resolved": str(folder.resolve()), "weights_sha256": next(iter(shas.values())) if len(shas) == 1 else shas,
        "quick_gelu": model.clip.config.vision_config.hidden_act == "quick_gelu", **used,
    }
    # a transformers folder ships its activation in config.json with its weights: recorded, nothing to check
    act = model.clip.config.vision_config.hidden_act
    identity["activation"] = {"model_uses": "QuickGELU" if act == "quick_gelu" else str(act),
                              "weights_trained_with": "as config.json says (hidden_act)", "status": "from config"}
    if pretrained:
        src = locate_weights(pretrained)
        state, _ = read_state_dict(src.file)
        check_fits(model, state, str(src.file), f"hf:{spec}")
        model.load_state_dict(state, strict=True)
        identity.update({**src.identity(), "init": {k: identity[k] for k in ("format", "source", "weights_sha256")}})
    model.to(device)
    return ModelBundle(model, train_tf, val_tf, tokenizer, ctx, identity)

