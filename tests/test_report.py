"""The HTML report from synthetic results in the demo's results.json schema (no training needed): tables, verdict,
provenance, gallery, and the page as a real headless Chromium renders it at 1400 and 900 px."""
from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tripletclip.report import method_items, text_table, verdict, write_report
from tripletclip.report.labels import PAIRED_METRICS
from tripletclip.report.summary import provenance_rows
from tripletclip.report.tables import html_table
from tripletclip.world.gallery import edited_words, gallery_entries

CATEGORIES = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
SEEDS = ("0", "1", "2")
# sampling error (points) per paired metric: it grows as the rows a metric rests on shrink
ERR = {"mean": 5.2, "heldout_mean": 5.2, "swap_mean": 9.8, "replace_rel": 13.9, "wino_image": 5.0, "wino_group": 5.0,
       "i2t_r1": 4.0}


def _entry(levels: dict[str, float], seed_shift: dict[str, float]) -> dict:
    """A method entry as demo/run.py's ``aggregate`` writes it: per-seed percentages and their aggregates."""
    def split(offset: float) -> dict:
        per_seed = {}
        for s in SEEDS:
            rec = {c: levels[c] + offset + seed_shift[s] for c in CATEGORIES}
            rec["mean"] = statistics.fmean(rec[c] for c in CATEGORIES)
            per_seed[s] = rec
        keys = list(CATEGORIES) + ["mean"]
        mean = {k: statistics.fmean(p[k] for p in per_seed.values()) for k in keys}
        spread = {k: (max(p[k] for p in per_seed.values()) - min(p[k] for p in per_seed.values())) / 2 for k in keys}
        return {"mean": mean["mean"], "categories": {c: mean[c] for c in CATEGORIES}, "spread": spread,
                "per_seed": per_seed}

    seen, held = split(0.0), split(-3.0)
    wino = {s: {"text": levels["wino"] + 5, "image": levels["wino"] + seed_shift[s], "group": levels["wino"] - 5}
            for s in SEEDS}
    ret = {s: {"i2t_r1": levels["r1"] + seed_shift[s], "t2i_r1": levels["r1"] - 2} for s in SEEDS}
    return {**{k: seen[k] for k in ("mean", "categories", "spread", "per_seed")}, "seen": seen, "heldout": held,
            "winoground": {"per_seed": wino, **{k: statistics.fmean(w[k] for w in wino.values()) for k in ("text", "image", "group")}},
            "retrieval": {"per_seed": ret, "i2t_r1": statistics.fmean(r["i2t_r1"] for r in ret.values()), "t2i_r1": levels["r1"] - 2},
            "steps": 300, "pairs_seen": 19200, "synthetic_images_seen": 0, "train_time_s": 120.0,
            "seeds": [int(s) for s in SEEDS], "run_dirs": []}


def _levels(perceive: float, bind: float, rel: float, wino: float, r1: float) -> dict[str, float]:
    return {"replace_obj": perceive + 2, "replace_att": perceive, "replace_rel": rel, "swap_obj": bind,
            "swap_att": bind + 2, "add_obj": 90.0, "add_att": 85.0, "wino": wino, "r1": r1}


def _paired_metric(entry: dict, ref: dict, metric: str) -> float:
    key = {"mean": ("seen", "mean"), "heldout_mean": ("heldout", "mean"), "replace_rel": ("seen", "replace_rel")}
    if metric == "swap_mean":
        return {s: statistics.fmean(entry["seen"]["per_seed"][s][c] - ref["seen"]["per_seed"][s][c]
                                    for c in ("swap_obj", "swap_att")) for s in SEEDS}
    if metric in ("wino_image", "wino_group"):
        k = metric.split("_")[1]
        return {s: entry["winoground"]["per_seed"][s][k] - ref["winoground"]["per_seed"][s][k] for s in SEEDS}
    if metric == "i2t_r1":
        return {s: entry["retrieval"]["per_seed"][s]["i2t_r1"] - ref["retrieval"]["per_seed"][s]["i2t_r1"] for s in SEEDS}
    part, k = key[metric]
    return {s: entry[part]["per_seed"][s][k] - ref[part]["per_seed"][s][k] for s in SEEDS}


