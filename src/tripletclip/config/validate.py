"""Range checks of a :class:`RunConfig`, run before a run creates anything (one line per problem).

The type of every value is already checked when the config is built (:mod:`tripletclip.config.load`); here
each value is checked against the range the code needs, so that ``train.steps=-5`` or ``train.batch_size=0``
is refused up front instead of saving a random-init checkpoint as a finished run or failing deep in torch.
Names that live in registries (loss, model, benchmarks) are checked by the trainer, which imports them.
"""
from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any, Callable

from tripletclip.config.schema import RunConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTENTION = ("auto", "math")  # train.attention: torch SDPA's own choice, or its plain math kernel


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: math.isfinite(v) and v >= low), f">= {low:g}"


def _within(low: float, high: float, open_high: bool = False) -> tuple[Callable[[Any], bool], str]:
    if open_high:
        return (lambda v: low <= v < high), f"in [{low:g}, {high:g})"
    return (lambda v: low <= v <= high), f"in [{low:g}, {high:g}]"


_POSITIVE = ((lambda v: math.isfinite(v) and v > 0), "> 0")

# dotted key -> (check, what the value must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.max_neg_text": _at_least(0),
    "data.max_neg_image": _at_least(0),
    "data.workers": _at_least(0),
    "data.validate_first": _at_least(0),
    "data.shuffle_buffer": _at_least(0),
    "data.prefetch_factor": _at_least(1),
    "data.max_bad_fraction": _within(0, 1),
    "data.max_image_pixels": _at_least(1),
    "data.cache_decoded_mb": _at_least(0),
    "model.lock_image_unlocked_groups": _at_least(0),
    "model.lock_text_unlocked_layers": _at_least(0),
    "model.logit_scale": _at_least(0),
    "optim.lr": _POSITIVE,
    "optim.weight_decay": _at_least(0),
    "optim.beta1": _within(0, 1, open_high=True),
    "optim.beta2": _within(0, 1, open_high=True),
    "optim.eps": _POSITIVE,
    "optim.warmup_steps": _at_least(0),
    "optim.min_lr_ratio": _within(0, 1),
    "optim.grad_clip": _at_least(0),
    "optim.max_logit_scale": _at_least(1),
    "train.steps": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.seed": _at_least(0),
    "train.log_every": _at_least(1),
    "train.save_every": _at_least(0),
    "train.keep_checkpoints": _at_least(0),
    "train.eval_every": _at_least(0),
    "train.threads": _at_least(0),
    "train.accum_steps": _at_least(1),
    "train.compile_text_bucket": _at_least(1),
    "train.preempt_exit_code": _within(0, 255),
    "train.preempt_check_every": _at_least(1),
    "train.dist_timeout_s": _POSITIVE,
    "eval.batch_size": _at_least(1),
}


def _get(cfg: RunConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def config_problems(cfg: RunConfig) -> list[str]:
    """Every out-of-range value of ``cfg``, one line each naming the key, the value and what it must be."""
    problems = [f"{key}={_get(cfg, key)!r}: must be {what}" for key, (ok, what) in RULES.items() if not ok(_get(cfg, key))]
    if cfg.train.log_lines not in ("auto", "always", "never"):
        problems.append(f"train.log_lines={cfg.train.log_lines!r}: must be one of auto, always, never")
    if cfg.train.attention not in ATTENTION:
        problems.append(f"train.attention={cfg.train.attention!r}: must be one of {', '.join(ATTENTION)}")
    if cfg.train.precision not in PRECISIONS:
        problems.append(f"train.precision={cfg.train.precision!r}: must be one of {', '.join(PRECISIONS)}")
    if cfg.train.accum_steps >= 1 and cfg.train.batch_size % cfg.train.accum_steps:
        problems.append(f"train.batch_size={cfg.train.batch_size} does not split into train.accum_steps="
                        f"{cfg.train.accum_steps} equal micro-batches: make batch_size a multiple of accum_steps")
    if cfg.model.logit_scale > cfg.optim.max_logit_scale:
        problems.append(f"model.logit_scale={cfg.model.logit_scale:g} exceeds optim.max_logit_scale="
                        f"{cfg.optim.max_logit_scale:g}, the clamp applied after every step: lower it or raise the clamp")
    if not cfg.data.train.strip():
        problems.append("data.train is empty: give shard patterns (wds) or a table path (csv/parquet), "
                        "e.g. data.train=shards/train-{000000..000009}.tar")
    if cfg.data.type == "csv" and len(cfg.data.csv_separator) != 1:
        problems.append(f"data.csv_separator={cfg.data.csv_separator!r}: must be one character")
    name = PurePath(cfg.train.name)
    if cfg.train.name and (name.is_absolute() or ".." in name.parts or not name.parts):
        problems.append(f"train.name={cfg.train.name!r}: must name a folder inside train.output_dir")
    return problems
