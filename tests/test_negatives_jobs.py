"""Text job I/O: input formats, sharding by --shard and by env ranks, kill + resume, config pinning."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tripletclip.data.contract import DataError
from tripletclip.negatives.io import CaptionColumns, CaptionInput
from tripletclip.negatives.jobs import JobError, resolve_shard
from tripletclip.negatives.text_job import TextJobOptions, run_text

CAPTIONS = [
    "A red car parked next to a blue bus.", "A dog sitting on a couch.", "Two cats sleeping on a bed.",
    "A man riding a horse on a beach.", "A woman holding an umbrella in the rain.", "A plate with a sandwich and a cup.",
    "A boy throwing a frisbee in a park.", "An orange cat next to a white dog.", "A bowl of fruit on a wooden table.",
    "A train crossing a bridge over a river.", "Three sheep grazing in a green field.", "A laptop on a desk near a lamp.",
]
RULES = {"types": "sugarcrepe", "per_caption": 2, "tagger": "lexicon"}


def rules_job(spec: str, out: Path, chunk_size: int, options: dict = RULES, **job: Any) -> TextJobOptions:
    return TextJobOptions(inp=spec, out=str(out), generator_options=options, columns=CaptionColumns(chunk_size=chunk_size),
                          **job)


def rows(n: int = 36) -> list[dict[str, str]]:
    return [{"key": f"img{i:04d}", "caption": CAPTIONS[i % len(CAPTIONS)], "image": f"images/{i}.jpg"} for i in range(n)]


def read_out(out: Path) -> list[dict]:
    return [r for p in sorted(out.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def write_inputs(tmp: Path) -> dict[str, str]:
    data = rows()
    paths = {}
    pq.write_table(pa.Table.from_pylist(data), tmp / "in.parquet")
    paths["parquet"] = str(tmp / "in.parquet")
    (tmp / "in.csv").write_text("key,caption,image\n" + "".join(f'{r["key"]},"{r["caption"]}",{r["image"]}\n' for r in data))
    paths["csv"] = str(tmp / "in.csv")
    (tmp / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    paths["jsonl"] = str(tmp / "in.jsonl")
    for s in range(3):  # webdataset: 3 tars of 12 samples with an image member each
        with tarfile.open(tmp / f"wds-{s:03d}.tar", "w") as tar:
            for r in data[s * 12 : (s + 1) * 12]:
                for name, payload in ((f"{r['key']}.txt", r["caption"].encode()), (f"{r['key']}.jpg", b"\xff\xd8\xff fake")):
                    ti = tarfile.TarInfo(name)
                    ti.size = len(payload)
                    tar.addfile(ti, io.BytesIO(payload))
    paths["wds"] = str(tmp / "wds-{000..002}.tar")
    return paths


def test_all_input_formats_give_the_same_negatives(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path)
    results = {}
    for kind, spec in paths.items():
        m = run_text(rules_job(spec, tmp_path / f"out-{kind}", 10))
        assert m["complete"] and m["rows"] == 36
        got = read_out(tmp_path / f"out-{kind}")
        assert {"key", "caption", "neg_caption", "edit_type", "generator"} <= set(got[0])
        results[kind] = [(r["key"], r["neg_caption"], r["edit_type"]) for r in got]
        assert sum(m["edit_types"].values()) == m["negatives"] == len(got)
        assert all(r["image"] for r in got)  # the positive image reference is carried to the image stage
    assert results["csv"] == results["parquet"] == results["jsonl"] == results["wds"]
    wds_img = read_out(tmp_path / "out-wds")[0]["image"]
    assert wds_img.endswith("wds-000.tar#img0000.jpg")


def test_shards_partition_the_rows_and_env_ranks_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_inputs(tmp_path)["parquet"]
    run_text(rules_job(spec, tmp_path / "single", 5))
    for i in range(3):
        m = run_text(rules_job(spec, tmp_path / "sharded", 5, shard=f"{i}/3"))
        assert m["last_run"]["units_run"] == len(range(i, 8, 3))
    assert m["complete"]
    assert read_out(tmp_path / "single") == read_out(tmp_path / "sharded")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert resolve_shard() == (1, 4)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_shard() == (2, 3)  # torchrun's variables win over SLURM's
    with pytest.raises(JobError, match="i/N"):
        resolve_shard("3")


def test_a_killed_job_resumes_without_duplicates_or_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_inputs(tmp_path)["parquet"]
    run_text(rules_job(spec, tmp_path / "ref", 4))
    import tripletclip.negatives.text_job as tj

    real = tj.write_parquet_atomic
    calls = {"n": 0}

    def dying(cols, path, metadata=None):  # the 4th unit dies half-way through writing its parquet
        calls["n"] += 1
        if calls["n"] == 4:
            path.with_name(f".{path.name}.tmp-999").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(cols, path, metadata)

    monkeypatch.setattr(tj, "write_parquet_atomic", dying)
    with pytest.raises(KeyboardInterrupt):
        run_text(rules_job(spec, tmp_path / "out", 4))
    monkeypatch.setattr(tj, "write_parquet_atomic", real)
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 3
    m = run_text(rules_job(spec, tmp_path / "out", 4))
    assert m["complete"] and m["last_run"]["units_run"] == 6 and m["last_run"]["units_skipped_done"] == 3
    assert read_out(tmp_path / "out") == read_out(tmp_path / "ref")
    assert not list((tmp_path / "out").glob(".*tmp*"))  # the killed unit's partial file is gone
    m2 = run_text(rules_job(spec, tmp_path / "out", 4))
    assert m2["last_run"]["units_run"] == 0 and read_out(tmp_path / "out") == read_out(tmp_path / "ref")


def test_a_different_job_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    spec = write_inputs(tmp_path)["parquet"]
    run_text(rules_job(spec, tmp_path / "out", 10))
    with pytest.raises(JobError, match="per_caption differs"):
        run_text(rules_job(spec, tmp_path / "out", 10, {**RULES, "per_caption": 1}))
    m = run_text(rules_job(spec, tmp_path / "out", 10, {**RULES, "per_caption": 1}, overwrite=True))
    assert m["negatives"] == 36


def test_bad_inputs_fail_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,text\n1,a dog\n")
    with pytest.raises(DataError, match="no column 'key'.*--key-col"):
        CaptionInput(str(tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("key,caption\n1,a dog\n1,a cat\n2,\n")
    with pytest.raises(DataError, match="key '1' repeats"):
        CaptionInput(str(tmp_path / "b.csv"))
    (tmp_path / "c.csv").write_text("key,caption\n1,a dog\n2,\n")
    src = CaptionInput(str(tmp_path / "c.csv"))
    assert [r.key for r in src.read(0)] == ["1"] and src.skipped == {"empty_caption": 1}  # counted, not lost
    with pytest.raises(DataError, match="missing.parquet: not found"):
        CaptionInput(str(tmp_path / "missing.parquet"))


def test_cli_text_and_stats(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tripletclip.cli import main

    spec = write_inputs(tmp_path)["csv"]
    runner = CliRunner()
    r = runner.invoke(main, ["negatives", "text", "--in", spec, "--out", str(tmp_path / "o"), "--types", "ceclip",
                             "--tagger", "lexicon", "--shard", "0/1"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["config"]["generator"]["per_caption"] == 4 and m["complete"]
    assert set(m["edit_types"]) <= {"swap_obj", "swap_att", "replace_att", "replace_obj", "replace_rel"}
    r = runner.invoke(main, ["negatives", "stats", "--in", str(tmp_path / "o"), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "edit_types.png").exists()
    r = runner.invoke(main, ["negatives", "text", "--in", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "nope.csv: not found (--in)" in r.output and "Traceback" not in r.output
