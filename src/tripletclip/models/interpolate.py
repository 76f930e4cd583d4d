"""WiSE-FT: weight-space interpolation between the base model and a fine-tuned run (Wortsman et al.,
arXiv 2109.01903, Eq. 1): theta_alpha = (1 - alpha) theta_base + alpha theta_fine-tuned.

alpha = 0 is the base, alpha = 1 the fine-tuned model, bit for bit (both end points are copied, not computed);
values in between trade compositional gains against forgetting (docs/objectives.md, "Forgetting").
``tripletclip export RUN --interpolate ALPHA --base BASE`` writes the interpolated model; :func:`sweep` gives
one interpolated bundle per alpha for an evaluation of several alphas.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch

from tripletclip.errors import InputError
from tripletclip.models.factory import ModelBundle, create_model
from tripletclip.models.run_model import load_run_model


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--interpolate {alpha:g}: alpha must be in [0, 1] (0 = the base, 1 = the fine-tuned run)")
    return alpha


def interpolate_state(base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor],
                      alpha: float, what: str = "the base") -> dict[str, torch.Tensor]:
    """(1 - alpha) base + alpha tuned for every floating tensor; other tensors must agree and are copied."""
    alpha = check_alpha(alpha)
    if set(base) != set(tuned):
        missing = sorted(set(tuned) ^ set(base))[:3]
        raise InputError(f"{what} and the fine-tuned run hold different tensors (e.g. {missing}): interpolation "
                         "needs the same architecture; pass the model the run started from as --base")
    out: dict[str, torch.Tensor] = {}
    for key, t in tuned.items():
        b = base[key].to(device=t.device)
        if b.shape != t.shape:
            raise InputError(f"{what}: tensor {key} has shape {list(b.shape)}, the fine-tuned run {list(t.shape)}; "
                             "pass the model the run started from as --base")
        if alpha == 0.0:
            out[key] = b.to(t.dtype).clone()
        elif alpha == 1.0 or not t.is_floating_point():
            if not t.is_floating_point() and not torch.equal(b.to(t.dtype), t):
                raise InputError(f"{what}: non-float tensor {key} differs from the fine-tuned run's: not the same model")
            out[key] = t.clone()
        else:  # in fp32 at least, whatever the storage dtype
            wide = torch.promote_types(t.dtype, torch.float32)
            out[key] = torch.lerp(b.to(wide), t.to(wide), alpha).to(t.dtype)
    return out


def load_base(run_bundle: ModelBundle, base: str) -> ModelBundle:
    """The base model in the run's architecture: ``base`` is an open_clip tag, a weights file, or a run/checkpoint folder."""
    if not base:
        raise InputError("--interpolate needs --base: the model the run was fine-tuned from (a tag, a weights file "
                         "or a run folder)")
    ident = run_bundle.identity
    name = ident["name"]
    force = bool(ident.get("quick_gelu")) and "quickgelu" not in name and not name.startswith("hf:")
    return create_model(name, base, force_quick_gelu=force)


def interpolate_bundle(run_bundle: ModelBundle, base: str, alpha: float) -> ModelBundle:
    """``run_bundle`` with its weights replaced by the WiSE-FT interpolation toward ``base`` (identity records both)."""
    alpha = check_alpha(alpha)
    base_bundle = load_base(run_bundle, base)
    state = interpolate_state(base_bundle.model.state_dict(), run_bundle.model.state_dict(), alpha, f"--base {base}")
    run_bundle.model.load_state_dict(state)
    identity = {**run_bundle.identity, "wise_ft": {"alpha": alpha, "base": base_bundle.identity}}
    return dataclasses.replace(run_bundle, identity=identity)


def sweep(run: str | Path, base: str, alphas: Sequence[float]) -> Iterator[tuple[float, ModelBundle]]:
    """(alpha, interpolated bundle) for each alpha, the run and the base read once."""
    tuned = load_run_model(run)
    base_bundle = load_base(tuned, base)
    tuned_state = {k: v.clone() for k, v in tuned.model.state_dict().items()}
    base_state = base_bundle.model.state_dict()
    for alpha in alphas:
        tuned.model.load_state_dict(interpolate_state(base_state, tuned_state, alpha, f"--base {base}"))
        identity = {**tuned.identity, "wise_ft": {"alpha": float(alpha), "base": base_bundle.identity}}
        yield float(alpha), dataclasses.replace(tuned, identity=identity)
