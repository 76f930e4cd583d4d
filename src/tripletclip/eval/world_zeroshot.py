"""Forgetting on the embedded world: zero-shot classification of shape and colour, base vs fine-tuned.

The world's own ImageNet: every benchmark image that shows exactly one object (``scenes.jsonl`` of a world
benchmark, tripletclip.world.eval_set) is classified by shape among the spec's shapes and by colour among its
colours. Prompts run over the world vocabulary with CLIP's prompt ensembling (arXiv 2103.00020, Sec. 3.1.4):
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
from tripletclip.world.vocab import article

TEMPLATES = ("{a} {c} {s}", "a photo of {a} {c} {s}")
METRICS = ("shape", "colour", "mean")


def single_object_images(bench_dir: Path) -> list[tuple[str, str, str]]:
    """(image file, shape, colour) of every benchmark image with exactly one object, in file-name order."""
    path = bench_dir / "scenes.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: missing; zero-shot on the world needs a world benchmark folder "
                         "(tripletclip world build --out DIR, then DIR/bench)")
    seen: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            objects = row["scene"]["objects"]
            if len(objects) == 1:
                seen[row["image"]] = (objects[0]["shape"], objects[0]["colour"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: line {n} is not a scene record ({e}); rebuild the world benchmark") from None
    return [(name, *seen[name]) for name in sorted(seen)]


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
    spec = json.loads((bench_dir / "manifest.json").read_text())["spec"]
    shapes, colours = list(spec["shapes"]), list(spec["colours"])
    rows = [r for r in single_object_images(bench_dir) if r[1] in shapes and r[2] in colours]
    if not rows:
        raise InputError(f"{bench_dir}: no single-object image to classify; build the world with more benchmark rows")
    images = enc.encode_images([bench_dir / "images" / name for name, _, _ in rows]).float()
    images = torch.nn.functional.normalize(images, dim=-1)
    shape_w, colour_w = class_weights(enc, shapes, colours)
    shape_t = torch.tensor([shapes.index(s) for _, s, _ in rows])
    colour_t = torch.tensor([colours.index(c) for _, _, c in rows])
    shape = 100.0 * strict_top1(images @ shape_w.t(), shape_t).double().mean().item()
    colour = 100.0 * strict_top1(images @ colour_w.t(), colour_t).double().mean().item()
    return {"shape": shape, "colour": colour, "mean": 0.5 * (shape + colour), "n_images": len(rows),
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
