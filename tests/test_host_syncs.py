"""A non-logging training step reads nothing back from the device, for every objective (docs/training.md).

Counted at two levels: a TorchFunctionMode sees Python-level read-backs (``item``, ``__float__``, ``__bool__``,
``__int__``, ``tolist``, ``nonzero``) and a TorchDispatchMode sees the aten ops that copy a value to the host
from inside C++ (``_local_scalar_dense`` behind every ``item``, ``nonzero`` behind boolean-mask indexing). The
step is the trainer's own ``train_step`` (forward, loss, backward, clip, optimizer, schedule) on batches that
were prepared on the host, as the loop does; a logging step must see read-backs (the counter can fail).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from tripletclip.config import load_config
from tripletclip.losses import LOSSES
from tripletclip.train import trainer

READBACK_METHODS = {"item", "__float__", "__bool__", "__int__", "__index__", "tolist", "nonzero", "numpy"}
READBACK_OPS = {"_local_scalar_dense", "nonzero", "nonzero_static", "is_nonzero"}


class CountReadbacks(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in READBACK_METHODS:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


class CountReadbackOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in READBACK_OPS:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss,accum", [(name, 1) for name in LOSSES.names()]
                         + [(name, 2) for name in ("tripletclip", "ceclip", "fscclip", "clic", "degla")])
def test_non_logging_steps_read_nothing_back(tmp_path: Path, monkeypatch, loss: str, accum: int):
    counts: list[list[str]] = []
    real_step = trainer.train_step

    def counted_step(run, micro, want_norm=False):
        with CountReadbacks() as fn_mode, CountReadbackOps() as op_mode:
            out = real_step(run, micro, want_norm)
            if want_norm:  # a logging step reads its values back (as _metrics_record does)
                float(out[0]["loss"].detach())
                float(run.model.logit_scale.exp())
        counts.append(fn_mode.seen + op_mode.seen)
        return out

    monkeypatch.setattr(trainer, "train_step", counted_step)
    cfg = load_config(None, ["data.type=synthetic", "data.train=32", "data.workers=0", "model.name=test-vit-tiny",
                             f"loss.name={loss}", "train.batch_size=4", "train.steps=3", "train.log_every=3",
                             "train.save_every=0", f"train.output_dir={tmp_path}", "train.progress=false",
                             "train.threads=1", f"train.accum_steps={accum}", "optim.grad_clip=1.0"])
    trainer.train(cfg)
    assert len(counts) == 3
    assert counts[0] == [] and counts[1] == [], f"read-backs in non-logging steps: {counts[:2]}"
    assert counts[2], "the counter saw no read-back in a logging step: it cannot see any"
