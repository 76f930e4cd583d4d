"""``tripletclip demo``: the whole TripletCLIP method offline, on the embedded compositional world.

    tripletclip demo                 # world + clip, negclip, negimage, tripletclip, ceclip x seeds + report
    tripletclip demo --quick         # smoke run (about a minute)
    tripletclip demo --preset configs/demo-large.yaml --seeds 0,1,2

Equal compute as in the paper (arXiv 2411.02545, Sec. 4): every method trains the same number of steps on
the same positives in the same order (per seed) with the same model and optimiser; only the negatives and the
objective differ. Each method is evaluated on the world's SugarCrepe-format benchmark (seen and held-out
compositions), its Winoground-style groups and retrieval, and the cosine similarities of positive vs hard
negative pairs are measured for both towers (the paper's Fig. 3). Trainings run side by side in ``jobs``
spawned processes with one torch thread each. Outputs: ``results.json`` (top-level keys are the method
names), ``demo_meta.json`` (provenance, timings), ``similarities.json``, ``report.html`` and a printed table in
the style of the paper's Table 4 (mean ± half the min..max range over seeds).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.config import config_to_dict, load_config
from tripletclip.demo.jobs import Job, read_curve, run_job
from tripletclip.world.build import SPEC_PRESETS

METHODS = ("clip", "negclip", "negimage", "tripletclip", "ceclip")
CATEGORIES = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
# most expensive objectives first, so that parallel jobs finish together
_COST_ORDER = {"tripletclip": 0, "negimage": 1, "ceclip": 2, "negclip": 3, "clip": 4}


def _preset_path(preset: Optional[str], quick: bool) -> Path:
    if preset:
        return Path(preset)
    return REPO_CONFIGS / ("demo-quick.yaml" if quick else "demo.yaml")


def _isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a fresh (spawned) process and return its result.

    NOTE: measured, training in a process that had just rendered the world with numpy ran 7x slower
    (51 vs 363 pairs/s) than in a fresh one, so the world is built in its own process.
    """
    # an executor, not a Pool: its worker is not a daemon, so build_world may start its own workers
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


def _build_world(out: Path, n_train: int, n_bench: int, n_retrieval: int, world_seed: int, image_size: int,
                 world: dict[str, Any], workers: int) -> dict[str, Any]:
    from tripletclip.world import build_world, make_spec

    spec = make_spec(seed=world_seed, **world)
    return build_world(out, n_train=n_train, n_bench=n_bench, seed=world_seed, image_size=image_size,
                       n_retrieval=n_retrieval, spec=spec, workers=workers, overwrite=True, progress=True)


def _model_input_size(name: str, default: int = 64) -> int:
    """The image side of a model config (open_clip name or one of ours); ``default`` for hub/local models."""
    import open_clip

    from tripletclip.models.factory import _ensure_registered

    _ensure_registered()
    size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size", default)
    return int(size if isinstance(size, int) else size[0])


def _last_step(run_dir: Path) -> int:
    """The newest logged step of a run (0 before its first log line)."""
    curve = read_curve(run_dir)
    return curve[-1][0] if curve else 0


