"""Do trained models tell their own training negatives apart? SugarCrepe's rule on training triplets, per edit type.

    python benchmarks/fit_negatives.py demo_out/world/train/train-000000.tar demo_out/runs/clip-seed0 \
        demo_out/runs/negclip-seed0 demo_out/runs/tripletclip-seed0 --rows 1500

For each run folder: the share of the first ``--rows`` training triplets of the shard whose positive caption
scores above its (first) hard negative on the positive image, s(x, y) > s(x, y'), by edit type. Chance is 50%.
If a hard-negative objective is at chance on the very negatives it was trained against, it does not fit them
(a capacity or budget limit), which is different from fitting them and not generalising
(docs/world_experiments.md, section 4).
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile

import torch
from PIL import Image

from tripletclip.models import load_run_model


def read_triplets(shard: str, rows: int) -> list[tuple[Image.Image, str, str, str]]:
    """(image, caption, first negative caption, its edit type) of the first ``rows`` samples with a negative."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    out = []
    for s in samples.values():
        if "neg.txt" not in s:
            continue
        image = Image.open(io.BytesIO(s["png"])).convert("RGB")
        negative = s["neg.txt"].decode().split("\n")[0]
        out.append((image, s["txt"].decode(), negative, json.loads(s["json"])["neg_types"][0]))
        if len(out) == rows:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shard")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--rows", type=int, default=1500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = read_triplets(args.shard, args.rows)
    for run in args.runs:
        bundle = load_run_model(run)
        model = bundle.model.eval()
        with torch.no_grad():
            x = model.encode_image(torch.stack([bundle.preprocess_val(im) for im, *_ in rows]), normalize=True)
            y = model.encode_text(bundle.tokenizer([c for _, c, _, _ in rows]), normalize=True)
            yn = model.encode_text(bundle.tokenizer([n for _, _, n, _ in rows]), normalize=True)
        correct = ((x * y).sum(-1) > (x * yn).sum(-1)).tolist()
        per: dict[str, list[bool]] = {}
        for ok, (_, _, _, edit) in zip(correct, rows):
            per.setdefault(edit, []).append(ok)
        print(json.dumps({"run": run, **{k: round(100 * sum(v) / len(v), 1) for k, v in sorted(per.items())}}))


if __name__ == "__main__":
    main()
