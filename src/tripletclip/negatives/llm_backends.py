"""LLM backends for negative captions and rewrites: ``transformers``, ``vllm`` and ``openai`` (HTTP).

Every backend turns a batch of chat-message lists into one completion string each. ``transformers`` runs
a local path or hub id with batched ``generate`` (left padding, since decoder-only models continue the last
token); models without a chat template get a completion-style prompt. ``vllm`` is imported only when used.
``openai`` talks to any OpenAI-compatible server (vLLM's, llama.cpp's, a hosted API) over HTTP, with a
timeout and a reply-size cap; its retries and failed requests are counted by reason, and its replies are
returned as sent, for :mod:`tripletclip.negatives.replies` to parse. The API
key is read from an environment variable only, never from the command line or a config file. It is sent to
the configured scheme, host and port only: a redirect elsewhere is refused (urllib would forward the
``Authorization`` header to any host), a reply from elsewhere is never used, and sending the key over plain
http to a host that is not this machine is warned about once.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

from tripletclip.errors import InputError, UnavailableError
from tripletclip.negatives.base import LLM_BACKENDS, local_device
from tripletclip.negatives.prompts import Messages, render_plain
from tripletclip.negatives.replies import Failed

log = logging.getLogger(__name__)
_WARNED_PLAIN_HTTP: set[str] = set()


@LLM_BACKENDS.register("transformers")
class TransformersLLM:
    """A causal LM through transformers' AutoModelForCausalLM with batched, left-padded generation."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 chat_template: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.model_id = "transformers", model
        self.device = local_device(device)
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype),
                                                              trust_remote_code=trust_remote_code)
        except OSError as e:
            raise UnavailableError(f"LLM '{model}': cannot load ({str(e).splitlines()[0]}); give a local model folder "
                                   "or a hub id that is cached") from None
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # decoder-only: generation continues from the right end
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.use_chat = has_template if chat_template == "auto" else chat_template == "yes"

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "device": self.device, "chat_template": self.use_chat,
                "dtype": str(self.model.dtype)}

    def _text(self, messages: Messages) -> str:
        if not self.use_chat:
            return render_plain(messages)
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001  some templates reject a system turn: fold it into the first user turn
            merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
            return self.tokenizer.apply_chat_template(merged + messages[2:], tokenize=False, add_generation_prompt=True)

    def complete(self, prompts: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int) -> list[str]:
        import torch

        texts = [self._text(m) for m in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.use_chat)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            kwargs.update(do_sample=False)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)