def synthetic_results(regime: str = "finetune", with_base: bool = True) -> dict:
    """results.json of the issue-9 schema: method keys plus ``regime``, ``base`` and ``paired``."""
    results = {
        "clip": _entry(_levels(93.0, 58.0, 52.0, 20.0, 40.0), {"0": 0.0, "1": 1.0, "2": -1.0}),
        "negclip": _entry(_levels(94.0, 80.0, 84.0, 30.0, 42.0), {"0": 0.5, "1": -0.5, "2": 1.0}),
        "negimage": _entry(_levels(93.0, 59.0, 53.0, 22.0, 41.0), {"0": -2.0, "1": 3.0, "2": 0.0}),
        "tripletclip": _entry(_levels(94.5, 81.0, 85.0, 36.0, 47.0), {"0": 0.0, "1": 0.5, "2": -0.5}),
        "ceclip": _entry(_levels(94.0, 79.0, 82.0, 29.0, 41.0), {"0": 1.0, "1": 0.0, "2": 0.0}),
    }
    methods = list(results)
    paired: dict = {}
    for m in methods:
        for ref in ("clip", "negclip"):
            if m == ref:
                continue
            for metric in ("mean", "heldout_mean", "swap_mean", "replace_rel", "wino_image", "wino_group", "i2t_r1"):
                per_seed = _paired_metric(results[m], results[ref], metric)
                vals = list(per_seed.values())
                mean = statistics.fmean(vals)
                same = all(v > 0 for v in vals) or all(v < 0 for v in vals)
                paired.setdefault(m, {}).setdefault(ref, {})[metric] = {
                    "per_seed": per_seed, "mean": mean, "min": min(vals), "max": max(vals), "same_sign": same,
                    "sampling_error": ERR[metric], "real": same and abs(mean) > ERR[metric]}
    results["regime"] = regime
    results["base"] = _entry(_levels(91.0, 55.0, 50.0, 15.0, 35.0), {"0": 0.0, "1": 0.0, "2": 0.0}) if with_base else None
    results["paired"] = paired
    return results


META = {"summary": "5 objectives x 3 seeds at equal compute on the embedded world.",
        "config": {"loss": {"name": "clip"}, "model": {"name": "world-vit-small", "pretrained": ""},
                   "train": {"steps": 300, "batch_size": 64}, "optim": {"lr": 5e-4, "weight_decay": 0.1}},
        "world_spec": {"shapes": 4, "colours": 5, "objects": [1, 2]},
        "world": {"seed": 11, "image_size": 48, "train": {"dataset_hash": "ab" * 32}},
        "code_version": {"package": "0.1.0", "git_commit": "0123456789abcdef", "git_dirty": False},
        "wall_time_s": 341.0}


def _sims(methods):
    return {m: {"text": [0.9, 0.8, 0.85], "vision": [0.7, 0.75, 0.6], "cross_pos": [0.3, 0.32, 0.31],
                "cross_neg": [0.25, 0.3, 0.2]} for m in methods}


def _write(tmp_path: Path, results: dict) -> Path:
    methods = [m for m, _ in method_items(results)]
    curves = {m: {s: [(0, 4.0), (100, 3.0), (300, 2.5)] for s in SEEDS} for m in methods}
    gallery = gallery_entries(per_type=1, seed=3, image_size=48)
    return write_report(tmp_path / "report.html", results, CATEGORIES, META, sims=_sims(methods), curves=curves,
                        gallery=gallery)


# ----------------------------------------------------------------------------------------------- content


def test_non_method_keys_are_not_methods():
    results = synthetic_results()
    assert [m for m, _ in method_items(results)] == ["clip", "negclip", "negimage", "tripletclip", "ceclip"]
    lines = text_table(results, CATEGORIES, "seen").splitlines()
    assert [ln.split()[0] for ln in lines[2:]] == ["base", "clip", "negclip", "negimage", "tripletclip", "ceclip"]
    base_mean = statistics.fmean(results["base"]["per_seed"][s]["mean"] for s in SEEDS)
    assert lines[2].endswith(f"{base_mean:.1f} ± 0.0")  # the base row: its own numbers, first


