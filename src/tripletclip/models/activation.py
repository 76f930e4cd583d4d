"""Which activation (QuickGELU or GELU) a set of weights was trained with, checked against the model built for it.

OpenAI's CLIP weights, and open_clip's early LAION / YFCC / CC12M releases, were trained with QuickGELU
(x * sigmoid(1.702 x)); open_clip's ``ViT-B-32`` config uses exact GELU and ``ViT-B-32-quickgelu`` QuickGELU.
Loading such weights under the GELU name loads without a single missing key and scores a different network
(published numbers move by points: vision-language-models-are-bows issue 35; docs/methods.md section 5).
The provenance of a weights file, strongest evidence first:
- a tripletclip checkpoint's meta.json names the architecture it was trained as;
- a TorchScript archive is OpenAI's original release format (always QuickGELU);
- the file's sha256 matches an open_clip pretrained tag's download (OpenAI URLs carry the full sha256,
  open_clip's own releases its first 8 hex digits) or its path is the Hugging Face cache of a tag's repository;
- a state dict with ``input_resolution`` / ``context_length`` / ``vocab_size`` entries was saved from OpenAI's
  ``clip`` package (open_clip drops them when it converts), hence QuickGELU;
- weak: the file name is a known tag's download name, or says ``quickgelu``.
A mismatch on strong evidence is refused with the fix; on weak evidence it is warned about. Either way the
result (model's activation, the weights', the evidence) is recorded in the model identity of every result file.
"""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

OPENAI_KEYS = ("input_resolution", "context_length", "vocab_size")
_SHA = re.compile(r"/([0-9a-f]{64})/")
_PREFIX = re.compile(r"-([0-9a-f]{8})\.(?:pt|pth|bin|safetensors)$")


@dataclass(frozen=True)
class Provenance:
    """What the weights were trained with: QuickGELU (True), GELU (False) or unknown (None), and why."""

    quick_gelu: Optional[bool]
    evidence: str
    strong: bool = False


def name(qg: Optional[bool]) -> str:
    return "unknown" if qg is None else ("QuickGELU" if qg else "GELU")


@functools.lru_cache(maxsize=1)
def tag_index() -> dict[str, Any]:
    """``{"sha": {sha256: tag}, "prefix": {8 hex: tag}, "file": {file name: tag}, "hf": {cache dir: tag}}`` of
    every open_clip pretrained tag, a tag being ``(model, tag, quick_gelu)``; from open_clip's metadata only."""
    import open_clip

    index: dict[str, dict[str, tuple[str, str, bool]]] = {"sha": {}, "prefix": {}, "file": {}, "hf": {}}
    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag) or {}
        entry = (model, tag, bool(cfg.get("quick_gelu", False)))
        url = cfg.get("url") or ""
        if url:
            fname = url.rsplit("/", 1)[-1]
            index["file"].setdefault(fname, entry)
            if m := _SHA.search(url):
                index["sha"].setdefault(m.group(1), entry)
            if m := _PREFIX.search(fname):
                index["prefix"].setdefault(m.group(1), entry)
        if cfg.get("hf_hub"):
            repo = cfg["hf_hub"].strip("/").split("/")
            index["hf"].setdefault("models--" + "--".join(repo[:2]), entry)
    return index


def _state_keys(path: Path) -> Optional[set[str]]:
    """The tensor names of a weights file without reading the tensors (None when it cannot be read cheaply)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return set(f.keys())
        import torch

        from tripletclip.models.weights import unwrap_state_dict

        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return set(unwrap_state_dict(obj, path)[0])
    except Exception:  # noqa: BLE001  (unreadable here: the loader itself reports why, with its own message)
        return None


def provenance(src: Any, sha256: Optional[str] = None) -> Provenance:
    """The activation the weights of ``src`` (a :class:`~tripletclip.models.weights.WeightsSource`) were trained with."""
    from tripletclip.models.weights import _is_torchscript, quick_gelu_of

    path = Path(src.file)
    mcfg = (src.meta.get("config") or {}).get("model") or {}
    if src.format == "tripletclip-checkpoint" and mcfg.get("name") and not str(mcfg["name"]).startswith("hf:"):
        qg = quick_gelu_of(mcfg["name"], bool(mcfg.get("force_quick_gelu", False)))
        return Provenance(qg, f"checkpoint meta.json: trained as {mcfg['name']}", qg is not None)
    if _is_torchscript(path):
        return Provenance(True, "TorchScript archive: OpenAI's original release format", True)
    index = tag_index()
    sha = sha256 or ""
    for kind, key in (("sha", sha), ("prefix", sha[:8])):
        if key and key in index[kind]:
            model, tag, qg = index[kind][key]
            return Provenance(qg, f"sha256 matches the download of open_clip tag {model}:{tag}", True)
    for part in path.resolve().parts:
        if part in index["hf"]:
            model, tag, qg = index["hf"][part]
            return Provenance(qg, f"Hugging Face cache of open_clip tag {model}:{tag}", True)
    keys = _state_keys(path)
    if keys is not None and all(k in keys for k in OPENAI_KEYS):
        return Provenance(True, "state dict in OpenAI's layout (input_resolution, context_length, vocab_size entries)", True)
    if path.name in index["file"]:
        model, tag, qg = index["file"][path.name]
        return Provenance(qg, f"file name of open_clip tag {model}:{tag} (content not matched)")
    if "quickgelu" in path.name.lower():
        return Provenance(True, "file name says quickgelu")
    return Provenance(None, "no provenance found (a plain state dict)")


def check_activation(src: Any, model_name: str, force_quick_gelu: bool, sha256: Optional[str] = None) -> dict[str, Any]:
    """Refuse (strong evidence) or warn about (weak evidence) weights loaded under the other activation; returns
    the record stored under ``identity["activation"]``."""
    from tripletclip.models.weights import WeightsError, quick_gelu_of

    ours = quick_gelu_of(model_name, force_quick_gelu)
    prov = provenance(src, sha256)
    record = {"model_uses": name(ours), "weights_trained_with": name(prov.quick_gelu), "evidence": prov.evidence}
    if ours is None or prov.quick_gelu is None:
        return {**record, "status": "unchecked"}
    if ours == prov.quick_gelu:
        return {**record, "status": "match"}
    fix = ("use the model name with -quickgelu (e.g. ViT-B-32-quickgelu) or --force-quick-gelu" if prov.quick_gelu
           else "use the model name without -quickgelu and without --force-quick-gelu")
    msg = (f"{src.file}: weights trained with {name(prov.quick_gelu)} ({prov.evidence}) but model {model_name} "
           f"uses {name(ours)}: that scores a different network; {fix}")
    if prov.strong:
        raise WeightsError(msg)
    warnings.warn(msg, stacklevel=3)
    return {**record, "status": "mismatch (warned: weak evidence)"}


def tag_activation(model_name: str, pretrained: str, force_quick_gelu: bool) -> dict[str, Any]:
    """The record for an open_clip tag (or random init); the tag check itself is ``eval.api.check_quick_gelu``."""
    import open_clip

    from tripletclip.models.weights import quick_gelu_of

    ours = quick_gelu_of(model_name, force_quick_gelu)
    if not pretrained:
        return {"model_uses": name(ours), "weights_trained_with": "random init", "status": "unchecked"}
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    theirs = bool(cfg.get("quick_gelu", False)) if cfg else None
    status = "unchecked" if theirs is None or ours is None else ("match" if theirs == ours else "mismatch")
    return {"model_uses": name(ours), "weights_trained_with": name(theirs),
            "evidence": f"open_clip tag {model_name}:{pretrained}", "status": status}
