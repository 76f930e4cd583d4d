"""VL-CheckList (Zhao et al., arXiv 2207.00221): object, attribute and relation hard negatives, ITC task.

Files as the official repository ships them: ``corpus/v1/<Type>/<sub>/<source>.yaml`` (``ANNO_PATH``, ``IMG_ROOT``)
pointing at ``data/**.json``, each a JSON list of ``[image_path, {"POS": [...], "NEG": [...]}]`` with the image at
``<images>/<IMG_ROOT>/<image_path>`` (``vg/``, ``swig/``, ``hake/``). ``--annotations`` is the folder holding
``corpus/`` and ``data/``; ``--images`` the folder holding ``vg/``, ``swig/`` and ``hake/``.

Decision rules (``rule=``), both strict (a tie is wrong):
- ``first`` (official ITC, ``vl_checklist/evaluate.py`` ``Evaluate.eval``, ``task == 'itc'``): correct iff
  s(I, POS[0]) > s(I, NEG[0]).
- ``max`` (used by some later studies): correct iff max over all POS > max over all NEG. 19,341 of the 218,579
  rows here carry 3 POS and 3 NEG, so the two rules give different numbers (Enhance-FineGrained issue 12).
Reported: accuracy per YAML (file), per type (``Attribute/color``, ``Object/Location``, ``Relation/action``, ...)
the unweighted mean of its files, per category (Attribute / Object / Relation) the mean of its types, and
``mean`` over the types. Deliberate differences from the official loop: rows whose image is missing are an error
(or, with ``skip_missing``, dropped and counted) where the official loader drops them silently; the official
sample config scores only the first ``MAX_NUM / 2`` (1,000) rows of each file, here every row unless
``max_rows`` is given (recorded).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import yaml

from tripletclip.eval.base import register_benchmark
from tripletclip.eval.choice import ChoiceRow, run_choice, tally
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_json, protocol
from tripletclip.eval.sugarcrepe import as_list

RULES = {
    "first": "correct iff s(I, POS[0]) > s(I, NEG[0]) (official ITC rule)",
    "max": "correct iff max over all POS of s(I, POS) > max over all NEG of s(I, NEG)",
}


def corpus_files(annotations: str | Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(subset name ``<Type>/<sub>/<source>``, YAML content, annotation file) of every corpus YAML, sorted."""
    root = Path(annotations)
    corpus = root / "corpus" / "v1"
    if not corpus.is_dir():
        raise AnnotationError(f"{root}: no corpus/v1 folder; pass --annotations with the VL-CheckList folder "
                              f"(the one holding corpus/ and data/)")
    out = []
    for y in sorted(corpus.rglob("*.yaml")):
        try:
            cfg = yaml.safe_load(y.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise AnnotationError(f"{y}: not valid YAML ({str(e).splitlines()[0]}); re-download the corpus") from None
        if not isinstance(cfg, dict) or "ANNO_PATH" not in cfg or "IMG_ROOT" not in cfg:
            raise AnnotationError(f"{y}: expected ANNO_PATH and IMG_ROOT keys (VL-CheckList corpus format)")
        out.append((y.relative_to(corpus).with_suffix("").as_posix(), cfg, root / cfg["ANNO_PATH"]))
    if not out:
        raise AnnotationError(f"{corpus}: no YAML files; pass the VL-CheckList folder as --annotations")
    return out


def type_of(subset: str) -> str:
    """``Attribute/color/vg`` -> ``Attribute/color``; ``Object/Location/center/vg_obj`` -> ``Object/Location``."""
    return "/".join(subset.split("/")[:2])


def load_vl_checklist(
    annotations: str | Path, types: Optional[Any] = None, rule: str = "first", max_rows: Optional[int] = None,
    allow_missing_files: bool = False,
) -> tuple[list[ChoiceRow], list[dict[str, Any]], list[str], list[str]]:
    """(rows, file records, subset names, YAMLs whose annotation file is missing)."""
    if rule not in RULES:
        raise AnnotationError(f"vl_checklist: unknown rule {rule!r}; use one of {', '.join(RULES)}")
    wanted = as_list(types)
    files = [f for f in corpus_files(annotations) if not wanted or any(f[0] == t or f[0].startswith(t.rstrip("/") + "/")
                                                                        for t in wanted)]
    if wanted and not files:
        raise AnnotationError(f"vl_checklist: types {', '.join(wanted)} match no corpus YAML; e.g. Attribute/color, "
                              f"Object/Location, Relation/spatial")
    missing = [f"{s} ({p})" for s, _, p in files if not p.is_file()]
    if missing and not allow_missing_files:
        raise AnnotationError(f"vl_checklist: {len(missing)} annotation file(s) named by the corpus are missing, first: "
                              f"{'; '.join(missing[:3])}; add them, name the types to score (option types=...), or "
                              f"pass option allow_missing_files=true (type means are then over the files present)")
    rows: list[ChoiceRow] = []
    records, names = [], []
    for subset, cfg, path in files:
        if not path.is_file():
            continue
        data = load_json(path)
        if not isinstance(data, list):
            raise AnnotationError(f"{path}: expected a JSON list of [image_path, {{POS, NEG}}] rows")
        img_root = str(cfg["IMG_ROOT"]).strip("/")
        kept = data[: int(max_rows)] if max_rows else data
        for i, item in enumerate(kept):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
                    and item[1].get("POS") and item[1].get("NEG")):
                raise AnnotationError(f"{path}: row {i} is not [image_path, {{'POS': [...], 'NEG': [...]}}]")
            pos, neg = list(item[1]["POS"]), list(item[1]["NEG"])
            texts, n_true = ([pos[0], neg[0]], 1) if rule == "first" else (pos + neg, len(pos))
            rows.append(ChoiceRow(subset, i, f"{img_root}/{item[0]}", texts, n_true))
        records.append(file_record(path, len(data), corpus=subset, **({"rows_scored": len(kept)} if max_rows else {})))
        names.append(subset)
    return rows, records, names, missing


