"""Speed of tripletclip's batched + cached evaluation against the official per-row protocol (not a test).

Same model, same rows, same images: SugarCrepe-format rows scored (a) as SugarCrepe's ``main_eval.py`` does,
row by row (open the image, encode it, encode both captions, compare), and (b) through
``tripletclip.eval.evaluate`` (each image once, texts deduplicated, batched, padding after the end-of-text token
skipped). Decisions must be identical; the script prints both timings and their ratio.

Row sets (images from ../shared/benchmarks/real_images_smoke):
- ``smoke``: the 71 real SugarCrepe rows on its 15 images;
- ``synthetic``: 380 rows over all 76 images (5 per image, like SugarCrepe's 4.8): positive = caption k of the
  image, negative = caption k of the next image;
- ``full``: the real SugarCrepe set, all 7 files (7,511 rows over 1,560 distinct COCO val2017 images). The COCO
  images are not shipped, so each distinct file name gets a stand-in: one of the 76 real COCO JPEGs (cycled)
  plus a unique trailer after the JPEG end marker, so that every stand-in decodes to a real photo at COCO size
  and has its own content hash (the batched side encodes 1,560 distinct images, as on the real set). The
  batched side scores all 7,511 rows; the per-row loop is timed on ``--sample`` rows drawn evenly from the 7
  files and its time extrapolated to 7,511 rows (decisions are compared on the sampled rows).

    python benchmarks/bench_eval_speed.py --model ViT-B-32 --rows both --threads 2
    python benchmarks/bench_eval_speed.py --model ViT-S-32 --rows full --sample 500 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tripletclip.eval import Encoder, evaluate  # noqa: E402
from tripletclip.eval.reference import per_row_reference  # noqa: E402
from tripletclip.eval.sugarcrepe import load_sugarcrepe  # noqa: E402
from tripletclip.models import create_model  # noqa: E402

SMOKE = ROOT.parent / "shared" / "benchmarks" / "real_images_smoke"
SUGARCREPE = ROOT.parent / "shared" / "benchmarks" / "sugar_crepe"


def synthetic_rows(out: Path, max_images: int = 0) -> Path:
    """A SugarCrepe-format folder (one subset file) with 5 rows per image of captions.json."""
    coco = json.loads((SMOKE / "captions.json").read_text())
    caps: dict[int, list[str]] = {}
    for a in coco["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"].strip())
    images = coco["images"][: max_images or None]
    rows = {}
    for i, im in enumerate(images):
        nxt = images[(i + 1) % len(images)]
        for k in range(5):
            rows[str(len(rows))] = {"filename": im["file_path"], "caption": caps[im["id"]][k], "negative_caption": caps[nxt["id"]][k]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "swap_obj.json").write_text(json.dumps(rows))
    return out


def stand_in_images(ann: Path, out: Path) -> Path:
    """One distinct stand-in JPEG per file name of the SugarCrepe files (see the module docstring)."""
    real = sorted(SMOKE.glob("images/*/*.jpg"))
    names = sorted({r["filename"] for f in sorted(ann.glob("*.json")) for r in json.loads(f.read_text()).values()})
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (out / name).write_bytes(real[i % len(real)].read_bytes() + f"stand-in {i}".encode())
    return out


def _image_paths(rows, image_root: Path) -> list[Path]:
    return [image_root / r.image if (image_root / r.image).is_file() else image_root / "images" / "val2017" / r.image
            for r in rows]


def _time_reference(bundle, rows, paths) -> tuple[list, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    ref = per_row_reference(bundle.model, bundle.preprocess_val, bundle.tokenizer, [(p, *r.texts) for p, r in zip(paths, rows)])
    return ref, time.perf_counter() - start, time.process_time() - cpu


def run(name: str, ann: Path, image_root: Path, bundle, batch_size: int, precision: str, sample: int = 0) -> dict:
    """Per-row loop vs batched evaluation on the rows of ``ann``; with ``sample`` > 0 the per-row loop runs on
    that many rows (evenly spaced over the row list) and its time is extrapolated to all rows."""
    rows, _, subsets = load_sugarcrepe(ann, subsets=[p.stem for p in sorted(ann.glob("*.json"))])
    paths = _image_paths(rows, image_root)
    picked = sorted({round(i * (len(rows) - 1) / max(1, sample - 1)) for i in range(sample)}) if 0 < sample < len(rows) else list(range(len(rows)))
    ref, t_ref, cpu_ref = _time_reference(bundle, [rows[i] for i in picked], [paths[i] for i in picked])
    t_ref_all, cpu_ref_all = t_ref * len(rows) / len(picked), cpu_ref * len(rows) / len(picked)

    enc = Encoder.from_bundle(bundle, batch_size=batch_size, precision=precision)
    out: list = []
    start, cpu = time.perf_counter(), time.process_time()
    evaluate(["sugarcrepe"], enc, {"sugarcrepe": {"annotations": ann, "images": image_root, "subsets": subsets}}, per_row=out)
    t_ours, cpu_ours = time.perf_counter() - start, time.process_time() - cpu

    ours = [out[i] for i in picked]
    same = [o["correct"] for o in ours] == [c for _, _, c in ref]
    diff = max(abs(a - b) for o, (p, n, _) in zip(ours, ref) for a, b in zip(o["scores"], (p, n)))
    return {
        "rows": name, "n_rows": len(rows), "n_images": len({str(p) for p in paths}),
        "n_texts": len({t for r in rows for t in r.texts}), "per_row_timed_rows": len(picked),
        "per_row_timed_s": round(t_ref, 2), "per_row_s": round(t_ref_all, 2), "batched_s": round(t_ours, 2),
        "ratio": round(t_ref_all / t_ours, 2), "identical_decisions": same, "max_score_diff": diff,
        # CPU seconds (all threads): on a shared machine wall time depends on the other jobs, CPU time much less
        "per_row_cpu_s": round(cpu_ref_all, 2), "batched_cpu_s": round(cpu_ours, 2),
        "cpu_ratio": round(cpu_ref_all / cpu_ours, 2),
        "images_encoded": enc.stats["images_encoded"], "texts_encoded": enc.stats["texts_encoded"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights; no download)")
    ap.add_argument("--rows", choices=["smoke", "synthetic", "both", "full"], default="both")
    ap.add_argument("--sample", type=int, default=500,
                    help="full: rows timed with the per-row loop, extrapolated to all rows (0 = time every row)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="batched side only; the per-row reference is fp32 like the official script on CPU")
    ap.add_argument("--max-images", type=int, default=0, help="synthetic rows over the first N images only (0 = all 76)")
    ap.add_argument("--out", default=None, help="also write the numbers as JSON")
    args = ap.parse_args()
    if not SMOKE.is_dir() or (args.rows == "full" and not SUGARCREPE.is_dir()):
        sys.exit(f"{SMOKE.parent} not found: this benchmark needs ../shared/benchmarks next to the repository")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = create_model(args.model)
    bundle.model.eval()
    with torch.no_grad():  # warm-up: first calls allocate
        bundle.model.encode_text(bundle.tokenizer(["warm up"]))
        bundle.model.encode_image(torch.zeros(1, 3, bundle.image_size, bundle.image_size))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.rows in ("smoke", "both"):
            results.append(run("smoke", SMOKE / "sugar_crepe", SMOKE / "images" / "val2017", bundle, args.batch_size, args.precision))
        if args.rows in ("synthetic", "both"):
            results.append(run("synthetic", synthetic_rows(Path(tmp) / "syn", args.max_images), SMOKE, bundle, args.batch_size, args.precision))
        if args.rows == "full":
            images = stand_in_images(SUGARCREPE, Path(tmp) / "val2017")
            results.append(run("full", SUGARCREPE, images, bundle, args.batch_size, args.precision, args.sample))
    total_ref = sum(r["per_row_s"] for r in results)
    total_ours = sum(r["batched_s"] for r in results)
    print(f"model {args.model} ({args.precision} batched), {args.threads} threads, batch {args.batch_size}")
    print(f"{'rows':10s} {'n':>5s} {'images':>6s} {'texts':>6s} {'per-row s':>10s} {'batched s':>10s} {'ratio':>6s}  identical")
    for r in results:
        print(f"{r['rows']:10s} {r['n_rows']:5d} {r['n_images']:6d} {r['n_texts']:6d} {r['per_row_s']:10.2f} {r['batched_s']:10.2f} "
              f"{r['ratio']:6.2f}  {r['identical_decisions']} (max |score diff| {r['max_score_diff']:.1e})")
        print(f"{'':10s} CPU seconds: per-row {r['per_row_cpu_s']:.2f}, batched {r['batched_cpu_s']:.2f}, "
              f"ratio {r['cpu_ratio']:.2f}")
        if r["per_row_timed_rows"] < r["n_rows"]:
            print(f"{'':10s} per-row time extrapolated: {r['per_row_timed_s']:.2f} s measured on {r['per_row_timed_rows']} "
                  f"rows x {r['n_rows']}/{r['per_row_timed_rows']}; decisions compared on those rows")
    print(f"{'total':10s} {'':5s} {'':6s} {'':6s} {total_ref:10.2f} {total_ours:10.2f} {total_ref / total_ours:6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "threads": args.threads, "batch_size": args.batch_size,
                                              "precision": args.precision, "results": results,
                                              "ratio_total": total_ref / total_ours}, indent=1))


if __name__ == "__main__":
    main()