def test_bold_only_in_score_columns_and_never_for_ties():
    rows = [["a", "10.0 ± 1.0", "0.0", "300"], ["b", "12.0 ± 0.5", "0.0", "300"], ["base", "50.0", "1.0", "9"]]
    out = html_table(["method", "score", "tied", "steps"], rows, score_cols=[1, 2], reference_rows={2})
    assert out.count("<b>") == 1 and "<b>12.0 ± 0.5</b>" in out  # the reference row never competes; ties: none


def test_verdict_states_regime_and_paired_differences():
    text = verdict(synthetic_results())
    assert "Fine-tuning regime" in text
    assert ("CLIP is in the bag-of-words regime: it perceives objects and attributes (replace-obj 95.0%, "
            "replace-att 93.0%) but does not bind them to each other (swap mean 59.0%, at most 65%); so is the "
            "pretrained base (replace-obj 93.0%") in text
    # NegCLIP's swap gain over CLIP is about +22 points on every seed: real; NegImage's +1.3 is within noise
    assert ("Real changes against CLIP (points): on the swap mean NegCLIP +22.3, TripletCLIP +23.0 and CE-CLIP "
            "+21.3; on the 7-category mean NegCLIP +11.5") in text and "NegImage" not in text
    assert "TripletCLIP against NegCLIP, real: Wino image +5.7, Wino group +6.0 and i2t R@1 +4.7." in text
    # the noise is one compact statement, not a list: 4 methods x 7 metrics vs CLIP + 4 x 7 vs NegCLIP
    n_real = sum(d["real"] for refs in synthetic_results()["paired"].values() for b in refs.values()
                 for k, d in b.items() if k in PAIRED_METRICS)
    assert f"{n_real} of the 56 paired differences in the tables below are real; the other {56 - n_real} are noise" \
        in text and text.count("noise") == 1
    assert text.count("sampling error") == 1 and "±5.2 points for the 7-category mean and ±9.8 points for the swap" in text


def test_verdict_when_clip_does_not_perceive():
    results = synthetic_results()
    for rec in results["clip"]["seen"]["per_seed"].values():
        rec["replace_obj"] = 60.0
    assert "CLIP does not yet perceive objects and attributes (replace-obj 60.0%" in verdict(results)
    assert "the pretrained base is in the bag-of-words regime" in verdict(results)


def test_verdict_without_paired_differences_says_so():
    results = synthetic_results(regime="scratch", with_base=False)
    del results["paired"]
    text = verdict(results)
    assert "From-scratch regime" in text and "No paired per-seed differences were recorded" in text


def test_provenance_summary_names_what_produced_the_numbers():
    rows = dict(provenance_rows(synthetic_results(), META))
    assert rows["objectives"].startswith("CLIP, NegCLIP, NegImage, TripletCLIP, CE-CLIP")
    assert rows["steps x batch"] == "300 x 64" and rows["model"] == "world-vit-small" and rows["seeds"] == "0, 1, 2"
    assert "world seed 11" in rows["world"] and rows["code version"] == "tripletclip 0.1.0, git 0123456789"
    assert rows["data hash"] == "ab" * 32


def test_provenance_reads_the_demo_meta_of_a_finetuning_run():
    meta = {"run_config": {"model": {"name": "world-cnn", "pretrained": "/cache/base/model.safetensors"},
                           "train": {"steps": 12, "batch_size": 32}},
            "demo_config": {"world_spec": "demo"}, "world_spec": {"shapes": ["circle", "star"], "p_colour": None},
            "base": {"weights_sha256": "06c02adb5e8b" + "0" * 52, "reproduce": "tripletclip world pretrain --world-seed 1"}}
    rows = dict(provenance_rows(synthetic_results(), meta))
    assert rows["steps x batch"] == "12 x 32" and rows["world"] == "demo spec, 2 shapes"
    assert rows["model"] == ("world-cnn, fine-tuned from the pretrained base (weights 06c02adb5e8b…; "
                             "`tripletclip world pretrain --world-seed 1`)")
    assert rows["code version"] == "not recorded"  # never guessed


