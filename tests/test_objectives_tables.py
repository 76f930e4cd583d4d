"""benchmarks/objectives_tables.py: its paired rule equals the demo's (demo/stats.py), and the pooled verdict
needs a real difference of one sign on every world."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tripletclip.demo.stats import paired
from _scripts import load_benchmark

ROWS = {c: 300 for c in ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")}


@pytest.fixture(scope="module")
def tables():
    return load_benchmark("objectives_tables")


def entry(transfer: list[float], seen: list[float], zs: list[float], ret: list[float]) -> dict:
    seeds = [str(i) for i in range(len(transfer))]
    # swap-obj / swap-att of a seed: its transfer mean -2 / +4, so its swap mean is the transfer mean + 1
    return {"transfer": {"mean": sum(transfer) / len(transfer), "rows": ROWS, "categories": {"replace_obj": 50.0},
                         "swap_mean": sum(transfer) / len(transfer) + 1,
                         "per_seed": {s: {"mean": v, "swap_obj": v - 2, "swap_att": v + 4}
                                      for s, v in zip(seeds, transfer)}},
            "seen": {"mean": sum(seen) / len(seen), "categories": {f"c{i}": 1.0 for i in range(7)},
                     "per_seed": {s: {"mean": v} for s, v in zip(seeds, seen)}},
            "zeroshot": {"shape": 20.0, "colour": 98.0, "mean": 59.0,
                         "change_vs_base": {"mean": sum(zs) / len(zs),
                                            "per_seed": {s: {"mean": v, "shape": v, "colour": 0.0}
                                                         for s, v in zip(seeds, zs)}}},
            "retrieval": {"per_seed": {s: {"mean": v} for s, v in zip(seeds, ret)}}}


def demo(folder: Path, tc: list[float]) -> Path:
    """A finished demo's results.json: base, CLIP, NegCLIP and TripletCLIP (transfer means ``tc``)."""
    folder.mkdir()
    results = {"base": entry([60.0], [62.0], [0.0], [20.0]),
               "clip": entry([60.0, 61.0], [63.0, 64.0], [-1.0, -2.0], [21.0, 22.0]),
               "negclip": entry([61.0, 61.5], [65.0, 64.0], [0.5, 0.0], [20.0, 20.5]),
               "tripletclip": entry(tc, [66.0, 67.0], [-3.0, -4.0], [19.0, 18.0]),
               "regime": "finetune", "units": "percent"}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_paired_difference_is_the_demos_rule(tables, tmp_path):
    world = tables.World(demo(tmp_path / "a", [66.0, 68.0]))
    got = tables.versus(world, "tripletclip", "clip")
    per = {m: {i: {"mean": v} for i, v in enumerate(world.transfer(m).values())} for m in ("clip", "tripletclip")}
    ref = paired(per, {"mean": list(ROWS.values())}, refs=("clip",))["tripletclip"]["clip"]["mean"]
    assert got["per_seed"] == pytest.approx([6.0, 7.0])
    assert got["mean"] == pytest.approx(ref["mean"]) and got["err"] == pytest.approx(ref["sampling_error"])
    assert got["real"] is ref["real"] is True
    swap = tables.versus(world, "tripletclip", "clip", "swap")
    per = {m: {i: {"swap_mean": v} for i, v in enumerate(world.swap(m).values())} for m in ("clip", "tripletclip")}
    ref = paired(per, {"swap_mean": [300, 300]}, refs=("clip",))["tripletclip"]["clip"]["swap_mean"]
    assert swap["mean"] == pytest.approx(ref["mean"]) == pytest.approx(6.5)
    assert swap["err"] == pytest.approx(ref["sampling_error"])
    # a gain over the base: each seed against the one base value, with the same error formula
    g = tables.gain(world, "tripletclip", "transfer")
    assert g["per_seed"] == pytest.approx([6.0, 8.0]) and g["real"]


def test_pooled_verdict_needs_one_sign_on_every_world(tables, tmp_path):
    up, down, mixed = (tables.World(demo(tmp_path / n, tc)) for n, tc in
                       (("up", [66.0, 68.0]), ("down", [54.0, 55.0]), ("mixed", [66.0, 59.0])))
    row = lambda ws: next(line for line in tables.pooled(ws) if line.startswith("| TripletCLIP"))  # noqa: E731
    assert "**real**" in row([up, tables.World(up.folder)]).split("|")[3]
    assert "tie" in row([up, down]).split("|")[3]       # real on each world, opposite signs
    assert "tie" in row([up, mixed]).split("|")[3]      # signs disagree across seeds of one world


def test_main_ranks_by_transfer_mean(tables, tmp_path, capsys):
    tables.main([str(demo(tmp_path / "w", [66.0, 68.0]))])
    out = capsys.readouterr().out
    ranked = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ") and "|---" not in line
              and line.split("|")[1].strip().isdigit()]
    assert ranked == ["TripletCLIP", "NegCLIP", "CLIP"]
    assert "no WiSE-FT sweep" in out
