"""``tripletclip demo``: the whole TripletCLIP method offline, on the embedded compositional world.

    tripletclip demo                          # fine-tuning regime: CLIP base, then every objective x 3 seeds
    tripletclip demo --quick                  # smoke run (under a minute)
    tripletclip demo --preset demo-scratch    # from-scratch, data-limited regime (TripletCLIP Tables 3-4)
    tripletclip demo --preset my.yaml run.train.steps=300 --seeds 0,1,2,3

Equal compute as in the paper (arXiv 2411.02545, Sec. 4): every objective trains the same number of steps on
the same positives in the same order (per seed) with the same model, optimiser and starting weights; only the
negatives and the objective differ. The objectives are every loss registered in ``tripletclip.losses``. Each
run is evaluated on the world's SugarCrepe-format benchmark (seen and held-out compositions), its
Winoground-style groups and retrieval; Fig. 3's similarities are measured. Trainings run side by side in
``jobs`` spawned processes with one torch thread each. Outputs: ``results.json`` (method keys, plus ``regime``,
``base`` and ``paired``), ``demo_meta.json`` (provenance, timings), ``similarities.json``, ``report.html``;
``demo_plan.json`` (what it runs, recorded first) and each job's ``runs/<key>/demo_job.json`` let ``--resume``
continue an interrupted demo (demo/resume.py).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from tripletclip.config import config_from_dict, config_to_dict
from tripletclip.config.load import deep_merge
from tripletclip.demo import stats
from tripletclip.demo.config import DemoConfig, Method, plan_size, load_demo_config
from tripletclip.demo.jobs import Job, job_folders, job_steps, read_curve, run_job
from tripletclip.demo.warm import ensure_warm_world, meta_block as warm_meta, method_block, warm_jobs, warm_world_dir
from tripletclip.demo.worlddata import build_world_data  # noqa: F401  (demo.run.build_world_data: tests, scripts)
from tripletclip.demo.worlddata import isolated as _isolated
from tripletclip.edit_types import SUGARCREPE_TYPES as CATEGORIES  # noqa: F401  (re-exported: tripletclip.demo.CATEGORIES)
from tripletclip.errors import ConflictError, InputError
from tripletclip.models.factory import model_input_size
from tripletclip.utils.lock import FolderLock
from tripletclip.utils.ownership import DEMO, claim_output


# Objectives of issue 24 run only when named (--methods, or a preset the lead wires): the default demo's time budget
# holds the 2024 methods, and fscclip needs a ViT (patch features) while the default tower is a CNN.
OPT_IN = ("clic", "degla", "fscclip")


def objectives() -> list[str]:
    """Every registered objective, cheapest first (CLIP, text negatives, image negatives, both)."""
    from tripletclip.losses import LOSSES

    return sorted(LOSSES.names(), key=lambda n: (_cost(n), n))


def select_methods(cfg: DemoConfig, names: Optional[Sequence[str]] = None) -> list[Method]:
    """What the demo compares: ``names`` (``--methods``: the preset's method labels or registered objectives),
    else the preset's ``methods``, else every registered objective but the opt-in ones (:data:`OPT_IN`)."""
    known = objectives()
    listed = {m.label: m for m in cfg.method_specs()}
    if names:
        chosen = [listed.get(n) or Method(n, n) for n in names]
    else:
        chosen = list(listed.values()) or [Method(m, m) for m in known if m not in OPT_IN]
    bad = [m.label if m.label == m.objective else f"{m.label} ({m.objective})" for m in chosen
           if m.objective not in known]
    if bad or not chosen:
        extra = f", or a method of the preset ({', '.join(listed)})" if listed else ""
        raise InputError(f"demo: unknown objective(s) {bad or '(none given)'}; choose from {', '.join(known)}{extra}")
    if len({m.label for m in chosen}) < len(chosen):
        raise InputError(f"demo: --methods names a method twice: {[m.label for m in chosen]}")
    return chosen


def _cost(name: str) -> int:
    from tripletclip.losses import LOSSES

    cls = LOSSES.get(name)
    return int(getattr(cls, "needs_neg_text", False)) + 2 * int(getattr(cls, "needs_neg_image", False))


def _pretrain_isolated(cfg: DemoConfig, identity: dict[str, Any], work: Path, spec_json: dict[str, Any],
                       image_size: int, workers: int, progress: bool) -> str:
    from tripletclip.demo.base import pretrain_base

    def build(out: Path, n: int, seed: int, mirror_pairs: float = 0.0) -> dict[str, Any]:
        return _isolated(build_world_data, out, n, seed, spec_json, image_size, workers, n_neg=0, progress=progress,
                         mirror_pairs=mirror_pairs)

    return str(pretrain_base(cfg, identity, work, build, progress=progress))


def ensure_base(cfg: DemoConfig, spec_json: dict[str, Any], image_size: int, work: Path, workers: int = 1,
                force: bool = False, progress: bool = True, echo: Callable[[str], None] = print,
                clear: bool = False) -> dict[str, Any]:
    """The fine-tuning regime's CLIP base: from the cache, else pretrained now (and cached) in ``work``, cleared
    first with ``clear`` (a resumed demo: an interrupted pretraining's run folder would refuse a new one)."""
    from tripletclip.demo.base import BASE_FILE, base_identity, base_key, cached_base, install_shipped

    if cfg.base_from:
        from tripletclip.models.weights import locate_weights

        src = locate_weights(cfg.base_from)  # a run folder, checkpoint folder or file; one-line error otherwise
        return {"path": cfg.base_from, "key": None, "source": "given (base_from)",
                "weights_sha256": src.identity()["weights_sha256"],
                "pretrain_train_s": None, "seconds": 0.0, "reproduce": None}
    identity = base_identity(cfg, spec_json, image_size)
    folder = None if force else cached_base(identity)
    source = "cache"
    t0 = time.perf_counter()
    if folder is None and not force:
        folder = install_shipped(identity)
        source = "shipped with the package"
    if folder is None:
        echo(f"[demo] no cached CLIP base for this world (key {base_key(identity)}): pretraining it once")
        if clear:
            from tripletclip.demo.resume import clear_base_work

            clear_base_work(work)
        folder = Path(_isolated(_pretrain_isolated, cfg, identity, work, spec_json, image_size, workers, progress))
        source = "pretrained now"
    meta = json.loads((Path(folder) / "base.json").read_text())
    return {"path": str(Path(folder) / BASE_FILE), "key": meta["key"], "source": source,
            "weights_sha256": meta["weights_sha256"], "pretrain_train_s": meta.get("train_s"),
            "seconds": time.perf_counter() - t0, "reproduce": meta.get("reproduce")}


@contextlib.contextmanager
def _steps_bar(total: int, enabled: bool) -> Iterator[Callable[[int, str], None]]:
    """One progress line over all training steps: rate, elapsed time and an ETA from the measured step rate."""
    from tripletclip.utils.progress import progress_bar

    with progress_bar(unit="steps", fields="{task.fields[info]}", elapsed=True, enabled=enabled) as bar:
        task = bar.add_task("training steps (all runs)", total=total, info="")
        yield lambda completed, info: bar.update(task, completed=completed, info=info)


def execute(jobs: Sequence[Job], workers: int, runs_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run jobs in ``workers`` spawned processes (torch is never forked), one progress bar with an ETA."""
    results: list[dict[str, Any]] = []
    total = sum(job_steps(j) for j in jobs)  # a warm start's two phases count
    ordered = sorted(jobs, key=lambda j: (-_cost(j.cfg["loss"]["name"]) if j.train else 9, j.seed))  # slowest first
    with cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn")) as pool, \
            _steps_bar(total, progress) as update:
        pending = {pool.submit(run_job, j): j for j in ordered}
        while pending:
            done, _ = cf.wait(list(pending), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                pending.pop(fut)
                results.append(fut.result())  # re-raises a worker's error with its traceback
            finished = {r["key"] for r in results}
            steps = sum(job_steps(j) if j.key in finished else sum(_last_step(f) for f in job_folders(j))
                        for j in ordered if j.train)
            update(steps, f"runs done {len(results)}/{len(ordered)}")
    return results


def _last_step(run_dir: Path) -> int:
    curve = read_curve(run_dir)
    return curve[-1][0] if curve else 0


def _plan(cfg: DemoConfig) -> tuple[int, int]:
    """(training triplets to generate, steps): fresh scenes (epochs=1) or a fixed set seen ``epochs`` times."""
    train = cfg.run_config().train  # typed: the preset's value or the run-config default
    steps, batch = train.steps, train.batch_size
    if steps < 1 or batch < 1:
        raise InputError(f"demo preset: run.train.steps and run.train.batch_size must be >= 1 (got {steps}, {batch})")
    return plan_size(steps, batch, cfg.epochs), steps


def resolve_settings(cfg: DemoConfig, preset: str, methods: Sequence[Method], overrides: Sequence[str] = (),
                     echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Before any long work: the resolved run and base configs, what differs from the preset (printed), and a
    preflight of every objective's run config and of the base's (one line naming a setting that cannot work)."""
    from tripletclip.demo.config import describe_diff, settings_diff
    from tripletclip.train.preflight import preflight_all, with_placeholder_data

    diff = settings_diff(cfg, load_demo_config(preset))
    for line in describe_diff(diff, preset, cfg.regime):
        if not line.startswith("[demo] demo: as in"):
            echo(line)
    todo = "(the demo's world, built next)"
    checks = [(f"run:{m.label}", with_placeholder_data(config_from_dict(cfg.method_run_dict(m), where="run"), todo))
              for m in methods]
    base = cfg.base_config() if cfg.regime == "finetune" else None
    if base is not None:
        checks.append(("base", with_placeholder_data(base, todo)))
    t0 = time.perf_counter()
    seen = preflight_all(checks)
    echo(f"[demo] preflight: {len(checks)} configs built, locked and run forward and backward on a dry batch "
         f"in {time.perf_counter() - t0:.1f} s")
    return {"overrides": list(overrides), "differs_from_preset": diff,
            "resolved_run": config_to_dict(cfg.run_config()),
            "resolved_base": config_to_dict(base) if base is not None else None,
            "preflight": {k: {n: v[n] for n in ("trainable", "frozen")} for k, v in seen.items()}}


def run_demo(out_dir: str | Path = "demo_out", preset: Optional[str] = None, overrides: Sequence[str] = (),
             quick: bool = False, seeds: Optional[Sequence[int]] = None, methods: Optional[Sequence[str]] = None,
             world_seed: Optional[int] = None, jobs: Optional[int] = None, progress: bool = True,
             echo: Callable[[str], None] = print, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """World, base (fine-tuning regime), every objective x seed at equal compute, evaluation, report; returns
    the content of results.json. ``out_dir`` holds one demo: an earlier one there is refused unless
    ``overwrite``, which removes only what that demo wrote, or ``resume``, which continues it (same settings
    only), re-using its world, transfer benchmark, base and finished runs (demo/resume.py)."""
    from tripletclip.demo.resume import Resume, demo_plan, say_notes
    from tripletclip.world import spec_preset

    if overwrite and resume:
        raise InputError("demo: --resume continues the demo in --out, --overwrite replaces it; give one of them")
    t_start = time.perf_counter()
    cfg = load_demo_config(preset or ("demo-quick" if quick else None), overrides)
    if seeds is not None:
        cfg.seeds = list(seeds)
    if world_seed is not None:
        cfg.world_seed = world_seed
    specs = select_methods(cfg, methods)
    methods = [m.label for m in specs]  # results.json keys
    out = Path(out_dir)
    preset = preset or ("demo-quick" if quick else "demo")  # provenance names the preset actually run
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    n_train, steps = _plan(cfg)
    # checks first (seconds, nothing written), then the folder is claimed: a refused setting leaves no folder
    settings = resolve_settings(cfg, preset, specs, overrides, echo)
    plan = demo_plan(cfg, preset, specs, overrides, out)
    lock, held = _claim_demo(out, preset, overwrite, resume)  # one demo per folder, refused before any long work
    with lock:  # released however the demo ends: an interrupted demo's folder is free for its --resume
        state = Resume.begin(out, plan, held, resume)  # what will run, recorded before any long work
        run_base = cfg.run_dict()
        model_name = run_base.get("model", {}).get("name", "world-cnn")
        image_size = model_input_size(model_name)  # rendered at the model's input size: no resampling
        spec = spec_preset(cfg.world_spec, seed=cfg.world_seed)
        timings: dict[str, float] = {}
        world_summary, warm_summary, transfer_summary = _world_data(cfg, spec.to_json(), image_size, n_train, out,
                                                                    jobs, progress, state, timings)
        transfer_dir = str(out / "world" / "transfer") if transfer_summary else ""
        base, start = None, {}
        if cfg.regime == "finetune":
            base = ensure_base(cfg, spec.to_json(), image_size, out / "base", jobs, progress=progress, echo=echo,
                               clear=state.active)
            state.base(base)
            timings["base_s"] = base["seconds"]
            start = {"model": {"pretrained": base["path"]}}
            run_base = deep_merge(run_base, start)
        from tripletclip.world import train_shards

        shards, bench, runs_dir = train_shards(out / "world"), out / "world" / "bench", out / "runs"
        warm = train_shards(warm_world_dir(out)) if cfg.warm_start.on else ""
        job_list = [_job(deep_merge(cfg.method_run_dict(m), start), m.label, s, shards, bench, runs_dir,
                         transfer_dir=transfer_dir, warm=(warm, cfg.warm_start.steps))
                    for m in specs for s in cfg.seeds]
        if base is not None:
            job_list.append(_job(run_base, "base", 0, shards, bench, runs_dir, train=False, transfer_dir=transfer_dir))
        reused, todo = state.partition(job_list)  # a job not re-used starts afresh
        if state.active:
            say_notes(state, echo)
            echo(state.line(len(reused), len(job_list)))
        echo(f"[demo] {cfg.regime} regime: {len(methods)} methods x {len(cfg.seeds)} seeds, {steps} steps x batch "
             f"{run_base['train']['batch_size']} each, {jobs} in parallel")
        t1 = time.perf_counter()
        results = reused + (execute(todo, jobs, runs_dir, progress) if todo else [])
        order = {j.key: i for i, j in enumerate(job_list)}
        results.sort(key=lambda r: order[r["key"]])  # job order: the same files whichever run finished first
        timings["train_and_eval_s"] = time.perf_counter() - t1
        table = {m: stats.method_entry([r for r in results if r["method"] == m], steps) for m in methods}
        if cfg.warm_start.on:  # the setting and both phases' steps and times, in each method's entry
            for m in methods:
                table[m]["warm_start"] = method_block(cfg, [r for r in results if r["method"] == m])
        per_method = {m: {r["seed"]: stats.run_metrics(r) for r in results if r["method"] == m} for m in methods}
        base_runs = [r for r in results if r["method"] == "base"]
        rows = stats.metric_rows(world_summary["bench"])
        document = {**table, "regime": cfg.regime,
                    "base": stats.method_entry(base_runs, 0) if base_runs else None,
                    "paired": stats.paired(per_method, rows),
                    "units": "accuracy and recall in percent; paired differences in points"}
        from tripletclip.eval.world_zeroshot import attach_zeroshot  # the evaluators are a large import

        attach_zeroshot(document, results)  # each entry's zero-shot block and change vs the base (issue 24)
        if transfer_summary:
            _add_transfer(document, results, methods, transfer_summary)
        sims = {m: {k: [v for r in results if r["method"] == m for v in r["sims"][k]]
                    for k in ("text", "vision", "cross_pos", "cross_neg")} for m in methods}
        meta = _meta(cfg, preset, run_base, spec, world_summary, base, results, timings, jobs, n_train, steps)
        meta["methods"] = [{"name": m.label, "objective": m.objective, "run": m.run} for m in specs]
        if cfg.warm_start.on:
            meta["warm_start"] = warm_meta(cfg, warm_summary, timings["warm_world_s"])
        meta["settings"] = settings  # resolved run and base configs, what differs from the preset, the preflight
        meta["resume"] = state.meta([r["key"] for r in reused])
        meta["wall_time_s"] = time.perf_counter() - t_start  # until the results are written (the report after)
        if transfer_summary:  # the benchmark's own checks: row counts, training overlap, text-only accuracy
            meta["transfer_benchmark"] = {k: transfer_summary[k] for k in (
                "counts", "winoground_counts", "rejected", "training_overlap", "text_only", "seed")}
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
        (out / "similarities.json").write_text(json.dumps(sims) + "\n")
        (out / "demo_meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
        from tripletclip.demo.output import print_tables, write_report_or_say

        print_tables(document, echo)
        if transfer_summary:
            from tripletclip.demo.transfer import table_lines

            for split in ("transfer", "paraphrase"):
                echo(f"\n{split} split: accuracy % with 95% Wilson intervals from the row counts (categories), "
                     "± 1.96 binomial SE (means)")
                for line in table_lines(document, ["base", *methods], split):
                    echo(line)
        # the same code as `tripletclip report OUT`: the page is made from the files just written (curves: runs/)
        write_report_or_say(out)
        warm_line = f"warm world {timings['warm_world_s']:.0f} s, " if "warm_world_s" in timings else ""
        echo(f"\n[demo] wall time {meta['wall_time_s']:.0f} s (world {timings['world_build_s']:.0f} s, {warm_line}"
             f"transfer benchmark {timings.get('transfer_build_s', 0):.0f} s, base "
             f"{timings.get('base_s', 0):.0f} s, training + evaluation {timings['train_and_eval_s']:.0f} s); "
             f"results: {out / 'results.json'}; report: {out / 'report.html'}")
    return document


def _world_data(cfg: DemoConfig, spec_json: dict[str, Any], image_size: int, n_train: int, out: Path, jobs: int,
                progress: bool, state: Any, timings: dict[str, float]
                ) -> tuple[dict[str, Any], Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """(world summary, warm world summary or None, transfer benchmark manifest or None): re-used where a resumed
    demo completed them (``state``: demo/resume.py's Resume), else built, each in a process of its own."""
    from tripletclip.world import SUGARCREPE_TYPES

    batch_blocks = cfg.run_config().train.batch_size if cfg.batch_without_swaps else 0
    t0 = time.perf_counter()
    world = state.world(out / "world", {"seed": cfg.world_seed, "image_size": image_size, "spec": spec_json,
                                        "batch_blocks": batch_blocks, "train.n_neg": cfg.n_neg,
                                        "train.edit_types": list(cfg.train_edit_types or SUGARCREPE_TYPES)})
    if world is None:
        world = _isolated(build_world_data, out / "world", n_train, cfg.world_seed, spec_json, image_size, jobs,
                          n_bench=cfg.n_bench, n_retrieval=cfg.n_retrieval, n_neg=cfg.n_neg,
                          edit_types=cfg.train_edit_types, progress=progress, batch_blocks=batch_blocks)
    timings["world_build_s"] = time.perf_counter() - t0
    trained, warm = [], None  # training shards besides the world's: the transfer split rejects their texts too
    if cfg.warm_start.on:  # built before the transfer split, which rejects its texts
        t0 = time.perf_counter()
        warm = ensure_warm_world(cfg, world, spec_json, out, progress, state)
        timings["warm_world_s"] = time.perf_counter() - t0
        trained.append(str(warm_world_dir(out) / "train"))
    if not cfg.n_transfer:
        return world, warm, None
    from tripletclip.demo.transfer import build_transfer_data
    from tripletclip.world.transfer import TRANSFER_CATEGORIES

    t0 = time.perf_counter()
    transfer = state.transfer(out / "world" / "transfer", {
        "seed": cfg.world_seed, "image_size": image_size, "spec": spec_json,
        "images.count": 2 * cfg.n_transfer * len(TRANSFER_CATEGORIES)})
    if transfer is None:
        transfer = _isolated(build_transfer_data, str(out / "world"), spec_json, cfg.world_seed, image_size,
                             cfg.n_transfer, trained)
    timings["transfer_build_s"] = time.perf_counter() - t0
    return world, warm, transfer


def _claim_demo(out: Path, preset: str, overwrite: bool, resume: bool = False) -> tuple[FolderLock, bool]:
    """Lock ``out`` and make it this demo's: new, or an earlier demo's (replaced with ``overwrite``, continued
    with ``resume``); (the lock, whether ``out`` holds an earlier demo now)."""
    lock = FolderLock(out, "another demo", "use another --out")
    try:
        held = claim_output(out, DEMO, overwrite)
        if held and not (overwrite or resume):
            raise ConflictError(_held_message(out))
    except BaseException:
        lock.release()
        raise
    return lock, held and not overwrite


def _held_message(out: Path) -> str:
    """The refusal of a folder that holds a demo: which one, finished or not, and the three ways on."""
    from tripletclip.demo.resume import read_plan

    try:
        before = json.loads((out / "demo_meta.json").read_text()).get("preset", "?")
    except (OSError, ValueError, AttributeError):
        before = (read_plan(out) or {}).get("preset", "?")
    state = "a" if (out / "results.json").is_file() else "an unfinished"
    return (f"--out {out}: already holds {state} demo (preset {before}); pass --resume to continue it with the "
            f"same settings (what finished is re-used), --overwrite to replace it (only what that demo wrote is "
            f"removed), or choose another --out")


def _add_transfer(document: dict[str, Any], results: Sequence[dict[str, Any]], methods: Sequence[str],
                  summary: dict[str, Any]) -> None:
    """results.json's ``transfer`` / ``paraphrase`` blocks per method (and base), with their paired differences
    against CLIP and NegCLIP (``paired``)."""
    from tripletclip.demo import transfer as tr

    counts = summary["counts"]
    for m in [*methods, "base"]:
        runs = [r for r in results if r["method"] == m]
        if runs and isinstance(document.get(m), dict):
            for split in tr.SPLITS:
                document[m][split] = tr.split_entry(runs, split, counts)
    for split in tr.SPLITS:
        # NOTE: kept inside each method's block: results.json's top-level keys are method names for the report
        per_method = {m: {r["seed"]: tr.run_metrics(r, split) for r in results if r["method"] == m} for m in methods}
        for m, refs in stats.paired(per_method, tr.metric_rows(counts, split)).items():
            if document.get(m, {}).get(split):
                document[m][split]["paired"] = refs


def _job(run_base: dict[str, Any], method: str, seed: int, shards: str, bench: Path, runs_dir: Path,
         train: bool = True, transfer_dir: str = "", warm: tuple[str, int] = ("", 0)) -> Job:
    """``method`` (a label) trains ``run_base`` as given (its loss.name, else the label as objective); ``base``
    evaluates the starting weights. ``warm``: (warm world shards, steps) of a warm start (demo/warm.py), or
    ("", 0): the job trains phase 1, then ``cfg`` is phase 2 in the run's own folder."""
    name = f"{method}-seed{seed}"
    objective = "clip" if method == "base" else run_base.get("loss", {}).get("name") or method
    cfg = config_from_dict(deep_merge(run_base, {
        "loss": {"name": objective},
        "data": {"train": shards}, "train": {"seed": seed, "output_dir": str(runs_dir), "name": name,
                                             "progress": False}}), where=f"demo run {name}")
    run, first = config_to_dict(cfg), None
    if train and warm[0]:
        first, run = warm_jobs(run, *warm)
    return Job(key=name, method=method, seed=seed, cfg=run, bench_dir=str(bench),
               threads=max(1, cfg.train.threads), eval_batch_size=cfg.eval.batch_size, train=train,
               transfer_dir=transfer_dir, warm_cfg=first)


def _meta(cfg: DemoConfig, preset: Optional[str], run_base: dict[str, Any], spec: Any, world_summary: dict[str, Any],
          base: Optional[dict[str, Any]], results: Sequence[dict[str, Any]], timings: dict[str, float], jobs: int,
          n_train: int, steps: int) -> dict[str, Any]:
    """demo_meta.json: what produced the numbers."""
    from tripletclip.utils.provenance import code_version

    batch = run_base["train"]["batch_size"]
    return {
        "summary": f"{cfg.regime} regime: {len(cfg.seeds)} seeds x objectives at equal compute on the embedded world "
                   f"(world seed {cfg.world_seed}, {n_train} training triplets, {cfg.n_bench} benchmark rows per "
                   f"category, {steps} steps x batch {batch}).",
        "preset": preset or "demo", "demo_config": config_to_dict(cfg), "run_config": run_base,
        "world_spec": spec.to_json(), "world": world_summary, "base": base, "parallel_jobs": jobs, **timings,
        "code_version": code_version(),
        "runs": [{k: r.get(k) for k in ("key", "method", "seed", "run_dir", "train_s", "eval_s", "weights_sha256")}
                 | ({"warm_start": r["warm_start"]} if r.get("warm_start") else {}) for r in results],
        "protocol": "SugarCrepe rule: correct iff s(x, y) > s(x, y') (ties wrong); mean = unweighted mean of the "
                    "seven categories; tables: mean over seeds ± half the min..max range; paired: per-seed "
                    "differences, real = same sign on every seed and |mean| > 1.96 x the binomial standard error "
                    "of the difference",
    }
