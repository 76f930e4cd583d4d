"""``tripletclip report`` and the end of the demo (issue 23; issue 20 item 3): the report of equal seeds at 25/26,
a demo folder's report equal to the demo's own, eval files, several runs side by side, inputs left out with one
line each, a report failure that keeps the results and names the command, and one definition of the regime's
thresholds shared with the README."""
from __future__ import annotations

import html
import json
import re
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from tripletclip.cli import main
from tripletclip.demo import stats
from tripletclip.demo.output import ReportFailed, print_tables, write_report_or_say
from tripletclip.edit_types import SUGARCREPE_TYPES as CATEGORIES
from tripletclip.errors import InputError, NotFoundError, UserError
from tripletclip.report import render, report, write_report
from tripletclip.report.labels import BAG_OF_WORDS_CEILING, PERCEIVES_AT, regime_definition
from tripletclip.report.summary import next_steps, verdict

README = Path(__file__).resolve().parents[1] / "README.md"


def _record(method: str, seed: int, level: float, extra: dict | None = None) -> dict:
    seen = {c: level + i + seed for i, c in enumerate(CATEGORIES)}
    seen.update(extra or {})
    seen["mean"] = statistics.fmean(seen[c] for c in CATEGORIES)
    held = {c: v - 5 for c, v in seen.items()}
    return {"method": method, "seed": seed, "scores": {"seen": seen, "heldout": held},
            "winoground": {"text": 10.0 + seed, "image": 5.0, "group": 2.0}, "retrieval": {"i2t_r1": 1.0, "t2i_r1": 3.0},
            "final": {"real_pairs_seen": 640}, "train_s": 2.0, "eval_s": 1.0, "run_dir": None}


def _document(records: dict[str, list[dict]]) -> dict:
    """results.json as demo/run.py assembles it, from run records."""
    per = {m: {r["seed"]: stats.run_metrics(r) for r in rs} for m, rs in records.items()}
    rows = {m: [100] * 7 if m in ("mean", "heldout_mean") else [100] for m in next(iter(per.values()))[0]}
    return {**{m: stats.method_entry(rs, 150) for m, rs in records.items()}, "regime": "finetune", "base": None,
            "paired": stats.paired(per, rows), "units": "percent"}


def test_equal_seeds_at_25_of_26_render_the_report(tmp_path):
    """Issue 23: every seed of CE-CLIP scores 100 * 25 / 26 on add-obj; mean - min is -1.4e-14 in floating point and
    matplotlib refused the whisker ('yerr' must not contain negative values). Fails on the code before the fix."""
    v = 100 * 25 / 26
    doc = _document({"clip": [_record("clip", s, 60.0) for s in (0, 1, 2)],
                     "ceclip": [_record("ceclip", s, 60.0, {"add_obj": v, "replace_obj": 100 / 3}) for s in (0, 1, 2)]})
    assert statistics.fmean([v] * 3) - min([v] * 3) < 0  # the rounding that broke the plot is still there
    assert doc["ceclip"]["spread"]["add_obj"] == 0.0 and doc["ceclip"]["categories"]["add_obj"] == v
    page = write_report(tmp_path / "report.html", doc, CATEGORIES, {}).read_text()
    assert re.search(r"<td>(<b>)?96\.2 ± 0\.0(</b>)?</td>", page) and page.count("<img") >= 3
    lines = []
    print_tables(doc, lines.append)
    assert any("96.2 ± 0.0" in ln for ln in lines)


def _demo_folder(root: Path, world_seed: int = 1, name: str = "demo") -> Path:
    """The files a demo leaves (results, provenance with its world, similarities, run curves), small."""
    out = root / name
    records = {m: [_record(m, s, 50.0 + 10 * (m != "clip")) for s in (0, 1)] for m in ("clip", "tripletclip")}
    for m, rs in records.items():
        for r in rs:
            run = out / "runs" / f"{m}-seed{r['seed']}"
            run.mkdir(parents=True)
            run.joinpath("metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss/loss": 4.0 - s / 10}) + "\n"
                                                             for s in (0, 4, 8)))
            r["run_dir"] = str(run)
    doc = _document(records)
    from tripletclip.world import spec_preset

    spec = spec_preset("demo", seed=world_seed).to_json()
    meta = {"preset": "demo", "summary": "finetune regime: 2 seeds", "run_config": {"train": {"steps": 150,
                                                                                              "batch_size": 32}},
            "world": {"format": "tripletclip-world/1", "generator_version": "world/1", "seed": world_seed,
                      "image_size": 48, "spec": spec, "bench": {"counts": {c: {"seen": 100, "heldout": 100}
                                                                           for c in CATEGORIES}}}}
    out.joinpath("results.json").write_text(json.dumps(doc, indent=1))
    out.joinpath("demo_meta.json").write_text(json.dumps(meta))
    out.joinpath("similarities.json").write_text(json.dumps(
        {m: {k: [0.5, 0.6, 0.7] for k in ("text", "vision", "cross_pos", "cross_neg")} for m in records}))
    return out


