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
from tripletclip.models import create_model
from tripletclip.train.accum import accumulated_step, accumulation_problem, concat_features, split_rows
from tripletclip.train.forward import forward_features, prepare_batch

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent
ACCUM_MODEL = "test-vit-tiny"


def _worker():
    spec = importlib.util.spec_from_file_location("_dist_worker", TESTS / "_dist_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vector_batch(g: torch.Generator, n: int = 32, k: int = 2, m: int = 2, d: int = 16) -> dict[str, torch.Tensor]:
    """Raw vectors in the batch contract's layout (for the stand-in ProjModel); about 40% of negatives masked,
    unevenly: a row without any negative caption, a micro-batch without synthetic pairs."""
    nt_mask = torch.rand(n, k, generator=g) < 0.6
    ni_mask = torch.rand(n, m, generator=g) < 0.6
    nt_mask[0] = False
    ni_mask[8:16] = False  # micro-batch 1 has no synthetic pair
    nt_mask[1, 0] = ni_mask[1, 0] = True
    return {"image": torch.randn(n, d, generator=g), "text": torch.randn(n, d, generator=g),
            "neg_text": torch.randn(n, k, d, generator=g), "neg_image": torch.randn(n, m, d, generator=g),
            "neg_text_mask": nt_mask, "neg_text_type": torch.randint(0, EDIT_TYPE_INDEX["llm"] + 1, (n, k), generator=g),
            "neg_image_mask": ni_mask}


WORDS = "a the red blue green small large cube ball cone ring left right of above below two".split()


def token_batch(g: torch.Generator, n: int = 32, k: int = 2, m: int = 2) -> dict[str, torch.Tensor]:
    """A batch for the tiny ViT (test-vit-tiny: 32x32 images, CLIP's tokenizer): captions of 2-9 words, so the
    trimmed text length and the token masks vary by row; negatives masked as in :func:`vector_batch`."""
    tokenize = create_model(ACCUM_MODEL).tokenizer

    def captions(count: int) -> torch.Tensor:
        lengths = torch.randint(2, 10, (count,), generator=g).tolist()
        return tokenize([" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (n_,), generator=g))
                         for n_ in lengths])

    masks = vector_batch(g, n, k, m, d=1)
    return {"image": torch.randn(n, 3, 32, 32, generator=g), "text": captions(n),
            "neg_text": captions(n * k).view(n, k, -1), "neg_image": torch.randn(n, m, 3, 32, 32, generator=g),
            **{key: masks[key] for key in ("neg_text_mask", "neg_text_type", "neg_image_mask")}}


def accum_inputs(seed: int = 0) -> dict:
    """Two batches of 32 for two optimizer steps (tests/_dist_worker.py ``run_accumulation``)."""
    g = torch.Generator().manual_seed(seed)
    return {"batch1": token_batch(g), "batch2": token_batch(g)}


def assert_same_step(got: dict, want: dict, what: str) -> None:
    for k, v in want["terms"].items():
        torch.testing.assert_close(got["terms"][k], v, rtol=0, atol=1e-6, msg=f"{what}: term {k}")
    for k, v in want["grads"].items():
        torch.testing.assert_close(got["grads"][k], v, rtol=1e-5, atol=1e-6, msg=f"{what}: d/d{k}")
    if want["thresholds"] is not None:
        torch.testing.assert_close(got["thresholds"], want["thresholds"], rtol=1e-5, atol=1e-6)


def test_four_micro_batches_equal_one_batch_for_every_objective():
    """Every registered objective, TripletCLIP + CyCLIP and NegCLIP + distillation (base and EMA teacher),
    through the trainer's step on the tiny ViT: tokens, teachers, further positives and CLIC's batch transform."""
    worker, inputs = _worker(), accum_inputs()
    full = worker.run_accumulation(inputs, rank=0, world_size=1, parts=1)
    micro = worker.run_accumulation(inputs, rank=0, world_size=1, parts=4)
    assert set(LOSSES.names()) | {"tripletclip+cyclip", "negclip+distill(base)", "negclip+distill(ema)"} == set(full)
    assert {name for name in full if len(full[name]) == 2} == {"ceclip", "degla", "negclip+distill(base)",
                                                                  "negclip+distill(ema)"}
    for name in full:
        for step, want in enumerate(full[name]):
            assert set(micro[name][step]["grads"]) == set(want["grads"]), name
            assert_same_step(micro[name][step], want, f"{name} step {step}")
    assert (full["ceclip"][0]["thresholds"] > 0).any()  # the thresholds did move, once, from the whole batch
    for name, term in (("fscclip", "hn_local"), ("degla", "distill"), ("negclip+distill(ema)", "distill"),
                       ("negclip+distill(base)", "distill"),
                       ("clic", "uni"), ("tripletclip+cyclip", "cyclip_in")):
        assert float(full[name][-1]["terms"][term]) > 1e-4, (name, term)  # the term is there and not trivially 0


def test_summing_micro_batch_losses_is_not_the_objective():
    """The naive alternative (4 small losses, fewer negatives each) trains another objective: the check can tell."""
    worker, batch = _worker(), vector_batch(torch.Generator().manual_seed(0))
    model, loss_fn = worker.ProjModel(16), build_loss("negclip")
    whole = loss_fn(forward_features(model, prepare_batch(batch, True, False), True, False, None))["loss"]
    parts = [loss_fn(forward_features(model, prepare_batch(mb, True, False), True, False, None))["loss"]
             for mb in split_rows(batch, 4)]
    assert abs(float(torch.stack(parts).mean().detach()) - float(whole.detach())) > 1e-3


def test_split_and_concat_are_inverse():
    batch = vector_batch(torch.Generator().manual_seed(0))
    parts = split_rows(batch, 4)
    assert [p["image"].shape[0] for p in parts] == [8] * 4
    feats, leaves = concat_features([{"image_features": p["image"], "neg_text_mask": p["neg_text_mask"],
                                      "teacher_text_features": p["text"], "logit_scale": torch.tensor(3.0)}
                                     for p in parts], constant=frozenset({"teacher_text_features"}))
    assert torch.equal(feats["image_features"], batch["image"]) and torch.equal(feats["neg_text_mask"], batch["neg_text_mask"])
    assert torch.equal(feats["teacher_text_features"], batch["text"]) and not feats["teacher_text_features"].requires_grad
    assert set(leaves) == {"image_features", "logit_scale"} and feats["logit_scale"].requires_grad
    with pytest.raises(ValueError, match="equal micro-batches"):
        split_rows(batch, 5)


def test_only_what_is_inexact_is_refused(tmp_path):
    """BatchNorm (micro-batch statistics) is refused when the model exists; CLIC's pairs must split evenly;
    every objective and regulariser is accepted otherwise."""
    from tripletclip.config import ConfigError, load_config
    from tripletclip.train.checks import run_problems
    from tripletclip.train.trainer import train

    def cfg(*extra: str):
        return load_config(None, ["data.type=synthetic", "data.train=32", "data.workers=0", "train.steps=1",
                                  "model.name=test-vit-tiny", f"train.output_dir={tmp_path}", "train.progress=false",
                                  "train.threads=1", *extra])

    accum = [p for name in LOSSES.names() for p in run_problems(cfg(f"loss.name={name}", "train.batch_size=8",
                                                                    "train.accum_steps=2"))]
    accum += run_problems(cfg("loss.name=negclip", "loss.distill_weight=1", "loss.cyclip_in=0.1",
                              "train.batch_size=8", "train.accum_steps=4"))
    assert not [p for p in accum if "accum" in p], accum
    clic = [p for p in run_problems(cfg("loss.name=clic", "train.batch_size=8", "train.accum_steps=8"))
            if p.startswith("train.accum_steps=8")]
    assert len(clic) == 1 and "4 examples" in clic[0] and "multiple of 16" in clic[0]
    assert accumulation_problem(worker_model()) is None
    norm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert "BatchNorm" in accumulation_problem(norm)
    with pytest.raises(ConfigError, match="BatchNorm"):
        train(cfg("model.name=world-resnet-tiny", "loss.name=clip", "train.batch_size=4", "train.accum_steps=2"))


def worker_model() -> torch.nn.Module:
    return _worker().ProjModel(4)


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
    worker, batch = _worker(), vector_batch(torch.Generator().manual_seed(0))
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
