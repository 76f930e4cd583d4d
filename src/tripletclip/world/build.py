"""``build_world``: TripletData training shards and the benchmark folder of the embedded world.

``out_dir/train/``: webdataset shards written with :class:`tripletclip.data.shards.ShardWriter` (image, caption,
negative captions with their edit types, negative images rendered from the edited scenes, and the scene graphs in
the JSON meta). ``out_dir/bench/``: see :mod:`tripletclip.world.eval_set`. ``out_dir/world.json``: the spec, seed,
counts, skipped negatives and timings.

Work is cut into chunks seeded by (seed, chunk index), so the output is identical for any number of worker
processes; shard bytes are reproducible (ShardWriter fixes tar metadata).
"""
from __future__ import annotations

import inspect
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from tripletclip.errors import ConflictError, InputError
from tripletclip.utils.diskfull import write_guard
from tripletclip.utils.files import write_json_atomic
from tripletclip.utils.lock import FolderLock
from tripletclip.utils.ownership import WORLD, claim_output
from tripletclip.utils.progress import progress_bar
from tripletclip.world.eval_set import bench_tasks, run_bench_task, write_bench
from tripletclip.world.generate import SUGARCREPE_TYPES, GeneratorStats, Triplet, WorldGenerator
from tripletclip.world.grammar import CaptionStyle
from tripletclip.world.mirror import mirror_twin
from tripletclip.world.rand import Rand
from tripletclip.world.render import encode_image
from tripletclip.world.vocab import BACKGROUNDS, COLOURS, SHAPES, SIZES, TEXTURES, WorldSpec, choose_heldout_pairs

WORLD_VERSION = "world/1"
_TRAIN_CHUNK = 200
_MIRROR_ATTEMPTS = 50  # captions drawn for a mirror pair's first sample (about 1 in 3 states a relation)


@dataclass(frozen=True)
class TrainChunk:
    spec: WorldSpec
    style: CaptionStyle
    image_size: int
    seed: int
    index: int
    start: int
    count: int
    n_neg: int
    n_captions: int
    edit_types: tuple[str, ...]
    image_format: str
    mirror_pairs: float = 0.0  # see build_world


def run_train_chunk(task: TrainChunk) -> tuple[list[dict[str, Any]], GeneratorStats]:
    """Samples (ShardWriter.write keyword arguments, images already encoded) of one chunk."""
    gen = WorldGenerator(task.spec, task.style, task.image_size, task.edit_types)
    rng = Rand([task.seed, 1, task.index])
    out: list[dict[str, Any]] = []
    end = task.start + task.count
    i = task.start
    while i < end:
        # a unit of two samples: with probability mirror_pairs a mirror pair (its first caption drawn among those
        # that state a relation), else independent samples. A pair at an even offset fills one aligned unit, so
        # an even batch read in order never splits it (chunks start at multiples of _TRAIN_CHUNK, which is even)
        pair = bool(task.mirror_pairs) and (i - task.start) % 2 == 0 and i + 1 < end \
            and rng.random() < task.mirror_pairs
        t = gen.triplet(rng, n_neg=task.n_neg, n_captions=task.n_captions)
        twin = mirror_twin(t.scene, t.caption) if pair else None
        for _ in range(_MIRROR_ATTEMPTS if pair else 0):
            if twin is not None:
                break
            t = gen.triplet(rng, n_neg=task.n_neg, n_captions=task.n_captions)
            twin = mirror_twin(t.scene, t.caption)
        out.append(_sample(gen, t, i, rng, task.image_format))
        i += 1
        if twin is not None:
            out.append(_sample(gen, Triplet(twin[0], twin[1], [], split=t.split), i, rng, task.image_format,
                               twin_of=f"{i - 1:08d}"))
            i += 1
    return out, gen.stats


def _sample(gen: WorldGenerator, t: Triplet, i: int, rng: Rand, image_format: str,
            twin_of: Optional[str] = None) -> dict[str, Any]:
    x, xs = gen.render(t, rng)
    meta: dict[str, Any] = {"world": t.meta()}
    if twin_of is not None:
        meta["mirror_twin_of"] = twin_of
    return {
        "key": f"{i:08d}",
        "image": encode_image(x, image_format),
        "caption": t.captions,
        "neg_captions": [n.text for n in t.negatives],
        "neg_types": [n.edit_type for n in t.negatives],
        "neg_images": [encode_image(a, image_format) for a in xs],
        "meta": meta,
    }


# Named world specs (make_spec keyword arguments). "full": every shape, colour, texture and background.
# "demo": the world of `tripletclip demo`, built so that perception is easy and binding is the hard part
# (docs/world_experiments.md, section 2): five clearly distinct shapes, five well separated colours, one size,
# one texture, two large objects per scene on an unnamed grey ground. Half the objects a caption names come
# without their colour, so that in-batch contrast needs shapes (else colour alone tells most captions apart and
# shapes are learned late); captions differ in which objects, attributes and relations they state.
SPEC_PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "demo": {
        "heldout_pairs": 4,
        "shapes": ("circle", "square", "triangle", "star", "cross"),
        "colours": ("red", "yellow", "green", "blue", "purple"),
        "textures": ("plain",),
        "sizes": ("large",),
        "backgrounds": (),
        "min_objects": 2,
        "max_objects": 2,
        "object_scale": 1.3,
        "ground_contrast": 0.35,
        "p_colour": 0.5,
    },
}


