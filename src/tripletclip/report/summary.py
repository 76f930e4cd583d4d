"""The words of a report: the opening paragraph, what to run next, and the short provenance summary.

The opening paragraph states what the numbers show and nothing more, for a reader new to the field: whether the
models are in the bag-of-words regime (Yuksekgonul et al., ICLR 2023; the thresholds are
:data:`~tripletclip.report.labels.PERCEIVES_AT` and :data:`~tripletclip.report.labels.BAG_OF_WORDS_CEILING`, one
definition shared with the README), which paired per-seed differences against CLIP are real (same sign on every
seed and larger than the benchmark's sampling error), and how many of the rest are noise, in one sentence.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report.claims import claims_sentence, split_block
from tripletclip.report.intervals import finite, mean
from tripletclip.report.labels import (
    BAG_OF_WORDS_CEILING, BINDING, PERCEIVES_AT, PERCEPTION, category_name, method_items, method_name, metric_name,
    seed_values,
)
from tripletclip.report.tables import fmt_diff, paired_metrics


def _mean(entry: Mapping[str, Any], cats: Sequence[str]) -> Optional[float]:
    vals = [mean(v) for c in cats if (v := seed_values(entry, "seen", c))]
    return math.fsum(vals) / len(vals) if vals and len(vals) == len(cats) else None


def _regime(entry: Mapping[str, Any]) -> Optional[tuple[str, str, float]]:
    """(state, 'replace-obj X%, replace-att Y%', swap mean) with state 'blind', 'binds' or 'bag-of-words'."""
    per = {c: mean(v) for c in PERCEPTION if (v := seed_values(entry, "seen", c))}
    swap = _mean(entry, BINDING)
    if len(per) < len(PERCEPTION) or swap is None:
        return None
    seen = ", ".join(f"{category_name(c)} {v:.1f}%" for c, v in per.items())
    state = "blind" if min(per.values()) < PERCEIVES_AT else "binds" if swap > BAG_OF_WORDS_CEILING else "bag-of-words"
    return state, seen, swap


def regime_sentence(name: str, entry: Mapping[str, Any]) -> str:
    """Where one model stands between perception and binding, in numbers (a clause, no final stop)."""
    found = _regime(entry)
    if found is None:
        return ""
    state, seen, swap = found
    if state == "blind":
        return (f"{name} does not yet perceive objects and attributes ({seen}; it needs {PERCEIVES_AT:.0f}% on "
                f"both), so its swap mean of {swap:.1f}% says little about binding")
    if state == "binds":
        return (f"{name} perceives ({seen}) and binds beyond a bag of words (swap mean {swap:.1f}%, above "
                f"{BAG_OF_WORDS_CEILING:.0f}%)")
    return (f"{name} is in the bag-of-words regime: it perceives objects and attributes ({seen}) but does not bind "
            f"them to each other (swap mean {swap:.1f}%, at most {BAG_OF_WORDS_CEILING:.0f}%)")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _blocks(paired: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(method, reference, metric, record) of every shown paired difference with a finite mean."""
    out = []
    for m, refs in paired.items():
        if not isinstance(refs, Mapping):
            continue
        for ref, block in refs.items():
            if not isinstance(block, Mapping):
                continue
            for k in paired_metrics([block]):
                d = block.get(k)
                if isinstance(d, Mapping) and finite([d.get("mean")]):
                    out.append((m, ref, k, d))
    return out


def sampling_error(paired: Mapping[str, Any], metric: str, against: str = "clip") -> Optional[float]:
    """The largest sampling error (points) recorded for ``metric`` against ``against`` (it depends on the
    metric's row count and on the accuracies compared)."""
    errors = finite(d.get("sampling_error") for m, ref, k, d in _blocks(paired) if ref == against and k == metric)
    return max(errors) if errors else None


def _paired_sentences(paired: Mapping[str, Any], diagnostic: bool = False) -> list[str]:
    """Real differences against CLIP on the swap mean and the 7-category mean (or that there are none),
    TripletCLIP's real differences against NegCLIP, then one sentence counting all the rest as noise.
    ``diagnostic``: the run has a transfer split, so these seen-split differences are named as such and no
    conclusion about binding is drawn from them (the transfer split's sentences do that)."""
    blocks = _blocks(paired)
    where = " on the seen split" if diagnostic else ""
    out = []
    vs_clip = []
    for k in ("swap_mean", "mean"):
        real = [f"{method_name(m)} {fmt_diff(d['mean'])}" for m, ref, kk, d in blocks
                if ref == "clip" and kk == k and d.get("real")]
        if real:
            vs_clip.append(f"on the {metric_name(k)} {_and(real)}")
    if vs_clip:
        out.append(f"Real changes against CLIP{where} (points): {'; '.join(vs_clip)}.")
    if not out and any(ref == "clip" for _, ref, _, _ in blocks):
        out.append(f"No objective differs from CLIP beyond noise{where} on the swap mean or the 7-category mean" +
                   ("." if diagnostic else ": at this budget hard negatives have not changed what the model binds."))
    vs_neg = [f"{metric_name(k)} {fmt_diff(d['mean'])}" for m, ref, k, d in blocks
              if m == "tripletclip" and ref == "negclip" and d.get("real")]
    if vs_neg:
        out.append(f"TripletCLIP against NegCLIP{where}, real: {_and(vs_neg)}.")
    n_real = sum(1 for *_, d in blocks if d.get("real"))
    if blocks:
        errors = [f"±{e:.1f} points for the {metric_name(k)}" for k in ("mean", "swap_mean")
                  if (e := sampling_error(paired, k)) is not None]
        verb = "is" if n_real == 1 else "are"
        out.append(f"{n_real} of the {len(blocks)} paired differences{where or ' in the tables below'} {verb} real; the other "
                   f"{len(blocks) - n_real} {'is' if len(blocks) - n_real == 1 else 'are'} noise (real: the same sign on every seed and larger than the "
                   "benchmark's sampling error" + (f", {' and '.join(errors)}" if errors else "") + ").")
    return out


