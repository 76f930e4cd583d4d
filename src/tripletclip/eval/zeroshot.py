"""Zero-shot classification with CLIP_benchmark's class names and prompt templates (forgetting monitor).

Protocol of CLIP_benchmark's ``zeroshot_classification`` (after open_clip's ``zero_shot.py``; CLIP, arXiv
2103.00020): each class weight is the mean of the L2-normalised embeddings of its prompts
``template.format(c=classname)``, renormalised; an image's prediction is the class of highest cosine. Reported:
top-1 and top-5 accuracy and the mean per-class recall (balanced accuracy over the classes present).
Tie rule, made explicit: an image's rank is the number of other classes scoring at least as high as its true
class, so a tie counts against it (CLIP_benchmark's ``topk`` breaks ties by index).

Data, in either layout:
- ImageFolder: ``<images>/<class folder>/**/<image>``; folders sorted by name (numerically when every name is
  an integer), folder i = class i, as torchvision's ImageFolder and CLIP_benchmark's class lists assume;
- CLIP_benchmark webdataset: ``<images>/<split>/*.tar`` (or ``<images>/*.tar``) with ``<key>.{webp,png,jpg}``
  and ``<key>.cls``; ``classnames.txt`` and ``zeroshot_classification_templates.txt`` in ``<images>``.
Class names: option ``classnames`` (file), else the webdataset's ``classnames.txt``, else ``dataset``'s entry in
``en_classnames.json`` under ``annotations``, else the ImageFolder's folder names ('_' read as a space).
Templates: option ``templates`` (file), else ``zeroshot_classification_templates.txt``, else ``dataset``'s entry
in ``en_zeroshot_classification_templates.json`` under ``annotations``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

from tripletclip.data.decode import Blob
from tripletclip.data.shard_reader import scan_shard
from tripletclip.errors import InputError
from tripletclip.eval.base import register_benchmark
from tripletclip.eval.records import AnnotationError, BenchResult, Cost, per_row, protocol
from tripletclip.utils.files import sha256_file

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CHUNK = 2048


def _read_list(path: Path) -> list[str]:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise AnnotationError(f"{path}: expected a JSON list of strings")
        return data
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _from_json(annotations: Optional[Path], filename: str, dataset: Optional[str], what: str) -> Optional[tuple[list[str], dict]]:
    if annotations is None or dataset is None:
        return None
    path = annotations / filename if annotations.is_dir() else annotations
    if not path.is_file() or path.name != filename:
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    if dataset not in table:
        raise AnnotationError(f"{path}: no {what} for dataset '{dataset}' (known: {', '.join(sorted(table))})")
    return list(table[dataset]), {"path": str(path), "sha256": sha256_file(path), "key": dataset, "rows": len(table[dataset])}


def _wds_shards(root: Path, split: str) -> list[Path]:
    for d in (root / split, root):
        tars = sorted(d.glob("*.tar")) if d.is_dir() else []
        if tars:
            return tars
    return []


def _iter_wds(shards: list[Path]) -> Iterator[tuple[str, bytes, int]]:
    """(key, image bytes, label) of every sample of CLIP_benchmark's webdataset shards."""
    for shard in shards:
        for key, members in scan_shard(str(shard)):
            ext = next((e for e in ("webp", "png", "jpg", "jpeg") if e in members), None)
            if ext is None or "cls" not in members:
                raise AnnotationError(f"{shard}: sample '{key}' lacks an image or a .cls label (CLIP_benchmark webdataset layout)")
            label = Blob(str(shard), *members["cls"]).read().decode().strip()
            yield key, Blob(str(shard), *members[ext]).read(), int(label)


def _image_folder(root: Path, max_per_class: Optional[int]) -> tuple[list[str], list[tuple[str, Path, int]]]:
    dirs = [d for d in root.iterdir() if d.is_dir()]
    if not dirs:
        raise AnnotationError(f"{root}: no class folders (ImageFolder layout) and no .tar shards (webdataset layout)")
    numeric = all(d.name.isdigit() for d in dirs)
    dirs.sort(key=(lambda d: int(d.name)) if numeric else (lambda d: d.name))
    samples = []
    for label, d in enumerate(dirs):
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        for p in files[:max_per_class] if max_per_class else files:
            samples.append((str(p.relative_to(root)), p, label))
    return [d.name for d in dirs], samples


