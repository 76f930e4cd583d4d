"""Shards at scale (issue 18 item 6): ``pipe:`` and fsspec URLs, one open per shard pass, shard groups when
shards are fewer than ranks x workers, exact resume of a ``pipe:`` stream through the trainer."""
from __future__ import annotations

import builtins
import gzip
import io
import json
import os
import random
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from tripletclip.config.schema import DataConfig
from tripletclip.data.contract import DataError
from tripletclip.data.loader import build_train_loader
from tripletclip.data.order import shard_assignment, shard_group
from tripletclip.data.shard_reader import ShardTruncated, scan_shard
from tripletclip.data.source import ErrorCounter
from tripletclip.data.tar_stream import stream_samples
from tripletclip.data.testing import HashTokenizer, ResizeToTensor, write_synthetic_shards
from tripletclip.data.urls import expand_shard_urls, shard_name
from tripletclip.data.wds import WdsSource
from tripletclip.errors import InputError

L = 16
N_SHARDS, PER_SHARD = 4, 6


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    """4 shards x 6 samples (s00000..s00023), 16 px, with a manifest."""
    out = tmp_path_factory.mktemp("four")
    write_synthetic_shards(out, n=N_SHARDS * PER_SHARD, shard_size=PER_SHARD, image_size=16)
    return out


ALL_KEYS = sorted(f"s{i:05d}" for i in range(N_SHARDS * PER_SHARD))


# --------------------------------------------------------------------------------------------- URLs, errors
def test_brace_expansion_of_pipes_and_urls(four):
    pipes = expand_shard_urls(f"pipe:cat {four}/train-{{000000..000003}}.tar")
    assert pipes == [f"pipe:cat {four}/train-{i:06d}.tar" for i in range(4)]
    assert [shard_name(p) for p in pipes] == [f"train-{i:06d}.tar" for i in range(4)]
    assert shard_name("pipe:aws s3 cp s3://bucket/x/0007.tar -") == "0007.tar"
    assert shard_name("pipe:curl -s -L https://host/x/0008.tar.gz | zcat") == "0008.tar.gz"
    assert expand_shard_urls("memory://bucket/{a,b}/{08..10}.tar") == [
        f"memory://bucket/{d}/{i}.tar" for d in "ab" for i in ("08", "09", "10")]
    # file:// is a local path: folders and existence checks as before
    local = expand_shard_urls(f"file://{four}")
    assert local == [str(four / f"train-{i:06d}.tar") for i in range(4)] == expand_shard_urls(str(four))
    with pytest.raises(DataError, match="not found"):
        expand_shard_urls(f"file://{four}/nope.tar")
    with pytest.raises(DataError, match="globs are not expanded in URLs"):
        expand_shard_urls("memory://bucket/*.tar")


def test_missing_url_packages_are_one_line_errors(monkeypatch):
    import fsspec

    def missing(scheme):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(DataError, match=r"^data.train 's3://b/0.tar': s3:// needs a package that is not installed "
                                        r"\(Install s3fs to access S3\)$"):
        expand_shard_urls("s3://b/{0..1}.tar")
    monkeypatch.setitem(sys.modules, "fsspec", None)  # not installed at all
    with pytest.raises(DataError, match=r"reading gs:// URLs needs fsspec; pip install 'tripletclip\[urls\]'"):
        expand_shard_urls("gs://b/0.tar")


def _cfg(train: str, **kw) -> DataConfig:
    return DataConfig(type="wds", train=train, shuffle_buffer=kw.pop("shuffle_buffer", 5), **kw)


def _loader(train: str, *, rank: int = 0, world_size: int = 1, batch_size: int = 3, **kw):
    return build_train_loader(_cfg(train, **kw), ResizeToTensor(16), HashTokenizer(L), batch_size=batch_size, seed=0,
                              rank=rank, world_size=world_size, context_length=L)


@pytest.mark.parametrize("command,status,reason", [
    ("no-such-command-tc {d}/train-000000.tar", 127, "not found"),
    ("cat {d}/missing.tar", 1, "No such file"),
    ("sh -c 'cat {d}/train-000000.tar; exit 3'", 3, "no error output"),  # the whole shard, then a failure
])
def test_a_failing_pipe_is_a_one_line_error(four, command, status, reason):
    url = "pipe:" + command.format(d=four)
    with pytest.raises(DataError) as e:
        _loader(url, validate_first=100)
    msg = str(e.value)
    assert msg.startswith(f"{url}: command failed with exit status {status} (") and reason in msg
    assert "\n" not in msg
    # the same from a worker process, after validation: one line too (the loader drops torch's traceback)
    loader = _loader(url, workers=2, validate_first=0)
    with pytest.raises(DataError) as e:
        next(loader)
    loader.close()
    assert str(e.value).startswith(f"{url}: command failed with exit status {status}") and "\n" not in str(e.value)


