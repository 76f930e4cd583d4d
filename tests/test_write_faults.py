"""Writes that fail and reads that race (issue 19 items 3, 5, 6): disk full and permission errors end in one
line naming the path and the free space with nothing lost; an export holds its checkpoint against the run's
pruning; images over ``data.max_image_pixels`` are bad samples, never decoded."""
from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tripletclip.cli import main
from tripletclip.data.decode import BadSample, Blob, open_image
from tripletclip.train.checkpoint import checkpoint_problem, hold_checkpoint, save_checkpoint, step_folders
from tripletclip.utils.diskfull import WriteError, write_guard


def _save(run: Path, step: int, keep: int = 1) -> Path:
    return save_checkpoint(run, step, torch.nn.Linear(2, 2), {"step": step}, {"config": {}}, keep=keep)


def test_a_held_checkpoint_outlives_the_runs_pruning(tmp_path):
    """`export RUN` while the run pruned old checkpoints: 1 of 8 exports ended in a FileNotFoundError."""
    for step in (1, 2):
        _save(tmp_path, step)
    with hold_checkpoint(tmp_path) as ckpt:
        assert ckpt.name == "step_00000002"
        for step in (3, 4):  # the run goes on saving and pruning (keep=1)
            _save(tmp_path, step)
        assert checkpoint_problem(ckpt) == ""  # still whole while held
        assert [p.name for p in step_folders(tmp_path)] == ["step_00000002", "step_00000004"]
    _save(tmp_path, 5)  # released: the next save prunes it
    assert [p.name for p in step_folders(tmp_path)] == ["step_00000005"]


_FILL = textwrap.dedent("""
    import resource, sys, torch
    from pathlib import Path
    from tripletclip.train.checkpoint import save_checkpoint
    from tripletclip.utils.diskfull import WriteError
    run = Path(sys.argv[1])
    save_checkpoint(run, 1, torch.nn.Linear(4, 4), {"step": 1}, {"config": {}})
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # Python ignores SIGXFSZ: writes get EFBIG
    for model, state in ((torch.nn.Linear(300, 300), {"step": 2}), (torch.nn.Linear(4, 4), {"x": torch.zeros(99_999)})):
        try:
            save_checkpoint(run, 2, model, state, {"config": {}})
        except WriteError as e:
            print(e)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_a_checkpoint_write_over_the_size_limit_is_one_line_and_loses_nothing(tmp_path):
    """`ulimit -f` during a checkpoint: `SafetensorError ... os error 27` (weights) or `RuntimeError ... unexpected
    pos` (train state) instead of what happened; the previous checkpoint stayed intact (keep that)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-c", _FILL, str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2, r.stdout  # the weights, then the train state over the limit
    for line in lines:
        assert line.startswith(f"{tmp_path / 'checkpoints'}: cannot write checkpoint step 2: "), line
        assert "larger than allowed" in line and " free)" in line and "(step_00000001) is intact" in line
    assert "ulimit -f: 200,000 bytes" in lines[1]
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000001"]  # no partial write left
    assert checkpoint_problem(ckpts / "step_00000001") == ""


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied")])
def test_a_negatives_unit_that_cannot_be_written_is_one_line_and_keeps_the_done_units(tmp_path, monkeypatch, code, words):
    from tripletclip.negatives import text_job

    rows = [{"key": f"k{i}", "caption": "a red car next to a blue bus"} for i in range(2)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    real, calls = text_job.write_parquet_atomic, []

    def failing(cols, path, *a):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(code, "refused", str(path))
        real(cols, path, *a)

    monkeypatch.setattr(text_job, "write_parquet_atomic", failing)
    out = tmp_path / "out"
    args = ["negatives", "text", "--in", str(tmp_path / "in.jsonl"), "--out", str(out), "--tagger", "lexicon",
            "--chunk-size", "1"]
    r = CliRunner().invoke(main, args)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert str(out / "part-000001.parquet") in lines[0] and words in lines[0] and " free)" in lines[0]
    assert (out / "part-000000.json").is_file() and not (out / "part-000001.json").exists()
    monkeypatch.setattr(text_job, "write_parquet_atomic", real)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output  # the re-run does the rest
    assert json.loads((out / "manifest.json").read_text())["units_done"] == 2


def test_write_guard_leaves_other_errors_alone(tmp_path):
    with pytest.raises(WriteError, match="read-only"):
        with write_guard(tmp_path, "x"):
            raise OSError(errno.EROFS, "ro")
    with pytest.raises(ValueError):
        with write_guard(tmp_path, "x"):
            raise ValueError("a bug keeps its traceback")


def _png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_an_image_over_the_pixel_cap_is_a_bad_sample_never_decoded():
    """A 13,000 x 13,000 PNG of 164 kB decoded with a warning and doubled the loader's peak memory."""
    data = _png(64)
    assert open_image(Blob(data=data, label="ok"), max_pixels=64 * 64).size == (64, 64)
    # the header alone (the pixel data cut off) is enough to refuse it: nothing was decoded
    with pytest.raises(BadSample, match=r"64 x 64 = 4,096 pixels, over data.max_image_pixels=4,095; not decoded"):
        open_image(Blob(data=data[:60], label="big"), max_pixels=4095)
    with pytest.raises(BadSample, match="undecodable"):  # within the cap, the cut file fails to decode
        open_image(Blob(data=data[:60], label="cut"), max_pixels=64 * 64)


def test_the_loader_counts_images_over_the_cap_as_bad_samples(tmp_path):
    from tripletclip.config import load_config
    from tripletclip.data.decode import DecodeOptions, Record, decode_record

    cfg = load_config(None, ["data.max_image_pixels=1000", "data.train=x.tar"])
    assert cfg.data.max_image_pixels == 1000
    opts = DecodeOptions(seed=0, use_neg_text=False, use_neg_image=False, max_neg_text=0, max_neg_image=0,
                         sample_one_caption=False, sample_negatives=False, max_image_pixels=cfg.data.max_image_pixels)
    rec = Record("k", "s/k", "s, sample 'k'", ["a red square"], Blob(data=_png(32), label="s/k.png"))
    with pytest.raises(BadSample, match="1,024 pixels, over data.max_image_pixels=1,000"):
        decode_record(rec, 0, opts, lambda im: torch.zeros(3, 2, 2))
