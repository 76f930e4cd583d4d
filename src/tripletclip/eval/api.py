"""Evaluate by benchmark name: the Python API (trainer, notebooks) and the library side of ``tripletclip eval``.

``evaluate(["sugarcrepe", "retrieval"], encoder, {"sugarcrepe": {"annotations": ..., "images": ...}, ...})``
returns ``{name: result record}`` (JSON-serialisable); ``headline_scalars`` flattens it to
``{"sugarcrepe/mean": ..., "retrieval/i2t_r1": ...}`` for metric loggers. A benchmark's args may carry
``every: N`` (steps): with ``step=`` given, it runs only when ``step % N == 0``, so the trainer can track cheap
zero-shot / retrieval often and long compositional suites rarely. ``name:label`` runs evaluator ``name`` under
result key ``name:label`` (e.g. ``retrieval:coco`` and ``retrieval:flickr`` with their own args).
"""
from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.errors import InputError, NotFoundError
from tripletclip.eval.base import EVALUATORS, check_options
from tripletclip.eval.encoder import Encoder
from tripletclip.eval.records import clean, headline_scalars
from tripletclip.utils.files import write_json_atomic, write_jsonl_atomic
from tripletclip.utils.provenance import code_version

RESULT_FORMAT = "tripletclip-eval/1"
# Result files keep every score at full precision as a fraction; what a person reads (the terminal, the demo's
# tables and report) is the same number in percent.
UNIT = "fraction: accuracies, recalls and scores in [0, 1]; printed x100 as percent"


def _names(names: str | Sequence[str]) -> list[str]:
    return [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]


def evaluate(
    names: str | Sequence[str],
    encoder: Any,
    args: Optional[dict[str, dict[str, Any]]] = None,
    *,
    step: Optional[int] = None,
    per_row: Optional[str | Path | list] = None,
    blind: Optional[bool] = None,
    skip_missing: Optional[bool] = None,
) -> dict[str, Any]:
    """Run the named benchmarks with one encoder; ``{name: record}`` of those that ran.

    ``per_row``: a JSONL path (overwritten) or a list to extend with one record per scored row.
    ``blind`` / ``skip_missing`` override every benchmark's own setting when not None.
    """
    args = args or {}
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name in _names(names):
        fn = EVALUATORS.get(name.split(":", 1)[0])
        opts = dict(args.get(name, {}))
        every = opts.pop("every", None)
        if step is not None and every and int(step) % int(every):
            continue
        if blind is not None:
            opts["blind"] = blind
        if skip_missing is not None:
            opts["skip_missing"] = skip_missing
        check_options(name, fn, opts)
        params = inspect.signature(fn).parameters
        if "annotations" not in opts and params["annotations"].default is inspect.Parameter.empty:
            raise InputError(f"benchmark '{name}' needs 'annotations' (the annotation file or folder)")
        result = fn(encoder, **opts)
        record = result.to_dict()
        record["model"] = clean(encoder.describe() if hasattr(encoder, "describe") else getattr(encoder, "identity", {}))
        if step is not None:
            record["step"] = step
        results[name] = record
        rows.extend({**r, "benchmark": name} for r in result.rows)
    if isinstance(per_row, list):
        per_row.extend(rows)
    elif per_row is not None:
        write_jsonl_atomic(per_row, (clean(r) for r in rows))
    return results


def check_quick_gelu(model: str, pretrained: str, force_quick_gelu: bool = False) -> None:
    """Refuse a pretrained tag trained with QuickGELU on a GELU model (or the reverse): a different network.

    open_clip only warns; the scores of such a model are silently wrong (docs/methods.md section 5).
    """
    import open_clip

    if not pretrained or Path(pretrained).exists():
        return
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    if not tag_cfg:  # not a known tag of this model: create_model reports that
        return
    tag_qg = bool(tag_cfg.get("quick_gelu", False))
    model_qg = bool(force_quick_gelu or (open_clip.get_model_config(model) or {}).get("quick_gelu", False))
    if tag_qg != model_qg:
        fix = f"use '{model}-quickgelu' or --force-quick-gelu" if tag_qg else "use the model name without -quickgelu"
        raise InputError(
            f"pretrained '{pretrained}' was trained with{'' if tag_qg else 'out'} QuickGELU but model '{model}' "
            f"{'does not use' if tag_qg else 'uses'} it: that scores a different network; {fix}"
        )


def load_encoder(
    model: Optional[str] = None,
    pretrained: str = "",
    checkpoint: Optional[str | Path] = None,
    device: str = "cpu",
    batch_size: int = 256,
    precision: str = "fp32",
    force_quick_gelu: bool = False,
    progress: bool = False,
    random_init_seed: Optional[int] = None,
) -> Encoder:
    """An encoder over an open_clip model (``model`` + ``pretrained`` tag or file) or a tripletclip checkpoint.

    A model name without weights is refused unless ``random_init_seed`` asks for seeded random weights (a
    baseline): two unseeded runs of one command would score different networks.
    """
    import torch

    from tripletclip.models import create_model, load_run_model

    if (model is None) == (checkpoint is None):
        raise InputError("give either a model name (with --pretrained) or --checkpoint, not both or neither")
    if random_init_seed is not None and (checkpoint is not None or pretrained):
        raise InputError("--random-init scores a model name without weights; drop --pretrained / --checkpoint")
    if checkpoint is not None:
        bundle = load_run_model(checkpoint, device=device)
    elif not pretrained and random_init_seed is None and not model.startswith(("hf:", "hf-hub:", "local-dir:")):
        raise InputError(f"--model {model} without --pretrained would score random weights; pass --pretrained "
                         "(a tag or a weights file), or --random-init for a seeded random baseline")
    else:
        check_quick_gelu(model, pretrained, force_quick_gelu)
        with torch.random.fork_rng(devices=[]):
            if random_init_seed is not None:
                torch.manual_seed(random_init_seed)
            bundle = create_model(model, pretrained, device=device, force_quick_gelu=force_quick_gelu)
        if random_init_seed is not None:
            bundle.identity["random_init_seed"] = random_init_seed
    bundle.model.eval()
    return Encoder.from_bundle(bundle, batch_size=batch_size, device=device, precision=precision, progress=progress)


