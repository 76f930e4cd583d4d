"""Exact gradient accumulation (train/accum.py): 4 micro-batches of 8 train as one batch of 32, every objective.

The reference is the plain step on the whole batch; compared are the loss terms (1e-6), every parameter
gradient (rtol 1e-5, atol 1e-6) and CE-CLIP's thresholds, after a first and a second step (the second uses
the thresholds updated once, from the whole batch). Negatives are masked unevenly (rows without any, a
micro-batch without synthetic pairs), so the masked-column paths are exercised. The 2-rank version runs in
tests/test_distributed.py. Activation memory is measured as the bytes of tensors saved for backward.
"""
from __future__ import annotations

import gc
import importlib.util
import weakref
from pathlib import Path

import pytest
import torch

from tripletclip.data.contract import EDIT_TYPE_INDEX
from tripletclip.losses import LOSSES, build_loss
from tripletclip.train.accum import accumulated_step, concat_features, split_rows
from tripletclip.train.forward import forward_features, prepare_batch

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent


def _worker():
    spec = importlib.util.spec_from_file_location("_dist_worker", TESTS / "_dist_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def accum_batch(g: torch.Generator, n: int = 32, k: int = 2, m: int = 2, d: int = 16) -> dict[str, torch.Tensor]:
    """Raw vectors in the batch contract's layout; about 40% of negatives masked, unevenly."""
    nt_mask = torch.rand(n, k, generator=g) < 0.6
    ni_mask = torch.rand(n, m, generator=g) < 0.6
    nt_mask[0] = False
    ni_mask[8:16] = False  # micro-batch 1 has no synthetic pair
    nt_mask[1, 0] = ni_mask[1, 0] = True
    return {"image": torch.randn(n, d, generator=g), "text": torch.randn(n, d, generator=g),
            "neg_text": torch.randn(n, k, d, generator=g), "neg_image": torch.randn(n, m, d, generator=g),
            "neg_text_mask": nt_mask, "neg_image_mask": ni_mask,
            "neg_text_type": torch.randint(0, EDIT_TYPE_INDEX["llm"] + 1, (n, k), generator=g)}


def accum_inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"batch1": accum_batch(g), "batch2": accum_batch(g)}


def assert_same_step(got: dict, want: dict, what: str) -> None:
    for k, v in want["terms"].items():
        torch.testing.assert_close(got["terms"][k], v, rtol=0, atol=1e-6, msg=f"{what}: term {k}")
    for k, v in want["grads"].items():
        torch.testing.assert_close(got["grads"][k], v, rtol=1e-5, atol=1e-6, msg=f"{what}: d/d{k}")
    if want["thresholds"] is not None:
        torch.testing.assert_close(got["thresholds"], want["thresholds"], rtol=1e-5, atol=1e-6)


def test_four_micro_batches_equal_one_batch_for_every_objective():
    worker, inputs = _worker(), accum_inputs()
    full = worker.run_accumulation(inputs, rank=0, world_size=1, parts=1)
    micro = worker.run_accumulation(inputs, rank=0, world_size=1, parts=4)
    assert set(full) == {"clip", "negclip", "negimage", "tripletclip", "ceclip"} <= set(LOSSES.names())
    for name in full:
        for step in (0, 1):
            assert_same_step(micro[name][step], full[name][step], f"{name} step {step}")
    assert (full["ceclip"][0]["thresholds"] > 0).any()  # the thresholds did move, once, from the whole batch
    # plain summing of 4 micro-batch losses is NOT the objective (fewer negatives): the test can tell
    worker_loss = build_loss("negclip")
    model = worker.ProjModel(16)
    parts = [forward_features(model, prepare_batch(mb, True, False), True, False, None)
             for mb in split_rows(inputs["batch1"], 4)]
    naive = torch.stack([worker_loss(p)["loss"] for p in parts]).mean()
    assert abs(float(naive.detach()) - float(full["negclip"][0]["terms"]["loss"])) > 1e-3


def test_split_and_concat_are_inverse():
    batch = accum_inputs()["batch1"]
    parts = split_rows(batch, 4)
    assert [p["image"].shape[0] for p in parts] == [8] * 4
    feats, leaves = concat_features([{"image_features": p["image"], "neg_text_mask": p["neg_text_mask"],
                                      "logit_scale": torch.tensor(3.0)} for p in parts])
    assert torch.equal(feats["image_features"], batch["image"]) and torch.equal(feats["neg_text_mask"], batch["neg_text_mask"])
    assert set(leaves) == {"image_features", "logit_scale"} and feats["logit_scale"].requires_grad
    with pytest.raises(ValueError, match="equal micro-batches"):
        split_rows(batch, 5)


class SavedBytes:
    """Peak bytes of activations saved for backward (parameters excluded), via saved_tensors_hooks."""

    def __init__(self, params) -> None:
        self.params = {p.data_ptr() for p in params}
        self.now = self.peak = 0

    def pack(self, t: torch.Tensor):
        holder = _Holder(t)
        if t.data_ptr() not in self.params:
            n = t.untyped_storage().nbytes()
            self.now += n
            self.peak = max(self.peak, self.now)
            weakref.finalize(holder, self._free, n)
        return holder

    def _free(self, n: int) -> None:
        self.now -= n

    @staticmethod
    def unpack(holder):
        return holder.t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Holder:
    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def test_micro_batches_keep_the_activation_memory_of_a_micro_batch():
    worker, batch = _worker(), accum_inputs()["batch1"]
    d = batch["image"].shape[1]
    model = worker.ProjModel(d)
    # a wider tower so that activations, not the loss's logits, dominate (as in a real CLIP)
    model.textual = torch.nn.Sequential(torch.nn.Linear(d, 512), torch.nn.GELU(), torch.nn.Linear(512, d))
    loss_fn = build_loss("tripletclip")

    def encode(mb):
        return forward_features(model, mb, True, True, None)

    full_meter = SavedBytes(model.parameters())
    with full_meter.hooks():
        loss_fn(encode(prepare_batch(batch, True, True)))["loss"].backward()
    micro_meter = SavedBytes(model.parameters())
    with micro_meter.hooks():
        accumulated_step(encode, loss_fn, [prepare_batch(mb, True, True) for mb in split_rows(batch, 4)],
                         lambda t: t.backward())
    gc.collect()
    assert (micro_meter.now, full_meter.now) == (0, 0)  # the meter saw every saved tensor freed
    assert micro_meter.peak < 0.5 * full_meter.peak, (micro_meter.peak, full_meter.peak)
