"""Errors a user can cause, phrased so they can fix them.

An ``InputError`` names the file (or option), the field and the fix. The CLI prints it without a
traceback and exits with status 2; nothing the user gave is modified.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A problem with what the user gave us: a malformed file, a missing column, an impossible option."""

    def __init__(self, problem: str, *, file: str | Path | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.field = field
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.field:
            where.append(f"field '{self.field}'")
        text = (": ".join(where) + ": " if where else "") + self.problem
        if self.fix:
            text += f" Fix: {self.fix}"
        return text

