"""``tripletclip eval --suite compositionality``: every benchmark the user has files for, one table, several models.

A suite is an ordered list of benchmarks, each with the headline number papers report for it (the official
metric: SugarCrepe's mean over its 7 subsets, Winoground's group score, COLA's multi-object accuracy, CREPE's
Recall@1, NegBench's MCQ accuracy and negated-retrieval R@5, ...). The suite config (YAML or JSON) names the
files of the benchmarks the user has, in the ``--config`` format ``{benchmark: {annotations, images, options}}``;
benchmarks it does not name are listed as not run. Every path the config names is checked before any model
loads, and all missing paths are reported together, one line each.

The table: per benchmark its headline for every model side by side, then the macro average (unweighted mean of
the headlines of the compositional benchmarks every model ran), then the zero-shot figure (top-1 accuracy, kept
out of the macro average). With a base model, each other model also gets its change against it in points.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.errors import InputError, NotFoundError
from tripletclip.eval.records import clean
from tripletclip.utils.files import write_json_atomic
from tripletclip.utils.provenance import code_version

SUITE_FORMAT = "tripletclip-eval-suite/1"

# benchmark -> (headline key, what it is); order is the table's order
SUITES: dict[str, dict[str, tuple[str, str]]] = {
    "compositionality": {
        "sugarcrepe": ("mean", "mean of 7 subsets"),
        "sugarcrepe_pp": ("itt_mean", "ITT, mean of 5 subsets"),
        "valse": ("mean", "mean of instruments"),
        "aro_vg_relation": ("macro", "macro accuracy"),
        "aro_vg_attribution": ("macro", "macro accuracy"),
        "aro_coco_order": ("precision@1", "precision@1"),
        "aro_flickr_order": ("precision@1", "precision@1"),
        "winoground": ("group", "group score"),
        "vl_checklist": ("mean", "ITC, mean of types"),
        "cola": ("accuracy", "multi-object accuracy"),
        "crepe": ("mean", "R@1, mean of types"),
        "negbench_mcq": ("mean", "MCQ accuracy"),
        "negbench_retrieval": ("t2i_r5", "negated t2i R@5"),
        "whatsup": ("mean", "accuracy, mean of files"),
        "svo_probes": ("accuracy", "accuracy"),
        "mmvp_vlm": ("mean", "pair accuracy, mean of patterns"),
        "spec": ("mean", "mean of I2T and T2I"),
        "eqben": ("group", "group score"),
        "colorswap": ("group", "group score"),
        "vismin": ("group", "group score"),
        "bivlc": ("group", "group score"),
        "bla": ("mean", "accuracy, mean of phenomena"),
    },
}
ZERO_SHOT = ("zeroshot", "acc1", "zero-shot top-1")
PATH_KEYS = ("annotations", "images", "classnames", "templates")


@dataclass
class ModelSpec:
    """One model of the comparison: a label and how to load it (``load_encoder`` arguments)."""

    label: str
    model: Optional[str] = None
    pretrained: str = ""
    checkpoint: Optional[str] = None

    @staticmethod
    def label_of(model: Optional[str], pretrained: str, checkpoint: Optional[str]) -> str:
        """A short column label: the checkpoint folder's name, or MODEL:TAG (a weights file by its stem)."""
        if checkpoint:
            return Path(checkpoint).name
        tag = Path(pretrained).stem if pretrained and Path(pretrained).exists() else pretrained
        return f"{model}:{tag}" if tag else str(model)

    @classmethod
    def parse(cls, text: str, default_label: Optional[str] = None) -> "ModelSpec":
        """``[LABEL=]SPEC``: SPEC is a run / checkpoint folder, or ``MODEL:PRETRAINED`` (e.g. ViT-B-32-quickgelu:openai)."""
        label, sep, spec = text.partition("=")
        if not sep or "/" in label or ":" in label:
            label, spec = default_label, text
        if Path(spec).is_dir():
            return cls(label or cls.label_of(None, "", spec), checkpoint=spec)
        if spec.startswith(("hf:", "hf-hub:", "local-dir:")):
            return cls(label or spec, model=spec)
        model, _, pretrained = spec.partition(":")
        if not pretrained:
            raise InputError(f"model spec {text!r}: expected a run or checkpoint folder, or MODEL:PRETRAINED "
                             f"(e.g. ViT-B-32-quickgelu:openai)")
        return cls(label or cls.label_of(model, pretrained, None), model=model, pretrained=pretrained)


