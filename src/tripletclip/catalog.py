"""What ``tripletclip eval --list`` and ``tripletclip models list`` print, answered without importing torch.

The benchmark registry and the model factory import torch and open_clip (8-9 s before the first line). The
listings read the same facts where they are defined instead: each evaluator's ``@register_benchmark(...)``
line and signature, parsed with ``ast`` from ``tripletclip/eval/*.py`` (names, summaries, options, defaults);
our model configs in ``models/configs/*.json``; open_clip's JSON configs, found by path without importing it.
Only the words a reader needs live here: what each option means and which files each benchmark reads.
``tests/test_startup.py`` checks every listed fact against the live registries.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

PACKAGE = Path(__file__).resolve().parent
EVAL_DIR = PACKAGE / "eval"
MODEL_CONFIG_DIR = PACKAGE / "models" / "configs"
INTERNAL_OPTIONS = ("encoder", "benchmark")  # not user options: the model wrapper, the result name of composites
REQUIRED = object()

# ------------------------------------------------------------------------------------------------ benchmarks

NEEDS = {
    "sugarcrepe": "--annotations: folder of SugarCrepe's 7 JSON files (add_att.json ... swap_obj.json); "
                  "--images: COCO val2017",
    "sugarcrepe_pp": "--annotations: folder of SugarCrepe++'s 5 JSON files (replace_*, swap_*); --images: COCO val2017",
    "valse": "--annotations: folder of VALSE's instrument JSON files; --images: every source root (Visual7W, "
             "COCO 2017 and 2014, SWiG, VisDial), --images repeated",
    "aro_vg_relation": "--annotations: visual_genome_relation.json; --images: the folder of its image_path files "
                       "(Visual Genome)",
    "aro_vg_attribution": "--annotations: visual_genome_attribution.json; --images: the folder of its image_path "
                          "files (Visual Genome)",
    "aro_coco_order": "--annotations: coco_karpathy_test.json; --images: the COCO folder (2014 or 2017 names)",
    "aro_flickr_order": "--annotations: flickr30k_test.json; --images: the Flickr30k image folder",
    "retrieval": "--annotations: a Karpathy-style list [{image, caption: [...]}] or a COCO captions file; "
                 "--images: its image folder",
    "winoground": "--annotations: Winoground's examples.jsonl (or its folder); --images: its images folder",
    "tripletdata_wino": "--annotations: TripletData shards with negative images (folder, file or {000..009} "
                        "pattern); no --images",
    "world": "--annotations: DIR/bench of `tripletclip world build --out DIR` (images inside); no --images",
    "zeroshot": "--images: an ImageFolder or a CLIP_benchmark webdataset folder; --annotations (optional): folder "
                "with en_classnames.json and en_zeroshot_classification_templates.json",
}

OPTION_HELP = {
    "annotations": "annotation file or folder (--annotations)",
    "images": "image folder(s), searched in order (--images)",
    "skip_missing": "skip rows whose image is missing, counted in the result, instead of failing (--skip-missing)",
    "blind": "text-only baseline: every image replaced by an image-free query (--blind)",
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
}
OPTION_HELP_BY_BENCHMARK = {
    ("zeroshot", "split"): "webdataset split folder under --images",
    ("zeroshot", "annotations"): "folder with CLIP_benchmark's en_classnames.json and templates JSON (optional)",
}


@dataclass(frozen=True)
class OptionInfo:
    name: str
    default: Any  # REQUIRED when the option has no default
    help: str

    def default_text(self) -> str:
        if self.default is REQUIRED:
            return "required"
        if isinstance(self.default, (tuple, list)):
            return ",".join(str(v) for v in self.default)
        return "unset" if self.default is None else str(self.default)


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    summary: str
    blind: bool
    needs: str
    options: list[OptionInfo] = field(default_factory=list)


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    """The value of a default: a literal, or a module-level constant holding one."""
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _registration(fn: ast.FunctionDef) -> Optional[dict[str, Any]]:
    """The arguments of a ``@register_benchmark(name, blind=..., summary=...)`` decorator, if ``fn`` has one."""
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "register_benchmark":
            kw = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
            summary = kw.get("summary") or (ast.get_docstring(fn) or "").strip().splitlines()[0]
            return {"name": ast.literal_eval(deco.args[0]), "blind": kw.get("blind", True), "summary": summary}
    return None


def _options(name: str, fn: ast.FunctionDef, constants: dict[str, Any]) -> list[OptionInfo]:
    args = fn.args.args + fn.args.kwonlyargs
    defaults = [REQUIRED] * (len(fn.args.args) - len(fn.args.defaults)) + [_literal(d, constants) for d in fn.args.defaults]
    defaults += [REQUIRED if d is None else _literal(d, constants) for d in fn.args.kw_defaults]
    return [OptionInfo(a.arg, d, OPTION_HELP_BY_BENCHMARK.get((name, a.arg), OPTION_HELP.get(a.arg, "")))
            for a, d in zip(args, defaults) if a.arg not in INTERNAL_OPTIONS]


def benchmark_catalog() -> list[BenchmarkInfo]:
    """Every registered benchmark, sorted by name, read from the evaluator modules' source."""
    found = []
    for path in sorted(EVAL_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree)
        for node in tree.body:
            reg = _registration(node) if isinstance(node, ast.FunctionDef) else None
            if reg:
                found.append(BenchmarkInfo(reg["name"], reg["summary"], reg["blind"], NEEDS.get(reg["name"], ""),
                                           _options(reg["name"], node, constants)))
    return sorted(found, key=lambda b: b.name)


COMMON_OPTIONS = ("annotations", "images", "skip_missing", "blind")


def format_benchmarks() -> str:
    """The text of ``tripletclip eval --list``: per benchmark its summary, the files it reads, and its own
    options with default and meaning (the four common ones are described once, at the top)."""
    lines = ["Every benchmark reads --annotations and --images (as listed under 'needs'); --skip-missing skips rows",
             "whose image is missing (counted); --blind scores captions with the text tower only, where marked.",
             "Options: --option BENCHMARK.KEY=VALUE (or KEY=VALUE for every benchmark given).", ""]
    for b in benchmark_catalog():
        lines.append(f"{b.name}: {b.summary}")
        lines.append(f"    needs: {b.needs or 'see the module docstring'}")
        lines.append(f"    --blind: {'yes' if b.blind else 'no (every score needs an image)'}")
        own = [o for o in b.options if o.name not in COMMON_OPTIONS or (b.name, o.name) in OPTION_HELP_BY_BENCHMARK]
        if own:
            width = max(len(o.name) for o in own)
            dwidth = max(len(o.default_text()) for o in own) + len("default ")
            lines.append("    options:")
            for o in own:
                lead = f"      {o.name:<{width}}  {'default ' + o.default_text():<{dwidth}}  "
                lines += textwrap.wrap(o.help, 110, initial_indent=lead, subsequent_indent=" " * len(lead))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ models

MODEL_PURPOSE = {
    "test-vit-tiny": "tests: a real ViT CLIP that runs in milliseconds on CPU",
    "world-resnet-tiny": "embedded world: a small CNN image tower",
    "world-vit-tiny": "embedded world: a tiny ViT image tower",
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
