"""Zero-shot image-text retrieval, R@1/5/10 in both directions (COCO Karpathy 5k, Flickr30k 1k, the world).

Protocol as in CLIP papers and CLIP_benchmark's ``zeroshot_retrieval``: every image is a query over all
captions (image-to-text, i2t) and every caption a query over all images (text-to-image, t2i); a query is a hit
at k if *any* of its ground-truth items is among the top k. Captions are used as written (no ``pre_caption``).

Ties, made explicit: a query's rank is the number of non-ground-truth candidates scoring *at least* as high as
its best ground truth (a tie ranks the wrong item first, matching the strict rule elsewhere; CLIP_benchmark's
``topk`` breaks ties by index). Ground truth is defined by caption text: COCO repeats some captions verbatim
across images, so for i2t the candidates are the distinct caption strings (a copy of an image's own caption
under another image is that image's ground truth, not a distractor with an identical score) and for t2i a
caption's ground truth is every image that has that exact caption. The number of repeated captions is recorded.

Files: a Karpathy / ARO list ``[{"image": name, "caption": [captions] | caption}]`` or a COCO captions file
(``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from tripletclip.errors import InputError
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.images import make_resolver, resolve_images, unique
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, file_record, load_json, per_row, protocol, require

KS = (1, 5, 10)


def load_retrieval(annotations: str | Path) -> tuple[list[tuple[Any, tuple[str, ...], list[tuple[Any, str]]]], dict]:
    """([(image id, candidate image names, [(caption id, caption)])], file record)."""
    path = Path(annotations)
    data = load_json(path)
    items = []
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        caps: dict[Any, list[tuple[Any, str]]] = {}
        for i, a in enumerate(data["annotations"]):
            require(a, ("image_id", "caption"), path, f"annotations[{i}]")
            caps.setdefault(a["image_id"], []).append((a.get("id", i), a["caption"]))
        for i, im in enumerate(data["images"]):
            require(im, ("id", "file_name"), path, f"images[{i}]")
            names = tuple(n for n in (im.get("file_path"), im["file_name"]) if n)
            items.append((im["id"], names, caps.get(im["id"], [])))
        n_rows = len(data["images"])
    elif isinstance(data, list):
        for i, r in enumerate(data):
            require(r, ("image", "caption"), path, i)
            captions = [r["caption"]] if isinstance(r["caption"], str) else list(r["caption"])
            items.append((r["image"], (r["image"],), [(f"{i}:{j}", c) for j, c in enumerate(captions)]))
        n_rows = len(data)
    else:
        raise AnnotationError(f"{path}: expected a Karpathy list [{{'image', 'caption'}}] or a COCO captions file")
    empty = [str(it[0]) for it in items if not it[2]]
    if empty:
        raise AnnotationError(f"{path}: {len(empty)} image(s) have no caption (first: {empty[0]}); retrieval needs at least one")
    return items, file_record(path, n_rows, captions=sum(len(it[2]) for it in items))


def _ranks(queries: torch.Tensor, candidates: torch.Tensor, gt: Sequence[Sequence[int]], chunk: int = 512) -> torch.Tensor:
    """Per query: the number of non-ground-truth candidates scoring >= its best ground truth."""
    out = torch.empty(queries.shape[0], dtype=torch.long)
    for a in range(0, queries.shape[0], chunk):
        b = min(a + chunk, queries.shape[0])
        s = queries[a:b] @ candidates.T
        mask = torch.zeros_like(s, dtype=torch.bool)
        for r, idx in enumerate(gt[a:b]):
            mask[r, list(idx)] = True
        best = s.masked_fill(~mask, float("-inf")).max(dim=1).values
        out[a:b] = ((s >= best[:, None]) & ~mask).sum(dim=1)
    return out


def ranks(img: torch.Tensor, txt: torch.Tensor, gt_texts: Sequence[Sequence[int]],
          query_text: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(i2t rank per image, t2i rank per caption query) over distinct texts ``txt``.

    ``gt_texts[i]``: distinct-text indices of image i; ``query_text[q]``: the distinct text of caption query q,
    whose ground truth is every image that has that text.
    """
    images_of_text: dict[int, list[int]] = {}
    for i, idx in enumerate(gt_texts):
        for t in idx:
            images_of_text.setdefault(t, []).append(i)
    qt = torch.tensor(list(query_text), dtype=torch.long)
    return _ranks(img, txt, gt_texts), _ranks(txt[qt], img, [images_of_text[t] for t in query_text])