def test_gallery_marks_runs_of_edited_words():
    from tripletclip.report.html import _marked

    words = "a cross is over a triangle, and a yellow star".split()
    assert _marked(words, {6, 7, 8, 9}) == "a cross is over a triangle, <mark>and a yellow star</mark>"
    assert _marked(["a", "<b>", "c"], {1}) == "a <mark>&lt;b&gt;</mark> c"


def test_edited_words_mark_the_edit():
    assert edited_words("a red cube left of a blue ball", "a blue cube left of a red ball") == (1, 6)
    assert edited_words("a red cube", "a red striped cube") == (2,)
    assert edited_words("a star on grass", "a star, and a moon on grass") == (2, 3, 4)  # not the moved comma
    assert edited_words("a cube below a ball", "a cube to the right of a ball") == (2, 3, 4, 5)


def test_report_page_content(tmp_path):
    page = _write(tmp_path, synthetic_results()).read_text()
    body = page.split("<body>", 1)[1]
    assert body.index("class='verdict'") < body.index("<details>") < body.index("Fig. 1")
    assert body.index("Fig. 1") < body.index("Paired differences") < body.index("benchmark: seen compositions")
    assert "per run: clip, negclip, negimage, tripletclip, ceclip" in page  # never one config's loss for five
    assert page.count("<mark>") >= 7  # every gallery row highlights its edit
    assert "<img" in body and not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    # bold only in score cells: never steps, pairs seen or training seconds
    assert not re.search(r"<b>(300|19,200|120)</b>", page)


# ----------------------------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const ext = performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:'));
  const d = document.documentElement;
  const clipped = [...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth).length;
  const pre = document.createElement('pre'); pre.id = 'check';
  pre.textContent = JSON.stringify({images: imgs.length, undecoded: bad, external: ext,
                                    scroll_width: d.scrollWidth, client_width: d.clientWidth, clipped});
  document.body.appendChild(pre);
});
</script></body>"""


def _browser(chrome: str, page: Path, width: int, *args: str) -> subprocess.CompletedProcess:
    # no network at all: every host resolves to nothing, so an external URL could not load even if present
    cmd = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},1600", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("width", [1400, 900])
def test_report_in_headless_chromium(tmp_path, width):
    chrome = _chromium()
    if chrome is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    page = _write(tmp_path, synthetic_results())
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _CHECK, 1))
    dom = _browser(chrome, probe, width, "--virtual-time-budget=5000", "--dump-dom")
    found = re.search(r'<pre id="check">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"chromium printed no check result: {dom.stderr[-2000:]}"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] >= 5 + 2 * 7 and check["undecoded"] == []  # figures + every gallery image decode
    assert check["external"] == []
    assert check["scroll_width"] <= check["client_width"] == width, check  # no horizontal overflow of the page
    assert check["clipped"] == 0, check  # nor of a table inside its scroll box
    shot = tmp_path / f"report-{width}.png"
    _browser(chrome, page, width, f"--screenshot={shot}")
    img = Image.open(shot).convert("L")
    assert img.size == (width, 1600)
    # a margin: the 12 leftmost pixel columns stay background at every width (text never touches the edge)
    left = img.crop((0, 0, 12, img.size[1]))
    assert left.getextrema()[0] >= 250, "page content touches the left edge"


def test_method_names_cover_every_registered_objective_and_variants() -> None:
    """Every registered objective has a display name; a demo variant names each of its parts."""
    from tripletclip.losses import LOSSES
    from tripletclip.report.labels import METHOD_NAMES, method_name
    assert set(LOSSES.names()) <= set(METHOD_NAMES), sorted(set(LOSSES.names()) - set(METHOD_NAMES))
    assert method_name("tripletclip+cyclip") == "TripletCLIP+CyCLIP"
    assert method_name("negclip+distill") == "NegCLIP+distill"
    assert method_name("my-variant") == "my-variant"
