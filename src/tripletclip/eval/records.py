"""Result records: what was scored, how it was aggregated, and what produced it.

Numbers for the same model drift between tools by 0.1-2 points through tie rules, averaging and dataset
revisions (docs/methods.md section 4.1). Every result therefore carries, next to each accuracy: the row count, the
decision and tie rule, the aggregation rule of every summary number, the sha256 and row count of every
annotation file, the images that were skipped, and the model identity. Headline scalars (``<bench>/<key>``)
are a flat view for metric loggers.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tripletclip.errors import InputError
from tripletclip.utils.files import sha256_file

TIE_RULE = "strict: correct only if the true score is strictly greater (a tie counts as wrong)"
BLIND_QUERY = "renormalised mean text embedding of every distinct caption scored in this run (true and false pooled)"


class AnnotationError(InputError):
    """A benchmark annotation file is missing or malformed (message names the file, the row and the fix)."""


def load_json(path: str | Path) -> Any:
    """JSON content of an annotation file with a one-line error on failure."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found; check --annotations")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON ({e}); re-download the annotation file") from None


def file_record(path: str | Path, rows: int, **extra: Any) -> dict[str, Any]:
    """sha256 and row count of one annotation file (plus e.g. valid row counts)."""
    if not Path(path).is_file():
        raise AnnotationError(f"{path}: annotation file not found; check --annotations")
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows, **extra}


def load_rows(path: str | Path, fields: Sequence[str], fmt: str, keyed: bool) -> list[tuple[Any, dict]]:
    """(row id, row) of an annotation file, each row checked for ``fields``: a JSON object keyed by row id
    (``keyed``) or a JSON list (ids are positions); ``fmt`` names the format in messages."""
    data = load_json(path)
    if keyed != isinstance(data, dict) or not isinstance(data, (dict, list)):
        want = "an object keyed by row id" if keyed else "a list of rows"
        raise AnnotationError(f"{path}: expected {want} ({fmt} format), got {type(data).__name__}")
    items = list(data.items()) if keyed else list(enumerate(data))
    for rid, row in items:
        require(row, fields, path, rid)
    return items


def require(row: Any, keys: Sequence[str], path: Path | str, row_id: Any) -> None:
    """Fail with the file, the row and the missing field when a row lacks a required field."""
    if not isinstance(row, dict):
        raise AnnotationError(f"{path}: row {row_id} is {type(row).__name__}, expected an object")
    for k in keys:
        if k not in row:
            raise AnnotationError(f"{path}: row {row_id} has no field '{k}' (expected fields: {', '.join(keys)})")


@dataclass
class Tally:
    """Correct / total of one subset, with the rows whose decision was a tie and the rows skipped."""

    correct: int = 0
    rows: int = 0
    ties: int = 0
    skipped_missing: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, ok: bool, tie: bool = False) -> None:
        self.rows += 1
        self.correct += bool(ok)
        self.ties += bool(tie)

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy, "correct": self.correct, "rows": self.rows, "ties": self.ties,
            "skipped_missing": self.skipped_missing, **self.extra,
        }


def unweighted_mean(tallies: dict[str, Tally], names: Optional[Iterable[str]] = None) -> float:
    """Mean of subset accuracies, each subset counting once (TripletCLIP's SugarCrepe "overall")."""
    accs = [tallies[n].accuracy for n in (names if names is not None else tallies) if n in tallies and tallies[n].rows]
    return sum(accs) / len(accs) if accs else math.nan


def weighted_mean(tallies: dict[str, Tally], names: Iterable[str]) -> float:
    """Sample-weighted accuracy over subsets (SugarCrepe paper's Replace / Swap / Add)."""
    present = [tallies[n] for n in names if n in tallies]
    rows = sum(t.rows for t in present)
    return sum(t.correct for t in present) / rows if rows else math.nan


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN -> None, tuples -> lists, Paths -> str."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def protocol(decision: str, aggregation: dict[str, str], blind: bool, **extra: Any) -> dict[str, Any]:
    """The protocol block of a result: decision rule, tie rule, aggregation rules, blind or not."""
    out = {"decision": decision, "tie_rule": TIE_RULE, "aggregation": aggregation, "blind": blind}
    if blind:
        out["blind_query"] = BLIND_QUERY
    return {**out, **extra}


class Cost:
    """What one benchmark run costs, from its creation on: images and texts encoded (cache misses), wall time."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.before = dict(getattr(encoder, "stats", None) or {})
        self.start = time.perf_counter()

    def record(self) -> dict[str, Any]:
        stats = getattr(self.encoder, "stats", None) or {}
        delta = {k: stats[k] - self.before.get(k, 0) for k in ("images_encoded", "texts_encoded") if k in stats}
        return {**delta, "seconds": round(time.perf_counter() - self.start, 3)}


@dataclass
class BenchResult:
    """One benchmark's result; ``rows`` are the per-row records (written to --per-row, not to the result)."""

    benchmark: str
    protocol: dict[str, Any]
    subsets: dict[str, Any]
    aggregates: dict[str, Any]
    headline: dict[str, float]
    annotations: list[dict[str, Any]]
    images: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return clean({
            "benchmark": self.benchmark, "protocol": self.protocol, "subsets": self.subsets,
            "aggregates": self.aggregates, "headline": self.headline, "annotations": self.annotations,
            "images": self.images, **self.extra,
        })


def headline_scalars(results: dict[str, Any]) -> dict[str, float]:
    """Flat ``{"<benchmark>/<key>": value}`` of every result's headline numbers (for metric loggers)."""
    out: dict[str, float] = {}
    for name, rec in results.items():
        if not isinstance(rec, dict) or "headline" not in rec:
            continue
        for k, v in rec["headline"].items():
            if v is not None:
                out[f"{name}/{k}"] = float(v)
    return out


def per_row(benchmark: str, subset: str, row_id: Any, scores: Any, correct: bool, **extra: Any) -> dict[str, Any]:
    """One --per-row record: benchmark, subset, the row's id in the annotation file, scores, correct."""
    return {"benchmark": benchmark, "subset": subset, "id": row_id, "scores": scores, "correct": bool(correct), **extra}