def spec_preset(name: str, seed: int = 0, **overrides: Any) -> WorldSpec:
    """The world spec of a named preset (see SPEC_PRESETS), with keyword overrides of make_spec."""
    if name not in SPEC_PRESETS:
        raise InputError(f"unknown world spec '{name}'; choose from {', '.join(SPEC_PRESETS)}")
    known = set(inspect.signature(make_spec).parameters) - {"seed"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise InputError(f"world spec: unknown setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return make_spec(seed=seed, **{**SPEC_PRESETS[name], **overrides})


def make_spec(heldout_pairs: int = 8, seed: int = 0, shapes: Sequence[str] = SHAPES,
              colours: Sequence[str] = tuple(COLOURS), textures: Sequence[str] = TEXTURES,
              sizes: Sequence[str] = SIZES, backgrounds: Sequence[str] = tuple(BACKGROUNDS),
              min_objects: int = 1, max_objects: int = 3, object_scale: float = 1.0, ground_contrast: float = 1.0,
              clutter: int = 0, p_colour: Optional[float] = None) -> WorldSpec:
    """A world spec with ``heldout_pairs`` colour-shape pairs withheld (chosen from the seed)."""
    return WorldSpec(shapes=tuple(shapes), colours=tuple(colours), textures=tuple(textures), sizes=tuple(sizes),
                     backgrounds=tuple(backgrounds), min_objects=min_objects, max_objects=max_objects, object_scale=object_scale,
                     ground_contrast=ground_contrast, clutter=clutter, p_colour=p_colour,
                     heldout_pairs=choose_heldout_pairs(tuple(colours), tuple(shapes), heldout_pairs, seed))


def _imap(fn, tasks: Sequence, workers: int) -> Iterator:
    """Ordered map over tasks, in ``workers`` processes when > 1."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    # NOTE: fork (when available) avoids re-importing in each worker; workers use numpy and PIL only
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks)


def build_world(out_dir: str | Path, n_train: int = 10000, n_bench: int = 400, seed: int = 0, image_size: int = 64,
                n_neg: int = 1, n_captions: int = 1, heldout_pairs: int = 8, n_retrieval: int = 500,
                spec: Optional[WorldSpec] = None, style: CaptionStyle = CaptionStyle(),
                train_edit_types: Sequence[str] = SUGARCREPE_TYPES, workers: int = 1, image_format: str = "png",
                shard_size: int = 2000, overwrite: bool = False, progress: bool = True,
                batch_blocks: int = 0, mirror_pairs: float = 0.0) -> dict[str, Any]:
    """Write ``out_dir/train`` (``n_train`` triplets with ``n_neg`` negatives each) and ``out_dir/bench``
    (``n_bench`` rows per SugarCrepe category, half seen and half held-out, plus Winoground groups and
    ``n_retrieval`` retrieval images). Returns the summary also written to ``out_dir/world.json``.
    ``batch_blocks``: order the training triplets in blocks of that many with no mutual colour swap in a block,
    shards holding whole blocks (:mod:`tripletclip.world.batches`).
    ``mirror_pairs``: the fraction of aligned units of two samples that hold a caption stating a relation and its
    mirror twin (:mod:`tripletclip.world.mirror`); positives only (``n_neg=0``). Batches of even size read in
    order keep both samples of a pair."""
    out = Path(out_dir)
    for name, v, lo in (("n_train", n_train, 0), ("n_bench", n_bench, 0), ("n_neg", n_neg, 0),
                        ("n_captions", n_captions, 1), ("n_retrieval", n_retrieval, 0), ("workers", workers, 1)):
        if v < lo:
            raise InputError(f"build_world: {name}={v} must be >= {lo}")
    if not 0.0 <= mirror_pairs <= 1.0:
        raise InputError(f"build_world: mirror_pairs={mirror_pairs} must be in [0, 1]")
    if mirror_pairs and (n_neg or batch_blocks):
        raise InputError("build_world: mirror_pairs pairs positives only (n_neg=0, batch_blocks=0)")
    if n_neg > len(train_edit_types):
        raise InputError(f"build_world: n_neg={n_neg} exceeds the {len(train_edit_types)} training edit types")
    # one build per folder at a time, and only into a new folder or a world: --overwrite removes what a build
    # wrote, never the user's files (utils/ownership.py)
    lock = FolderLock(out, "another world build", "use another --out")
    try:
        if claim_output(out, WORLD, overwrite) and not overwrite:
            raise ConflictError(f"{out}: already holds a world; pass --overwrite (overwrite=True) to replace it, or "
                                "choose a new folder")
        with write_guard(out, "the world", "the partial world in it is unusable until a build with --overwrite"):
            return _write_world(out, n_train, n_bench, seed, image_size, n_neg, n_captions, n_retrieval,
                                spec or make_spec(heldout_pairs, seed), style, train_edit_types, workers, image_format,
                                shard_size, overwrite, progress, batch_blocks, mirror_pairs)
    finally:
        lock.release()


def _write_world(out: Path, n_train: int, n_bench: int, seed: int, image_size: int, n_neg: int, n_captions: int,
                 n_retrieval: int, spec: WorldSpec, style: CaptionStyle, train_edit_types: Sequence[str], workers: int,
                 image_format: str, shard_size: int, overwrite: bool, progress: bool,
                 batch_blocks: int = 0, mirror_pairs: float = 0.0) -> dict[str, Any]:
    from tripletclip.data.shards import ShardWriter  # imports torch: only when actually building

    bench_dir = out / "bench"
    (bench_dir / "images").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train_tasks = [TrainChunk(spec, style, image_size, seed, c, s, min(_TRAIN_CHUNK, n_train - s), n_neg, n_captions,
                              tuple(train_edit_types), image_format, mirror_pairs)
                   for c, s in enumerate(range(0, n_train, _TRAIN_CHUNK))]
    b_tasks = bench_tasks(spec, bench_dir, n_bench, n_retrieval, seed, image_size)
    stats = GeneratorStats()
    timings: dict[str, float] = {}
    with progress_bar(unit="triplets", enabled=progress) as bar:
        t0 = time.perf_counter()
        job = bar.add_task("world train", total=n_train)
        if batch_blocks:  # whole blocks per shard, so that a shard order shuffled per epoch keeps every block
            shard_size = max(batch_blocks, shard_size // batch_blocks * batch_blocks)
        if mirror_pairs:  # even shards: a shard order shuffled per epoch keeps every pair in one aligned unit
            shard_size = max(2, shard_size // 2 * 2)
        n_twins = 0
        with ShardWriter(out / "train", prefix="train", shard_size=shard_size, image_format=image_format,
                         overwrite=overwrite) as writer:
            held: list[dict[str, Any]] = []
            for samples, st in _imap(run_train_chunk, train_tasks, workers):
                for s in samples:
                    n_twins += "mirror_twin_of" in s["meta"]
                    if batch_blocks:
                        held.append(s)
                    else:
                        writer.write(**s)
                stats.merge(st)
                bar.update(job, advance=len(samples))
            if batch_blocks:
                from tripletclip.world.batches import order_without_mutual_swaps, swap_key

                for i in order_without_mutual_swaps([swap_key(s["caption"][0]) for s in held], batch_blocks):
                    writer.write(**held[i])
        timings["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        total = sum(t.count for t in b_tasks)
        job = bar.add_task("world bench", total=total) if total else None  # no bar for a world without one
        results = []
        for r in _imap(run_bench_task, b_tasks, workers):
            results.append(r)
            if job is not None:
                bar.update(job, advance=len(r[2]))
        manifest = write_bench(bench_dir, results, spec, seed, image_size, WORLD_VERSION,
                               extra={"n_bench_requested": n_bench})
        timings["bench_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary = {
        "format": "tripletclip-world/1",
        "batch_blocks": batch_blocks,
        "mirror_pairs": mirror_pairs,
        "generator_version": WORLD_VERSION,
        "seed": seed,
        "image_size": image_size,
        "spec": spec.to_json(),
        "style": asdict(style),
        "train": {"samples": writer.manifest["total_samples"] if writer.manifest else 0, "n_neg": n_neg,
                  "n_captions": n_captions, "edit_types": list(train_edit_types), "mirror_twins": n_twins,
                  "edit_type_counts": writer.manifest.get("edit_types", {}) if writer.manifest else {},
                  "missing_negatives": stats.failed, "attempts": stats.attempts, "scenes": stats.scenes,
                  "image_format": image_format, "dataset_hash": writer.manifest.get("dataset_hash") if writer.manifest else None},
        "bench": {"counts": manifest["counts"], "winoground_counts": manifest["winoground_counts"],
                  "retrieval": manifest["retrieval"], "failed_negatives": manifest["failed_negatives"]},
        "workers": workers,
        "timings": timings,
        "train_triplets_per_s": n_train / timings["train_s"] if timings["train_s"] > 0 else None,
    }
    write_json_atomic(out / "world.json", summary)
    return summary


def train_shards(out_dir: str | Path) -> str:
    """The training shards of a built world as a ``DataConfig.train`` value (paths joined by "::")."""
    paths = sorted(str(p) for p in (Path(out_dir) / "train").glob("train-*.tar"))
    if not paths:
        raise FileNotFoundError(f"{out_dir}/train: no train-*.tar shards; run `tripletclip world build --out {out_dir}`")
    return "::".join(paths)
