"""The trade-off view (report/tradeoff.py): changes against the base, per-seed ranges, a PNG or None."""
from __future__ import annotations

import pytest

from tripletclip.report.tradeoff import tradeoff_figure, tradeoff_points


def entry(mean, seeds, zs_mean, zs_seeds):
    return {"mean": mean, "per_seed": {str(i): {"mean": v} for i, v in enumerate(seeds)},
            "zeroshot": {"mean": zs_mean, "per_seed": {str(i): {"mean": v} for i, v in enumerate(zs_seeds)}}}


RESULTS = {"base": entry(60.0, [60.0], 70.0, [70.0]), "negclip": entry(66.0, [65.0, 67.0], 64.0, [63.0, 65.0]),
           "fscclip": entry(64.0, [64.0], 69.0, [69.0]), "regime": "finetune", "paired": {}}


def test_points_are_changes_against_the_base():
    pts = {p["method"]: p for p in tradeoff_points(RESULTS)}
    assert set(pts) == {"negclip", "fscclip"}
    assert pts["negclip"]["compositional_change"] == 6.0 and pts["negclip"]["zeroshot_change"] == -6.0
    assert pts["negclip"]["compositional_per_seed"] == [5.0, 7.0]
    assert pts["negclip"]["zeroshot_per_seed"] == [-7.0, -5.0]
    assert pts["fscclip"]["zeroshot_change"] == pytest.approx(-1.0)


def test_figure_is_a_png_and_needs_a_base():
    sweep = [{"method": "negclip", "alpha": a, "compositional_change": 6 * a, "zeroshot_change": -6 * a}
             for a in (0.0, 0.5, 1.0)]
    png = tradeoff_figure(RESULTS, sweep)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert tradeoff_figure({k: v for k, v in RESULTS.items() if k != "base"}) is None


def test_equal_seeds_at_25_of_26_and_failed_blocks_never_crash_the_figure():
    """Issue 23's trap on this figure too: equal seeds whose mean rounds past min/max, a NaN seed, a block
    without a mean (another writer's format), a failed method: points where numbers exist, no exception."""
    acc = 100 * 25 / 26
    results = {"base": entry(60.0, [60.0], 70.0, [70.0]),
               "ceclip": entry(acc, [acc, acc, acc], acc, [acc, acc, acc]),
               "negclip": entry(66.0, [65.0, float("nan")], 64.0, [63.0, 65.0]),
               "clic": {"mean": 61.0, "zeroshot": {"cifar10": {"accuracy": 81.0}}},
               "degla": {"mean": float("nan"), "zeroshot": {"mean": None}}}
    pts = {p["method"]: p for p in tradeoff_points(results)}
    assert set(pts) == {"ceclip", "negclip"}
    assert pts["negclip"]["compositional_per_seed"] == [5.0]
    assert tradeoff_figure(results)[:4] == b"\x89PNG"
    assert tradeoff_points({"base": {"mean": 60.0, "zeroshot": {"cifar10": 1}}, "clip": results["ceclip"]}) == []


def test_the_report_shows_the_trade_off_figure(tmp_path):
    from tripletclip.report.html import _zeroshot_section

    section = _zeroshot_section(RESULTS)
    assert "data:image/png;base64," in section and "trade-off" in section
