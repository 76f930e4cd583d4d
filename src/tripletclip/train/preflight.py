"""Preflight: a run config tried on a dry batch before any long work (world, base, data, training) starts.

:func:`tripletclip.train.checks.check_run` checks values, names and the objective against the data; what it
cannot see is whether the pieces fit together: a tower that cannot be locked as asked, a lock that freezes
what the objective needs, an optimiser over nothing, an objective that fails on the features of this model.
:func:`preflight` builds the model (random weights of the configured architecture: the weights themselves are
loaded by the run), applies the locks, builds the optimiser groups (every trainable parameter exactly once) and
the objective, and runs one forward and backward pass on a two-sample batch in the batch contract
(data/contract.py), on CPU with one thread, in well under a second per config for the small models (after the
imports). A setting that cannot work is an :class:`~tripletclip.errors.InputError` naming
it; a failure that is a bug keeps its traceback. ``tripletclip train`` and ``tripletclip demo`` call it first.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Optional, Sequence

import torch

from tripletclip.config import ConfigError, RunConfig
from tripletclip.errors import InputError

_CAPTIONS = ("a red circle left of a blue square", "a green star above a yellow cross")
_NEGATIVES = ("a blue circle left of a red square", "a yellow star above a green cross")


def _dry_batch(cfg: RunConfig, bundle: Any, use_nt: bool, use_ni: bool, size: int) -> dict[str, Any]:
    """Two samples with every negative slot filled, shaped exactly as the run's batches (K, M, context)."""
    from tripletclip.data.contract import Sample, collate
    from tripletclip.edit_types import SUGARCREPE_TYPES

    gen = torch.Generator().manual_seed(0)
    k, m = cfg.data.max_neg_text, cfg.data.max_neg_image
    pos, neg = bundle.tokenizer(list(_CAPTIONS)), bundle.tokenizer(list(_NEGATIVES))
    samples = [Sample(key=f"preflight-{i}", image=torch.rand(3, size, size, generator=gen), text=pos[i],
                      neg_texts=[neg[i]] * k if use_nt else [], neg_types=[SUGARCREPE_TYPES[0]] * k if use_nt else [],
                      neg_images=[torch.rand(3, size, size, generator=gen) for _ in range(m)] if use_ni else [])
               for i in range(2)]
    return collate(samples, k, m, bundle.context_length)


def _image_size(model: torch.nn.Module, name: str) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", None)
    if size is None:
        from tripletclip.models.factory import model_input_size

        return model_input_size(name)
    return int(size if isinstance(size, int) else size[0])


def preflight(cfg: RunConfig, where: str = "", bundles: Optional[dict[tuple[Any, ...], Any]] = None) -> dict[str, Any]:
    """Check that ``cfg`` can train (see module docstring); returns what the dry step saw.

    ``where`` prefixes messages (e.g. ``run`` or ``base`` in the demo); ``bundles`` caches built models between
    calls over configs of the same architecture (the demo checks one config per objective).
    """
    from tripletclip.train.checks import run_problems

    prefix = f"{where}." if where else ""
    problems = run_problems(cfg)
    if problems:
        raise ConfigError("\n".join(f"{prefix}{p}" for p in problems))
    t0 = time.perf_counter()
    key = (cfg.model.name, cfg.model.force_quick_gelu, repr(sorted(cfg.model.aug.items())))
    # NOTE: the caller's RNG stream is left as it was: a run seeded before its preflight draws the same numbers
    threads = torch.get_num_threads()
    # one thread: a two-sample batch gains nothing from more, and they stall on a shared, loaded machine
    torch.set_num_threads(1)
    try:
        return _dry_run(cfg, prefix, key, bundles, t0)
    finally:
        torch.set_num_threads(threads)


