"""Explicit refusals for bank statement files.

Why: a statement that cannot be read exactly must be refused, not guessed at, and the person who has to fix
it needs one line that names the file, the place in it and what is wrong, never a traceback.
"""

from __future__ import annotations


class StatementError(Exception):
    """Base class: every refusal of a bank file carries source, location and reason."""

    kind = "refused"

    def __init__(self, source: str, location: str | None, reason: str) -> None:
        self.source = source
        self.location = location
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: {self.location}" if self.location else self.source
        return f"{where}: {' '.join(self.reason.split())}"


class StatementFormatError(StatementError):
    """The bytes are not a well-formed statement in the claimed format (syntax, truncation, fragment)."""


class StatementEncodingError(StatementError):
    """The bytes are not in an encoding the format (or the layout) allows."""


class StatementSecurityError(StatementError):
    """The file tries something a statement never needs: DTDs, entity expansion, external resources."""


class StatementValueError(StatementError):
    """A field is syntactically there but its value is wrong: unknown currency, bad decimal separator, bad date."""


class UnknownFormatError(StatementFormatError):
    """Auto-detection found no parser that recognises the file."""
