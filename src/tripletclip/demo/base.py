"""The CLIP base of the fine-tuning regime: pretrained once on the world, cached, fine-tuned by every objective.

NegCLIP (arXiv 2210.01936), CE-CLIP (arXiv 2306.08832) and TripletCLIP's Table 7 (arXiv 2411.02545) start from
OpenAI's CLIP, a model that perceives objects and attributes but binds them poorly. On the embedded world the
same starting point is made by plain CLIP pretraining on fresh scenes of the world (no negatives): its training
data are scenes drawn with a seed of their own, never the fine-tuning set or the benchmark.

``tripletclip world pretrain`` (and the demo, when the base is missing) trains it deterministically and stores
``model.safetensors`` + ``base.json`` under the user cache directory, keyed by the world spec, world seed,
pretraining config and code version (:func:`base_key`), so that every demo run with the same key reuses it.

The base of the default demo is also shipped in the package (``demo/bases/<key>.safetensors``, about 1 MB): the
world's captions use a few dozen of the tokenizer's 49,408 tokens, so only those rows of the token embedding
are stored (:func:`compact_state`); the others are zeros when it is expanded into the cache. Every world caption
is encoded exactly as by the pretrained model (a test checks the kept rows cover the world's vocabulary).
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
from tripletclip.config.schema import RunConfig
from tripletclip.demo.config import DemoConfig

BASE_FILE = "model.safetensors"
TOKEN_KEY = "token_embedding.weight"
KEPT_KEY = "tripletclip.kept_token_ids"


def shipped_dir() -> Path:
    return Path(__file__).resolve().parent / "bases"


def world_token_ids(tokenizer: Callable[[list[str]], Any]) -> list[int]:
    """Every token id a world caption can contain (all words and phrases of the grammar, punctuation, SOT/EOT)."""
    from tripletclip.world import vocab

    words: set[str] = {",", "and", "is", "which", "there", "a", "an"}
    for group in (vocab.SHAPES, vocab.COLOURS, vocab.TEXTURES, vocab.SIZES, vocab.PREFIXES):
        words.update(group)
    for table in (vocab.SIZE_WORDS, vocab.TEXTURE_ADJECTIVES, vocab.TEXTURE_WITH, vocab.BACKGROUND_PHRASES,
                  vocab.RELATION_PHRASES):
        for phrases in table.values():
            words.update(phrases)
    ids = tokenizer(sorted(w for w in words if w.strip()))
    return sorted({int(i) for i in ids.flatten().tolist()})


def compact_state(state: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """``state`` with only the ``keep`` rows of the token embedding (and their ids)."""
    import torch

    out = {k: v for k, v in state.items() if k != TOKEN_KEY}
    idx = torch.tensor(keep, dtype=torch.long)
    out[TOKEN_KEY] = state[TOKEN_KEY].index_select(0, idx).contiguous()
    out[KEPT_KEY] = idx
    return out


def expand_state(compact: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """Inverse of :func:`compact_state`: the full token embedding, zeros outside the kept rows."""
    import torch

    out = {k: v for k, v in compact.items() if k not in (TOKEN_KEY, KEPT_KEY)}
    rows = compact[TOKEN_KEY]
    full = torch.zeros(vocab_size, rows.shape[1], dtype=rows.dtype)
    full[compact[KEPT_KEY]] = rows
    out[TOKEN_KEY] = full
    return out


def install_shipped(identity: dict[str, Any]) -> Optional[Path]:
    """Expand the shipped base of this key into the cache (its folder), or None when none is shipped."""
    from safetensors.torch import load_file, save_file

    from tripletclip.utils.files import sha256_file

    key = base_key(identity)
    found = shipped_for(identity)
    if found is None:
        return None
    src, meta = found
    state = expand_state(load_file(str(src)), int(meta["vocab_size"]))
    folder = cache_root() / "world-base" / key
    tmp = folder.with_name(f".{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state, str(tmp / BASE_FILE))
    meta = {**meta, "key": key, "identity": identity, "shipped_key": src.stem,
            "weights_sha256": sha256_file(tmp / BASE_FILE), "installed_from": str(src)}
    (tmp / "base.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def shipped_for(identity: dict[str, Any]) -> Optional[tuple[Path, dict[str, Any]]]:
    """The shipped base whose recorded training config resolves, today, to ``identity`` (file and metadata).

    NOTE: matched by recomputing the identity from the full config recorded when the base was trained, not by the
    file name: a schema field added since (absent from that record) takes its default, so adding a field keeps
    the shipped base, while a changed default differs from the recorded value and never reuses a wrong base.
    """
    from tripletclip.config import config_from_dict

    key = base_key(identity)
    candidates = sorted(shipped_dir().glob("*.json"), key=lambda p: p.stem != key)  # the named one first
    for meta_path in candidates:
        src = meta_path.with_suffix(".safetensors")
        if not src.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        if meta_path.stem == key and meta.get("key") == key:  # shipped under this very identity
            return src, meta
        recorded = meta.get("identity", {})
        try:
            again = {**recorded, "pretrain": pretrain_identity(config_from_dict(meta["config"]))}
        except Exception:  # a record this code cannot read is not this base
            continue
        if base_key(again) == key:
            return src, meta
    return None


def ship_base(folder: Path, out_dir: Optional[Path] = None) -> Path:
    """Write the compact copy of a cached base into the package's ``bases/`` (maintainers: after a pretrain)."""
    from safetensors.torch import load_file, save_file

    from tripletclip.models import create_model

    meta = json.loads((folder / "base.json").read_text())
    bundle = create_model(meta["config"]["model"]["name"])
    state = load_file(str(folder / BASE_FILE))
    vocab_size = int(state[TOKEN_KEY].shape[0])
    out_dir = out_dir or shipped_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(compact_state(state, world_token_ids(bundle.tokenizer)), str(out_dir / f"{meta['key']}.safetensors"))
    shipped = {k: v for k, v in meta.items() if k != "weights_sha256"}
    shipped.update(vocab_size=vocab_size, pretrained_weights_sha256=meta["weights_sha256"])
    (out_dir / f"{meta['key']}.json").write_text(json.dumps(shipped, indent=1, default=str) + "\n")
    return out_dir / f"{meta['key']}.safetensors"


