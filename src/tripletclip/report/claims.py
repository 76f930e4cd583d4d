"""Where nothing was trained: the transfer and paraphrase splits' paired differences, and what each claim of
the demo shows there (issue 17 item 5), with the row counts and sampling errors behind every number.

results.json keeps a transfer split's paired per-seed differences inside each method's block
(``<method>.transfer.paired[reference][metric]``, written by the demo). The decision is the demo's
(``tripletclip.demo.stats.paired``): a difference is real iff its sign is the same on every training seed and
its mean exceeds 1.96 binomial standard errors of a difference on that metric's rows. Nothing here decides
anew: errors and verdicts are read as recorded, and per-category intervals are the Wilson intervals of
:mod:`tripletclip.report.intervals` on the recorded row counts.

The five claims (bag-of-words failure, cure, relations, TripletCLIP vs NegCLIP, transfer) use the one
definition of the bag-of-words regime in :mod:`tripletclip.report.labels`: a model perceives when replace-obj
and replace-att are both at least 80%, and binds when its swap mean exceeds 65%.
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Optional, Sequence

from tripletclip.report.intervals import finite, wilson
from tripletclip.report.labels import (
    BAG_OF_WORDS_CEILING, BINDING, CHANCE, PERCEIVES_AT, PERCEPTION, category_name, method_items, method_name,
    metric_name, split_name,
)
from tripletclip.report.tables import fmt_diff, html_table, paired_table

SPLITS = ("transfer", "paraphrase")
# the paired metrics a claim reads, in the order they are quoted
CLAIM_METRICS = ("swap_mean", "mean", "replace_rel", "wino_group")


def split_block(entry: Any, split: str) -> Mapping[str, Any]:
    """The ``split`` block of a method entry ({} when absent)."""
    rec = entry.get(split) if isinstance(entry, Mapping) else None
    return rec if isinstance(rec, Mapping) else {}


def split_paired(results: Mapping[str, Any], split: str) -> dict[str, Mapping[str, Any]]:
    """``{method: {reference: {metric: record}}}`` of one split, gathered from the methods' blocks."""
    out = {}
    for m, entry in method_items(results):
        paired = split_block(entry, split).get("paired")
        if isinstance(paired, Mapping) and paired:
            out[m] = paired
    return out


def _rows(block: Mapping[str, Any], cats: Sequence[str]) -> int:
    rows = block.get("rows")
    return sum(int(v) for c in cats for v in finite([(rows or {}).get(c)])) if isinstance(rows, Mapping) else 0


def rows_text(results: Mapping[str, Any], split: str) -> str:
    """The rows behind a split's numbers: per category, the swap mean's, and the Winoground groups."""
    for _, entry in method_items(results):
        block = split_block(entry, split)
        rows = block.get("rows")
        if not isinstance(rows, Mapping) or not rows:
            continue
        counts = {c: int(v) for c, v in rows.items() if finite([v])}
        per_cat = (f"{next(iter(counts.values()))} rows per category" if len(set(counts.values())) == 1 else
                   "rows per category: " + ", ".join(f"{category_name(c)} {n}" for c, n in counts.items()))
        groups = (block.get("winoground") or {}).get("groups") if isinstance(block.get("winoground"), Mapping) else None
        return (f"{per_cat}, {sum(counts.values())} in all; swap mean {_rows(block, BINDING)}"
                + (f"; {int(groups)} Winoground-style groups" if finite([groups]) else ""))
    return ""


def _metric_names(results: Mapping[str, Any], split: str) -> dict[str, str]:
    """Column names of a split's paired table: its ``mean`` is over its own categories (five, not seven)."""
    n = max((len(cats) for _, e in method_items(results)
             if isinstance(cats := split_block(e, split).get("categories"), Mapping)), default=0)
    return {"mean": f"{n}-category mean" if n else "mean"}


def _references(results: Mapping[str, Any], paired: Mapping[str, Any]) -> list[str]:
    found = list(dict.fromkeys(r for v in paired.values() if isinstance(v, Mapping) for r in v))
    order = [m for m, _ in method_items(results)]
    return [r for r in order if r in found] + [r for r in found if r not in order]


def split_paired_section(results: Mapping[str, Any]) -> str:
    """HTML: per transfer-type split, one paired table per reference (CLIP, NegCLIP): mean difference, 'real'
    or 'noise', the sampling error and the per-seed differences; '' when no method records any."""
    parts = []
    for split in SPLITS:
        paired = split_paired(results, split)
        tables = []
        for against in _references(results, paired):
            table = paired_table(paired, against, _metric_names(results, split))
            if table:
                tables += [f"<h3>{html.escape(split_name(split))}: vs {html.escape(method_name(against))}</h3>", table]
        if not tables:
            continue
        rows = rows_text(results, split)
        parts += [f"<h2>Paired differences on the {html.escape(split_name(split))} split (points)</h2>",
                  "<p class='caption'>As the table above, on the split where nothing was trained"
                  + (f" ({html.escape(rows)})" if rows else "") + ": the mean over seeds of (method − reference) "
                  "on the same seed, <span class='real'>real</span> or <span class='noise'>noise</span> by the same "
                  "rule, its sampling error (±) and the per-seed differences.</p>", *tables]
    return "\n".join(parts)


