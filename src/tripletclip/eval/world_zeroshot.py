"""Forgetting on the embedded world: zero-shot classification of shape and colour, base vs fine-tuned.

The world's own ImageNet: every object of the benchmark's scenes (``scenes.jsonl`` of a world benchmark,
tripletclip.world.eval_set), cropped to a square of 1.25 radii around its centre (the demo's scenes always hold
two objects), is classified by shape among the spec's shapes and by colour among its colours. Prompts run over the world vocabulary with CLIP's prompt ensembling (arXiv 2103.00020, Sec. 3.1.4):
the weight of shape s is the renormalised mean of the normalised embeddings of "<a/an> <c> <s>" and
"a photo of <a/an> <c> <s>" over every colour c (and symmetrically for colours), so no class is named with a
word the captions never use. Correct iff the true class scores strictly above every other class (ties count
against the model, as in tripletclip.eval.zeroshot). Accuracies in percent.

:func:`attach_zeroshot` writes, into each method entry of the demo's results.json, a ``zeroshot`` block with the
per-seed values, their means, and the change against the base (fine-tuning regime): the forgetting that
belongs next to each objective's compositional gain.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import torch

from tripletclip.errors import InputError
from tripletclip.eval.encoder import ImageCrop
from tripletclip.world.vocab import article

TEMPLATES = ("{a} {c} {s}", "a photo of {a} {c} {s}")
MARGIN = 1.25  # crop half-side in object radii: the whole object and a little ground
MAX_CROPS = 1000  # bounds the evaluation's cost on large benchmarks
METRICS = ("shape", "colour", "mean")


def object_crops(bench_dir: Path, image_size: int, limit: int = MAX_CROPS) -> list[tuple[ImageCrop, str, str]]:
    """(crop, shape, colour) of every object of the benchmark's scenes, at most ``limit`` (evenly spaced, in
    (file name, object) order, so the set is the same for every model evaluated on this benchmark)."""
    path = bench_dir / "scenes.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: missing; zero-shot on the world needs a world benchmark folder "
                         "(tripletclip world build --out DIR, then DIR/bench)")
    found: dict[tuple[str, int], tuple[ImageCrop, str, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            for i, o in enumerate(row["scene"]["objects"]):
                half = MARGIN * float(o["r"]) * image_size
                box = (float(o["x"]) * image_size - half, float(o["y"]) * image_size - half, 2 * half, 2 * half)
                found[(row["image"], i)] = (ImageCrop(bench_dir / "images" / row["image"], box), o["shape"], o["colour"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: line {n} is not a scene record ({e}); rebuild the world benchmark") from None
    items = [found[k] for k in sorted(found)]
    step = max(1, -(-len(items) // limit))
    return items[::step][:limit]


def class_weights(enc: Any, shapes: Sequence[str], colours: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(shape weights [S,D], colour weights [C,D]) from prompts over every (colour, shape) of the vocabulary."""
    prompts = [t.format(a=article(c), c=c, s=s) for c in colours for s in shapes for t in TEMPLATES]
    emb = enc.encode_texts(prompts).float()
    emb = torch.nn.functional.normalize(emb, dim=-1).view(len(colours), len(shapes), len(TEMPLATES), -1)
    shape_w = torch.nn.functional.normalize(emb.mean(dim=(0, 2)), dim=-1)
    colour_w = torch.nn.functional.normalize(emb.mean(dim=(1, 2)), dim=-1)
    return shape_w, colour_w


def strict_top1(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """True where the target's score is strictly above every other class's (a tie is wrong)."""
    true = scores.gather(1, target[:, None])
    return (scores >= true).sum(1) == 1


def world_zeroshot(enc: Any, bench_dir: str | Path) -> dict[str, Any]:
    """Shape and colour zero-shot accuracy (percent) on the single-object images of a world benchmark."""
    bench_dir = Path(bench_dir)
    manifest = json.loads((bench_dir / "manifest.json").read_text())
    shapes, colours = list(manifest["spec"]["shapes"]), list(manifest["spec"]["colours"])
    rows = [r for r in object_crops(bench_dir, int(manifest["image_size"])) if r[1] in shapes and r[2] in colours]
    if not rows:
        raise InputError(f"{bench_dir}: no object to classify; build the world with more benchmark rows")
    images = enc.encode_images([crop for crop, _, _ in rows]).float()
    images = torch.nn.functional.normalize(images, dim=-1)
    shape_w, colour_w = class_weights(enc, shapes, colours)
    shape_t = torch.tensor([shapes.index(s) for _, s, _ in rows])
    colour_t = torch.tensor([colours.index(c) for _, _, c in rows])
    shape = 100.0 * strict_top1(images @ shape_w.t(), shape_t).double().mean().item()
    colour = 100.0 * strict_top1(images @ colour_w.t(), colour_t).double().mean().item()
    return {"shape": shape, "colour": colour, "mean": 0.5 * (shape + colour), "n_objects": len(rows),
            "chance": {"shape": 100.0 / len(shapes), "colour": 100.0 / len(colours)},
            "prompts": list(TEMPLATES), "rule": "strict top-1 (ties wrong), prompt ensemble over the vocabulary"}


def zeroshot_block(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-seed values and means of one method's runs (each run record carries ``zeroshot``)."""
    per_seed = {str(r["seed"]): {k: r["zeroshot"][k] for k in METRICS} for r in runs if r.get("zeroshot")}
    block: dict[str, Any] = {"per_seed": per_seed}
    if per_seed:
        block.update({k: statistics.fmean(v[k] for v in per_seed.values()) for k in METRICS})
    return block


def attach_zeroshot(document: MutableMapping[str, Any], results: Sequence[Mapping[str, Any]]) -> None:
    """Add a ``zeroshot`` block to every method entry of results.json (and the base's), with the change against
    the base's mean per seed and on average (points) when the run has a base."""
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    base_block = zeroshot_block(by_method.get("base", []))
    if document.get("base") and base_block["per_seed"]:
        document["base"]["zeroshot"] = base_block
    for method, runs in by_method.items():
        if method == "base" or not isinstance(document.get(method), dict):
            continue
        block = zeroshot_block(runs)
        if base_block["per_seed"] and block["per_seed"]:
            block["change_vs_base"] = {k: block[k] - base_block[k] for k in METRICS}
            block["change_vs_base"]["per_seed"] = {seed: {k: v[k] - base_block[k] for k in METRICS}
                                                   for seed, v in block["per_seed"].items()}
        document[method]["zeroshot"] = block