@LLM_BACKENDS.register("vllm")
class VllmLLM:
    """vLLM's offline engine (optional dependency; one engine per process, e.g. one per GPU rank)."""

    def __init__(self, model: str, dtype: str = "auto", tensor_parallel_size: int = 1, max_model_len: int = 2048,
                 gpu_memory_utilization: float = 0.85) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise UnavailableError("LLM backend 'vllm' needs `pip install vllm` (GPU machine); or use --backend "
                                   "transformers / openai") from None
        self.name, self.model_id = "vllm", model
        self.llm = LLM(model=model, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                       max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization)
        self.use_chat = bool(getattr(self.llm.get_tokenizer(), "chat_template", None))

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "chat_template": self.use_chat}

    def complete(self, prompts: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=0.95 if temperature else 1.0,
                                seed=seed)
        if self.use_chat:
            outs = self.llm.chat(list(prompts), params, use_tqdm=False)
        else:
            outs = self.llm.generate([render_plain(m) for m in prompts], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL: where a request, and so a key, goes."""
    u = urllib.parse.urlsplit(url)
    return u.scheme.lower(), (u.hostname or "").lower(), u.port or (443 if u.scheme.lower() == "https" else 80)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the configured origin: the API key never reaches another host."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != self.origin:
            fp.close()
            raise UnavailableError(f"{req.full_url}: the server redirects (HTTP {code}) to another host, {target}; "
                                   "the API key is never sent there: give the final address as --base-url")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@LLM_BACKENDS.register("openai")
class OpenAIChatLLM:
    """Any OpenAI-compatible ``/chat/completions`` endpoint, with concurrent requests and retries."""

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, http_retries: int = 3,
                 max_reply_bytes: int = 1 << 20) -> None:
        if not timeout > 0 or http_retries < 0 or max_reply_bytes < 1:
            raise InputError(f"openai backend: timeout must be > 0 s, http retries >= 0 and the reply size cap >= 1 "
                             f"byte (got {timeout}, {http_retries}, {max_reply_bytes})")
        self.name, self.model_id = "openai", model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env, "")  # NOTE: never from argv/config, so keys stay out of logs and manifests
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.concurrency, self.timeout, self.http_retries = max(1, concurrency), timeout, http_retries
        self.max_reply_bytes = max_reply_bytes
        self.http_errors = 0
        self._counters: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self.origin = _origin(self.url)
        self._opener = urllib.request.build_opener(_SameOriginRedirects(self.origin))
        scheme, host, _ = self.origin
        if key and scheme == "http" and not _is_loopback(host) and self.url not in _WARNED_PLAIN_HTTP:
            _WARNED_PLAIN_HTTP.add(self.url)
            log.warning("%s: the API key from $%s is sent over plain http to another machine, readable on the way; "
                        "use https", self.url, api_key_env)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "url": self.url, "api_key_env": self.api_key_env,
                "timeout": self.timeout, "http_retries": self.http_retries, "max_reply_bytes": self.max_reply_bytes}

    def _count(self, name: str) -> None:
        with self._count_lock:
            self._counters[name] = self._counters.get(name, 0) + 1

    def take_counters(self) -> dict[str, int]:
        """The HTTP retries and failed requests since the last call, by reason (for the job's manifest)."""
        with self._count_lock:
            out, self._counters = self._counters, {}
        return out

    def _post(self, payload: dict[str, Any]) -> Any:
        """The reply's message content (str, content parts, or whatever the server sent: parsed by the caller),
        or :class:`Failed` when timeouts, server errors or malformed bodies outlast the retries."""
        data = json.dumps(payload).encode("utf-8")
        last: Optional[Exception] = None
        reason = "http_error"
        for attempt in range(self.http_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=self._headers, method="POST")
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    if _origin(resp.geturl()) != self.origin:  # never use a reply from elsewhere
                        raise UnavailableError(f"{self.url}: the reply came from {resp.geturl()}; refused")
                    raw = resp.read(self.max_reply_bytes + 1)
                if len(raw) > self.max_reply_bytes:  # never parsed: a retry is sampled by the caller
                    self._count("failed_request:too_large")
                    return Failed("too_large")
                content = json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"]
                return "" if content is None else content
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise UnavailableError(f"{self.url}: HTTP {e.code} unauthorised; set the API key in ${self.api_key_env}") from None
                if e.code < 500 and e.code != 429:
                    detail = e.read().decode("utf-8", "replace")[:200]
                    raise UnavailableError(f"{self.url}: HTTP {e.code} ({detail}); check --model and the server") from None
                last, reason = e, f"http_{e.code}"
            except urllib.error.URLError as e:
                if not isinstance(e.reason, (TimeoutError, socket.timeout)):
                    last, reason = e, "connection"
                else:
                    last, reason = e, "timeout"
            except (TimeoutError, socket.timeout) as e:
                last, reason = e, "timeout"
            except ConnectionError as e:
                last, reason = e, "connection"
            except (KeyError, IndexError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
                last, reason = e, "bad_body"
            self.http_errors += 1
            if attempt < self.http_retries:
                self._count(f"http_retry:{reason}")
                time.sleep(min(8.0, 0.25 * 2**attempt))
        if reason == "connection":  # nothing answers: every caption would fail the same way
            raise UnavailableError(f"{self.url}: no answer after {self.http_retries + 1} tries ({last}); is the server up?")
        self._count(f"failed_request:{reason}")
        return Failed(reason)

    def complete(self, prompts: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int) -> list[Any]:
        payloads = [{"model": self.model_id, "messages": list(m), "max_tokens": max_new_tokens,
                     "temperature": temperature, "seed": seed + i} for i, m in enumerate(prompts)]
        if self.concurrency == 1 or len(payloads) == 1:
            return [self._post(p) for p in payloads]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._post, payloads))


def build_llm(backend: str, model: str, **kwargs: Any) -> Any:
    """The registered backend ``backend`` for ``model`` (kwargs are backend options)."""
    return LLM_BACKENDS.get(backend)(model, **kwargs)