def check_inputs(benchmarks: str | Sequence[str], args: dict[str, dict[str, Any]]) -> None:
    """What :func:`evaluate` would refuse, checked before a model is loaded or downloaded (issue 20).

    Every benchmark is registered, its options known, its annotations given and present, and at least one of
    its image folders present. Patterns (``{000..009}``, ``*``) and URLs are left to the loaders.
    """
    for name in _names(benchmarks):
        fn = EVALUATORS.get(name.split(":", 1)[0])
        opts = {k: v for k, v in args.get(name, {}).items() if k != "every"}
        check_options(name, fn, opts)
        if "annotations" not in opts and inspect.signature(fn).parameters["annotations"].default is inspect.Parameter.empty:
            raise InputError(f"benchmark '{name}' needs --annotations (the annotation file or folder; see eval --list)")
        for key in ("annotations", "images"):
            value = opts.get(key)
            paths = [str(p) for p in (value if isinstance(value, (list, tuple)) else [value]) if p]
            paths = [p for p in paths if not any(c in p for c in "{*?[") and "://" not in p]
            if paths and not any(Path(p).exists() for p in paths):
                raise NotFoundError(f"benchmark '{name}': --{key} {' '.join(paths)}: no such file or folder; "
                                    f"give the {'annotation files' if key == 'annotations' else 'image folder'} "
                                    "(eval --list says what each benchmark reads)")


def run_eval(
    benchmarks: str | Sequence[str],
    encoder: Encoder,
    args: dict[str, dict[str, Any]],
    out: str | Path,
    per_row: Optional[str | Path] = None,
    blind: bool = False,
    skip_missing: bool = False,
    command: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Evaluate and write the result file (atomically); returns its content."""
    started = time.time()
    results = evaluate(benchmarks, encoder, args, per_row=per_row, blind=blind or None, skip_missing=skip_missing)
    doc = {
        "format": RESULT_FORMAT,
        "unit": UNIT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
        "code_version": code_version(),
        "model": encoder.describe(),
        "command": command or {},
        "scalars": headline_scalars(results),
        "benchmarks": results,
    }
    write_json_atomic(out, clean(doc), indent=2)
    return doc


def read_eval_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """``--config``: a JSON or YAML file ``{benchmark: {annotations, images, options...}}``."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        config = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid {'YAML' if str(path).endswith(('.yaml', '.yml')) else 'JSON'} "
                         f"({str(e).splitlines()[0]}); fix the file") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise InputError(f"{path}: expected a mapping {{benchmark: {{annotations: ..., images: ...}}}}")
    return config


def headline_table(doc: dict[str, Any]) -> str:
    """Every headline number of every benchmark run, in percent, as an aligned table (terminal output)."""
    rows = [(name if i == 0 else "", key, f"{100 * float(v):.2f}") for name, rec in doc["benchmarks"].items()
            for i, (key, v) in enumerate((k, v) for k, v in rec.get("headline", {}).items() if isinstance(v, (int, float)))]
    notes = [f"{name}: skipped {rec['skipped_missing']} rows (missing images)"
             for name, rec in doc["benchmarks"].items() if rec.get("skipped_missing")]
    head = ("benchmark", "metric", "%")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + notes)


def _parse_value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_args(
    benchmarks: str | Sequence[str],
    annotations: Sequence[str] = (),
    images: Sequence[str] = (),
    options: Sequence[str] = (),
    config: Optional[dict[str, dict[str, Any]]] = None,
) -> dict[str, dict[str, Any]]:
    """Per-benchmark args from command-line values.

    ``annotations`` / ``images`` values are ``PATH`` (every benchmark) or ``NAME=PATH`` (one benchmark); several
    image values for one benchmark are searched in order. ``options`` are ``KEY=VALUE`` or ``NAME.KEY=VALUE``.
    ``config`` (e.g. from a JSON/YAML file) gives defaults that these values override.
    """
    names = _names(benchmarks)
    args: dict[str, dict[str, Any]] = {n: dict((config or {}).get(n, {})) for n in names}

    def target(value: str, flag: str) -> tuple[list[str], str]:
        head, sep, rest = value.partition("=")
        if sep and head in names:
            return [head], rest
        if sep and head.split(":", 1)[0] in EVALUATORS:
            raise InputError(f"{flag} {value}: benchmark '{head}' is not among --benchmark {','.join(names)}")
        return names, value

    for value in annotations:
        for n, path in ((n, p) for ns, p in [target(value, "--annotations")] for n in ns):
            args[n]["annotations"] = path
    image_roots: dict[str, list[str]] = {}
    for value in images:
        ns, path = target(value, "--images")
        for n in ns:
            image_roots.setdefault(n, []).append(path)
    for n, roots in image_roots.items():
        args[n]["images"] = roots[0] if len(roots) == 1 else roots
    for value in options:
        key, sep, raw = value.partition("=")
        if not sep:
            raise InputError(f"--option {value}: expected KEY=VALUE or BENCHMARK.KEY=VALUE")
        bench, dot, k = key.rpartition(".")
        targets = [bench] if dot else names
        if dot and bench not in names:
            raise InputError(f"--option {value}: benchmark '{bench}' is not among --benchmark {','.join(names)}")
        for n in targets:
            args[n][k] = _parse_value(raw)
    return args