def test_report_command_renders_a_demo_folder_as_the_demo_does(tmp_path):
    out = _demo_folder(tmp_path)
    demo_page = write_report_or_say(out).read_bytes()  # what run_demo calls last, on the files it wrote
    result = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "again.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again.html").read_bytes() == demo_page
    page = demo_page.decode()
    assert "Training curves" in page and "TripletCLIP Fig. 3" in page and "<mark>" in page  # every input used
    assert "Left out" not in page
    # a section whose input is absent is left out, with one line saying so
    (out / "similarities.json").unlink()
    shutil.rmtree(out / "runs")
    page = report([out]).read_text()
    assert "<h2>Cosine similarity" not in page and "Training curves</h2>" not in page
    assert "Similarity histograms (TripletCLIP Fig. 3): left out, no similarities.json in" in page
    assert "Training curves: left out, no runs/*/metrics.jsonl" in page


def test_report_refuses_a_folder_without_results_in_one_line(tmp_path):
    (tmp_path / "notes.json").write_text('{"a": 1}')
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith("Error: ") and "results.json" in line
    assert "tripletclip-eval/1" in line and str(tmp_path) in line
    with pytest.raises(NotFoundError):
        report([tmp_path / "missing"])
    (tmp_path / "results.json").write_text('{"regime": "finetune"')
    with pytest.raises(InputError, match="not valid JSON"):
        report([tmp_path])


def _eval_doc(level: float, manifest: str | None = None) -> dict:
    """An ``eval --out`` document of the world benchmark, in the shape run_eval writes (fractions)."""
    def sc(offset: float) -> dict:
        subs = {c: {"accuracy": (level + i + offset) / 100, "correct": 1, "rows": 28} for i, c in enumerate(CATEGORIES)}
        return {"subsets": subs, "headline": {"mean": statistics.fmean(s["accuracy"] for s in subs.values()),
                                              **{c: s["accuracy"] for c, s in subs.items()}}}
    wino = {"subsets": {"all": {"text": 0.3, "rows": 24}}, "headline": {"text": 0.3, "image": 0.2, "group": 0.1}}
    parts = {"sugarcrepe_seen": sc(0), "sugarcrepe_heldout": sc(-10), "winoground_seen": wino,
             "retrieval": {"subsets": {"i2t": {}}, "headline": {"i2t_r1": 0.05, "t2i_r1": 0.04}}}
    return {"format": "tripletclip-eval/1", "unit": "fraction", "model": {"model": {"name": "world-cnn"}},
            "benchmarks": {"world": {"subsets": parts, "headline": {},
                                     "annotations": [{"path": "x.json", "sha256": "ab" * 32, "rows": 28}],
                                     "manifest": {"path": manifest} if manifest else None}}}


def test_eval_files_render_one_method_per_file(tmp_path):
    (tmp_path / "clip.json").write_text(json.dumps(_eval_doc(60.0)))
    (tmp_path / "tc.json").write_text(json.dumps(_eval_doc(70.0)))
    page = report([tmp_path]).read_text()
    # percent, one row per file; one evaluation of 28 rows per category: the 95% Wilson interval, not a spread
    assert "<td>CLIP</td><td>60.0 [41.7, 75.9]</td>" in page and "<td>tc</td><td><b>70.0 [51.5, 83.7]</b></td>" in page
    assert "held-out compositions" in page and "<td>30.0</td>" in page  # Winoground text 0.3
    assert "Highest 7-category mean: tc 73.0%" in page
    one = report([tmp_path / "tc.json"])
    assert one == tmp_path / "tc.html" and "<td>tc</td><td>70.0 [51.5, 83.7]</td>" in one.read_text()  # alone: not bold
    (tmp_path / "other.txt.json").write_text('{"x": 1}')
    with pytest.raises(InputError, match="not a results file"):
        report([tmp_path / "other.txt.json"])


