"""Let LAION's CLIP_benchmark evaluate every model tripletclip loads (its 40+ datasets, its own protocol code).

CLIP_benchmark loads models through ``clip_benchmark.models.TYPE2FUNC[model_type](model_name, pretrained,
cache_dir, device) -> (model, transform, tokenizer)``, with ``--model_type`` restricted to ``MODEL_TYPES``.
:func:`register` adds ``tripletclip`` to both, so its CLI accepts our model spellings unchanged:

    python -m tripletclip.eval.clip_benchmark_wrapper eval --model_type tripletclip \
        --model runs/my-run --pretrained "" --dataset cifar10 --dataset_root data/cifar10 --output r.json

``--model`` is what ``tripletclip eval --model`` takes: an open_clip name (``--pretrained`` a tag, a weights
file or a run folder), ``hf:PATH_OR_ID`` for transformers CLIP folders (incl. the released TripletCLIP
checkpoints), or directly a tripletclip run / checkpoint folder. The model is returned in eval mode with its
validation transform (no flips) and its own tokenizer. Through :func:`main`, every result file CLIP_benchmark
writes also carries the loaded model's identity (format, source, sha256 of the weights) under ``tripletclip_model``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.errors import UnavailableError, UserError

MODEL_TYPE = "tripletclip"
INSTALL = "pip install 'tripletclip[bench]'"  # pyproject's extra: clip-benchmark from PyPI
IDENTITY_KEY = "tripletclip_model"
# identity of each model loaded in this process, by CLIP_benchmark's (model, pretrained) strings
LOADED: dict[tuple[str, str], dict[str, Any]] = {}


def _is_checkpoint(name: str) -> bool:
    p = Path(name)
    return not name.startswith("hf:") and p.exists() and (p.is_dir() or p.name == "model.safetensors")


def load_tripletclip(
    model_name: str, pretrained: str = "", cache_dir: Optional[str] = None, device: Any = "cpu"
) -> tuple[Any, Callable, Callable]:
    """CLIP_benchmark's loader contract: (model, image transform, tokenizer)."""
    from tripletclip.models import create_model, load_run_model

    if _is_checkpoint(model_name):
        bundle = load_run_model(model_name, device=device)
    else:
        bundle = create_model(model_name, pretrained or "", device=device, cache_dir=cache_dir)
    bundle.model.eval()
    LOADED[(model_name, pretrained or "")] = dict(bundle.identity)
    return bundle.model, bundle.preprocess_val, bundle.tokenizer


def register(name: str = MODEL_TYPE) -> None:
    """Make ``--model_type <name>`` load tripletclip models in an imported CLIP_benchmark."""
    try:
        import clip_benchmark.models as cb_models
    except ImportError:
        raise UnavailableError(f"CLIP_benchmark is not installed: {INSTALL} (the 'bench' extra)") from None
    if not hasattr(cb_models, "TYPE2FUNC") or not hasattr(cb_models, "MODEL_TYPES"):
        raise UnavailableError(
            "this CLIP_benchmark has no TYPE2FUNC / MODEL_TYPES model registry (added in 1.4); "
            f"upgrade it: {INSTALL}"
        )
    cb_models.TYPE2FUNC[name] = load_tripletclip
    # cli.py holds the same list object as argparse choices, so appending makes the new type valid there too
    if name not in cb_models.MODEL_TYPES:
        cb_models.MODEL_TYPES.append(name)


class _JsonWithIdentity:
    """Stands in for the ``json`` module inside ``clip_benchmark.cli`` only: its result dumps gain our identity."""

    def __init__(self, json_module: Any) -> None:
        self._json = json_module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._json, attr)

    def dump(self, obj: Any, fp: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and "metrics" in obj:
            ident = LOADED.get((str(obj.get("model")), str(obj.get("pretrained") or "")))
            if ident is not None:
                obj = {**obj, IDENTITY_KEY: ident}
        self._json.dump(obj, fp, *args, **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLIP_benchmark's command line with ``--model_type tripletclip`` available."""
    register()
    import clip_benchmark.cli as cb_cli

    if not isinstance(cb_cli.json, _JsonWithIdentity):
        cb_cli.json = _JsonWithIdentity(cb_cli.json)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    return cb_cli.main() or 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:  # one line, as the tripletclip command prints it
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
