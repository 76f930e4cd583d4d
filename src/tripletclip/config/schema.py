"""Typed run configuration: the dataclasses a YAML preset in ``configs/`` fills.

Unknown keys are errors (a typo must never be silently ignored). The resolved config is saved as
``config.yaml`` in every run folder; see :mod:`tripletclip.config.load` for YAML + dotted overrides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class DataConfig:
    """Where training pairs come from and how batches are formed (batch contract: tripletclip.data.contract)."""

    # "wds" (webdataset shards: local paths, brace patterns, pipe:CMD, fsspec URLs, or a list joined by "::"), "csv",
    # "parquet"
    type: str = "wds"
    train: str = ""
    # wds: resampled=True draws shards with replacement forever (open_clip's --dataset-resampled)
    resampled: bool = False
    # table readers: column names (open_clip_train's --csv-img-key / --csv-caption-key defaults)
    img_key: str = "filepath"
    caption_key: str = "title"
    # columns holding negatives; each may hold one string or a JSON/Python list of strings / paths
    neg_caption_key: str = ""
    neg_image_key: str = ""
    csv_separator: str = "\t"
    # root prepended to relative image paths in tables ("" = relative to the table's folder)
    image_root: str = ""
    # several captions per image (LaCLIP): the caption field may hold a list; one is sampled per step, seeded
    sample_one_caption: bool = True
    # K and M of the batch contract (padding + masks)
    max_neg_text: int = 1
    max_neg_image: int = 1
    # drop negatives the objective does not use, so that e.g. CLIP does not decode negative images
    use_neg_text: bool = True
    use_neg_image: bool = True
    workers: int = 2
    # validate this many first samples at start: a bad one is a one-line error naming the file and key
    validate_first: int = 8
    shuffle_buffer: int = 1000
    # one data order for the whole job instead of one per (rank, worker): global batch t is samples
    # [t*GB, (t+1)*GB) of a sequence that does not depend on the world size or data.workers, so a run can resume
    # on another number of GPUs or workers (elastic resume; each worker scans the sequence, reading only its
    # samples; docs/training.md)
    global_order: bool = False
    # a sample with more negatives than K (M) contributes K (M) of them drawn per (seed, epoch, sample)
    # (NegCLIP picks one of its swaps at random each time); False keeps the first ones
    sample_negatives: bool = True
    # batches each worker prepares ahead (torch DataLoader prefetch_factor)
    prefetch_factor: int = 4
    # stop the run when more than this fraction of the samples read so far was skipped (bad samples) or lost
    # (samples of truncated or unreadable shards); checked from 1000 samples on and at the last step
    max_bad_fraction: float = 0.01
    # images whose header declares more pixels are bad samples, never decoded (decompression bombs);
    # PIL's warning threshold, far above any CLIP training image
    max_image_pixels: int = 89_478_485
    # keep decoded images and tokenised captions in memory, up to this many MiB per loader process (0 = off), so
    # that a training set read several times (epochs) is decoded once: batches stay bitwise the same, only the
    # random transform runs again (data/memo.py)
    cache_decoded_mb: int = 0


@dataclass
class ModelConfig:
    """A model (open_clip name, our configs, or ``hf:PATH_OR_ID``), its weights, tower locks (models/factory.py)."""

    name: str = "test-vit-tiny"
    # open_clip tag, weights file, or a tripletclip run / checkpoint folder to fine-tune from
    pretrained: str = ""
    # locking (LiT, TripletCLIP Table 8): freeze a tower; unlocked_groups keeps the last N groups trainable
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    force_quick_gelu: bool = False
    # start training at this logit scale (the exp of the learned temperature; 0 keeps the weights' own). A
    # web-scale CLIP ends pretraining at the clamp, 100; a small base can end far below it, which stalls learning
    # from hard negatives (docs/world_experiments.md, section 11)
    logit_scale: float = 0.0
    grad_checkpointing: bool = False
    # run the text tower on the batch's longest caption instead of the full context (same features, less work)
    trim_text: bool = True
    # open_clip AugmentationCfg fields for the train transform (e.g. {scale: [0.9, 1.0]}); hflip is refused
    aug: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Objective by registry name (tripletclip.losses) and its keyword arguments."""

    name: str = "clip"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # CyCLIP's symmetry regularisers on top of any objective (arXiv 2205.14459 uses 0.25 each; 0 = off)
    cyclip_cross: float = 0.0
    cyclip_in: float = 0.0
    # forgetting control for any objective: squared distance to a teacher's features (docs/objectives.md)
    distill_weight: float = 0.0
    # the teacher of distill_weight and of objectives that need one: "base" (frozen starting model),
    # "ema" (moving average of the student), "" = the objective's default (DeGLA: ema, else base)
    teacher: str = ""
    ema_decay: float = 0.999


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = 100
    # cosine to min_lr_ratio * lr at the last step
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    max_logit_scale: float = 100.0
    # learning-rate multipliers by parameter-name prefix, e.g. {"visual.": 5.0}: the longest matching prefix wins,
    # other parameters keep lr (layer-wise rates as in BEiT / timm's layer decay; train/optim.py)
    lr_mult: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # per process; the global batch is batch_size * world_size
    # "auto" (bf16 autocast where native: CUDA capability >= 8.0, AVX512-BF16/AMX CPUs; fp16 + GradScaler on
    # older GPUs; else fp32), "bf16", "fp16" or "fp32"; master weights are fp32 in every case (train/precision.py)
    precision: str = "auto"
    tf32: bool = True  # TF32 tensor cores for fp32 matmuls/convolutions on CUDA (ignored on CPU)
    # exact gradient accumulation (train/accum.py): batch_size rows per rank and step, encoded in accum_steps
    # micro-batches of batch_size / accum_steps; the loss still sees the whole global batch
    accum_steps: int = 1
    compile: bool = False  # torch.compile the model; text lengths rounded up to compile_text_bucket
    compile_text_bucket: int = 16
    compile_backend: str = "inductor"  # torch.compile backend (inductor; aot_eager or eager to debug)
    # the training forward's attention kernel (torch SDPA): "auto" = torch's choice (flash on CPU), "math" = the
    # plain matmul-softmax-matmul. Measured on an AMX CPU under bf16 autocast (docs/training.md): flash's backward
    # 40 ms vs 6 ms per block of the world tower; the same function, other rounding (not bitwise the same run)
    attention: str = "auto"
    # preemption (train/preempt.py): these signals make every rank finish its step, save one checkpoint, exit
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    preempt_exit_code: int = 0  # exit status after a preemption checkpoint (e.g. 75 to requeue from sbatch)
    preempt_check_every: int = 1  # steps between the ranks' (collective) agreement on a received signal
    dist_timeout_s: float = 1800.0  # process-group timeout (a rank waiting longer on the others fails)
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0 = only at the end (if eval.benchmarks is set)
    output_dir: str = "runs"
    name: str = ""  # run folder name; "" = derived from loss and time
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "tripletclip"
    progress: bool = True
    # a plain line per logged step for job logs: "auto" = when no progress bar shows (not a TTY or progress off),
    # "always", "never" (the demo: its trainings run side by side under one progress line)
    log_lines: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    # glibc malloc keeps freed host memory, so large CPU tensors stop costing page faults every step
    # (utils/host_memory.py); the process keeps its peak host memory until it exits
    keep_host_memory: bool = True


@dataclass
class EvalConfig:
    """Periodic evaluation by benchmark name (tripletclip.eval registry)."""

    benchmarks: list[str] = field(default_factory=list)
    # benchmark name -> {"annotations": ..., "images": ..., any evaluator kwargs}
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 256


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # free-form description, copied into results
    notes: Optional[str] = None