def class_weights(encoder: Any, classnames: list[str], templates: list[str]) -> torch.Tensor:
    """[C, D]: mean of the normalised prompt embeddings of each class, renormalised."""
    prompts = [t.format(c=c) for c in classnames for t in templates]
    emb = encoder.encode_texts(prompts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def _named_list(option: Optional[str], shard_file: Optional[Path], annotations: Optional[Path], json_name: str,
                dataset: Optional[str], what: str, records: list[dict]) -> Optional[list[str]]:
    """Class names or templates: the option's file, else the webdataset's file, else ``dataset``'s entry of
    the JSON table under ``annotations``; the file used is added to ``records``."""
    for path in (Path(option) if option else None, shard_file if shard_file and shard_file.is_file() else None):
        if path is not None:
            items = _read_list(path)
            records.append({"path": str(path), "sha256": sha256_file(path), "rows": len(items)})
            return items
    hit = _from_json(annotations, json_name, dataset, what)
    if hit is None:
        return None
    records.append(hit[1])
    return hit[0]


def _encode_wds(encoder: Any, shards: list[Path], n_classes: int, max_per_class: Optional[int]
                ) -> tuple[list[torch.Tensor], list[int], list[Any]]:
    feats, labels, ids = [], [], []
    per_class: dict[int, int] = {}
    buf: list[tuple[str, bytes, int]] = []
    for key, data, y in _iter_wds(shards):
        if not 0 <= y < n_classes:
            raise AnnotationError(f"sample '{key}': label {y} outside the {n_classes} classes")
        if max_per_class and per_class.get(y, 0) >= int(max_per_class):
            continue
        per_class[y] = per_class.get(y, 0) + 1
        buf.append((key, data, y))
        if len(buf) >= CHUNK:
            feats.append(encoder.encode_images([b for _, b, _ in buf]))
            buf.clear()
        labels.append(y)
        ids.append(key)
    if buf:
        feats.append(encoder.encode_images([b for _, b, _ in buf]))
    return feats, labels, ids


def _encode_folder(encoder: Any, samples: list[tuple[str, Path, int]]) -> tuple[list[torch.Tensor], list[int], list[Any]]:
    feats = [encoder.encode_images([p for _, p, _ in samples[a : a + CHUNK]]) for a in range(0, len(samples), CHUNK)]
    return feats, [y for _, _, y in samples], [i for i, _, _ in samples]


def _ranks(img: torch.Tensor, weights: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank of the true class per image: classes scoring >= it, ties counting against; predicted class)."""
    logits = img @ weights.T
    true = logits.gather(1, y[:, None])
    return (logits >= true).sum(dim=1) - 1, logits.argmax(dim=1)


@register_benchmark("zeroshot", blind=False, summary="Zero-shot classification (ImageFolder or webdataset), acc1/acc5/mean per-class recall")
def evaluate_zeroshot(
    encoder: Any, annotations: Any = None, images: Any = None, dataset: Optional[str] = None,
    classnames: Optional[str] = None, templates: Optional[str] = None, split: str = "test",
    max_per_class: Optional[int] = None, skip_missing: bool = False, blind: bool = False,
) -> BenchResult:
    """Top-1 / top-5 accuracy and mean per-class recall with prompt-ensembled class weights."""
    bench = "zeroshot"
    cost = Cost(encoder)
    if images is None:
        raise InputError(f"{bench}: no image folder given; pass --images with an ImageFolder or webdataset root")
    root = Path(images[0] if isinstance(images, (list, tuple)) else images)
    ann = Path(annotations) if annotations else None
    records: list[dict] = []
    shards = _wds_shards(root, split) if root.is_dir() else []
    folder_names, samples = ([], []) if shards else _image_folder(root, int(max_per_class) if max_per_class else None)

    names = _named_list(classnames, root / "classnames.txt" if shards else None, ann, "en_classnames.json",
                        dataset, "class names", records)
    if names is None and folder_names:
        names = [n.replace("_", " ") for n in folder_names]
    if not names:
        raise AnnotationError(f"{root}: no class names; pass option classnames=FILE or dataset=NAME with --annotations holding en_classnames.json")
    if folder_names and len(names) != len(folder_names):
        raise AnnotationError(f"{root}: {len(folder_names)} class folders but {len(names)} class names; they must match one to one")
    tmpl = _named_list(templates, root / "zeroshot_classification_templates.txt" if shards else None, ann,
                       "en_zeroshot_classification_templates.json", dataset, "templates", records)
    if not tmpl or any("{c}" not in t for t in tmpl):
        raise AnnotationError(f"{bench}: no usable templates (each needs '{{c}}'); pass option templates=FILE or dataset=NAME with --annotations")

    weights = class_weights(encoder, names, tmpl)
    if shards:
        feats, labels, ids = _encode_wds(encoder, shards, len(names), max_per_class)
        records.extend({"path": str(s), "sha256": sha256_file(s)} for s in shards)
    else:
        feats, labels, ids = _encode_folder(encoder, samples)
    if not labels:
        raise AnnotationError(f"{root}: no image found")
    y = torch.tensor(labels)
    rank, pred = _ranks(torch.cat(feats), weights, y)
    recall = {names[c]: int((rank[y == c] < 1).sum()) / int((y == c).sum()) for c in sorted(set(labels))}
    metrics = {
        "acc1": int((rank < 1).sum()) / len(rank),
        "acc5": int((rank < 5).sum()) / len(rank),
        "mean_per_class_recall": sum(recall.values()) / len(recall),
    }
    rows = [per_row(bench, "all", i, {"label": int(t), "pred": int(p), "rank": int(r)}, int(r) == 0)
            for i, t, p, r in zip(ids, y, pred, rank)]
    return BenchResult(
        benchmark=bench,
        protocol=protocol(
            "prediction = class of highest cosine to the prompt-ensembled class weight",
            {"acc1 / acc5": "fraction of images whose true class ranks in the top 1 / 5",
             "mean_per_class_recall": "unweighted mean over the classes present of their top-1 recall"},
            False,
            tie_rule_classification="rank = number of other classes scoring >= the true class (ties count against)",
            class_weight="mean of L2-normalised template embeddings, renormalised",
        ),
        subsets={"per_class_recall": recall},
        aggregates=metrics,
        headline=dict(metrics),
        annotations=records,
        images={"layout": "webdataset" if shards else "imagefolder", "root": str(root), "count": len(labels),
                "classes": len(names), "templates": len(tmpl), "max_per_class": max_per_class},
        extra={"cost": cost.record(), "dataset": dataset},
        rows=rows,
    )
