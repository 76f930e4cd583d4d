"""One demo job, run in a worker process: train one (method, seed) with the real trainer, then evaluate it on the
world benchmark with the real evaluators and measure the similarity distributions of TripletCLIP's Fig. 3.

Jobs are plain picklable dataclasses so that a process pool runs them; the worker sets its own torch thread
count (several trainings share the cores side by side instead of fighting over them).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from tripletclip.edit_types import SUGARCREPE_PP_TYPES, SUGARCREPE_TYPES

SIM_CATEGORIES = SUGARCREPE_PP_TYPES  # replace and swap: the minimal pairs of Fig. 3
RECORD_FILE = "demo_job.json"  # a finished job's record in its run folder: what `demo --resume` re-uses
RECORD_FORMAT = "tripletclip-demo-job/1"
COUNTERS = ("real_pairs_seen", "synthetic_images_seen", "neg_texts_seen", "samples_seen")  # summed over phases


@dataclass(frozen=True)
class Job:
    """Train ``cfg`` (a RunConfig as a dict); evaluate on ``bench_dir`` unless ``evaluate`` is False.

    ``train=False`` evaluates the model ``cfg`` starts from (``model.pretrained``) without training: the
    fine-tuning regime's base.
    """

    key: str
    method: str
    seed: int
    cfg: dict[str, Any]
    bench_dir: str
    threads: int = 1
    evaluate: bool = True
    eval_batch_size: int = 256
    sim_rows: int = 400
    train: bool = True
    transfer_dir: str = ""  # the transfer benchmark (demo/transfer.py); "" = none
    # a warm start's phase 1 (demo/warm.py): trained first, ``cfg`` (phase 2) starts from its run folder
    warm_cfg: Optional[dict[str, Any]] = None


def run_job(job: Job) -> dict[str, Any]:
    """Train, evaluate, measure; returns a JSON-able record (raises on failure, with the run folder named)."""
    import torch

    torch.set_num_threads(max(1, job.threads))
    from tripletclip.config.load import config_from_dict
    from tripletclip.train import train

    cfg = config_from_dict(job.cfg, where=f"demo job {job.key}")
    if not job.train:
        from tripletclip.models import create_model

        t1 = time.perf_counter()
        bundle = create_model(cfg.model.name, cfg.model.pretrained)
        bundle.model.eval()
        out = {"key": job.key, "method": job.method, "seed": job.seed, "run_dir": None, "train_s": 0.0,
               "final": {}, "curve": []}
        out.update(evaluate_bundle(bundle, Path(job.bench_dir), job.eval_batch_size, job.sim_rows))
        out.update(_transfer(bundle, job))
        out["eval_s"] = time.perf_counter() - t1
        write_record(job, out)
        return out
    warm_s, warm_curve = 0.0, []
    if job.warm_cfg is not None:
        from tripletclip.demo.warm import train_phase

        t0 = time.perf_counter()
        warm_dir = train_phase(job.warm_cfg, f"demo job {job.key} (warm start)")
        drop_train_state(warm_dir)
        warm_s, warm_curve = time.perf_counter() - t0, read_curve(warm_dir)
    t0 = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t0
    run_dir = Path(result["run_dir"])
    out = {"key": job.key, "method": job.method, "seed": job.seed, "run_dir": str(run_dir),
           "train_s": warm_s + train_s, "final": result.get("final", {}), "curve": read_curve(run_dir)}
    if job.warm_cfg is not None:  # both phases: their times, and one loss curve over the run's steps
        offset = job.warm_cfg["train"]["steps"]
        out["warm_start"] = {"run_dir": str(warm_dir), "train_s": [warm_s, train_s], "steps": [offset, cfg.train.steps]}
        out["curve"] = warm_curve + [(s + offset, v) for s, v in out["curve"]]
        first = json.loads((warm_dir / "final_metrics.json").read_text())
        for key in COUNTERS:  # what the run saw over both phases (results.json's pairs_seen and the like)
            if isinstance(out["final"].get(key), (int, float)) and isinstance(first.get(key), (int, float)):
                out["final"][key] += first[key]
    if job.evaluate:
        from tripletclip.models import load_run_model

        t1 = time.perf_counter()
        bundle = load_run_model(run_dir)
        out.update(evaluate_bundle(bundle, Path(job.bench_dir), job.eval_batch_size, job.sim_rows))
        out.update(_transfer(bundle, job))
        out["eval_s"] = time.perf_counter() - t1
    drop_train_state(run_dir)
    write_record(job, out)
    return out


def job_steps(job: Job) -> int:
    """Training steps of ``job``, both phases of a warm start."""
    if not job.train:
        return 0
    return job.cfg["train"]["steps"] + (job.warm_cfg["train"]["steps"] if job.warm_cfg else 0)


def job_folders(job: Job) -> list[Path]:
    """The run folders ``job`` writes: its own, and its warm start's phase 1 (first)."""
    cfgs = ([job.warm_cfg] if job.warm_cfg else []) + [job.cfg]
    return [Path(c["train"]["output_dir"]) / c["train"]["name"] for c in cfgs]


def record_path(job: Job) -> Path:
    """Where ``job`` keeps its record: its run folder (``train.output_dir/train.name``; the base's evaluation,
    which trains nothing, gets a folder of that name too)."""
    train = job.cfg["train"]
    return Path(train["output_dir"]) / train["name"] / RECORD_FILE