def cache_root() -> Path:
    """``$TRIPLETCLIP_CACHE``, else ``$XDG_CACHE_HOME/tripletclip``, else ``~/.cache/tripletclip``."""
    if os.environ.get("TRIPLETCLIP_CACHE"):
        return Path(os.environ["TRIPLETCLIP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tripletclip"


# resolved base-config keys that never change the base's weights (where it is written, how it logs, what a
# plain-CLIP pretraining ignores): left out of the identity, so that only what shapes the base keys the cache.
# NOTE: train.threads is not among them: 1 and 2 threads give different weights (float sums in another order;
# session 9). data.workers enters as the loader's logical worker count (0 and 1 read the same order, and give
# bitwise the same weights; 2 workers split the data differently).
NOT_WEIGHTS = {
    "data": ("train", "max_neg_text", "max_neg_image", "validate_first", "prefetch_factor", "max_bad_fraction",
             "cache_decoded_mb"),
    "model": ("grad_checkpointing",),
    "train": ("log_every", "save_every", "keep_checkpoints", "eval_every", "output_dir", "name", "tensorboard",
              "wandb", "wandb_project", "progress", "log_lines", "keep_host_memory"),
    "eval": "*", "notes": "*",
}


def pretrain_identity(base: RunConfig) -> dict[str, Any]:
    """What of the typed, resolved base config shapes its weights (every key not in :data:`NOT_WEIGHTS`).

    Computed from the typed config, defaults filled in: an explicit default and an absent key are the same base.
    A new schema field enters the identity by default (a needless pretraining, never a wrong reuse).
    """
    from tripletclip.config import config_to_dict

    out: dict[str, Any] = {}
    for section, values in config_to_dict(base).items():
        skip = NOT_WEIGHTS.get(section, ())
        if skip == "*":
            continue
        out[section] = {k: v for k, v in values.items() if k not in skip} if isinstance(values, dict) else values
    out["data"]["workers"] = max(1, int(out["data"]["workers"]))  # logical workers: 0 loads in process as 1 worker
    if not out.get("optim", {}).get("lr_mult"):  # absent when unset: bases cached before the option keep their keys
        out.get("optim", {}).pop("lr_mult", None)
    return out


def base_identity(cfg: DemoConfig, spec_json: dict[str, Any], image_size: int) -> dict[str, Any]:
    """Everything that determines the base's weights (the cache key is its hash)."""
    from tripletclip.world import WORLD_VERSION

    identity = {"spec": spec_json, "world_seed": cfg.world_seed, "image_size": image_size,
                "pretrain": pretrain_identity(cfg.base_config()), "world_version": WORLD_VERSION,
                "code_version": tripletclip.__version__}
    if cfg.base_mirror_pairs:  # absent when off: the keys of bases pretrained before the option stay valid
        identity["mirror_pairs"] = cfg.base_mirror_pairs
    return identity


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

    ``build(out, n_train, seed, mirror_pairs)`` writes the pretraining shards (the demo passes its world builder, which
    renders in a separate process).
    """
    from tripletclip.config import config_from_dict, config_to_dict
    from tripletclip.config.load import deep_merge
    from tripletclip.train import train
    from tripletclip.utils.files import sha256_file
    from tripletclip.world import train_shards

    key = base_key(identity)
    raw = config_to_dict(cfg.base_config())  # typed: defaults filled in, as in the identity
    steps, batch = int(raw["train"]["steps"]), int(raw["train"]["batch_size"])
    data_dir, run_root = work / "base-world", work / "base-run"
    t0 = time.perf_counter()
    # NOTE: a seed of its own: the base never sees the fine-tuning scenes or the benchmark's
    build(data_dir, steps * batch, 10_000 + cfg.world_seed, float(identity.get("mirror_pairs", 0.0)))
    world_s = time.perf_counter() - t0
    run = config_from_dict(deep_merge(raw, {
        "data": {"train": train_shards(data_dir)},
        "train": {"output_dir": str(run_root), "name": f"base-{key}", "progress": progress,
                  "save_every": 0, "keep_checkpoints": 1}}), where="demo base")
    # what trains is what the key says (only keys outside the identity were set above)
    assert pretrain_identity(run) == identity["pretrain"], "base pretraining config differs from its identity"
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
