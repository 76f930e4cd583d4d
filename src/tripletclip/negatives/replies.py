"""LLM replies are parsed, never trusted: from whatever a backend returned to one caption, or a rejection reason.

A server may return ``content`` as a string, as a list of parts (the OpenAI content-parts form,
``[{"type": "text", "text": ...}]``), or as anything else (a number, an object); a model may wrap its answer in
a JSON object, add markup or links, talk to the reader ("ignore all previous instructions"), or write a
paragraph where one caption was asked for. :func:`parse_reply` accepts only a plain caption: a JSON object is
unwrapped only where the prompt asked for one (``json_key``), else rejected; replies carrying markup, URLs or
instructions, with more sentences than the caption has, or outside a length band of the caption are rejected,
each with its own reason, which the caller counts; then the prompt's own checks run
(:func:`tripletclip.negatives.prompts.check_output`: empty, identical, prompt echo, word-count ratio).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from tripletclip.negatives.prompts import PromptSpec, check_output, clean_output

# a reply longer than this (characters) is rejected unread: no caption is anywhere near it
MAX_REPLY_CHARS = 2000

_MARKUP_RE = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|\[[^\]]*\]\([^)]*\)|```")
_URL_RE = re.compile(r"\b(?:https?|ftp|file|data|javascript):|\bwww\.\S", re.I)
_INSTRUCTION_RE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}\b(?:instructions?|prompts?|rules?|context|above)\b"
    r"|\b(?:system|developer)\s+(?:prompt|message|instructions?)\b|\byou\s+are\s+now\b|\bnew\s+instructions?\b"
    r"|(?:^|\n)\s*(?:system|assistant|user)\s*:|\bjailbreak\b|\bdo\s+anything\s+now\b", re.I)
_SENTENCE_END_RE = re.compile(r"[.!?]+(?=\s+\S)")


@dataclass(frozen=True)
class Failed:
    """A request that brought no reply (timeouts or server errors after the backend's retries, an oversized
    body): counted under ``reason`` like a rejected reply, and retried or replaced the same way."""

    reason: str


def content_text(content: Any) -> Optional[str]:
    """The text of a chat message's ``content``: a string, or the text parts of a content-parts list; None for
    anything else (a number, an object, parts without text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") in ("text", "output_text")]
        if texts and all(isinstance(t, str) for t in texts):
            return "".join(texts)
    return None


def _sentences(text: str) -> int:
    return len(_SENTENCE_END_RE.findall(text.strip())) + 1


def _unwrap_json(text: str, json_key: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, reason): a reply that is a JSON value is accepted only as the asked-for object."""
    stripped = text.strip()
    if stripped[:1] not in ("{", "["):
        return (text, None) if json_key is None else (None, "not_json")
    try:
        value = json.loads(stripped)
    except ValueError:
        return (text, None) if json_key is None else (None, "not_json")
    if json_key is None:
        return None, "json_object"  # the prompt asked for a caption, not an object
    inner = value.get(json_key) if isinstance(value, dict) else None
    return (inner, None) if isinstance(inner, str) else (None, "json_without_field")


def parse_reply(raw: Any, caption: str, spec: PromptSpec, json_key: Optional[str] = None,
                max_chars: int = MAX_REPLY_CHARS) -> tuple[Optional[str], Optional[str]]:
    """(the caption the reply gives, None) or (None, the reason it is rejected)."""
    if isinstance(raw, Failed):
        return None, raw.reason
    text = content_text(raw)
    if text is None:
        return None, "not_text"
    if len(text) > max_chars:
        return None, "too_large"
    text, reason = _unwrap_json(text, json_key)
    if reason or text is None:
        return None, reason or "not_text"
    # NOTE: the whole reply is checked, not only the line that would be kept: a reply that carries an
    # injection or a link on a later line comes from a model or server not doing the task
    if _MARKUP_RE.search(text):
        return None, "markup"
    if _URL_RE.search(text):
        return None, "url"
    if _INSTRUCTION_RE.search(text):
        return None, "instructions"
    cleaned = clean_output(text)
    reason = check_output(caption, cleaned, spec)  # empty, identical, prompt echo, word-count band, unrelated
    if reason:
        return None, reason
    if _sentences(cleaned) > _sentences(caption):
        return None, "several_sentences"
    if len(cleaned) > 3 * len(caption) + 20:  # the word-count band cannot see a few very long "words"
        return None, "too_long"
    return cleaned, None