def test_the_cli_prints_a_failing_pipe_as_one_line(four, tmp_path):
    """`tripletclip train` with a pipe that fails in a data worker, after validation: one `Error:` line, exit 1."""
    from click.testing import CliRunner

    from tripletclip.cli import main

    url = f"pipe:cat {four}/train-{{000000..000001}}.tar {four}/missing.tar"
    result = CliRunner().invoke(main, ["train", f"data.train={url}", "data.workers=1", "data.validate_first=0",
                                       "model.name=test-vit-tiny", "loss.name=clip", "train.batch_size=4",
                                       "train.steps=2", f"train.output_dir={tmp_path}", "train.progress=false",
                                       "train.threads=1"])
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert errors[0].startswith(f"Error: pipe:cat {four}/train-00000") and "command failed with exit status 1" in errors[0]
    assert isinstance(DataError("x"), InputError)


def test_fsspec_urls_read_like_local_files(four):
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(N_SHARDS):
        fs.pipe(f"/tc-test/train-{i:06d}.tar", (four / f"train-{i:06d}.tar").read_bytes())
    try:
        via_url = [next(_loader("memory://tc-test/train-{000000..000003}.tar")) for _ in range(1)]
        local = [next(_loader(str(four / "train-{000000..000003}.tar"))) for _ in range(1)]
        for a, b in zip(via_url, local):
            assert a["key"] == b["key"] and torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"])
        with pytest.raises(DataError, match=r"^memory://tc-test/nope.tar: shard not found"):
            _loader("memory://tc-test/nope.tar")
    finally:
        fs.rm("/tc-test", recursive=True)


# ----------------------------------------------------------------------------------- the tar stream reader
def test_stream_reader_matches_the_header_scan_at_every_cut(four, tmp_path):
    """Against the seek-based scan_shard (brute force): the same samples, member bytes and cut handling for a
    shard cut at every header boundary and at 60 random byte offsets; gzip and tarfile's fallback read too."""
    data = (four / "train-000000.tar").read_bytes()
    cuts = sorted(set(range(0, len(data) + 1, 512)) | set(random.Random(0).sample(range(len(data)), 60)))

    def reference(path: Path):
        out, blob = [], path.read_bytes()
        try:
            for key, members in scan_shard(str(path)):
                out.append((key, {e: blob[o:o + s] for e, (o, s) in members.items()}))
        except ShardTruncated:
            return out, "cut"
        return out, None

    def streamed(blob: bytes):
        out = []
        try:
            out.extend(stream_samples(io.BytesIO(blob)))
        except ShardTruncated:
            return out, "cut"
        return out, None

    cut_file = tmp_path / "cut.tar"
    for c in cuts:
        cut_file.write_bytes(data[:c])
        assert streamed(data[:c]) == reference(cut_file), f"cut at byte {c}"
    whole = reference(four / "train-000000.tar")
    assert len(whole[0]) == PER_SHARD and streamed(gzip.compress(data)) == whole
    # a GNU long-link member (not parsed directly): the rest is read by tarfile in stream mode
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(3):
            if i == 1:
                link = tarfile.TarInfo("link")
                link.type, link.linkname = tarfile.SYMTYPE, "x" * 300
                tf.addfile(link)
            for ext in ("txt", "png"):
                payload = f"{i}.{ext}".encode() * 50
                info = tarfile.TarInfo(f"{'d/' * 60}k{i}.{ext}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    got, err = streamed(buf.getvalue())
    assert err is None
    assert [(k[-2:], m["txt"][:4]) for k, m in got] == [("k0", b"0.tx"), ("k1", b"1.tx"), ("k2", b"2.tx")]


# ---------------------------------------------------------------------------- partition and open counting
def _count_opens(monkeypatch, log: Path) -> None:
    """Every open of a .tar (or a pipe: command started) appends 'pid worker path' to ``log`` (O_APPEND works
    across forked DataLoader workers, whose counts would otherwise stay in their own memory)."""
    import subprocess

    from torch.utils.data import get_worker_info

    def record(what: str) -> None:
        info = get_worker_info()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {info.id if info else -1} {what}\n".encode())
        os.close(fd)

    real_open, real_popen = builtins.open, subprocess.Popen

    def counting_open(file, *a, **kw):
        if str(file).endswith(".tar"):
            record(os.path.basename(str(file)))
        return real_open(file, *a, **kw)

    class CountingPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, cmd, *a, **kw):
            record(os.path.basename(str(cmd).split()[-1]))
            super().__init__(cmd, *a, **kw)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(subprocess, "Popen", CountingPopen)


def test_one_open_per_shard_pass_and_groups_read_one_shard(four, tmp_path, monkeypatch):
    """2 ranks x 4 workers over 4 shards (source level, in process): each logical worker opens one shard once per
    epoch, reading and decoding its samples opens nothing more, and the union over workers is every sample once."""
    log = tmp_path / "opens.log"
    _count_opens(monkeypatch, log)
    src = WdsSource([str(four / f"train-{i:06d}.tar") for i in range(N_SHARDS)], resampled=False)
    assert src.partition_for(8) == "shard_groups"
    for epoch in range(2):
        keys = []
        for g in range(8):
            log.write_text("")
            for raw in src.stream(epoch, g, 8, 0, 4, ErrorCounter()):
                rec = src.load(raw)
                rec.image.read(), [b.read() for b in rec.neg_images]
                keys.append(rec.key)
            opened = log.read_text().split("\n")[:-1]
            assert len(opened) == 1, opened  # one shard, one open
        assert sorted(keys) == ALL_KEYS


