"""Score a finished ``tripletclip demo`` output folder on the transfer benchmark (docs/world_experiments.md,
section 8): the design experiments of the cure were run with ``tripletclip demo`` and scored with this script.

    python benchmarks/transfer_eval.py /tmp/demo_out [--n-pairs 150]

Builds ``OUT/world/transfer`` if the demo did not (rejecting captions that occur in ``OUT/world/train``), scores
the base (when the demo had one) and every run folder under ``OUT/runs``, and prints per split a table with 95%
Wilson intervals, plus the text-only check of the base: its text tower scored against the mean image of the
split (chance by the symmetric rows). Writes ``OUT/transfer_eval.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="a tripletclip demo output folder")
    ap.add_argument("--n-pairs", type=int, default=150)
    ap.add_argument("--world-seed", type=int, help="only for a demo folder without demo_meta.json (interrupted)")
    ap.add_argument("--base", help="the base's weights, only for a demo folder without demo_meta.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from tripletclip.demo.transfer import (SPLITS, build_transfer_data, evaluate_transfer, split_entry, table_lines)
    from tripletclip.models import create_model, load_run_model
    from tripletclip.world.transfer.pairs import iter_rows

    out = Path(args.out)
    meta = _meta(out, args)
    tdir = out / "world" / "transfer"
    if not (tdir / "manifest.json").is_file():
        build_transfer_data(str(out / "world"), meta["world_spec"], meta["demo_config"]["world_seed"],
                            meta["world"]["image_size"], args.n_pairs)
    manifest = json.loads((tdir / "manifest.json").read_text())
    records = []
    models = []
    if meta.get("base"):
        model_name = meta["run_config"]["model"]["name"]
        models.append(("base", 0, lambda: create_model(model_name, meta["base"]["path"])))
    for run in sorted((out / "runs").glob("*-seed*")):
        if (run / "final_metrics.json").is_file():  # finished runs only
            method, seed = run.name.rsplit("-seed", 1)
            models.append((method, int(seed), lambda run=run: load_run_model(run)))
    text_only = {}
    for method, seed, load in models:
        bundle = load()
        bundle.model.eval()
        rec = {"method": method, "seed": seed, **evaluate_transfer(bundle, str(tdir))}
        records.append(rec)
        if method == "base":
            text_only = _mean_image_check(bundle, tdir, iter_rows)
    doc: dict = {}
    for method in dict.fromkeys(r["method"] for r in records):
        runs = [r for r in records if r["method"] == method]
        doc[method] = {s: split_entry(runs, s, manifest["counts"]) for s in SPLITS}
    for s in SPLITS:
        for line in table_lines(doc, list(doc), s):
            print(line)
    print("\ntext-only check (base text tower vs the mean image of the split), per category:", json.dumps(text_only))
    print("training overlap:", json.dumps(manifest["training_overlap"]))
    (out / "transfer_eval.json").write_text(json.dumps({"results": doc, "records": records, "text_only_mean_image":
                                                        text_only, "manifest": manifest}, indent=1) + "\n")


def _meta(out: Path, args: argparse.Namespace) -> dict:
    """demo_meta.json, or the little of it this script needs for an interrupted demo (demo spec, 48 px)."""
    if (out / "demo_meta.json").is_file():
        return json.loads((out / "demo_meta.json").read_text())
    if args.world_seed is None:
        raise SystemExit(f"{out}: no demo_meta.json; pass --world-seed (and --base) of that demo")
    from tripletclip.world import spec_preset

    return {"world_spec": spec_preset("demo", seed=args.world_seed).to_json(),
            "demo_config": {"world_seed": args.world_seed}, "world": {"image_size": 48},
            "base": {"path": args.base} if args.base else None, "run_config": {"model": {"name": "world-cnn"}}}


def _mean_image_check(bundle, tdir: Path, iter_rows) -> dict:
    """Accuracy (percent) of s(mean image, y) > s(mean image, y') per split and category, with the base."""
    import torch

    from tripletclip.eval import Encoder

    enc = Encoder.from_bundle(bundle, batch_size=256)
    out: dict = {}
    for split in ("transfer", "paraphrase"):
        rows = list(iter_rows(tdir, split))
        imgs = sorted({r["filename"] for r in rows})
        mean = enc.encode_images([str(tdir / "images" / f) for f in imgs]).mean(0)
        for cat in dict.fromkeys(r["category"] for r in rows):
            sel = [r for r in rows if r["category"] == cat]
            y = enc.encode_texts([r["caption"] for r in sel]) @ mean
            yn = enc.encode_texts([r["negative_caption"] for r in sel]) @ mean
            out.setdefault(split, {})[cat] = 100.0 * statistics.fmean(
                1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(torch.as_tensor(y).tolist(), torch.as_tensor(yn).tolist()))
    return out


if __name__ == "__main__":
    main()