def max_rule(scores: list[float], n_true: int) -> tuple[bool, bool]:
    """(correct, tie) of the max-over-all rule."""
    hi_pos, hi_neg = max(scores[:n_true]), max(scores[n_true:])
    return hi_pos > hi_neg, hi_pos == hi_neg


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


@register_benchmark("vl_checklist", summary="VL-CheckList ITC: POS[0] vs NEG[0] per file, averaged per type")
def evaluate_vl_checklist(
    encoder: Any,
    annotations: str | Path,
    images: Any = None,
    types: Any = None,
    rule: str = "first",
    max_rows: Optional[int] = None,
    allow_missing_files: bool = False,
    skip_missing: bool = False,
    blind: bool = False,
    benchmark: str = "vl_checklist",
) -> BenchResult:
    """Accuracy per corpus file, per type (mean of its files), per category and overall."""
    cost = Cost(encoder)
    rows, records, names, missing = load_vl_checklist(annotations, types, rule, max_rows, allow_missing_files)
    run = run_choice(benchmark, encoder, rows, names, images, skip_missing, blind, cost)
    if rule == "max":  # re-decide every row and re-tally (run_choice applied min(POS) > max(NEG))
        for x in run.scored:
            x.correct, x.tie = max_rule(x.scores, x.row.n_true)
        run.tallies = tally(run.scored, run.skipped, names)
    by_type: dict[str, list[str]] = {}
    for n in names:
        by_type.setdefault(type_of(n), []).append(n)
    type_acc = {t: _mean([run.tallies[n].accuracy for n in files]) for t, files in by_type.items()}
    cats: dict[str, list[float]] = {}
    for t, acc in type_acc.items():
        cats.setdefault(t.split("/")[0], []).append(acc)
    aggregates = {**type_acc, **{c: _mean(v) for c, v in cats.items()}, "mean": _mean(list(type_acc.values()))}
    rules = {
        "<Category>/<type>": "unweighted mean of the accuracies of the type's corpus files",
        "<Category>": "unweighted mean of its types", "mean": f"unweighted mean of the {len(type_acc)} types",
    }
    proto = protocol(RULES[rule], rules, blind, rule=rule, max_rows=max_rows,
                     files_missing=missing, missing_images="error, or dropped and counted with skip_missing "
                     "(the official loader drops them silently)")
    return run.result(proto, aggregates, dict(aggregates), records)