def execute(jobs: Sequence[Job], workers: int, runs_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run jobs in ``workers`` spawned processes (torch is never forked), with one progress bar over steps."""
    results: list[dict[str, Any]] = []
    total = sum(j.cfg["train"]["steps"] for j in jobs)
    bar_ctx = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar_ctx = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    ordered = sorted(jobs, key=lambda j: _COST_ORDER.get(j.method, 9))
    with cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(run_job, j): j for j in ordered}
        bar = bar_ctx.__enter__() if bar_ctx else None
        task = bar.add_task("training steps (all runs)", total=total, info="") if bar else None
        try:
            while pending:
                done, _ = cf.wait(list(pending), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    pending.pop(fut)
                    results.append(fut.result())  # re-raises a worker's error with its traceback
                if bar is not None:
                    finished = {r["key"] for r in results}
                    steps = sum(j.cfg["train"]["steps"] if j.key in finished else
                                _last_step(runs_dir / j.cfg["train"]["name"]) for j in ordered)
                    bar.update(task, completed=steps, info=f"runs done {len(results)}/{len(ordered)}")
        finally:
            if bar_ctx:
                bar_ctx.__exit__(None, None, None)
    return results


def _agg(per_seed: dict[str, dict[str, float]]) -> dict[str, Any]:
    keys = sorted({k for v in per_seed.values() for k in v})
    mean = {k: statistics.fmean(v[k] for v in per_seed.values() if k in v) for k in keys}
    spread = {k: (max(v[k] for v in per_seed.values()) - min(v[k] for v in per_seed.values())) / 2 for k in keys}
    return {"mean": mean.get("mean"), "categories": {k: mean[k] for k in CATEGORIES if k in mean},
            "spread": spread, "per_seed": per_seed}


def aggregate(results: Sequence[dict[str, Any]], methods: Sequence[str], steps: int) -> dict[str, Any]:
    """results.json: per method, seen-split accuracies (percent) averaged over seeds, per-seed values, held-out."""
    table: dict[str, Any] = {}
    for method in methods:
        runs = sorted((r for r in results if r["method"] == method), key=lambda r: r["seed"])
        if not runs:
            continue
        seen = _agg({str(r["seed"]): r["scores"]["seen"] for r in runs})
        held = _agg({str(r["seed"]): r["scores"]["heldout"] for r in runs if "heldout" in r["scores"]})
        final = runs[0]["final"]
        table[method] = {
            "mean": seen["mean"], "categories": seen["categories"], "spread": seen["spread"],
            "per_seed": seen["per_seed"], "seen": seen, "heldout": held,
            "winoground": {"per_seed": {str(r["seed"]): r["winoground"] for r in runs},
                           **{k: statistics.fmean(r["winoground"][k] for r in runs) for k in ("text", "image", "group")}},
            "retrieval": {"per_seed": {str(r["seed"]): r["retrieval"] for r in runs},
                          **{k: statistics.fmean(r["retrieval"].get(k, 0.0) for r in runs) for k in ("i2t_r1", "t2i_r1")}},
            "steps": steps, "pairs_seen": final.get("real_pairs_seen"),
            "synthetic_images_seen": final.get("synthetic_images_seen"), "neg_texts_seen": final.get("neg_texts_seen"),
            "train_time_s": sum(r["train_s"] for r in runs), "eval_time_s": sum(r.get("eval_s", 0.0) for r in runs),
            # process time of this method's runs (trainings run side by side, so these do not add up to the wall)
            "wall_time_s": sum(r["train_s"] + r.get("eval_s", 0.0) for r in runs),
            "seeds": [r["seed"] for r in runs], "run_dirs": [r["run_dir"] for r in runs],
        }
    return table


def run_demo(out_dir: str | Path = "demo_out", quick: bool = False, preset: Optional[str] = None,
             seeds: Optional[Sequence[int]] = None, methods: Sequence[str] = METHODS,
             n_train: Optional[int] = None, n_bench: Optional[int] = None, world_seed: int = 0,
             jobs: Optional[int] = None, world: Optional[dict[str, Any]] = None, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the world, train every method for every seed at equal compute, evaluate, report; returns the
    content of results.json."""
    bad = [m for m in methods if m not in _COST_ORDER]
    if bad or not methods:
        raise ValueError(f"demo: unknown method(s) {bad or '(none given)'}; choose from {', '.join(METHODS)}")
    t_start = time.perf_counter()
    out = Path(out_dir)
    preset_path = _preset_path(preset, quick)
    base = load_config(preset_path)
    seeds = list(seeds) if seeds is not None else ([0] if quick else [0, 1, 2])
    n_train = n_train or base.train.steps * base.train.batch_size  # one epoch of fresh scenes
    n_bench = n_bench or (28 if quick else 200)
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    world = dict(SPEC_PRESETS["demo"] if world is None else world)
    image_size = _model_input_size(base.model.name)  # rendered at the model's input size: no resampling
    t0 = time.perf_counter()
    world_summary = _isolated(_build_world, out / "world", n_train, n_bench, min(500, 5 * n_bench), world_seed,
                              image_size, world, jobs)
    world_time = time.perf_counter() - t0
    shards = "::".join(sorted(str(p) for p in (out / "world" / "train").glob("train-*.tar")))
    bench = out / "world" / "bench"
    runs_dir = out / "runs"
    job_list = []
    for method in methods:
        for seed in seeds:
            name = f"{method}-seed{seed}"
            if (runs_dir / name).exists():
                shutil.rmtree(runs_dir / name)  # a demo always starts its runs afresh
            cfg = load_config(preset_path, [f"loss.name={method}", f"data.train={shards}", f"train.seed={seed}",
                                            f"train.output_dir={runs_dir}", f"train.name={name}", "train.progress=false"])
            job_list.append(Job(key=name, method=method, seed=seed, cfg=config_to_dict(cfg), bench_dir=str(bench),
                                threads=max(1, cfg.train.threads), eval_batch_size=cfg.eval.batch_size))
    echo(f"[demo] {len(methods)} objectives x {len(seeds)} seeds, {base.train.steps} steps x batch "
         f"{base.train.batch_size} each, {jobs} in parallel")
    t1 = time.perf_counter()
    results = execute(job_list, jobs, runs_dir, progress)
    train_time = time.perf_counter() - t1
    table = aggregate(results, methods, base.train.steps)
    sims = {m: {k: [v for r in results if r["method"] == m for v in r["sims"][k]]
                for k in ("text", "vision", "cross_pos", "cross_neg")} for m in table}
    curves = {m: {str(r["seed"]): r["curve"] for r in results if r["method"] == m} for m in table}
    meta = {
        "summary": f"{len(methods)} objectives x {len(seeds)} seeds at equal compute on the embedded world "
                   f"({n_train} training triplets, {n_bench} benchmark rows per category, "
                   f"{base.train.steps} steps x batch {base.train.batch_size}).",
        "preset": str(preset_path), "config": config_to_dict(base), "world_spec": world, "world": world_summary,
        "world_build_s": world_time, "train_and_eval_s": train_time, "parallel_jobs": jobs,
        "runs": [{k: r.get(k) for k in ("key", "method", "seed", "run_dir", "train_s", "eval_s", "weights_sha256")}
                 for r in results],
        "protocol": "SugarCrepe rule: correct iff s(x, y) > s(x, y') (ties wrong); mean = unweighted mean of the "
                    "seven categories; tables: mean over seeds ± half the min..max range",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "similarities.json").write_text(json.dumps(sims) + "\n")
    meta["wall_time_s"] = time.perf_counter() - t_start
    _report(out, table, meta, sims, curves, world_summary, echo)
    meta["wall_time_s"] = time.perf_counter() - t_start
    (out / "demo_meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    from tripletclip.report import text_table

    echo("\nworld benchmark, seen compositions (accuracy %, mean ± half range over seeds)")
    echo(text_table(table, CATEGORIES, "seen"))
    echo("\nheld-out compositions")
    echo(text_table(table, CATEGORIES, "heldout"))
    echo(f"\n[demo] wall time {meta['wall_time_s']:.0f} s (world {world_time:.0f} s, training + evaluation "
         f"{train_time:.0f} s); results: {out / 'results.json'}; report: {out / 'report.html'}")
    return table


def _report(out: Path, table: dict[str, Any], meta: dict[str, Any], sims: dict[str, Any], curves: dict[str, Any],
            world_summary: dict[str, Any], echo: Callable[[str], None]) -> None:
    from tripletclip.report import write_report

    try:
        from tripletclip.world import WorldSpec
        from tripletclip.world.gallery import gallery_image, gallery_triplets

        spec = WorldSpec.from_json(world_summary["spec"])
        gallery = gallery_image(gallery_triplets(spec, seed=int(world_summary.get("seed", 0)) + 99,
                                                 image_size=int(world_summary.get("image_size", 64))))
        import io

        buf = io.BytesIO()
        gallery.save(buf, format="PNG")
        gallery_png: Optional[bytes] = buf.getvalue()
    except Exception as e:  # the gallery is illustration: its failure is reported, never fatal
        echo(f"[demo] gallery skipped: {e}")
        gallery_png = None
    try:
        write_report(out / "report.html", table, CATEGORIES, meta, sims=sims, curves=curves, gallery_png=gallery_png)
    except Exception as e:  # a plotting problem must not lose the numbers, but it is reported
        echo(f"[demo] report.html could not be written: {e}")
