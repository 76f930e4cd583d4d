"""The world benchmark folder: SugarCrepe-format JSON per category, Winoground-format groups, retrieval, manifest.

Layout (docs/methods.md section 4.9, read by :mod:`tripletclip.eval`):

- ``images/<name>.png``: every benchmark image (positives and rendered negatives), lossless PNG.
- ``sugarcrepe/<category>.json``: SugarCrepe's own format (arXiv 2306.14610, RAIVNLab/sugar-crepe ``data/``):
  ``{"<id>": {"filename", "caption", "negative_caption"}}`` plus ``split`` ("seen" | "heldout"), so that
  external SugarCrepe scripts run unchanged with the image root at ``images/``.
- ``winoground/examples.jsonl``: Winoground's fields (``id, image_0, image_1, caption_0, caption_1, tag,
  secondary_tag, num_main_preds, collapsed_tag``; image names without extension) plus ``split``; one group per
  (x, y), (x', y') whose captions are each false for the other image (so add-edits, whose y stays true for x',
  never form groups). ``tag`` is the edit type; ``collapsed_tag`` is Object / Attribute / Relation.
- ``retrieval.json``: Karpathy / ARO style ``[{"image": "<name>.png", "caption": [...]}]``.
- ``scenes.jsonl``: the scene graph of every image (``{"image", "scene"}``), for analyses and re-rendering.
- ``manifest.json``: counts per category and split, seed, generator version, world spec, sha256 of each file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tripletclip.utils.files import sha256_file, write_json_atomic, write_jsonl_atomic
from tripletclip.world.generate import SUGARCREPE_TYPES, WorldGenerator
from tripletclip.world.grammar import CaptionStyle, sample_description
from tripletclip.world.rand import Rand
from tripletclip.world.render import encode_image
from tripletclip.world.scene import sample_scene
from tripletclip.world.vocab import WorldSpec

BENCH_FORMAT = "tripletclip-world-bench/1"
COLLAPSED_TAG = {"replace_obj": "Object", "swap_obj": "Object", "add_obj": "Object", "replace_att": "Attribute",
                 "swap_att": "Attribute", "add_att": "Attribute", "replace_rel": "Relation"}
# retrieval captions name every object with its colour, so that most captions pick out one image
RETRIEVAL_STYLE = CaptionStyle(p_all_objects=1.0, p_colour=1.0, p_texture=0.5, p_size=0.5, p_relation=0.5)


@dataclass(frozen=True)
class BenchTask:
    """One unit of benchmark work (picklable, so that worker processes can run it)."""

    kind: str  # "sugarcrepe" | "retrieval"
    spec: WorldSpec
    image_size: int
    seed: int
    images_dir: str
    category: str = ""
    split: str = ""
    count: int = 0
    start: int = 0
    n_captions: int = 3


def run_bench_task(task: BenchTask) -> tuple[str, str, list[dict[str, Any]], dict[str, int]]:
    """Generate, render and write the images of one task; returns (kind, category, rows, failures)."""
    gen = WorldGenerator(task.spec, image_size=task.image_size)
    images = Path(task.images_dir)
    rows: list[dict[str, Any]] = []
    if task.kind == "retrieval":
        rng = Rand([task.seed, 3, task.start])
        for j in range(task.start, task.start + task.count):
            scene = sample_scene(task.spec, rng)
            caps = [sample_description(scene, rng, gen.fit_style(RETRIEVAL_STYLE)).text for _ in range(task.n_captions)]
            name = f"retrieval-{j:05d}"
            _write(images / f"{name}.png", encode_image(gen.renderer.render(scene, rng), "png"))
            rows.append({"image": f"{name}.png", "caption": caps, "scene": scene.to_json()})
        return task.kind, "", rows, {}
    cat_index = SUGARCREPE_TYPES.index(task.category)
    rng = Rand([task.seed, 2, cat_index, 0 if task.split == "seen" else 1])
    for j in range(task.count):
        t = gen.triplet(rng, types=[task.category], split=task.split)
        if not t.negatives:
            continue  # counted in gen.stats.failed
        neg = t.negatives[0]
        x, (xn,) = gen.render(t, rng)
        base = f"{task.category}-{task.split}-{j:05d}"
        _write(images / f"{base}-pos.png", encode_image(x, "png"))
        _write(images / f"{base}-neg.png", encode_image(xn, "png"))
        rows.append({
            "filename": f"{base}-pos.png",
            "caption": t.caption.text,
            "negative_caption": neg.text,
            "split": task.split,
            "negative_filename": f"{base}-neg.png",
            "positive_true_for_negative": neg.positive_true_for_negative,
            "scene": t.scene.to_json(),
            "negative_scene": neg.scene.to_json(),
        })
    return task.kind, task.category, rows, dict(gen.stats.failed)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def bench_tasks(spec: WorldSpec, bench_dir: Path, n_bench: int, n_retrieval: int, seed: int, image_size: int,
                retrieval_chunk: int = 250) -> list[BenchTask]:
    """The tasks of a benchmark: per category a seen and (if the spec holds out pairs) a held-out task."""
    images = str(bench_dir / "images")
    n_held = n_bench // 2 if spec.heldout_pairs else 0
    tasks = []
    for cat in SUGARCREPE_TYPES:
        for split, count in (("seen", n_bench - n_held), ("heldout", n_held)):
            if count:
                tasks.append(BenchTask("sugarcrepe", spec, image_size, seed, images, cat, split, count))
    for start in range(0, n_retrieval, retrieval_chunk):
        tasks.append(BenchTask("retrieval", spec, image_size, seed, images, start=start,
                               count=min(retrieval_chunk, n_retrieval - start)))
    return tasks


def write_bench(bench_dir: Path, results: Sequence[tuple[str, str, list[dict[str, Any]], dict[str, int]]],
                spec: WorldSpec, seed: int, image_size: int, version: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the annotation files and the manifest from task results (images are already written)."""
    (bench_dir / "sugarcrepe").mkdir(parents=True, exist_ok=True)
    (bench_dir / "winoground").mkdir(parents=True, exist_ok=True)
    per_cat: dict[str, list[dict[str, Any]]] = {c: [] for c in SUGARCREPE_TYPES}
    retrieval: list[dict[str, Any]] = []
    failed: dict[str, int] = {}
    for kind, cat, rows, fails in results:
        if kind == "retrieval":
            retrieval += rows
        else:
            per_cat[cat] += rows
        for k, v in fails.items():
            failed[k] = failed.get(k, 0) + v
    scenes = [{"image": r["filename"], "scene": r["scene"]} for rows in per_cat.values() for r in rows]
    scenes += [{"image": r["negative_filename"], "scene": r["negative_scene"]} for rows in per_cat.values() for r in rows]
    scenes += [{"image": r["image"], "scene": r.pop("scene")} for r in retrieval]
    write_jsonl_atomic(bench_dir / "scenes.jsonl", scenes)
    counts: dict[str, dict[str, int]] = {}
    wino: list[dict[str, Any]] = []
    wino_counts: dict[str, dict[str, int]] = {}
    for cat, rows in per_cat.items():
        table = {}
        for i, r in enumerate(rows):
            table[str(i)] = {"filename": r["filename"], "caption": r["caption"],
                             "negative_caption": r["negative_caption"], "split": r["split"]}
            if not r["positive_true_for_negative"]:
                wino.append({
                    "id": len(wino), "image_0": r["filename"][:-4], "image_1": r["negative_filename"][:-4],
                    "caption_0": r["caption"], "caption_1": r["negative_caption"], "tag": cat,
                    "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": COLLAPSED_TAG[cat],
                    "split": r["split"],
                })
                wc = wino_counts.setdefault(cat, {})
                wc[r["split"]] = wc.get(r["split"], 0) + 1
        write_json_atomic(bench_dir / "sugarcrepe" / f"{cat}.json", table)
        c = counts.setdefault(cat, {"seen": 0, "heldout": 0})
        for r in rows:
            c[r["split"]] += 1
    write_jsonl_atomic(bench_dir / "winoground" / "examples.jsonl", wino)
    write_json_atomic(bench_dir / "retrieval.json", retrieval)
    files = sorted(p for p in bench_dir.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")
                   and p.name != "manifest.json")
    images = sorted((bench_dir / "images").glob("*.png"))
    img_hash = hashlib.sha256()
    for p in images:
        img_hash.update(f"{p.name} {sha256_file(p)}\n".encode())
    manifest = {
        "format": BENCH_FORMAT,
        "generator_version": version,
        "seed": seed,
        "image_size": image_size,
        "spec": spec.to_json(),
        "categories": list(SUGARCREPE_TYPES),
        "counts": counts,
        "winoground_counts": wino_counts,
        "retrieval": {"images": len(retrieval), "captions": sum(len(r["caption"]) for r in retrieval)},
        "failed_negatives": failed,
        "files": {str(p.relative_to(bench_dir)): sha256_file(p) for p in files},
        "images": {"count": len(images), "sha256": img_hash.hexdigest(),
                   "rule": "sha256 over lines '<file name> <sha256 of file>' in sorted name order"},
        "protocol": "SugarCrepe: correct iff s(image, caption) > s(image, negative_caption), ties wrong; "
                    "category mean = unweighted mean of the seven categories",
        **extra,
    }
    write_json_atomic(bench_dir / "manifest.json", manifest)
    return manifest
