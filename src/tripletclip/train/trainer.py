"""The training loop: one file a reader can hold in their head (nanoGPT's spirit).

    tripletclip train --config configs/tripletclip-cc3m.yaml optim.lr=5e-4 train.steps=90000
    torchrun --nproc_per_node 8 -m tripletclip.cli train --config ...      # same code path, W ranks

Step-based; equal compute between objectives means equal steps and equal positives (TripletCLIP,
arXiv 2411.02545, Sec. 4). Features of positives and negatives come from one forward pass (train/forward.py);
the loss all-gathers them with autograd (losses/). bf16 autocast keeps fp32 master weights (the official
code's pure-bf16 weights degrade training, docs/methods.md section 3.2). Checkpoints hold the full state, so
``--resume`` continues bitwise identically on CPU. The whole config is checked before anything is created
(train/checks.py), the run folder is locked by one live process (train/provenance_run.py), and a run whose skipped
or lost samples pass ``data.max_bad_fraction`` stops with a one-line error instead of training on what is left.

At scale (docs/training.md): ``train.accum_steps`` encodes the batch in micro-batches with the semantics of one
batch (train/accum.py); SIGTERM/SIGUSR1 end the run after the current step with one checkpoint
(train/preempt.py); fp16 runs with a GradScaler (train/precision.py); and a non-logging step reads nothing back
from the device: counts come from the host batch, losses stay on the device until a logging step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from tripletclip.config import ConfigError, RunConfig, config_to_dict, save_config
from tripletclip.data.contract import DataError
from tripletclip.data.loader import TrainLoader, build_train_loader
from tripletclip.losses import ContrastiveLoss, build_objective
from tripletclip.models import apply_locks, create_model
from tripletclip.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tripletclip.train.checks import check_run
from tripletclip.train.accum import accumulated_step, accumulation_problem, split_rows
from tripletclip.train.forward import TEXT_LEN, forward_features, move_batch, prepare_batch
from tripletclip.train.metrics import MetricsLogger, log_line, peak_memory_bytes
from tripletclip.train.optim import build_optimizer, build_scheduler
from tripletclip.train.precision import Precision, setup_precision
from tripletclip.train.preempt import Preemption
from tripletclip.train.progress import StepProgress
from tripletclip.train.teacher import LossSupport
from tripletclip.train.provenance_run import data_fingerprint, open_run, write_run_info
from tripletclip.utils.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from tripletclip.utils.host_memory import keep_freed_memory
from tripletclip.utils.provenance import code_version



def train(cfg: RunConfig, resume: Optional[str] = None) -> dict[str, Any]:
    """Train one model as ``cfg`` says; returns ``{"run_dir", "step", "final": last logged metrics}``."""
    check_run(cfg)
    env = init_distributed(timeout_s=cfg.train.dist_timeout_s)
    claim = open_run(cfg, resume) if env.rank == 0 else None  # rank 0 owns the folder and picks the checkpoint
    try:
        run_dir, resume_ckpt = broadcast_object(claim[:2] if claim else None)
        result = _train(cfg, env, run_dir, resume_ckpt)
    finally:
        if claim:
            claim[2].release()
    if result["preempted"] and cfg.train.preempt_exit_code:
        raise SystemExit(cfg.train.preempt_exit_code)  # e.g. the sbatch script requeues the job on this status
    return result


def _train(cfg: RunConfig, env: DistEnv, run_dir: Path, resume_ckpt: Optional[Path]) -> dict[str, Any]:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.keep_host_memory:  # before anything large is allocated; forked data workers inherit it
        keep_freed_memory()
    # handlers first: a signal during setup stops the run after its first step
    preempt = Preemption(cfg.train.preempt_signals, cfg.train.preempt_check_every)
    try:
        run = _setup(cfg, env, run_dir, resume_ckpt)
        last, stopped = _loop(run, preempt)
    finally:
        preempt.restore()
    run.loader.close()  # stop the data workers now, not at interpreter exit
    # The official code never writes its final checkpoint (docs/methods.md section 5): we always do.
    run.checkpoint()
    if stopped:  # agreed by every rank (a local flag alone would split the ranks' paths)
        if env.rank == 0:
            print(f"preempted ({preempt.received}): checkpoint of step {run.step} saved in {run.run_dir}; continue "
                  "with --resume latest", flush=True)
        run.metrics.close()
        cleanup()
        return {"run_dir": str(run.run_dir), "step": run.step, "final": last, "preempted": True}
    if cfg.eval.benchmarks:
        last.update(_periodic_eval(cfg, run.bundle, run.model, run.metrics, run.step, env.rank))
    run.metrics.close()
    if env.rank == 0:
        (run.run_dir / "final_metrics.json").write_text(json.dumps({"step": run.step, **last}, indent=1))
    cleanup()
    return {"run_dir": str(run.run_dir), "step": run.step, "final": last, "preempted": False}


@dataclass
class _Run:
    """Everything one training run holds between steps (built by :func:`_setup`)."""

    cfg: RunConfig
    env: DistEnv
    run_dir: Path
    bundle: Any
    model: torch.nn.Module
    forward_model: torch.nn.Module  # what the step calls: the model, text-trimmed and DDP-wrapped as configured
    loss_fn: ContrastiveLoss
    loader: TrainLoader
    opt: torch.optim.Optimizer
    sched: Any
    precision: Precision
    use_nt: bool
    use_ni: bool
    metrics: MetricsLogger
    meta: dict[str, Any]
    support: Optional[LossSupport] = None  # what the objective declares it needs (tokens, teacher)
    step: int = 0
    counters: dict[str, int] = field(
        default_factory=lambda: {"real_pairs_seen": 0, "synthetic_images_seen": 0, "neg_texts_seen": 0})

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.env.world_size

    @property
    def autocast(self) -> Optional[torch.dtype]:
        return self.precision.dtype

    def restore(self, ckpt: Path, device: torch.device) -> None:
        """Continue from a checkpoint: weights, optimiser, schedule, loss buffers, data position, RNG, counters."""
        weights, state, _ = load_checkpoint(ckpt, map_location=str(device), verified=True)
        self.model.load_state_dict(weights)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.precision.scaler.load_state_dict(state["scaler"])
        self.loss_fn.load_state_dict(state["loss"])
        self.support.load_state_dict(state.get("support"))
        rank = self.env.rank
        self.loader.load_state_dict(state["data"])  # every rank's: shards resume elastically from all of them
        self.counters = dict(state["counters"])
        self.step = int(state["step"])
        set_rng_state(_of_rank(state["rng"], rank))

    def checkpoint(self) -> None:
        """Save the full state of every rank (data positions and RNG gathered on rank 0)."""
        data_states = _gather_objects(self.loader.state_dict(), self.env.world_size)
        rngs = _gather_objects(rng_state(), self.env.world_size)
        if self.env.rank == 0:
            state = {"step": self.step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "scaler": self.precision.scaler.state_dict(), "loss": self.loss_fn.state_dict(),
                     "support": self.support.state_dict(), "data": data_states, "rng": rngs, "counters": self.counters}
            save_checkpoint(self.run_dir, self.step, self.model, state, {**self.meta, "counters": self.counters},
                            keep=self.cfg.train.keep_checkpoints)
        barrier()


def _of_rank(states: Any, rank: int) -> Any:
    """This rank's entry of per-rank states saved at world size W (a plain object when W was 1). Resuming on
    another world size reuses rank ``rank mod W``'s RNG state: only the trainer's own RNG stream (dropout)
    differs from an uninterrupted run at the new size (the loader takes every rank's data state itself)."""
    if not isinstance(states, list):
        return states
    return states[rank % len(states)]


def _setup(cfg: RunConfig, env: DistEnv, run_dir: Path, resume_ckpt: Optional[Path]) -> _Run:
    """Model, objective, data, optimiser and loggers of a run in ``run_dir`` (restored when resuming)."""
    device = torch.device(env.device)
    precision = setup_precision(cfg.train.precision, device, cfg.train.tf32)
    # Same seed on every rank for the initial weights (DDP also broadcasts them); data order differs by rank.
    torch.manual_seed(cfg.train.seed)
    bundle = create_model(cfg.model.name, cfg.model.pretrained, device=device,
                          force_quick_gelu=cfg.model.force_quick_gelu, aug_cfg=cfg.model.aug or None)
    model = bundle.model
    if cfg.model.logit_scale:  # the run's starting temperature (a resumed run restores its own afterwards)
        with torch.no_grad():
            model.logit_scale.fill_(math.log(cfg.model.logit_scale))
    apply_locks(model, cfg.model.lock_image, cfg.model.lock_image_unlocked_groups,
                cfg.model.lock_text, cfg.model.lock_text_unlocked_layers)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    problem = accumulation_problem(model) if cfg.train.accum_steps > 1 else None
    if problem:  # known only once the model exists (train/checks.py checks the rest before)
        raise ConfigError(f"train.accum_steps={cfg.train.accum_steps}: {problem}, so micro-batches would not train "
                          f"as one batch; use train.accum_steps=1 or a model without BatchNorm")
    loss_fn = build_objective(cfg.loss).to(device)
    support = LossSupport(loss_fn, cfg.loss, model, bundle.tokenizer)  # before any restore: a "base" teacher is the start
    use_nt = bool(loss_fn.needs_neg_text and cfg.data.use_neg_text)
    use_ni = bool(loss_fn.needs_neg_image and cfg.data.use_neg_image)
    data_cfg = dataclasses.replace(cfg.data, use_neg_text=use_nt, use_neg_image=use_ni)
    loader = build_train_loader(data_cfg, bundle.preprocess_train, bundle.tokenizer, batch_size=cfg.train.batch_size,
                                seed=cfg.train.seed, rank=env.rank, world_size=env.world_size,
                                context_length=bundle.context_length, require_negatives=True)
    opt = build_optimizer(model, cfg.optim)
    # the step's forward: positives and negatives in one call, text trimmed to the longest caption (exact)
    forward_model = support.forward_module(model, cfg.model.trim_text)
    if cfg.train.compile:  # text lengths come in buckets (forward.prepare_batch): a few graphs, not one per step
        forward_model = torch.compile(forward_model, backend=cfg.train.compile_backend)
    if env.world_size > 1:
        forward_model = torch.nn.parallel.DistributedDataParallel(
            forward_model, device_ids=[device] if device.type == "cuda" else None)
    run = _Run(cfg, env, run_dir, bundle, model, forward_model, loss_fn, loader, opt,
               build_scheduler(opt, cfg.optim, cfg.train.steps), precision, use_nt, use_ni,
               MetricsLogger(run_dir, enabled=env.rank == 0, tensorboard=cfg.train.tensorboard, wandb=cfg.train.wandb,
                             wandb_project=cfg.train.wandb_project, config=config_to_dict(cfg),
                             resume=resume_ckpt is not None),
               {"config": config_to_dict(cfg), "code_version": code_version(), "world_size": env.world_size,
                "autocast": precision.name}, support)
    if resume_ckpt is not None:
        run.restore(resume_ckpt, device)
    elif env.rank == 0:
        save_config(cfg, run_dir / "config.yaml")
        write_run_info(run_dir, cfg, env, bundle.identity, data_fingerprint(cfg.data, loader.source),
                       autocast=precision.name)
    run.metrics.truncate_after(run.step)
    return run


def _loop(run: _Run, preempt: Preemption) -> tuple[dict[str, Any], bool]:
    """Steps until ``train.steps`` (or a preemption signal): batch, update, counters; logs, checkpoints and
    evaluations on schedule. Only logging steps read values back from the device. Returns the last logged
    metrics and whether the ranks stopped early on a signal."""
    cfg, loader, model, env = run.cfg, run.loader, run.model, run.env
    shapes = run.loss_fn.logits_shapes(cfg.train.batch_size, run.global_batch, cfg.data.max_neg_text if run.use_nt else 0,
                                       cfg.data.max_neg_image if run.use_ni else 0)
    progress = StepProgress(cfg.train.steps, start=run.step, enabled=env.rank == 0 and cfg.train.progress,
                            label=cfg.loss.name)
    # job logs: one plain line per logged step where no progress bar shows (train.log_lines)
    plain_log = env.rank == 0 and (cfg.train.log_lines == "always" or (
        cfg.train.log_lines == "auto" and not (cfg.train.progress and sys.stdout.isatty())))
    device = torch.device(env.device)
    bucket = cfg.train.compile_text_bucket if cfg.train.compile else 1
    last: dict[str, Any] = {}
    stopped = False
    epoch = loader.epoch
    t_window, wait_window, n_window = 0.0, 0.0, 0
    model.train()
    while run.step < cfg.train.steps:
        t0 = time.perf_counter()
        batch = next(loader)  # host memory: counts, valid-negative indices and text length are read here
        t_data = time.perf_counter() - t0
        if loader.epoch != epoch:  # e.g. CE-CLIP resets its adaptive thresholds
            epoch = loader.epoch
            run.loss_fn.on_epoch_start(epoch)
        batch = run.support.transform(batch)  # an objective's batch transform (CLIC), host side
        _count(run.counters, batch, run.global_batch, env.world_size, run.use_nt, run.use_ni)
        micro = [prepare_batch(mb, run.use_nt, run.use_ni, bucket) for mb in split_rows(batch, cfg.train.accum_steps)]
        text_len = max(mb[TEXT_LEN] for mb in micro)  # the whole batch's: token features match across micro-batches
        micro = [move_batch({**mb, TEXT_LEN: text_len}, device) for mb in micro]
        step = run.step + 1
        logging_step = step % cfg.train.log_every == 0 or step == cfg.train.steps
        out, grad_norm = train_step(run, micro, want_norm=logging_step)
        run.step = step
        dt = time.perf_counter() - t0
        t_window, wait_window, n_window = t_window + dt, wait_window + t_data, n_window + 1
        progress.update(step, None, run.global_batch / dt)
        if logging_step:
            check_skipped(loader.stats(), cfg.data.max_bad_fraction, step == cfg.train.steps, device)
            last = {**_metrics_record(run, out, grad_norm, run.global_batch * n_window / t_window,
                                      wait_window / t_window), **shapes}
            run.metrics.log(step, last)
            progress.update(step, last["loss/loss"], last["pairs_per_s"])
            if plain_log:
                print(log_line(step, cfg.train.steps, last), flush=True)
            t_window, wait_window, n_window = 0.0, 0.0, 0
        if step < cfg.train.steps and preempt.should_stop(step):
            stopped = True
            break  # _train saves the checkpoint of this finished step on every rank together
        if cfg.train.save_every and step % cfg.train.save_every == 0 and step < cfg.train.steps:
            run.checkpoint()
        if cfg.eval.benchmarks and cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < cfg.train.steps:
            _periodic_eval(cfg, run.bundle, model, run.metrics, step, env.rank)
    progress.close()
    return last, stopped


def train_step(run: _Run, micro: list[dict[str, Any]], want_norm: bool = False
               ) -> tuple[dict[str, torch.Tensor], Optional[torch.Tensor]]:
    """One optimizer step over the micro-batches of a batch (one plain forward/backward when there is one);
    returns the loss terms and the gradient norm before clipping (None when neither clipped nor wanted).
    Reads nothing back from the device (except the fp16 GradScaler's inf check)."""
    cfg, model, scaler = run.cfg, run.model, run.precision.scaler
    run.opt.zero_grad(set_to_none=True)

    def encode(mb: dict[str, Any]) -> dict[str, Any]:
        with attention_kernel(cfg.train.attention):  # the backward runs the kernel the forward chose
            return forward_features(run.forward_model, mb, run.use_nt, run.use_ni, run.autocast)

    def targets(mb: dict[str, Any]) -> dict[str, Any]:  # a teacher's features where one is declared (no graph)
        return run.support.features(mb, run.autocast)

    def backward(t: torch.Tensor) -> None:
        scaler.scale(t).backward()

    if len(micro) == 1:
        out = run.loss_fn({**encode(micro[0]), **targets(micro[0])})
        backward(out["loss"])
    else:
        no_sync = getattr(run.forward_model, "no_sync", None) or (lambda: contextlib.nullcontext())
        out = accumulated_step(encode, run.loss_fn, micro, backward, no_sync, targets)
    scaler.unscale_(run.opt)
    grad_norm = None
    if cfg.optim.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    elif want_norm:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
    scaler.step(run.opt)
    scaler.update()
    run.support.after_step(model)  # the EMA teacher follows the student
    run.sched.step()
    with torch.no_grad():  # s <= 100 (CLIP, docs/methods.md section 1)
        model.logit_scale.clamp_(0, math.log(cfg.optim.max_logit_scale))
    return out, grad_norm


def attention_kernel(choice: str) -> contextlib.AbstractContextManager[Any]:
    """``train.attention``: torch's own SDPA choice ("auto"), or the plain math kernel ("math"), which on CPU
    under bf16 autocast runs the backward several times faster than flash (docs/training.md)."""
    if choice == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def _count(counters: dict[str, int], batch: dict[str, Any], global_b: int, world_size: int, use_nt: bool,
           use_ni: bool) -> None:
    """Real pairs, synthetic images and negative captions seen by all ranks (equal on every rank by construction).
    Counted on the host batch (before it moves to the device): no read-back."""
    counters["real_pairs_seen"] += global_b
    counters["synthetic_images_seen"] += int(batch["neg_image_mask"].sum()) * world_size if use_ni else 0
    counters["neg_texts_seen"] += int(batch["neg_text_mask"].sum()) * world_size if use_nt else 0


def _metrics_record(run: _Run, out: dict[str, torch.Tensor], grad_norm: Optional[torch.Tensor], pairs_per_s: float,
                    data_wait_frac: float) -> dict[str, Any]:
    """One metrics.jsonl record: loss terms (mean over ranks), scale, lr, gradient norm before clipping,
    throughput (global and per rank), data wait, peak memory, counters, data stats. The only read-backs."""
    terms = {f"loss/{k}": float(all_reduce_mean(v.detach().float())) for k, v in out.items()
             if torch.is_tensor(v) and v.numel() == 1}
    return {
        **terms,
        "logit_scale": float(run.model.logit_scale.detach().exp()),
        "lr": run.sched.get_last_lr()[0],
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
        "pairs_per_s": pairs_per_s,
        "pairs_per_s_rank": pairs_per_s / run.env.world_size,
        "data_wait_frac": data_wait_frac,
        "peak_memory_bytes": peak_memory_bytes(torch.device(run.env.device)),
        **run.counters,
        "samples_seen": run.counters["real_pairs_seen"] + run.counters["synthetic_images_seen"],
        **{f"data/{k}": v for k, v in run.loader.stats().items()},
    }


# Below this many samples read, one bad sample is too large a fraction to judge the data by (except at the end).
MIN_SAMPLES_TO_JUDGE = 1000


def check_skipped(stats: dict[str, int], max_fraction: float, final: bool, device: torch.device) -> None:
    """Stop the run (DataError, on every rank) when the skipped plus lost samples of all ranks exceed
    ``max_fraction`` of the samples read: bad samples, and samples of truncated or unreadable shards."""
    local = [stats["bad_samples"] + stats["samples_lost"], stats["samples"] + stats["samples_lost"]]
    skipped, total = all_reduce_mean(torch.tensor(local, dtype=torch.float64, device=device)).tolist()
    if total and (total >= MIN_SAMPLES_TO_JUDGE or final) and skipped > max_fraction * total:
        raise DataError(f"{skipped / total:.1%} of the samples read so far were skipped or lost ({stats['bad_samples']} "
                        f"bad samples, {stats['samples_lost']} lost in {stats['stream_errors']} damaged shards on this "
                        f"rank), more than data.max_bad_fraction={max_fraction:g}; the warnings above name them: fix "
                        "the data, or raise data.max_bad_fraction to train on the rest")


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
