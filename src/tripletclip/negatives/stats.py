"""Dataset statistics of generated negatives, as numbers (stats.json) and plots (PNG, matplotlib).

- edit-type mix; caption length (words) of positives and negatives and their ratio;
- concept coverage: distinct object nouns and attribute words (shipped word lists) in positives and
  negatives, and how many concepts only the negatives introduce;
- with a model: the cosine similarity of positive vs negative caption pairs cos(y, y'), and, for TripletData
  shards, the image-side margins s(x, y) - s(x, y') and s(x', y') - s(x', y) that the losses train on
  (a negative far below its positive is an easy negative).

Input: the parquet output of ``negatives text`` or TripletData shards (``negatives images`` / ``filter``).
"""
from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Any

import numpy as np

from tripletclip.data.shard_reader import load_image, read_shard, shard_files
from tripletclip.errors import InputError
from tripletclip.negatives.io import read_parquet_rows
from tripletclip.negatives.lexicon import load_lexicon
from tripletclip.negatives.tagger import LexiconTagger, tokenize
from tripletclip.utils.files import write_json_atomic


def _load(inp: str) -> tuple[list[dict[str, Any]], bool]:
    """Rows (key, caption, neg_caption, edit_type[, image bytes, neg image bytes]) and whether images exist."""
    p = Path(inp)
    is_shards = (p.is_dir() and any(p.glob("*.tar"))) or inp.endswith(".tar")
    if not is_shards:
        return read_parquet_rows(inp), False
    rows = []
    for path in shard_files(inp, "--in"):
        for s in read_shard(path):
            for m, (nc, nt) in enumerate(zip(s.neg_captions, s.neg_types)):
                rows.append({"key": s.key, "caption": s.captions[0], "neg_caption": nc, "edit_type": nt,
                             "_image": s.image, "_neg_image": s.neg_images[m] if m < len(s.neg_images) else None})
    return rows, True


def concepts(texts: list[str], tagger: LexiconTagger) -> tuple[collections.Counter, collections.Counter]:
    """Counts of object nouns (singular) and attribute words mentioned in the texts."""
    objs: collections.Counter = collections.Counter()
    atts: collections.Counter = collections.Counter()
    for t in texts:
        low = [w.lower() for w in tokenize(t)]
        for s in tagger.tag(low):
            if s.tag == "NOUN":
                objs[s.lemma] += 1
            elif s.tag == "ADJ":
                atts[s.lemma] += 1
    return objs, atts


def compute_stats(inp: str, out: str, model: str = "", pretrained: str = "", run: str = "", max_rows: int = 5000,
                  batch_size: int = 64, device: str = "auto", seed: int = 0, bundle: Any = None) -> dict[str, Any]:
    """Write stats.json and plots for ``inp`` into ``out``; returns the stats."""
    rows, has_images = _load(inp)
    if not rows:
        raise InputError(f"{inp}: no negatives to describe")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tagger = LexiconTagger(load_lexicon())
    pos_caps = list(dict.fromkeys(r["caption"] for r in rows))
    neg_caps = [r["neg_caption"] for r in rows]
    pos_len = np.array([len(tokenize(c)) for c in pos_caps])
    neg_len = np.array([len(tokenize(r["neg_caption"])) for r in rows])
    ratio = np.array([len(tokenize(r["neg_caption"])) / max(1, len(tokenize(r["caption"]))) for r in rows])
    po, pa = concepts(pos_caps, tagger)
    no, na = concepts(neg_caps, tagger)
    stats: dict[str, Any] = {
        "input": inp, "rows": len(rows), "positives": len(pos_caps),
        "edit_types": dict(collections.Counter(r.get("edit_type") or "unknown" for r in rows).most_common()),
        "generators": dict(collections.Counter((r.get("generator") or "").split(":")[0] or "n/a" for r in rows)),
        "caption_words": {"positive_mean": float(pos_len.mean()), "negative_mean": float(neg_len.mean()),
                          "positive_median": float(np.median(pos_len)), "negative_median": float(np.median(neg_len)),
                          "length_ratio_mean": float(ratio.mean())},
        "concepts": {"objects_positive": len(po), "objects_negative": len(no), "objects_only_in_negatives": len(set(no) - set(po)),
                     "attributes_positive": len(pa), "attributes_negative": len(na),
                     "attributes_only_in_negatives": len(set(na) - set(pa)),
                     "top_objects": dict(po.most_common(20)), "top_attributes": dict(pa.most_common(20))},
    }
    sims: dict[str, np.ndarray] = {}
    if model or run or bundle is not None:
        sims = _similarities(rows, has_images, model, pretrained, run, max_rows, batch_size, device, seed, bundle)
        stats["similarity"] = {k: {"mean": float(v.mean()), "std": float(v.std()), "n": int(len(v)),
                                   "share_positive_wins": float((v > 0).mean()) if k.startswith("margin") else None}
                               for k, v in sims.items()}
    stats["plots"] = _plots(out_dir, stats, pos_len, neg_len, sims)
    write_json_atomic(out_dir / "stats.json", stats)
    return stats


