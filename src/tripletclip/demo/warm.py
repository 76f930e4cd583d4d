"""The small-pool warm start (docs/world_experiments.md sections 14-15, docs/preregistration.md stage 8).

Relation hard negatives sat on a plateau for 400-500 steps when every batch drew fresh positives; drawing the
first steps from a small pool of positives left it (section 12's relation pool, section 15 through the real
trainer). A warm-started run trains in two phases at the run's own compute (steps x batch):

1. the run's own config for ``steps`` steps on a *warm world*: ``rows`` positives of the demo world's spec, edit
   types, ``n_neg`` and batch blocks, new scenes (scene seed = world seed + ``seed_offset``);
2. from phase 1's weights (``model.pretrained`` = its run folder, ``model.logit_scale=0``: the learned
   temperature is kept, not reset to the preset's start) the rest of the run's steps on the demo's shards; the
   optimiser restarts, with its warm-up.

One implementation for the demo (``warm_start`` in a demo preset: demo/run.py, demo/jobs.py) and for
``benchmarks/warm_start_trainer.py``, so that both train bitwise the same weights for the same settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

WARM_DIR = "warm"  # the warm world inside the demo's world folder (OUT/world/warm; utils/ownership.py)
WARM_SUFFIX = "-warm"  # phase 1's run folder beside the run's: runs/<method>-seed<s>-warm


def build_warm_world(out: Path, rows: int, seed: int, spec_json: dict[str, Any], image_size: int, n_neg: int,
                     edit_types: Sequence[str], batch_blocks: int, progress: bool = False) -> dict[str, Any]:
    """The warm world's training shards in ``out`` (no benchmark): ``rows`` positives drawn with scene ``seed``
    (the world seed plus the offset), the main world's spec, negatives and blocks; its world.json summary."""
    from tripletclip.demo.worlddata import build_world_data

    # NOTE: one process: the warm world is small, and one builder call (same arguments) is what makes the
    # demo's and the script's warm worlds the same bytes
    return build_world_data(out, rows, seed, spec_json, image_size, workers=1, n_neg=n_neg,
                            edit_types=edit_types, progress=progress, batch_blocks=batch_blocks)


def world_args(world: dict[str, Any], spec_json: dict[str, Any], offset: int) -> dict[str, Any]:
    """:func:`build_warm_world`'s keyword arguments but ``out``, ``rows`` and ``progress``, from the main world's
    summary (world.json, as demo_meta.json's ``world`` holds it) and spec."""
    return {"seed": int(world["seed"]) + offset, "spec_json": spec_json, "image_size": int(world["image_size"]),
            "n_neg": int(world["train"]["n_neg"]), "edit_types": list(world["train"]["edit_types"]),
            "batch_blocks": int(world.get("batch_blocks") or 0)}


def phase_one(run: dict[str, Any], warm_shards: str, steps: int, output_dir: str | Path,
              name: str) -> dict[str, Any]:
    """Phase 1's run config: the run's own ``run`` (a RunConfig as a dict) on the warm shards for ``steps``."""
    from tripletclip.config.load import deep_merge

    return deep_merge(run, {"data": {"train": warm_shards},
                            "train": {"steps": steps, "output_dir": str(output_dir), "name": name}})


def phase_two(run: dict[str, Any], warm_run: str | Path, steps: int, output_dir: str | Path,
              name: str) -> dict[str, Any]:
    """Phase 2's run config: ``run`` from phase 1's weights (``warm_run``) with its learned temperature kept
    (``model.logit_scale=0``: the trainer leaves the loaded scale), for ``steps`` (the rest)."""
    from tripletclip.config.load import deep_merge

    return deep_merge(run, {"model": {"pretrained": str(warm_run), "logit_scale": 0.0},
                            "train": {"steps": steps, "output_dir": str(output_dir), "name": name}})


def train_phase(run: dict[str, Any], where: str) -> Path:
    """Train one phase's run config; its run folder. The callers drop its optimiser state
    (``demo.jobs.drop_train_state``: ``model.pretrained`` reads the weights only, and nothing resumes a phase
    partway); not here, so that demo/jobs.py, which runs the phases, is not imported back (no import cycle)."""
    from tripletclip.config import config_from_dict
    from tripletclip.train import train

    return Path(train(config_from_dict(run, where=where))["run_dir"])


def warm_world_dir(out: Path) -> Path:
    """The demo's warm world: ``OUT/world/warm`` (owned by the main world: replaced with it)."""
    return out / "world" / WARM_DIR


def ensure_warm_world(cfg: Any, main: dict[str, Any], spec_json: dict[str, Any], out: Path, progress: bool,
                      state: Any) -> dict[str, Any]:
    """The demo's warm world (``cfg.warm_start`` on): re-used where a resumed demo completed it with these
    settings (``state``: demo/resume.py's Resume), else built in a process of its own like the main world
    (``main``: the main world's summary, which fixes spec, image size, negatives and blocks)."""
    from tripletclip.demo.worlddata import isolated

    args = world_args(main, spec_json, cfg.warm_start.seed_offset)
    folder = warm_world_dir(out)
    summary = state.world(folder, {"seed": args["seed"], "image_size": args["image_size"], "spec": spec_json,
                                   "batch_blocks": args["batch_blocks"], "train.n_neg": args["n_neg"],
                                   "train.edit_types": args["edit_types"], "train.samples": cfg.warm_start.rows},
                          label="warm world")
    if summary is None:
        summary = isolated(build_warm_world, folder, cfg.warm_start.rows, progress=progress, **args)
    return summary


def warm_jobs(run: dict[str, Any], warm_shards: str, steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(phase 1, phase 2) run configs of one demo job whose run config is ``run`` (a resolved RunConfig dict:
    ``train.output_dir`` and ``train.name`` name its run folder, which phase 2 keeps)."""
    from tripletclip.config import config_from_dict, config_to_dict

    train = run["train"]
    name, runs_dir = train["name"], train["output_dir"]
    first = phase_one(run, warm_shards, steps, runs_dir, name + WARM_SUFFIX)
    second = phase_two(run, Path(runs_dir) / (name + WARM_SUFFIX), train["steps"] - steps, runs_dir, name)
    where = f"demo run {name} (warm start)"  # typed: the job records resolved configs, as a plain run's
    return config_to_dict(config_from_dict(first, where=where)), config_to_dict(config_from_dict(second, where=where))


def meta_block(cfg: Any, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """demo_meta.json's ``warm_start``: the setting, the warm world's summary and its build time."""
    from dataclasses import asdict

    return {**asdict(cfg.warm_start), "world": summary, "build_s": seconds}


def method_block(cfg: Any, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """results.json's ``warm_start`` in a method's entry: the setting and, per seed, both phases' steps and
    training seconds (not ``per_seed``: the report would take the block for a benchmark split)."""
    from dataclasses import asdict

    return {**asdict(cfg.warm_start),
            "phases_by_seed": {str(r["seed"]): {k: r["warm_start"][k] for k in ("steps", "train_s")}
                         for r in runs if r.get("warm_start")}}
