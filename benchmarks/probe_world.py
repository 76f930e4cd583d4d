"""Supervised perception probe of the embedded world: can an image tower *see* what the captions talk about?

    python benchmarks/probe_world.py                                  # demo world, world-cnn, 300 steps
    python benchmarks/probe_world.py --model world-resnet-tiny --steps 400 --spec demo --set object_scale=1.3
    python benchmarks/probe_world.py --seed 0 --json probe.json

The tower (from a model config, random init) plus one linear head per task is trained with labels on
two-object scenes of the world (both objects clearly ordered left/right), and tested on fresh scenes:

- ``shape``: the set of shapes present (multi-label, exact set correct);
- ``colour``: the set of colours present (exact set correct);
- ``left_colour``: the colour of the object on the left (binding a position to an attribute);
- ``left_of``: whether the object with the alphabetically first colour is left of the other (a relation).

Contrastive training can only learn what the tower can represent and learn quickly; this probe measures that
directly (docs/world_experiments.md, "Perception probe"). Design choices are made on world seed 0.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tripletclip.models import create_model
from tripletclip.world import Rand, get_renderer, sample_scene, spec_preset


TASKS = ("shape", "colour", "left_colour", "left_of")


def scenes_with_labels(spec: Any, n: int, seed: int, image_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` two-object scenes with distinct colours, ordered left/right, rendered; labels per task."""
    rng = Rand([seed, 77])
    render = get_renderer(image_size, ground_contrast=spec.ground_contrast, clutter=spec.clutter)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    labels = {k: [] for k in ("shape", "colour", "left_colour", "left_of")}
    k = 0
    while k < n:
        scene = sample_scene(spec, rng, n_objects=2)
        a, b = scene.objects
        if abs(a.x - b.x) < 0.1 or a.colour == b.colour:
            continue  # level on x (no left object) or one colour (no "first colour"): not a probe scene
        left, right = (a, b) if a.x < b.x else (b, a)
        images[k] = render.render(scene, rng)
        labels["shape"].append([float(s in (a.shape, b.shape)) for s in spec.shapes])
        labels["colour"].append([float(c in (a.colour, b.colour)) for c in spec.colours])
        labels["left_colour"].append(spec.colours.index(left.colour))
        labels["left_of"].append(int(min(a.colour, b.colour) == left.colour))
        k += 1
    return images, {k: np.array(v) for k, v in labels.items()}


class Probe(nn.Module):
    def __init__(self, tower: nn.Module, dim: int, n_shapes: int, n_colours: int) -> None:
        super().__init__()
        self.tower = tower
        self.heads = nn.ModuleDict({"shape": nn.Linear(dim, n_shapes), "colour": nn.Linear(dim, n_colours),
                                    "left_colour": nn.Linear(dim, n_colours), "left_of": nn.Linear(dim, 2)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.tower(x)
        return {k: h(f) for k, h in self.heads.items()}


def loss_and_correct(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor], tasks: Sequence[str] = TASKS
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = torch.zeros(())
    correct = {}
    for k in tasks:
        if k in ("shape", "colour"):  # sets: multi-label
            loss = loss + nn.functional.binary_cross_entropy_with_logits(out[k], y[k].float())
            correct[k] = ((out[k] > 0).float() == y[k]).all(dim=1)
        else:
            loss = loss + nn.functional.cross_entropy(out[k], y[k])
            correct[k] = out[k].argmax(1) == y[k]
    return loss, correct


def to_tensor(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v) if v[:1] in "[{0123456789-.tf" else v
    spec = spec_preset(args.spec, seed=args.seed, **overrides)
    bundle = create_model(args.model)
    size = bundle.image_size
    tower = bundle.model.visual
    dim = bundle.model.text_projection.shape[1] if hasattr(bundle.model, "text_projection") else 64
    probe = Probe(tower, int(dim), len(spec.shapes), len(spec.colours))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    train_x, train_y = scenes_with_labels(spec, args.steps * args.batch, args.seed, size)
    test_x, test_y = scenes_with_labels(spec, args.test, args.seed + 1000, size)
    gen_s = time.perf_counter() - t0
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=0.05)
    # warmup then constant: shape features emerge after a plateau, and a decaying rate stretches it
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))
    test_t = to_tensor(test_x, mean, std)
    test_yt = {k: torch.from_numpy(v) for k, v in test_y.items()}
    curve = []

    def evaluate() -> dict[str, float]:
        probe.eval()
        with torch.no_grad():
            outs = [probe(test_t[i:i + 512]) for i in range(0, len(test_t), 512)]
            out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
            _, correct = loss_and_correct(out, test_yt, args.tasks)
        probe.train()
        return {k: 100.0 * v.float().mean().item() for k, v in correct.items()}

    t1 = time.perf_counter()
    for step in range(args.steps):
        sl = slice(step * args.batch, (step + 1) * args.batch)
        x = to_tensor(train_x[sl], mean, std)
        y = {k: torch.from_numpy(v[sl]) for k, v in train_y.items()}
        loss, _ = loss_and_correct(probe(x), y, args.tasks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            acc = evaluate()
            curve.append({"step": step + 1, **acc})
            print(f"step {step + 1:4d}  loss {loss.item():.3f}  " + "  ".join(f"{k} {v:5.1f}" for k, v in acc.items()),
                  flush=True)
    return {"model": args.model, "spec": spec.to_json(), "steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": args.warmup,
            "seed": args.seed, "image_size": size, "final": curve[-1], "curve": curve,
            "train_s": time.perf_counter() - t1, "generate_s": gen_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="world-cnn")
    ap.add_argument("--spec", default="demo")
    ap.add_argument("--set", action="append", default=[], help="world spec override KEY=VALUE (JSON values)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tasks", type=lambda v: tuple(v.split(",")), default=TASKS, help="comma-separated subset")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    result = run(args)
    print(json.dumps({k: result[k] for k in ("model", "steps", "final", "train_s")}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
