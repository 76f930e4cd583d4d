"""The training loop: one file a reader can hold in their head (nanoGPT's spirit).

    tripletclip train --config configs/tripletclip-cc3m.yaml optim.lr=5e-4 train.steps=90000
    torchrun --nproc_per_node 8 -m tripletclip.cli train --config ...      # same code path, W ranks

Step-based; equal compute between objectives means equal steps and equal positives (TripletCLIP,
arXiv 2411.02545, Sec. 4). Features of positives and negatives come from one forward pass (train/step.py);
the loss all-gathers them with autograd (losses/). bf16 autocast keeps fp32 master weights (the official
code's pure-bf16 weights degrade training, docs/methods.md section 3.2). Checkpoints hold the full state, so ``--resume``
continues bitwise identically on CPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch

from tripletclip.config import RunConfig, config_to_dict, save_config
from tripletclip.data.loader import build_train_loader
from tripletclip.losses import build_loss
from tripletclip.models import apply_locks, create_model
from tripletclip.models.trimmed import TrimmedClip
from tripletclip.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tripletclip.train.metrics import MetricsLogger
from tripletclip.train.optim import build_optimizer, build_scheduler
from tripletclip.train.precision import autocast_dtype
from tripletclip.train.progress import StepProgress
from tripletclip.train.provenance_run import data_fingerprint, resolve_run_dir, write_run_info
from tripletclip.train.step import forward_features, move_batch
from tripletclip.utils.distributed import all_reduce_mean, barrier, cleanup, init_distributed
from tripletclip.utils.provenance import code_version


def train(cfg: RunConfig, resume: Optional[str] = None) -> dict[str, Any]:
    """Train one model as ``cfg`` says; returns ``{"run_dir", "step", "final": last logged metrics}``."""
    env = init_distributed()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(env.device)
    run_dir, resume_ckpt = resolve_run_dir(cfg, resume, is_main=env.rank == 0)
    autocast = autocast_dtype(cfg.train.precision, device)

    # Same seed on every rank for the initial weights (DDP also broadcasts them); data order differs by rank.
    torch.manual_seed(cfg.train.seed)
    bundle = create_model(cfg.model.name, cfg.model.pretrained, device=device,
                          force_quick_gelu=cfg.model.force_quick_gelu, aug_cfg=cfg.model.aug or None)
    model = bundle.model
    apply_locks(model, cfg.model.lock_image, cfg.model.lock_image_unlocked_groups,
                cfg.model.lock_text, cfg.model.lock_text_unlocked_layers)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    loss_fn = build_loss(cfg.loss.name, **cfg.loss.kwargs).to(device)
    use_nt = bool(loss_fn.needs_neg_text and cfg.data.use_neg_text)
    use_ni = bool(loss_fn.needs_neg_image and cfg.data.use_neg_image)
    data_cfg = dataclasses.replace(cfg.data, use_neg_text=use_nt, use_neg_image=use_ni)
    loader = build_train_loader(data_cfg, bundle.preprocess_train, bundle.tokenizer, batch_size=cfg.train.batch_size,
                                seed=cfg.train.seed, rank=env.rank, world_size=env.world_size,
                                context_length=bundle.context_length)
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, cfg.train.steps)

    step, counters = 0, {"real_pairs_seen": 0, "synthetic_images_seen": 0, "neg_texts_seen": 0}
    if resume_ckpt is not None:
        weights, state, _ = load_checkpoint(resume_ckpt, map_location=str(device))
        model.load_state_dict(weights)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        loss_fn.load_state_dict(state["loss"])
        loader.load_state_dict(state["data"][env.rank] if isinstance(state["data"], list) else state["data"])
        counters = dict(state["counters"])
        step = int(state["step"])
        set_rng_state(state["rng"][env.rank] if isinstance(state["rng"], list) else state["rng"])

    if env.rank == 0 and resume_ckpt is None:
        save_config(cfg, run_dir / "config.yaml")
        write_run_info(run_dir, cfg, env, bundle.identity, data_fingerprint(cfg.data, loader.source),
                       autocast=str(autocast) if autocast else "fp32")
    # the step's forward: positives and negatives in one call, text trimmed to the longest caption (exact)
    ddp_model = TrimmedClip(model) if cfg.model.trim_text else model
    if env.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(ddp_model, device_ids=[device] if device.type == "cuda" else None)
    metrics = MetricsLogger(run_dir, enabled=env.rank == 0, tensorboard=cfg.train.tensorboard, wandb=cfg.train.wandb,
                            wandb_project=cfg.train.wandb_project, config=config_to_dict(cfg), resume=resume_ckpt is not None)
    metrics.truncate_after(step)
    meta = {"config": config_to_dict(cfg), "code_version": code_version(), "world_size": env.world_size,
            "autocast": str(autocast) if autocast else "fp32"}
    global_b = cfg.train.batch_size * env.world_size
    shapes = loss_fn.logits_shapes(cfg.train.batch_size, global_b, cfg.data.max_neg_text if use_nt else 0,
                                   cfg.data.max_neg_image if use_ni else 0)
    progress = StepProgress(cfg.train.steps, start=step, enabled=env.rank == 0 and cfg.train.progress, label=cfg.loss.name)

    def checkpoint() -> None:
        data_states = _gather_objects(loader.state_dict(), env.world_size)
        rngs = _gather_objects(rng_state(), env.world_size)
        if env.rank == 0:
            state = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "loss": loss_fn.state_dict(), "data": data_states, "rng": rngs, "counters": counters}
            save_checkpoint(run_dir, step, model, state, {**meta, "counters": counters}, keep=cfg.train.keep_checkpoints)
        barrier()

    last: dict[str, Any] = {}
    epoch = loader.epoch
    t_window, wait_window, n_window = 0.0, 0.0, 0
    model.train()
    while step < cfg.train.steps:
        t0 = time.perf_counter()
        batch = next(loader)
        t_data = time.perf_counter() - t0
        if loader.epoch != epoch:  # e.g. CE-CLIP resets its adaptive thresholds
            epoch = loader.epoch
            loss_fn.on_epoch_start(epoch)
        batch = move_batch(batch, device)
        feats = forward_features(ddp_model, batch, use_nt, use_ni, autocast)
        out = loss_fn(feats)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else None
        opt.step()
        sched.step()
        with torch.no_grad():  # s <= 100 (CLIP, docs/methods.md section 1)
            model.logit_scale.clamp_(0, math.log(cfg.optim.max_logit_scale))
        step += 1
        n_real = global_b
        n_synth = int(batch["neg_image_mask"].sum()) * env.world_size if use_ni else 0
        counters["real_pairs_seen"] += n_real
        counters["synthetic_images_seen"] += n_synth
        counters["neg_texts_seen"] += int(batch["neg_text_mask"].sum()) * env.world_size if use_nt else 0
        dt = time.perf_counter() - t0
        t_window, wait_window, n_window = t_window + dt, wait_window + t_data, n_window + 1
        progress.update(step, float(out["loss"].detach()), global_b / dt)

        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            terms = {f"loss/{k}": float(all_reduce_mean(v.detach().float())) for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
            last = {
                **terms,
                "logit_scale": float(model.logit_scale.detach().exp()),
                "lr": sched.get_last_lr()[0],
                "grad_norm": float(grad_norm) if grad_norm is not None else None,
                "pairs_per_s": global_b * n_window / t_window,
                "data_wait_frac": wait_window / t_window,
                **counters,
                "samples_seen": counters["real_pairs_seen"] + counters["synthetic_images_seen"],
                **shapes,
                **{f"data/{k}": v for k, v in loader.stats().items()},
            }
            metrics.log(step, last)
            t_window, wait_window, n_window = 0.0, 0.0, 0
        if cfg.train.save_every and step % cfg.train.save_every == 0 and step < cfg.train.steps:
            checkpoint()
        if cfg.eval.benchmarks and cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < cfg.train.steps:
            _periodic_eval(cfg, bundle, model, metrics, step, env.rank)
    # The official code never writes its final checkpoint (docs/methods.md section 5): we always do.
    checkpoint()
    if cfg.eval.benchmarks:
        last.update(_periodic_eval(cfg, bundle, model, metrics, step, env.rank))
    progress.close()
    metrics.close()
    if env.rank == 0:
        (run_dir / "final_metrics.json").write_text(json.dumps({"step": step, **last}, indent=1))
    cleanup()
    return {"run_dir": str(run_dir), "step": step, "final": last}


def _gather_objects(obj: Any, world_size: int) -> Any:
    """Per-rank states (data position, RNG) collected on rank 0; a plain object when single-process."""
    if world_size == 1:
        return obj
    out: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _periodic_eval(cfg: RunConfig, bundle: Any, model: torch.nn.Module, metrics: MetricsLogger, step: int, rank: int) -> dict[str, Any]:
    """Evaluate by benchmark name on rank 0 (compositional next to zero-shot/retrieval: forgetting is visible)."""
    if rank != 0:
        barrier()
        return {}
    from tripletclip.eval import Encoder, evaluate, headline_scalars

    was_training = model.training
    model.eval()
    enc = Encoder.from_bundle(dataclasses.replace(bundle, model=model), batch_size=cfg.eval.batch_size)
    results = evaluate(cfg.eval.benchmarks, enc, cfg.eval.args, step=step)
    scalars = {f"eval/{k}": v for k, v in headline_scalars(results).items()}
    metrics.log(step, scalars)
    model.train(was_training)
    barrier()
    return scalars
