"""AdamW with open_clip's decay exclusion and a warmup + cosine schedule (TripletCLIP / open_clip recipe).

Gains, biases, embeddings of norm layers and ``logit_scale`` are excluded from weight decay (docs/methods.md section 3.2):
decaying the temperature or LayerNorm gains is a known degradation. ``optim.lr_mult`` gives parameters a multiple of
the learning rate by name prefix (a head trained faster than the rest, as layer-wise rates do); the schedule scales
every group alike.
"""
from __future__ import annotations

import math

import torch

from tripletclip.config.load import ConfigError
from tripletclip.config.schema import OptimConfig


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name or "norm" in name


def lr_mult_of(name: str, lr_mult: dict[str, float]) -> float:
    """The multiplier of parameter ``name``: that of the longest prefix in ``lr_mult`` it starts with, else 1."""
    hits = [prefix for prefix in lr_mult if name.startswith(prefix)]
    return float(lr_mult[max(hits, key=len)]) if hits else 1.0


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters: decayed weights and excluded gains/biases/scale, each group once per
    learning-rate multiplier (``cfg.lr_mult``; without it exactly the two groups of open_clip)."""
    bad = {k: v for k, v in cfg.lr_mult.items() if not float(v) > 0}
    if bad:
        raise ConfigError(f"optim.lr_mult: multipliers must be > 0, got {bad}")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    unused = [k for k in cfg.lr_mult if not any(n.startswith(k) for n in names)]
    if unused:  # a typo would silently train at the base rate
        raise ConfigError(f"optim.lr_mult: no trainable parameter starts with {unused} "
                          f"(trainable: {sorted({n.split('.')[0] for n in names})})")
    by_mult: dict[float, tuple[list, list]] = {1.0: ([], [])}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay, decay = by_mult.setdefault(lr_mult_of(name, cfg.lr_mult), ([], []))
        (no_decay if _no_decay(name, p) else decay).append(p)
    groups = []
    for mult, (no_decay, decay) in by_mult.items():  # the multiplier-1 groups first, as without lr_mult
        for params, wd in ((no_decay, 0.0), (decay, cfg.weight_decay)):
            if params or mult == 1.0:
                groups.append({"params": params, "weight_decay": wd, "lr": cfg.lr * mult})
    # fused: one kernel over all tensors; deterministic, and on CPU ~6x faster than the per-tensor loop
    # (measured 6.6 ms vs 41 ms per step over a 3.4M-parameter tiny CLIP)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=True)


def lr_multiplier(step: int, total_steps: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Linear warmup from lr/warmup to lr, then cosine decay to ``min_ratio * lr`` at ``total_steps``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_multiplier(s, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
    )
