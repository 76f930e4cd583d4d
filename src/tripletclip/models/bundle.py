"""The model bundle every loader returns: the model plus what feeding it needs (one contract for open_clip models,
transformers folders and our run checkpoints)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class ModelBundle:
    """A model with everything needed to feed it: transforms, tokenizer and an identity record."""

    model: torch.nn.Module
    preprocess_train: Callable[[Any], torch.Tensor]
    preprocess_val: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    context_length: int
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        size = getattr(getattr(self.model, "visual", None), "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)
