"""The benchmark registry and the checks of an evaluator's options.

An evaluator is a function ``fn(encoder, *, annotations, images=None, skip_missing=False, blind=False, **options)
-> BenchResult`` registered under a name; ``tripletclip.eval.evaluate`` and the CLI find it by that name, so
adding a benchmark is one module and one decorator.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from tripletclip.errors import InputError
from tripletclip.eval.records import BenchResult
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
