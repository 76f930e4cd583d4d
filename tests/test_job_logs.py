"""Job-log pieces of train/metrics.py: the plain log line and W&B resuming the same run (fake wandb module)."""
from __future__ import annotations

import sys
import types

from tripletclip.train.metrics import MetricsLogger, log_line


def test_log_line_has_every_field_and_tolerates_missing_ones():
    rec = {"loss/loss": 2.5, "lr": 5e-4, "grad_norm": 1.25, "pairs_per_s": 1024.0, "pairs_per_s_rank": 128.0,
           "data_wait_frac": 0.031, "peak_memory_bytes": 3 * 2**30}
    assert log_line(7, 100, rec) == ("step 7/100 loss 2.5000 lr 0.0005 grad_norm 1.25 pairs/s 1024.0 (rank 128.0) "
                                     "data_wait 3.1% peak_mem 3.00 GiB")
    assert "grad_norm -" in log_line(1, 2, {**rec, "grad_norm": None})


def test_wandb_resumes_the_same_run(tmp_path, monkeypatch):
    calls = []
    ids = iter(["first", "second"])
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(kw) or types.SimpleNamespace(finish=lambda: None),
                                 util=types.SimpleNamespace(generate_id=lambda: next(ids)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    MetricsLogger(tmp_path, wandb=True).close()
    MetricsLogger(tmp_path, wandb=True, resume=True).close()  # a requeued job
    assert [c["id"] for c in calls] == ["first", "first"] and all(c["resume"] == "allow" for c in calls)
    assert (tmp_path / "wandb_id").read_text().strip() == "first"
