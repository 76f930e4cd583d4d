"""Throughput of every TripletData generation stage on this machine, with tiny local models.

    python benchmarks/bench_negatives.py --out bench_negatives.json [--captions 4000] [--threads 1]

Stages: rules negatives (real COCO / SugarCrepe captions from ../shared/benchmarks when present), LLM
negatives with a tiny causal LM (transformers, batched) and through a local OpenAI-compatible stub server
(HTTP + validation overhead only), T2I negative images with a tiny diffusers pipeline (1 step, 32 and 64 px),
the CLIP-score filter and statistics with the tiny test-vit-tiny CLIP, and the faithfulness check with a tiny
ViLT. Not a test: tiny-model numbers measure our pipeline overhead, not what a 7B LLM or SDXL-Turbo costs.
"""
from __future__ import annotations

import argparse
import glob
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tripletclip.negatives.prompts import NEGATIVE_PROMPT
from tripletclip.negatives.rules import RulesGenerator

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
FALLBACK = ["A red car parked next to a blue bus.", "A dog sitting on a couch.", "Two cats sleeping on a bed.",
            "A man riding a horse on a beach.", "A bowl of fruit on a wooden table."]


def captions(n: int) -> list[str]:
    caps: list[str] = []
    smoke = BENCH / "real_images_smoke" / "captions.json"
    if smoke.exists():
        caps += [a["caption"].strip() for a in json.loads(smoke.read_text())["annotations"]]
        for f in sorted(glob.glob(str(BENCH / "sugar_crepe" / "*.json"))):
            caps += [r["caption"] for r in json.loads(Path(f).read_text()).values()]
    caps = caps or FALLBACK
    return (caps * (n // len(caps) + 1))[:n]


def timed(fn, n: int) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"items": n, "wall_s": round(wall, 3), "per_s_wall": round(n / wall, 2), "per_s_cpu": round(n / max(cpu, 1e-9), 2)}


def bench_rules(caps: list[str]) -> dict:
    items = [(str(i), c) for i, c in enumerate(caps)]
    out = {}
    for k in (1, 4):
        g = RulesGenerator("sugarcrepe" if k == 1 else "ceclip", k, tagger="lexicon")
        g.generate(items[:100])
        out[f"per_caption_{k}"] = timed(lambda: g.generate(items), len(items))
    return out


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops connections under concurrent clients


class _Stub(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"].replace(" a ", " two ", 1)
        payload = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *a: object) -> None:
        pass


def bench_llm(tmp: Path, caps: list[str]) -> dict:
    from tripletclip.negatives.llm import LLMGenerator
    from tripletclip.negatives.tiny import build_tiny_causal_lm

    corpus = caps[:200] + [NEGATIVE_PROMPT.instruction] + [a for ex in NEGATIVE_PROMPT.examples for a in ex]
    path = build_tiny_causal_lm(tmp / "lm", corpus)
    items = [(str(i), c) for i, c in enumerate(caps[:64])]
    out = {}
    for bs in (1, 16):
        g = LLMGenerator("transformers", str(path), batch_size=bs, retries=0, max_new_tokens=24,
                         backend_options={"device": "cpu"})
        out[f"transformers_tiny_batch{bs}"] = timed(lambda: g.generate(items), len(items))
    server = _Server(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        g = LLMGenerator("openai", "stub", batch_size=64, retries=0, backend_options={"base_url": url, "concurrency": 8})
        items = [(str(i), c) for i, c in enumerate(caps[:512])]
        out["openai_stub_concurrency8"] = timed(lambda: g.generate(items), len(items))
    finally:
        server.shutdown()
        server.server_close()
    return out


def bench_images_filter_stats(tmp: Path, caps: list[str]) -> dict:
    from tripletclip.models import create_model
    from tripletclip.negatives.faithfulness import run_faithfulness
    from tripletclip.negatives.filter import FilterJobOptions, run_filter
    from tripletclip.negatives.images import ImageJobOptions, run_images
    from tripletclip.negatives.stats import compute_stats
    from tripletclip.negatives.text_job import TextJobOptions, run_text
    from tripletclip.negatives.tiny import build_tiny_t2i, build_tiny_vqa

    n = 64
    (tmp / "img").mkdir()
    rows = []
    for i, c in enumerate(caps[:n]):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp / "img" / f"{i}.jpg")
        rows.append({"key": f"k{i:05d}", "caption": c, "image": str(tmp / "img" / f"{i}.jpg")})
    (tmp / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_text(TextJobOptions(inp=str(tmp / "in.jsonl"), out=str(tmp / "neg"), generator_options={"tagger": "lexicon"}))
    sd = build_tiny_t2i(tmp / "sd", caps[:n] + [r for r in caps[:n]])
    out = {}
    for size in (32, 64):
        opts = {"model": str(sd), "steps": 1, "size": size, "device": "cpu"}
        m = run_images(ImageJobOptions(negatives=str(tmp / "neg"), out=str(tmp / f"shards{size}"), backend="diffusers",
                                       backend_options=opts, batch_size=16, chunk_size=32))
        out[f"images_diffusers_tiny_{size}px_1step"] = {"images": m["total_neg_images"],
                                                         "per_s_render": m["images_per_s_render"],
                                                         "per_s_job": round(m["total_neg_images"] / m["last_run"]["seconds"], 2)}
    bundle = create_model("test-vit-tiny")
    job = FilterJobOptions(shards=str(tmp / "shards64"), out=str(tmp / "f"), keep=0.5, device="cpu")
    out["filter_test_vit_tiny"] = timed(lambda: run_filter(job, bundle=bundle), n)
    out["stats_with_model"] = timed(lambda: compute_stats(str(tmp / "shards64"), str(tmp / "st"), bundle=bundle,
                                                          device="cpu"), n)
    vqa = build_tiny_vqa(tmp / "vqa", caps[:n])
    res = {}
    out["faithfulness_tiny_vilt_pairs"] = timed(lambda: res.update(run_faithfulness(str(tmp / "shards64"), str(tmp / "fa"),
                                                                                   str(vqa), device="cpu")), n)
    out["faithfulness_tiny_vilt_pairs"]["questions"] = res.get("questions")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench_negatives.json")
    ap.add_argument("--skip-models", action="store_true", help="Only the rules stage (no transformers/diffusers).")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    caps = captions(a.captions)
    result = {"threads": a.threads, "torch": torch.__version__, "rules": bench_rules(caps)}
    if not a.skip_models:
        with tempfile.TemporaryDirectory() as d:
            result["llm"] = bench_llm(Path(d), caps)
            result["images_filter_stats"] = bench_images_filter_stats(Path(d), caps)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
