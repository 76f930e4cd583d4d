"""Registries and shared records of the TripletData generation pipeline (arXiv 2411.02545, Sec. 3).

Extension by registration: a text generator (``rules``, ``llm``), an LLM backend (``transformers``,
``vllm``, ``openai``) or a text-to-image backend (``diffusers``, ``world``) is one class registered under a
name; the jobs and the CLI look it up by that name.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from tripletclip.registry import Registry

TEXT_GENERATORS: Registry[Any] = Registry("negative caption generator")
LLM_BACKENDS: Registry[Any] = Registry("LLM backend")
T2I_BACKENDS: Registry[Any] = Registry("text-to-image backend")


def stable_hash(*parts: object, bits: int = 63) -> int:
    """A hash of the parts that is the same in every process and Python version (unlike hash())."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") >> (64 - bits)


def local_device(device: str = "auto") -> str:
    """``device``, or for "auto" this process's GPU (torchrun's LOCAL_RANK, SLURM's SLURM_LOCALID) else the CPU."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    return f"cuda:{local % torch.cuda.device_count()}"


@dataclass(slots=True)
class NegativeCaption:
    """One negative caption made from a positive caption."""

    neg_caption: str
    edit_type: str  # one of tripletclip.edit_types.EDIT_TYPES
    generator: str  # "rules", "llm:<backend>:<model>", ...
    detail: str = ""  # what was edited, e.g. "colour:red->blue"
    attempts: int = 1  # generation attempts used (LLM retries)
    fallback: bool = False  # produced by the rules fallback after the LLM failed


@dataclass
class GenStats:
    """Counters every generator keeps; the job adds them to the manifest (nothing is dropped silently)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def take(self) -> dict[str, int]:
        out, self.counts = self.counts, {}
        return out


class TextGenerator(Protocol):
    """What the text job needs from a generator."""

    name: str
    stats: GenStats

    def generate(self, items: Sequence[tuple[str, str]]) -> list[list[NegativeCaption]]:
        """Negatives for (key, caption) pairs, in order; an empty list where none could be made."""

    def info(self) -> dict[str, Any]:
        """Everything that determines the output (recorded in the job config and manifest)."""
