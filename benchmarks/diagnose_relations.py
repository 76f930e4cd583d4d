"""Why the world's models do not learn relations (docs/world_experiments.md, section 12).

A relation pool on the data of ``benchmarks/cure_cached.py data`` (cached trunk features of the positives and of
every negative a caption admits) and a world base: the training positives that admit a replace-rel negative,
each with that negative caption y' and its image x'. The image trunk stays locked (its features are cached); the
image head and the text tower train at logit scale ``--scale`` (the demo's 100), constant lr, batches of
``--batch`` drawn from the first ``--pool`` rows::

    python benchmarks/diagnose_relations.py --data /tmp/h5/data0.pt --base BASE --pool 4000 --steps 600 \\
        [--loss mirror|negtext|clip|pair] [--batch 64] [--lr 2e-3] [--head-mult 1] [--tok-mult 1] \\
        [--reinit] [--relkind all|inverse|other] [--transfer DIR] [--warm 64:100[,512:60]] [--seed 0] [--log-every 40]

Losses (all symmetric InfoNCE but ``pair``; arXiv 2103.00020, 2210.01936, 2411.02545):

- ``mirror``: rows x and x' against captions y and y' (TripletCLIP's structure: the negative pair is a pair);
- ``negtext``: rows x against captions y and the y' (NegCLIP: negative captions only, no x');
- ``clip``: rows x against captions y (no negatives);
- ``pair``: logistic loss on s(x, y) - s(x, y') and s(x', y') - s(x', y) only (no in-batch contrast).

``--warm ROWS:STEPS[,ROWS:STEPS...]``: a small-pool warm start (section 14): the first STEPS steps draw their
batches from the pool's first ROWS rows only, the next phase from its own first ROWS rows, and the rest of
``--steps`` from the whole pool (one optimiser throughout, constant lr).

Printed every ``--log-every`` steps (default a fifth of the run): the loss; on the pool and on 500 rows outside it
(``--held-from``) the accuracy s(x, y) > s(x, y') and s(x', y') > s(x', y), the mean text cosine of y and y' and
the image cosine of x and x'; during a warm phase first the same on its rows (``warm``). ``--transfer DIR``: the
transfer split of a demo's world (``demo.transfer.evaluate_transfer``) at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

def relation_kind(caption: str, negative: str) -> str:
    """``inverse`` when the negative only inverts the caption's relation(s) (the objects exchange places in x'),
    else ``other`` (a relation of another axis, x' relocated). Read by the world's own parser."""
    from tripletclip.world.parser import parse_caption
    from tripletclip.world.vocab import INVERSE_RELATION

    a, b = parse_caption(caption), parse_caption(negative)
    if a is None or b is None or a.objects != b.objects or len(a.relations) != len(b.relations):
        return "other"
    diff = [(x, y) for x, y in zip(a.relations, b.relations) if tuple(x) != tuple(y)]
    inverted = all((x[0], INVERSE_RELATION[x[1]], x[2]) == tuple(y) for x, y in diff)
    return "inverse" if diff and inverted else "other"


def relation_rows(d: dict) -> list[tuple[int, int, str]]:
    """(positive index, index of its negative's cached features, negative caption) per replace-rel negative."""
    offs = [0]
    for c in d["neg_counts"]:
        offs.append(offs[-1] + c)
    rows = []
    for i, (types, negs) in enumerate(zip(d["neg_types"], d["neg_captions"])):
        if "replace_rel" in types:
            j = types.index("replace_rel")
            rows.append((i, offs[i] + j, negs[j]))
    return rows


_CANONICAL = {"left": ("left", False), "right": ("left", True), "above": ("above", False), "below": ("above", True)}


def relation_facts(caption: str) -> set[tuple]:
    """The caption's relations as ((shape, colour), "left" | "above", (shape, colour)) facts (right / below
    stated from the other side); a mirror of a fact names the same two objects the other way round."""
    from tripletclip.world.parser import parse_caption

    desc = parse_caption(caption)
    out = set()
    for i, rel, j in desc.relations if desc else ():
        r, flip = _CANONICAL[rel]
        a, b = desc.objects[i], desc.objects[j]
        a, b = (b, a) if flip else (a, b)
        out.add(((a.shape, a.colour), r, (b.shape, b.colour)))
    return out


def batch_without_mirrors(order: list[int], facts: list[set], size: int) -> list[int]:
    """The first ``size`` items of ``order`` such that no item's relation is mirrored by another item's (an item
    that would meet its mirror is skipped for this batch)."""
    batch, held = [], set()
    for k in order:
        mirrors = {(b, r, a) for a, r, b in facts[k]}
        if mirrors & held:
            continue
        batch.append(k)
        held |= facts[k]
        if len(batch) == size:
            break
    return batch


def warm_phases(spec: str, steps: int, pool: int) -> list[tuple[int, int]]:
    """``"64:100,512:60"`` -> [(64, 100), (512, 60)]: (rows, steps) of each warm phase, in order. Every phase's
    rows lie in 1..pool, and the phases together are no longer than the run."""
    phases = []
    for part in filter(None, spec.split(",")):
        rows, _, n = part.partition(":")
        if not (rows.isdigit() and n.isdigit()):
            raise ValueError(f"--warm: {part!r} is not ROWS:STEPS")
        if not 1 <= int(rows) <= pool:
            raise ValueError(f"--warm: {rows} rows, the pool has {pool}")
        phases.append((int(rows), int(n)))
    if sum(n for _, n in phases) > steps:
        raise ValueError(f"--warm: {sum(n for _, n in phases)} warm steps, the run has {steps}")
    return phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="cure_cached.py data output (with cached trunk features)")
    ap.add_argument("--base", required=True)
    ap.add_argument("--train", default="head,text", help="what trains: head, text or both")
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--held-from", type=int, default=-500, help="first of the 500 held-out relation rows")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--head-mult", type=float, default=1.0, help="lr multiplier of the image head")
    ap.add_argument("--text-mult", type=float, default=1.0, help="lr multiplier of the text tower (not tokens)")
    ap.add_argument("--tok-mult", type=float, default=1.0, help="lr multiplier of the token embedding")
    ap.add_argument("--loss", choices=("mirror", "negtext", "clip", "pair"), default="mirror")
    ap.add_argument("--reinit", action="store_true", help="re-initialise the image head")
    ap.add_argument("--relkind", choices=("all", "inverse", "other"), default="all")
    ap.add_argument("--scale", type=float, default=100.0, help="logit scale (fixed)")
    ap.add_argument("--transfer", default="", help="a transfer split folder to score at the end")
    ap.add_argument("--no-mirrors", action="store_true",
                    help="batches in which no positive's relation is mirrored by another positive's")
    ap.add_argument("--warm", default="", help="ROWS:STEPS[,ROWS:STEPS...]: first phases on the pool's first rows")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    ap.add_argument("--log-every", type=int, default=0, help="steps between prints (default: a fifth of the run)")
    a = ap.parse_args()

    torch.set_num_threads(1)
    from tripletclip.demo.transfer import evaluate_transfer
    from tripletclip.models import create_model
    from tripletclip.models.trimmed import encode_text_trimmed

    d = torch.load(a.data, weights_only=False)
    rows = relation_rows(d)
    kinds = [relation_kind(d["captions"][r[0]], r[2]) for r in rows]
    print("inverse share", sum(k == "inverse" for k in kinds) / len(kinds))
    if a.relkind != "all":
        rows = [r for r, k in zip(rows, kinds) if k == a.relkind]
    print("rel rows", len(rows))
    torch.manual_seed(0)
    bundle = create_model("world-cnn", a.base)
    m, tok = bundle.model, bundle.tokenizer
    head = m.visual.trunk.head
    if a.reinit:
        head.reset_parameters()
    with torch.no_grad():
        m.logit_scale.fill_(math.log(a.scale))
    for name, p in m.named_parameters():
        p.requires_grad_(("head" in a.train and name.startswith("visual.trunk.head"))
                         or ("text" in a.train and not name.startswith("visual.") and name != "logit_scale"))
    named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n.startswith("visual.")], "lr": a.lr * a.head_mult},
              {"params": [p for n, p in named if not n.startswith("visual.") and n != "token_embedding.weight"],
               "lr": a.lr * a.text_mult},
              {"params": [p for n, p in named if n == "token_embedding.weight"], "lr": a.lr * a.tok_mult}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], betas=(0.9, 0.98), eps=1e-6, weight_decay=a.wd)

    def enc_text(texts: list[str]) -> torch.Tensor:
        tt = tok(texts)
        return F.normalize(encode_text_trimmed(m, tt, length=int((tt != 0).any(0).nonzero().max()) + 1), dim=-1)

    def enc_images(rs: list[tuple[int, int, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.normalize(head(d["pos_feat"][[r[0] for r in rs]].float()), dim=-1),
                F.normalize(head(d["neg_feat"][[r[1] for r in rs]].float()), dim=-1))

    def accuracy(rs: list[tuple[int, int, str]]) -> tuple[float, float, float, float]:
        with torch.no_grad():
            im, ni = enc_images(rs)
            tp, tn = enc_text([d["captions"][r[0]] for r in rs]), enc_text([r[2] for r in rs])
            a1 = ((im * tp).sum(-1) > (im * tn).sum(-1)).float().mean().item()
            a2 = ((ni * tn).sum(-1) > (ni * tp).sum(-1)).float().mean().item()
            return (round(100 * a1, 1), round(100 * a2, 1), round((tp * tn).sum(-1).mean().item(), 4),
                    round((im * ni).sum(-1).mean().item(), 4))

    held = rows[a.held_from:a.held_from + 500] if a.held_from >= 0 else rows[a.held_from:]
    pool = rows[:min(a.pool, len(rows) - 500)]
    try:
        phases = warm_phases(a.warm, a.steps, len(pool))
    except ValueError as e:
        ap.error(str(e))
    # the number of pool rows each step draws from: the warm phases, then the whole pool
    active = [k for k, n in phases for _ in range(n)] + [len(pool)] * (a.steps - sum(n for _, n in phases))
    log_every = a.log_every or max(1, a.steps // 5)
    print("start pool", accuracy(pool), "held", accuracy(held))
    facts = [relation_facts(d["captions"][r[0]]) for r in pool] if a.no_mirrors else []
    mirrored = []
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    for step in range(a.steps):
        order = torch.randperm(active[step], generator=g).tolist()
        if a.no_mirrors:
            picked = batch_without_mirrors(order, facts, a.batch)
        else:
            picked = order[:a.batch]
            if step < 20:  # how many positives meet a mirror in their batch (first 20 batches)
                own = [relation_facts(d["captions"][pool[k][0]]) for k in picked]
                mirrored.append(a.batch - len(batch_without_mirrors(list(range(len(picked))), own, a.batch)))
        rs = [pool[k] for k in picked]
        im, ni = enc_images(rs)
        t = enc_text([d["captions"][r[0]] for r in rs] + [r[2] for r in rs])
        b = len(rs)
        tp, tn = t[:b], t[b:]
        sc = m.logit_scale.exp()
        if a.loss == "pair":
            loss = (F.softplus(-sc * ((im * tp).sum(-1) - (im * tn).sum(-1))).mean()
                    + F.softplus(-sc * ((ni * tn).sum(-1) - (ni * tp).sum(-1))).mean())
        elif a.loss == "clip":
            logits, y = sc * im @ tp.t(), torch.arange(b)
            loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2
        elif a.loss == "negtext":  # image -> [y ; y'], text -> images over the positives only
            logits, y = sc * im @ t.t(), torch.arange(b)
            loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits[:, :b].t(), y)) / 2
        else:  # mirror: [x ; x'] against [y ; y']
            logits, y = sc * torch.cat([im, ni]) @ torch.cat([tp, tn]).t(), torch.arange(2 * b)
            loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0:
            warm = ["warm", accuracy(pool[:active[step]])] if active[step] < len(pool) else []
            print(step + 1, round(loss.item(), 3), *warm, "pool", accuracy(pool), "held", accuracy(held),
                  f"{time.time() - t0:.0f}s", flush=True)
    if mirrored:
        print("positives per batch that a no-mirror batch would skip (first 20 batches):", sum(mirrored) / len(mirrored))
    if a.transfer:
        r = evaluate_transfer(bundle, a.transfer)["transfer_scores"]["transfer"]
        print("transfer", json.dumps({k: round(v, 1) for k, v in r.items()}))


if __name__ == "__main__":
    main()
