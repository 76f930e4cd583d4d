"""Training: the step-based loop (trainer), full-state checkpoints, optimizer/schedule, metrics.

``from tripletclip.train import train`` imports the loop lazily, so that checkpoint utilities can be used
without the data and loss stacks.
"""
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "train":
        from tripletclip.train.trainer import train

        return train
    raise AttributeError(name)


__all__ = ["train"]
