"""The one exception type that means "the user's input or request is wrong", not "the code is wrong".

The CLI prints a :class:`UserError` as one line (``Error: <message>``) and exits 1; any other exception is a
bug and keeps its traceback (catching ``KeyError`` or ``RuntimeError`` around a whole run would turn a
programming error at step 80k into one quoted word). The message names the file, row, key or option, what is
wrong and what to do. Subclasses also derive from the builtin type callers used to catch before
(``ValueError``, ``KeyError``, ...), so library code catching those keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or a request that cannot be carried out; ``str()`` is the message the user sees."""


class InputError(UserError, ValueError):
    """A bad value: an option, a setting or the content of a file the user gave."""


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry (loss, benchmark, backend, model); the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's str() would quote the whole message
        return str(self.args[0]) if self.args else ""


class NotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist or does not hold what it should."""

    def __str__(self) -> str:  # one argument, no errno: the plain message
        return str(self.args[0]) if self.args else ""


class UnavailableError(UserError, RuntimeError):
    """Something the request needs is missing or refuses: an optional package, a model, a server."""


class ConflictError(UserError, FileExistsError):
    """An output that already exists, or a folder another live process is writing."""

    def __str__(self) -> str:  # one argument, no errno: the plain message
        return str(self.args[0]) if self.args else ""
