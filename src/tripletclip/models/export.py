"""``tripletclip export RUN --format open_clip|hf --out DIR``: a trained model for the tools people already use.

- ``open_clip``: ``open_clip_model.safetensors`` (the state dict ``open_clip.create_model_and_transforms(NAME,
  pretrained=FILE)`` loads unchanged), ``NAME.json`` (the model config, for ``open_clip.add_model_config`` when
  NAME is one of our own configs) and ``open_clip_config.json``, so that ``local-dir:DIR`` and a Hugging Face
  upload work as open_clip's ``hf-hub:`` format;
- ``hf``: a transformers ``CLIPModel`` folder (config, safetensors, tokenizer and image processor files) that
  ``transformers.CLIPModel.from_pretrained(DIR)`` / ``CLIPProcessor.from_pretrained(DIR)`` load offline.
Each export is read back with the target library and its features compared with ours on a fixed batch; the
largest difference is recorded in ``tripletclip_export.json`` with the source checkpoint's identity.
"""
from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from tripletclip.models.hf import HFClip, HFImageTransform, HFTokenizer
from tripletclip.models.hf_convert import ExportError, hf_config_for, hf_to_open_clip, open_clip_config_for, open_clip_to_hf
from tripletclip.models.run_model import load_run_model
from tripletclip.train.checkpoint import hold_checkpoint
from tripletclip.utils.files import sha256_file
from tripletclip.utils.ownership import EXPORT, check_separate, claim_output

FORMATS = ("open_clip", "hf")
MANIFEST = "tripletclip_export.json"
# features of the export must match ours to float rounding
TOLERANCE = 1e-4
_CHECK_TEXTS = ["a photo of a red cube left of a blue ball", "two dogs playing in the snow"]


def clip_processor(image_size: int, context_length: int, mean: tuple, std: tuple, interpolation: str = "bicubic") -> Any:
    """A transformers ``CLIPProcessor`` equal to open_clip's CLIP tokenizer (same BPE, same ids) and val transform."""
    import gzip

    import transformers
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    if interpolation not in ("bicubic", "bilinear"):
        raise ExportError(f"image interpolation '{interpolation}' has no transformers CLIPImageProcessor form")
    # open_clip's vocabulary, built the way its SimpleTokenizer builds it: bytes, bytes + </w>, merges, specials
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "do_lower_case": True,
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>"}))
        tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp)
    image = transformers.CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        resample=3 if interpolation == "bicubic" else 2, image_mean=list(mean), image_std=list(std))
    return transformers.CLIPProcessor(image_processor=image, tokenizer=tokenizer)


def _max_diff(ours: Callable, theirs: Callable, inputs: Any) -> float:
    with torch.no_grad():
        return float((ours(inputs) - theirs(inputs)).abs().max())


def _verify(bundle: Any, image: Callable, text: Callable, what: str) -> dict[str, float]:
    """Largest feature difference between our model and the re-loaded export on a fixed batch."""
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, bundle.image_size, bundle.image_size, generator=gen)
    tokens = bundle.tokenizer(_CHECK_TEXTS)
    model = bundle.model.eval()
    diffs = {"image": _max_diff(model.encode_image, image, pixels), "text": _max_diff(model.encode_text, text, tokens)}
    if max(diffs.values()) > TOLERANCE:
        raise RuntimeError(f"{what}: exported model differs from the checkpoint by {diffs} (> {TOLERANCE})")
    return diffs


def _features(out: Any) -> torch.Tensor:
    """transformers < 5 returns the features, >= 5 a model output holding them in ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers draws progress bars for saving and loading even tiny models: not our user's concern."""
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tf_logging.enable_progress_bar()


def _export_hf(bundle: Any, out: Path, what: str) -> dict[str, float]:
    import transformers

    model = bundle.model
    if isinstance(model, HFClip):
        clip = model.clip
    else:
        config = hf_config_for(model, what)
        clip = transformers.CLIPModel(config)
        clip.load_state_dict(open_clip_to_hf(model.state_dict(), config.vision_config.num_hidden_layers,
                                             config.text_config.num_hidden_layers), strict=True)
    clip.save_pretrained(str(out))
    _processor_for(bundle, what).save_pretrained(str(out))
    back = transformers.CLIPModel.from_pretrained(str(out), local_files_only=True).eval()
    return _verify(bundle, lambda x: _features(back.get_image_features(pixel_values=x)),
                   lambda t: _features(back.get_text_features(input_ids=t)), what)