# --- the claims -------------------------------------------------------------------------------------------------

def _diff(results: Mapping[str, Any], split: str, method: str, ref: str, metric: str) -> Optional[Mapping[str, Any]]:
    d = ((split_block(results.get(method), split).get("paired") or {}).get(ref) or {}).get(metric)
    return d if isinstance(d, Mapping) and finite([d.get("mean")]) else None


def _diff_text(d: Mapping[str, Any]) -> str:
    err = f" ± {d['sampling_error']:.1f}" if finite([d.get("sampling_error")]) else ""
    return f"{fmt_diff(d['mean'])}{err}, {'real' if d.get('real') else 'not real'}"


def _accuracy(block: Mapping[str, Any], cat: str) -> str:
    """'50.4 [44.8, 56.0]': a category's accuracy and its 95% Wilson interval on the recorded rows."""
    acc = (block.get("categories") or {}).get(cat)
    if not finite([acc]):
        return "–"
    ci = wilson(acc, _rows(block, [cat]))
    return f"{acc:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{acc:.1f}"


def _swap(block: Mapping[str, Any]) -> Optional[tuple[float, str]]:
    """(swap mean, '62.1 ± 3.9') of a split block, None without one."""
    v = block.get("swap_mean")
    if not finite([v]):
        return None
    err = block.get("swap_mean_error")
    return float(v), f"{v:.1f}" + (f" ± {err:.1f}" if finite([err]) else "")


def _others(results: Mapping[str, Any], split: str) -> list[str]:
    """The objectives with hard negatives (every method but CLIP) that have the split."""
    return [m for m, e in method_items(results) if m != "clip" and split_block(e, split)]


def _bag_of_words(results: Mapping[str, Any], split: str) -> tuple[str, str]:
    clip = split_block(results.get("clip"), split)
    swap = _swap(clip)
    if swap is None:
        return "not measured", "no CLIP entry on this split"
    per = [(c, (clip.get("categories") or {}).get(c)) for c in PERCEPTION]
    perceives = all(finite([v]) and v >= PERCEIVES_AT for _, v in per)
    evidence = (f"CLIP: {', '.join(f'{category_name(c)} {_accuracy(clip, c)}' for c, _ in per)}; swap mean "
                f"{swap[1]} ({_rows(clip, BINDING)} rows)")
    base = _swap(split_block(results.get("base"), split))
    if base:
        evidence += f"; the base before fine-tuning: swap mean {base[1]}"
    if not perceives:
        return f"not tested: CLIP does not perceive (needs {PERCEIVES_AT:.0f}% on both)", evidence
    return ("yes" if swap[0] <= BAG_OF_WORDS_CEILING else "no: CLIP binds"), evidence


def _cure(results: Mapping[str, Any], split: str) -> tuple[str, str]:
    others = _others(results, split)
    if "clip" not in results or not others:
        return "not measured", "needs CLIP and an objective with hard negatives on this split"
    cured, parts = [], []
    for m in others:
        swap = _swap(split_block(results[m], split))
        d = _diff(results, split, m, "clip", "swap_mean")
        if swap is None:
            continue
        parts.append(f"{method_name(m)} {swap[1]}" + (f" ({_diff_text(d)} over CLIP)" if d else ""))
        if swap[0] > BAG_OF_WORDS_CEILING and d and d.get("real") and d["mean"] > 0:
            cured.append(method_name(m))
    holds = ("yes, every objective" if len(cured) == len(parts) else
             f"partly: {', '.join(cured)}" if cured else "no")
    return holds, "swap mean: " + "; ".join(parts)


def _relations(results: Mapping[str, Any], split: str) -> tuple[str, str]:
    entries = [(m, split_block(e, split)) for m, e in method_items(results) if split_block(e, split)]
    cells, learned = [], []
    for m, block in entries:
        acc = (block.get("categories") or {}).get("replace_rel")
        if not finite([acc]):
            continue
        d = _diff(results, split, m, "clip", "replace_rel")
        cells.append(f"{method_name(m)} {_accuracy(block, 'replace_rel')}" + (f" ({_diff_text(d)} vs CLIP)" if d else ""))
        ci = wilson(acc, _rows(block, ["replace_rel"]))
        if ci and ci[0] > CHANCE and (m == "clip" or (d and d.get("real") and d["mean"] > 0)):
            learned.append(method_name(m))
    if not cells:
        return "not measured", "no replace-rel on this split"
    n = _rows(entries[0][1], ["replace_rel"])
    holds = f"yes: {', '.join(learned)}" if learned else f"no: every interval reaches chance ({CHANCE:.0f}%)"
    return holds, f"replace-rel ({n} rows), 95% Wilson interval: " + "; ".join(cells)


