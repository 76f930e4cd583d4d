"""Exact gradient accumulation: A micro-batches train as ONE big batch of every objective (GradCache).

A contrastive loss is not a sum over samples: every in-batch and hard negative of the whole batch is a column
for every row, so summing the gradients of A small losses trains a different (weaker) objective. GradCache
(Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", arXiv 2101.06983)
makes it exact in three passes (docs/training.md):

1. encode every micro-batch without a graph (memory: features only), and compute its targets (a teacher's
   features: never trained through, so computed once, here);
2. compute the loss on the concatenated features (all-gathered across ranks as usual) and its gradient with
   respect to those features, g = dL/dF;
3. re-encode each micro-batch with a graph and backpropagate the surrogate <F_i, g_i>, whose parameter
   gradient is (dF_i/dtheta)^T g_i; summed over micro-batches this is exactly dL/dtheta.

The last micro-batch is encoded *with* its graph in pass 1 and backpropagated first in pass 3, so only A - 1
micro-batches are encoded twice; activation memory is still that of one micro-batch (its graph is the only
one alive until its backward). The objective is generic through the features contract: every per-row tensor
(first dim = the micro-batch's rows: pooled features, negatives and their masks, further positives, token and
patch features and their masks) is concatenated, 0-dim tensors (``logit_scale``) are shared, and each
float per-row tensor gets its slice of the cached gradient. The loss runs once per optimizer step, so
CE-CLIP's adaptive thresholds update once per step, from the whole batch; an objective's ``batch_transform``
(CLIC) runs on the whole batch before it is split (train/trainer.py). The re-forward replays the RNG state of
pass 1, so dropout or stochastic depth draw the same masks. Under DDP, parameter gradients are all-reduced
only on the last backward (``no_sync`` before).

What is not exact, and refused (:func:`accumulation_problem`): BatchNorm in training mode normalises with the
statistics of its micro-batch, not of the whole batch, and pass 1 would update its running statistics a
second time.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import torch

FeaturesFn = Callable[[dict[str, Any]], dict[str, Any]]
Loss = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def split_rows(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """``parts`` equal row slices of a batch (every tensor with the batch's first dimension is sliced)."""
    b = batch["image"].shape[0]
    if b % parts:
        raise ValueError(f"batch of {b} rows does not split into {parts} equal micro-batches")
    m = b // parts
    return [{k: v[i * m:(i + 1) * m] if torch.is_tensor(v) and v.dim() and v.shape[0] == b else v
             for k, v in batch.items()} for i in range(parts)]


def accumulation_problem(model: torch.nn.Module) -> Optional[str]:
    """Why micro-batches of ``model`` cannot give the whole batch's gradients, or None when they can.

    BatchNorm in training mode: its batch statistics would be those of a micro-batch, and pass 1 would update
    its running statistics a second time. Frozen BatchNorms (open_clip's ``FrozenBatchNorm2d`` of a locked
    tower) are not ``_BatchNorm`` and pass.
    """
    norms = [name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        return (f"the model has {len(norms)} BatchNorm layer(s) (e.g. '{norms[0]}') whose statistics would be those "
                "of a micro-batch, not of the whole batch")
    return None


def _per_row(t: Any, rows: int) -> bool:
    return torch.is_tensor(t) and t.dim() > 0 and t.shape[0] == rows


def concat_features(parts: list[dict[str, Any]], constant: frozenset[str] = frozenset()
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Features of all micro-batches as one contract dict; returns (features, leaves that need gradients).

    Per-row tensors are concatenated along dim 0; 0-dim tensors must be the same value on every micro-batch
    (the model's ``logit_scale``) and the first is used; anything else is passed through from the first part.
    Float tensors become leaves that require grad, except the keys in ``constant`` (targets such as a
    teacher's features, which no gradient reaches).
    """
    rows = parts[0]["image_features"].shape[0]
    out: dict[str, Any] = {}
    leaves: dict[str, torch.Tensor] = {}
    for key, first in parts[0].items():
        if _per_row(first, rows):
            try:
                value = torch.cat([p[key] for p in parts], dim=0)
            except RuntimeError as e:
                raise ValueError(f"accumulation: features '{key}' differ in shape between micro-batches "
                                 f"({[tuple(p[key].shape) for p in parts]}); this objective cannot accumulate") from e
        else:
            value = first
        if torch.is_tensor(value) and value.is_floating_point() and key not in constant:
            value = value.detach().requires_grad_(True)
            leaves[key] = value
        out[key] = value
    return out, leaves


@contextlib.contextmanager
def _replay_rng(state: tuple[torch.Tensor, list[torch.Tensor]], devices: list[int]) -> Iterator[None]:
    """Run the block with the RNG state of the cached pass (dropout masks equal), then continue the stream
    where it was: the RNG advances as if each micro-batch had been encoded once."""
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        for d, s in zip(devices, state[1]):
            torch.cuda.set_rng_state(s, d)
        yield


def _rng_now(devices: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _surrogate(feats: dict[str, Any], grads: dict[str, Optional[torch.Tensor]], i: int, rows: int,
               final: bool) -> Optional[torch.Tensor]:
    """sum_k <F_k, g_k> over this micro-batch's features (rows i*rows..) with graph; None when nothing is trained.

    A shared feature (``logit_scale``) takes its whole gradient once, on the ``final`` (synchronised)
    backward, and a zero elsewhere: every parameter then appears in every backward (DDP).
    """
    surrogate = None
    for key, g in grads.items():
        if g is None:  # a feature the loss does not use
            continue
        f = feats[key]
        if _per_row(f, rows):
            g = g[i * rows:(i + 1) * rows]
        elif not final:
            g = torch.zeros_like(g)
        term = (f.float() * g).sum()
        surrogate = term if surrogate is None else surrogate + term
    return surrogate


def accumulated_step(
    encode: FeaturesFn,
    loss_fn: Loss,
    micro_batches: list[dict[str, Any]],
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    targets: FeaturesFn | None = None,
) -> dict[str, torch.Tensor]:
    """One optimizer step's gradients over ``micro_batches`` with the semantics of one batch.

    ``encode(mb)`` -> features contract (model forward); ``targets(mb)`` -> further features computed without
    a graph and never trained through (a teacher's: ``train/teacher.py``), once per micro-batch;
    ``loss_fn(features)`` -> terms with ``"loss"``; ``backward(t)`` backpropagates a scalar (``t.backward()``
    or through a GradScaler); ``no_sync()`` (DDP's) wraps every forward whose backward must not all-reduce.
    Returns the loss terms (detached) of the whole batch.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    last = len(micro_batches) - 1

    def sync(final: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if (final or no_sync is None) else no_sync()

    states, cached, target_keys = [], [], set()
    kept: dict[str, Any] = {}
    for i, mb in enumerate(micro_batches):  # pass 1: features only (the last micro-batch keeps its graph)
        states.append(_rng_now(devices))
        if i < last:
            with torch.no_grad():
                feats = encode(mb)
        else:  # backpropagated first in pass 3, so its backward is the final one only when it is alone
            with sync(final=last == 0):
                kept = encode(mb)
            feats = {k: v.detach() if torch.is_tensor(v) else v for k, v in kept.items()}
        if targets is not None:
            extra = targets(mb)
            target_keys.update(extra)
            feats = {**feats, **{k: v.detach() for k, v in extra.items()}}
        cached.append(feats)
    end_state = _rng_now(devices)
    features, leaves = concat_features(cached, frozenset(target_keys))
    del cached
    out = loss_fn(features)  # pass 2: the full batch's loss (gathered over ranks inside)
    keys = list(leaves)
    grads = dict(zip(keys, torch.autograd.grad(out["loss"], [leaves[k] for k in keys], allow_unused=True)))
    del features, leaves
    rows = micro_batches[0]["image"].shape[0]
    order = [last, *range(last)]  # the kept graph first: it is freed before any re-forward
    for n, i in enumerate(order):  # pass 3: backprop the cached gradients through each micro-batch's graph
        final = n == last
        if i == last:
            surrogate = _surrogate(kept, grads, i, rows, final)
            kept = {}
            if surrogate is not None:
                backward(surrogate)
            continue
        with sync(final), _replay_rng(states[i], devices):
            surrogate = _surrogate(encode(micro_batches[i]), grads, i, rows, final)
            if surrogate is not None:
                backward(surrogate)
    torch.set_rng_state(end_state[0])
    for d, s in zip(devices, end_state[1]):
        torch.cuda.set_rng_state(s, d)
    return {k: v.detach() for k, v in out.items()}
