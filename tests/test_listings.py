"""Listings that answer: the torch-free catalog agrees with the live registries, `models list` groups ours first
with descriptions, `eval` prints every headline in percent, `negatives text` shows examples and counts."""
from __future__ import annotations

import inspect
import json
import re

from click.testing import CliRunner

from tripletclip.catalog import BENCHMARKS, COMMON_OPTIONS, model_catalog
from tripletclip.cli import main


def test_benchmark_catalog_matches_the_registry():
    from tripletclip.eval import EVALUATORS
    from tripletclip.eval.base import options_of

    catalog = {b.name: b for b in BENCHMARKS}
    assert sorted(catalog) == EVALUATORS.names(), "list every registered benchmark in tripletclip/catalog.py"
    for name, info in catalog.items():
        fn = EVALUATORS.get(name)
        assert info.summary == fn.summary and info.blind == fn.supports_blind, name
        params = inspect.signature(fn).parameters
        assert set(options_of(fn)) == set(COMMON_OPTIONS) | set(info.options), name
        for option, default in info.options.items():
            assert default == params[option].default, (name, option, default, params[option].default)
            assert info.option_help(option), f"{name}.{option} has no description"
        assert (params["annotations"].default is inspect.Parameter.empty) == info.annotations_required, name
        assert params["images"].default is None and params["skip_missing"].default is False
        assert info.needs, f"{name}: which files it reads is not described"


def test_eval_list_gives_meaning_default_and_files():
    out = CliRunner().invoke(main, ["eval", "--list"]).output
    block = out.split("aro_coco_order:", 1)[1].split("\n\n", 1)[0]
    assert "needs: --annotations: coco_karpathy_test.json" in block
    assert re.search(r"max_words\s+default 30\s+captions are cut", block)
    assert re.search(r"tagger\s+default auto\s+part-of-speech tagger", block)


def test_models_list_groups_ours_first_with_descriptions():
    import open_clip

    from tripletclip.models import list_models, register_model_configs

    ours, theirs = model_catalog()
    assert [n for n, _ in ours] == register_model_configs() and all(d for _, d in ours)
    assert [n for n, _ in ours] + theirs == [n for n in list_models() if n in {n for n, _ in ours}] + [
        n for n in open_clip.list_models() if n not in {n for n, _ in ours}]
    out = CliRunner().invoke(main, ["models", "list"]).output
    head, rest = out.split("open_clip's model configs", 1)
    assert all(re.search(rf"^  {re.escape(n)}\s+\S", head, re.M) for n, _ in ours)
    assert "world-resnet-tiny" not in rest and "ViT-B-32" in rest


def test_headline_table_prints_every_headline_in_percent():
    from tripletclip.eval.api import UNIT, headline_table

    doc = {"benchmarks": {
        "world": {"headline": {"sugarcrepe_seen/mean": 0.58571, "sugarcrepe_heldout/mean": 0.5, "winoground_seen/group": 0.125,
                               "winoground_heldout/image": 0.3333333, "retrieval/i2t_r1": 1.0}},
        "sugarcrepe": {"headline": {"mean": 0.7, "swap_obj": 0.65}, "skipped_missing": 4}}}
    lines = headline_table(doc).splitlines()
    assert lines[0].split() == ["benchmark", "metric", "%"]
    values, bench = {}, ""
    for ln in lines[2:]:
        if ln.startswith("sugarcrepe:"):
            continue
        cells = ln.split()
        bench = cells[0] if len(cells) == 3 else bench  # a benchmark is named on its first row only
        values[(bench, cells[-2])] = cells[-1]
    for bench, rec in doc["benchmarks"].items():
        for key, v in rec["headline"].items():
            assert values[(bench, key)] == f"{100 * v:.2f}"  # every headline, held-out and Winoground included
    assert "sugarcrepe: skipped 4 rows (missing images)" in lines
    assert "fraction" in UNIT


def test_negatives_text_prints_examples_and_counts(tmp_path):
    captions = ["a man riding a brown horse on the beach", "two red apples on a wooden table",
                "a cat sitting on top of a blue car", "a small dog running next to a large white truck"]
    (tmp_path / "caps.csv").write_text("key,caption\n" + "".join(f"{i},{c}\n" for i, c in enumerate(captions)))
    r = CliRunner().invoke(main, ["negatives", "text", "--in", str(tmp_path / "caps.csv"), "--out", str(tmp_path / "o"),
                                  "--tagger", "lexicon"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert f"{manifest['negatives']} negatives for 4 captions" in r.output
    for edit_type, n in manifest["edit_types"].items():
        assert re.search(rf"^  {edit_type}\s+{n}\s+{100 * n / manifest['negatives']:.1f}%$", r.output, re.M)
    examples = re.findall(r"^  \[(\w+)\] (.+)\n\s+-> (.+)$", r.output, re.M)
    assert len(examples) == min(5, manifest["negatives"])
    assert all(caption in captions and negative != caption for _, caption, negative in examples)


def test_suite_says_once_why_shared_tests_skip(pytester):
    from pathlib import Path

    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.skipif(True, reason="shared/benchmarks not next to the repo")
        def test_a(): pass

        def test_b(): pytest.skip("shared benchmark files not found at /x")

        def test_c(): pytest.skip("needs a GPU")

        def test_d(): pass
    """)
    out = pytester.runpytest("-q").stdout.str()
    assert out.count("tests that need ../shared/benchmarks") == 1
    assert "2 tests skipped: the real benchmark annotation files" in out and "1 passed, 3 skipped" in out
