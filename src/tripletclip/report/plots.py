"""Plots of a demo or comparison: per-category bars, similarity distributions (TripletCLIP Fig. 3), curves.

Every function returns PNG bytes (matplotlib, Agg backend, no display needed) so that the HTML report embeds
them and stays one self-contained file. Inputs are plain dicts/lists as written in ``results.json`` and
``similarities.json`` by :mod:`tripletclip.demo`.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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


def category_bars(per_seed: Mapping[str, Sequence[Mapping[str, float]]], categories: Sequence[str],
                  title: str, chance: float = 50.0) -> bytes:
    """Grouped bars: for each category (and the mean) one bar per method, height = mean over seeds, whiskers =
    min..max over seeds. ``per_seed[method]`` is a list of {category: accuracy %} (one per seed)."""
    cats = list(categories) + ["mean"]
    methods = list(per_seed)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(cats) + 2), 3.6))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(cats))
    for i, m in enumerate(methods):
        vals = np.array([[s.get(c, np.nan) for c in cats] for s in per_seed[m]], dtype=float)
        mean = np.nanmean(vals, axis=0)
        lo, hi = mean - np.nanmin(vals, axis=0), np.nanmax(vals, axis=0) - mean
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=[lo, hi], capsize=2,
               label=m, color=_colour(m, i), edgecolor="black", linewidth=0.3)
    ax.axhline(chance, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, [CATEGORY_LABELS.get(c, c) for c in cats], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    return _png(fig)


def similarity_histograms(sims: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """TripletCLIP Fig. 3 in spirit: per method, distributions of cosine similarities of positive vs hard
    negative pairs, for the text tower (cos(y, y')), the vision tower (cos(x, x')) and across modalities
    (s(x, y) vs s(x, y')). ``sims[method]`` holds lists ``text``, ``vision``, ``cross_pos``, ``cross_neg``."""
    methods = list(sims)
    fig, axes = plt.subplots(len(methods), 3, figsize=(10, 1.9 * len(methods) + 0.4), squeeze=False)
    bins = np.linspace(-0.2, 1.0, 49)
    for r, m in enumerate(methods):
        s = sims[m]
        ax = axes[r][0]
        ax.hist(s["text"], bins=bins, color=_colour(m, r), alpha=0.8)
        ax.set_ylabel(m, fontsize=9)
        ax = axes[r][1]
        ax.hist(s["vision"], bins=bins, color=_colour(m, r), alpha=0.8)
        ax = axes[r][2]
        ax.hist(s["cross_pos"], bins=bins, alpha=0.6, label="s(x, y)", color="#2ca02c")
        ax.hist(s["cross_neg"], bins=bins, alpha=0.6, label="s(x, y')", color="#d62728")
        if r == 0:
            axes[r][0].set_title("text tower: cos(y, y')", fontsize=9)
            axes[r][1].set_title("vision tower: cos(x, x')", fontsize=9)
            axes[r][2].set_title("image-text: positive vs hard negative", fontsize=9)
            ax.legend(fontsize=7)
        for a in axes[r]:
            a.tick_params(labelsize=7)
            a.set_yticks([])
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
            ax.plot(steps, vals, color=_colour(m, i), alpha=0.85, linewidth=1.0, label=m if j == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"training {key} (each line one seed; objectives differ, so levels are not comparable)",
                 fontsize=8)
    ax.legend(fontsize=7)
    return _png(fig)