def test_runs_side_by_side_where_their_benchmarks_match(tmp_path):
    a, b = _demo_folder(tmp_path, 1, "a"), _demo_folder(tmp_path, 1, "b")
    other = _demo_folder(tmp_path, 3, "c")
    page = report([a, b], tmp_path / "ab.html").read_text()
    assert "Compared on: seen compositions, held-out compositions, winoground, retrieval." in page
    assert "<td>a: clip</td>" in page and "<td>b: tripletclip</td>" in page and "not compared" not in page
    page = html.unescape(report([a, other], tmp_path / "ac.html").read_text())
    assert "Split 'seen compositions' not compared: its benchmark differs between runs (a: world seed 1" in page
    assert "c: world seed 3" in page and "<td>a: clip</td><td>50.0" not in page  # no accuracy table shared
    assert "No split was measured on the same benchmark in every run" in page


def test_a_failed_report_keeps_the_results_and_names_the_command(tmp_path, monkeypatch, capsys):
    out = _demo_folder(tmp_path)

    def broken(*args, **kwargs):
        raise ValueError("'yerr' must not contain negative values")

    monkeypatch.setattr(render, "write_report", broken)
    with pytest.raises(ReportFailed) as err:
        write_report_or_say(out)
    assert isinstance(err.value, UserError) and isinstance(err.value.__cause__, ValueError)
    assert "Traceback" in capsys.readouterr().err  # the bug keeps its traceback
    assert f"the results are kept in {out}/" in str(err.value) and f"`tripletclip report {out}`" in str(err.value)
    assert (out / "results.json").is_file() and not (out / "report.html").exists()

    # through the CLI: the traceback, then ONE line with the folder and the command, exit status 1
    import tripletclip.demo

    monkeypatch.setattr(tripletclip.demo, "run_demo", lambda out_dir, **kw: write_report_or_say(Path(out_dir)))
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    tail = result.output.rstrip().splitlines()
    assert "ValueError: 'yerr' must not contain negative values" in result.output
    assert tail[-1].startswith("Error: the report failed") and tail[-1].endswith(f"`tripletclip report {out}`")


def test_extra_splits_methods_and_zeroshot_render_without_a_fixed_list(tmp_path):
    recs = {m: [_record(m, s, 55.0) for s in (0, 1)] for m in ("clip", "fscclip")}
    for m, rs in recs.items():
        for r in rs:
            r["scores"]["transfer"] = {**{c: 40.0 for c in CATEGORIES[:3]}, "mean": 40.0}
            r["scores"]["paraphrase"] = {"swap_obj": 70.0, "mean": 70.0}
    doc = _document(recs)
    doc["fscclip"]["zeroshot"] = {"cifar10": {"accuracy": 81.0, "change_vs_base": -1.5}}
    assert doc["clip"]["transfer"]["categories"] == {c: 40.0 for c in CATEGORIES[:3]}
    assert "transfer_mean" in doc["paired"]["fscclip"]["clip"]
    page = write_report(tmp_path / "r.html", doc, CATEGORIES, {}).read_text()
    for heading in ("benchmark: transfer", "benchmark: paraphrased captions", "Zero-shot classification"):
        assert heading in page
    assert "<td>FSC-CLIP</td>" in page and "<td>81.0</td><td>-1.5</td>" in page and ">transfer-mean</th>" in page
    lines = []
    print_tables(doc, lines.append)
    lines = [ln.strip() for ln in lines]
    assert any(ln.startswith("transfer") for ln in lines) and any(ln.startswith("paraphrased") for ln in lines)


def test_next_steps_name_the_long_preset_other_worlds_and_real_data():
    doc = _document({"clip": [_record("clip", 0, 50.0)]})
    doc["clip"]["steps"] = 12
    quick = " ".join(next_steps(doc, {"preset": "demo-quick", "world": {"seed": 1}}))
    assert "smoke run (12 steps)" in quick and "<code>tripletclip demo</code>" in quick
    for command in ("tripletclip demo --preset demo-long", "tripletclip demo --world-seed 2",
                    "tripletclip train", "tripletclip eval"):
        assert command in quick
    doc["clip"]["steps"] = 1000
    long = " ".join(next_steps(doc, {"preset": "demo-long", "world": {"seed": 1}}))
    assert "demo-long" not in long and "smoke" not in long and "--world-seed 2" in long


