"""Prompts for LLM negatives and LaCLIP-style rewrites, and the parsing/validation of every LLM output.

Negative prompt: TripletCLIP (arXiv 2411.02545, Sec. 3.2 and appendix) asks an instruction-tuned LLM for a
caption of about the same length, mostly similar, that cannot describe the same image (counts, objects,
attributes or relations changed), with two in-context examples: a left/right flip and a multi-edit (colour,
action, scene). Written here in our own words. Rewrite prompt: LaCLIP (arXiv 2305.20088) rewrites captions
with an LLM while keeping their content; TripletCLIP applies its negatives to such rewritten captions.

Validation rejects outputs that are empty, identical to the input (ignoring case and punctuation), far
shorter or longer (word-count ratio), an echo of the prompt (instruction text, field labels, the examples,
or the input followed by more text) or, for negatives, unrelated to the input (almost no shared words).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

Messages = list[dict[str, str]]

NEGATIVE_INSTRUCTION = (
    "You write hard negative captions for image-text training. Given the description of an image, write a new "
    "description of about the same length that keeps most of the wording but could not describe the same image: "
    "change how many things there are, which objects appear, their attributes, or how they relate to each other. "
    "Reply with the new description only."
)
NEGATIVE_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("A dog sits to the left of a red bicycle.", "A dog sits to the right of a red bicycle."),
    ("A woman in a blue coat walks her dog through a snowy park.",
     "A woman in a yellow coat feeds her cat in a sunny park."),
)
REWRITE_INSTRUCTION = (
    "You rewrite image captions. Say the same thing in different words: keep every object, count, attribute and "
    "relation exactly as given and add nothing new. Reply with the rewritten caption only."
)
REWRITE_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("a man riding a brown horse on a beach", "On the beach, a man rides a brown horse."),
    ("two cats sleeping on a red couch", "A red couch with two cats asleep on it."),
)
INPUT_LABEL, OUTPUT_LABEL = "Description", "New description"

# Phrases that only appear in an output that repeats the prompt or talks about the task.
_ECHO_MARKERS = ("hard negative", "new description", "description of an image", "reply with", "rewritten caption",
                 "image-text training", "same length", "in different words", "here is", "here's", "sure,", "as an ai")
_LABEL_RE = re.compile(r"^\s*(?:new description|negative(?: caption)?|rewritten caption|rewrite|caption|output|answer|"
                       r"description)\s*[:\-]\s*", re.I)
_ENUM_RE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_WORD_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class PromptSpec:
    """One task: its instruction, in-context examples, and what validation demands."""

    task: str  # "negative" | "rewrite"
    instruction: str
    examples: tuple[tuple[str, str], ...]
    min_ratio: float = 0.5  # output words / input words
    max_ratio: float = 2.0
    min_overlap: float = 0.15  # share of the input's words the output keeps (negatives only: mostly similar)

    def messages(self, caption: str) -> Messages:
        """Chat messages: instruction, two worked examples as user/assistant turns, then the caption."""
        msgs: Messages = [{"role": "system", "content": self.instruction}]
        for src, out in self.examples:
            msgs += [{"role": "user", "content": src}, {"role": "assistant", "content": out}]
        msgs.append({"role": "user", "content": caption})
        return msgs


NEGATIVE_PROMPT = PromptSpec("negative", NEGATIVE_INSTRUCTION, NEGATIVE_EXAMPLES)
REWRITE_PROMPT = PromptSpec("rewrite", REWRITE_INSTRUCTION, REWRITE_EXAMPLES, min_ratio=0.5, max_ratio=2.0, min_overlap=0.0)


def render_plain(messages: Messages) -> str:
    """Completion-style text for models without a chat template (base models, tiny test models)."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n")
        elif m["role"] == "user":
            parts.append(f"{INPUT_LABEL}: {m['content']}")
        else:
            parts.append(f"{OUTPUT_LABEL}: {m['content']}\n")
    return "\n".join(parts) + f"\n{OUTPUT_LABEL}:"


def clean_output(text: str) -> str:
    """The first non-empty line, without labels, list markers and surrounding quotes."""
    for line in text.replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        line = _ENUM_RE.sub("", _LABEL_RE.sub("", line)).strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
            line = line[1:-1].strip()
        return line
    return ""


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def check_output(source: str, output: str, spec: PromptSpec) -> Optional[str]:
    """None if ``output`` (already cleaned) is acceptable for ``source``, else the reason it is rejected."""
    out_w, src_w = _words(output), _words(source)
    if not out_w:
        return "empty"
    if out_w == src_w:
        return "identical"
    low = output.lower()
    if any(m in low for m in _ECHO_MARKERS) or f"{INPUT_LABEL.lower()}:" in low:
        return "prompt_echo"
    for ex_in, ex_out in spec.examples:
        if _words(ex_in) == out_w or _words(ex_out) == out_w:
            return "prompt_echo"
    if len(out_w) > len(src_w) and out_w[: len(src_w)] == src_w:
        return "prompt_echo"  # the input repeated, then more text
    ratio = len(out_w) / max(1, len(src_w))
    if ratio < spec.min_ratio:
        return "too_short"
    if ratio > spec.max_ratio:
        return "too_long"
    if spec.min_overlap > 0:
        shared = len(set(src_w) & set(out_w)) / max(1, len(set(src_w)))
        if shared < spec.min_overlap:
            return "unrelated"
    return None
