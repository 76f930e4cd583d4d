"""The words of a report: the verdict paragraph at its top and the short provenance summary.

The verdict states what the numbers show and nothing more: whether CLIP is in the bag-of-words regime
(perceives: replace-obj/att >= 90%; does not bind: swaps <= 65%; Yuksekgonul et al., ICLR 2023), and which
paired per-seed differences are real (same sign on every seed and larger than the benchmark's sampling error).
"""
from __future__ import annotations

import json
import statistics
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report.labels import (
    BAG_OF_WORDS_CEILING, BINDING, PAIRED_METRICS, PERCEPTION, PERCEPTION_TARGET, category_name, method_items,
    method_name, metric_name, seed_values,
)
from tripletclip.report.tables import fmt_diff


def _mean(entry: Mapping[str, Any], cats: Sequence[str]) -> Optional[float]:
    vals = [statistics.fmean(v) for c in cats if (v := seed_values(entry, "seen", c))]
    return statistics.fmean(vals) if len(vals) == len(cats) else None


def _regime(entry: Mapping[str, Any]) -> Optional[tuple[str, str, float]]:
    """(state, 'replace-obj X%, replace-att Y%', swap mean) with state 'blind', 'binds' or 'bag-of-words'."""
    per = {c: statistics.fmean(v) for c in PERCEPTION if (v := seed_values(entry, "seen", c))}
    swap = _mean(entry, BINDING)
    if len(per) < len(PERCEPTION) or swap is None:
        return None
    seen = ", ".join(f"{category_name(c)} {v:.1f}%" for c, v in per.items())
    state = "blind" if min(per.values()) < PERCEPTION_TARGET else "binds" if swap > BAG_OF_WORDS_CEILING else "bag-of-words"
    return state, seen, swap


def regime_sentence(name: str, entry: Mapping[str, Any]) -> str:
    """Where one model stands between perception and binding, in numbers (a clause, no final stop)."""
    found = _regime(entry)
    if found is None:
        return ""
    state, seen, swap = found
    if state == "blind":
        return (f"{name} does not yet perceive ({seen}; target {PERCEPTION_TARGET:.0f}%), so its swap mean of "
                f"{swap:.1f}% says little about binding")
    if state == "binds":
        return f"{name} perceives ({seen}) and binds beyond a bag of words (swap mean {swap:.1f}%)"
    return (f"{name} is in the bag-of-words regime: it perceives ({seen}) but does not bind (swap mean "
            f"{swap:.1f}%, ceiling {BAG_OF_WORDS_CEILING:.0f}%)")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _split_real(paired: Mapping[str, Any], against: str, metric: str, by_metric: bool = False) -> tuple[list, list]:
    """'name +diff' items whose difference is real / within noise (per method on ``metric``, or, with
    ``by_metric``, TripletCLIP on each shown metric)."""
    real: list[str] = []
    noise: list[str] = []
    block = (paired.get("tripletclip") or {}).get(against) or {}
    items = (((k, block.get(k)) for k in PAIRED_METRICS) if by_metric else
             ((m, (refs or {}).get(against, {}).get(metric)) for m, refs in paired.items() if isinstance(refs, Mapping)))
    for key, d in items:
        if isinstance(d, Mapping) and d.get("mean") is not None:
            name = metric_name(key) if by_metric else method_name(key)
            (real if d.get("real") else noise).append(f"{name} {fmt_diff(d['mean'])}")
    return real, noise


def _real_noise(real: list[str], noise: list[str], word: str = "for") -> str:
    return ", ".join(part for part in (f"real {word} {_and(real)}" if real else "",
                                       f"noise {word} {_and(noise)}" if noise else "") if part)


def sampling_error(paired: Mapping[str, Any], metric: str, against: str = "clip") -> Optional[float]:
    """The largest sampling error (points) recorded for ``metric`` against ``against`` (it depends on the
    metric's row count and on the accuracies compared)."""
    errors = [d["sampling_error"] for refs in paired.values() if isinstance(refs, Mapping)
              if isinstance(d := (refs.get(against) or {}).get(metric), Mapping) and d.get("sampling_error") is not None]
    return max(errors) if errors else None


def _paired_sentences(paired: Mapping[str, Any]) -> list[str]:
    """Gains over CLIP (swap mean, 7-category mean), TripletCLIP vs NegCLIP on the shown metrics, and what real
    means with the sampling errors of the two means."""
    out = []
    vs_clip = [f"on the {metric_name(k)}, {text}" for k in ("swap_mean", "mean")
               if (text := _real_noise(*_split_real(paired, "clip", k)))]
    if vs_clip:
        out.append("Paired against CLIP (points): " + "; ".join(vs_clip) + ".")
    head = _real_noise(*_split_real(paired, "negclip", "", by_metric=True), word="on")
    if head:
        out.append(f"TripletCLIP vs NegCLIP: {head}.")
    if out:
        errors = [f"±{e:.1f} for the {metric_name(k)}" for k in ("mean", "swap_mean")
                  if (e := sampling_error(paired, k)) is not None]
        out.append("Real: the same sign on every seed and beyond the metric's sampling error" +
                   (f" ({', '.join(errors)})." if errors else "."))
    return out


