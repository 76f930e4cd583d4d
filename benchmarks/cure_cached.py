"""In-memory search harness for the cure at the default budget (docs/world_experiments.md, section 10).

Locked image trunk with cached features (LiT, arXiv 2111.07991): the trunk of the world base (stem, stages,
1x1 reduction of ``tc_spatial_cnn``) is run ONCE over every training image; a training step then costs the
image head (one linear layer over the 6x6x32 map), the text tower and the optimiser. Several negatives per
caption without densifying the positives: the positive of every triplet is drawn exactly as the demo's world
builder draws it (``WorldGenerator.triplet(n_neg=1)`` in the builder's chunked random streams, so the first
9,600 positives ARE the default demo's training positives), then every other edit type is tried once on the
same (scene, caption), from a separate random stream, and kept where it applies: no retry, so the positives
stay representative (section 4).

    python benchmarks/cure_cached.py data --world-seed 0 --n 9600 --base BASE --out /tmp/h5/data0.pt [--images-only]
    python benchmarks/cure_cached.py train --data /tmp/h5/data0.pt --base BASE --transfer DEMO/world/transfer \
        --methods clip,negclip,tripletclip --steps 600 --batch 64 --k 7 [--full] [--fit-rows 1500]

BASE: the world base's weights; DIR: a demo's transfer benchmark (built from the same world seed). ``--k 7`` uses
every negative a caption has; ``--full`` trains every parameter on the stored pixels instead of the cache.

Not the demo's path: a search harness. Section 10 of docs/world_experiments.md records its runs; no design it tried
met the targets of issue 17, so none was built into the trainer.
"""
from __future__ import annotations

import argparse
import math
import json
import time
from pathlib import Path


