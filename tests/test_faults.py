"""Fault injection: what a long run or a generation job really meets, and that nothing is lost or leaked.

Each test breaks something on purpose (a kill mid-checkpoint, a second writer, a damaged checkpoint, a cut tar,
a latin-1 table, a redirecting server, a bad config value, a bug inside a command) and asserts the outcome a
user relies on: the error line and exit code, exact counts, bitwise weights.

Killed runs are children forked from one helper process that imported the trainer once ("zygote"): a fresh
interpreter per kill would spend most of this module's time importing torch and open_clip.
"""
from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from tripletclip.cli import main
from tripletclip.config import load_config
from tripletclip.data.testing import write_synthetic_shards
from tripletclip.data.source import ErrorCounter
from tripletclip.data.wds import WdsSource
from tripletclip.train import train
from conftest import SHARED_BENCHMARKS

STEPS = 8


def _overrides(shards: str, out: Path, name: str, steps: int = STEPS, **extra: Any) -> list[str]:
    return [f"data.train={shards}", "data.workers=0", "model.name=test-vit-tiny", "loss.name=tripletclip",
            "train.batch_size=8", f"train.steps={steps}", "train.log_every=1", "train.save_every=2",
            f"train.output_dir={out}", f"train.name={name}", "train.progress=false", "optim.warmup_steps=2",
            "train.threads=1", *[f"{k}={v}" for k, v in extra.items()]]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def _one_line_error(result: Any) -> str:
    """The error text of a refused command, after checking it is one line and no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped exception
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(out, n=48, shard_size=16, image_size=32)
    return str(out / "train-{000000..000002}.tar")


@pytest.fixture(scope="module")
def clean_run(shards, tmp_path_factory) -> Path:
    """An uninterrupted run with every checkpoint kept: the reference for bitwise comparisons."""
    out = tmp_path_factory.mktemp("clean")
    train(load_config(None, _overrides(shards, out, "clean", **{"train.keep_checkpoints": 0})))
    return out / "clean"


# ------------------------------------------------------------------------------------- damaged checkpoints
def _damage(ckpt: Path, how: str) -> str:
    """Break one file of a checkpoint; returns the fragment the warning must name."""
    weights, state, meta = ckpt / "model.safetensors", ckpt / "train_state.pt", ckpt / "meta.json"
    if how == "garbage weights":
        weights.write_bytes(os.urandom(weights.stat().st_size))
        return "model.safetensors does not match the sha256"
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
        return "model.safetensors has 1000 bytes"
    if how == "empty train state":
        state.write_bytes(b"")
        return "train_state.pt has 0 bytes"
    if how == "broken meta":
        meta.write_text(meta.read_text()[:50])
        return "meta.json is not valid JSON"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["garbage weights", "truncated weights", "empty train state", "broken meta"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(shards, clean_run, tmp_path, caplog, how):
    run = tmp_path / "clean"
    shutil.copytree(clean_run, run)
    for step in (6, 8):  # the newest two are damaged; resume must go back to step 4
        fragment = _damage(run / "checkpoints" / f"step_{step:08d}", how)
    (run / "checkpoints" / ".tmp_step_00000008_999").mkdir()  # a killed write's leftover
    caplog.set_level(logging.WARNING)
    train(load_config(None, _overrides(shards, tmp_path, "clean", **{"train.keep_checkpoints": 0})), resume="latest")
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 2 and all(fragment in w and "resuming from step_00000004" in w for w in warnings)
    _assert_bitwise_equal(clean_run / "checkpoints" / f"step_{STEPS:08d}", run / "checkpoints" / f"step_{STEPS:08d}")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["damaged-step_00000006", "damaged-step_00000008", "latest", "step_00000002", "step_00000004",
                     "step_00000006", "step_00000008"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the garbage file
def test_damaged_checkpoints_are_one_line_errors_never_unsafe_advice(shards, clean_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    newest = run / "checkpoints" / f"step_{STEPS:08d}"
    _damage(newest, "garbage weights")
    evaluated = _cli("eval", "--benchmark", "sugarcrepe", "--annotations", str(tmp_path), "--out", str(tmp_path / "r.json"),
                     "--checkpoint", str(newest))
    assert "model.safetensors does not match the sha256" in _one_line_error(evaluated)
    # a checkpoint from before checksums: the load itself fails, and torch's advice (weights_only=False) is not passed on
    old = run / "checkpoints" / "step_00000004"
    meta = json.loads((old / "meta.json").read_text())
    del meta["files"]
    (old / "meta.json").write_text(json.dumps(meta))
    (old / "train_state.pt").write_bytes(b"\x80\x04garbage")
    resumed = _cli("train", "--resume", str(old), *_overrides(shards, tmp_path, "run"))
    err = _one_line_error(resumed)
    assert "train_state.pt: cannot be read" in err and "weights_only" not in resumed.output
    # every checkpoint damaged: nothing to resume from, said in one line
    broken = tmp_path / "broken"
    shutil.copytree(clean_run, broken)
    for ckpt in (broken / "checkpoints").glob("step_*"):
        _damage(ckpt, "truncated weights")
    nothing = _cli("train", "--resume", "latest", *_overrides(shards, tmp_path, "broken"))
    err = _one_line_error(nothing)
    assert "no intact checkpoint (step_00000008: model.safetensors has 1000 bytes" in err


# ------------------------------------------------------------------------------------------- data losses
def _cut_inside_sample(tar: Path, key: str) -> None:
    """Truncate a tar in the middle of the data of ``key``'s image."""
    with tarfile.open(tar) as tf:
        member = next(m for m in tf.getmembers() if m.name.startswith(key + ".") and m.name.endswith(".png"))
    tar.write_bytes(tar.read_bytes()[: member.offset_data + member.size // 2])


def test_a_cut_shard_counts_exactly_the_samples_it_lost(tmp_path):
    write_synthetic_shards(tmp_path, n=48, shard_size=16, image_size=32)
    _cut_inside_sample(tmp_path / "train-000001.tar", "s00022")  # samples 16..21 whole, 22 cut, 23..31 gone
    files = [str(tmp_path / f"train-{i:06d}.tar") for i in range(3)]
    source = WdsSource(files, resampled=False)
    source.partition_for(1)
    errors = ErrorCounter()
    keys = [raw[1] for raw in source.stream(epoch=0, g=0, n_logical=1, seed=0, buffer=1, errors=errors)]
    assert sorted(keys) == [f"s{i:05d}" for i in range(48) if not 22 <= i <= 31]
    assert (errors["stream_errors"], errors["samples_lost"]) == (1, 10)

    def run(name: str, *extra: str) -> Any:
        return _cli("train", *_overrides(str(tmp_path / "train-{000000..000002}.tar"), tmp_path / "runs", name, steps=5,
                                          **{"data.shuffle_buffer": 1, "train.save_every": 0}), *extra)

    err = _one_line_error(run("strict"))  # 10 of 50 samples lost: far beyond the default 1%
    assert "20.0% of the samples read so far were skipped or lost (0 bad samples, 10 lost in 1 damaged shards" in err
    assert "data.max_bad_fraction=0.01" in err and not (tmp_path / "runs" / "strict" / "checkpoints").exists()
    ok = run("lenient", "data.max_bad_fraction=0.25")
    assert ok.exit_code == 0, ok.output
    last = json.loads((tmp_path / "runs" / "lenient" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["data/samples"], last["data/bad_samples"], last["data/samples_lost"], last["data/stream_errors"]) == \
        (40, 0, 10, 1)


def test_non_utf8_tables_name_file_line_and_encoding(tmp_path):
    table = tmp_path / "pairs.tsv"
    table.write_bytes(b"filepath\ttitle\na.png\ta red car\nb.png\tun caf\xe9 au lait\n")
    trained = _cli("train", "data.type=csv", f"data.train={table}", "model.name=test-vit-tiny", "loss.name=clip",
                   f"train.output_dir={tmp_path / 'runs'}", "train.progress=false")
    expected = f"{table}, line 3: not UTF-8 text (byte 0xe9 at column 13)"
    assert expected in _one_line_error(trained)
    captions = tmp_path / "caps.tsv"
    captions.write_bytes(b"key\tcaption\nk0\ta red car\nk1\tun caf\xe9 au lait\n")
    generated = _cli("negatives", "text", "--in", str(captions), "--out", str(tmp_path / "neg"), "--tagger", "lexicon")
    assert f"{captions}, line 3: not UTF-8 text (byte 0xe9 at column 10)" in _one_line_error(generated)
    # in webdataset shards such a caption is skipped and counted, never mangled into U+FFFD
    with tarfile.open(tmp_path / "caps.tar", "w") as tf:
        for name, data in (("k0.txt", b"a red car next to a blue bus"), ("k1.txt", b"un caf\xe9 rouge")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    done = _cli("negatives", "text", "--in", str(tmp_path / "caps.tar"), "--out", str(tmp_path / "neg2"), "--tagger", "lexicon")
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "neg2" / "manifest.json").read_text())
    assert manifest["input_skipped"] == {"caption_not_utf8": 1} and manifest["rows"] == 1


def test_an_objective_whose_negatives_never_arrive_is_refused(tmp_path):
    write_synthetic_shards(tmp_path, n=16, shard_size=16, image_size=32, neg_images=False)
    base = _overrides(str(tmp_path / "train-000000.tar"), tmp_path / "runs", "t")
    err = _one_line_error(_cli("train", *base))
    assert "none of the first 8 samples has negative images, which the objective needs" in err
    err = _one_line_error(_cli("train", *base, "data.use_neg_image=false"))
    assert "loss.name=tripletclip needs negative images, but data.use_neg_image=False" in err
    assert _cli("train", *base, "loss.name=negclip", "train.steps=1").exit_code == 0  # its negatives are there


# ------------------------------------------------------------------------------------- config and the CLI
def test_config_values_are_range_checked_before_any_folder_exists(tmp_path):
    out = tmp_path / "runs"
    result = _cli("train", "data.train=x.tar", "train.steps=-5", "train.batch_size=0", "model.name=ViT-Nope",
                  "train.precision=fp8", "optim.lr=0", "data.max_bad_fraction=2", f"train.output_dir={out}")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines() == [
        "Error: data.max_bad_fraction=2.0: must be in [0, 1]",
        "optim.lr=0.0: must be > 0",
        "train.steps=-5: must be >= 1",
        "train.batch_size=0: must be >= 1",
        "train.precision='fp8': must be one of auto, bf16, fp16, fp32",
        "model: unknown model 'ViT-Nope'; run `tripletclip models list` for the names, or use hf:/hf-hub:/local-dir: ids",
    ]
    assert not out.exists()
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "clip-cc3m.yaml"
    no_data = _cli("train", "--config", str(smoke), f"train.output_dir={out}")
    assert "data.train is empty" in _one_line_error(no_data) and not out.exists()


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield path + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))