def test_one_threshold_definition_for_the_report_and_the_readme():
    """Issue 20: the README said the base perceives at replace-att 89 while the report said it does not (target
    90%). The README states the report's definition verbatim, and its numbers agree with it."""
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert regime_definition() in readme
    base = re.search(r"The CLIP base perceives \(replace-obj (\d+), held-out \d+; replace-att (\d+)", readme)
    assert base and min(int(base.group(1)), int(base.group(2))) >= PERCEIVES_AT
    # the README's base row at world seed 1: replace-obj 93.0, replace-att 89.0, swaps 46.0 / 54.2
    entry = {"seen": {"per_seed": {"0": {"replace_obj": 93.0, "replace_att": 89.0, "swap_obj": 46.0,
                                         "swap_att": 54.2}}}}
    text = verdict({"regime": "finetune", "clip": entry, "base": entry})
    assert "CLIP is in the bag-of-words regime: it perceives" in text and "does not yet perceive" not in text
    assert f"at most {BAG_OF_WORDS_CEILING:.0f}%" in text


# --- the transfer / paraphrase splits' paired differences and the claims (issue 17 items 4-5) ---------------------

TRANSFER = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


def _transfer_record(method: str, seed: int, swap: float, rel: float = 50.0, seen_swap: float = 55.0) -> dict:
    """A run record with the seen split (swap at ``seen_swap``) and both transfer splits, as jobs.run_job writes."""
    rec = _record(method, seed, 60.0, {"swap_obj": seen_swap + seed, "swap_att": seen_swap - seed})
    cats = {"replace_obj": 92.0, "replace_att": 99.0, "replace_rel": rel + seed, "swap_obj": swap + 2 * seed,
            "swap_att": swap - seed}
    para = {c: v - 5 for c, v in cats.items()}
    rec["transfer_scores"] = {sp: {**s, "mean": statistics.fmean(s.values())}
                              for sp, s in (("transfer", cats), ("paraphrase", para))}
    rec["transfer_winoground"] = {sp: {"text": 40.0, "image": 30.0 + seed, "group": 25.0} for sp in ("transfer", "paraphrase")}
    return rec


def _transfer_document(records: dict[str, list[dict]]) -> dict:
    """results.json as the demo writes it: seen-split entries and paired, then the transfer blocks (demo/run.py)."""
    from tripletclip.demo.run import _add_transfer

    doc = _document(records)
    counts = {c: {"transfer": 300, "paraphrase": 300} for c in TRANSFER}
    flat = [r for rs in records.values() for r in rs]
    _add_transfer(doc, flat, list(records), {"counts": counts})
    return doc


def _section_rows(page: str, heading: str) -> dict[str, str]:
    """{row label: the row's cells} of the table that follows ``heading`` (up to the next heading)."""
    start = page.index(heading)
    end = min([i for i in (page.find("<h2>", start + 1), page.find("<h3>", start + 1)) if i > 0] or [len(page)])
    return {html.unescape(m.group(1)): m.group(2)
            for m in re.finditer(r"<tr><td>([^<]*)</td>(.*?)</tr>", page[start:end], flags=re.S)}


