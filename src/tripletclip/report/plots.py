"""Plots of a demo or comparison: per-category bars, similarity distributions (TripletCLIP Fig. 3), curves.

Every function returns PNG bytes (matplotlib, Agg backend, no display needed) so that the HTML report embeds
them and stays one self-contained file. Inputs are plain dicts/lists as written in ``results.json`` and
``similarities.json`` by :mod:`tripletclip.demo`.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tripletclip.report.intervals import finite, whiskers  # noqa: E402
from tripletclip.report.labels import short  # noqa: E402

METHOD_COLOURS = {"clip": "#7f7f7f", "negclip": "#1f77b4", "negimage": "#9467bd", "tripletclip": "#d62728",
                  "ceclip": "#2ca02c"}
CATEGORY_LABELS = {"replace_obj": "replace\nobj", "replace_att": "replace\natt", "replace_rel": "replace\nrel",
                   "swap_obj": "swap\nobj", "swap_att": "swap\natt", "add_obj": "add\nobj", "add_att": "add\natt",
                   "mean": "mean"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _colour(method: str, i: int) -> str:
    return METHOD_COLOURS.get(method, plt.get_cmap("tab10")(i % 10))


def _reference_line(ax, y: float, label: str, colour: str = "black", style: str = "--") -> None:
    """A horizontal reference line with its label written on the plot (and in the legend)."""
    ax.axhline(y, color=colour, linestyle=style, linewidth=0.9, label=label, zorder=3)
    ax.annotate(label, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                va="center", ha="left", fontsize=7, color=colour)


def _bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[Sequence[float]]], colours: Mapping[str, Any]
          ) -> None:
    """Grouped bars: ``series[name][g]`` are the per-seed values of group ``g``; height = mean, whiskers =
    min..max over seeds; a missing group is left empty."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, per_group) in enumerate(series.items()):
        # NOTE: lengths from intervals.whiskers, never mean - min: rounding makes that -1e-14 on equal seeds
        mean, lo, hi = (np.array(col, dtype=float) for col in zip(*(whiskers(v) for v in per_group))) \
            if per_group else (np.zeros(0),) * 3
        ax.bar(x + (i - (len(series) - 1) / 2) * width, mean, width, yerr=[lo, hi], capsize=2, label=short(name),
               color=colours[name], edgecolor="black", linewidth=0.3)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")


def category_bars(per_seed: Mapping[str, Sequence[Mapping[str, float]]], categories: Sequence[str],
                  title: str, chance: float = 50.0) -> bytes:
    """Grouped bars: for each category (and the mean) one bar per method, height = mean over seeds, whiskers =
    min..max over seeds. ``per_seed[method]`` is a list of {category: accuracy %} (one per seed)."""
    cats = list(categories) + ["mean"]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(cats) + 2), 3.8))
    series = {m: [[s[c] for s in seeds if c in s] for c in cats] for m, seeds in per_seed.items()}
    _bars(ax, cats, series, {m: _colour(m, i) for i, m in enumerate(series)})
    _reference_line(ax, chance, f"chance {chance:.0f}%")
    ax.set_xticks(np.arange(len(cats)), [CATEGORY_LABELS.get(c, c) for c in cats], fontsize=8)
    ax.set_xlabel("SugarCrepe category of the hard negative")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=min(6, len(series) + 1), loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    return _png(fig)


REGIME_COLOURS = {"replace_obj": "#9ecae1", "replace_att": "#3182bd", "swap_obj": "#fdae6b", "swap_att": "#e6550d",
                  "replace_rel": "#31a354"}


