"""The CLIP base of the fine-tuning regime: pretrained once on the world, cached, fine-tuned by every objective.

NegCLIP (arXiv 2210.01936), CE-CLIP (arXiv 2306.08832) and TripletCLIP's Table 7 (arXiv 2411.02545) start from
OpenAI's CLIP, a model that perceives objects and attributes but binds them poorly. On the embedded world the
same starting point is made by plain CLIP pretraining on fresh scenes of the world (no negatives): its training
data are scenes drawn with a seed of their own, never the fine-tuning set or the benchmark.

``tripletclip world pretrain`` (and the demo, when the base is missing) trains it deterministically and stores
``model.safetensors`` + ``base.json`` under the user cache directory, keyed by the world spec, world seed,
pretraining config and code version (:func:`base_key`), so that every demo run with the same key reuses it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import tripletclip
from tripletclip.demo.config import DemoConfig

BASE_FILE = "model.safetensors"


def cache_root() -> Path:
    """``$TRIPLETCLIP_CACHE``, else ``$XDG_CACHE_HOME/tripletclip``, else ``~/.cache/tripletclip``."""
    if os.environ.get("TRIPLETCLIP_CACHE"):
        return Path(os.environ["TRIPLETCLIP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tripletclip"


def base_identity(cfg: DemoConfig, spec_json: dict[str, Any], image_size: int) -> dict[str, Any]:
    """Everything that determines the base's weights (the cache key is its hash)."""
    from tripletclip.world import WORLD_VERSION

    return {"spec": spec_json, "world_seed": cfg.world_seed, "image_size": image_size, "pretrain": cfg.base_dict(),
            "world_version": WORLD_VERSION, "code_version": tripletclip.__version__}


def base_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_base(identity: dict[str, Any]) -> Optional[Path]:
    """The cached base's folder if it exists and its weights match the recorded sha256."""
    from tripletclip.utils.files import sha256_file

    folder = cache_root() / "world-base" / base_key(identity)
    meta = folder / "base.json"
    if not (folder / BASE_FILE).is_file() or not meta.is_file():
        return None
    try:
        recorded = json.loads(meta.read_text())["weights_sha256"]
    except (ValueError, KeyError):
        return None
    return folder if sha256_file(folder / BASE_FILE) == recorded else None


def pretrain_base(cfg: DemoConfig, identity: dict[str, Any], work: Path, build: Callable[..., dict[str, Any]],
                  echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Pretrain the base (plain CLIP on ``steps x batch`` fresh scenes), store it in the cache; its folder.

    ``build(out, n_train, seed)`` writes the pretraining shards (the demo passes its world builder, which
    renders in a separate process).
    """
    from tripletclip.config import config_from_dict, config_to_dict
    from tripletclip.config.load import _deep_merge
    from tripletclip.train import train
    from tripletclip.utils.files import sha256_file
    from tripletclip.world import train_shards

    key = base_key(identity)
    raw = cfg.base_dict()
    steps, batch = int(raw["train"]["steps"]), int(raw["train"]["batch_size"])
    data_dir, run_root = work / "base-world", work / "base-run"
    t0 = time.perf_counter()
    # NOTE: a seed of its own: the base never sees the fine-tuning scenes or the benchmark's
    build(data_dir, steps * batch, 10_000 + cfg.world_seed)
    world_s = time.perf_counter() - t0
    run = config_from_dict(_deep_merge(raw, {
        "data": {"train": train_shards(data_dir), "use_neg_text": False, "use_neg_image": False},
        "train": {"output_dir": str(run_root), "name": f"base-{key}", "seed": 0, "progress": progress,
                  "save_every": 0, "keep_checkpoints": 1}}), where="demo base")
    echo(f"[demo] pretraining the CLIP base ({steps} steps x batch {batch}, key {key}); cached for later runs")
    import torch

    torch.set_num_threads(max(1, run.train.threads))
    t1 = time.perf_counter()
    result = train(run)
    train_s = time.perf_counter() - t1
    from tripletclip.models.run_model import resolve_checkpoint

    ckpt = resolve_checkpoint(result["run_dir"])
    folder = cache_root() / "world-base" / key
    tmp = folder.with_name(f".{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(ckpt / BASE_FILE, tmp / BASE_FILE)
    meta = {"key": key, "identity": identity, "config": config_to_dict(run), "weights_sha256": sha256_file(tmp / BASE_FILE),
            "world_build_s": world_s, "train_s": train_s, "final": result.get("final", {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "reproduce": f"tripletclip world pretrain --world-seed {cfg.world_seed} --force"}
    (tmp / "base.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    # the pretraining shards are large and fully described by their seed: not kept
    shutil.rmtree(data_dir, ignore_errors=True)
    return folder
