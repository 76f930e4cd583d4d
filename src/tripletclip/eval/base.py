"""The benchmark registry and what every evaluator shares (argument checks, image roots, result assembly).

An evaluator is a function ``fn(encoder, *, annotations, images=None, skip_missing=False, blind=False, **options)
-> BenchResult`` registered under a name; ``tripletclip.eval.evaluate`` and the CLI find it by that name, so
adding a benchmark is one module and one decorator.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tripletclip.errors import InputError
from tripletclip.eval.choice import BLIND_QUERY, Scored
from tripletclip.eval.images import ImageResolver
from tripletclip.eval.records import TIE_RULE, BenchResult, per_row
from tripletclip.registry import Registry

Evaluator = Callable[..., BenchResult]
EVALUATORS: Registry[Evaluator] = Registry("benchmark")


def register_benchmark(name: str, blind: bool = True, summary: str = "") -> Callable[[Evaluator], Evaluator]:
    """Register an evaluator; ``blind`` says whether the text-only baseline applies to it."""

    def deco(fn: Evaluator) -> Evaluator:
        fn.benchmark_name = name  # type: ignore[attr-defined]
        fn.supports_blind = blind  # type: ignore[attr-defined]
        fn.summary = summary or (fn.__doc__ or "").strip().splitlines()[0]  # type: ignore[attr-defined]
        return EVALUATORS.register(name)(fn)

    return deco


def options_of(fn: Evaluator, internal: bool = False) -> list[str]:
    """Keyword options an evaluator accepts (``benchmark``, the result name used by composites, is internal)."""
    return [p for p in inspect.signature(fn).parameters if p != "encoder" and (internal or p != "benchmark")]


def check_options(name: str, fn: Evaluator, options: dict[str, Any]) -> None:
    """Fail on unknown options, and on ``blind`` for benchmarks whose every score needs an image."""
    known = options_of(fn, internal=True)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"benchmark '{name}': unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if options.get("blind") and not getattr(fn, "supports_blind", False):
        raise InputError(f"benchmark '{name}' has no blind (text-only) variant: every score there needs an image")


def make_resolver(images: Any, extensions: Sequence[str] = ("",)) -> Optional[ImageResolver]:
    """An image resolver over one folder or a list of folders; None when no folder is given."""
    if images is None or images == "" or images == []:
        return None
    roots = [images] if isinstance(images, (str, Path)) else list(images)
    return ImageResolver(roots, extensions)


def protocol(decision: str, aggregation: dict[str, str], blind: bool, **extra: Any) -> dict[str, Any]:
    """The protocol block of a result: decision rule, tie rule, aggregation rules, blind or not."""
    out = {"decision": decision, "tie_rule": TIE_RULE, "aggregation": aggregation, "blind": blind}
    if blind:
        out["blind_query"] = BLIND_QUERY
    return {**out, **extra}


def choice_rows_out(benchmark: str, scored: list[Scored]) -> list[dict[str, Any]]:
    """Per-row records of a choice benchmark (scores in annotation order: true caption(s) first)."""
    return [per_row(benchmark, x.row.subset, x.row.id, x.scores, x.correct) for x in scored]


def encoder_delta(encoder: Any, before: dict[str, float], started: float) -> dict[str, Any]:
    """What this benchmark cost: images/texts encoded (cache misses) and wall time."""
    stats = getattr(encoder, "stats", None) or {}
    delta = {k: stats[k] - before.get(k, 0) for k in ("images_encoded", "texts_encoded") if k in stats}
    return {**delta, "seconds": round(time.perf_counter() - started, 3)}


def stats_of(encoder: Any) -> dict[str, float]:
    return dict(getattr(encoder, "stats", None) or {})
