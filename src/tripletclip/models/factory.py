"""One factory for every CLIP model tripletclip trains or evaluates.

Wraps open_clip (arXiv 2212.07143): any open_clip model name with a ``pretrained`` tag, a weights file or a
tripletclip run folder (models/weights.py), ``hf-hub:org/repo`` or ``local-dir:/path`` ids, plus our own data-only
model configs in ``models/configs/*.json`` registered with open_clip exactly as open_clip registers its own JSON
configs. Tiny ``test-*`` / ``world-*`` configs let tests and the embedded world run real architectures on CPU.
``hf:PATH_OR_ID`` hands over to transformers-format CLIP checkpoints (models/hf.py). Every bundle carries an
identity (format, source, sha256 of the weights) that result files record.

NOTE: training augmentation never flips horizontally (flips turn "left of" captions false; docs/methods.md section 3.3).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import open_clip
import torch

from tripletclip.errors import InputError, UnavailableError
from tripletclip.models.activation import check_activation, tag_activation
from tripletclip.models.bundle import ModelBundle
from tripletclip.models.weights import (
    WeightsError,
    WeightsSource,
    load_open_clip_weights,
    locate_weights,
    quick_gelu_of,
)
from tripletclip.utils.files import sha256_file as file_sha256

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_registered = False


def register_model_configs(folder: str | Path = CONFIG_DIR) -> list[str]:
    """Register every JSON model config in ``folder`` with open_clip; returns their names."""
    global _registered
    folder = Path(folder)
    names = sorted(p.stem for p in folder.glob("*.json"))
    if names:
        open_clip.add_model_config(folder)
    if Path(folder) == CONFIG_DIR:
        _registered = True
    return names


def _ensure_registered() -> None:
    if not _registered:
        register_model_configs()


def model_input_size(name: str, default: int = 64) -> int:
    """The image side a model config expects (open_clip's or ours); ``default`` for hub and local ids."""
    _ensure_registered()
    size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size", default)
    return int(size if isinstance(size, int) else size[0])


def list_models(prefix: str = "") -> list[str]:
    """Every model name the factory accepts (open_clip's and ours)."""
    _ensure_registered()
    return [m for m in open_clip.list_models() if m.startswith(prefix)]


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip warns on every random init; training from scratch is a normal case here, not a warning."""
    f = _DropRandomInitWarning()
    logging.getLogger().addFilter(f)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(f)


def _tag_identity(name: str, pretrained: str, cache_dir: Optional[str]) -> dict[str, Any]:
    """An open_clip tag: the tag, and the sha256 of its cached download when it is found locally (no network)."""
    if not pretrained:
        return {"format": "open_clip-random-init", "source": None, "pretrained": None}
    ident: dict[str, Any] = {"format": "open_clip-tag", "source": f"{name}:{pretrained}", "pretrained": pretrained}
    cached = _cached_tag_file(open_clip.get_pretrained_cfg(name, pretrained) or {}, cache_dir)
    if cached is not None:
        ident["weights_sha256"] = file_sha256(cached)
    return ident


def _hub_host(cfg: dict[str, Any]) -> Optional[str]:
    from urllib.parse import urlparse

    if cfg.get("hf_hub"):
        return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    return urlparse(cfg.get("url") or "").hostname


@contextlib.contextmanager
def _tag_download(name: str, pretrained: str, cache_dir: Optional[str]) -> Iterator[None]:
    """Fetching an open_clip tag's weights: a failure is one line, not a minute of retries and a traceback.

    NOTE: offline, huggingface_hub retries five times per file (about 23 s each, every retry logged twice);
    weights that are not cached and a host that does not resolve fail at once, and the hub's retry warnings
    are silenced while it tries (issue 20).
    """
    cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    host = _hub_host(cfg) if cfg else None
    advice = ("run it once with network access (the weights are then cached), or pass a local weights file "
              "(see `tripletclip models list`)")
    if host and _cached_tag_file(cfg, cache_dir) is None:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            raise UnavailableError(f"pretrained '{pretrained}' of {name}: the weights are not in the local cache and "
                                   f"{host} cannot be reached (no network?); {advice}") from None
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    except RuntimeError as e:
        if not str(e).startswith("Failed to download"):
            raise
        raise UnavailableError(f"pretrained '{pretrained}' of {name}: the download failed "
                               f"({str(e).splitlines()[0][:160]}); {advice}") from None
    finally:
        hub_log.setLevel(level)


def _cached_tag_file(cfg: dict[str, Any], cache_dir: Optional[str]) -> Optional[Path]:
    """Where open_clip cached a tag's weights (hf hub cache or ~/.cache/clip), without touching the network."""
    candidates: list[Path] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, _, filename = cfg["hf_hub"].rpartition("/")
        filename = filename or "open_clip_pytorch_model.bin"
        # open_clip prefers a safetensors twin when the repo has one
        safe = "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin" else Path(filename).with_suffix(".safetensors").name
        for fname in (safe, filename):
            hit = try_to_load_from_cache(repo, fname, cache_dir=cache_dir)
            if isinstance(hit, str):
                candidates.append(Path(hit))
    if cfg.get("url"):
        candidates.append(Path(cache_dir or Path.home() / ".cache" / "clip") / Path(cfg["url"]).name)
    return next((c for c in candidates if c.is_file()), None)


def _check_checkpoint_arch(src: WeightsSource, name: str, force_quick_gelu: bool) -> None:
    """A tripletclip checkpoint names its architecture: refuse a GELU / QuickGELU swap (same weights, other network)."""
    mcfg = src.meta.get("config", {}).get("model", {})
    trained = mcfg.get("name")
    if not trained or trained.startswith("hf:"):
        return
    theirs, ours = quick_gelu_of(trained, mcfg.get("force_quick_gelu", False)), quick_gelu_of(name, force_quick_gelu)
    if theirs is not None and ours is not None and theirs != ours:
        raise WeightsError(
            f"{src.file.parent}: trained as {trained} ({'QuickGELU' if theirs else 'GELU'}) but model {name} uses "
            f"{'QuickGELU' if ours else 'GELU'}: that is a different network; use model {trained}"
        )


def check_model_name(name: str, pretrained: str = "") -> None:
    """Raise InputError unless ``name`` is a known model (or a hub id) and ``pretrained`` a file or one of its tags."""
    _ensure_registered()
    if name.startswith("hf:"):
        from tripletclip.models.hf import resolve_source

        resolve_source(name[3:])  # the folder (or cached hub id) must exist; its content is checked on loading
        if pretrained and not Path(pretrained).exists():
            raise InputError(f"pretrained '{pretrained}': {name} takes its weights from its folder; --pretrained may "
                             f"only name a tripletclip run or checkpoint folder fine-tuned from it")
        return
    if name.startswith(("hf-hub:", "local-dir:")):
        return
    if name not in open_clip.list_models():
        raise InputError(
            f"unknown model '{name}'; run `tripletclip models list` for the names, or use hf:/hf-hub:/local-dir: ids"
        )
    if pretrained and not Path(pretrained).exists():
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise InputError(
                f"pretrained '{pretrained}' is neither a local file nor a tag of {name} (tags: {tags or 'none'}), "
                f"nor a run or checkpoint folder"
            )


def create_model(
    name: str,
    pretrained: str = "",
    device: str | torch.device = "cpu",
    force_quick_gelu: bool = False,
    image_size: Optional[int] = None,
    aug_cfg: Optional[dict[str, Any]] = None,
    cache_dir: Optional[str] = None,
) -> ModelBundle:
    """Build a CLIP model (random init when ``pretrained`` is empty) with transforms, tokenizer and identity.

    ``name`` is an open_clip model name (ours included), an ``hf-hub:`` / ``local-dir:`` open_clip id (open_clip
    reads config and weights from there), or ``hf:PATH_OR_ID`` for a transformers CLIP folder (models/hf.py).
    ``pretrained`` is an open_clip tag (e.g. ``openai``), a weights file (state dict or open_clip training
    checkpoint), a tripletclip run / checkpoint folder, an open_clip export folder, or empty.
    OpenAI weights need QuickGELU: pass ``ViT-B-32-quickgelu`` or ``force_quick_gelu`` (docs/methods.md section 5).
    """
    check_model_name(name, pretrained)
    if aug_cfg and (aug_cfg.get("hflip") or aug_cfg.get("horizontal_flip")):
        raise InputError("model.aug: hflip is refused: flips swap left and right in spatial captions")
    if name.startswith("hf:"):
        from tripletclip.models.hf import create_hf_model

        if force_quick_gelu:
            raise InputError(f"{name}: force_quick_gelu does not apply: a transformers folder's config sets its activation")
        return create_hf_model(name[3:], pretrained, device=device, image_size=image_size, aug_cfg=aug_cfg,
                               cache_dir=cache_dir)
    is_hub = name.startswith(("hf-hub:", "local-dir:"))
    local: Optional[WeightsSource] = None
    activation: dict[str, Any] = {}
    local_identity: dict[str, Any] = {}
    if pretrained and not is_hub and Path(pretrained).exists():
        local = locate_weights(pretrained)
        if local.format == "tripletclip-checkpoint":
            _check_checkpoint_arch(local, name, force_quick_gelu)
        # QuickGELU vs GELU from the weights' provenance, before building the model (models/activation.py)
        local_identity = local.identity()
        activation = check_activation(local, name, force_quick_gelu, local_identity.get("weights_sha256"))
    elif not is_hub:
        activation = tag_activation(name, pretrained, force_quick_gelu)
    kwargs: dict[str, Any] = {}
    if aug_cfg:
        # open_clip's train transform never flips (it sets hflip=0 itself); the other fields pass through
        kwargs["aug_cfg"] = {k: v for k, v in aug_cfg.items() if k not in ("hflip", "horizontal_flip")}
    download = _tag_download(name, pretrained, cache_dir) if pretrained and not local and not is_hub else contextlib.nullcontext()
    with _quiet_random_init(), download:
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            name,
            pretrained=None if local else (pretrained or None),
            device=device,
            force_quick_gelu=force_quick_gelu,
            force_image_size=image_size,
            cache_dir=cache_dir,
            **kwargs,
        )
    tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir) if is_hub else open_clip.get_tokenizer(name)
    context_length = int(getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77))
    qg = quick_gelu_of(name, force_quick_gelu)
    identity: dict[str, Any] = {"name": name, "quick_gelu": bool(force_quick_gelu or "quickgelu" in name) if qg is None else qg}
    if local is not None:
        unwrapped = load_open_clip_weights(model, local, name)
        identity.update(local_identity, pretrained=str(Path(pretrained).resolve()))
        if unwrapped:
            identity["unwrapped"] = unwrapped
    elif is_hub:
        identity.update(format="open_clip-hub", source=name)
    else:
        identity.update(_tag_identity(name, pretrained, cache_dir))
    if activation:
        identity["activation"] = activation
    return ModelBundle(model, preprocess_train, preprocess_val, tokenizer, context_length, identity)


