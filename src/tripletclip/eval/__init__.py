"""Evaluation: compositional benchmarks next to retrieval and zero-shot, one protocol record per number.

``from tripletclip.eval import evaluate, EVALUATORS, Encoder, headline_scalars``. Benchmarks register
themselves by name (see ``EVALUATORS.names()``): sugarcrepe, sugarcrepe_pp, valse, aro_coco_order,
aro_flickr_order, aro_vg_relation, aro_vg_attribution, winoground, tripletdata_wino, retrieval, zeroshot, world,
vl_checklist, cola, crepe, negbench_mcq, negbench_retrieval; readers of the official formats of whatsup,
svo_probes, spec, bla (choice_formats) and eqben, colorswap, vismin, bivlc, mmvp_vlm (group_formats).
Protocols and their deliberate deviations are in each module's docstring and in docs/methods.md section 4; each
benchmark's source, licence, official code and what our numbers match in docs/benchmarks.md. ``eval.suite`` runs
the compositionality suite (one table, several models).
"""
from tripletclip.eval import (  # noqa: F401  (imported to register the benchmarks)
    aro_order,
    aro_vg,
    choice_formats,
    cola,
    crepe,
    group_formats,
    negbench,
    retrieval,
    sugarcrepe,
    sugarcrepe_pp,
    tripletdata_wino,
    valse,
    vl_checklist,
    winoground,
    world,
    zeroshot,
)
from tripletclip.eval.api import evaluate, load_encoder, run_eval
from tripletclip.eval.base import EVALUATORS, register_benchmark
from tripletclip.eval.encoder import Encoder, ImageCrop
from tripletclip.eval.images import MissingImagesError
from tripletclip.eval.records import AnnotationError, headline_scalars

__all__ = [
    "EVALUATORS",
    "AnnotationError",
    "Encoder",
    "ImageCrop",
    "MissingImagesError",
    "evaluate",
    "headline_scalars",
    "load_encoder",
    "register_benchmark",
    "run_eval",
]
