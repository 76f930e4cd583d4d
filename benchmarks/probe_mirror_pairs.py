"""Does a model tell a caption from its mirror twin? (docs/world_experiments.md section 13)

Usage:
    python benchmarks/probe_mirror_pairs.py --weights A.safetensors[,B.safetensors ...] [--world-seed 0] [--pairs 1000]

Builds ``--pairs`` mirror pairs of the demo world (world/mirror.py: a caption stating a relation and the same scene
reflected, captioned with the relation inverted; scenes drawn with a seed of their own, 777) and scores each model
on them: i2t, each image picks its own caption over its twin's; t2i, each caption picks its own image; and the
mean cosine of the two images and of the two captions after the heads. 50 / 50 with cosines near 1 is a model that
does not see the relation at all.
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import torch


def build_pairs(out: Path, pairs: int, world_seed: int, image_size: int = 48) -> tuple[list[str], list[Any]]:
    """Captions and PIL images of ``pairs`` mirror pairs, twins adjacent (built once into ``out``)."""
    from PIL import Image

    from tripletclip.world import build_world
    from tripletclip.world.build import spec_preset

    if not (out / "world.json").is_file():
        build_world(out, n_train=2 * pairs, n_bench=0, n_retrieval=0, seed=777, image_size=image_size, n_neg=0,
                    spec=spec_preset("demo", world_seed), mirror_pairs=1.0, overwrite=True, progress=False)
    caps, ims = [], []
    for shard in sorted((out / "train").glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for key in sorted({m.name.split(".")[0] for m in tar.getmembers()}):
                caps.append(tar.extractfile(key + ".txt").read().decode())
                ims.append(Image.open(io.BytesIO(tar.extractfile(key + ".png").read())).convert("RGB"))
    return caps, ims


@torch.no_grad()
def score(model_name: str, weights: str, caps: list[str], ims: list[Any]) -> dict[str, float]:
    """i2t / t2i accuracy (%) within each pair, and the mean image and text cosine of the twins."""
    from tripletclip.models import create_model

    bundle = create_model(model_name, weights)
    model = bundle.model.eval()
    fi = torch.nn.functional.normalize(model.encode_image(torch.stack([bundle.preprocess_val(i) for i in ims])), dim=-1)
    ft = torch.nn.functional.normalize(model.encode_text(bundle.tokenizer(caps)), dim=-1)
    fi, ft = fi.view(-1, 2, fi.shape[-1]), ft.view(-1, 2, ft.shape[-1])
    s = torch.einsum("pad,pbd->pab", fi, ft)  # s[p, a, b]: image a of pair p against caption b
    i2t = ((s[:, 0, 0] > s[:, 0, 1]).float().mean() + (s[:, 1, 1] > s[:, 1, 0]).float().mean()) / 2
    t2i = ((s[:, 0, 0] > s[:, 1, 0]).float().mean() + (s[:, 1, 1] > s[:, 0, 1]).float().mean()) / 2
    return {"pairs": fi.shape[0], "i2t": 100 * float(i2t), "t2i": 100 * float(t2i),
            "image_cos": float((fi[:, 0] * fi[:, 1]).sum(-1).mean()),
            "text_cos": float((ft[:, 0] * ft[:, 1]).sum(-1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True, help="comma-separated weights files (e.g. cached bases)")
    ap.add_argument("--model", default="world-cnn")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/probe_mirror_pairs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    caps, ims = build_pairs(Path(args.work) / f"w{args.world_seed}-{args.pairs}", args.pairs, args.world_seed)
    for w in args.weights.split(","):
        print(json.dumps({"weights": w, **score(args.model, w, caps, ims)}))


if __name__ == "__main__":
    main()