def read_suite_config(path: str | Path, suite: str) -> dict[str, dict[str, Any]]:
    """The suite config: ``{benchmark: args}``, checked against the suite's benchmarks."""
    from tripletclip.eval.api import read_eval_config

    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    config = read_eval_config(path)
    known = [*SUITES[suite], ZERO_SHOT[0]]
    unknown = [k for k in config if k.split(":", 1)[0] not in known]
    if unknown:
        raise InputError(f"{path}: benchmark(s) {', '.join(unknown)} are not in suite {suite!r} ({', '.join(known)})")
    return config


def missing_paths(config: dict[str, dict[str, Any]], base: Optional[Path] = None) -> list[str]:
    """One line per path the config names that does not exist (relative paths are taken from ``base``)."""
    lines = []
    for name, args in config.items():
        for key in PATH_KEYS:
            values = args.get(key)
            for v in ([values] if isinstance(values, (str, Path)) else values or []):
                p = Path(v) if base is None or Path(v).is_absolute() else base / v
                if not p.exists():
                    lines.append(f"{name}.{key}: {p} not found")
    return lines


def resolve_paths(config: dict[str, dict[str, Any]], base: Path) -> dict[str, dict[str, Any]]:
    """Relative paths in the config are relative to the config file's folder."""
    def fix(v: Any) -> Any:
        if isinstance(v, list):
            return [fix(x) for x in v]
        return str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v

    return {n: {k: fix(v) if k in PATH_KEYS else v for k, v in a.items()} for n, a in config.items()}


def headline_of(name: str, record: dict[str, Any], suite: str) -> Optional[float]:
    key = ZERO_SHOT[1] if name.split(":", 1)[0] == ZERO_SHOT[0] else SUITES[suite][name.split(":", 1)[0]][0]
    v = record.get("headline", {}).get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def build_table(suite: str, results: dict[str, dict[str, Any]], base: Optional[str]) -> dict[str, Any]:
    """``{"columns", "rows", "macro", "zero_shot", "not_run"}`` from ``{label: {benchmark: record}}``."""
    labels = list(results)
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    comp = [n for n in names if n.split(":", 1)[0] != ZERO_SHOT[0]]
    order = list(SUITES[suite])
    comp.sort(key=lambda n: order.index(n.split(":", 1)[0]))

    def row(name: str, metric: str) -> dict[str, Any]:
        vals = {lab: headline_of(name, results[lab].get(name, {}), suite) for lab in labels}
        return {"benchmark": name, "metric": metric, "values": vals, "delta": _delta(vals, base)}

    rows = [row(n, SUITES[suite][n.split(":", 1)[0]][1]) for n in comp]
    in_all = [r for r in rows if all(v is not None for v in r["values"].values())]
    macro_vals = {lab: (sum(r["values"][lab] for r in in_all) / len(in_all) if in_all else None) for lab in labels}
    macro = {"benchmark": "macro average", "metric": f"unweighted mean of {len(in_all)} headlines",
             "values": macro_vals, "delta": _delta(macro_vals, base), "benchmarks": [r["benchmark"] for r in in_all]}
    zs = [row(n, ZERO_SHOT[2]) for n in names if n.split(":", 1)[0] == ZERO_SHOT[0]]
    not_run = [b for b in SUITES[suite] if not any(n.split(":", 1)[0] == b for n in names)]
    skipped = {n: max(int(results[lab].get(n, {}).get("skipped_missing") or 0) for lab in labels) for n in names}
    return {"columns": labels, "base": base, "rows": rows, "macro": macro, "zero_shot": zs, "not_run": not_run,
            "skipped_missing": {n: k for n, k in skipped.items() if k}}


def _delta(vals: dict[str, Optional[float]], base: Optional[str]) -> dict[str, Optional[float]]:
    if base is None or vals.get(base) is None:
        return {}
    return {lab: (v - vals[base] if v is not None else None) for lab, v in vals.items() if lab != base}