def write_record(job: Job, result: dict[str, Any]) -> None:
    """The job's last step: the job and its result record, atomically (a killed job leaves none, so a resumed
    demo runs it again; demo/resume.py verifies a record before re-using it)."""
    from tripletclip.utils.files import write_json_atomic

    write_json_atomic(record_path(job), {"format": RECORD_FORMAT, "job": asdict(job), "result": result})


def drop_train_state(run_dir: Path) -> int:
    """Delete the optimiser state (``train_state.pt``, 28 MB of a demo run's 41 MB) of a finished demo run's
    checkpoints; returns the bytes freed.

    Safe because nothing reads it: a demo never resumes a run partway (a resumed demo re-uses finished runs and
    runs unfinished ones afresh), and evaluation,
    the report, ``tripletclip export`` and ``model.pretrained`` load the weights only
    (``verified_checkpoint(with_state=False)``). ``tripletclip train --resume`` on such a run stops with one
    line (``train_state.pt is missing``) and leaves the checkpoint in place.
    """
    from tripletclip.train.checkpoint import STATE, step_folders

    freed = 0
    for ckpt in step_folders(run_dir):
        state = ckpt / STATE
        if state.is_file():
            freed += state.stat().st_size
            state.unlink()
    return freed


def _transfer(bundle: Any, job: Job) -> dict[str, Any]:
    """The transfer benchmark's scores of ``bundle`` (empty when the job has none)."""
    from tripletclip.demo.transfer import evaluate_transfer

    return evaluate_transfer(bundle, job.transfer_dir, job.eval_batch_size)


def read_curve(run_dir: Path, key: str = "loss/loss") -> list[tuple[int, float]]:
    """(step, total loss) pairs from a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    pts: list[tuple[int, float]] = []
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if key in rec and rec[key] is not None:
                pts.append((int(rec["step"]), float(rec[key])))
    return pts


def evaluate_run(run_dir: Path, bench_dir: Path, batch_size: int = 256, sim_rows: int = 400) -> dict[str, Any]:
    """:func:`evaluate_bundle` of a run folder's newest checkpoint."""
    from tripletclip.models import load_run_model

    return evaluate_bundle(load_run_model(run_dir), bench_dir, batch_size, sim_rows)


def evaluate_bundle(bundle: Any, bench_dir: Path, batch_size: int = 256, sim_rows: int = 400) -> dict[str, Any]:
    """World benchmark scores (percent) per split and category, Winoground, retrieval, and similarities."""
    from tripletclip.eval import Encoder, evaluate
    from tripletclip.eval.world_zeroshot import world_zeroshot

    enc = Encoder.from_bundle(bundle, batch_size=batch_size)
    rec = evaluate(["world"], enc, {"world": {"annotations": str(bench_dir)}})["world"]
    head = rec["headline"]
    scores: dict[str, Any] = {}
    for split in ("seen", "heldout"):
        cats = {c: 100.0 * head[f"sugarcrepe_{split}/{c}"] for c in SUGARCREPE_TYPES
                if f"sugarcrepe_{split}/{c}" in head}
        if cats:
            cats["mean"] = sum(cats.values()) / len(cats)
            scores[split] = cats
    wino: dict[str, float] = {}
    for k in ("text", "image", "group"):
        vals = [head[f"winoground_{s}/{k}"] for s in ("seen", "heldout") if f"winoground_{s}/{k}" in head]
        if vals:
            wino[k] = 100.0 * sum(vals) / len(vals)
    retrieval = {k.split("/")[1]: 100.0 * v for k, v in head.items() if k.startswith("retrieval/")}
    return {"scores": scores, "winoground": wino, "retrieval": retrieval, "eval_record_cost": rec.get("cost"),
            "sims": similarities(enc, bench_dir, sim_rows), "weights_sha256": bundle.identity.get("weights_sha256"),
            "zeroshot": world_zeroshot(enc, bench_dir)}  # forgetting: shape/colour zero-shot (eval/world_zeroshot.py)


def similarities(enc: Any, bench_dir: Path, n_rows: int = 400, split: Optional[str] = "seen") -> dict[str, list[float]]:
    """Cosine similarities on replace/swap rows: text tower cos(y, y'), vision tower cos(x, x'), and the
    image-text scores s(x, y), s(x, y') (TripletCLIP, arXiv 2411.02545, Fig. 3)."""
    rows = []
    for cat in SIM_CATEGORIES:
        path = bench_dir / "sugarcrepe" / f"{cat}.json"
        if path.is_file():
            rows += [r for r in json.loads(path.read_text()).values() if split is None or r.get("split") == split]
    rows = rows[:: max(1, len(rows) // n_rows)][:n_rows]
    if not rows:
        return {"text": [], "vision": [], "cross_pos": [], "cross_neg": []}
    images = bench_dir / "images"
    x = enc.encode_images([str(images / r["filename"]) for r in rows])
    xn = enc.encode_images([str(images / r["filename"].replace("-pos.png", "-neg.png")) for r in rows])
    y = enc.encode_texts([r["caption"] for r in rows])
    yn = enc.encode_texts([r["negative_caption"] for r in rows])
    return {
        "text": (y * yn).sum(-1).tolist(),
        "vision": (x * xn).sum(-1).tolist(),
        "cross_pos": (x * y).sum(-1).tolist(),
        "cross_neg": (x * yn).sum(-1).tolist(),
    }
