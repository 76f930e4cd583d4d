"""Exact gradient accumulation: A micro-batches train as ONE big batch of every objective (GradCache).

A contrastive loss is not a sum over samples: every in-batch and hard negative of the whole batch is a column
for every row, so summing the gradients of A small losses trains a different (weaker) objective. GradCache
(Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", arXiv 2101.06983)
makes it exact in three passes (docs/training.md):

1. encode every micro-batch without a graph (memory: features only);
2. compute the loss on the concatenated features (all-gathered across ranks as usual) and its gradient with
   respect to those features, g = dL/dF;
3. re-encode each micro-batch with a graph and backpropagate the surrogate <F_i, g_i>, whose parameter
   gradient is (dF_i/dtheta)^T g_i; summed over micro-batches this is exactly dL/dtheta.

Activation memory is that of one micro-batch. The loss runs once per optimizer step, so CE-CLIP's adaptive
thresholds update once per step, from the whole batch. The re-forward replays the RNG state of pass 1, so
dropout or stochastic depth draw the same masks. Under DDP, parameter gradients are all-reduced only on the
last micro-batch (``no_sync`` before). Works through the features contract generically: per-row tensors
(first dim = micro-batch rows) are concatenated, 0-dim tensors (``logit_scale``) are shared; a loss whose
inputs cannot be cached this way sets ``supports_accumulation = False`` and is refused at config time.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

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


def _is_leaf_candidate(v: Any) -> bool:
    return torch.is_tensor(v) and v.is_floating_point()


def concat_features(parts: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Features of all micro-batches as one contract dict; returns (features, leaves that need gradients).

    Per-row tensors are concatenated along dim 0; 0-dim tensors must be the same value on every micro-batch
    (the model's ``logit_scale``) and the first is used; anything else is passed through from the first part.
    """
    rows = parts[0]["image_features"].shape[0]
    out: dict[str, Any] = {}
    leaves: dict[str, torch.Tensor] = {}
    for key, first in parts[0].items():
        if torch.is_tensor(first) and first.dim() and first.shape[0] == rows:
            try:
                value = torch.cat([p[key] for p in parts], dim=0)
            except RuntimeError as e:
                raise ValueError(f"accumulation: features '{key}' differ in shape between micro-batches "
                                 f"({[tuple(p[key].shape) for p in parts]}); this objective cannot accumulate") from e
        else:
            value = first
        if _is_leaf_candidate(value):
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


def accumulated_step(
    encode: FeaturesFn,
    loss_fn: Loss,
    micro_batches: list[dict[str, Any]],
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict[str, torch.Tensor]:
    """One optimizer step's gradients over ``micro_batches`` with the semantics of one batch.

    ``encode(mb)`` -> features contract (model forward); ``loss_fn(features)`` -> terms with ``"loss"``;
    ``backward(t)`` backpropagates a scalar (``t.backward()`` or through a GradScaler); ``no_sync()`` (DDP's)
    wraps every micro-batch but the last. Returns the loss terms (detached) of the whole batch.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    states, cached = [], []
    for mb in micro_batches:  # pass 1: features only
        states.append(_rng_now(devices))
        with torch.no_grad():
            cached.append(encode(mb))
    end_state = _rng_now(devices)
    features, leaves = concat_features(cached)
    del cached
    out = loss_fn(features)  # pass 2: the full batch's loss (gathered over ranks inside)
    keys = list(leaves)
    grads = dict(zip(keys, torch.autograd.grad(out["loss"], [leaves[k] for k in keys], allow_unused=True)))
    rows = micro_batches[0]["image"].shape[0]
    last = len(micro_batches) - 1
    for i, mb in enumerate(micro_batches):  # pass 3: re-encode with a graph, backprop the cached gradients
        sync = contextlib.nullcontext() if (i == last or no_sync is None) else no_sync()
        with sync, _replay_rng(states[i], devices):
            feats = encode(mb)
            surrogate = None
            for k in keys:
                g, f = grads[k], feats[k]
                if g is None:
                    continue
                if f.dim() and f.shape[0] == rows:
                    g = g[i * rows:(i + 1) * rows]
                elif i != last:  # shared (logit_scale): its whole gradient once, on the synchronised pass;
                    g = torch.zeros_like(g)  # a zero elsewhere keeps every parameter in every backward (DDP)
                term = (f.float() * g).sum()
                surrogate = term if surrogate is None else surrogate + term
            if surrogate is not None:
                backward(surrogate)
    torch.set_rng_state(end_state[0])
    for d, s in zip(devices, end_state[1]):
        torch.cuda.set_rng_state(s, d)
    return {k: v.detach() for k, v in out.items()}