def regime_chart(per_seed: Mapping[str, Sequence[Mapping[str, float]]], perception: Sequence[str],
                 binding: Sequence[str], relation: Sequence[str], perception_target: float = 90.0,
                 ceiling: float = 65.0, chance: float = 50.0) -> bytes:
    """The bag-of-words regime (Yuksekgonul et al., ICLR 2023): per model, perception categories (replace) next
    to binding categories (swap) and relations, with the perception target, the bag-of-words ceiling for swaps
    and chance as labelled lines. ``per_seed[model]`` is a list of {category: accuracy %} (one per seed)."""
    cats = list(perception) + list(binding) + list(relation)
    models = list(per_seed)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(models) + 2.5), 3.9))
    series = {CATEGORY_LABELS.get(c, c).replace("\n", " "): [[s[c] for s in per_seed[m] if c in s] for m in models]
              for c in cats}
    _bars(ax, models, series, {CATEGORY_LABELS.get(c, c).replace("\n", " "): REGIME_COLOURS.get(c, _colour(c, i))
                               for i, c in enumerate(cats)})
    _reference_line(ax, perception_target, f"perception target {perception_target:.0f}%", "#08519c", ":")
    _reference_line(ax, ceiling, f"bag-of-words ceiling {ceiling:.0f}%", "#a63603", "-.")
    _reference_line(ax, chance, f"chance {chance:.0f}%")
    ax.set_xticks(np.arange(len(models)), [short(m, 18) for m in models], fontsize=8)
    ax.set_xlabel("model (objective)")
    ax.set_title("perception (replace) vs binding (swap) and relations, seen compositions", fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return _png(fig)


def similarity_histograms(sims: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """TripletCLIP Fig. 3 in spirit: per method, distributions of cosine similarities of positive vs hard
    negative pairs, for the text tower (cos(y, y')), the vision tower (cos(x, x')) and across modalities
    (s(x, y) vs s(x, y')). ``sims[method]`` holds lists ``text``, ``vision``, ``cross_pos``, ``cross_neg``."""
    methods = list(sims)
    fig, axes = plt.subplots(len(methods), 3, figsize=(10, 1.9 * len(methods) + 0.4), squeeze=False)
    bins = np.linspace(-0.2, 1.0, 49)
    for r, m in enumerate(methods):
        s = {k: finite(v) if isinstance(v, (list, tuple)) else [] for k, v in (sims[m] or {}).items()}
        ax = axes[r][0]
        ax.hist(s.get("text", []), bins=bins, color=_colour(m, r), alpha=0.8)
        ax.set_ylabel(f"{short(m, 20)}\npairs (count)", fontsize=8)
        axes[r][1].set_ylabel("pairs (count)", fontsize=7)
        axes[r][2].set_ylabel("pairs (count)", fontsize=7)
        ax = axes[r][1]
        ax.hist(s.get("vision", []), bins=bins, color=_colour(m, r), alpha=0.8)
        ax = axes[r][2]
        ax.hist(s.get("cross_pos", []), bins=bins, alpha=0.6, label="s(x, y)", color="#2ca02c")
        ax.hist(s.get("cross_neg", []), bins=bins, alpha=0.6, label="s(x, y')", color="#d62728")
        if r == 0:
            axes[r][0].set_title("text tower: cos(y, y')", fontsize=9)
            axes[r][1].set_title("vision tower: cos(x, x')", fontsize=9)
            axes[r][2].set_title("image-text: positive vs hard negative", fontsize=9)
            ax.legend(fontsize=7)
        for a in axes[r]:
            a.tick_params(labelsize=7)
    for a in axes[-1]:
        a.set_xlabel("cosine similarity", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def training_curves(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], key: str = "loss") -> bytes:
    """Loss against step, one line per (method, seed); ``curves[method][seed] = [(step, value), ...]``."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (m, by_seed) in enumerate(curves.items()):
        for j, (seed, pts) in enumerate(sorted(by_seed.items())):
            if not pts:
                continue
            steps, vals = zip(*pts)
            ax.plot(steps, vals, color=_colour(m, i), alpha=0.85, linewidth=1.0, label=short(m) if j == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"training {key} (each line one seed; objectives differ, so levels are not comparable)",
                 fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)