def verdict(results: Mapping[str, Any]) -> str:
    """One paragraph: regime, bag-of-words position of CLIP (and the base), paired differences."""
    methods = dict(method_items(results))
    parts = [{"finetune": "Fine-tuning regime: every objective fine-tunes the same pretrained CLIP base at equal "
                          "compute.",
              "scratch": "From-scratch regime: every objective trains the same model from random weights at equal "
                         "compute."}.get(str(results.get("regime")), "")]
    clip = _regime(methods["clip"]) if "clip" in methods else None
    base = _regime(results["base"]) if isinstance(results.get("base"), Mapping) else None
    clauses = [regime_sentence("CLIP", methods["clip"]) if clip else ""]
    if base and clip and base[0] == clip[0]:
        lead = {"blind": "nor does", "binds": "so does"}.get(base[0], "so is")
        clauses.append(f"{lead} the pretrained base ({base[1]}; swap mean {base[2]:.1f}%)")
    elif base:
        clauses.append(regime_sentence("the pretrained base", results["base"]))
    if any(clauses):
        text = "; ".join(c for c in clauses if c) + "."
        parts.append(text[0].upper() + text[1:])
    paired = results.get("paired")
    if isinstance(paired, Mapping) and paired:
        parts += _paired_sentences(paired)
    else:
        means = sorted(((e.get("mean"), m) for m, e in methods.items() if e.get("mean") is not None), reverse=True)
        if means:
            parts.append(f"Highest 7-category mean: {method_name(means[0][1])} {means[0][0]:.1f}%. No paired per-seed "
                         "differences were recorded, so whether any gap is real cannot be said; compare the ± spreads.")
    return " ".join(p for p in parts if p)


def _seeds(results: Mapping[str, Any]) -> list[str]:
    seeds: list[str] = []
    for _, e in method_items(results):
        seeds += [str(s) for s in (e.get("seeds") or e.get("per_seed") or []) if str(s) not in seeds]
    return seeds


def _code(meta: Mapping[str, Any]) -> str:
    cv = meta.get("code_version")
    if not isinstance(cv, Mapping):
        return ""
    commit = cv.get("git_commit")
    return f"tripletclip {cv.get('package', '?')}" + (f", git {commit[:10]}" if commit else "") + (
        " (uncommitted changes)" if cv.get("git_dirty") else "")


def _world_text(meta: Mapping[str, Any]) -> str:
    """The world spec in one line: list-valued fields as counts (5 shapes), the rest as key=value."""
    spec, world = meta.get("world_spec"), meta.get("world") or {}
    named = (meta.get("demo_config") or {}).get("world_spec")
    parts = [f"{named} spec"] if isinstance(named, str) else []
    if isinstance(spec, Mapping):
        parts += [f"{len(v)} {k}" if isinstance(v, (list, tuple)) else f"{k}={v}" for k, v in spec.items()
                  if v is not None]
    elif spec:
        parts.append(str(spec))
    text = ", ".join(parts)
    text += (f"; world seed {world['seed']}" if "seed" in world else "") + (
        f", {world['image_size']} px" if "image_size" in world else "")
    return text.lstrip("; ")


def _model_text(model: Mapping[str, Any], base: Any) -> str:
    if "name" not in model:
        return ""
    if isinstance(base, Mapping) and base.get("weights_sha256"):
        how = f" `{base['reproduce']}`" if base.get("reproduce") else ""
        return f"{model['name']}, fine-tuned from the pretrained base (weights {base['weights_sha256'][:12]}…;{how})"
    return str(model["name"]) + (f" from {model['pretrained']}" if model.get("pretrained") else "")


def provenance_rows(results: Mapping[str, Any], meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the human provenance summary; what ``meta`` does not hold is 'not recorded'.

    ``meta`` keys read: ``config`` or ``run_config`` (the shared training config), ``world_spec``, ``world``
    (the build summary), ``demo_config``, ``base``, ``code_version``, ``data_hash``, ``preset``, ``wall_time_s``.
    """
    cfg = meta.get("config") or meta.get("run_config") or {}
    train, model, optim = cfg.get("train") or {}, cfg.get("model") or {}, cfg.get("optim") or {}
    methods = [m for m, _ in method_items(results)]
    steps = train.get("steps", (results[methods[0]] if methods else {}).get("steps"))
    regime = results.get("regime")
    rows = [
        ("objectives", ", ".join(method_name(m) for m in methods) + " (each run sets loss.name; all else is shared)"),
        ("regime", {"finetune": "fine-tuning a pretrained CLIP base", "scratch": "from scratch"}.get(str(regime), regime)),
        ("steps x batch", f"{steps} x {train['batch_size']}" if steps and "batch_size" in train else None),
        ("model", _model_text(model, meta.get("base"))),
        ("optimiser", ", ".join(f"{k} {optim[k]}" for k in ("lr", "weight_decay", "warmup_steps") if k in optim)),
        ("seeds", ", ".join(_seeds(results))),
        ("world", _world_text(meta)),
        ("code version", _code(meta)),
        ("data hash", ((meta.get("world") or {}).get("train") or {}).get("dataset_hash") or meta.get("data_hash")),
        ("preset", meta.get("preset")),
    ]
    if meta.get("wall_time_s") is not None:
        rows.append(("wall time", f"{float(meta['wall_time_s']):.0f} s"))
    return [(k, str(v) if v else "not recorded") for k, v in rows]


def provenance_json(results: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The full provenance record, with the shared config's ``loss.name`` replaced by the per-run objectives
    (the base config's loss is not what any one comparison row used)."""
    doc = json.loads(json.dumps(meta, default=str))
    loss = (doc.get("config") or {}).get("loss")
    if isinstance(loss, dict) and "name" in loss:
        loss["name"] = "per run: " + ", ".join(m for m, _ in method_items(results))
    return json.dumps(doc, indent=1)