def _dry_run(cfg: RunConfig, prefix: str, key: tuple[Any, ...], bundles: Optional[dict[tuple[Any, ...], Any]],
             t0: float) -> dict[str, Any]:
    from tripletclip.losses import build_objective
    from tripletclip.models import apply_locks, create_model
    from tripletclip.train.forward import forward_features, prepare_batch
    from tripletclip.train.optim import build_optimizer
    from tripletclip.train.precision import autocast_dtype

    with torch.random.fork_rng(devices=[]):
        if bundles is not None and key in bundles:
            bundle = bundles[key]
        else:
            torch.manual_seed(0)
            bundle = create_model(cfg.model.name, force_quick_gelu=cfg.model.force_quick_gelu,
                                  aug_cfg=cfg.model.aug or None)
            if bundles is not None:
                bundles[key] = bundle
        # a cached model is shared between configs: lock a copy (one config alone locks its own, no copy in memory)
        model = (copy.deepcopy(bundle.model) if bundles is not None else bundle.model).train()
        try:
            apply_locks(model, cfg.model.lock_image, cfg.model.lock_image_unlocked_groups, cfg.model.lock_text,
                        cfg.model.lock_text_unlocked_layers, model_name=cfg.model.name)
        except InputError as e:
            raise InputError(f"{prefix}{e}") from None
        if cfg.model.grad_checkpointing:
            model.set_grad_checkpointing(True)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        # the run's objective as the trainer builds it (regularisers, teacher, tokens, batch transform)
        loss_fn = build_objective(cfg.loss)
        use_nt = bool(loss_fn.needs_neg_text and cfg.data.use_neg_text)
        use_ni = bool(loss_fn.needs_neg_image and cfg.data.use_neg_image)
        opt = build_optimizer(model, cfg.optim)
        grouped = [p for g in opt.param_groups for p in g["params"]]
        if len(grouped) != len(trainable) or {id(p) for p in grouped} != {id(p) for p in trainable.values()}:
            raise AssertionError("preflight: the optimiser groups do not hold every trainable parameter exactly once")
        from tripletclip.train.teacher import LossSupport

        support = LossSupport(loss_fn, cfg.loss, model, bundle.tokenizer)
        batch = support.transform(_dry_batch(cfg, bundle, use_nt, use_ni, _image_size(model, cfg.model.name)))
        batch = prepare_batch(batch, use_nt, use_ni)
        dtype = autocast_dtype(cfg.train.precision, torch.device("cpu"))
        feats = forward_features(support.forward_module(model, cfg.model.trim_text), batch, use_nt, use_ni, dtype)
        out = loss_fn({**feats, **support.features(batch, dtype)})
        if not torch.isfinite(out["loss"]):
            raise AssertionError(f"preflight: {cfg.loss.name} gave a non-finite loss on the dry batch")
        out["loss"].backward()
        reached = [n for n, p in trainable.items() if p.grad is not None]
        if not reached:
            raise InputError(f"{prefix}model: no trainable parameter gets a gradient from loss.name={cfg.loss.name} "
                             f"(model.lock_image={cfg.model.lock_image}, model.lock_text={cfg.model.lock_text}); "
                             f"unlock a tower")
    n_all = sum(1 for _ in model.parameters())
    return {"trainable": len(trainable), "frozen": n_all - len(trainable), "with_gradient": len(reached),
            "loss": float(out["loss"].detach()), "seconds": time.perf_counter() - t0}


def preflight_all(cfgs: Sequence[tuple[str, RunConfig]]) -> dict[str, dict[str, Any]]:
    """:func:`preflight` over several named configs (models of one architecture built once)."""
    bundles: dict[tuple[Any, ...], Any] = {}
    return {name: preflight(cfg, where=name.split(":", 1)[0], bundles=bundles) for name, cfg in cfgs}


def with_placeholder_data(cfg: RunConfig, note: str) -> RunConfig:
    """``cfg`` with ``data.train`` named by ``note`` when the data do not exist yet (the demo builds them later)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=cfg.data.train or note))
