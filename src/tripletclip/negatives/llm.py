"""LLM negative captions (TripletCLIP, arXiv 2411.02545, Sec. 3.2) and LaCLIP rewrites (arXiv 2305.20088).

Batched prompting through any registered LLM backend; every reply is parsed and validated, never trusted
(:func:`tripletclip.negatives.replies.parse_reply`: content parts, JSON objects, markup, links, instructions,
extra sentences, length, and :func:`tripletclip.negatives.prompts.check_output`). Rejected outputs are
retried with sampling (a greedy retry would repeat itself); what still fails falls back to the ``rules``
generator (negatives) or keeps the original caption (rewrites). Every rejection reason, retry (the backend's
HTTP retries included) and fallback is counted.

Determinism: first attempts are greedy by default (temperature 0), so a caption's LLM negative does not depend
on its batch; sampled retries are seeded per (seed, attempt, first key of the batch) and recorded in the job
config, so a re-run of the same shard reproduces them.

Deliberate deviation: the paper generates with Mistral-7B-Instruct and keeps whatever the model says; the
validation and fallback here exist because small or base models often echo the prompt or the input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from tripletclip.errors import InputError
from tripletclip.negatives.base import TEXT_GENERATORS, GenStats, NegativeCaption, stable_hash
from tripletclip.negatives.llm_backends import build_llm
from tripletclip.negatives.prompts import NEGATIVE_PROMPT, REWRITE_PROMPT, PromptSpec
from tripletclip.negatives.replies import MAX_REPLY_CHARS, parse_reply
from tripletclip.negatives.rules import RulesGenerator


@dataclass
class Attempted:
    text: Optional[str]  # the accepted output, or None
    attempts: int
    reasons: list[str]  # rejection reason per failed attempt


class PromptRunner:
    """Run one prompt task over captions in batches, validating and retrying."""

    def __init__(self, llm: Any, spec: PromptSpec, batch_size: int = 32, retries: int = 2, temperature: float = 0.0,
                 retry_temperature: float = 0.8, max_new_tokens: int = 64, seed: int = 0, stats: Optional[GenStats] = None,
                 json_key: Optional[str] = None, max_reply_chars: int = MAX_REPLY_CHARS) -> None:
        if batch_size < 1 or retries < 0 or max_reply_chars < 1:
            raise InputError(f"batch_size and max_reply_chars must be >= 1 and retries >= 0, got {batch_size}, "
                             f"{max_reply_chars}, {retries}")
        self.llm, self.spec = llm, spec
        self.json_key, self.max_reply_chars = json_key, max_reply_chars  # json_key: the prompt asks for an object
        self.batch_size, self.retries = batch_size, retries
        self.temperature, self.retry_temperature = temperature, retry_temperature
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.stats = stats or GenStats()

    def run(self, keys: Sequence[str], captions: Sequence[str]) -> list[Attempted]:
        results = [Attempted(None, 0, []) for _ in captions]
        pending = list(range(len(captions)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            temp = self.temperature if attempt == 0 else max(self.temperature, self.retry_temperature)
            still: list[int] = []
            for b in range(0, len(pending), self.batch_size):
                idx = pending[b : b + self.batch_size]
                seed = stable_hash(self.seed, attempt, keys[idx[0]], bits=31)
                outs = self.llm.complete([self.spec.messages(captions[i]) for i in idx], self.max_new_tokens, temp, seed)
                self.stats.add("llm_calls", len(idx))
                for name, n in (self.llm.take_counters() if hasattr(self.llm, "take_counters") else {}).items():
                    self.stats.add(name, n)  # the backend's own retries (HTTP errors, timeouts) by reason
                for i, raw in zip(idx, outs):
                    text, reason = parse_reply(raw, captions[i], self.spec, self.json_key, self.max_reply_chars)
                    results[i].attempts = attempt + 1
                    if reason is None:
                        results[i].text = text
                    else:
                        results[i].reasons.append(reason)
                        self.stats.add(f"invalid:{reason}")
                        still.append(i)
            if attempt < self.retries and still:
                self.stats.add("retries", len(still))
            pending = still
        return results


@TEXT_GENERATORS.register("llm")
class LLMGenerator:
    """One LLM negative per caption (edit type ``llm``), falling back to ``rules`` on invalid outputs."""

    name = "llm"

    def __init__(self, backend: str = "transformers", model: str = "", batch_size: int = 32, retries: int = 2,
                 temperature: float = 0.0, max_new_tokens: int = 64, seed: int = 0, fallback: str = "rules",
                 backend_options: Optional[dict[str, Any]] = None, llm: Any = None, tagger: str = "auto",
                 max_reply_chars: int = MAX_REPLY_CHARS) -> None:
        if llm is None and not model:
            raise InputError("llm generator: give --model (a local folder, a hub id, or the server's model name)")
        if fallback not in ("rules", "none"):
            raise InputError(f"llm generator: fallback must be 'rules' or 'none', got {fallback!r}")
        self.llm = llm if llm is not None else build_llm(backend, model, **(backend_options or {}))
        self.stats = GenStats()
        self.runner = PromptRunner(self.llm, NEGATIVE_PROMPT, batch_size, retries, temperature,
                                   max_new_tokens=max_new_tokens, seed=seed, stats=self.stats,
                                   max_reply_chars=max_reply_chars)
        self.fallback = RulesGenerator("sugarcrepe", 1, seed=seed, tagger=tagger) if fallback == "rules" else None
        self.label = f"llm:{self.llm.name}:{getattr(self.llm, 'model_id', model)}"
        self._cfg = {"generator": "llm", "backend": self.llm.name, "model": getattr(self.llm, "model_id", model),
                     "batch_size": batch_size, "retries": retries, "temperature": temperature,
                     "max_new_tokens": max_new_tokens, "seed": seed, "fallback": fallback,
                     "max_reply_chars": max_reply_chars,
                     "prompt": {"instruction": NEGATIVE_PROMPT.instruction, "examples": NEGATIVE_PROMPT.examples}}

    def info(self) -> dict[str, Any]:
        return {**self._cfg, **({"fallback_tagger": self.fallback.tagger.name} if self.fallback else {})}

    def generate(self, items: Sequence[tuple[str, str]]) -> list[list[NegativeCaption]]:
        keys = [k for k, _ in items]
        caps = [c for _, c in items]
        out: list[list[NegativeCaption]] = []
        for (key, cap), res in zip(items, self.runner.run(keys, caps)):
            if res.text is not None:
                out.append([NegativeCaption(res.text, "llm", self.label, "", res.attempts)])
                continue
            negs = self.fallback.negatives_for(key, cap) if self.fallback else []
            if negs:
                self.stats.add("fallback")
                n = negs[0]
                out.append([NegativeCaption(n.neg_caption, n.edit_type, "rules", n.detail, res.attempts, fallback=True)])
            else:
                self.stats.add("failed")
                out.append([])
        return out


class Rewriter:
    """LaCLIP-style rewrites: ``n`` rewrites per caption; an invalid one keeps the original (counted)."""

    def __init__(self, backend: str = "transformers", model: str = "", n: int = 1, batch_size: int = 32,
                 retries: int = 2, temperature: float = 0.7, max_new_tokens: int = 64, seed: int = 0,
                 backend_options: Optional[dict[str, Any]] = None, llm: Any = None,
                 max_reply_chars: int = MAX_REPLY_CHARS) -> None:
        if llm is None and not model:
            raise InputError("rewrite: give --model (a local folder, a hub id, or the server's model name)")
        if n < 1:
            raise InputError(f"rewrite: n must be >= 1, got {n}")
        self.llm = llm if llm is not None else build_llm(backend, model, **(backend_options or {}))
        self.n = n
        self.stats = GenStats()
        self.runners = [PromptRunner(self.llm, REWRITE_PROMPT, batch_size, retries, temperature,
                                     max_new_tokens=max_new_tokens, seed=seed + j, stats=self.stats,
                                     max_reply_chars=max_reply_chars) for j in range(n)]
        self.label = f"llm:{self.llm.name}:{getattr(self.llm, 'model_id', model)}"
        self._cfg = {"task": "rewrite", "backend": self.llm.name, "model": getattr(self.llm, "model_id", model), "n": n,
                     "batch_size": batch_size, "retries": retries, "temperature": temperature,
                     "max_new_tokens": max_new_tokens, "seed": seed, "max_reply_chars": max_reply_chars,
                     "prompt": {"instruction": REWRITE_PROMPT.instruction, "examples": REWRITE_PROMPT.examples}}

    def info(self) -> dict[str, Any]:
        return dict(self._cfg)

    def rewrite(self, items: Sequence[tuple[str, str]]) -> list[list[Optional[str]]]:
        """Per caption, ``n`` rewrites (None where every attempt was invalid)."""
        keys = [k for k, _ in items]
        caps = [c for _, c in items]
        per_run = [r.run(keys, caps) for r in self.runners]
        out = []
        for i in range(len(items)):
            texts = [per_run[j][i].text for j in range(self.n)]
            self.stats.add("rewritten", sum(t is not None for t in texts))
            self.stats.add("kept_original", sum(t is None for t in texts))
            out.append(texts)
        return out