def _processor_for(bundle: Any, what: str) -> Any:
    """The folder's own processor parts when the model came with them, else open_clip's equivalents."""
    import open_clip
    import transformers

    pcfg = getattr(getattr(bundle.model, "visual", None), "preprocess_cfg", None) or {}
    if pcfg.get("resize_mode", "shortest") != "shortest":
        raise ExportError(f"{what}: image resize mode '{pcfg['resize_mode']}' has no CLIPImageProcessor form")
    tok, tf = bundle.tokenizer, bundle.preprocess_val
    if not isinstance(tok, HFTokenizer) and not (isinstance(tok, open_clip.SimpleTokenizer) and len(tok.encoder) == 49408):
        raise ExportError(f"{what}: its tokenizer ({type(tok).__name__}) is not CLIP's BPE, which CLIPProcessor expects")
    made = clip_processor(bundle.image_size, bundle.context_length,
                          tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                          tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD)), pcfg.get("interpolation", "bicubic"))
    return transformers.CLIPProcessor(
        image_processor=tf.processor if isinstance(tf, HFImageTransform) else made.image_processor,
        tokenizer=tok.tokenizer if isinstance(tok, HFTokenizer) else made.tokenizer)


def _export_open_clip(bundle: Any, out: Path, name: str, what: str) -> dict[str, float]:
    import open_clip
    from safetensors.torch import save_file

    model = bundle.model
    if isinstance(model, HFClip):
        cfg = open_clip_config_for(model.clip.config)
        state = hf_to_open_clip(model.clip.state_dict(), cfg["vision_cfg"]["layers"], cfg["text_cfg"]["layers"])
        preprocess: dict[str, Any] = {}
    else:
        cfg = dict(open_clip.get_model_config(bundle.identity["name"]) or {})
        if not cfg:
            raise ExportError(f"{what}: model {bundle.identity['name']} has no open_clip config to write")
        if bundle.identity.get("quick_gelu"):
            cfg["quick_gelu"] = True
        state = model.state_dict()
        preprocess = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out / "open_clip_model.safetensors"))
    (out / f"{name}.json").write_text(json.dumps(cfg, indent=1) + "\n")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=1) + "\n")
    back = open_clip.create_model(f"local-dir:{out}").eval()
    return _verify(bundle, back.encode_image, back.encode_text, what)


def _listed(out: Path) -> list[str]:
    """The files an earlier export in ``out`` wrote, as its manifest lists them."""
    try:
        return list(json.loads((out / MANIFEST).read_text()).get("files", {}))
    except (OSError, ValueError, AttributeError):
        return []


def export_model(run: str | Path, fmt: str, out: str | Path, overwrite: bool = False,
                 interpolate: float | None = None, base: str = "") -> dict[str, Any]:
    """Write the model of a tripletclip run / checkpoint folder to ``out`` in ``fmt``; returns the manifest."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    check_separate(out, [run], in_option="RUN")
    # only a new folder or an earlier export: --overwrite removes the files that export listed, nothing else
    if claim_output(out, EXPORT, overwrite, listed=_listed(out)) and not overwrite:
        raise ExportError(f"{out} already holds an export; choose a new folder or pass --overwrite")
    try:
        # held: a run that is still training does not prune the checkpoint while it is read
        with hold_checkpoint(run) as ckpt:
            bundle = load_run_model(ckpt)
    except FileNotFoundError as e:  # removed by hand or by a process that does not honour holds
        raise ExportError(f"{run}: the checkpoint went away while it was read ({e.filename or e}); run the "
                          "export again") from None
    if interpolate is not None:  # WiSE-FT toward the base (models/interpolate.py)
        from tripletclip.models.interpolate import interpolate_bundle

        bundle = interpolate_bundle(bundle, base, interpolate)
    what = f"{run} ({bundle.identity['name']})"
    if fmt == "hf":
        with _quiet_transformers():
            check = _export_hf(bundle, out, what)
    else:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", bundle.identity["name"].removeprefix("hf:")).strip("-")
        check = _export_open_clip(bundle, out, name if not isinstance(bundle.model, HFClip) else f"tripletclip-{name}", what)
    manifest = {"format": fmt, "source": bundle.identity, "max_feature_diff": check,
                "files": {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file() and p.name != MANIFEST
                                                           and not p.name.startswith(".")}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest
