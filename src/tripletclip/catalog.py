"""What ``tripletclip eval --list`` and ``tripletclip models list`` print, answered without importing torch.

The benchmark registry and the model factory import torch and open_clip (8-9 s before the first line), so the
listings read a table instead: for each benchmark its summary, whether ``--blind`` applies, the files it reads
and its own options with default and meaning (:data:`BENCHMARKS`); model names come from our JSON configs and
open_clip's, found by path without importing open_clip. ``tests/test_listings.py`` checks the table against the
live registry (names, summaries, options, defaults): a new benchmark fails that test until it is listed here.
"""
from __future__ import annotations

import importlib.util
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "models" / "configs"
COMMON_OPTIONS = ("annotations", "images", "skip_missing", "blind")  # every benchmark's; described once

# ------------------------------------------------------------------------------------------------ benchmarks

OPTION_HELP = {
    "seed": "seed of the random word-order scrambles",
    "max_words": "captions are cut to this many words after normalisation (ARO's pre_caption)",
    "tagger": "part-of-speech tagger for the scrambles: auto (spaCy if installed, else the lexicon tagger), "
              "spacy (required) or fallback (the lexicon tagger)",
    "spacy_model": "spaCy model used when the tagger is spaCy",
    "ks": "the k of recall@k, comma-separated",
    "subsets": "only these subset files, comma-separated (unset: every file present)",
    "split": "only rows whose 'split' field equals this (files without the field: leave unset)",
    "instruments": "only these VALSE instruments (file names without .json), comma-separated",
    "valid_only": "keep only rows two of three annotators validated (VALSE's protocol)",
    "limit": "score at most this many groups",
    "skip_types": "negative edit types left out (add edits keep y true for x', so they are no Winoground group)",
    "splits": "world benchmark splits to score, comma-separated (unset: every split present, seen and heldout)",
    "dataset": "dataset name whose class names and templates are looked up under --annotations",
    "classnames": "file of class names, one per line (overrides the dataset's)",
    "templates": "file of prompt templates with {c}, one per line (overrides the dataset's)",
    "max_per_class": "score at most this many images per class",
    "rule": "first: POS[0] vs NEG[0] (the official ITC rule); max: max over all POS vs max over all NEG",
    "max_rows": "score only the first N rows of each file (the official sample config scores 1,000)",
    "allow_missing_files": "score the files present when the corpus names missing ones (recorded); else an error",
    "complexities": "only these complexities (4-12), comma-separated",
}
OPTION_HELP_BY_BENCHMARK = {
    ("zeroshot", "split"): "webdataset split folder under --images",
    ("vl_checklist", "types"): "only these types or YAML paths under corpus/v1, comma-separated (e.g. Attribute/color,"
                               "Object/Location)",
    ("crepe", "types"): "only these hard-negative types (atom, negate, swap), comma-separated",
}
_ARO_ORDER = {"seed": 1, "max_words": 30, "tagger": "auto", "spacy_model": "en_core_web_sm"}


@dataclass(frozen=True)
class BenchmarkInfo:
    """One benchmark as ``eval --list`` shows it; ``options``: its own options (not the common four) and their
    defaults (None: unset); ``annotations_required``: False where --annotations is optional."""

    name: str
    summary: str
    blind: bool
    needs: str
    options: dict[str, Any]
    annotations_required: bool = True

    def option_help(self, option: str) -> str:
        return OPTION_HELP_BY_BENCHMARK.get((self.name, option), OPTION_HELP.get(option, ""))


BENCHMARKS = tuple(sorted((
    BenchmarkInfo("bivlc", "BiVLC: I2T / T2I / group scores per type", False,
                  "--annotations: BiVLC test file (hub parquet, or JSON/CSV with image paths); --images: its image folder when paths", {}),
    BenchmarkInfo("bla", "BLA: two true vs two false captions per image, per phenomenon", True,
                  "--annotations: folder of BLA's *_captions.json (or one); --images: BLA's image folder", {}),
    BenchmarkInfo("colorswap", "ColorSwap: text / image / group scores of colour-swapped pairs", False,
                  "--annotations: ColorSwap data/test.json (or the hub parquet); --images: the folder holding images/", {}),
    BenchmarkInfo("eqben", "EqBen: Winoground-style text / image / group scores per subset", False,
                  "--annotations: EqBen's Winoground-style annotation (JSON/JSONL: image0, image1, caption0, caption1); --images: EqBen image root", {}),
    BenchmarkInfo("mmvp_vlm", "MMVP-VLM: a pair is right when both statements pick their image", False,
                  "--annotations: MMVP_VLM Questions.csv (or its folder); --images: the 'MLLM_VLM Images' folder (<type>/<id>.jpg)", {}),
    BenchmarkInfo("spec", "SPEC: I2T and T2I accuracy per subset, averaged over subsets", False,
                  "--annotations: SPEC data folder (<subset>/image2text.json, text2image.json); --images: optional, default the subsets", {}),
    BenchmarkInfo("svo_probes", "SVO-Probes: the sentence picks its image over the negative, per type", False,
                  "--annotations: svo_probes.csv; --images: images saved as <image id>.jpg", {}),
    BenchmarkInfo("vismin", "VisMin: text / image / group scores per category", False,
                  "--annotations: vismin-bench test file (hub parquet, or JSON/CSV with image paths); --images: when paths", {}),
    BenchmarkInfo("whatsup", "What'sUp: pick the true spatial caption, accuracy per file", True,
                  "--annotations: What'sUp JSON file(s) (controlled_*, coco_qa_*, vg_qa_*) or their folder; --images: the image folders", {}),
    BenchmarkInfo("aro_coco_order", "ARO COCO-Order: caption vs its 4 word-order scrambles, precision@1", True,
                  "--annotations: coco_karpathy_test.json; --images: the COCO folder (2014 or 2017 names)", _ARO_ORDER),
    BenchmarkInfo("aro_flickr_order", "ARO Flickr30k-Order: caption vs its 4 word-order scrambles, precision@1", True,
                  "--annotations: flickr30k_test.json; --images: the Flickr30k image folder", _ARO_ORDER),
    BenchmarkInfo("aro_vg_attribution", "ARO VG-Attribution: true vs swapped attributes on the box crop", True,
                  "--annotations: visual_genome_attribution.json; --images: the folder of its image_path files "
                  "(Visual Genome)", {}),
    BenchmarkInfo("aro_vg_relation", "ARO VG-Relation: true vs swapped relation on the box crop, macro over relations",
                  True, "--annotations: visual_genome_relation.json; --images: the folder of its image_path files "
                  "(Visual Genome)", {}),
    BenchmarkInfo("cola", "COLA multi-object: a pair is right when each caption picks its own image", False,
                  "--annotations: COLA_multiobjects_matching_benchmark.json (or its folder); --images: the Visual "
                  "Genome images (<id>.jpg, VG_100K/ and VG_100K_2/ as sub-folders)", {}),
    BenchmarkInfo("crepe", "CREPE productivity: image-to-text R@1 of the caption among its hard negatives, on the crop",
                  True, "--annotations: CREPE's prod_hard_negatives folder (atom/, negate/, swap/ CSVs); --images: "
                  "the Visual Genome images", {"types": None, "complexities": None}),
    BenchmarkInfo("negbench_mcq", "NegBench multiple choice: argmax of 4 captions, per template type", True,
                  "--annotations: a NegBench *_mcq_*.csv or their folder; --images: COCO val2017 and/or VOC2007 "
                  "JPEGImages, --images repeated", {}),
    BenchmarkInfo("negbench_retrieval", "NegBench (negated) retrieval: R@k both directions", False,
                  "--annotations: a NegBench retrieval CSV (e.g. COCO_val_negated_retrieval_*.csv); --images: COCO "
                  "val2017", {"ks": (1, 5)}),
    BenchmarkInfo("retrieval", "Image-text retrieval: R@1/5/10 both directions, several captions per image", False,
                  "--annotations: a Karpathy-style list [{image, caption: [...]}] or a COCO captions file; "
                  "--images: its image folder", {"ks": (1, 5, 10)}),
    BenchmarkInfo("sugarcrepe", "SugarCrepe: 7 hard-negative subsets, s(I,pos) > s(I,neg)", True,
                  "--annotations: folder of SugarCrepe's 7 JSON files (add_att.json ... swap_obj.json); "
                  "--images: COCO val2017", {"subsets": None, "split": None}),
    BenchmarkInfo("sugarcrepe_pp", "SugarCrepe++: ITT (image-to-text) and TOT (text-only) with two positives", True,
                  "--annotations: folder of SugarCrepe++'s 5 JSON files (replace_*, swap_*); --images: COCO val2017",
                  {"subsets": None}),
    BenchmarkInfo("tripletdata_wino", "Winoground-style text/image/group scores on TripletData shards", False,
                  "--annotations: TripletData shards with negative images (folder, file or {000..009} pattern); "
                  "no --images", {"limit": None, "skip_types": ("add_obj", "add_att")}),
    BenchmarkInfo("valse", "VALSE: caption vs foil on the valid rows, per instrument and phenomenon", True,
                  "--annotations: folder of VALSE's instrument JSON files; --images: every source root (Visual7W, "
                  "COCO 2017 and 2014, SWiG, VisDial), --images repeated", {"instruments": None, "valid_only": True}),
    BenchmarkInfo("vl_checklist", "VL-CheckList ITC: POS[0] vs NEG[0] per file, averaged per type", True,
                  "--annotations: the VL-CheckList folder (corpus/ and data/); --images: the folder holding vg/, "
                  "swig/ and hake/", {"types": None, "rule": "first", "max_rows": None, "allow_missing_files": False}),
    BenchmarkInfo("winoground", "Winoground: text / image / group scores from examples.jsonl", False,
                  "--annotations: Winoground's examples.jsonl (or its folder); --images: its images folder",
                  {"split": None}),
    BenchmarkInfo("world", "Embedded world: SugarCrepe + Winoground per split (seen/heldout) + retrieval", True,
                  "--annotations: DIR/bench of `tripletclip world build --out DIR` (images inside); no --images",
                  {"splits": None}),
    BenchmarkInfo("zeroshot", "Zero-shot classification (ImageFolder or webdataset), acc1/acc5/mean per-class recall",
                  False, "--images: an ImageFolder or a CLIP_benchmark webdataset folder; --annotations (optional): "
                  "folder with en_classnames.json and en_zeroshot_classification_templates.json",
                  {"dataset": None, "classnames": None, "templates": None, "split": "test", "max_per_class": None},
                  annotations_required=False),
), key=lambda b: b.name))