def _triplet_vs_negclip(results: Mapping[str, Any], split: str, names: Mapping[str, str]) -> tuple[str, str]:
    diffs = [(k, d) for k in CLAIM_METRICS if (d := _diff(results, split, "tripletclip", "negclip", k))]
    if not diffs:
        return "not measured", "needs TripletCLIP and NegCLIP on this split"
    real = [d["mean"] for _, d in diffs if d.get("real")]
    holds = ("tie: no difference is real" if not real else "TripletCLIP ahead" if min(real) > 0 else
             "NegCLIP ahead" if max(real) < 0 else "mixed")
    return holds, "TripletCLIP − NegCLIP: " + "; ".join(f"{names.get(k, metric_name(k))} {_diff_text(d)}"
                                                         for k, d in diffs)


def _transfer(results: Mapping[str, Any]) -> tuple[str, str]:
    """Whether the seen split's real swap-mean gains over CLIP are real on the transfer split too (and which are
    real there only), and the gains on the paraphrased wordings."""
    seen = results.get("paired") if isinstance(results.get("paired"), Mapping) else {}
    parts, kept, lost, only_here = [], [], [], []
    for m in _others(results, "transfer"):
        s = ((seen.get(m) or {}).get("clip") or {}).get("swap_mean")
        t = _diff(results, "transfer", m, "clip", "swap_mean")
        if not (isinstance(s, Mapping) and finite([s.get("mean")]) and t):
            continue
        parts.append(f"{method_name(m)} seen {_diff_text(s)}; transfer {_diff_text(t)}")
        if s.get("real"):
            (kept if t.get("real") else lost).append(method_name(m))
        elif t.get("real"):
            only_here.append(method_name(m))
    para = [(m, d) for m in _others(results, "paraphrase") if (d := _diff(results, "paraphrase", m, "clip", "swap_mean"))]
    if not parts and not para:
        return "not measured", "no paired swap-mean differences on the seen and transfer splits"
    evidence = ("swap mean over CLIP: " + " | ".join(parts)) if parts else ""
    if para:
        rows = rows_text(results, "paraphrase")
        evidence += (". " if evidence else "") + f"Paraphrased captions{f', {rows}' if rows else ''}: " + "; ".join(
            f"{method_name(m)} {_diff_text(d)}" for m, d in para)
    holds = ("yes" if kept and not lost else f"partly: {', '.join(kept)}" if kept else
             "no: none of the seen split's real gains is real here" if lost else "no real seen-split gain to carry over")
    if only_here:
        holds += f"; real on the transfer split only: {', '.join(only_here)}"
    if para:
        real = [method_name(m) for m, d in para if d.get("real")]
        holds += "; paraphrases: " + (f"{', '.join(real)} real" if real else "no real gain")
    return holds, evidence


def transfer_claims(results: Mapping[str, Any], split: str = "transfer") -> list[tuple[str, str, str]]:
    """(claim, whether it holds on ``split``, the numbers with rows and errors) for the five claims; [] when no
    method has the split."""
    if not any(split_block(e, split) for _, e in method_items(results)):
        return []
    names = _metric_names(results, split)
    return [
        (f"bag-of-words failure: CLIP fine-tuned without negatives perceives and stays at swap mean ≤ "
         f"{BAG_OF_WORDS_CEILING:.0f}%", *_bag_of_words(results, split)),
        (f"cure: hard negatives lift the swap mean above {BAG_OF_WORDS_CEILING:.0f}% with a real gain over CLIP",
         *_cure(results, split)),
        ("relations: replace-rel above chance (its interval above 50%) and a real gain over CLIP",
         *_relations(results, split)),
        ("TripletCLIP vs NegCLIP", *_triplet_vs_negclip(results, split, names)),
        ("transfer: the seen split's real swap gains over CLIP are real here too; paraphrased captions",
         *_transfer(results)),
    ]


def claims_section(results: Mapping[str, Any]) -> str:
    """HTML: the claims table of the transfer split ('' without one)."""
    claims = transfer_claims(results)
    if not claims:
        return ""
    rows = rows_text(results, "transfer")
    return ("<h2>What holds where nothing was trained (transfer split)</h2><p class='caption'>Each claim on the "
            f"transfer split{f' ({html.escape(rows)})' if rows else ''}: accuracy in %, means over training "
            "seeds; ±: 1.96 binomial standard errors from the row counts; brackets: the 95% Wilson interval; "
            "real: the same sign on every seed and beyond the sampling error.</p>" +
            # class 'claims': its cells wrap (the others keep numbers on one line)
            html_table(["claim", "holds?", "evidence"], [list(c) for c in claims], score_cols=(),
                       row_labels=False).replace("<table>", "<table class='claims'>", 1))


def claims_sentence(results: Mapping[str, Any]) -> str:
    """The claims' verdicts in one sentence (for the report's opening paragraph)."""
    claims = transfer_claims(results)
    if not claims:
        return ""
    short = ("bag-of-words failure", "cure", "relations", "TripletCLIP vs NegCLIP", "transfer of seen-split gains")
    return ("On the transfer split, claim by claim: " +
            "; ".join(f"{s}: {holds}" for s, (_, holds, _) in zip(short, claims)) + " (table below).")