def _similarities(rows: list[dict[str, Any]], has_images: bool, model: str, pretrained: str, run: str, max_rows: int,
                  batch_size: int, device: str, seed: int, bundle: Any) -> dict[str, np.ndarray]:
    from tripletclip.negatives.scoring import ClipScorer, load_bundle

    scorer = ClipScorer(bundle if bundle is not None else load_bundle(model, pretrained, run), device, batch_size)
    sample = rows if len(rows) <= max_rows else random.Random(seed).sample(rows, max_rows)
    caps = [r["caption"] for r in sample]
    negs = [r["neg_caption"] for r in sample]
    tp, tn = scorer.encode_texts(caps), scorer.encode_texts(negs)
    out = {"cos_text_pos_neg": (tp * tn).sum(-1)}
    if has_images:
        img = scorer.encode_images([load_image(r["_image"]) for r in sample])
        out["s_image_pos"] = (img * tp).sum(-1)
        out["s_image_neg"] = (img * tn).sum(-1)
        out["margin_real"] = out["s_image_pos"] - out["s_image_neg"]
        with_neg = [i for i, r in enumerate(sample) if r.get("_neg_image")]
        if with_neg:
            nimg = scorer.encode_images([load_image(sample[i]["_neg_image"]) for i in with_neg])
            out["margin_synthetic"] = (nimg * tn[with_neg]).sum(-1) - (nimg * tp[with_neg]).sum(-1)
    return out


def _plots(out_dir: Path, stats: dict[str, Any], pos_len: np.ndarray, neg_len: np.ndarray,
           sims: dict[str, np.ndarray]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6, 3.2))
    et = stats["edit_types"]
    ax.bar(list(et), list(et.values()), color="tab:blue")
    ax.set_ylabel("negatives")
    ax.set_title("edit-type mix")
    ax.tick_params(axis="x", rotation=40)
    files.append(_save(fig, out_dir / "edit_types.png"))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.arange(0, max(pos_len.max(), neg_len.max()) + 2) - 0.5
    ax.hist(pos_len, bins=bins, alpha=0.6, density=True, label="positive")
    ax.hist(neg_len, bins=bins, alpha=0.6, density=True, label="negative")
    ax.set_xlabel("caption length (tokens)")
    ax.legend()
    files.append(_save(fig, out_dir / "caption_length.png"))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    top = stats["concepts"]["top_objects"]
    ax.barh(list(top)[::-1], list(top.values())[::-1], color="tab:green")
    ax.set_title("most frequent objects (positives)")
    files.append(_save(fig, out_dir / "concepts.png"))
    if sims:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for k, v in sims.items():
            ax.hist(v, bins=40, alpha=0.5, label=k)
        ax.set_xlabel("cosine similarity / margin")
        ax.legend(fontsize=7)
        files.append(_save(fig, out_dir / "cosine.png"))
    return files


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name