def format_table(table: dict[str, Any]) -> str:
    """The table in percent, one column per model and, with a base, one change column per other model."""
    labels, base = table["columns"], table["base"]
    deltas = [lab for lab in labels if base is not None and lab != base]
    head = ["benchmark", "metric", *labels, *[f"{lab} vs {base}" for lab in deltas]]

    def cells(r: dict[str, Any]) -> list[str]:
        pct = [f"{100 * v:.2f}" if v is not None else "-" for v in r["values"].values()]
        ch = [f"{100 * r['delta'][lab]:+.2f}" if r["delta"].get(lab) is not None else "-" for lab in deltas]
        return [r["benchmark"], r["metric"], *pct, *ch]

    body = [cells(r) for r in table["rows"]]
    tail = [cells(table["macro"])] + [cells(r) for r in table["zero_shot"]]
    allr = [head, *body, *tail]
    w = [max(len(r[i]) for r in allr) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r))  # noqa: E731
    rule = "-" * len(fmt(head))
    lines = [fmt(head), rule, *map(fmt, body), rule, *map(fmt, tail)]
    for n, k in table.get("skipped_missing", {}).items():
        lines.append(f"{n}: {k} rows skipped (images missing; --skip-missing / skip_missing)")
    if table["not_run"]:
        lines.append(f"not run (no files in the suite config): {', '.join(table['not_run'])}")
    return "\n".join(lines)


def run_suite(
    suite: str,
    config_path: str | Path,
    models: Sequence[ModelSpec],
    out: str | Path,
    base: Optional[str] = None,
    load: Optional[Callable[[ModelSpec], Any]] = None,
    skip_missing: bool = False,
    command: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Check the config, evaluate every model on every configured benchmark, write and return the suite result.

    ``load`` builds an encoder from a :class:`ModelSpec` (default: :func:`tripletclip.eval.load_encoder`).
    """
    from tripletclip.eval.api import evaluate

    config_path = Path(config_path)
    config = read_suite_config(config_path, suite)
    missing = missing_paths(config, config_path.parent)
    if missing:  # before any model loads: every missing path, one line each
        raise NotFoundError(f"{config_path}: {len(missing)} path(s) not found:\n  " + "\n  ".join(missing))
    if not config:
        raise InputError(f"{config_path}: names no benchmark; add e.g. 'cola: {{annotations: ..., images: ...}}'")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise InputError(f"model labels must differ, got {', '.join(labels)}; name them LABEL=SPEC")
    if base is not None and base not in labels:
        raise InputError(f"--base {base!r} is not one of the models ({', '.join(labels)})")
    args = resolve_paths(config, config_path.parent)
    if load is None:
        from tripletclip.eval.api import load_encoder

        def load(m: ModelSpec) -> Any:  # noqa: F811
            return load_encoder(m.model, m.pretrained, m.checkpoint, progress=True)
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    described: dict[str, Any] = {}
    for m in models:
        encoder = load(m)
        described[m.label] = encoder.describe() if hasattr(encoder, "describe") else {}
        results[m.label] = evaluate(list(args), encoder, args, skip_missing=skip_missing or None)
    table = build_table(suite, results, base)
    doc = {
        "format": SUITE_FORMAT, "suite": suite, "unit": "fractions; the printed table is in percent",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - started, 3),
        "code_version": code_version(), "config": {"path": str(config_path), "benchmarks": args},
        "models": described, "command": command or {}, "table": table, "text": format_table(table),
        "results": results,
    }
    write_json_atomic(out, clean(doc), indent=2)
    return json.loads(json.dumps(clean(doc)))


def run_suite_command(
    suite: str, suite_config: Optional[str], out: Optional[str], model: Optional[str], pretrained: str,
    checkpoint: Optional[str], base_spec: Optional[str], compare_specs: Sequence[str], *, device: str = "cpu",
    batch_size: int = 256, precision: str = "fp32", force_quick_gelu: bool = False, skip_missing: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The CLI side of ``eval --suite``: the models from the flags, then :func:`run_suite`, then the table."""
    from tripletclip.eval.api import load_encoder

    if not suite_config or not out:
        raise InputError("--suite needs --suite-config (the files of each benchmark) and --out (the result JSON)")
    models = []
    if model or checkpoint:
        models.append(ModelSpec(ModelSpec.label_of(model, pretrained, checkpoint), model, pretrained, checkpoint))
    base = ModelSpec.parse(base_spec) if base_spec else None
    models += ([base] if base else []) + [ModelSpec.parse(s) for s in compare_specs]
    if not models:
        raise InputError("--suite: give a model (--model/--pretrained or --checkpoint), --base and/or --compare")

    def load(m: ModelSpec) -> Any:
        return load_encoder(m.model, m.pretrained, m.checkpoint, device, batch_size, precision,
                            force_quick_gelu and m.model == model, progress=True)

    doc = run_suite(suite, suite_config, models, out, base.label if base else None, load, skip_missing,
                    command={"suite": suite, "suite_config": suite_config,
                             "models": [m.__dict__ for m in models], "base": base.label if base else None})
    echo(doc["text"])
    echo(f"results: {out} (fractions, full precision)")
    return doc