@pytest.mark.parametrize("form", ["path", "pipe"])
def test_two_ranks_of_four_workers_consume_each_sample_once(four, tmp_path, monkeypatch, form):
    """The real loader, 4 worker processes per rank: no worker opens every shard, an epoch (4 batches of 3 per
    rank) is every sample exactly once."""
    log = tmp_path / "opens.log"
    _count_opens(monkeypatch, log)
    train = str(four / "train-{000000..000003}.tar")
    train = f"pipe:cat {train}" if form == "pipe" else train
    keys = []
    for rank in range(2):
        loader = _loader(train, rank=rank, world_size=2, workers=4, validate_first=0, prefetch_factor=1)
        keys += [k for _ in range(4) for k in next(loader)["key"]]
        loader.close()
    assert sorted(keys) == ALL_KEYS
    per_worker: dict[tuple[str, str], list[str]] = {}
    for line in log.read_text().splitlines():
        pid, worker, name = line.split()
        per_worker.setdefault((pid, worker), []).append(name)
    assert len(per_worker) == 8 and all(w != "-1" for _, w in per_worker)  # opened in the 8 workers only
    # one open per shard pass: epoch 0's shard, and at most the one of epoch 1 that prefetching started
    assert all(len(names) <= 2 and len(set(names)) < N_SHARDS for names in per_worker.values()), per_worker


@settings(max_examples=120, deadline=None)
@given(n_shards=st.integers(1, 12), ranks=st.integers(1, 4), workers=st.integers(1, 4),
       per_shard=st.lists(st.integers(0, 7), min_size=12, max_size=12), epoch=st.integers(0, 3))
def test_the_assignment_is_a_partition(n_shards, ranks, workers, per_shard, epoch):
    """Over all logical workers of an epoch every (shard, sample) is taken exactly once, and a worker reads at
    most ceil(shards / workers) shards (one when shards are fewer than workers)."""
    G, taken = ranks * workers, []
    for g in range(G):
        if n_shards >= G:
            shards = shard_assignment(n_shards, epoch, 7, g, G)
            assert shards is not None and len(shards) <= -(-n_shards // G)
            taken += [(s, j) for s in shards for j in range(per_shard[s])]
        else:
            s, i, m = shard_group(n_shards, epoch, 7, g, G)
            taken += [(s, j) for j in range(per_shard[s]) if j % m == i]
    assert sorted(taken) == [(s, j) for s in range(n_shards) for j in range(per_shard[s])]


# --------------------------------------------------------------------------------- trainer: exact resume
def _train_cfg(out: Path, name: str, train: str):
    from tripletclip.config import load_config

    return load_config(None, ["data.type=wds", f"data.train={train}", "data.workers=2", "data.shuffle_buffer=5",
                              "model.name=test-vit-tiny", "loss.name=tripletclip", "train.batch_size=4",
                              "train.steps=8", "train.log_every=1", "train.save_every=0", f"train.output_dir={out}",
                              f"train.name={name}", "train.progress=false", "train.threads=1",
                              "optim.warmup_steps=2"])


def test_pipe_stream_trains_and_resumes_bitwise(four, tmp_path, monkeypatch):
    """`pipe:cat DIR/{..}.tar`, 8 steps of 4 over 24 samples (crosses an epoch), stopped after step 3 (the
    preemption path writes the checkpoint), then --resume latest: the same weights and losses as an
    uninterrupted run, and as an uninterrupted run over the same shards read as local paths."""
    from tripletclip.train import train
    from tripletclip.train.preempt import Preemption

    pipe = f"pipe:cat {four}/train-{{000000..000003}}.tar"
    train(_train_cfg(tmp_path, "clean", pipe))
    train(_train_cfg(tmp_path, "local", str(four / "train-{000000..000003}.tar")))
    monkeypatch.setattr(Preemption, "should_stop", lambda self, step: step == 3)
    assert train(_train_cfg(tmp_path, "cut", pipe))["step"] == 3
    monkeypatch.undo()
    assert train(_train_cfg(tmp_path, "cut", pipe), resume="latest")["step"] == 8

    def weights(name: str) -> dict[str, torch.Tensor]:
        return load_file(str(tmp_path / name / "checkpoints" / f"step_{8:08d}" / "model.safetensors"))

    def losses(name: str) -> list[float]:
        return [json.loads(x)["loss/loss"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    clean, cut, local = weights("clean"), weights("cut"), weights("local")
    for k in clean:
        assert torch.equal(clean[k], cut[k]) and torch.equal(clean[k], local[k]), k
    assert losses("clean") == losses("cut") == losses("local") and len(losses("clean")) == 8
    data = json.loads((tmp_path / "clean" / "run.json").read_text())["data"]
    assert data["method"] == "url-list-sha256" and data["files"] == N_SHARDS  # URLs are not downloaded to hash them
