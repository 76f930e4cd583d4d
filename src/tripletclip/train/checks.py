"""The whole run config checked before a run creates anything: ranges, registered names, objective vs. data.

:func:`check_run` collects every problem and raises one :class:`~tripletclip.config.ConfigError` with one line
per problem, so that a user fixes them in one go, and no empty run folder is left behind by a config that
could never train (e.g. a preset without ``data.train``).
"""
from __future__ import annotations

from tripletclip.config import ConfigError, RunConfig, config_problems
from tripletclip.data import tables, wds  # noqa: F401  (registration of the data sources)
from tripletclip.data.source import SOURCES
from tripletclip.errors import UserError
from tripletclip.losses import LOSSES, ContrastiveLoss, build_objective
from tripletclip.models.factory import check_model_name
from tripletclip.train.preempt import parse_signals


def _negative_problems(cfg: RunConfig) -> list[str]:
    """An objective whose negatives can never arrive would quietly train as another objective under its name."""
    loss = LOSSES.get(cfg.loss.name)
    problems = []
    for needed, use, k, kind in ((loss.needs_neg_text, cfg.data.use_neg_text, cfg.data.max_neg_text, "text"),
                                 (loss.needs_neg_image, cfg.data.use_neg_image, cfg.data.max_neg_image, "image")):
        if needed and not (use and k > 0):
            problems.append(f"loss.name={cfg.loss.name} needs negative {kind}s, but data.use_neg_{kind}={use} and "
                            f"data.max_neg_{kind}={k}: enable them, or choose an objective without negative {kind}s")
    return problems


def _accumulation_problems(cfg: RunConfig, objective: ContrastiveLoss) -> list[str]:
    """Exact accumulation (train/accum.py) splits the batch *after* the objective's batch_transform (CLIC pairs
    the samples of the whole batch), so the transformed rows must split into equal micro-batches. (The model
    side, BatchNorm, is checked once the model exists: train/trainer.py.)"""
    a, b = cfg.train.accum_steps, cfg.train.batch_size
    rows = objective.transformed_rows(b)
    if a > 1 and rows != b and rows % a:
        return [f"train.accum_steps={a}: loss.name={cfg.loss.name} makes {rows} examples of train.batch_size={b} "
                f"samples, which do not split into {a} equal micro-batches; make train.batch_size a multiple of "
                f"{a * (b // rows)}"]
    return []


def run_problems(cfg: RunConfig) -> list[str]:
    """Every problem of ``cfg`` as one line each ([] when the run can start)."""
    problems = config_problems(cfg)
    if cfg.data.type not in SOURCES:
        problems.append(f"data.type={cfg.data.type!r}: unknown; known: {', '.join(SOURCES.names())}")
    try:
        objective = build_objective(cfg.loss)
        problems += _negative_problems(cfg)
        problems += _accumulation_problems(cfg, objective)
    except UserError as e:  # unknown name or option: the message lists the known ones
        problems.append(f"loss: {e}")
    try:
        check_model_name(cfg.model.name, cfg.model.pretrained)
    except UserError as e:
        problems.append(f"model: {e}")
    try:
        parse_signals(cfg.train.preempt_signals)
    except UserError as e:
        problems.append(str(e))
    if cfg.eval.benchmarks:
        from tripletclip.eval import EVALUATORS  # only when asked: the evaluators are a large import

        unknown = [b for b in cfg.eval.benchmarks if b.split(":", 1)[0] not in EVALUATORS]
        if unknown:
            problems.append(f"eval.benchmarks: unknown {', '.join(unknown)}; known: {', '.join(EVALUATORS.names())}")
    return problems


def check_run(cfg: RunConfig) -> None:
    """Raise ConfigError listing every problem of ``cfg`` (one per line); return quietly when it can run."""
    problems = run_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
