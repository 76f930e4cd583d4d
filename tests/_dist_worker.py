"""One rank of the 2-process gloo test (tests/test_distributed.py); also imported there for the W=1 reference.

    RANK=.. WORLD_SIZE=2 MASTER_ADDR=.. MASTER_PORT=.. python tests/_dist_worker.py INPUTS.pt OUT_DIR

Runs the collective helpers (:func:`run_smoke`) and every registered loss on this rank's slice of the global
batch (:func:`run_objectives`: values, gradients, CE-CLIP thresholds), saved to OUT_DIR/rank<r>.pt. One
launch does both because importing torch dominates the cost. The same :func:`run_objectives` runs
in-process at W=1 as the reference.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tripletclip.config import LossConfig
from tripletclip.losses import LOSSES, build_loss, build_objective
from tripletclip.train.accum import split_rows
from tripletclip.train.forward import prepare_batch
from tripletclip.utils import distributed as du

FEATURES = ("image", "text", "neg_text", "neg_image", "pos_text")
# local-only inputs of objectives that declare needs_tokens / needs_teacher (tokens go through the projection too)
TOKENS = ("image_tokens", "text_tokens", "neg_text_tokens")
TEACHER = ("teacher_image", "teacher_text")
# the regularisers on top of an objective (loss.cyclip_*, loss.distill_weight), checked like an objective
COMPOSED = {"tripletclip+cyclip": dict(name="tripletclip", cyclip_cross=0.25, cyclip_in=0.25),
            "negclip+distill": dict(name="negclip", distill_weight=0.5)}


def _features(raw: dict[str, torch.Tensor], rows: slice, proj: torch.Tensor, log_scale: torch.Tensor):
    """Leaves for this rank's rows and the features contract built from them through a shared projection."""
    leaves = {k: raw[k][rows].clone().requires_grad_(True) for k in FEATURES + TOKENS + TEACHER}
    feats = {f"{k}_features": F.normalize(leaves[k] @ proj, dim=-1) for k in FEATURES + TEACHER}
    feats.update({k: leaves[k] @ proj for k in TOKENS})
    feats.update({k: raw[k][rows] for k in ("neg_text_mask", "neg_image_mask", "neg_text_type", "text_token_mask",
                                            "neg_text_token_mask")})
    feats["logit_scale"] = log_scale.exp()
    return leaves, feats


def run_objectives(inputs: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """Loss, terms and gradients of every objective on rows [rank*B, (rank+1)*B) of the global batch."""
    n = inputs["batch1"]["image"].shape[0]
    b = n // world_size
    rows = slice(rank * b, (rank + 1) * b)
    results: dict[str, Any] = {}
    objectives = {name: build_loss(name) for name in LOSSES.names()}
    objectives.update({name: build_objective(LossConfig(**spec)) for name, spec in COMPOSED.items()})
    for name, loss_fn in objectives.items():
        record: dict[str, Any] = {}
        for step, batch in enumerate(("batch1", "batch2")):
            proj = inputs["proj"].clone().requires_grad_(True)  # a replicated parameter, as under DDP
            log_scale = inputs["log_scale"].clone().requires_grad_(True)
            leaves, feats = _features(inputs[batch], rows, proj, log_scale)
            out = loss_fn(feats)
            out["loss"].backward()
            record[step] = {
                "terms": {k: v.detach().clone() for k, v in out.items()},
                # features an objective ignores get no gradient at all: record zeros
                "grad": {k: torch.zeros_like(v) if v.grad is None else v.grad.clone() for k, v in leaves.items()},
                "grad_proj": proj.grad.clone(),
                "grad_log_scale": log_scale.grad.clone(),
                "thresholds": loss_fn.thresholds.clone() if hasattr(loss_fn, "thresholds") else None,
            }
            if name != "ceclip":
                break  # only CE-CLIP carries state into a second step
        results[name] = record
    return results


class ProjModel(torch.nn.Module):
    """Stand-in for CLIP's two towers: one linear map per modality and a learnable logit scale; takes the
    raw vectors of a batch dict (image [B,D], text [B,D], negatives [B,K,D]) through ``forward_features``."""

    def __init__(self, d: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.visual = torch.nn.Linear(d, d)
        self.textual = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d))
        for p in self.parameters():
            p.data.copy_(torch.randn(p.shape, generator=g) / d**0.5)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        return self.visual(image), self.textual(text), self.logit_scale.exp()


# exact accumulation (train/accum.py) is checked for every registered objective and the regularisers on top of
# one; EMA teachers with a fast decay, so that a teacher updated per micro-batch instead of per step would show
ACCUM_MODEL = "test-vit-tiny"  # a ViT: patch and token features for objectives that declare needs_tokens
ACCUM_SPECS = {**{name: {"name": name} for name in LOSSES.names()},
               "degla": {"name": "degla", "ema_decay": 0.5},
               "tripletclip+cyclip": {"name": "tripletclip", "cyclip_cross": 0.25, "cyclip_in": 0.25},
               "negclip+distill(base)": {"name": "negclip", "distill_weight": 0.5, "teacher": "base"},
               "negclip+distill(ema)": {"name": "negclip", "distill_weight": 0.5, "teacher": "ema", "ema_decay": 0.5}}