def make_data(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from tripletclip.edit_types import SUGARCREPE_TYPES
    from tripletclip.models import create_model
    from tripletclip.world import spec_preset
    from tripletclip.world.edits import make_negative
    from tripletclip.world.generate import WorldGenerator
    from tripletclip.world.rand import Rand

    spec = spec_preset("demo", seed=args.world_seed)
    gen = WorldGenerator(spec, image_size=48)
    chunk = 200  # world/build.py's _TRAIN_CHUNK: the same streams as the demo's training shards
    caps: list[str] = []
    negs: list[list[str]] = []
    ntypes: list[list[str]] = []
    pos_img: list[np.ndarray] = []
    neg_img: list[list[np.ndarray]] = []
    t0 = time.perf_counter()
    for c in range(-(-args.n // chunk)):
        rng = Rand([args.world_seed, 1, c])
        extra_rng = Rand([args.world_seed, 77, c])
        for _ in range(min(chunk, args.n - c * chunk)):
            t = gen.triplet(rng, n_neg=1)
            x, xs = gen.render(t, rng)
            cs, ts, ims = [n.text for n in t.negatives], [n.edit_type for n in t.negatives], list(xs)
            for et in SUGARCREPE_TYPES:  # each further type tried once on the same positive: no retry
                if et in ts:
                    continue
                # the generator's own training edit context (no held-out pairs in any negative)
                n = make_negative(t.caption, t.scene, et, gen._train_ctx, extra_rng)
                if n is not None and n.text not in cs and n.text != t.caption.text:
                    cs.append(n.text)
                    ts.append(et)
                    ims.append(gen.renderer.render(n.scene, extra_rng))
            caps.append(t.caption.text)
            negs.append(cs)
            ntypes.append(ts)
            pos_img.append(x)
            neg_img.append(ims)
    t_gen = time.perf_counter() - t0
    bundle = create_model("world-cnn", args.base)
    trunk = bundle.model.visual.trunk.eval()
    pre = bundle.preprocess_val

    def feats(arrs: list[np.ndarray]) -> torch.Tensor:
        out = []
        for i in range(0, len(arrs), 512):
            x = torch.stack([pre(Image.fromarray(a)) for a in arrs[i:i + 512]])
            with torch.no_grad():
                out.append(trunk.forward_features(x).flatten(1).half())
        return torch.cat(out)

    t0 = time.perf_counter()
    flat_neg = [im for ims in neg_img for im in ims]
    extra = {"pos_img": torch.from_numpy(np.stack(pos_img)), "neg_img": torch.from_numpy(np.stack(flat_neg))}
    if not args.images_only:
        extra.update(pos_feat=feats(pos_img), neg_feat=feats(flat_neg))
    t_feat = time.perf_counter() - t0
    counts = [len(c) for c in negs]
    tok = bundle.tokenizer
    torch.save({"captions": caps, "neg_captions": negs, "neg_types": ntypes, **extra,
                "neg_counts": counts, "pos_tok": tok(caps), "world_seed": args.world_seed}, args.out)
    hist: dict[str, int] = {}
    for ts in ntypes:
        for x in ts:
            hist[x] = hist.get(x, 0) + 1
    print(json.dumps({"n": len(caps), "negatives": sum(counts), "per_type": hist, "gen_s": round(t_gen, 1),
                      "trunk_s": round(t_feat, 1)}))


def train(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    from tripletclip.demo.transfer import evaluate_transfer
    from tripletclip.edit_types import SUGARCREPE_TYPES
    from tripletclip.losses import build_loss
    from tripletclip.models import create_model
    from tripletclip.models.trimmed import encode_text_trimmed
    from tripletclip.train.optim import lr_multiplier

    d = torch.load(args.data, weights_only=False)
    n = min(len(d["captions"]), args.n_pos or len(d["captions"]))
    offs = [0]
    for c in d["neg_counts"]:
        offs.append(offs[-1] + c)
    allowed = set(args.types.split(",")) if args.types else set(SUGARCREPE_TYPES)
    results = {}
    for method in args.methods.split(","):
        torch.manual_seed(args.seed)
        bundle = create_model("world-cnn", args.base)
        model = bundle.model
        tok = bundle.tokenizer
        head = model.visual.trunk.head
        if args.reinit_head:
            head.reset_parameters()
        if args.logit_scale:  # the base's temperature replaced (section 11: the world base ends at about 16)
            with torch.no_grad():
                model.logit_scale.fill_(math.log(args.logit_scale))
        for name, p in model.named_parameters():  # --full: every parameter trains (the demo's default)
            p.requires_grad_(args.full or name.startswith("visual.trunk.head") or not name.startswith("visual."))
        if args.freeze_tokens:
            model.token_embedding.weight.requires_grad_(False)
        decay = [p for nm, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "logit_scale" not in nm]
        nodecay = [p for nm, p in model.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "logit_scale" not in nm)]
        head_ids = {id(p) for p in head.parameters()}
        groups = [{"params": [p for p in decay if id(p) not in head_ids], "weight_decay": 0.1, "lr": args.lr},
                  {"params": [p for p in nodecay if id(p) not in head_ids], "weight_decay": 0.0, "lr": args.lr},
                  {"params": [head.weight], "weight_decay": 0.1, "lr": args.lr * args.head_lr_mult},
                  {"params": [head.bias], "weight_decay": 0.0, "lr": args.lr * args.head_lr_mult}]
        for g in groups:
            g["base_lr"] = g["lr"]
        opt = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, fused=True)
        loss_fn = build_loss(method)
        mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
        std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)

        def encode_images(rows: list[int], kind: str) -> torch.Tensor:
            """The image tower on stored pixels (--full, preprocess_val's arithmetic at 48 px), else the head on
            the cached trunk features."""
            if args.full:
                return model.visual((d[f"{kind}_img"][rows].permute(0, 3, 1, 2).float() / 255 - mean) / std)
            return head(d[f"{kind}_feat"][rows].float())

        use_nt, use_ni = loss_fn.needs_neg_text, loss_fn.needs_neg_image
        g = torch.Generator().manual_seed(args.seed)
        # --only-with: the positives that have a negative of these types (densified positives, section 4)
        pool = [i for i in range(n) if not args.only_with or set(args.only_with.split(",")) & set(d["neg_types"][i])]
        perm = torch.tensor(pool)[torch.randperm(len(pool), generator=g)]
        pos_ptr = 0
        t0 = time.perf_counter()
        model.train()
        keys = _swap_keys(d["captions"]) if args.no_swap_collisions else None
        for step in range(args.steps):
            while True:
                if pos_ptr + args.batch > len(perm):
                    perm, pos_ptr = torch.tensor(pool)[torch.randperm(len(pool), generator=g)], 0
                if keys is None:
                    idx = perm[pos_ptr:pos_ptr + args.batch].tolist()
                    pos_ptr += args.batch
                    break
                # section 11: no positive's colour swap elsewhere in its batch (web batches rarely hold one);
                # a deferred positive goes back into the stream, so none is skipped for the pass
                idx, held, deferred, j = [], set(), [], pos_ptr
                while len(idx) < args.batch and j < len(perm):
                    i = int(perm[j])
                    j += 1
                    own, swapped = keys[i]
                    if own is not None and swapped in held:
                        deferred.append(i)
                        continue
                    idx.append(i)
                    if own is not None:
                        held.add(own)
                if len(idx) == args.batch:
                    perm = torch.tensor(perm[:pos_ptr].tolist() + idx + deferred + perm[j:].tolist())
                    pos_ptr += args.batch
                    break
                perm = perm[:0]  # the pass cannot fill another batch: a new pass
            mult = lr_multiplier(step, args.steps, args.warmup, args.min_lr_ratio)
            for gr in opt.param_groups:
                gr["lr"] = gr["base_lr"] * mult
            img = encode_images(idx, "pos")
            texts = [d["captions"][i] for i in idx]
            b, k = len(idx), args.k
            mask = torch.zeros(b, k, dtype=torch.bool)
            ntype = torch.zeros(b, k, dtype=torch.long)
            nt_list, ni_rows, ni_mask = [], [], torch.zeros(b, 1, dtype=torch.bool)
            for r, i in enumerate(idx):
                cands = [j for j, t in enumerate(d["neg_types"][i]) if t in allowed]
                if args.shuffle_negs and len(cands) > 1:
                    sel = torch.randperm(len(cands), generator=g)[:k].tolist()
                    cands = [cands[s] for s in sel]
                cands = cands[:k]
                for c, j in enumerate(cands):
                    mask[r, c] = True
                    ntype[r, c] = SUGARCREPE_TYPES.index(d["neg_types"][i][j])
                    nt_list.append(d["neg_captions"][i][j])
                if cands:  # TripletCLIP's negative image: the first kept negative's
                    ni_rows.append(offs[i] + cands[0])
                    ni_mask[r, 0] = True
            all_text = texts + (nt_list if use_nt else [])
            tt = tok(all_text)
            tf = encode_text_trimmed(model, tt, length=int((tt != 0).any(0).nonzero().max()) + 1)
            tf = torch.nn.functional.normalize(tf, dim=-1)
            imf = torch.nn.functional.normalize(img, dim=-1)
            feats = {"image_features": imf, "text_features": tf[:b], "logit_scale": model.logit_scale.reshape(())}
            if use_nt:
                nt = tf.new_zeros(b * k, tf.shape[1])
                nt = nt.index_copy(0, mask.reshape(-1).nonzero(as_tuple=True)[0], tf[b:])
                feats.update(neg_text_features=nt.view(b, k, -1), neg_text_mask=mask, neg_text_type=ntype)
            if use_ni:
                nif = torch.nn.functional.normalize(encode_images(ni_rows, "neg"), dim=-1)
                full = nif.new_zeros(b, nif.shape[1])
                full = full.index_copy(0, ni_mask[:, 0].nonzero(as_tuple=True)[0], nif)
                feats.update(neg_image_features=full.view(b, 1, -1), neg_image_mask=ni_mask)
            out = loss_fn(feats)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_([p for gr in groups for p in gr["params"]], 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)
            if (step + 1) % max(1, args.steps // 5) == 0:
                print(f"{method} step {step + 1} loss {float(out['loss'].detach()):.3f} {time.perf_counter() - t0:.0f}s", flush=True)
        t_train = time.perf_counter() - t0
        model.eval()
        fit = fit_check(model, tok, d, encode_images, offs, args.fit_rows) if args.fit_rows else {}
        res = evaluate_transfer(bundle, args.transfer)["transfer_scores"]
        tr = res["transfer"]
        swap = (tr["swap_obj"] + tr["swap_att"]) / 2
        pa = res.get("paraphrase", {})
        results[method] = {"swap_mean": swap, "train_s": t_train, **{k: round(v, 1) for k, v in tr.items()},
                           "para_swap": (pa.get("swap_obj", 0) + pa.get("swap_att", 0)) / 2,
                           "para_rel": pa.get("replace_rel"), "fit_own_negatives": fit}
        print(method, json.dumps(results[method]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


def _swap_keys(captions: list[str]) -> list[tuple]:
    """Per caption (own, swapped) pairs of ``tripletclip.world.batches.swap_key``; (None, None) without a swap."""
    from tripletclip.world.batches import swap_key

    return [swap_key(c) or (None, None) for c in captions]


def step_costs(args: argparse.Namespace) -> None:
    """CPU milliseconds of one fine-tuning step's parts (one thread, ``time.process_time``, mean of ``--reps``):
    image trunk forward + backward and forward only, image head, text tower forward + backward, fused AdamW;
    ``2 * --batch`` images and captions (a TripletCLIP step's positives plus one negative each), 16 tokens."""
    import torch

    torch.set_num_threads(1)
    from tripletclip.config.schema import OptimConfig
    from tripletclip.models import create_model
    from tripletclip.models.trimmed import encode_text_trimmed
    from tripletclip.train.optim import build_optimizer

    bundle = create_model("world-cnn", args.base)
    model = bundle.model.train()
    trunk = model.visual.trunk
    if args.freeze_tokens:
        model.token_embedding.weight.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(lr=1e-4, weight_decay=0.1))
    n = 2 * args.batch
    text = bundle.tokenizer(["a photo of a red star to the left of a blue circle"] * n)
    x = torch.randn(n, 3, 48, 48)
    clock = time.process_time
    tot = dict.fromkeys(("trunk_fwd_bwd", "trunk_fwd_only", "head_fwd_bwd", "text_fwd_bwd", "optimizer"), 0.0)
    for r in range(args.reps + 2):  # two warm-up steps
        opt.zero_grad(set_to_none=True)
        t0 = clock(); f = trunk.forward_features(x).flatten(1); t1 = clock()
        fd = f.detach().requires_grad_(True)
        t2 = clock(); h = trunk.head(fd); t3 = clock()
        e = encode_text_trimmed(model, text, length=16); t4 = clock()
        loss = (h.sum(1) * e.sum(1)).mean()
        t5 = clock(); loss.backward(); t6 = clock()  # head + text backward
        t7 = clock(); f.backward(fd.grad); t8 = clock()  # trunk backward
        t9 = clock(); opt.step(); t10 = clock()
        with torch.no_grad():
            t11 = clock(); trunk.forward_features(x); t12 = clock()
        if r >= 2:
            tot["trunk_fwd_bwd"] += (t1 - t0) + (t8 - t7)
            tot["trunk_fwd_only"] += t12 - t11
            tot["head_fwd_bwd"] += t3 - t2
            tot["text_fwd_bwd"] += (t4 - t3) + (t6 - t5)  # head backward is one 1,152 x 128 matmul, counted here
            tot["optimizer"] += t10 - t9
    print(json.dumps({k: round(1000 * v / args.reps, 1) for k, v in tot.items()} | {"images": n, "captions": n,
                                                                                     "freeze_tokens": args.freeze_tokens}))


def fit_check(model, tok, d, encode_images, offs, n_rows: int) -> dict[str, float]:
    """Accuracy (percent) per edit type of s(x, y) > s(x, y') on the first ``n_rows`` TRAINING positives and
    their own negatives (benchmarks/fit_negatives.py's question: are the training negatives fitted at all?)."""
    import torch

    from tripletclip.models.trimmed import encode_text_trimmed

    hits: dict[str, list[float]] = {}
    with torch.no_grad():
        for s in range(0, n_rows, 250):
            rows = list(range(s, min(n_rows, s + 250)))
            im = torch.nn.functional.normalize(encode_images(rows, "pos"), dim=-1)
            texts = [d["captions"][i] for i in rows]
            owner, types = [], []
            for r, i in enumerate(rows):
                texts += d["neg_captions"][i]
                owner += [r] * len(d["neg_captions"][i])
                types += d["neg_types"][i]
            tt = tok(texts)
            tf = torch.nn.functional.normalize(encode_text_trimmed(model, tt, length=int((tt != 0).any(0).nonzero().max()) + 1), dim=-1)
            pos = (im * tf[:len(rows)]).sum(-1)
            neg = (im[owner] * tf[len(rows):]).sum(-1)
            for t, p, q in zip(types, pos[owner].tolist(), neg.tolist()):
                hits.setdefault(t, []).append(1.0 if p > q else 0.0)
    return {t: round(100.0 * sum(v) / len(v), 1) for t, v in sorted(hits.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("data")
    a.add_argument("--world-seed", type=int, default=0)
    a.add_argument("--n", type=int, default=9600)
    a.add_argument("--base", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--images-only", action="store_true", help="store the rendered images, not trunk features")
    c = sub.add_parser("steps", help="CPU cost of a step's parts")
    c.add_argument("--base", required=True)
    c.add_argument("--batch", type=int, default=64)
    c.add_argument("--reps", type=int, default=10)
    c.add_argument("--freeze-tokens", action="store_true")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--base", required=True)
    t.add_argument("--transfer", required=True)
    t.add_argument("--methods", default="clip,negclip,tripletclip")
    t.add_argument("--steps", type=int, default=150)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--k", type=int, default=1)
    t.add_argument("--n-pos", type=int, default=0)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--head-lr-mult", type=float, default=1.0)
    t.add_argument("--reinit-head", action="store_true")
    t.add_argument("--freeze-tokens", action="store_true")
    t.add_argument("--full", action="store_true", help="train the whole image tower on stored pixels (no cache)")
    t.add_argument("--shuffle-negs", action="store_true")
    t.add_argument("--types", default="", help="only negatives of these edit types (comma-separated)")
    t.add_argument("--only-with", default="", help="only positives that have a negative of these types")
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--min-lr-ratio", type=float, default=0.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-swap-collisions", action="store_true",
                   help="build batches in which no positive's colour swap is another positive")
    t.add_argument("--logit-scale", type=float, default=0.0, help="start fine-tuning at this logit scale (exp)")
    t.add_argument("--fit-rows", type=int, default=0, help="also score this many training positives' own negatives")
    t.add_argument("--out", default="")
    args = ap.parse_args()
    {"data": make_data, "steps": step_costs, "train": train}[args.cmd](args)


if __name__ == "__main__":
    main()
