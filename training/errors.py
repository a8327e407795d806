"""Domain errors of the offline side; the CLI turns each into one line on stderr and exit status 2."""

from __future__ import annotations

SHOWN_CHARS = 80  # longest bad value quoted in a message


class WdrecError(Exception):
    """Base class of every error a user can fix (bad input, bad config, missing artifacts)."""


class SchemaError(WdrecError):
    """An L.POINT file breaks its contract: the message names file, column, row, value and expectation."""

    def __init__(
        self,
        file: str,
        message: str,
        *,
        column: str | None = None,
        row: int | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.file, self.column, self.row, self.value, self.expected = file, column, row, value, expected
        parts = [file]
        if column is not None:
            parts.append(f"column {column}")
        if row is not None:
            parts.append(f"row {row}")
        where = ", ".join(parts)
        text = f"{where}: {message}"
        if value is not None:
            shown = repr(value)
            # A 10 MB cell must not become a 10 MB message.
            text += f" (got {shown if len(shown) <= SHOWN_CHARS else shown[:SHOWN_CHARS] + '...'})"
        if expected is not None:
            text += f"; expected {expected}"
        super().__init__(text)


class ConfigError(WdrecError):
    """A configuration value or profile name is invalid."""


class ArtifactError(WdrecError):
    """An artifact set is missing, incomplete or corrupt; the message names the file."""