def test_help_never_fails():
    paths = list(_commands(main))
    assert ("negatives", "text") in paths and ("train",) in paths
    for path in [()] + paths:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Error" not in result.output and "Usage:" in result.output, (path, result.output)


def test_only_user_errors_become_one_line(monkeypatch, tmp_path):
    import tripletclip.eval
    import tripletclip.negatives.text_job
    import tripletclip.train.trainer
    from tripletclip.data.contract import DataError

    def bug(*args: Any, **kwargs: Any) -> None:
        raise KeyError("step")

    def other_bug(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(tripletclip.train.trainer, "train", bug)
    r = CliRunner().invoke(main, ["train", "data.train=x"])
    assert isinstance(r.exception, KeyError) and "Error" not in r.output  # the traceback is kept
    monkeypatch.setattr(tripletclip.negatives.text_job, "run_text", other_bug)
    r = CliRunner().invoke(main, ["negatives", "text", "--in", "a", "--out", str(tmp_path)])
    assert isinstance(r.exception, RuntimeError) and "Error" not in r.output
    monkeypatch.setattr(tripletclip.eval, "load_encoder", bug)
    r = CliRunner().invoke(main, ["eval", "--benchmark", "sugarcrepe", "--annotations", str(tmp_path), "--out", "r.json",
                                  "--model", "m"])  # annotations are checked before the model is loaded
    assert isinstance(r.exception, KeyError)

    def bad_input(*args: Any, **kwargs: Any) -> None:
        raise DataError("data.tsv, row 3: empty caption; fill it")

    monkeypatch.setattr(tripletclip.train.trainer, "train", bad_input)
    assert _one_line_error(CliRunner().invoke(main, ["train", "data.train=x"])) == \
        "Error: data.tsv, row 3: empty caption; fill it"


SMOKE = SHARED_BENCHMARKS / "real_images_smoke"


@pytest.mark.shared_benchmarks("real_images_smoke")
def test_eval_scores_random_weights_only_on_request_seeded_and_recorded(tmp_path):
    base = ["eval", "--benchmark", "sugarcrepe", "--annotations", str(SMOKE / "sugar_crepe"), "--images",
            str(SMOKE / "images" / "val2017"), "--model", "test-vit-tiny", "--batch-size", "64"]
    err = _one_line_error(_cli(*base, "--out", str(tmp_path / "r.json")))
    assert "without --pretrained would score random weights" in err and "--random-init" in err
    docs = []
    for i in range(2):
        r = _cli(*base, "--random-init", "--seed", "3", "--out", str(tmp_path / f"r{i}.json"))
        assert r.exit_code == 0, r.output
        docs.append(json.loads((tmp_path / f"r{i}.json").read_text()))
    assert docs[0]["scalars"] == docs[1]["scalars"]
    assert docs[0]["model"]["model"]["random_init_seed"] == 3 and docs[0]["command"]["random_init_seed"] == 3


# ------------------------------------------------------------------------------------- the LLM endpoint
class _Recorder(http.server.BaseHTTPRequestHandler):
    """The other host: records what reaches it and answers like a valid LLM."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def do_GET(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        type(self).seen.append(dict(self.headers))
        body = json.dumps({"choices": [{"message": {"content": "a blue car next to a red bus"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(host: str, handler: type) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("code", [301, 307])
def test_the_api_key_never_reaches_another_host(tmp_path, monkeypatch, code):
    _Recorder.seen = []
    other = _serve("127.0.0.2", _Recorder)  # another address of this machine plays the other host
    target = f"http://127.0.0.2:{other.server_address[1]}/v1/chat/completions"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(code)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    first = _serve("127.0.0.1", Redirect)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    (tmp_path / "in.jsonl").write_text(json.dumps({"key": "k0", "caption": "a red car next to a blue bus"}) + "\n")
    try:
        result = _cli("negatives", "text", "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out"),
                      "--generator", "llm", "--backend", "openai", "--model", "m", "--tagger", "lexicon",
                      "--base-url", f"http://127.0.0.1:{first.server_address[1]}/v1")
    finally:
        first.shutdown()
        other.shutdown()
        first.server_close()
        other.server_close()
    err = _one_line_error(result)
    assert f"redirects (HTTP {code}) to another host, {target}" in err and "never sent there" in err
    assert _Recorder.seen == []  # no request at all reached the other host, so neither did the key
    assert "sk-secret-123" not in result.output and not list((tmp_path / "out").glob("part-*.parquet"))


def test_a_key_over_plain_http_to_another_machine_is_warned_about_once(monkeypatch, caplog):
    from tripletclip.negatives.llm_backends import OpenAIChatLLM

    monkeypatch.setenv("TEST_KEY", "sk-x")
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        OpenAIChatLLM("m", base_url="http://10.1.2.3:8000/v1", api_key_env="TEST_KEY")
    OpenAIChatLLM("m", base_url="http://127.0.0.1:8000/v1", api_key_env="TEST_KEY")
    OpenAIChatLLM("m", base_url="https://10.1.2.3/v1", api_key_env="TEST_KEY")
    warned = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warned) == 1 and "http://10.1.2.3:8000/v1" in warned[0] and "sk-x" not in warned[0]


# --------------------------------------------------------------------------------------------- killed runs
_ZYGOTE = r"""
import json, os, sys, traceback
import tripletclip.train.trainer
from tripletclip.config import load_config
from tripletclip.train import train

for line in sys.stdin:
    msg = json.loads(line)
    if "wait" in msg:
        _, status = os.waitpid(msg["wait"], 0)
        print(json.dumps({"status": status}), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)  # the child's output must not mix with the answers on stdout
        code = 0
        try:
            train(load_config(None, msg["overrides"]), resume=msg.get("resume"))
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Zygote:
    """A process that imported the trainer once and forks one training run per request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, overrides: list[str], resume: str | None = None) -> int:
        return self._ask({"overrides": overrides, "resume": resume})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["status"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module", autouse=True)
def zygote() -> Iterator[Zygote]:
    """Started with the module's first test, so that its imports overlap the other tests (the kill tests run last)."""
    z = Zygote()
    yield z
    z.close()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return sys.platform != "linux"  # no /proc: rely on the timeout


def _wait_for(cond: Any, pid: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        assert _running(pid), "the run ended before the fault was injected"
        time.sleep(0.001)


def test_sigkill_during_checkpoint_writes_then_resume_is_bitwise_identical(shards, clean_run, zygote, tmp_path):
    """Kill -9 while a checkpoint is being written, three times in a row; resuming each time must end with the
    bits of the uninterrupted run, each step logged once, and no leftover of the killed writes."""
    overrides = _overrides(shards, tmp_path, "killed", **{"train.save_every": 1})
    ckpts = tmp_path / "killed" / "checkpoints"
    torn = 0
    for attempt, target in enumerate((2, 4, 6)):
        pid = zygote.start(overrides, resume="latest" if attempt else None)
        tmp = f".tmp_step_{target:08d}_{pid}"
        _wait_for(lambda: (ckpts / tmp).is_dir(), pid)  # the write of checkpoint `target` has begun
        os.kill(pid, signal.SIGKILL)
        assert os.WIFSIGNALED(zygote.wait(pid))
        torn += (ckpts / tmp).exists()
        assert not (ckpts / f"step_{STEPS:08d}").exists()
    assert torn >= 1, "no kill landed inside a checkpoint write"
    train(load_config(None, overrides), resume="latest")
    _assert_bitwise_equal(clean_run / "checkpoints" / f"step_{STEPS:08d}", ckpts / f"step_{STEPS:08d}")
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")], "leftovers of killed writes remain"
    clean = [json.loads(x) for x in (clean_run / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert [r["loss/loss"] for r in resumed] == [r["loss/loss"] for r in clean]


def test_a_run_folder_has_one_live_writer_and_a_killed_one_frees_it(shards, clean_run, zygote, tmp_path):
    first = _overrides(shards, tmp_path, "shared", **{"train.seed": 0, "train.save_every": 1})
    pid = zygote.start(first)
    lock = tmp_path / "shared" / ".lock"
    _wait_for(lambda: lock.is_file() and f"PID {pid} " in lock.read_text(), pid)
    second = _cli("train", *_overrides(shards, tmp_path, "shared", **{"train.seed": 1}))
    err = _one_line_error(second)
    assert f"in use by PID {pid} on " in err and "another training run" in err and "train.name" in err
    ckpts = tmp_path / "shared" / "checkpoints"
    _wait_for(lambda: (ckpts / "step_00000003").is_dir(), pid)
    os.kill(pid, signal.SIGKILL)
    zygote.wait(pid)
    train(load_config(None, first), resume="latest")  # the dead holder's lock died with it
    run = tmp_path / "shared"
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == list(range(1, STEPS + 1))
    meta = json.loads((ckpts / f"step_{STEPS:08d}" / "meta.json").read_text())
    assert meta["config"]["train"]["seed"] == 0 and "seed: 0" in (run / "config.yaml").read_text()
    _assert_bitwise_equal(clean_run / "checkpoints" / f"step_{STEPS:08d}", ckpts / f"step_{STEPS:08d}")


_HOLDER = r"""
import sys
from tripletclip.utils.lock import FolderLock
lock = FolderLock(sys.argv[1], "test holder", "wait", rank=int(sys.argv[2]), world=int(sys.argv[3]))
print("held", flush=True)
sys.stdin.read()
"""


def _hold(folder: Path, rank: int = 0, world: int = 1) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(rank), str(world)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline() if p.stdout else ""
    if line.strip() != "held":
        p.wait()
        raise AssertionError(p.stderr.read() if p.stderr else "holder failed")
    return p


def _release(p: subprocess.Popen) -> None:
    p.kill()
    p.wait()


def test_a_generation_folder_has_one_live_writer(tmp_path):
    from tripletclip.errors import ConflictError
    from tripletclip.utils.lock import FolderLock

    (tmp_path / "in.jsonl").write_text(json.dumps({"key": "k0", "caption": "a red car next to a blue bus"}) + "\n")
    out = tmp_path / "out"
    args = ["negatives", "text", "--in", str(tmp_path / "in.jsonl"), "--out", str(out), "--tagger", "lexicon"]
    holder = _hold(out)
    try:
        err = _one_line_error(_cli(*args))
        assert f"{out} is in use by PID {holder.pid} on " in err and "use another --out" in err
        assert not (out / "job.json").exists()
    finally:
        _release(holder)
    assert _cli(*args).exit_code == 0  # the holder is gone: the folder is free again
    # sharded ranks share a folder; a second copy of a rank, or a single-process job beside them, is refused
    rank0, rank1 = _hold(tmp_path / "sharded", 0, 2), _hold(tmp_path / "sharded", 1, 2)
    try:
        with pytest.raises(ConflictError, match=f"in use by PID {rank1.pid} on "):
            FolderLock(tmp_path / "sharded", "job", "wait", rank=1, world=2)
        with pytest.raises(ConflictError, match=f"in use by PID {rank0.pid} on .*PID {rank1.pid} on "):
            FolderLock(tmp_path / "sharded", "job", "wait")
    finally:
        _release(rank0)
        _release(rank1)
    FolderLock(tmp_path / "sharded", "job", "wait").release()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="finds the loader worker through /proc")
def test_a_killed_run_with_a_loader_worker_resumes_at_once(shards, zygote, tmp_path):
    """data.workers=1, SIGKILL, then `--resume latest` at once: refused 3 times in 3, because the loader worker,
    forked after the folder lock was taken, held the lock for seconds after its parent died."""
    overrides = _overrides(shards, tmp_path, "worker", steps=4, **{"data.workers": 1, "train.save_every": 1})
    pid = zygote.start(overrides)
    ckpts = tmp_path / "worker" / "checkpoints"
    _wait_for(lambda: (ckpts / "step_00000002").is_dir() and _children(pid), pid)
    workers = _children(pid)
    os.kill(pid, signal.SIGKILL)
    assert os.WIFSIGNALED(zygote.wait(pid))
    try:
        assert any(_running(w) for w in workers), "the worker died with its parent: nothing was tested"
        train(load_config(None, overrides), resume="latest")  # at once, the orphaned worker still alive
    finally:
        for w in workers:
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)
    steps = [json.loads(x)["step"] for x in (tmp_path / "worker" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4 and sorted(set(steps)) == [1, 2, 3, 4]
