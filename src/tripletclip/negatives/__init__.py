"""TripletData generation for real datasets (TripletCLIP, arXiv 2411.02545, Sec. 3).

Stages, each a sharded and resumable job with a manifest:
- ``text``: negative captions by the offline ``rules`` generator (SugarCrepe / CE-CLIP edit types) or an ``llm``
  (transformers, vLLM, any OpenAI-compatible server), validated, with retries and a rules fallback;
- ``rewrite``: LaCLIP-style caption rewrites with the same LLM backends;
- ``images``: negative images from the negative captions (diffusers, e.g. SDXL-Turbo; or the embedded world's
  renderer), written as TripletData shards for the trainer;
- ``filter``: TripletCLIP++'s CLIP-score filter; ``stats`` and ``faithfulness``: analysis.

Importing the package registers the generators and backends (``rules``, ``llm``, the LLM and T2I backends).
Shards are read and written through :mod:`tripletclip.data` (one format, one reader).
"""
from tripletclip.negatives import t2i  # noqa: F401  (registers the text-to-image backends)
from tripletclip.negatives.base import LLM_BACKENDS, T2I_BACKENDS, TEXT_GENERATORS, NegativeCaption, stable_hash
from tripletclip.negatives.jobs import JobError, resolve_shard
from tripletclip.negatives.llm import LLMGenerator, Rewriter  # registers "llm" and the LLM backends
from tripletclip.negatives.rules import PRESETS, RulesGenerator  # registers "rules"
from tripletclip.negatives.text_job import run_rewrite, run_text

__all__ = [
    "LLM_BACKENDS", "T2I_BACKENDS", "TEXT_GENERATORS", "JobError", "LLMGenerator", "NegativeCaption", "PRESETS",
    "Rewriter", "RulesGenerator", "resolve_shard", "run_rewrite", "run_text", "stable_hash",
]