def test_transfer_and_paraphrase_paired_tables_show_mean_seeds_error_and_verdict(tmp_path):
    recs = {"clip": [_transfer_record("clip", s, 55.0) for s in (0, 1, 2)],
            "negclip": [_transfer_record("negclip", s, 56.0) for s in (0, 1, 2)],
            "tripletclip": [_transfer_record("tripletclip", s, 75.0 + s, seen_swap=80.0) for s in (0, 1, 2)]}
    doc = _transfer_document(recs)
    page = write_report(tmp_path / "r.html", doc, CATEGORIES, {}).read_text()
    for split, label in (("transfer", "transfer"), ("paraphrase", "paraphrased captions")):
        assert f"<h2>Paired differences on the {label} split (points)</h2>" in page
        assert "300 rows per category, 1500 in all; swap mean 600; 750 Winoground-style groups" in page
        rows = _section_rows(page, f"<h3>{label}: vs CLIP</h3>")
        assert set(rows) == {"NegCLIP", "TripletCLIP"}  # CLIP is the reference, never its own row
        d = doc["tripletclip"][split]["paired"]["clip"]["swap_mean"]
        # the swap mean column: +20 + s on seed s, recorded error, the per-seed values; real
        assert d["real"] and [round(v, 1) for v in d["per_seed"].values()] == [20.0, 21.0, 22.0]
        cell = f"+21.0 <span class='real'>real</span><br><small>±{d['sampling_error']:.1f}</small><br><small>+20.0, +21.0, +22.0</small>"
        assert cell in rows["TripletCLIP"]
        noise = doc["negclip"][split]["paired"]["clip"]["swap_mean"]
        assert not noise["real"] and f"+1.0 <span class='noise'>noise</span><br><small>±{noise['sampling_error']:.1f}" in rows["NegCLIP"]
        assert set(_section_rows(page, f"<h3>{label}: vs NegCLIP</h3>")) == {"CLIP", "TripletCLIP"}
    head = page[page.index("<h3>transfer: vs CLIP</h3>"):]
    assert ">5-category mean</th>" in head.split("</thead>")[0] and ">swap mean</th>" in head.split("</thead>")[0]

    from tripletclip.report.claims import transfer_claims

    claims = {c.split(":")[0]: (holds, ev) for c, holds, ev in transfer_claims(doc)}
    assert claims["bag-of-words failure"][0] == "yes" and "swap mean 55.5 ± 4.0 (600 rows)" in claims["bag-of-words failure"][1]
    assert "(600 rows)" in claims["bag-of-words failure"][1] and "replace-obj 92.0 [" in claims["bag-of-words failure"][1]
    assert claims["cure"][0] == "partly: TripletCLIP"
    assert claims["relations"][0].startswith("no: every interval reaches chance") and "(300 rows)" in claims["relations"][1]
    assert claims["TripletCLIP vs NegCLIP"][0] == "TripletCLIP ahead"
    assert claims["transfer"][0] == "yes; paraphrases: TripletCLIP real"
    assert "On the transfer split, claim by claim: bag-of-words failure: yes; cure: partly: TripletCLIP" in page
    assert "What holds where nothing was trained (transfer split)" in page
    # with a transfer split the seen split is a diagnostic: its regime and differences are named as the seen split's
    opening = html.unescape(page[page.index("<p class='verdict'>"):page.index("</p>", page.index("<p class='verdict'>"))])
    assert "On the seen split (a diagnostic: its foils come from the training negatives' own generator), CLIP" in opening
    assert "Real changes against CLIP on the seen split (points): on the swap mean TripletCLIP +25.0" in opening


def test_transfer_paired_table_with_one_seed_and_a_missing_method(tmp_path):
    """One training seed, no NegCLIP, and a method whose run has no transfer scores: a vs-CLIP table with the one
    row that has a difference (one per-seed value), no vs-NegCLIP table, no row for the method without a block."""
    recs = {"clip": [_transfer_record("clip", 0, 55.0)], "tripletclip": [_transfer_record("tripletclip", 0, 58.0)],
            "negimage": [_record("negimage", 0, 60.0)]}
    doc = _transfer_document(recs)
    assert doc["negimage"].get("transfer") is None  # the demo records the split as absent (None)
    page = write_report(tmp_path / "r.html", doc, CATEGORIES, {}).read_text()
    rows = _section_rows(page, "<h3>transfer: vs CLIP</h3>")
    assert set(rows) == {"TripletCLIP"}
    d = doc["tripletclip"]["transfer"]["paired"]["clip"]["swap_mean"]
    assert list(d["per_seed"]) == ["0"] and d["mean"] == pytest.approx(3.0)
    verdict_word = "real" if d["real"] else "noise"
    assert (f"+3.0 <span class='{verdict_word}'>{verdict_word}</span><br><small>±{d['sampling_error']:.1f}</small>"
            f"<br><small>+3.0</small>") in rows["TripletCLIP"]
    assert not d["real"]  # +3.0 on 600 rows is inside the sampling error
    assert "vs NegCLIP</h3>" not in page
    from tripletclip.report.claims import transfer_claims

    claims = {c.split(":")[0]: holds for c, holds, _ in transfer_claims(doc)}
    assert claims["TripletCLIP vs NegCLIP"] == "not measured" and claims["cure"] == "no"
    # a document without transfer blocks has neither the tables nor the claims
    plain_doc = _document({m: [_record(m, 0, 50.0)] for m in ("clip", "tripletclip")})
    plain = write_report(tmp_path / "p.html", plain_doc, CATEGORIES, {}).read_text()
    assert "split (points)</h2>" not in plain and "claim by claim" not in plain and "nothing was trained (transfer" not in plain
    opening = verdict(plain_doc)
    assert "On the seen split" not in opening and "hard negatives have not changed what the model binds" in opening
