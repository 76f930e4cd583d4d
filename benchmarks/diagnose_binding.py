"""Why the world's models do not fit their own swap negatives (docs/world_experiments.md, section 11).

Three diagnostics on the data of ``benchmarks/cure_cached.py data --images-only`` (positives, every negative a
caption admits, rendered images) and a world base:

    python benchmarks/diagnose_binding.py overfit --data /tmp/h5/img0.pt --base BASE            # one fixed batch
    python benchmarks/diagnose_binding.py pool --data /tmp/h5/img0.pt --base BASE --pool 2000 \\
        [--method clip] [--logit-scale 100] [--lr 2e-3] [--steps 400]                           # a pool of pairs
    python benchmarks/diagnose_binding.py collisions /tmp/lead/demo_ws20 /tmp/lead/dA                    # shards
    python benchmarks/diagnose_binding.py probe --data /tmp/h5/img0.pt --base BASE --side text   # text|image|trunk

``overfit``: NegCLIP on 64 fixed positives and their swap-att negatives; can the model fit them at all?
``pool``: batches of 64 drawn from the first ``--pool`` positives that admit a swap-att negative (each with it);
accuracy s(x, y) > s(x, y') on 250 of the pool's rows (train) and on 250 rows outside it (held out).
``collisions DEMO...``: in a demo's training shards, how many of every 64 consecutive positives have their own
swap-att (same two shapes, colours exchanged) elsewhere among those 64: in-batch swap negatives that plain CLIP
gets for free.
``probe``: can a tower represent binding? A linear head (the tower trains with it for ``text``; frozen for
``image``, its 128-d embedding, and ``trunk``, the 1,152 features before the head) predicts which colour goes
with which shape in two-colour captions; scored as the true pairing over the swapped one on 300 held-out rows.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

_MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
_STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)


def _setup(args: argparse.Namespace):
    from tripletclip.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = torch.load(args.data, weights_only=False)
    bundle = create_model("world-cnn", args.base)
    if getattr(args, "logit_scale", 0):
        with torch.no_grad():
            bundle.model.logit_scale.fill_(math.log(args.logit_scale))
    return d, bundle.model, bundle.tokenizer


def _pixels(d: dict, rows: list[int]) -> torch.Tensor:
    return (d["pos_img"][rows].permute(0, 3, 1, 2).float() / 255 - _MEAN) / _STD


def _texts(model, tok, texts: list[str]) -> torch.Tensor:
    from tripletclip.models.trimmed import encode_text_trimmed

    tt = tok(texts)
    return F.normalize(encode_text_trimmed(model, tt, length=int((tt != 0).any(0).nonzero().max()) + 1), dim=-1)


def _swap_rows(d: dict) -> tuple[list[int], list[str]]:
    rows, negs = [], []
    for i, types in enumerate(d["neg_types"]):
        if "swap_att" in types:
            rows.append(i)
            negs.append(d["neg_captions"][i][types.index("swap_att")])
    return rows, negs


def _pair_accuracy(model, tok, d: dict, rows: list[int], negs: list[str]) -> tuple[float, float]:
    """(accuracy of s(x, y) > s(x, y'), mean cosine of y and y')."""
    with torch.no_grad():
        im = F.normalize(model.visual(_pixels(d, rows)), dim=-1)
        tf = _texts(model, tok, [d["captions"][i] for i in rows] + negs)
        n = len(rows)
        acc = ((im * tf[:n]).sum(-1) > (im * tf[n:]).sum(-1)).float().mean().item()
        return acc, (tf[:n] * tf[n:]).sum(-1).mean().item()


def _step(model, tok, loss_fn, opt, d: dict, rows: list[int], negs: list[str]) -> float:
    b = len(rows)
    im = F.normalize(model.visual(_pixels(d, rows)), dim=-1)
    tf = _texts(model, tok, [d["captions"][i] for i in rows] + negs)
    feats = {"image_features": im, "text_features": tf[:b], "logit_scale": model.logit_scale.reshape(()),
             "neg_text_features": tf[b:].view(b, 1, -1), "neg_text_mask": torch.ones(b, 1, dtype=torch.bool),
             "neg_text_type": torch.zeros(b, 1, dtype=torch.long)}
    loss = loss_fn(feats)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def _optimizer(model, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)


def overfit(args: argparse.Namespace) -> None:
    from tripletclip.losses import build_loss

    d, model, tok = _setup(args)
    rows, negs = _swap_rows(d)
    rows, negs = rows[:64], negs[:64]
    opt, loss_fn = _optimizer(model, args.lr), build_loss(args.method)
    t0 = time.perf_counter()
    for s in range(args.steps + 1):
        if s % 25 == 0:
            acc, cos = _pair_accuracy(model, tok, d, rows, negs)
            print(f"step {s} fit {acc:.3f} cos(y, y') {cos:.4f} scale {model.logit_scale.exp().item():.1f} "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
        if s < args.steps:
            model.train()
            _step(model, tok, loss_fn, opt, d, rows, negs)


def pool(args: argparse.Namespace) -> None:
    from tripletclip.losses import build_loss

    d, model, tok = _setup(args)
    rows, negs = _swap_rows(d)
    held = list(range(len(rows) - 250, len(rows)))
    train_ix = list(range(min(args.pool, len(rows) - 250)))
    opt, loss_fn = _optimizer(model, args.lr), build_loss(args.method)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    print(f"rows with a swap-att negative {len(rows)}, pool {len(train_ix)}", flush=True)
    for s in range(args.steps + 1):
        if s % 50 == 0:
            tr = _pair_accuracy(model, tok, d, [rows[k] for k in train_ix[:250]], [negs[k] for k in train_ix[:250]])[0]
            he = _pair_accuracy(model, tok, d, [rows[k] for k in held], [negs[k] for k in held])[0]
            print(f"step {s} train {tr:.3f} held {he:.3f} {time.perf_counter() - t0:.0f}s", flush=True)
        if s < args.steps:
            ix = [train_ix[k] for k in torch.randperm(len(train_ix), generator=g)[:64].tolist()]
            model.train()
            _step(model, tok, loss_fn, opt, d, [rows[k] for k in ix], [negs[k] for k in ix])


def probe(args: argparse.Namespace) -> None:
    from tripletclip.world.parser import parse_caption

    d, model, tok = _setup(args)
    rows, pairs, colours, shapes = [], [], {}, {}
    for i, types in enumerate(d["neg_types"]):
        if "swap_att" not in types:
            continue
        objs = [o for o in parse_caption(d["captions"][i]).objects if o.colour]
        if len(objs) != 2 or objs[0].colour == objs[1].colour or objs[0].shape == objs[1].shape:
            continue
        rows.append(i)
        pairs.append([(o.colour, o.shape) for o in objs])
        for o in objs:
            colours.setdefault(o.colour, len(colours))
            shapes.setdefault(o.shape, len(shapes))
    ns = len(shapes)

    def labels(k: int, swap: bool = False) -> list[int]:
        (c1, s1), (c2, s2) = pairs[k]
        if swap:
            c1, c2 = c2, c1
        return [colours[c1] * ns + shapes[s1], colours[c2] * ns + shapes[s2]]

    def feats(ix: list[int]) -> torch.Tensor:
        if args.side == "text":
            return _texts(model, tok, [d["captions"][rows[k]] for k in ix])
        x = _pixels(d, [rows[k] for k in ix])
        return model.visual.trunk.forward_features(x).flatten(1) if args.side == "trunk" else model.visual(x)

    held, train_ix = list(range(len(rows) - 300, len(rows))), list(range(len(rows) - 300))
    head = torch.nn.Linear(feats(train_ix[:2]).shape[1], len(colours) * ns)
    params = list(head.parameters())
    if args.side == "text":  # the text tower learns with its probe: can it represent binding at all?
        params += list(model.parameters())
    else:
        model.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def score(ix: list[int]) -> float:
        with torch.no_grad():
            z = head(feats(ix))
            t, s = torch.tensor([labels(k) for k in ix]), torch.tensor([labels(k, True) for k in ix])
            return (z.gather(1, t).sum(1) > z.gather(1, s).sum(1)).float().mean().item()

    g = torch.Generator().manual_seed(0)
    print(f"{args.side}: {len(rows)} two-colour captions, {len(colours)} colours x {ns} shapes", flush=True)
    for st in range(args.steps + 1):
        if st % 100 == 0:
            print(f"step {st} train {score(train_ix[:300]):.3f} held {score(held):.3f}", flush=True)
        if st < args.steps:
            ix = [train_ix[k] for k in torch.randperm(len(train_ix), generator=g)[:64].tolist()]
            z = head(feats(ix))
            y = torch.zeros_like(z)
            for r, k in enumerate(ix):
                y[r, labels(k)] = 1
            loss = F.binary_cross_entropy_with_logits(z, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def collisions(args: argparse.Namespace) -> None:
    import glob
    import tarfile

    from tripletclip.world.batches import swap_key

    for demo in args.demos:
        keys: list = []
        for shard in sorted(glob.glob(f"{demo}/world/train/*.tar")):
            with tarfile.open(shard) as tar:
                for m in tar.getmembers():
                    if m.name.endswith(".txt") and not m.name.endswith(".neg.txt"):
                        keys.append(swap_key(tar.extractfile(m).read().decode()))
        batches = [[k for k in keys[s:s + 64] if k] for s in range(0, len(keys) - 63, 64)]
        hits = [sum(1 for k in b if k[1] in {x[0] for x in b}) for b in batches]
        print(f"{demo}: {len(keys)} positives, {sum(k is not None for k in keys)} state two colours on two shapes; "
              f"per 64 consecutive positives, {sum(hits) / max(1, len(hits)):.1f} have their swap among them")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, steps, lr in (("overfit", 200, 2e-3), ("pool", 400, 2e-3), ("probe", 600, 3e-3)):
        p = sub.add_parser(name)
        p.add_argument("--data", required=True)
        p.add_argument("--base", required=True)
        p.add_argument("--steps", type=int, default=steps)
        p.add_argument("--lr", type=float, default=lr)
        if name != "probe":
            p.add_argument("--method", default="negclip")
            p.add_argument("--logit-scale", type=float, default=0.0, help="start at this logit scale (exp)")
        if name == "pool":
            p.add_argument("--pool", type=int, default=2000)
        if name == "probe":
            p.add_argument("--side", choices=("text", "image", "trunk"), required=True)
    c = sub.add_parser("collisions")
    c.add_argument("demos", nargs="+", help="demo output folders (their world/train shards)")
    args = ap.parse_args()
    {"overfit": overfit, "pool": pool, "probe": probe, "collisions": collisions}[args.cmd](args)


if __name__ == "__main__":
    main()