def apply_locks(
    model: torch.nn.Module,
    lock_image: bool,
    image_unlocked_groups: int = 0,
    lock_text: bool = False,
    text_unlocked_layers: int = 0,
    model_name: str = "",
) -> None:
    """Freeze towers as in LiT / TripletCLIP Table 8 (open_clip's lock_* methods; groups as open_clip counts them).

    A setting that cannot do what it says is an :class:`InputError` naming the key: a tower that cannot be split
    into groups, or so many unlocked groups that nothing is frozen (the run would silently train everything).
    """
    what = f" of {model_name}" if model_name else ""
    for on, key, n, lock in (
        (lock_image, "model.lock_image_unlocked_groups", image_unlocked_groups,
         lambda: model.lock_image_tower(unlocked_groups=image_unlocked_groups, freeze_bn_stats=True)),
        (lock_text, "model.lock_text_unlocked_layers", text_unlocked_layers,
         lambda: model.lock_text_tower(unlocked_layers=text_unlocked_layers, freeze_layer_norm=True)),
    ):
        if not on:
            continue
        before = {name for name, p in model.named_parameters() if p.requires_grad}
        tower = "image" if key.endswith("groups") else "text"
        try:
            with warnings.catch_warnings():  # open_clip imports a deprecated timm path for grouped locks
                warnings.simplefilter("ignore", FutureWarning)
                lock()
        except (AttributeError, NotImplementedError, AssertionError, ValueError, RuntimeError) as e:
            if not n:
                raise  # locking a whole tower never needs groups: a failure here is a bug
            raise InputError(f"{key}={n}: the {tower} tower{what} cannot be split into groups "
                             f"({type(e).__name__}: {e}); lock the whole tower ({key}=0)") from None
        # NOTE: open_clip turns BatchNorms of a timm trunk into frozen ones (their parameters become buffers), and
        # all of them when no group is locked; only parameters that stay parameters show what really froze
        after = dict(model.named_parameters())
        if not any(name in after and not after[name].requires_grad for name in before):
            raise InputError(f"{key}={n}: keeps every group of the {tower} tower{what} trainable, so nothing is "
                             f"locked; use a smaller value, or model.lock_{tower}=false")


def save_random_weights(name: str, out: str | Path, seed: int = 0) -> Path:
    """Random weights of ``name`` saved as a state dict open_clip's ``pretrained=<path>`` loads.

    This is how tests and offline users exercise the real pretrained-loading path without a download.
    """
    torch.manual_seed(seed)
    bundle = create_model(name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in bundle.model.state_dict().items()}
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    return out
