"""``tripletclip demo``: the whole TripletCLIP method offline, on the embedded compositional world.

    tripletclip demo                 # world + clip, negclip, negimage, tripletclip, ceclip x seeds + report
    tripletclip demo --quick         # smoke run (about a minute)
    tripletclip demo --preset configs/demo-large.yaml --seeds 0,1,2

Equal compute as in the paper (arXiv 2411.02545, Sec. 4): every method trains the same number of steps on
the same positives with the same optimiser; only the negatives and the objective differ. Each method is
evaluated on the world's SugarCrepe-format benchmark (seen and held-out compositions), its Winoground-style
groups and retrieval. Outputs: ``results.json`` (top-level keys are the method names), ``demo_meta.json``
(provenance), ``report.html`` and a printed table in the style of the paper's Table 4.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.config import config_to_dict, load_config

METHODS = ("clip", "negclip", "negimage", "tripletclip", "ceclip")
CATEGORIES = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _preset_path(preset: Optional[str], quick: bool) -> Path:
    if preset:
        return Path(preset)
    return REPO_CONFIGS / ("demo-quick.yaml" if quick else "demo.yaml")


def _isolated(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a fresh (spawned) process and return its result.

    NOTE: measured here, training in a process that had just rendered the world with numpy ran 7x slower
    (51 vs 363 pairs/s) than in a fresh one (thread pools of the numpy/PIL work and torch contending), so the
    world is built in its own process.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # an executor, not a Pool: its worker is not a daemon, so build_world may start its own workers
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


def _world_eval(run_dir: str, bench: Path) -> dict[str, float]:
    from tripletclip.eval import Encoder, evaluate, headline_scalars
    from tripletclip.models import load_run_model

    enc = Encoder.from_bundle(load_run_model(run_dir), batch_size=256)
    return headline_scalars(evaluate(["world"], enc, {"world": {"annotations": str(bench)}}))


def _split_scores(h: dict[str, float], split: str) -> dict[str, float]:
    # evaluator headlines are fractions; the demo reports percent, as the paper's tables do
    cats = {c: 100.0 * h[f"world/sugarcrepe_{split}/{c}"] for c in CATEGORIES if f"world/sugarcrepe_{split}/{c}" in h}
    if cats:
        cats["mean"] = sum(cats.values()) / len(cats)  # the paper's overall: unweighted mean of the subsets
    return cats


def _agg(per_seed: dict[str, dict[str, float]]) -> dict[str, Any]:
    keys = sorted({k for v in per_seed.values() for k in v})
    mean = {k: statistics.fmean(v[k] for v in per_seed.values() if k in v) for k in keys}
    spread = {k: (max(v[k] for v in per_seed.values()) - min(v[k] for v in per_seed.values())) / 2 for k in keys}
    return {"mean": mean.get("mean"), "categories": {k: mean[k] for k in keys if k != "mean"},
            "spread": spread, "per_seed": per_seed}


def run_demo(out_dir: str | Path = "demo_out", quick: bool = False, preset: Optional[str] = None,
             seeds: Optional[Sequence[int]] = None, methods: Sequence[str] = METHODS,
             n_train: Optional[int] = None, n_bench: Optional[int] = None, world_seed: int = 0) -> dict[str, Any]:
    """Build the world, train every method for every seed at equal compute, evaluate, report."""
    from tripletclip.report.html import text_table, write_report
    from tripletclip.train import train
    from tripletclip.world import build_world

    t_start = time.perf_counter()
    out = Path(out_dir)
    preset_path = _preset_path(preset, quick)
    base = load_config(preset_path)
    seeds = list(seeds) if seeds is not None else ([0] if quick else [0, 1])
    n_train = n_train or base.train.steps * base.train.batch_size  # one epoch of fresh scenes
    n_bench = n_bench or (28 if quick else 100)
    t0 = time.perf_counter()
    world = _isolated(build_world, out / "world", n_train=n_train, n_bench=n_bench, seed=world_seed,
                      n_retrieval=min(500, 5 * n_bench), overwrite=True, progress=True, workers=min(2, os.cpu_count() or 1))
    world_time = time.perf_counter() - t0
    shards = str(out / "world" / "train")
    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for method in methods:
        per_seen, per_held, per_wino, per_ret, times, last = {}, {}, {}, {}, [], {}
        for seed in seeds:
            cfg = load_config(preset_path, [f"loss.name={method}", f"data.train={shards}", f"train.seed={seed}",
                                            f"train.output_dir={out / 'runs'}", f"train.name={method}-seed{seed}"])
            run_path = out / "runs" / cfg.train.name
            if run_path.exists():
                import shutil

                shutil.rmtree(run_path)
            t = time.perf_counter()
            print(f"[demo] training {method} seed {seed}: {cfg.train.steps} steps x batch {cfg.train.batch_size}", flush=True)
            res = train(cfg)
            times.append(time.perf_counter() - t)
            last = res["final"]
            h = _world_eval(res["run_dir"], out / "world" / "bench")
            per_seen[str(seed)] = _split_scores(h, "seen")
            per_held[str(seed)] = _split_scores(h, "heldout")
            per_wino[str(seed)] = {k: 100.0 * h.get(f"world/winoground_all/{k}", h.get(f"world/winoground_seen/{k}", 0.0))
                                   for k in ("text", "image", "group")}
            per_ret[str(seed)] = {k: 100.0 * h.get(f"world/retrieval/{k}", 0.0) for k in ("i2t_r1", "t2i_r1")}
            recs = [json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
            curves.setdefault(method, {})[str(seed)] = [(r["step"], r["loss/loss"]) for r in recs if "loss/loss" in r]
        seen = _agg(per_seen)
        results[method] = {
            "mean": seen["mean"], "categories": seen["categories"], "spread": seen["spread"],
            "per_seed": {s: v for s, v in per_seen.items()},
            "seen": seen, "heldout": _agg(per_held),
            "winoground": {"per_seed": per_wino}, "retrieval": {"per_seed": per_ret},
            "steps": base.train.steps, "pairs_seen": last.get("real_pairs_seen"),
            "synthetic_images_seen": last.get("synthetic_images_seen"),
            "train_time_s": sum(times), "seeds": seeds,
        }
    meta = {
        "summary": f"{len(methods)} objectives x {len(seeds)} seeds at equal compute on the embedded world "
                   f"({n_train} training triplets, {n_bench} benchmark rows per category).",
        "preset": str(preset_path), "config": config_to_dict(base), "world": world,
        "world_build_s": world_time, "wall_time_s": time.perf_counter() - t_start,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "demo_meta.json").write_text(json.dumps(meta, indent=1, default=str))
    curves_for_plot = {m: {"loss": v["0"] if "0" in v else next(iter(v.values()))} for m, v in curves.items()}
    try:
        write_report(out / "report.html", results, CATEGORIES, meta, curves=curves_for_plot)
    except Exception as e:  # a plotting problem must not lose the numbers, but it is reported
        print(f"[demo] report.html could not be written: {e}", flush=True)
    print(text_table(results, CATEGORIES, "seen"))
    print(text_table(results, CATEGORIES, "heldout"))
    print(f"[demo] wall time {meta['wall_time_s']:.0f} s (world {world_time:.0f} s); results: {out / 'results.json'}")
    return results