def verdict(results: Mapping[str, Any]) -> str:
    """One paragraph for a newcomer: the regime, where CLIP (and the base) stand, the real differences."""
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
    # with a transfer split, the seen split is a diagnostic (its foils come from the training negatives' own
    # generator): its regime and differences are named as the seen split's, the transfer split's follow
    diagnostic = any(split_block(e, "transfer") for e in methods.values())
    if any(clauses):
        text = "; ".join(c for c in clauses if c) + "."
        parts.append(("On the seen split (a diagnostic: its foils come from the training negatives' own generator), "
                      + text) if diagnostic else text[0].upper() + text[1:])
    paired = results.get("paired")
    if isinstance(paired, Mapping) and paired:
        parts += _paired_sentences(paired, diagnostic)
    else:
        means = sorted(((v, m) for m, e in methods.items() if (v := finite([e.get("mean")]))), reverse=True)
        if means:
            parts.append(f"Highest 7-category mean: {method_name(means[0][1])} {means[0][0][0]:.1f}%. No paired "
                         "per-seed differences were recorded, so whether any gap is real cannot be said; compare the "
                         "± spreads.")
    parts += [_transfer_sentence(methods), claims_sentence(results)]
    return " ".join(p for p in parts if p)


def _transfer_sentence(methods: Mapping[str, Any]) -> str:
    """Where nothing was trained (the transfer split, issue 17): CLIP's swap mean and the real swap gains."""
    clip = methods.get("clip")
    block = clip.get("transfer") if isinstance(clip, Mapping) else None
    if not isinstance(block, Mapping) or not finite([block.get("swap_mean")]):
        return ""
    rows = block.get("rows") or {}
    n = min((int(v) for v in rows.values() if isinstance(v, (int, float))), default=0)
    gains, err = [], None
    for m, entry in methods.items():
        d = ((entry.get("transfer") or {}).get("paired") or {}).get("clip", {}).get("swap_mean") \
            if isinstance(entry, Mapping) and m != "clip" else None
        if isinstance(d, Mapping):
            err = d.get("sampling_error", err)
            if d.get("real"):
                gains.append(f"{method_name(m)} {d['mean']:+.1f}")
    found = (f"real swap-mean gains over CLIP: {_and(gains)} points" if gains else
             "no objective's swap-mean gain over CLIP is real")
    bound = f" (±{err:.1f})" if isinstance(err, (int, float)) else ""
    return (f"Where nothing was trained (the transfer split: held-out compositions, foils from a generator training "
            f"never used{f', {n} rows per category' if n else ''}), CLIP's swap mean is {block['swap_mean']:.1f}% "
            f"and {found}{bound}.")


def next_steps(results: Mapping[str, Any], meta: Mapping[str, Any], source: str = "demo") -> list[str]:
    """What to run next (HTML list items, commands in <code>): the long preset, other worlds, real data."""
    code = lambda c: f"<code>{c}</code>"  # noqa: E731
    steps = [int(s) for _, e in method_items(results) if finite([e.get("steps")]) for s in [e["steps"]]]
    preset = str(meta.get("preset") or "")
    seed = (meta.get("world") or {}).get("seed") if isinstance(meta.get("world"), Mapping) else None
    out = []
    if source == "demo":
        if preset == "demo-quick" or (steps and max(steps) < 50):
            out.append(f"This was a smoke run ({max(steps) if steps else '?'} steps): its numbers test the pipeline, "
                       f"not the method. {code('tripletclip demo')} runs the comparison (three seeds, several "
                       "minutes on 2 CPU cores).")
        if preset != "demo-long":
            out.append(f"{code('tripletclip demo --preset demo-long')}: the earlier default's regime (every parameter "
                       "at the base's temperature, negatives of all seven edit types, no batch rule) for 1,000 "
                       f"steps (about 20 minutes on 2 CPU cores); {code('--preset demo-dense')}: the default's "
                       "binding-dense positives without its batch rule, where CLIP learns binding from in-batch swaps (README).")
        other = 2 if seed in (None, 1) else 1
        out.append(f"{code(f'tripletclip demo --world-seed {other} --out demo_world{other}')}: another world (its "
                   "base is pretrained once and cached), to see which differences hold beyond one world; "
                   f"{code('tripletclip report demo_out demo_world' + str(other))} puts the two side by side.")
    out.append(f"Real data: {code('tripletclip train')} on TripletData shards, then "
               f"{code('tripletclip eval --benchmark sugarcrepe ...')} and {code('tripletclip report')} on its "
               "output (README, 'From the world to a trained model').")
    return out


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