def _default_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return "unset" if value is None else str(value)


def format_benchmarks() -> str:
    """The text of ``tripletclip eval --list``: per benchmark its summary, the files it reads, and its own
    options with default and meaning (the four common ones are described once, at the top)."""
    lines = ["Every benchmark reads --annotations and --images (as listed under 'needs'); --skip-missing skips rows",
             "whose image is missing (counted); --blind scores captions with the text tower only, where marked.",
             "Options: --option BENCHMARK.KEY=VALUE (or KEY=VALUE for every benchmark given).", ""]
    for b in BENCHMARKS:
        lines += [f"{b.name}: {b.summary}", f"    needs: {b.needs}",
                  f"    --blind: {'yes' if b.blind else 'no (every score needs an image)'}"]
        if b.options:
            width = max(len(o) for o in b.options)
            dwidth = max(len(_default_text(v)) for v in b.options.values()) + len("default ")
            lines.append("    options:")
            for option, default in b.options.items():
                lead = f"      {option:<{width}}  {'default ' + _default_text(default):<{dwidth}}  "
                lines += textwrap.wrap(b.option_help(option), 110, initial_indent=lead,
                                       subsequent_indent=" " * len(lead))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ models

MODEL_PURPOSE = {
    "test-vit-tiny": "tests: a real ViT CLIP that runs in milliseconds on CPU",
    "world-cnn": "embedded world (the demo's model): a small CNN whose readout keeps positions",
    "world-resnet-tiny": "embedded world, earlier design: a small CNN with average pooling (loses positions)",
    "world-vit-tiny": "embedded world, earlier design: a tiny ViT (learns shapes too slowly)",
}


def _architecture(cfg: dict[str, Any]) -> str:
    """A short description of a model config: image tower, input size, text tower, embedding width."""
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if v.get("timm_model_name"):
        tower = f"timm {v['timm_model_name']} ({v.get('timm_pool') or 'no'} pool)"
    else:
        tower = f"ViT {v.get('layers', '?')} layers x {v.get('width', '?')}, patch {v.get('patch_size', '?')}"
    size = v.get("image_size", "?")
    size = size[0] if isinstance(size, (list, tuple)) else size
    text = f"text {t.get('layers', '?')} layers x {t.get('width', '?')}"
    return f"{tower}, {size} px; {text}; embed {cfg.get('embed_dim', '?')}"


def _natural(name: str) -> list[Any]:
    """open_clip's order of model names (numbers compare as numbers)."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


def _is_model_config(path: Path) -> bool:
    """open_clip registers a JSON file as a model only when it has these three keys."""
    cfg = json.loads(path.read_text())
    return all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg"))


def open_clip_config_dir() -> Optional[Path]:
    """open_clip's ``model_configs`` folder, located without importing open_clip (and so torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model_configs"
    return folder if folder.is_dir() else None


def model_catalog(prefix: str = "") -> tuple[list[tuple[str, str]], list[str]]:
    """(ours as (name, one-line description), open_clip's names), each filtered by ``prefix``."""
    ours = []
    for path in sorted(MODEL_CONFIG_DIR.glob("*.json")):
        if path.stem.startswith(prefix):
            arch = _architecture(json.loads(path.read_text()))
            purpose = MODEL_PURPOSE.get(path.stem)
            ours.append((path.stem, f"{purpose} [{arch}]" if purpose else arch))
    folder = open_clip_config_dir()
    theirs = sorted((p.stem for p in (folder.glob("*.json") if folder else []) if _is_model_config(p)), key=_natural)
    mine = {n for n, _ in ours}
    return ours, [n for n in theirs if n.startswith(prefix) and n not in mine]