def run_accumulation(inputs: dict[str, Any], rank: int, world_size: int, parts: int) -> dict[str, Any]:
    """Two optimizer steps of every objective in ACCUM_SPECS through the trainer's own ``train_step`` (DDP
    around the forward when world_size > 1), on this rank's rows of ``inputs["batch1"]``, then ``batch2``, in
    ``parts`` micro-batches (1 = one plain step): loss terms, parameter gradients before the update, CE-CLIP's
    thresholds. Objectives with state run a second step, which sees the SGD update, CE-CLIP's thresholds and
    the EMA teacher of step 1.

    The objective's batch_transform runs on the global batch and each rank takes its rows of the result: CLIC
    draws its word swaps from a seed of the batch it sees, so per-rank transforms would train on other
    negatives than the W=1 reference (a difference of data, not of accumulation).
    """
    from types import SimpleNamespace

    from tripletclip.config import OptimConfig, RunConfig
    from tripletclip.models import create_model
    from tripletclip.train.forward import TEXT_LEN
    from tripletclip.train.precision import setup_precision
    from tripletclip.train.teacher import LossSupport
    from tripletclip.train.trainer import train_step

    torch.manual_seed(0)
    bundle = create_model(ACCUM_MODEL)
    results: dict[str, Any] = {}
    for name, spec in ACCUM_SPECS.items():
        model = copy.deepcopy(bundle.model).train()  # a fresh model (and DDP) per objective
        cfg = LossConfig(**spec)
        loss_fn = build_objective(cfg)
        support = LossSupport(loss_fn, cfg, model, bundle.tokenizer)
        nt, ni = loss_fn.needs_neg_text, loss_fn.needs_neg_image
        forward = support.forward_module(model, trim_text=True)
        if world_size > 1:
            forward = torch.nn.parallel.DistributedDataParallel(forward)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        run = SimpleNamespace(cfg=RunConfig(optim=OptimConfig(grad_clip=0.0)), model=model, forward_model=forward,
                              loss_fn=loss_fn, support=support, opt=opt,
                              sched=torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
                              precision=setup_precision("fp32", torch.device("cpu")), use_nt=nt, use_ni=ni,
                              autocast=None)
        # a second step where state carries over (CE-CLIP's thresholds, an EMA teacher) or a teacher's features
        # first differ from the student's (step 1 starts with student == teacher: distillation terms are 0)
        stateful = any(True for _ in loss_fn.buffers()) or support.teacher is not None
        record = []
        for batch in (inputs["batch1"], inputs["batch2"])[: 2 if stateful else 1]:
            whole = support.transform(batch)
            local = split_rows(whole, world_size)[rank]
            micro = [prepare_batch(mb, nt, ni) for mb in split_rows(local, parts)]
            text_len = max(mb[TEXT_LEN] for mb in micro)  # as the trainer: one length for the whole batch
            out, _ = train_step(run, [{**mb, TEXT_LEN: text_len} for mb in micro])
            inner = getattr(loss_fn, "inner", loss_fn)
            record.append({"terms": {k: v.detach().clone() for k, v in out.items()},
                           "grads": {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
                           "thresholds": inner.thresholds.clone() if hasattr(inner, "thresholds") else None})
        results[name] = record
    return results


def run_smoke(env: du.DistEnv) -> dict[str, Any]:
    """The collective helpers on their own: gather with grad, reduce, broadcast, barrier."""
    x = torch.full((2, 3), float(env.rank + 1), requires_grad=True)
    gathered = du.all_gather_with_grad(x)
    weights = torch.arange(gathered.numel(), dtype=torch.float32).view_as(gathered)
    (gathered * weights).sum().backward()
    mask = du.all_gather_with_grad(torch.tensor([env.rank == 0, True]))
    du.barrier()
    return {
        "env": (env.rank, env.world_size, env.local_rank, str(env.device), env.backend),
        "is_main": du.is_main(),
        "gathered": gathered.detach(),
        "grad": x.grad.clone(),
        "mask": mask,
        "mean": du.all_reduce_mean(torch.tensor([float(env.rank)])),
        "broadcast": du.broadcast_object({"run": f"from-rank-{env.rank}"}),
    }


def main() -> None:
    torch.set_num_threads(1)
    inputs_path, out_dir = sys.argv[1], Path(sys.argv[2])
    env = du.init_distributed(device="cpu", timeout_s=60)
    try:
        inputs = torch.load(inputs_path)
        objectives = run_objectives(inputs, env.rank, env.world_size)
        result = {"smoke": run_smoke(env), "objectives": objectives}
        if "accum" in inputs:  # trainer steps per rank in one piece and in 4 micro-batches (train/accum.py)
            result["accum"] = {parts: run_accumulation(inputs["accum"], env.rank, env.world_size, parts)
                               for parts in (1, 4)}
        torch.save(result, out_dir / f"rank{env.rank}.pt")
    finally:
        du.cleanup()


if __name__ == "__main__":
    main()