@dataclass
class RankedItems:
    """Images of retrieval items resolved, encoded with their distinct captions, and ranked both ways."""
    kept: list[Any]  # the items whose image was found
    queries: list[tuple[Any, str]]  # (caption id, caption) of every caption of the kept items, in order
    texts: list[str]  # the distinct captions (text-side gallery)
    i2t: torch.Tensor  # rank of each kept image's best ground-truth caption
    t2i: torch.Tensor  # rank of each query's best ground-truth image
    found: dict[str, Any]
    missing: list[str]
    describe: dict[str, Any]

    def images_record(self) -> dict[str, Any]:
        return {"distinct": len(self.found), "missing": len(self.missing), "missing_examples": self.missing[:5],
                **self.describe}


def rank_items(encoder: Any, items: Sequence[tuple[str, Any, Sequence[tuple[Any, str]]]], annotations: Any,
               images: Any, skip_missing: bool, benchmark: str) -> RankedItems:
    """Shared by every retrieval-style benchmark: ``items`` are (image key, image reference, [(caption id,
    caption), ...]); ground truth is an image's distinct caption strings and, for a caption, every image
    having that exact text (:func:`ranks`)."""
    resolver = make_resolver(images)
    if resolver is None:
        raise InputError(f"{benchmark}: no image folder given; pass --images DIR")
    found, missing = resolve_images(resolver, {it[0]: it[1] for it in items}, skip_missing, benchmark)
    kept = [it for it in items if it[0] in found]
    if not kept:
        raise AnnotationError(f"{annotations}: no image of the file was found; nothing to retrieve")
    texts = unique(c for it in kept for _, c in it[2])
    t_index = {t: i for i, t in enumerate(texts)}
    img = encoder.encode_images([found[it[0]] for it in kept])
    txt = encoder.encode_texts(texts)
    queries = [(cid, c) for it in kept for cid, c in it[2]]
    i2t, t2i = ranks(img, txt, [sorted({t_index[c] for _, c in it[2]}) for it in kept],
                     [t_index[c] for _, c in queries])
    return RankedItems(kept, queries, texts, i2t, t2i, found, missing, resolver.describe())


@register_benchmark("retrieval", blind=False, summary="Image-text retrieval: R@1/5/10 both directions, several captions per image")
def evaluate_retrieval(
    encoder: Any, annotations: str | Path, images: Any = None, skip_missing: bool = False, blind: bool = False,
    ks: Any = KS, benchmark: str = "retrieval",
) -> BenchResult:
    """Recall@k for image-to-text and text-to-image retrieval."""
    ks = tuple(int(k) for k in (ks.split(",") if isinstance(ks, str) else ks))
    cost = Cost(encoder)
    items, rec = load_retrieval(annotations)
    r = rank_items(encoder, items, annotations, images, skip_missing, benchmark)
    kept, queries, i2t, t2i = r.kept, r.queries, r.i2t, r.t2i
    metrics = {f"i2t_r{k}": int((i2t < k).sum()) / len(i2t) for k in ks}
    metrics.update({f"t2i_r{k}": int((t2i < k).sum()) / len(t2i) for k in ks})
    metrics["mean"] = sum(metrics.values()) / len(metrics)
    rows = [per_row(benchmark, "i2t", it[0], {"rank": int(r)}, int(r) < 1) for it, r in zip(kept, i2t)]
    rows += [per_row(benchmark, "t2i", cid, {"rank": int(r)}, int(r) < 1) for (cid, _), r in zip(queries, t2i)]
    return BenchResult(
        benchmark=benchmark,
        protocol=protocol(
            "hit@k iff some ground-truth item ranks in the top k",
            {"i2t_r<k> / t2i_r<k>": "fraction of image / caption queries with a hit at k", "mean": "mean of the recalls"},
            False,
            tie_rule_retrieval="rank = number of distractors scoring >= the best ground truth (ties rank against the query)",
            ground_truth="i2t: the image's distinct caption strings; t2i: every image having the query's exact text",
        ),
        subsets={"i2t": {"queries": len(kept)}, "t2i": {"queries": len(queries)}},
        aggregates=metrics,
        headline=dict(metrics),
        annotations=[rec],
        images=r.images_record(),
        extra={
            "cost": cost.record(), "skipped_missing": len(items) - len(kept),
            "repeated_captions": len(queries) - len(r.texts),
        },
        rows=rows,
    )
