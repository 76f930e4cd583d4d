"""File lists from what users type: ``a::b`` lists, ``{000..009}`` / ``{a,b}`` braces, globs and folders.

One expander for every command that reads files (training shards, generation inputs, shards to filter or
evaluate), so that a pattern means the same thing everywhere. Braces follow webdataset's: a numeric range keeps
the zero padding as written, ``{a,b}`` gives alternatives, and expansions nest.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Sequence

from tripletclip.data.contract import DataError

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..009}`` numeric ranges (zero padded as written) and ``{a,b}`` alternatives."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.groups()
        width = max(len(a), len(b)) if (a.startswith("0") or len(a) == len(b)) else 0
        step = 1 if int(b) >= int(a) else -1
        options = [str(i).zfill(width) for i in range(int(a), int(b) + step, step)]
    elif "," in body:
        options = body.split(",")
    else:  # a literal brace: keep it, expand what follows
        return [head + "{" + body + "}" + rest for rest in expand_braces(tail)]
    return [p for opt in options for p in expand_braces(head + opt + tail)]


def expand_patterns(spec: str, folder_exts: Sequence[str] = ("tar",), what: str = "data.train") -> list[str]:
    """Existing files named by ``spec``, in order; DataError naming the first part that names nothing.

    A folder stands for its files of the first extension in ``folder_exts`` that it holds (sorted); a glob
    for its sorted matches; ``what`` names the setting in messages (``data.train``, ``--in``, ...).
    """
    files: list[str] = []
    for part in (p.strip() for p in spec.split("::")):
        if not part:
            continue
        if os.path.isdir(part):
            found = next((f for ext in folder_exts if (f := sorted(glob.glob(os.path.join(part, f"*.{ext}"))))), [])
            if not found:
                kinds = " or ".join(f".{e}" for e in folder_exts)
                raise DataError(f"{part}: folder has no {kinds} files; check {what}")
            files.extend(found)
            continue
        for path in expand_braces(part):
            matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
            missing = [m for m in matches if not os.path.isfile(m)] or ([] if matches else [path])
            if missing:
                origin = f" (from {what} '{part}')" if missing[0] != part else f" ({what})"
                raise DataError(f"{missing[0]}: not found{origin}; check the path")
            files.extend(matches)
    if not files:
        raise DataError(f"{what} '{spec}' names no file")
    return files
