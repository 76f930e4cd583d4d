"""The demo's world data in processes of their own: the training shards and benchmark of a world spec
(:func:`build_world_data`) and :func:`isolated`, which runs a function in a fresh process.

Kept apart from demo/run.py so that demo/warm.py (the warm start's world) and demo/run.py (the demo) both use them
without importing each other.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from pathlib import Path
from typing import Any, Callable, Sequence


def isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a fresh (spawned) process and return its result.

    NOTE: measured, training in a process that had just rendered the world with numpy ran 7x slower
    (51 vs 363 pairs/s) than in a fresh one, so world building and base pretraining get their own processes.
    """
    # an executor, not a Pool: its worker is not a daemon, so build_world may start its own workers
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


def build_world_data(out: Path, n_train: int, seed: int, spec_json: dict[str, Any], image_size: int, workers: int,
                     n_bench: int = 0, n_retrieval: int = 0, n_neg: int = 1, edit_types: Sequence[str] = (),
                     progress: bool = True, batch_blocks: int = 0, mirror_pairs: float = 0.0) -> dict[str, Any]:
    """Training shards (and a benchmark when ``n_bench``) of a world spec; ``seed`` draws the scenes."""
    from tripletclip.world import SUGARCREPE_TYPES, WorldSpec, build_world

    return build_world(out, n_train=n_train, n_bench=n_bench, seed=seed, image_size=image_size, n_neg=n_neg,
                       n_retrieval=n_retrieval, spec=WorldSpec.from_json(spec_json), workers=workers,
                       train_edit_types=tuple(edit_types) or SUGARCREPE_TYPES, overwrite=True, progress=progress,
                       batch_blocks=batch_blocks, mirror_pairs=mirror_pairs)
