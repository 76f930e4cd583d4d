"""Property-based tests of the report (issue 23): for every generated result document the demo or ``eval`` can
write (one seed, equal seeds, one method, a category with zero rows, a failed method, a missing split, extra
splits such as ``transfer``, a ``zeroshot`` block, unknown and very long method names) the page renders, every
method appears, and no whisker or spread is negative. Plots are drawn for real on a few documents and stubbed
on the rest, so that many documents stay within a few seconds. Shrunk failures are kept as @example."""
from __future__ import annotations

import html as html_lib
import math
import re
from unittest import mock

import matplotlib.pyplot as plt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tripletclip.demo import stats
from tripletclip.edit_types import SUGARCREPE_TYPES as CATEGORIES
from tripletclip.report import plots, text_table, verdict, write_report
from tripletclip.report.labels import method_items, method_name, split_names

SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
AWKWARD = [100 * 25 / 26, 100 / 3, 0.0, 100.0, 50.0]
accuracy = st.one_of(st.sampled_from(AWKWARD), st.floats(0, 100, allow_nan=False))
NAMES = ["clip", "negclip", "tripletclip", "fscclip", "clic", "degla", "x" * 150, "a <b>&'\"quoted\"</b>"]


def _split(draw, seeds: list[str], equal: bool, failed: bool) -> dict:
    cats = draw(st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=7))
    per_seed = {}
    first = None
    for s in seeds:
        rec = {c: (math.nan if failed else draw(accuracy)) for c in cats}
        if equal:
            first = first or rec
            rec = dict(first)
        vals = [v for v in rec.values() if not math.isnan(v)]
        rec["mean"] = sum(vals) / len(vals) if vals else math.nan
        per_seed[s] = rec
    agg = stats.aggregate_split(per_seed)
    if draw(st.booleans()):  # rows per category, some zero (their accuracy then undefined)
        agg["rows"] = {c: draw(st.sampled_from([0, 26, 100])) for c in cats}
    if draw(st.booleans()) and cats:  # an eval-style record: aggregates only, no per-seed values
        agg = {"categories": {c: None if failed else agg["categories"].get(c) for c in cats}, "mean": agg["mean"]}
    return agg


@st.composite
def documents(draw) -> dict:
    """A results.json document as the demo (or a converted eval run) writes it, with the awkward cases."""
    methods = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    seeds = [str(s) for s in range(draw(st.integers(1, 3)))]
    splits = draw(st.lists(st.sampled_from(["seen", "heldout", "transfer", "paraphrase"]), unique=True, max_size=4))
    doc: dict = {"regime": draw(st.sampled_from(["finetune", "scratch", None]))}
    per_method = {}
    for m in methods:
        failed, equal = draw(st.booleans()), draw(st.booleans())
        entry: dict = {"steps": draw(st.sampled_from([12, 150, 1000, math.nan])), "seeds": [int(s) for s in seeds]}
        for sp in splits:
            if draw(st.integers(0, 4)) == 0:
                continue  # this method lacks the split
            entry[sp] = _split(draw, seeds, equal, failed)
        if "seen" in entry and entry["seen"].get("per_seed"):
            entry.update({k: entry["seen"][k] for k in ("mean", "categories", "spread", "per_seed")})
        if draw(st.booleans()):
            entry["winoground"] = {"per_seed": {s: {"text": draw(accuracy), "image": math.nan if failed else 25.0,
                                                    "group": 20.0} for s in seeds}}
            entry["retrieval"] = {"per_seed": {s: {"i2t_r1": draw(accuracy)} for s in seeds}}
        if draw(st.booleans()):
            entry["zeroshot"] = {"cifar10": {"accuracy": draw(accuracy), "change_vs_base": draw(st.floats(-9, 9))}}
        doc[m] = entry
        per_method[m] = {int(s): {"mean": (entry.get("per_seed") or {}).get(s, {}).get("mean", math.nan),
                                  "swap_mean": draw(accuracy)} for s in seeds}
    if draw(st.booleans()):
        doc["base"] = {"seen": _split(draw, ["0"], False, False)}
    if draw(st.booleans()):
        refs = tuple(draw(st.lists(st.sampled_from(methods), unique=True, max_size=2)))
        doc["paired"] = stats.paired(per_method, {"mean": [100] * 7, "swap_mean": [0, 100]}, refs=refs)
    return doc


def _check_page(page: str, doc: dict) -> None:
    for m, _ in method_items(doc):  # every method is named, a failed one too (its cells: '–')
        assert html_lib.escape(method_name(m)) in page
    assert "<script" not in page and not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    body = re.sub(r"<img[^>]*>", "", page.split("</style>", 1)[1])
    assert not re.search(r"\b(nan|inf|none)\b", body, re.I)  # never a raw NaN or None in a cell or a sentence


@settings(max_examples=30, **SETTINGS)
@given(documents())
def test_every_generated_document_renders(tmp_path_factory, doc):
    """Tables, verdict, sections and the page, plots stubbed (they have their own properties below)."""
    out = tmp_path_factory.mktemp("props") / "report.html"
    with mock.patch.multiple(plots, category_bars=mock.DEFAULT, regime_chart=mock.DEFAULT) as stubs:
        for stub in stubs.values():
            stub.return_value = b"png"
        page = write_report(out, doc, CATEGORIES, {}).read_text()
    _check_page(page, doc)
    verdict(doc)
    for part in split_names([e for _, e in method_items(doc)]):
        text_table(doc, CATEGORIES, part)


@settings(max_examples=4, **SETTINGS)
@given(documents())
@example({"regime": "finetune", "ceclip": {"seen": {"per_seed": {s: {"add_obj": 100 * 25 / 26, "mean": 100 * 25 / 26}
                                                                  for s in "012"}}}})
def test_documents_render_with_real_plots(tmp_path_factory, doc):
    page = write_report(tmp_path_factory.mktemp("real") / "report.html", doc, CATEGORIES, {}).read_text()
    _check_page(page, doc)


groups = st.lists(st.one_of(st.lists(st.one_of(accuracy, st.just(math.nan)), max_size=4),
                            st.builds(lambda v, k: [v] * k, accuracy, st.integers(1, 4))), min_size=1, max_size=4)


@settings(max_examples=40, **SETTINGS)
@given(st.dictionaries(st.sampled_from(NAMES), groups, min_size=1, max_size=3))
@example({"ceclip": [[100 * 25 / 26] * 3]})  # issue 23: ValueError: 'yerr' must not contain negative values
@example({"clip": [[]], "negclip": [[math.nan, math.nan]]})  # nothing measured: an empty bar, no whisker
def test_bars_accept_every_per_seed_series(series):
    """matplotlib refuses a negative error bar the moment the bars are drawn; drawing them is the check."""
    n = max(len(v) for v in series.values())
    series = {k: v + [[]] * (n - len(v)) for k, v in series.items()}
    fig, ax = plt.subplots()
    try:
        plots._bars(ax, [str(i) for i in range(n)], series, {k: "#777777" for k in series})
        for container in ax.containers:
            for line in getattr(container, "lines", [None, None, []])[2]:
                for seg in (s for s in line.get_segments() if len(s) == 2):
                    assert seg[1][1] >= seg[0][1]  # every whisker runs upwards: no negative length
    finally:
        plt.close(fig)
